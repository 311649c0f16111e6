#!/bin/sh
# Runs e2e scenarios one after the other, each under its own timeout. POSIX sh:
# tests/e2e/run uses it on a KVM host and inside the nested sandbox's L1.
#   run-scenarios.sh SHELL E2E_DIR EMBER IMAGES WORKROOT SCRATCHROOT NAME...
# DIRECT_SCRATCHROOT (env, optional): a directory on a filesystem that takes
# O_DIRECT (the sandbox's ext4 disk in L1); scenarios get DIRECT_SCRATCH under
# it, or under SCRATCHROOT without it.
# For scenario NAME it writes WORKROOT/NAME/output.log (the scenario's stdout
# and stderr) and WORKROOT/NAME/rc, and echoes the output between
# "EMBER-SCENARIO BEGIN NAME" and "EMBER-SCENARIO END NAME rc=N".
# A scenario during which lib.sh's stall watch found its guest stuck with
# every request answered (WORK/*.guest-stalled; see guest_stalled in lib.sh),
# or whose guest died in a way known from the nested sandbox (the scenario
# writes the same marker, see embed-pool.sh)
# runs again, at most twice more: "EMBER-SCENARIO RETRY NAME: why", the
# earlier attempts kept in WORKROOT/NAME.stalled-attempt-N. A scenario that
# merely fails is not retried.
shell=$1
e2e_dir=$2
ember=$3
images=$4
workroot=$5
scratchroot=$6
shift 6

run_one() {
  script="$e2e_dir/scenarios/$name.sh"
  tmo=$(sed -n 's/^# e2e-timeout: *\([0-9][0-9]*\).*/\1/p' "$script" | head -n1)
  [ -n "$tmo" ] || tmo=300
  work="$workroot/$name"
  scratch="$scratchroot/$name"
  direct="${DIRECT_SCRATCHROOT:-$scratchroot}/$name-direct"
  rm -rf "$work" "$scratch" "$direct"
  mkdir -p "$work" "$scratch" "$direct"
  echo "EMBER-SCENARIO BEGIN $name timeout=${tmo}s"
  t0=$(date +%s)
  (
    EMBER=$ember IMAGES=$images WORK=$work SCRATCH=$scratch DIRECT_SCRATCH=$direct E2E_DIR=$e2e_dir \
      timeout "$tmo" "$shell" "$script" </dev/null
    echo $? >"$work/rc"
  ) 2>&1 | tee "$work/output.log"
  rc=$(cat "$work/rc" 2>/dev/null || echo 125)
  echo "EMBER-SCENARIO END $name rc=$rc elapsed=$(($(date +%s) - t0))s"
  rm -rf "$scratch" "$direct"
}

for name in "$@"; do
  attempt=1
  run_one
  # The marker means ember was stopped mid-scenario: whatever the scenario
  # reported (its rc is 0 when it ran to its end) is void.
  while [ "$attempt" -le 2 ]; do
    stalled=$(cat "$work"/*.guest-stalled 2>/dev/null | head -n 1)
    [ -n "$stalled" ] || break
    echo "EMBER-SCENARIO RETRY $name: $stalled"
    rm -rf "$work.stalled-attempt-$attempt"
    mv "$work" "$work.stalled-attempt-$attempt"
    attempt=$((attempt + 1))
    run_one
  done
done
