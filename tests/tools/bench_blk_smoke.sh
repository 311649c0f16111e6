#!/bin/sh
# bench-blk still runs: not its numbers (those are the README's, measured by
# hand), but that it creates a --file it is given, reuses one that exists,
# prints a row with IOPS for every cell asked for and, with --cpu, the CPU
# lines, and that a halt-polling driver works. Without fio, so nothing but
# ember runs, except the last check: the paired rounds' interval needs fio.
#   bench_blk_smoke.sh BENCH_BLK
bench=${1:?usage: bench_blk_smoke.sh BENCH_BLK}
. "$(dirname "$0")/check.sh"
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
grep -q 'round 1' "$tmp/first" && fail "round lines without --rounds"
cpu=$(grep -c 'cpu (medians, of one CPU): ember I/O thread [0-9]*%, driver [0-9]*%; fio -' "$tmp/first")
[ "$cpu" = 4 ] || fail "--cpu printed $cpu CPU lines for 4 cells"

# --ember-cpu N confines the I/O thread (and the driver) to CPU N, for the run
# only: without it the I/O thread may use every CPU this process may.
grep -q "I/O thread allowed on CPUs $(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/$$/status)\$" "$tmp/first" ||
  fail "without --ember-cpu the I/O thread was confined: $(grep -m1 'allowed on' "$tmp/first")"
run "$tmp/pinned" --file "$tmp/disk.img" --qd 32 --rw randread --cpu --ember-cpu 0
grep -q 'I/O thread allowed on CPUs 0$' "$tmp/pinned" ||
  fail "--ember-cpu 0 did not confine the I/O thread to CPU 0: $(grep -m1 'allowed on' "$tmp/pinned")"
"$bench" --no-fio --file "$tmp/disk.img" --seconds 0.2 --rw randread --qd 1 --ember-cpu 1023 >"$tmp/nocpu" 2>&1
rc=$?
[ "$rc" = 1 ] && grep -q 'ember-cpu 1023: not a CPU this process may run on' "$tmp/nocpu" ||
  fail "--ember-cpu 1023 exited $rc: $(tail -n 1 "$tmp/nocpu")"
# --iothread-cpu N is the disk option iothread-cpu=N: the I/O thread alone on N.
run "$tmp/placed" --file "$tmp/disk.img" --qd 32 --rw randread --cpu --iothread-cpu 0
grep -q 'I/O thread allowed on CPUs 0$' "$tmp/placed" ||
  fail "--iothread-cpu 0 did not place the I/O thread on CPU 0: $(grep -m1 'allowed on' "$tmp/placed")"

# --iops N limits ember's disk (and fio, not run here): never above the rate
# (a 10 ms bucket on top of 0.5 s at 2000/s is 1020 requests: 2040 IOPS).
run "$tmp/limited" --file "$tmp/disk.img" --qd 32 --rw randwrite --seconds 0.5 --iops 2000
grep -q 'both sides limited to 2000 requests per second' "$tmp/limited" ||
  fail "--iops 2000 did not say so: $(head -n 2 "$tmp/limited")"
limited=$(awk '$1 == "randwrite" && $4 == 32 { print $5 }' "$tmp/limited")
[ -n "$limited" ] && [ "$limited" -gt 0 ] 2>/dev/null && [ "$limited" -le 2200 ] ||
  fail "--iops 2000 gave '$limited' IOPS"

# ember writes random bytes, as fio does, not zeros (which a disk that
# compresses or skips zero pages stores for nothing): a file of zeros gets
# bytes that are not zero.
head -c 1048576 /dev/zero >"$tmp/zeros.img"
run "$tmp/zeros" --file "$tmp/zeros.img" --qd 32 --rw randwrite
cmp -s -n 1048576 "$tmp/zeros.img" /dev/zero && fail "ember's writes left a file of zeros all zeros"
echo "ok: ember's writes are not zeros"

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

# --trace: with root, tracefs and a block device under the file, a trace line
# under the row (page-cache reads leave the disk alone: zero per burst is
# fine) and no tracefs instance left behind; else a line saying why not.
# An instance left by a bench-blk that was killed (a PID that is gone) is
# removed, when this may make one (root, tracefs).
sh -c 'exit 0' &
gone=$!
wait "$gone"
stale=/sys/kernel/tracing/instances/ember-bench-$gone
mkdir "$stale" 2>/dev/null || stale=
run "$tmp/trace" --file "$tmp/disk.img" --qd 32 --rw randread --trace
if [ -n "$stale" ]; then
  if [ -e "$stale" ] || ! grep -q "removed the tracefs instance ember-bench-$gone (its bench-blk is gone)" "$tmp/trace"; then
    rmdir "$stale" 2>/dev/null
    fail "--trace did not remove and report the stale instance $stale: $(grep -e '--trace' "$tmp/trace")"
  fi
  echo "ok: $(grep 'removed the tracefs instance' "$tmp/trace")"
fi
if grep -q -e '--trace: .*; not tracing' "$tmp/trace"; then
  echo "ok: --trace here: $(grep -e '--trace:' "$tmp/trace")"
else
  grep -q '^ *trace [a-z0-9]* (medians): ember [0-9.]* per burst, idle [0-9]*%, turnaround [-0-9 us]*, [0-9.]* ms per request; fio -$' "$tmp/trace" ||
    fail "--trace printed neither a trace line nor why not: $(tail -n 2 "$tmp/trace")"
  echo "ok: $(grep 'trace .* (medians)' "$tmp/trace" | sed 's/^ *//')"
fi
grep -q '^randread .* writeback ' "$tmp/trace" || fail "no row with --trace: $(tail -n 2 "$tmp/trace")"
ls /sys/kernel/tracing/instances 2>/dev/null | grep -q '^ember-bench-' &&
  fail "--trace left a tracefs instance behind: $(ls /sys/kernel/tracing/instances)"

# With fio (tools/install-deps installs it) and 6 rounds, the row has a ratio
# and a paired median, and a line says where the paired rounds lie and the
# sign-test interval of their median (tools/round_stats.h): min <= lo <=
# paired <= hi <= max, 96.9% for 6 rounds. 5 rounds cannot give 95%: no line.
if command -v fio >/dev/null; then
  "$bench" --seconds 0.2 --rw randread --cache writeback --qd 32 --file "$tmp/disk.img" --repeat 6 --rounds >"$tmp/fio6" 2>&1 ||
    fail "bench-blk with fio, 6 rounds, exited $?: $(tail -n 3 "$tmp/fio6")"
  awk '
    $1 == "randread" && $3 == "writeback" { paired = $8 + 0; row = 1 }
    $1 == "paired:" { n = $2; mn = $5 + 0; mx = $7 + 0; lo = substr($12, 2) + 0; hi = $13 + 0; cov = $15; line = 1 }
    END {
      if (!row || !line) { print "no row or no paired line"; exit 1 }
      if (n != 6 || cov != "96.9%") { print "rounds " n ", confidence " cov; exit 1 }
      if (!(mn <= lo && lo <= paired && paired <= hi && hi <= mx)) {
        print "not ordered: min " mn ", lo " lo ", paired " paired ", hi " hi ", max " mx; exit 1 }
      print "ok: 6 rounds: paired " paired " in [" lo ", " hi "], rounds " mn "-" mx
    }' "$tmp/fio6" || fail "the paired line with 6 rounds: $(tail -n 2 "$tmp/fio6")"
  # --rounds: fio goes first in every other round, so neither side always
  # finds the disk as the other left it.
  order=$(sed -n 's/^ *round \([0-9]*\) (\([a-z, ]*\)):.*/\1:\2/p' "$tmp/fio6" | tr '\n' ';')
  [ "$order" = "1:ember, fio;2:fio, ember;3:ember, fio;4:fio, ember;5:ember, fio;6:fio, ember;" ] ||
    fail "the rounds did not alternate who goes first: $order"
  "$bench" --seconds 0.2 --rw randread --cache writeback --qd 32 --file "$tmp/disk.img" --repeat 5 >"$tmp/fio5" 2>&1 ||
    fail "bench-blk with fio, 5 rounds, exited $?: $(tail -n 3 "$tmp/fio5")"
  grep -q '^randread .* writeback ' "$tmp/fio5" || fail "no row with 5 rounds: $(tail -n 2 "$tmp/fio5")"
  grep -q 'paired:' "$tmp/fio5" && fail "a 95% interval from 5 rounds, which cannot have one"
else
  fail "fio is not installed (tools/install-deps installs it)"
fi

finish "bench-blk smoke"
