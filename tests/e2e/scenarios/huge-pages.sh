#!/bin/sh
# e2e-timeout: 300
# Guest RAM on 2 MiB huge pages (--huge-pages 2M, Firecracker's huge_pages
# "2M"): the scenario reserves a pool (vm.nr_hugepages, as root: in the
# sandbox it is its own L1's; directly on a host it puts the old size back at
# the end). A guest boots and counts on them, its RAM taken from the pool for
# as long as ember runs and given back when it exits; a checkpoint of it
# records the huge pages, and its restore maps RAM from the pool again and
# counts on; with too few pages free, ember refuses before the guest starts,
# saying how many it needs and how many are free.
. "$E2E_DIR/lib.sh"

img="$IMAGES/cloud"
pool=/proc/sys/vm/nr_hugepages
sysfs=/sys/kernel/mm/hugepages/hugepages-2048kB
need=$((${GUEST_MEM%M} / 2))
orig=$(cat "$pool" 2>/dev/null || echo 0)
restore_pool() { echo "$orig" >"$pool" 2>/dev/null; }
trap restore_pool EXIT
# Pages of the pool in use or promised to a mapping (reserved, not yet touched).
pool_taken() { echo $(($(cat "$sysfs/nr_hugepages") - $(cat "$sysfs/free_hugepages") + $(cat "$sysfs/resv_hugepages"))); }

# reserve N: sizes the pool to N pages; fails the check when it cannot.
reserve() {
  echo "$1" >"$pool" 2>/dev/null
  [ "$(cat "$sysfs/nr_hugepages")" -ge "$1" ] ||
    _unmet "could not reserve $1 huge pages (have $(cat "$sysfs/nr_hugepages"); needs root and free memory)"
}

ck="$SCRATCH/hp-ck"
rm -rf "$ck"
reserve $((need + 8))
taken_before=$(pool_taken)
run_bg hp-run run --kernel "$img/vmlinuz" --initrd "$img/initramfs.cpio.gz" --cpus 1 --mem "$GUEST_MEM" \
  --huge-pages 2M --console stdio --cmdline "$(guest_cmdline count) ember.count=12" --checkpoint-dir "$ck"
taken_running=
if wait_for "$OUT" 'EMBER-GUEST COUNT 3([^0-9]|$)' 240; then
  taken_running=$(pool_taken)
  kill -USR1 "$PID"
else
  _unmet "the guest on huge pages never counted to 3"
  kill "$PID" 2>/dev/null
fi
finish_bg
taken_after=$(pool_taken)
echo "e2e: huge pages taken: $taken_before before, $taken_running while the guest ran, $taken_after after; $need for its RAM"
expect_rc 0 && expect_stdout 'EMBER-GUEST READY' && expect_stderr 'checkpoint written to' && {
  [ "${taken_running:-0}" -ge $((taken_before + need)) ] ||
    _unmet "while the guest ran the pool had ${taken_running:-?} pages taken, not the $need its RAM needs on top of $taken_before"
} && {
  [ "$taken_after" -eq "$taken_before" ] ||
    _unmet "after ember exited $taken_after pages stayed taken (before: $taken_before)"
}
check huge-pages-boot

run_ember hp-info 120 snapshot-info "$ck"
expect_rc 0 && expect_stdout "memory +${GUEST_MEM%M} MiB, 2 MiB huge pages" && expect_stdout 'checksums ok'
check huge-pages-checkpoint-info

taken_running=
run_bg hp-restore restore "$ck" --console stdio
if wait_for "$OUT" 'EMBER-GUEST COUNT 6([^0-9]|$)' 240; then
  taken_running=$(pool_taken)
fi
finish_bg
expect_rc 0 && expect_stdout 'COUNT DONE' && expect_no_log 'EMBER-GUEST READY' && {
  [ "${taken_running:-0}" -ge $((taken_before + need)) ] ||
    _unmet "while the restored guest ran the pool had ${taken_running:-?} pages taken, not $need more than $taken_before"
}
check huge-pages-restore

# One page short: refused before the guest starts (setup error, status 1).
reserve $((taken_before + need - 1))
run_ember hp-too-few 120 run --kernel "$img/vmlinuz" --initrd "$img/initramfs.cpio.gz" --mem "$GUEST_MEM" \
  --huge-pages 2M --console stdio --cmdline "$(guest_cmdline poweroff)"
expect_rc 1 && expect_stderr "${GUEST_MEM%M} MiB of guest RAM needs $need free 2 MiB huge pages and the host has [0-9]+" &&
  expect_stderr 'sysctl vm.nr_hugepages' && expect_no_log 'EMBER-GUEST READY'
check huge-pages-too-few-refused
