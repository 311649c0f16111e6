#!/bin/sh
# bench-blk still runs: not its numbers (those are the README's, measured by
# hand), but that it creates a --file it is given, reuses one that exists,
# prints a row with IOPS for every cell asked for and, with --cpu, the CPU
# lines, and that a halt-polling driver works. Without fio, so nothing but
# ember runs.
#   bench_blk_smoke.sh BENCH_BLK
bench=${1:?usage: bench_blk_smoke.sh BENCH_BLK}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bad=0
fail() {
  echo "FAIL: $*"
  bad=$((bad + 1))
}
run() { # run OUT ARGS...: bench-blk with ARGS, its stdout and stderr in OUT
  out=$1
  shift
  "$bench" --no-fio --seconds 0.3 --rw randread,randwrite --cache writeback "$@" >"$out" 2>&1 ||
    fail "bench-blk $* exited $?: $(tail -n 3 "$out")"
}

run "$tmp/first" --file "$tmp/disk.img" --size 8 --qd 1,32 --cpu
grep -q "preparing $tmp/disk.img (8 MiB)" "$tmp/first" || fail "a missing --file was not prepared: $(head -n 1 "$tmp/first")"
[ "$(stat -c %s "$tmp/disk.img" 2>/dev/null)" = 8388608 ] || fail "the --file made is not 8 MiB, or was not kept"
for rw in randread randwrite; do
  for qd in 1 32; do
    iops=$(awk -v rw="$rw" -v qd="$qd" '$1 == rw && $3 == "writeback" && $4 == qd { print $5 }' "$tmp/first")
    case $iops in
      "" | 0 | *[!0-9]*) fail "no IOPS for $rw at QD$qd: '$iops'" ;;
      *) echo "ok: $rw QD$qd: $iops IOPS" ;;
    esac
  done
done
cpu=$(grep -c 'cpu (medians, of one CPU): ember I/O thread [0-9]*%, driver [0-9]*%; fio -' "$tmp/first")
[ "$cpu" = 4 ] || fail "--cpu printed $cpu CPU lines for 4 cells"

# An existing file is used whole, whatever --size says.
run "$tmp/second" --file "$tmp/disk.img" --size 512 --qd 32
grep -q "using $tmp/disk.img (8 MiB)" "$tmp/second" || fail "an existing --file was not used whole: $(head -n 1 "$tmp/second")"
grep -q 'cpu (medians' "$tmp/second" && fail "CPU lines without --cpu"

# A driver that halt-polls (KVM's halt_poll_ns) still completes every cell.
run "$tmp/third" --file "$tmp/disk.img" --qd 32 --halt-poll 200
[ "$(awk '$3 == "writeback" && $4 == 32 && $5 > 0' "$tmp/third" | wc -l)" = 2 ] ||
  fail "--halt-poll 200 did not give a row with IOPS for both cells: $(tail -n 3 "$tmp/third")"
# --poll spins always, so a halt-poll window with it is a usage error.
"$bench" --no-fio --poll --halt-poll 200 >"$tmp/both" 2>&1
rc=$?
[ "$rc" = 2 ] && grep -q 'halt-poll' "$tmp/both" || fail "--poll --halt-poll exited $rc: $(cat "$tmp/both")"

[ "$bad" = 0 ] && echo "bench-blk smoke: all checks passed"
[ "$bad" = 0 ]
