#!/bin/sh
# e2e-timeout: 700
# The stock Debian generic (amd64) kernel boots to init with 1 and 2 vcpus, sees ACPI,
# and its poweroff / reboot end ember with status 0 saying which.
. "$E2E_DIR/lib.sh"

boot_guest generic-cpus1 generic 1 poweroff
expect_stdout 'EMBER-GUEST READY cpus=1 acpi=yes'
check generic-boot-cpus1
expect_stdout 'EMBER-GUEST READY' && expect_rc 0 && expect_stderr_i 'power(ed)?[ -]?(off|down)'
check generic-poweroff

boot_guest generic-cpus2 generic 2 reboot
expect_stdout 'EMBER-GUEST READY cpus=2 acpi=yes'
check generic-boot-cpus2
expect_stdout 'EMBER-GUEST READY' && expect_rc 0 && expect_stderr_i 'reboot'
check generic-reboot
