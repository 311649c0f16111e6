# Reboots the guest at once (FADT reset register or i8042, per reboot=).
reboot -f
