#!/bin/sh
# The benchmark and crash-suite programs' options: --help prints the usage on
# stdout and exits 0; a bad value (not a number, trailing junk, out of range,
# an unknown word) exits 2 with a message naming the flag, before any cell
# runs. Before, bench-blk aborted on "--seconds abc" (std::stod's exception,
# exit 134) and took "--qd 32x" as 32, "--repeat 0" as 1 and a negative
# --seconds as a zero-length run.
# tools/bench-zram too, which makes zram devices: a usage error touches none.
#   bench_options.sh BENCH_BLK BENCH_CHECKPOINT CRASH_NATIVE BENCH_ZRAM
blk=${1:?usage: bench_options.sh BENCH_BLK BENCH_CHECKPOINT CRASH_NATIVE BENCH_ZRAM}
ckpt=${2:?}
crash=${3:?}
zram=${4:?}
. "$(dirname "$0")/check.sh"

for prog in "$blk" "$ckpt" "$crash" "$zram"; do
  name=$(basename "$prog")
  "$prog" --help >"$tmp/out" 2>"$tmp/err"
  rc=$?
  [ "$rc" = 0 ] && grep -q "^usage: $name" "$tmp/out" && [ ! -s "$tmp/err" ] ||
    fail "$name --help exited $rc: $(cat "$tmp/out" "$tmp/err" | head -n 2)"
done

# expect_usage_error PROG WORD ARGS...: PROG ARGS exits 2, its stderr names
# WORD, and it printed no table row (nothing ran).
expect_usage_error() {
  prog=$1
  word=$2
  shift 2
  timeout 20 "$prog" "$@" >"$tmp/out" 2>"$tmp/err"
  rc=$?
  if [ "$rc" = 2 ] && grep -q -e "$word" "$tmp/err" && [ ! -s "$tmp/out" ]; then
    echo "ok: $(basename "$prog") $*: $(head -n 1 "$tmp/err")"
  else
    fail "$(basename "$prog") $* exited $rc (want 2 naming $word): $(cat "$tmp/err" "$tmp/out" | head -n 3)"
  fi
}

# --no-fio and a file that must not be made: a run that got past the
# options would create it.
nofile="$tmp/never.img"
for args in "--seconds abc" "--seconds -1" "--seconds 0" "--seconds nan" "--qd 32x" "--qd 0" \
  "--qd 81" "--qd 1,,32" "--repeat 0" "--repeat -3" "--size 0" "--halt-poll 10001" "--device-poll x" \
  "--ember-cpu -1" "--ember-cpu 1024" "--iothread-cpu x" "--iothread-cpu 1024" "--iops 0" \
  "--iops 5k" "--bw 4096"; do
  flag=${args%% *}
  # shellcheck disable=SC2086 # ARGS is split on purpose
  expect_usage_error "$blk" "$flag" --no-fio --file "$nofile" $args
done
expect_usage_error "$blk" "--cache" --no-fio --file "$nofile" --cache nonee
expect_usage_error "$blk" "--engine" --no-fio --file "$nofile" --engine io_uring
expect_usage_error "$blk" "missing value for --seconds" --no-fio --file "$nofile" --seconds
expect_usage_error "$blk" "unknown argument" --no-fio --file "$nofile" --bogus
[ -e "$nofile" ] && fail "bench-blk made $nofile although its options were bad"

for args in "--inflight 8,x" "--inflight 81" "--repeat 0" "--latency-ms 5" "--latency-ms 9,3"; do
  flag=${args%% *}
  # shellcheck disable=SC2086
  expect_usage_error "$ckpt" "$flag" $args
done

for args in "--runs 0" "--runs 5x" "--qd 65" "--seed -1" "--hang-ms abc"; do
  flag=${args%% *}
  # shellcheck disable=SC2086
  expect_usage_error "$crash" "$flag" $args
done

zram_before=$(ls -d /sys/block/zram* 2>/dev/null)
expect_usage_error "$zram" "SIZE_MIB must be 600-65536" up 5
expect_usage_error "$zram" "SIZE_MIB must be 600-65536" up 65537
expect_usage_error "$zram" "SIZE_MIB must be 600-65536" up 1e3
expect_usage_error "$zram" "SIZE_MIB must be 600-65536" up 000000001024
expect_usage_error "$zram" "one SIZE_MIB at most" up 1024 2048
expect_usage_error "$zram" "up or down, not 'frob'" frob
expect_usage_error "$zram" "up or down, not ''"
expect_usage_error "$zram" "down takes no arguments" down now
[ "$(ls -d /sys/block/zram* 2>/dev/null)" = "$zram_before" ] || fail "a refused bench-zram changed the zram devices"

finish "bench options"
