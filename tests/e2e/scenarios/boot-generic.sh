#!/bin/sh
# e2e-timeout: 300
# The stock Debian generic (amd64) kernel boots to init with 2 vcpus, sees
# ACPI, and its reboot ends ember with status 0 saying so (one boot: the
# generic kernel is the slow one under TCG; boot-cloud covers 1 vcpu and
# poweroff).
. "$E2E_DIR/lib.sh"

boot_guest generic-cpus2 generic 2 reboot
expect_stdout 'EMBER-GUEST READY cpus=2 acpi=yes'
check generic-boot-cpus2
expect_stdout 'EMBER-GUEST READY' && expect_rc 0 && expect_stderr_i 'reboot'
check generic-reboot
