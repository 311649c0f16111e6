#!/bin/sh
# e2e-timeout: 360
# The crash-injection suite's sandbox level for restart-io (issue 5): in one
# boot, the I/O thread is crashed at every block fault point in turn (one
# --fault each, at staggered hits) and at random instants; each time a fresh
# I/O thread recovers from guest memory and the in-flight region alone. The
# in-guest verifier must still end with VERIFY PASS: nothing lost, nothing
# completed twice, no request hung.
. "$E2E_DIR/lib.sh"

img="$SCRATCH/crash-restart.img"
truncate -s 8M "$img"
# Per request: popped, host_done; per submit or completion batch (fewer
# hits, as a batch holds up to the queue depth): the other five.
points="blk.popped blk.submitted blk.host_done blk.used_written blk.used_idx_published blk.inflight_cleared blk.notified"
faults="--fault blk.popped:after=500 --fault blk.submitted:after=200 --fault blk.host_done:after=2500"
hit=150
for p in blk.used_written blk.used_idx_published blk.inflight_cleared blk.notified; do
  faults="$faults --fault $p:after=$hit"
  hit=$((hit + 150))
done
# shellcheck disable=SC2086 # $faults is a list of arguments
BOOT_TIMEOUT=300 boot_guest crash-restart cloud 1 crash-verify --disk "$img,id=data" $faults \
  --fault random:period=4000:action=restart-io

expect_rc 0 && expect_stdout 'VERIFY PASS' && expect_stdout 'EMBER-CRASH verify-end rc=0'
check crash-restart-verify-pass

for p in $points; do
  expect_stderr "fault $p fired at hit [0-9]+" &&
    expect_stderr 'I/O thread restarted from the in-flight region'
  check "crash-restart-$p"
done
echo "e2e: $(grep -c 'I/O thread restarted' "$ERR") restarts: $(grep -a -o \
  '[0-9]* requests in flight, [0-9]* completed before the crash, [0-9]* resubmitted' "$ERR" |
  awk '{ f += $1; c += $5; r += $10 } END { print f + 0 " in flight at the faults, " c + 0 " completed before the crash, " r + 0 " resubmitted" }')"
