#!/bin/sh
# e2e-timeout: 240
# An ext4 image made on the host with `mke2fs -t ext4 -d` (disk-root.host) is the
# root file system of the stock cloud kernel (ext4 built in, virtio_blk a module):
# the initramfs's rdinit (tests/e2e/guest/disk-root-init.sh) loads the virtio
# modules, mounts /dev/vda and switch_roots to the image's /sbin/init, which
# prints the image's marker, writes a file and powers off. The host then finds
# that file's contents in the image.
. "$E2E_DIR/lib.sh"

prep="$WORK/../../host/disk-root"
img="$SCRATCH/root.img"
if [ ! -f "$prep/root.img" ] || [ ! -f "$prep/marker" ]; then
  fail disk-root-ext4 "no root image from the host step (tests/e2e/scenarios/disk-root.host; see $prep.log)"
  exit 0
fi
cp "$prep/root.img" "$img"
marker=$(cat "$prep/marker")

run_ember disk-root 180 run --kernel "$IMAGES/cloud/vmlinuz" --initrd "$IMAGES/cloud/initramfs.cpio.gz" \
  --cpus 1 --mem "$GUEST_MEM" --console stdio --disk "$img,id=root" \
  --cmdline "$GUEST_CMDLINE rdinit=/tests/disk-root-init.sh root=/dev/vda rw ember.root=/dev/vda"
echo "e2e: guest said: $(tr -d '\r' <"$OUT" | grep -a 'EMBER-ROOT' | sed 's/.*EMBER-ROOT //' | tr '\n' ';')"

# The guest switched to the ext4 image: its marker, / is /dev/vda as ext4 rw,
# and the initramfs's files are gone.
expect_stdout "EMBER-ROOT initramfs: switching to /dev/vda" &&
  expect_stdout "EMBER-ROOT marker=$marker" &&
  expect_stdout "EMBER-ROOT mount=/dev/vda,ext4,rw" &&
  expect_stdout "EMBER-ROOT initramfs-files=0"
check disk-root-ext4

# A file the guest wrote through ext4 reached the image.
expect_stdout "EMBER-ROOT written=$marker-written-by-guest" &&
  { grep -a -q "$marker-written-by-guest" "$img" || _unmet "the file the guest wrote is not in root.img"; }
check disk-root-write

# Clean shutdown: / remounted read-only, ember exits 0; e2fsck finds the
# file system clean where e2fsprogs exists (not in the sandbox's L1).
expect_stdout "EMBER-ROOT remount-ro=ok" && expect_rc 0
if command -v e2fsck >/dev/null 2>&1; then
  e2fsck -fn "$img" >"$WORK/e2fsck.txt" 2>&1 || _unmet "e2fsck -fn root.img: $(tail -n 3 "$WORK/e2fsck.txt" | tr '\n' ' ')"
else
  echo "e2e: no e2fsck here: root.img not checked for consistency"
fi
check disk-root-clean-poweroff
