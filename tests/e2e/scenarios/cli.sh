#!/bin/sh
# e2e-timeout: 120
# ember's command line: --help and --version succeed; bad input exits with
# status 2 and a message that says what is wrong; --log-path and
# --metrics-path. No guest boots here.
. "$E2E_DIR/lib.sh"

kernel="$IMAGES/cloud/vmlinuz"

run_ember version 20 --version
expect_rc 0 && expect_log '[0-9]+\.[0-9]+\.[0-9]+'
check cli-version

run_ember help 20 --help
expect_rc 0 && expect_log 'run'
check cli-help

run_ember unknown-flag 20 run --kernel "$kernel" --no-such-flag
expect_rc 2 && expect_stderr 'no-such-flag'
check cli-unknown-flag

missing="$WORK/not-there/vmlinuz"
run_ember missing-kernel 20 run --kernel "$missing"
expect_rc 2 && expect_stderr "$missing"
check cli-missing-kernel

run_ember no-kernel 20 run
expect_rc 2 && expect_stderr_i 'kernel'
check cli-no-kernel

run_ember cpus-zero 20 run --kernel "$kernel" --cpus 0
expect_rc 2 && expect_stderr_i 'cpus'
check cli-cpus-zero

# More guest RAM than KVM maps in one slot (8 TiB on x86): exit 1 with a
# message about --mem, not just the name of the ioctl that failed.
run_ember mem-too-large 20 run --kernel "$kernel" --mem 16T
expect_rc 1 && expect_stderr 'KVM refused' && expect_stderr 'less --mem'
check cli-mem-too-large

# A checkpoint directory that could never be written (a file stands in its
# path) is refused before the guest starts, not when SIGUSR1 comes.
run_ember checkpoint-dir-under-file 20 run --kernel "$kernel" --checkpoint-dir "$kernel/ckpt"
expect_rc 2 && expect_stderr 'checkpoint-dir' && expect_stderr 'is not a directory'
check cli-checkpoint-dir-unusable

# --vcpu-cpus naming a CPU ember may not run on, or the wrong count: usage
# errors that say what is wrong, before the guest starts.
run_ember vcpu-cpus-unavailable 20 run --kernel "$kernel" --cpus 2 --vcpu-cpus "$(first_cpu),99999"
expect_rc 2 && expect_stderr 'vcpu 1 on host CPU 99999' && expect_stderr 'allowed: '
check cli-vcpu-cpus-unavailable
run_ember vcpu-cpus-count 20 run --kernel "$kernel" --cpus 2 --vcpu-cpus "$(first_cpu)"
expect_rc 2 && expect_stderr '1 host CPUs given for 2 vcpus'
check cli-vcpu-cpus-count

# --config-file: a file that names no usable kernel, or asks for a device
# ember does not have, is a usage error naming the file and the section.
cfg="$WORK/bad-config.json"
printf '{"boot-source": {"kernel_image_path": "%s"}}\n' "$missing" >"$cfg"
run_ember config-file-missing-kernel 20 --config-file "$cfg"
expect_rc 2 && expect_stderr "$cfg: \"boot-source\": PUT /boot-source: kernel_image_path $missing"
check cli-config-file-missing-kernel
printf '{"boot-source": {"kernel_image_path": "%s"}, "vsock": {"guest_cid": 3, "uds_path": "/tmp/v.sock"}}\n' \
  "$kernel" >"$cfg"
run_ember config-file-vsock 20 --config-file "$cfg"
expect_rc 2 && expect_stderr "\"vsock\": ember has no vsock device"
check cli-config-file-unsupported
# A network interface without its tap is refused before anything is built.
printf '{"boot-source": {"kernel_image_path": "%s"}, "network-interfaces": [{"iface_id": "eth0"}]}\n' \
  "$kernel" >"$cfg"
run_ember config-file-network 20 --config-file "$cfg"
expect_rc 2 && expect_stderr "\"network-interfaces\\[0\\]\": PUT /network-interfaces/eth0: .*host_dev_name"
check cli-config-file-interface-without-tap
run_ember config-file-none 20 --config-file "$WORK/no-such.json"
expect_rc 2 && expect_stderr "$WORK/no-such.json: No such file or directory"
check cli-config-file-missing

# --level (Firecracker's flag): Off silences even the setup error (the exit
# status still says it failed); Error keeps it.
run_ember level-off 20 --level Off run --kernel "$kernel" --mem 16T
expect_rc 1 && { ! grep -a -q 'KVM refused' "$ERR" || _unmet "--level Off still logged: $(head -n 2 "$ERR")"; }
run_ember level-error 20 --level error run --kernel "$kernel" --mem 16T
expect_rc 1 && expect_stderr 'KVM refused'
run_ember level-bad 20 --level loud run --kernel "$kernel"
expect_rc 2 && expect_stderr '--level loud: not one of Error, Warning, Info, Debug, Trace, Off'
check cli-level

# --log-path: ember's log goes to the file from the start, setup errors too;
# stderr only says where it went. A log or metrics path that cannot be opened
# is a setup error (1) before anything is built.
log="$WORK/ember-cli.log"
rm -f "$log"
run_ember log-path 20 run --kernel "$kernel" --mem 16T --log-path "$log"
expect_rc 1 && expect_stderr "log continues in $log" &&
  { grep -a -q 'KVM refused' "$log" || _unmet "the log file lacks the setup error: $(cat "$log" 2>/dev/null)"; } &&
  { ! grep -a -q 'KVM refused' "$ERR" || _unmet "the setup error went to stderr as well as to the log file"; }
check cli-log-path
run_ember log-path-unusable 20 run --kernel "$kernel" --log-path "$WORK/not-there/e.log"
expect_rc 1 && expect_stderr "--log-path: log file $WORK/not-there/e.log: cannot be opened for writing"
check cli-log-path-unusable
run_ember metrics-path-unusable 20 run --kernel "$kernel" --metrics-path "$kernel/m.json"
expect_rc 1 && expect_stderr "metrics file $kernel/m.json: cannot be opened for writing: Not a directory"
check cli-metrics-path-unusable
