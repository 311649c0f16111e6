#!/bin/sh
# e2e-timeout: 480
# The crash-injection suite's sandbox level for kill (issue 5): the VMM is
# SIGKILLed at a block fault point while the in-guest verifier writes.
#  - durability: every write the guest saw completed and flushed (the last
#    VERIFY FLUSHED line) is in the image: host `ember-verify check-image`;
#  - a checkpoint taken before the crash (--on-checkpoint continue, disk
#    captured with --checkpoint-disks copy) restores, and the guest's
#    verifier carries on to VERIFY PASS;
#  - a checkpoint killed while being written (--fault checkpoint.devices)
#    leaves no manifest, and restoring it is refused cleanly;
#  - a disk's I/O thread that a guest took over (--fault ...:action=escape:
#    it opens /etc/passwd and an IPv4 socket) is stopped by ember's
#    system-call filter, exit status 148 naming the call, the file and the
#    thread, and so is a vcpu (at its first MMIO exit); without the filter the escape goes through and the guest's
#    verifier still passes (so the filter, not the fault, stopped it).
. "$E2E_DIR/lib.sh"

img="$SCRATCH/crash-kill.img"
truncate -s 8M "$img"
# Checkpoints on scratch, not the 9p share (see checkpoint.sh).
ck="$SCRATCH/ck"
run_bg kill-run run --kernel "$IMAGES/cloud/vmlinuz" --initrd "$IMAGES/cloud/initramfs.cpio.gz" --cpus 1 \
  --mem "$GUEST_MEM" --console stdio --cmdline "$(guest_cmdline crash-verify)" --disk "$img,id=data" \
  --checkpoint-dir "$ck" --on-checkpoint continue --checkpoint-disks copy \
  --fault blk.host_done:after=3000:action=kill
if wait_for "$OUT" 'VERIFY FLUSHED' 240; then
  kill -USR1 "$PID"
  wait_for "$ERR" 'checkpoint written to' 60 || _unmet "no checkpoint was written"
else
  _unmet "the verifier never flushed"
fi
wait_for "$ERR" 'fault blk.host_done fired' 300 || _unmet "the fault never fired"
finish_bg
expect_rc 137 && expect_stderr 'SIGKILL at hit 3000' && expect_no_log 'VERIFY PASS'
check crash-kill-fired

extract_verifier
flushed=$(tr -d '\r' <"$OUT" | sed -n 's/.*VERIFY FLUSHED seed=\([0-9]*\) size=[0-9]* writes=\([0-9]*\).*/\1 \2/p' | tail -n1)
if [ -z "$VERIFIER" ] || [ -z "$flushed" ]; then
  _unmet "no verifier (${VERIFIER:-missing}) or no VERIFY FLUSHED line"
else
  set -- $flushed
  "$VERIFIER" check-image --image "$img" --seed "$1" --writes "$2" --size 8M >"$WORK/check.txt" 2>&1
  echo "e2e: check-image after the kill (seed $1, writes $2): $(tail -n1 "$WORK/check.txt")"
  grep -q 'CHECK PASS' "$WORK/check.txt" || _unmet "check-image: $(tail -n1 "$WORK/check.txt")"
fi
check crash-kill-durable

# A checkpoint whose writer dies mid-way is refused, not half-restored.
checkpoint_paused kill-ckpt "$ck" "$SCRATCH/ck-torn" --fault checkpoint.devices:action=kill
expect_rc 137 && expect_stderr 'fault checkpoint.devices fired'
[ -n "$REASON" ] || run_ember torn-restore 60 restore "$SCRATCH/ck-torn" --console none
[ -n "$REASON" ] || { expect_rc 1 && expect_stderr 'interrupted'; }
check crash-kill-torn-checkpoint-refused

# The checkpoint from before the crash carries on (its captured disk).
run_ember kill-restore 300 restore "$ck" --console stdio
expect_rc 0 && expect_stdout 'VERIFY PASS' && expect_stdout 'EMBER-CRASH verify-end rc=0' &&
  expect_no_log 'EMBER-GUEST READY'
check crash-kill-restore-continues

# A compromised I/O thread is contained: its first forbidden call ends ember.
escape_img="$SCRATCH/crash-escape.img"
truncate -s 8M "$escape_img"
BOOT_TIMEOUT=120 boot_guest escape-filtered cloud 1 crash-verify --disk "$escape_img,id=data" \
  --fault blk.popped:after=20:action=escape
expect_rc 148 && expect_stderr 'fault blk.popped fired at hit 20: this thread tries to escape' &&
  expect_stderr 'seccomp: system call openat \(257\) of "/etc/passwd" on thread ember-blk-io is not allowed' &&
  expect_no_log 'nothing stopped the escape' && expect_no_log 'VERIFY PASS'
check crash-escape-stopped

# A vcpu taken over (at its first MMIO exit: the guest probing a disk) too.
BOOT_TIMEOUT=120 boot_guest escape-vcpu cloud 1 crash-verify --disk "$escape_img,id=data" \
  --fault vcpu.mmio:after=1:action=escape
expect_rc 148 && expect_stderr 'fault vcpu.mmio fired at hit 1: this thread tries to escape' &&
  expect_stderr 'seccomp: system call openat \(257\) of "/etc/passwd" on thread vcpu0 is not allowed' &&
  expect_no_log 'nothing stopped the escape'
check crash-escape-vcpu-stopped

EMBER_PRE_ARGS=--no-seccomp
BOOT_TIMEOUT=300 boot_guest escape-unfiltered cloud 1 crash-verify --disk "$escape_img,id=data" \
  --fault blk.popped:after=20:action=escape
EMBER_PRE_ARGS=
expect_rc 0 && expect_stderr 'nothing stopped the escape \(no system-call filter\): opening /etc/passwd went through' &&
  expect_stdout 'VERIFY PASS'
check crash-escape-without-filter
