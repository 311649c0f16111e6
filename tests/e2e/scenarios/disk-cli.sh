#!/bin/sh
# e2e-timeout: 240
# Bad --disk input: each is a clear error on stderr, naming the path or the bad
# option, before the guest starts (nothing on the console). Only the last check
# boots guests: two embers sharing a read-only image, refusing it to a writer.
# A disk that cannot be opened or has a bad size is an error found while
# building the VM (exit status 1; 2 is accepted too, for a usage error); a
# malformed --disk value or too many disks is a usage error (exit status 2).
. "$E2E_DIR/lib.sh"

kernel="$IMAGES/cloud/vmlinuz"
initrd="$IMAGES/cloud/initramfs.cpio.gz"
good="$SCRATCH/good.img"
truncate -s 1M "$good"

# run_disk NAME DISK...: ember run with a valid kernel and the given --disk values.
run_disk() {
  _n=$1
  shift
  _args=""
  for _d in "$@"; do _args="$_args --disk $_d"; done
  # shellcheck disable=SC2086 # the paths here hold no blanks
  run_ember "$_n" 30 run --kernel "$kernel" --initrd "$initrd" --mem 128M --console stdio \
    --cmdline "$(guest_cmdline poweroff)" $_args
}

# expect_open_error: exit 1 or 2, not a timeout, and no guest output.
expect_open_error() {
  [ "$TIMED_OUT" = no ] || _unmet "ember timed out after ${ELAPSED}s (expected an error)" || return 1
  [ "$RC" = 1 ] || [ "$RC" = 2 ] || _unmet "ember exited with $RC, expected 1 or 2"
  [ ! -s "$OUT" ] || _unmet "the guest started (console output: $(head -c 120 "$OUT" | tr -d '\r' | tr '\n' ' '))"
}

missing="$SCRATCH/no-such-dir/disk.img"
run_disk missing "$missing"
expect_open_error && expect_stderr "$missing" && expect_stderr_i 'not exist|no such file'
check disk-cli-missing

if [ "$(id -u)" = 0 ]; then
  echo "e2e: disk-cli-unreadable skipped: running as root, which bypasses file permissions"
else
  unreadable="$SCRATCH/unreadable.img"
  truncate -s 1M "$unreadable"
  chmod 000 "$unreadable"
  run_disk unreadable "$unreadable"
  expect_open_error && expect_stderr "$unreadable" && expect_stderr_i 'permission denied'
  check disk-cli-unreadable
fi

mkdir -p "$SCRATCH/a-directory"
run_disk directory "$SCRATCH/a-directory"
expect_open_error && expect_stderr "$SCRATCH/a-directory" && expect_stderr_i 'directory'
check disk-cli-directory

: >"$SCRATCH/empty.img"
run_disk empty "$SCRATCH/empty.img"
expect_open_error && expect_stderr "$SCRATCH/empty.img" && expect_stderr_i 'empty|0 bytes|zero'
check disk-cli-zero-size

truncate -s 1000 "$SCRATCH/odd.img"
run_disk odd-size "$SCRATCH/odd.img"
expect_open_error && expect_stderr "$SCRATCH/odd.img" && expect_stderr '1000' && expect_stderr '512'
check disk-cli-size-not-sector-multiple

# Nine disks, the maximum being 8: a usage error.
run_disk nine-disks "$good" "$good" "$good" "$good" "$good" "$good" "$good" "$good" "$good"
expect_rc 2 && expect_stderr_i 'at most 8|8 disks|too many' && expect_stderr_i 'disk'
[ ! -s "$OUT" ] || _unmet "the guest started"
check disk-cli-too-many

run_disk bad-cache "$good,cache=fast"
expect_rc 2 && expect_stderr 'cache' && expect_stderr 'fast'
[ ! -s "$OUT" ] || _unmet "the guest started"
check disk-cli-bad-cache

run_disk bad-option "$good,bogus"
expect_rc 2 && expect_stderr 'bogus'
[ ! -s "$OUT" ] || _unmet "the guest started"
check disk-cli-unknown-option

# iothread-cpu= naming a CPU ember may not run on: a usage error that names
# the CPUs it may use.
run_disk bad-iothread-cpu "$good,iothread-cpu=99999"
expect_rc 2 && expect_stderr 'iothread-cpu=99999' && expect_stderr 'allowed: '
[ ! -s "$OUT" ] || _unmet "the guest started"
check disk-cli-iothread-cpu-unavailable

# A rate limit of nothing per second, and a burst without its rate: usage
# errors naming the option.
run_disk bad-rate "$good,bw=0"
expect_rc 2 && expect_stderr "bw '0' is not a number of bytes"
[ ! -s "$OUT" ] || _unmet "the guest started"
run_disk bad-burst "$good,iops-burst=10"
expect_rc 2 && expect_stderr 'iops-burst= needs iops='
[ ! -s "$OUT" ] || _unmet "the guest started"
check disk-cli-bad-rate-limit

# An image in use by another ember: a read-only disk is shared with a second
# read-only one (its guest starts), and refused to a writer with exit status
# 1 and a message saying it is in use, before that guest starts. The holder's
# guest counts meanwhile; it is stopped with SIGTERM once the others are done.
shared="$SCRATCH/shared.img"
truncate -s 1M "$shared"
run_bg lock-holder run --kernel "$kernel" --initrd "$initrd" --mem 128M --console stdio \
  --cmdline "$(guest_cmdline count) ember.count=600" --disk "$shared,readonly"
holder=$PID
holder_out=$OUT
holder_watch=$_bg_watch
if wait_for "$holder_out" 'EMBER-GUEST COUNT 1' 90; then
  run_bg lock-reader run --kernel "$kernel" --initrd "$initrd" --mem 128M --console stdio \
    --cmdline "$(guest_cmdline count) ember.count=600" --disk "$shared,readonly"
  wait_for "$OUT" 'EMBER-GUEST COUNT 1' 90 ||
    _unmet "a second read-only user of the image did not get its guest started: $(tail -n 2 "$ERR" | tr '\n' '|')"
  kill -TERM "$PID" 2>/dev/null
  finish_bg
  run_disk lock-writer "$shared"
  expect_open_error && expect_stderr "disk image $shared: is in use" &&
    expect_stderr 'another process has it open'
else
  _unmet "the guest holding the image never started counting"
fi
# (finish_bg stops the holder's own stall watch.)
PID=$holder
_bg_watch=$holder_watch
_bg_log=lock-holder
kill -TERM "$PID" 2>/dev/null
finish_bg
check disk-cli-image-locked
