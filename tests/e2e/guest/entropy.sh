# Guest half of boot-cloud's entropy checks: which hardware RNG the kernel
# chose, and what reading /dev/hwrng gives. Prints "EMBER-RNG ..." lines that
# the scenario checks; it checks nothing itself.
hw=/sys/class/misc/hw_random
echo "EMBER-RNG current=$(cat $hw/rng_current 2>/dev/null) available=$(cat $hw/rng_available 2>/dev/null | tr ' ' ,)"
# Two reads of 64 KiB: their sizes, whether they differ, and how well they
# compress (random bytes do not: gzip makes them larger; zeroes or a repeated
# block would shrink to almost nothing).
a=$(head -c 65536 /dev/hwrng | sha256sum | cut -d' ' -f1)
b=$(head -c 65536 /dev/hwrng | sha256sum | cut -d' ' -f1)
n=$(head -c 65536 /dev/hwrng | wc -c)
gz=$(head -c 65536 /dev/hwrng | gzip -c | wc -c)
same=no
[ "$a" = "$b" ] && same=yes
echo "EMBER-RNG read bytes=$n gzip=$gz same=$same"
