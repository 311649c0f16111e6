#!/usr/bin/env bash
# Host-side checks (tests/e2e/run runs tests/e2e/host/*.sh on this machine,
# after the scenarios): the README's first command as a user without a
# terminal runs it, and the exit status of the sandbox it goes through.
#   demo.sh REPO BUILD_DIR WORK_DIR   (EMBER_E2E_MODE: direct or sandbox)
# Prints EMBER-TEST PASS/FAIL lines, with "    | " lines saying why.
set -uo pipefail
repo=${1:?} build=${2:?} work=${3:?}
cd "$repo" || exit 1

pass() { echo "EMBER-TEST PASS $1"; }
fail() {
  echo "EMBER-TEST FAIL $1: $2"
  [[ -f ${3:-} ]] && tail -n 15 "$3" | sed 's/^/    | /'
}

# tools/demo: builds what it needs (all there already), boots the default
# guest, which says hello and powers off, and exits 0.
EMBER_BUILD_DIR=$build timeout 900 tools/demo </dev/null >"$work/demo.log" 2>&1
rc=$?
if ((rc != 0)); then
  fail demo-boots "tools/demo exited $rc" "$work/demo.log"
elif ! grep -a -q '^EMBER-GUEST HELLO ' "$work/demo.log" || ! grep -a -q 'ember: guest powered off' "$work/demo.log"; then
  fail demo-boots "tools/demo exited 0 but the guest did not say hello and power off" "$work/demo.log"
else
  pass demo-boots
fi

# tools/sandbox run ends with the status of the script L1 ran: 0 and 3.
# (It ended with 1 or 143 whatever L1 reported, so tools/demo failed in the
# sandbox after a good boot.) Only where the demo went through the sandbox.
if grep -q 'running ember inside the nested sandbox' "$work/demo.log"; then
  printf '#!/bin/sh\necho "sandbox status check"\nexit 3\n' >"$work/exit3.sh"
  tools/sandbox run --timeout 300 "$work/exit3.sh" >"$work/exit3.log" 2>&1
  rc=$?
  if ((rc == 3)) && grep -q '^sandbox status check' "$work/exit3.log"; then
    pass sandbox-exit-status
  else
    fail sandbox-exit-status "tools/sandbox run of a script that exits 3 returned $rc" "$work/exit3.log"
  fi
fi
