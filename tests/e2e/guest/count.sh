# Counts for a while so a checkpoint can be taken mid-run; a restored guest
# carries on from where it was. Memory state (the shell's variable) and the
# wall-clock-free loop make a lost or replayed checkpoint visible as a gap or
# a repeat in the COUNT lines.
n=40
for arg in $(cat /proc/cmdline); do
  case $arg in ember.count=*) n=${arg#ember.count=} ;; esac
done
i=1
while [ "$i" -le "$n" ]; do
  echo "EMBER-GUEST COUNT $i"
  i=$((i + 1))
  sleep 0.5
done
echo "EMBER-GUEST COUNT DONE"
