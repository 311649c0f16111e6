#!/bin/sh
# e2e-timeout: 900
# Checkpoint mid-flight with a disk (the state array and the signal-masked
# completion, DESIGN.md): the in-guest verifier keeps requests in flight while
# ember is checkpointed with SIGUSR1 and restored in a new process, cycle
# after cycle; the verifier must finish with VERIFY PASS (nothing lost or
# completed twice), and at least one checkpoint must have held requests in
# flight (reported on stderr).
. "$E2E_DIR/lib.sh"

img="$IMAGES/cloud"
# On the shared work directory (9p in the sandbox), host I/O takes long
# enough that checkpoints catch requests in flight; tmpfs completes them
# before the vcpus are even parked.
disk="$WORK/ckpt-disk.img"
dd if=/dev/zero of="$disk" bs=1M count=16 2>/dev/null
cycles=8

wait_for() {
  _n=0
  while ! grep -a -q -E -- "$2" "$1" 2>/dev/null; do
    sleep 1
    _n=$((_n + 1))
    [ "$_n" -lt "$3" ] || return 1
  done
}

# start LOG ARG...: ember in the background; PID, OUT, ERR.
start() {
  _log=$1
  shift
  OUT="$WORK/$_log.out"
  ERR="$WORK/$_log.err"
  echo "e2e: ember $*" >"$WORK/$_log.cmd"
  "$EMBER" "$@" </dev/null >"$OUT" 2>"$ERR" &
  PID=$!
  TIMED_OUT=no
  ELAPSED=0
}

start ckd-0 run --kernel "$img/vmlinuz" --initrd "$img/initramfs.cpio.gz" --cpus 1 --mem 256M --console stdio \
  --cmdline "$(guest_cmdline ckpt-verify)" --disk "$disk,id=data" --checkpoint-dir "$WORK/ckd-1"
wait_for "$OUT" 'VERIFY START' 300 || _unmet "the verifier never started"
i=1
while [ -z "$REASON" ] && [ "$i" -le "$cycles" ]; do
  sleep 3
  kill -USR1 "$PID"
  wait "$PID"
  RC=$?
  expect_rc 0 && expect_stderr 'checkpoint written to' && expect_no_log 'VERIFY (PASS|FAIL)'
  [ -z "$REASON" ] || break
  grep -a -o 'checkpoint written to.*' "$ERR" | sed "s/^/e2e: cycle $i: /"
  start "ckd-$i" restore "$WORK/ckd-$i" --console stdio --checkpoint-dir "$WORK/ckd-$((i + 1))"
  wait_for "$ERR" 'restored from' 120 || _unmet "cycle $i: restore did not come up"
  i=$((i + 1))
done
check checkpoint-disk-cycles

# The last restored process runs the verifier to its end.
n=0
while kill -0 "$PID" 2>/dev/null && [ "$n" -lt 400 ]; do
  sleep 1
  n=$((n + 1))
done
kill "$PID" 2>/dev/null
wait "$PID"
RC=$?
expect_rc 0 && expect_stdout 'VERIFY PASS' && expect_stdout 'EMBER-CKPT verify-end rc=0' && expect_stderr 'powered off'
check checkpoint-disk-verify-pass

# Some checkpoint held requests in flight (the whole point: no drain first).
if cat "$WORK"/ckd-*.err | grep -a -q -E 'checkpoint written to .* [1-9][0-9]* requests in flight'; then
  pass checkpoint-disk-inflight-seen
else
  fail checkpoint-disk-inflight-seen "no checkpoint had a request in flight: $(cat "$WORK"/ckd-*.err | grep -a -o '[0-9]* requests in flight' | tr '\n' ' ')"
fi
