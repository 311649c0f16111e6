#!/bin/sh
# /init of ember's L2 test guest (BusyBox). Mounts the pseudo filesystems, loads
# the modules listed in /etc/modules.order, reports what the guest sees, then
# runs /tests/NAME.sh for ember.run=NAME on the kernel command line, or an
# interactive shell. Powers off when either ends.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# The kernel opened /dev/console before devtmpfs existed; reopen it now.
[ -c /dev/console ] && exec </dev/console >/dev/console 2>&1
mkdir -p /dev/pts /tmp /run
mount -t devpts devpts /dev/pts 2>/dev/null
mount -t tmpfs tmpfs /tmp

while read -r mod; do
  [ -n "$mod" ] || continue
  out=$(insmod "/lib/modules/$mod" 2>&1) || case $out in
    *"File exists"*) ;;
    *) echo "ember-init: insmod $mod failed: $out" ;;
  esac
done </etc/modules.order

cpus=$(grep -c '^processor' /proc/cpuinfo)
acpi=no
[ -d /sys/firmware/acpi/tables ] && acpi=yes
echo "EMBER-GUEST READY cpus=$cpus acpi=$acpi kernel=$(uname -r)"

run=
for arg in $(cat /proc/cmdline); do
  case $arg in
    ember.run=*) run=${arg#ember.run=} ;;
  esac
done

if [ -n "$run" ]; then
  if [ -f "/tests/$run.sh" ]; then
    sh "/tests/$run.sh"
    echo "EMBER-GUEST EXIT rc=$?"
  else
    echo "EMBER-GUEST EXIT rc=127 (no /tests/$run.sh)"
  fi
else
  echo "ember-init: interactive shell; exit it to power off"
  setsid cttyhack sh -l
fi
sync
poweroff -f
