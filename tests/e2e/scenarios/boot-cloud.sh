#!/bin/sh
# e2e-timeout: 420
# The stock Debian cloud kernel boots to init with 1 and 2 vcpus, sees ACPI,
# and its poweroff / reboot end ember with status 0 saying which.
. "$E2E_DIR/lib.sh"

boot_guest cloud-cpus1 cloud 1 poweroff
expect_stdout 'EMBER-GUEST READY cpus=1 acpi=yes'
check cloud-boot-cpus1
expect_stdout 'EMBER-GUEST READY' && expect_rc 0 && expect_stderr_i 'power(ed)?[ -]?(off|down)'
check cloud-poweroff

boot_guest cloud-cpus2 cloud 2 reboot
expect_stdout 'EMBER-GUEST READY cpus=2 acpi=yes'
check cloud-boot-cpus2
expect_stdout 'EMBER-GUEST READY' && expect_rc 0 && expect_stderr_i 'reboot'
check cloud-reboot
