# Powers the guest off at once (ACPI S5 through the FADT sleep registers).
poweroff -f
