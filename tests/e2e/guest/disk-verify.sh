# Guest half of tests/e2e/scenarios/disk-verify.sh: ember-verify on vda (the
# whole 64 MiB disk, ember's io_uring engine; one pass at 16 requests in
# flight: 16k writes, then 16k reads) and vdb (8 MiB, sync engine; 2 passes at
# 4 in flight) and vdc (16 MiB, O_DIRECT on the host with poll=; one pass
# at 16 in flight). Under TCG a request costs ~5 ms as the guest sees it, so the
# deeper queue on vda keeps the boot short. Each run ends with
# "EMBER-DISK verify-end dev=vdX rc=N" after ember-verify's own lines.
if [ ! -x /bin/ember-verify ]; then
  echo "EMBER-DISK verify-missing: /bin/ember-verify is not in the initramfs"
  exit 1
fi
for spec in "vda 1 64M 1 16" "vdb 2 8M 2 4" "vdc 3 16M 1 16"; do
  # shellcheck disable=SC2086 # split the spec into its five words
  set -- $spec
  dev=$1 seed=$2 size=$3 passes=$4 qd=$5
  echo "EMBER-DISK verify-begin dev=$dev seed=$seed size=$(cat "/sys/block/$dev/size" 2>&1)"
  t0=$(cut -d' ' -f1 /proc/uptime)
  ember-verify write-verify --device "/dev/$dev" --size "$size" --passes "$passes" --qd "$qd" --direct --seed "$seed"
  rc=$?
  echo "EMBER-DISK verify-end dev=$dev rc=$rc uptime_from=$t0 uptime_to=$(cut -d' ' -f1 /proc/uptime)"
done
