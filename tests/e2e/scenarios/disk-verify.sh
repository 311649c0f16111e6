#!/bin/sh
# e2e-timeout: 420
# The in-guest verifier (tools/ember-verify, at /bin/ember-verify in the test
# initramfs) over two virtio-blk disks in one boot of the cloud kernel:
#   vda  64 MiB, engine=uring (the default)
#        write-verify --size 64M --passes 1 --qd 16 --direct --seed 1 (the
#        whole disk: 16k writes, 16k reads)
#   vdb  8 MiB, engine=sync (cache=none when DIRECT_SCRATCH takes O_DIRECT)
#        write-verify --size 8M --passes 2 --qd 4 --direct --seed 2
#   vdc  16 MiB, engine=uring,cache=none,poll=200 (O_DIRECT with the I/O
#        thread polling; in the sandbox on L1's ext4 disk)
#        write-verify --size 16M --passes 1 --qd 16 --direct --seed 3
# (in the sandbox, ~15 s of guest time for vda, ~3 s for vdb, ~4 s for vdc)
# Each must print VERIFY PASS; then the host checks each image with
# `ember-verify check-image` (the binary taken from the initramfs), which proves
# that what the guest verified is what the image file holds.
# Guest half: tests/e2e/guest/disk-verify.sh.
. "$E2E_DIR/lib.sh"

u="$SCRATCH/verify-uring.img"
s="$DIRECT_SCRATCH/verify-sync.img"
d="$DIRECT_SCRATCH/verify-direct.img"
truncate -s 64M "$u"
truncate -s 8M "$s"
truncate -s 16M "$d"
# The cache=none disks need O_DIRECT. vdc exists to test it: without it, its
# checks fail. vdb tested the sync engine before the sandbox had a filesystem
# with O_DIRECT, and falls back to the page cache.
if takes_o_direct "$DIRECT_SCRATCH"; then
  has_direct=yes
  sync_opts=engine=sync,cache=none
  direct_opts=engine=uring,cache=none,poll=200
else
  echo "e2e: $DIRECT_SCRATCH has no O_DIRECT: the sync-engine disk and vdc use cache=writeback"
  has_direct=no
  sync_opts=engine=sync
  direct_opts=engine=uring
fi

# Two vcpus on real KVM, one in the nested sandbox. There, with two, the
# guest triple-faulted, stalled or took L1 down in 5 of 9 attempts (4 runs),
# each a few seconds into a verifier run; with one vcpu 5 runs in a row were
# clean, and so were 5 two-vcpu boots running the same verifier on the
# guest's own tmpfs (no virtio I/O). ember's side of the I/O is the same for
# both counts; what two vcpus add is IPIs and interrupts between them under
# TCG's emulation of SVM.
cpus=2
in_sandbox && cpus=1
BOOT_TIMEOUT=380 boot_guest disk-verify cloud "$cpus" disk-verify --disk "$u,id=verify-uring" \
  --disk "$s,id=verify-sync,$sync_opts" --disk "$d,id=verify-direct,$direct_opts"

# section DEV: the console lines of DEV's run, from verify-begin to verify-end.
section() {
  tr -d '\r' <"$OUT" | awk -v d="$1" '
    index($0, "EMBER-DISK verify-begin dev=" d " ") { on = 1 }
    on { print }
    index($0, "EMBER-DISK verify-end dev=" d " ") { on = 0 }'
}

extract_verifier

# check_disk DEV IMAGE SEED SIZE NAME
check_disk() {
  section "$1" >"$WORK/verify-$1.txt"
  grep -q 'verify-missing' "$OUT" && _unmet "/bin/ember-verify is missing from the test initramfs"
  grep -a -q "EMBER-DISK verify-begin dev=$1 " "$WORK/verify-$1.txt" || _unmet "the guest never started ember-verify on $1"
  grep -a -q "VERIFY PASS" "$WORK/verify-$1.txt" ||
    _unmet "no VERIFY PASS on $1$([ "$TIMED_OUT" = no ] || echo " (the boot timed out after ${ELAPSED}s)"): $(grep -a -E 'VERIFY (FAIL|ERROR)|verify-end' "$WORK/verify-$1.txt" | head -n 2 | tr '\n' ' ')"
  grep -a -q "EMBER-DISK verify-end dev=$1 rc=0 " "$WORK/verify-$1.txt" || _unmet "ember-verify on $1 did not exit 0"
  echo "e2e: $1: $(grep -a -E 'VERIFY (PASS|FAIL)|verify-end' "$WORK/verify-$1.txt" | tr '\n' ' ')"
  check "$5"

  writes=$(sed -n 's/.*VERIFY PASS .*writes=\([0-9]*\).*/\1/p' "$WORK/verify-$1.txt" | head -n1)
  if [ -z "$VERIFIER" ]; then
    fail "$5-image" "could not take bin/ember-verify out of $IMAGES/cloud/initramfs.cpio.gz"
  elif [ -z "$writes" ]; then
    fail "$5-image" "no writes=W from the guest's VERIFY PASS line on $1"
  else
    "$VERIFIER" check-image --image "$2" --seed "$3" --writes "$writes" --size "$4" >"$WORK/check-$1.txt" 2>&1
    crc=$?
    echo "e2e: check-image $1: $(tail -n1 "$WORK/check-$1.txt")"
    [ "$crc" = 0 ] && grep -q 'CHECK PASS' "$WORK/check-$1.txt" ||
      _unmet "check-image of $2 (seed $3, writes $writes) exited $crc: $(tail -n1 "$WORK/check-$1.txt")"
    check "$5-image"
  fi
}

check_disk vda "$u" 1 64M disk-verify-uring
check_disk vdb "$s" 2 8M disk-verify-sync
if [ "$has_direct" = no ]; then
  fail disk-verify-direct "no O_DIRECT where the cache=none disk goes ($DIRECT_SCRATCH): vdc ran through the page cache"
else
  check_disk vdc "$d" 3 16M disk-verify-direct
fi

expect_stdout 'EMBER-GUEST EXIT rc=0' && expect_rc 0
check disk-verify-poweroff
