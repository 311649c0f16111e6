# Counts for a while so a checkpoint can be taken mid-run; a restored guest
# carries on from where it was. Memory state (the shell's variable) and the
# wall-clock-free loop make a lost or replayed checkpoint visible as a gap or
# a repeat in the COUNT lines.
# With ember.count.rng=1 each line also says how many of 512 bytes came from
# /dev/hwrng (ember's entropy device), so a restored device is seen to work.
n=40
rng=
for arg in $(cat /proc/cmdline); do
  case $arg in
    ember.count=*) n=${arg#ember.count=} ;;
    ember.count.rng=1) rng=1 ;;
  esac
done
i=1
while [ "$i" -le "$n" ]; do
  if [ -n "$rng" ]; then
    echo "EMBER-GUEST COUNT $i rng=$(head -c 512 /dev/hwrng | wc -c)"
  else
    echo "EMBER-GUEST COUNT $i"
  fi
  i=$((i + 1))
  sleep 0.5
done
echo "EMBER-GUEST COUNT DONE"
