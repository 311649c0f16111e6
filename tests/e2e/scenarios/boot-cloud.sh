#!/bin/sh
# e2e-timeout: 420
# The stock Debian cloud kernel boots to init with 1 and 2 vcpus, sees ACPI,
# and its poweroff / reboot end ember with status 0 saying which; with
# --vcpu-cpus each vcpu thread runs on the host CPU given for it.
. "$E2E_DIR/lib.sh"

boot_guest cloud-cpus1 cloud 1 poweroff
expect_stdout 'EMBER-GUEST READY cpus=1 acpi=yes'
check cloud-boot-cpus1
expect_stdout 'EMBER-GUEST READY' && expect_rc 0 && expect_stderr_i 'power(ed)?[ -]?(off|down)'
check cloud-poweroff

# The two vcpus are placed crosswise (--vcpu-cpus): vcpu0 on the last CPU
# ember may use, vcpu1 on the first; their threads' CPU lists are sampled
# from /proc while the guest runs.
samples="$WORK/vcpu-cpus.txt"
: >"$samples"
sample_thread_cpus "$samples" 'vcpu[0-9]*' &
sampler=$!
boot_guest cloud-cpus2 cloud 2 reboot --vcpu-cpus "$(last_cpu),$(first_cpu)"
kill "$sampler" 2>/dev/null
wait "$sampler" 2>/dev/null
expect_stdout 'EMBER-GUEST READY cpus=2 acpi=yes'
check cloud-boot-cpus2
expect_stdout 'EMBER-GUEST READY' && expect_rc 0 && expect_stderr_i 'reboot'
check cloud-reboot
want="vcpu0=$(last_cpu) vcpu1=$(first_cpu) "
grep -q -x -F -- "$want" "$samples" ||
  _unmet "no sample showed the vcpu threads as '$want'; the last ones: $(grep -v '^$' "$samples" | tail -n 3 | tr '\n' '|')"
check cloud-vcpu-cpus
