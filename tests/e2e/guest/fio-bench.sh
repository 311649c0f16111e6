# Benchmark inside the guest (images built with guest-images/fio-adds): 4 KiB
# random reads and writes at QD1 and QD32 on /dev/vda through io_uring.
command -v fio >/dev/null || { echo "EMBER-GUEST FIO missing (build the image with guest-images/fio-adds)"; exit 1; }
for rw in randread randwrite; do
  for qd in 1 32; do
    iops=$(fio --name=b --filename=/dev/vda --direct=1 --rw=$rw --bs=4k --iodepth=$qd --ioengine=io_uring \
      --runtime=${FIO_SECONDS:-5} --time_based --output-format=terse --terse-version=3 2>/dev/null |
      awk -F';' -v rw=$rw '{ print (rw == "randread") ? $8 : $49 }')
    echo "EMBER-GUEST FIO rw=$rw qd=$qd iops=$iops"
  done
done
