# Guest half of tests/e2e/scenarios/checkpoint-disk.sh: the verifier writes,
# flushes and reads back /dev/vda while the host checkpoints and restores
# ember several times under it. It must end with VERIFY PASS.
ember-verify write-verify --device /dev/vda --size 16M --passes 14 --qd 16 --direct --seed 7
echo "EMBER-CKPT verify-end rc=$?"
