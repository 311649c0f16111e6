# Guest half of tests/e2e/scenarios/disk-verify.sh: ember-verify over two 64 MiB
# disks, vda on ember's io_uring engine and vdb on its sync engine. Each run ends
# with "EMBER-DISK verify-end dev=vdX rc=N" after ember-verify's own lines.
if [ ! -x /bin/ember-verify ]; then
  echo "EMBER-DISK verify-missing: /bin/ember-verify is not in the initramfs"
  exit 1
fi
for spec in vda:1 vdb:2; do
  dev=${spec%%:*}
  seed=${spec#*:}
  echo "EMBER-DISK verify-begin dev=$dev seed=$seed size=$(cat /sys/block/$dev/size 2>&1)"
  t0=$(cut -d' ' -f1 /proc/uptime)
  ember-verify write-verify --device "/dev/$dev" --size 64M --qd 4 --direct --seed "$seed"
  rc=$?
  echo "EMBER-DISK verify-end dev=$dev rc=$rc uptime_from=$t0 uptime_to=$(cut -d' ' -f1 /proc/uptime)"
done
