#!/bin/sh
# e2e-timeout: 600
# libember in L1: tools/ember-pool boots 4 test guests in parallel from one
# configuration (each runs /tests/hello.sh and powers off) and prints its
# summary table; a program compiled against the installed library
# (embed-pool.host) boots a guest, pauses, resumes, checkpoints and stops it,
# restores the checkpoint in a new VM and prints how each ended and its
# counters (Vm::metrics(): the running VM, and the restored one after its exit).
. "$E2E_DIR/lib.sh"

host="$WORK/../../host/embed-pool"
img="$IMAGES/cloud"
if [ ! -x "$host/ember-pool" ] || [ ! -x "$host/embed-example" ]; then
  fail embed-pool-staged "embed-pool.host did not stage ember-pool and embed-example (see host/embed-pool.log)"
  exit 0
fi

OUT="$WORK/pool.out"
ERR="$WORK/pool.err"
echo "e2e: ember-pool -n 4" >"$WORK/pool.cmd"
_t0=$(date +%s)
timeout 600 "$host/ember-pool" --kernel "$img/vmlinuz" --initrd "$img/initramfs.cpio.gz" --run hello \
  -n 4 --mem 192M --timeout 540 --console-dir "$WORK" </dev/null >"$OUT" 2>"$ERR"
RC=$?
ELAPSED=$(($(date +%s) - _t0))
TIMED_OUT=no
echo "e2e: ember-pool rc=$RC after ${ELAPSED}s"
cat "$OUT"
# Four rows, each a clean poweroff with a boot time and the script's rc 0.
rows=$(grep -c -E '^[0-3] +poweroff +[0-9]+\.[0-9] +[0-9]+\.[0-9] +0 ' "$OUT")
early=$(pool_early_triple_faults "$OUT" "$WORK" | tr '\n' ' ')
if [ -n "$early" ] && in_sandbox; then
  # run-scenarios.sh runs the scenario again (at most twice) on this marker.
  echo "guest ${early% } of ember-pool triple-faulted in early boot, before EMBER-GUEST READY (nested TCG; see pool.out)" \
    >"$WORK/pool.guest-stalled"
  echo "e2e: embed-pool: $(cat "$WORK/pool.guest-stalled")"
  exit 0
fi
expect_rc 0 && expect_stdout '^guest +exit +boot s +wall s' && expect_stdout '4/4 guests powered off cleanly' &&
  expect_stderr 'booted 4/4, running 0, done 4/4' &&
  { [ "$rows" = 4 ] || _unmet "expected 4 clean rows in the table, found $rows"; } &&
  { grep -a -q 'EMBER-GUEST HELLO' "$WORK/guest-3.log" || _unmet "guest 3's console log lacks its HELLO line"; }
check embed-pool-4-guests

ck="$SCRATCH/embed-ck"
run_ember_example() {
  OUT="$WORK/example.out"
  ERR="$WORK/example.err"
  echo "e2e: embed-example" >"$WORK/example.cmd"
  _t0=$(date +%s)
  timeout 600 "$host/embed-example" "$img/vmlinuz" "$img/initramfs.cpio.gz" "$ck" </dev/null >"$OUT" 2>"$ERR"
  RC=$?
  ELAPSED=$(($(date +%s) - _t0))
  TIMED_OUT=no
  echo "e2e: embed-example rc=$RC after ${ELAPSED}s"
  grep -a '^embed-example' "$OUT"
}
run_ember_example
# The restored VM goes on counting (no second boot) and powers off.
expect_rc 0 && expect_stdout 'embed-example: created, state created' && expect_stdout 'paused, state paused' &&
  expect_stdout 'resumed, state running' && expect_stdout 'first VM exit: stopped \(checkpoint taken\)' &&
  expect_stdout 'restored VM exit: poweroff' && expect_stdout 'EMBER-GUEST COUNT DONE' &&
  expect_stdout 'running VM metrics: state running, 1 vcpu\(s\), [1-9][0-9]* exits' &&
  expect_stdout 'restored VM metrics: state exited, 1 vcpu\(s\), [1-9][0-9]* exits' &&
  { [ "$(grep -a -c 'EMBER-GUEST READY' "$OUT")" = 1 ] || _unmet "the guest booted more than once"; }
check embed-example-installed-library
