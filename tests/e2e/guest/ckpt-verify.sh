# Guest half of tests/e2e/scenarios/checkpoint-disk.sh: the verifier writes,
# flushes and reads back /dev/vda in continuous cycles while the host
# checkpoints and restores ember under it, until the host writes STOP at the
# start of /dev/vdb (a read-only mailbox disk, so never captured into a
# checkpoint; read with O_DIRECT so the page cache cannot hide the host's
# write). It must end with VERIFY PASS.
ember-verify write-verify --device /dev/vda --size 16M --continuous --qd 16 --direct --seed 7 &
verifier=$!
while kill -0 "$verifier" 2>/dev/null; do
  word=$(dd if=/dev/vdb bs=4096 count=1 iflag=direct 2>/dev/null | head -c 4)
  if [ "$word" = STOP ]; then
    echo "EMBER-CKPT stop requested"
    kill -TERM "$verifier"
    break
  fi
  sleep 1
done
wait "$verifier"
echo "EMBER-CKPT verify-end rc=$?"
