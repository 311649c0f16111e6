#!/bin/sh
# Used as rdinit= (PID 1 from the initramfs) by tests/e2e/scenarios/disk-root.sh,
# instead of /init: loads the modules the stock kernel needs for virtio-blk
# (virtio_blk is a module in Debian's kernels, so root= alone cannot work),
# mounts ember.root=DEV (ext4) and switch_roots to its /sbin/init.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
[ -c /dev/console ] && exec </dev/console >/dev/console 2>&1

while read -r mod; do
  [ -n "$mod" ] && insmod "/lib/modules/$mod" 2>/dev/null
done </etc/modules.order

root=
for arg in $(cat /proc/cmdline); do
  case $arg in
    ember.root=*) root=${arg#ember.root=} ;;
  esac
done
echo "EMBER-ROOT initramfs: root=$root"

die() {
  echo "EMBER-ROOT FAILED: $*"
  cat /proc/partitions
  poweroff -f
}
[ -n "$root" ] || die "no ember.root= on the command line"
# virtio_blk probes asynchronously from the insmod; give the disk a moment.
i=0
while [ ! -b "$root" ] && [ $i -lt 50 ]; do
  sleep 0.2
  i=$((i + 1))
done
[ -b "$root" ] || die "$root did not appear"
mkdir -p /newroot
mount -t ext4 -o rw "$root" /newroot || die "mount -t ext4 $root failed"
[ -x /newroot/sbin/init ] || die "$root has no /sbin/init"
echo "EMBER-ROOT initramfs: switching to $root"
mount --move /dev /newroot/dev
umount /proc /sys
exec switch_root /newroot /sbin/init
