# Crashes the guest kernel; pvpanic (if bound) reports it to the VMM.
if [ -d /sys/bus/platform/drivers/pvpanic-mmio ]; then
  echo "EMBER-GUEST pvpanic devices: $(ls /sys/bus/platform/drivers/pvpanic-mmio | grep -v -e bind -e uevent | tr '\n' ' ')"
fi
echo c >/proc/sysrq-trigger
