#!/usr/bin/env bash
# Proof that the crash suite can fail (issue 5, "Negative controls"): with
# recovery broken on purpose, crash-native must exit 1 (not 0, not a usage
# error or a crash) and its CSV must show lost or duplicated requests at the
# points where the breakage shows.
#   negative-controls.sh PATH/TO/crash-native
set -euo pipefail
native=${1:?usage: negative-controls.sh PATH/TO/crash-native}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0

# check CONTROL POINTS: runs the suite with the control at those points.
check() {
  local control=$1 points=$2 csv="$tmp/$1.csv" rc=0
  "$native" --runs 3 --negative "$control" --points "$points" --csv "$csv" \
    >"$tmp/$control.out" 2>&1 || rc=$?
  if [[ $rc -ne 1 ]]; then
    echo "FAIL: --negative $control: exit status $rc, expected 1"
    sed 's/^/    /' "$tmp/$control.out" | tail -n 20
    failed=1
    return
  fi
  # Columns: point,action,runs,inflight_at_fault,resubmitted,lost,duplicated,hung,...
  local bad
  bad=$(awk -F, 'NR > 1 && ($6 + $7) > 0 { print $1 }' "$csv")
  if [[ -z $bad ]]; then
    echo "FAIL: --negative $control: exit 1 but no point reported lost or duplicated requests"
    cat "$csv"
    failed=1
    return
  fi
  echo "ok: --negative $control: losses or duplicates at: $(echo $bad | tr ' ' ',')"
}

check skip-resubmit blk.popped,blk.submitted,blk.host_done
check clear-before-publish blk.inflight_cleared

# And without a control the same points pass (the failures above come from
# the control, not from the workload).
rc=0
"$native" --runs 3 --points blk.popped,blk.inflight_cleared >"$tmp/none.out" 2>&1 || rc=$?
if [[ $rc -ne 0 ]]; then
  echo "FAIL: without a negative control: exit status $rc"
  sed 's/^/    /' "$tmp/none.out" | tail -n 20
  failed=1
else
  echo "ok: without a negative control the same points pass"
fi
exit $failed
