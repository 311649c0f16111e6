#!/bin/sh
# e2e-timeout: 420
# The stock Debian cloud kernel boots to init with 1 and 2 vcpus, sees ACPI,
# and its poweroff / reboot end ember with status 0 saying which; with
# --vcpu-cpus each vcpu thread runs on the host CPU given for it. SIGTERM
# stops a running guest cleanly: status 143, the final metrics line written.
# A Firecracker JSON configuration file (--no-api --config-file) builds the
# VM it describes: vcpus, command line, a drive, the entropy device, the
# metrics file; the guest reads random bytes from that device's /dev/hwrng.
. "$E2E_DIR/lib.sh"

# Every thread of ember runs under its system-call filter (seccomp mode 2),
# sampled from /proc while the guest boots: the vcpu and the others.
filtered="$WORK/seccomp-on.txt"
: >"$filtered"
sample_seccomp "$filtered" &
sampler=$!
boot_guest cloud-cpus1 cloud 1 poweroff
kill "$sampler" 2>/dev/null
wait "$sampler" 2>/dev/null
expect_stdout 'EMBER-GUEST READY cpus=1 acpi=yes'
check cloud-boot-cpus1
expect_stdout 'EMBER-GUEST READY' && expect_rc 0 && expect_stderr_i 'power(ed)?[ -]?(off|down)'
check cloud-poweroff
# Samples with vcpu0 (the guest running) where every thread shows 2.
if ! grep 'vcpu0=' "$filtered" | grep -q -v -E '=[^2 ]'; then
  _unmet "no sample showed every thread filtered; the last ones: $(grep -v '^$' "$filtered" | tail -n 3 | tr '\n' '|')"
fi
check cloud-seccomp-every-thread

# The two vcpus are placed crosswise (--vcpu-cpus): vcpu0 on the last CPU
# ember may use, vcpu1 on the first; their threads' CPU lists are sampled
# from /proc while the guest runs.
samples="$WORK/vcpu-cpus.txt"
: >"$samples"
sample_thread_cpus "$samples" 'vcpu[0-9]*' &
sampler=$!
# This boot also runs without the filter (--no-seccomp): no thread has one.
unfiltered="$WORK/seccomp-off.txt"
: >"$unfiltered"
sample_seccomp "$unfiltered" &
seccomp_sampler=$!
EMBER_PRE_ARGS=--no-seccomp
boot_guest cloud-cpus2 cloud 2 reboot --vcpu-cpus "$(last_cpu),$(first_cpu)"
EMBER_PRE_ARGS=
kill "$sampler" "$seccomp_sampler" 2>/dev/null
wait "$sampler" "$seccomp_sampler" 2>/dev/null
expect_stdout 'EMBER-GUEST READY cpus=2 acpi=yes'
check cloud-boot-cpus2
expect_stdout 'EMBER-GUEST READY' && expect_rc 0 && expect_stderr_i 'reboot'
check cloud-reboot
want="vcpu0=$(last_cpu) vcpu1=$(first_cpu) "
grep -q -x -F -- "$want" "$samples" ||
  _unmet "no sample showed the vcpu threads as '$want'; the last ones: $(grep -v '^$' "$samples" | tail -n 3 | tr '\n' '|')"
check cloud-vcpu-cpus
if ! grep 'vcpu1=' "$unfiltered" | grep -q -v -E '=[^0 ]'; then
  _unmet "--no-seccomp: no sample showed every thread unfiltered; the last ones: $(grep -v '^$' "$unfiltered" | tail -n 3 | tr '\n' '|')"
fi
check cloud-no-seccomp

# Firecracker's configuration file, with its sections for devices ember lacks
# left empty as its example files leave them: the guest sees the file's two
# vcpus and runs its command line; the last metrics line goes to the file's
# metrics path and shows the file's drive, which the guest's kernel read.
# Its "entropy" section adds the entropy device, which the guest's kernel
# takes as its hardware RNG: /tests/entropy.sh reads 256 KiB from it.
cfg="$WORK/vm-config.json"
cf_metrics="$WORK/config-file-metrics.json"
rm -f "$cf_metrics"
truncate -s 1M "$WORK/cf-data.img"
cat >"$cfg" <<EOF
{
  "boot-source": {
    "kernel_image_path": "$IMAGES/cloud/vmlinuz",
    "initrd_path": "$IMAGES/cloud/initramfs.cpio.gz",
    "boot_args": "$(guest_cmdline entropy)"
  },
  "machine-config": {"vcpu_count": 2, "mem_size_mib": ${GUEST_MEM%M}, "smt": false},
  "drives": [{"drive_id": "data", "path_on_host": "$WORK/cf-data.img", "is_root_device": false,
              "is_read_only": true, "partuuid": null, "rate_limiter": null}],
  "network-interfaces": [], "vsock": null, "balloon": null, "logger": null,
  "entropy": {"rate_limiter": null}, "metrics": {"metrics_path": "$cf_metrics"}
}
EOF
run_ember cloud-config-file "${BOOT_TIMEOUT:-240}" --no-api --config-file "$cfg"
expect_stdout 'EMBER-GUEST READY cpus=2 acpi=yes' && expect_rc 0 &&
  expect_stderr_i 'power(ed)?[ -]?(off|down)' && {
  [ "$(metrics_field "$cf_metrics" disk:data bytes_read)" -gt 0 ] 2>/dev/null ||
    _unmet "the metrics file shows disk data with '$(metrics_field "$cf_metrics" disk:data bytes_read)' bytes read: $(tail -n 1 "$cf_metrics" 2>/dev/null)"
}
check cloud-config-file
# Random bytes: 64 KiB per read, two reads that differ, and incompressible
# (gzip makes 64 KiB of random bytes larger; a buffer left as zeroes or filled
# with a repeated pattern would shrink to almost nothing). The metrics count
# the 256 KiB the script read, and whatever the kernel's hwrng thread took.
expect_stdout 'EMBER-RNG current=virtio_rng.0 ' && expect_stdout 'EMBER-RNG read bytes=65536 gzip=[0-9]+ same=no' && {
  gz=$(tr -d '\r' <"$OUT" | sed -n 's/.*EMBER-RNG read bytes=65536 gzip=\([0-9]*\).*/\1/p' | head -n 1)
  [ "${gz:-0}" -gt 65536 ] || _unmet "64 KiB from /dev/hwrng gzip to $gz bytes: not random"
} && {
  rb=$(metrics_field "$cf_metrics" entropy bytes)
  [ "${rb:-0}" -ge 262144 ] 2>/dev/null ||
    _unmet "the metrics file shows '$rb' entropy bytes, fewer than the guest read: $(tail -n 1 "$cf_metrics" 2>/dev/null)"
}
check cloud-entropy

# SIGTERM to `ember run`: the VM is stopped (not the process killed), the
# final metrics line says so, and the status is 128 + 15, as the signal's
# default action gave.
metrics="$WORK/sigterm-metrics.json"
rm -f "$metrics"
run_bg cloud-sigterm run --kernel "$IMAGES/cloud/vmlinuz" --initrd "$IMAGES/cloud/initramfs.cpio.gz" \
  --cpus 1 --mem "$GUEST_MEM" --console stdio --cmdline "$(guest_cmdline count) ember.count=100000" \
  --metrics-path "$metrics"
if wait_for "$OUT" 'EMBER-GUEST COUNT 2([^0-9]|$)' 240; then
  kill -TERM "$PID"
else
  _unmet "the guest never counted to 2"
  kill -KILL "$PID" 2>/dev/null
fi
finish_bg
expect_rc 143 && expect_stderr 'SIGTERM: stopping the VM' && expect_stderr 'stopped by SIGTERM' &&
  { [ "$(metrics_field "$metrics" vm state)" = exited ] ||
    _unmet "the last metrics line says '$(metrics_field "$metrics" vm state)', not exited: $(tail -n 1 "$metrics" 2>/dev/null)"; }
check cloud-sigterm-stops
