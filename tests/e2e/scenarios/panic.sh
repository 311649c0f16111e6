#!/bin/sh
# e2e-timeout: 240
# A guest kernel panic (sysrq c, reported through pvpanic) ends ember with a
# non-zero status and a message on stderr naming the panic.
. "$E2E_DIR/lib.sh"

boot_guest cloud-panic cloud 1 panic
expect_stdout 'EMBER-GUEST READY' && expect_stdout 'Kernel panic' &&
  expect_rc_nonzero && expect_stderr_i 'panic'
check cloud-panic
