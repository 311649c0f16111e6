#!/bin/sh
# /init of the nested sandbox's L1 guest (BusyBox, booted by QEMU TCG with an
# emulated AMD SVM CPU). Loads KVM so /dev/kvm works, mounts the host directory
# that tools/sandbox shares over 9p at /mnt/ember, runs its .ember-l1-main.sh,
# prints "EMBER-L1 EXIT rc=N" and powers off.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
[ -c /dev/console ] && exec </dev/console >/dev/console 2>&1
mkdir -p /dev/pts /tmp /run /mnt/ember
mount -t devpts devpts /dev/pts 2>/dev/null
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run

while read -r mod; do
  [ -n "$mod" ] || continue
  out=$(insmod "/lib/modules/$mod" 2>&1) || case $out in
    *"File exists"*) ;;
    *) echo "EMBER-L1 WARN insmod $mod failed: $out" ;;
  esac
done </etc/modules.order

fail() {
  echo "EMBER-L1 ERROR $*"
  echo "EMBER-L1 EXIT rc=125"
  poweroff -f
}

[ -c /dev/kvm ] || fail "no /dev/kvm after loading kvm_amd (does the CPU model offer svm?)"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=none ember /mnt/ember ||
  fail "cannot mount the shared directory (9p tag ember)"
# The scratch disk tools/sandbox attaches (ext4, made fresh for this run).
mkdir -p /mnt/disk
mount -t ext4 /dev/vda /mnt/disk || fail "cannot mount the scratch disk (/dev/vda, ext4)"
export EMBER_L1_DISK=/mnt/disk

tty=
for arg in $(cat /proc/cmdline); do
  case $arg in
    ember.l1tty=*) tty=${arg#ember.l1tty=} ;;
  esac
done
echo "EMBER-L1 READY kvm=yes cpus=$(grep -c '^processor' /proc/cpuinfo) disk=$EMBER_L1_DISK uptime=$(cut -d' ' -f1 /proc/uptime)"

cd /mnt/ember || fail "cannot enter /mnt/ember"
if [ "$tty" = raw ]; then
  # Interactive: pass every key byte-by-byte to ember, whose guest echoes it.
  stty raw -echo
  setsid cttyhack sh ./.ember-l1-main.sh
  rc=$?
  stty sane
else
  sh ./.ember-l1-main.sh
  rc=$?
fi
cd /
echo "EMBER-L1 EXIT rc=$rc uptime=$(cut -d' ' -f1 /proc/uptime)"
sync
umount /mnt/ember /mnt/disk 2>/dev/null
poweroff -f
