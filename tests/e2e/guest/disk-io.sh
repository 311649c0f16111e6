# Guest half of tests/e2e/scenarios/disk-io.sh (the scenario holds the layout:
# keep the numbers here in step with it). Disks, in --disk order:
#   vda  16 MiB, writable, zero-filled: this script copies pattern pieces onto it
#   vdb  24 MiB, readonly, with pattern pieces the host put in before boot
#   vdc..vdh  1..6 MiB, each with its own name in its last sector
# Prints "EMBER-DISK ..." lines that the scenario checks; it checks nothing itself.
sectors16=32768 # 16 MiB
sectors24=49152 # 24 MiB

# What the guest found, and where it came from (an ACPI LNRO0005 platform device).
for d in /sys/block/vd*; do
  [ -e "$d" ] || { echo "EMBER-DISK none: no /sys/block/vd*"; break; }
  n=${d##*/}
  echo "EMBER-DISK found $n size=$(cat "$d/size") ro=$(cat "$d/ro") serial=$(cat "$d/serial" 2>/dev/null) sysfs=$(readlink -f "$d")"
done
# The six small extra disks (vdc..vdh): each one's last sector holds its name.
tails=""
for n in vdc vdd vde vdf vdg vdh; do
  s=$(cat /sys/block/$n/size 2>/dev/null || echo 0)
  t=$([ "$s" -gt 0 ] && dd if=/dev/$n bs=512 skip=$((s - 1)) count=1 2>/dev/null | tr -d '\000')
  tails="$tails $n=${t:-none}"
done
echo "EMBER-DISK tails$tails"

# vdg (5 MiB) has a rate limit of 1 MiB/s on the host (bw=1M): read all of it
# past the page cache, timed by the guest's clock.
t0=$(cut -d' ' -f1 /proc/uptime)
s=$(dd if=/dev/vdg bs=65536 iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
t1=$(cut -d' ' -f1 /proc/uptime)
echo "EMBER-DISK ratelimit sha=$s t0=$t0 t1=$t1"
# The entropy device (--entropy) in the ninth virtio slot, after the eight disks.
echo "EMBER-DISK rng current=$(cat /sys/class/misc/hw_random/rng_current 2>/dev/null) read=$(head -c 4096 /dev/hwrng | wc -c)"
echo "EMBER-DISK blockdev vda getsize64=$(blockdev --getsize64 /dev/vda 2>&1) vdb getsize64=$(blockdev --getsize64 /dev/vdb 2>&1) vdb getro=$(blockdev --getro /dev/vdb 2>&1)"

# sha SECTOR COUNT [DIRECT]: sha256 of COUNT sectors of vdb from SECTOR.
sha() {
  if [ -n "${3:-}" ]; then
    dd if=/dev/vdb bs=512 skip="$1" count="$2" iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1
  else
    dd if=/dev/vdb bs=512 skip="$1" count="$2" 2>/dev/null | sha256sum | cut -d' ' -f1
  fi
}

# Read test: the three pieces the host wrote into vdb (first, unaligned middle,
# last 256 KiB), one of them with O_DIRECT.
echo "EMBER-DISK read r1=$(sha 0 512) r2=$(sha 10241 1024 direct) r3=$(sha $((sectors24 - 512)) 512)"

# Write test: copy the pieces from vdb onto vda (offsets in bytes; the scenario
# builds the expected image from the same table):
#   r1 -> vda 1 MiB (page cache)
#   r2 -> vda 7 MiB + 4 KiB (O_DIRECT, 64 KiB requests)
#   r3 -> vda last 256 KiB (page cache)
#   first 512 bytes of r1 -> vda byte 3584 (a sub-page write: read-modify-write)
w_status=ok
copy() { # copy SRC_BYTE DST_BYTE LEN [direct]
  if [ -n "${4:-}" ]; then
    dd if=/dev/vdb of=/dev/vda bs=65536 iflag=skip_bytes,count_bytes,fullblock skip="$1" count="$3" \
      oflag=seek_bytes,direct seek="$2" 2>/tmp/dd.err
  else
    dd if=/dev/vdb of=/dev/vda bs=65536 iflag=skip_bytes,count_bytes,fullblock skip="$1" count="$3" \
      oflag=seek_bytes seek="$2" 2>/tmp/dd.err
  fi || { w_status="dd-failed($1->$2): $(tr '\n' ' ' </tmp/dd.err)"; }
}
copy 0 1048576 262144
copy $((10241 * 512)) $((7 * 1048576 + 4096)) 524288 direct
copy $((sectors24 * 512 - 262144)) $((sectors16 * 512 - 262144)) 262144
copy 0 3584 512
sync
blockdev --flushbufs /dev/vda
echo "EMBER-DISK write status=$w_status"

# Read back what was written, from the device (caches dropped).
echo 3 >/proc/sys/vm/drop_caches
vsha() {
  dd if=/dev/vda bs=512 skip="$1" count="$2" iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1
}
echo "EMBER-DISK readback w1=$(vsha 2048 512) w2=$(vsha 14344 1024) w3=$(vsha $((sectors16 - 512)) 512)"

# Readonly test: the guest must see vdb read-only, and a write must fail.
# Both a page-cache write (fails at open or write) and an O_DIRECT one.
dd if=/dev/zero of=/dev/vdb bs=4096 count=1 seek=100 conv=fsync 2>/tmp/ro1.err
ro1=$?
dd if=/dev/zero of=/dev/vdb bs=4096 count=1 seek=200 oflag=direct 2>/tmp/ro2.err
ro2=$?
echo "EMBER-DISK ro-write cached_rc=$ro1 direct_rc=$ro2 sysfs_ro=$(cat /sys/block/vdb/ro) err=$(head -n1 /tmp/ro1.err) | $(head -n1 /tmp/ro2.err)"
echo "EMBER-DISK ro-after r1=$(sha 0 512 direct)"
echo "EMBER-DISK done"
