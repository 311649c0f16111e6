#!/bin/sh
# e2e-timeout: 300
# virtio-blk in a stock Debian cloud kernel, one boot with eight disks:
#   vda  16 MiB writable, zero-filled         (--disk rw16.img,id=rw16)
#   vdb  24 MiB readonly, with random pieces   (--disk ro24.img,readonly,id=ro24,cache=none:
#        O_DIRECT on the host, one piece at an offset that is not page-aligned)
#   vdc..vdh  1..6 MiB, each named in its last sector (--disk vdX.img,id=vdX;
#        vdg with bw=1M, vdh with iothread-cpu= the last CPU ember may use)
#   and the entropy device (--entropy) in the ninth virtio slot, after them
# Checks: the kernel finds all through ACPI (LNRO0005) with the right sizes and
# GET_ID serials; it reads the pieces the host put in vdb bit-exact; what it
# copies onto vda (page cache, O_DIRECT, sub-page) reaches the host image
# bit-exact and nowhere else; vdb is read-only in the guest, writes to it fail
# and its image is unchanged; vdh's I/O thread runs on the CPU asked for, the
# others where ember may run, not only on the placed vcpu's CPU; vdg's rate
# limit holds the guest's read of all of it to 1 MiB/s; --metrics-path
# gets the final counts when the guest has powered off (what it wrote to vda,
# nothing written to vdb, exits of its vcpu). Guest half: tests/e2e/guest/disk-io.sh.
. "$E2E_DIR/lib.sh"

rw="$SCRATCH/rw16.img"
ro="$DIRECT_SCRATCH/ro24.img"
ro_opts=readonly,id=ro24,cache=none
if ! takes_o_direct "$DIRECT_SCRATCH"; then
  echo "e2e: $DIRECT_SCRATCH has no O_DIRECT: the readonly disk uses cache=writeback"
  ro_opts=readonly,id=ro24
fi
pat="$SCRATCH/pattern.bin"
expect="$SCRATCH/rw16.expected"

# sectors FILE DST_SECTOR SRC_SECTOR COUNT: copies COUNT sectors of the pattern
# into FILE (in place).
put() {
  dd if="$pat" of="$1" bs=512 seek="$2" skip="$3" count="$4" conv=notrunc 2>/dev/null
}
# psha SRC_SECTOR COUNT: sha256 of a piece of the pattern.
psha() {
  dd if="$pat" bs=512 skip="$1" count="$2" 2>/dev/null | sha256sum | cut -d' ' -f1
}
# field WHAT KEY: the value of KEY= on the guest's "EMBER-DISK WHAT ..." line.
field() {
  tr -d '\r' <"$OUT" | grep -a "EMBER-DISK $1 " | head -n1 | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n1
}

# 1 MiB of random data: pieces r1 = [0, 256K), r2 = [256K, 768K), r3 = [768K, 1M)
# (sectors 0, 512, 1536). The guest's script uses the same table.
head -c 1048576 /dev/urandom >"$pat"
truncate -s 16M "$rw"
truncate -s 24M "$ro"
put "$ro" 0 0 512          # r1 at the start
put "$ro" 10241 512 1024   # r2 at 5 MiB + 512 (not page-aligned)
put "$ro" 48640 1536 512   # r3 in the last 256 KiB
r1=$(psha 0 512)
r2=$(psha 512 1024)
r3=$(psha 1536 512)
ro_before=$(sha256sum "$ro" | cut -d' ' -f1)
# What vda must hold afterwards: zeros plus the copies the guest makes.
truncate -s 16M "$expect"
put "$expect" 2048 0 512     # r1 -> 1 MiB
put "$expect" 14344 512 1024 # r2 -> 7 MiB + 4 KiB
put "$expect" 32256 1536 512 # r3 -> last 256 KiB
put "$expect" 7 0 1          # first sector of r1 -> byte 3584

# Six more disks, the most ember takes (8): vdc..vdh of 1..6 MiB, the name in
# each one's last sector.
extra=""
k=1
for n in vdc vdd vde vdf vdg vdh; do
  truncate -s "${k}M" "$SCRATCH/$n.img"
  printf 'ember-%s' "$n" | dd of="$SCRATCH/$n.img" bs=512 seek=$((k * 2048 - 1)) conv=notrunc 2>/dev/null
  extra="$extra --disk $SCRATCH/$n.img,id=$n"
  [ "$n" != vdg ] || extra="$extra,bw=1M"
  k=$((k + 1))
done

# vdh's I/O thread is placed on the last CPU ember may use (iothread-cpu=),
# the vcpu on the first (--vcpu-cpus). The vcpu starts every I/O thread, and
# the seven unplaced ones must not inherit its CPU. While the guest runs, the
# I/O threads' CPU lists are sampled from /proc.
extra="${extra},iothread-cpu=$(last_cpu)"
samples="$WORK/io-thread-cpus.txt"
: >"$samples"
sample_thread_cpus "$samples" 'ember-blk-io' &
sampler=$!
# And every thread's count of system-call filters: the vcpu and the I/O
# threads, which serve the guest's accesses and parse its descriptors, add
# their own.
filters="$WORK/seccomp-filters.txt"
: >"$filters"
sample_thread_status "$filters" '*' Seccomp_filters: &
filter_sampler=$!

metrics="$WORK/metrics.json"
rm -f "$metrics"
# shellcheck disable=SC2086 # $extra: the scratch paths hold no blanks
boot_guest disk-io cloud 1 disk-io --vcpu-cpus "$(first_cpu)" --disk "$rw,id=rw16" --disk "$ro,$ro_opts" $extra \
  --entropy --metrics-path "$metrics"
kill "$sampler" "$filter_sampler" 2>/dev/null
wait "$sampler" "$filter_sampler" 2>/dev/null
echo "e2e: guest saw: $(tr -d '\r' <"$OUT" | grep -a 'EMBER-DISK found' | sed 's/.*EMBER-DISK found //' | tr '\n' ';')"

# 1. Both disks, in --disk order, sized right, found through ACPI.
expect_stdout 'EMBER-DISK found vda size=32768 ro=0 ' &&
  expect_stdout 'EMBER-DISK found vdb size=49152 ro=1 ' &&
  expect_stdout 'EMBER-DISK found vda .* sysfs=[^ ]*LNRO0005' &&
  expect_stdout 'EMBER-DISK found vdb .* sysfs=[^ ]*LNRO0005' &&
  expect_stdout 'getsize64=16777216 vdb getsize64=25165824 vdb getro=1'
check disk-detect-acpi-sizes

# All eight disks: vdc..vdh sized 1..6 MiB in --disk order, each read right.
k=1
for n in vdc vdd vde vdf vdg vdh; do
  expect_stdout "EMBER-DISK found $n size=$((k * 2048)) ro=0 serial=$n " || break
  k=$((k + 1))
done
expect_stdout 'EMBER-DISK tails vdc=ember-vdc vdd=ember-vdd vde=ember-vde vdf=ember-vdf vdg=ember-vdg vdh=ember-vdh'
check disk-detect-eight-disks

# A ninth virtio device beside eight disks (its own slot and GSI): the kernel
# chose it as its hardware RNG and read from it.
expect_stdout 'EMBER-DISK rng current=virtio_rng.0 read=4096'
check disk-entropy-ninth-slot

# iothread-cpu=: while all eight disks ran, vdh's I/O thread was on the last
# CPU alone and the other seven could run on every CPU ember may use, not
# only on the vcpu's. With one CPU allowed, all eight show it.
want=$( (echo "ember-blk-io=$(last_cpu)"; for _ in 1 2 3 4 5 6 7; do echo "ember-blk-io=$(allowed_cpus)"; done) | sort | tr '\n' ' ')
grep -q -x -F -- "$want" "$samples" ||
  _unmet "no sample showed the eight I/O threads as '$want'; the last ones: $(grep -v '^$' "$samples" | tail -n 3 | tr '\n' '|')"
check disk-iothread-cpu

# Seccomp: a sample with the vcpu under the process's filter and its own
# second one, and all eight I/O threads, which the vcpu started at DRIVER_OK,
# under those two and a third of their own (a thread just started may be
# sampled before it confines itself, so not every sample need show it). The
# main thread, which the guest does not reach, has the process's only.
confined=$(grep 'vcpu0=2 ' "$filters" | grep -E '(^| )ember=1 ' | while read -r line; do
  n=$(echo "$line" | tr ' ' '\n' | grep -c -x 'ember-blk-io=3')
  [ "$n" != 8 ] || echo yes
done | head -n 1)
[ "$confined" = yes ] ||
  _unmet "no sample showed vcpu0 with 2 filters, the main thread with 1 and eight I/O threads with 3; the last ones: $(grep -v '^$' "$filters" | tail -n 2 | tr '\n' '|')"
check disk-io-thread-seccomp

# The serial (VIRTIO_BLK_T_GET_ID) is the id= given.
expect_stdout 'EMBER-DISK found vda .* serial=rw16 ' && expect_stdout 'EMBER-DISK found vdb .* serial=ro24 '
check disk-get-id

# 2a. Reads: the pieces the host put in vdb, as the guest reads them.
[ "$(field read r1)" = "$r1" ] || _unmet "r1 (vdb sectors 0+512) read as '$(field read r1)', expected $r1"
[ "$(field read r2)" = "$r2" ] || _unmet "r2 (vdb sectors 10241+1024, O_DIRECT) read as '$(field read r2)', expected $r2"
[ "$(field read r3)" = "$r3" ] || _unmet "r3 (vdb last 256 KiB) read as '$(field read r3)', expected $r3"
check disk-read-bit-exact

# 2b. Writes: the host image equals the expected one, byte for byte.
expect_stdout 'EMBER-DISK write status=ok'
if ! cmp "$expect" "$rw" >"$WORK/cmp.txt" 2>&1; then
  _unmet "rw16.img differs from the expected image: $(head -n1 "$WORK/cmp.txt")"
  cmp -l "$expect" "$rw" 2>/dev/null | head -n 5 | sed 's/^/    | byte (1-based), expected, got (octal): /'
fi
check disk-write-bit-exact

# The guest reads its own writes back from the device (caches dropped).
[ "$(field readback w1)" = "$r1" ] && [ "$(field readback w2)" = "$r2" ] && [ "$(field readback w3)" = "$r3" ] ||
  _unmet "read-back after write differs: $(tr -d '\r' <"$OUT" | grep -a 'EMBER-DISK readback')"
check disk-write-readback

# 3. readonly: the guest sees it read-only, writes fail, the image is unchanged.
cached_rc=$(field ro-write cached_rc)
direct_rc=$(field ro-write direct_rc)
echo "e2e: writes to the readonly disk: $(tr -d '\r' <"$OUT" | grep -a 'EMBER-DISK ro-write' | sed 's/.*ro-write //')"
[ -n "$cached_rc" ] || _unmet "the guest did not reach the readonly test"
[ "$cached_rc" != 0 ] || _unmet "a page-cache write to the readonly vdb succeeded in the guest"
[ "$direct_rc" != 0 ] || _unmet "an O_DIRECT write to the readonly vdb succeeded in the guest"
[ "$(sha256sum "$ro" | cut -d' ' -f1)" = "$ro_before" ] || _unmet "ro24.img changed although the disk is readonly"
[ "$(field ro-after r1)" = "$r1" ] || _unmet "vdb's first piece reads differently after the refused writes"
check disk-readonly

# --metrics-path: the last line holds the final counts. The guest copied 1 MiB
# and a sector onto vda (written back in pages, so at least that much), read
# the 1 MiB of pieces from vdb and wrote nothing there (refused in the guest
# before any request), and each disk was read.
m() { metrics_field "$metrics" "$@"; }
echo "e2e: metrics, last of $(wc -l <"$metrics" 2>/dev/null) lines: $(tail -n 1 "$metrics" 2>/dev/null)"
[ "$(m vm state)" = exited ] || _unmet "the last metrics line's state is '$(m vm state)', not exited"
[ "$(m disk:rw16 bytes_written)" -ge 1049088 ] 2>/dev/null ||
  _unmet "vda bytes_written is '$(m disk:rw16 bytes_written)', the guest wrote 1049088 bytes"
[ "$(m disk:rw16 writes)" -ge 1 ] 2>/dev/null || _unmet "vda writes is '$(m disk:rw16 writes)'"
[ "$(m disk:rw16 host_errors)" = 0 ] || _unmet "vda host_errors is '$(m disk:rw16 host_errors)'"
[ "$(m disk:ro24 bytes_read)" -ge 1048576 ] 2>/dev/null ||
  _unmet "vdb bytes_read is '$(m disk:ro24 bytes_read)', the guest read 1048576 bytes of pieces"
[ "$(m disk:ro24 bytes_written)" = 0 ] && [ "$(m disk:ro24 writes)" = 0 ] ||
  _unmet "the readonly vdb shows writes: $(m disk:ro24 writes) requests, $(m disk:ro24 bytes_written) bytes"
for n in vdc vdd vde vdf vdg vdh; do
  [ "$(m "disk:$n" reads)" -ge 1 ] 2>/dev/null || _unmet "$n shows '$(m "disk:$n" reads)' reads; the guest read its tail"
done
[ "$(m vcpu:0 pio_exits)" -ge 1 ] 2>/dev/null && [ "$(m vcpu:0 mmio_exits)" -ge 1 ] 2>/dev/null &&
  [ "$(m vcpu:0 exits)" -ge "$(($(m vcpu:0 pio_exits) + $(m vcpu:0 mmio_exits)))" ] 2>/dev/null ||
  _unmet "vcpu0's exits do not add up: $(m vcpu:0 exits) in all, $(m vcpu:0 pio_exits) port I/O, $(m vcpu:0 mmio_exits) MMIO"
[ -z "$(m vcpu:1 exits)" ] || _unmet "a second vcpu in the metrics of a one-vcpu guest"
check disk-metrics

# bw=1M on vdg: the guest read all 5 MiB of it with O_DIRECT, bit-exact, and
# the limit held requests back. Its bucket holds 1 MiB, so the other 4 MiB
# took at least 4 s to refill; the guest's clock (kvmclock) checks 3.
vdg_sha=$(sha256sum "$SCRATCH/vdg.img" | cut -d' ' -f1)
[ "$(field ratelimit sha)" = "$vdg_sha" ] ||
  _unmet "the guest read vdg as '$(field ratelimit sha)', expected $vdg_sha"
cs() { echo "$1" | tr -d '.'; } # /proc/uptime seconds to centiseconds
took=$(($(cs "$(field ratelimit t1)") - $(cs "$(field ratelimit t0)"))) 2>/dev/null || took=0
echo "e2e: the guest read vdg (5 MiB, bw=1M) in $took cs; throttled: $(m disk:vdg throttled)"
[ "$took" -ge 300 ] || _unmet "reading vdg took $took cs; at 1 MiB/s after a 1 MiB bucket it needs 400"
[ "$(m disk:vdg throttled)" -ge 1 ] 2>/dev/null || _unmet "vdg's throttled count is '$(m disk:vdg throttled)'"
[ "$(m disk:vdg bytes_read)" -ge 5242880 ] 2>/dev/null ||
  _unmet "vdg bytes_read is '$(m disk:vdg bytes_read)', the guest read 5242880 bytes"
[ "$(m disk:rw16 throttled)" = 0 ] || _unmet "vda, without a limit, shows '$(m disk:rw16 throttled)' throttled"
check disk-rate-limit

# The guest finished and powered off: ember exits 0.
expect_stdout 'EMBER-DISK done' && expect_rc 0
check disk-io-poweroff
