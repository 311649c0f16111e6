# Guest half of tests/e2e/scenarios/disk-verify.sh: ember-verify on vda (16 MiB,
# ember's io_uring engine; 3 passes) and vdb (8 MiB, sync engine; 2 passes),
# sizes that keep the boot short under TCG (~5 ms per request there). Each run
# ends with "EMBER-DISK verify-end dev=vdX rc=N" after ember-verify's own lines.
if [ ! -x /bin/ember-verify ]; then
  echo "EMBER-DISK verify-missing: /bin/ember-verify is not in the initramfs"
  exit 1
fi
for spec in "vda 1 16M 3" "vdb 2 8M 2"; do
  # shellcheck disable=SC2086 # split the spec into its four words
  set -- $spec
  dev=$1 seed=$2 size=$3 passes=$4
  echo "EMBER-DISK verify-begin dev=$dev seed=$seed size=$(cat "/sys/block/$dev/size" 2>&1)"
  t0=$(cut -d' ' -f1 /proc/uptime)
  ember-verify write-verify --device "/dev/$dev" --size "$size" --passes "$passes" --qd 4 --direct --seed "$seed"
  rc=$?
  echo "EMBER-DISK verify-end dev=$dev rc=$rc uptime_from=$t0 uptime_to=$(cut -d' ' -f1 /proc/uptime)"
done
