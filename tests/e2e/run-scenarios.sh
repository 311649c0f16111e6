#!/bin/sh
# Runs e2e scenarios one after the other, each under its own timeout. POSIX sh:
# tests/e2e/run uses it on a KVM host and inside the nested sandbox's L1.
#   run-scenarios.sh SHELL E2E_DIR EMBER IMAGES WORKROOT SCRATCHROOT NAME...
# For scenario NAME it writes WORKROOT/NAME/output.log (the scenario's stdout
# and stderr) and WORKROOT/NAME/rc, and echoes the output between
# "EMBER-SCENARIO BEGIN NAME" and "EMBER-SCENARIO END NAME rc=N".
shell=$1
e2e_dir=$2
ember=$3
images=$4
workroot=$5
scratchroot=$6
shift 6

for name in "$@"; do
  script="$e2e_dir/scenarios/$name.sh"
  tmo=$(sed -n 's/^# e2e-timeout: *\([0-9][0-9]*\).*/\1/p' "$script" | head -n1)
  [ -n "$tmo" ] || tmo=300
  work="$workroot/$name"
  scratch="$scratchroot/$name"
  rm -rf "$work" "$scratch"
  mkdir -p "$work" "$scratch"
  echo "EMBER-SCENARIO BEGIN $name timeout=${tmo}s"
  t0=$(date +%s)
  (
    EMBER=$ember IMAGES=$images WORK=$work SCRATCH=$scratch E2E_DIR=$e2e_dir \
      timeout "$tmo" "$shell" "$script" </dev/null
    echo $? >"$work/rc"
  ) 2>&1 | tee "$work/output.log"
  rc=$(cat "$work/rc" 2>/dev/null || echo 125)
  echo "EMBER-SCENARIO END $name rc=$rc elapsed=$(($(date +%s) - t0))s"
  rm -rf "$scratch"
done
