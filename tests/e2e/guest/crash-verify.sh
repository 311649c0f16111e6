# Guest half of tests/e2e/scenarios/crash-*.sh: the in-guest verifier over
# /dev/vda (8 MiB) in continuous cycles (one pass, flush, read-verify), QD 16,
# logging every acknowledged flush (VERIFY FLUSHED ... writes=W) so the host
# can check the image after ember is killed. Six cycles (~25k requests), then
# VERIFY PASS.
ember-verify write-verify --device /dev/vda --size 8M --continuous --cycles 6 --qd 16 --direct --seed 11 \
  --log-flushes
echo "EMBER-CRASH verify-end rc=$?"
