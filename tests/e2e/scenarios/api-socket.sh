#!/bin/sh
# e2e-timeout: 480
# The control socket driven with curl and Firecracker's documented request
# bodies: a guest configured and started entirely over the socket (PUT
# /boot-source, /machine-config, /actions InstanceStart), paused and resumed
# (PATCH /vm), snapshotted (PUT /snapshot/create), stopped with SendCtrlAltDel
# (the guest reboots through its PS/2 keyboard), and loaded in a second ember
# (PUT /snapshot/load with resume_vm), where it counts on to the end. Last,
# `ember run ... --api-sock`: a VM built from the command line is served on
# the socket (GET /vm/config shows its kernel), paused and resumed there, and
# its disk's rate limit is changed with PATCH /drives.
# Metrics: PUT /metrics before InstanceStart, FlushMetrics while the first
# guest runs (a line with its vcpu's exits), and a last line when it stops.
# PUT /logger moves the first ember's log to a file, at debug level.
# PUT /entropy gives the first guest the entropy device, which it reads for
# every count, also after the load (GET /vm/config shows it there).
# The first guest has a disk whose ops bucket refills in 100 hours: the
# snapshot records what its boot took from it, and the loaded VM goes on
# with that (a second snapshot, taken there, shows the same), not a full one.
. "$E2E_DIR/lib.sh"

host="$WORK/../../host/api-socket"
CURL_DIR=$host # for api (lib.sh)
img="$IMAGES/cloud"
snap="$SCRATCH/snapshot"
if [ ! -x "$host/bin/curl" ]; then
  fail api-socket-curl-staged "api-socket.host did not stage curl (see host/api-socket.log)"
  exit 0
fi

# fill_left SNAPSHOT: the requests left in disk "fill"'s ops bucket at that
# snapshot, as snapshot-info prints them (empty if it does not).
fill_left() {
  "$EMBER" snapshot-info "$1" 2>&1 | tee -a "$WORK/snapshot-info.log" |
    sed -n 's/.*id=fill .*at the checkpoint \(-\{0,1\}[0-9]*\) of 1000 requests left.*/\1/p'
}


# expect_status CODE: the last request answered CODE.
expect_status() {
  [ "$STATUS" = "$1" ] || _unmet "$LAST_REQUEST answered $STATUS, expected $1: $BODY"
}

wait_socket() {
  _n=0
  while [ ! -S "$SOCK" ]; do
    sleep 1
    _n=$((_n + 1))
    [ "$_n" -lt 60 ] || return 1
  done
}

# start_ember LOG [RUN-ARGS...]: `ember --api-sock $SOCK` in the background
# (with RUN-ARGS, `ember run RUN-ARGS --api-sock $SOCK`; with START_ID set,
# `--id $START_ID` first); PID, OUT, ERR.
start_ember() {
  LOG=$1
  OUT="$WORK/$1.out"
  ERR="$WORK/$1.err"
  shift
  if [ $# -gt 0 ]; then set -- run "$@"; fi
  if [ -n "${START_ID:-}" ]; then set -- --id "$START_ID" "$@"; fi
  echo "e2e: $(echo ember "$@") --api-sock $SOCK" >"$WORK/$LOG.cmd"
  "$EMBER" "$@" --api-sock "$SOCK" </dev/null >"$OUT" 2>"$ERR" &
  PID=$!
  TIMED_OUT=no
  ELAPSED=0
  wait_socket || _unmet "ember never created $SOCK"
}

# pause_holds SECONDS WHAT: PATCH /vm Paused, then the guest prints no COUNT
# line for SECONDS. Sets AFTER to the number of COUNT lines.
pause_holds() {
  LAST_REQUEST="PATCH /vm Paused${2:+ ($2)}"
  [ -n "$REASON" ] || api PATCH /vm '{"state": "Paused"}'
  expect_status 204
  _before=$(grep -a -c 'EMBER-GUEST COUNT' "$OUT")
  sleep "$1"
  AFTER=$(grep -a -c 'EMBER-GUEST COUNT' "$OUT")
  [ "$_before" = "$AFTER" ] || _unmet "the paused guest${2:+ of $2} went on counting ($_before -> $AFTER lines)"
}

# finish_ember SECONDS: waits for ember to exit (killing it after SECONDS).
finish_ember() {
  _n=0
  while kill -0 "$PID" 2>/dev/null; do
    sleep 1
    _n=$((_n + 1))
    if [ "$_n" -ge "$1" ]; then
      TIMED_OUT=yes
      kill "$PID" 2>/dev/null
      break
    fi
  done
  wait "$PID"
  RC=$?
  ELAPSED=$_n
  # After PUT /logger ember logs to LOG.log: add it to stderr's lines, which
  # the checks and the triple-fault retry below read.
  [ ! -f "$WORK/$LOG.log" ] || cat "$WORK/$LOG.log" >>"$ERR"
  # A triple fault with a clean console in the sandbox runs the scenario
  # again, as for every other scenario (lib.sh).
  retry_if_nested_fault "$LOG"
}

# 1. Configure and start, with the bodies of Firecracker's getting-started guide.
SOCK="$SCRATCH/api-1.sock"
START_ID=e2e-vm-1 start_ember vm1
LAST_REQUEST="PUT /boot-source"
api PUT /boot-source "{
    \"kernel_image_path\": \"$img/vmlinuz\",
    \"initrd_path\": \"$img/initramfs.cpio.gz\",
    \"boot_args\": \"$(guest_cmdline count) ember.count=40 ember.count.rng=1\"
  }"
expect_status 204
LAST_REQUEST="PUT /machine-config"
[ -n "$REASON" ] || api PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 256}'
expect_status 204
LAST_REQUEST="PUT /entropy"
[ -n "$REASON" ] || api PUT /entropy '{"rate_limiter": null}'
expect_status 204
metrics="$WORK/metrics-1.json"
rm -f "$metrics"
LAST_REQUEST="PUT /metrics"
[ -n "$REASON" ] || api PUT /metrics "{\"metrics_path\": \"$metrics\"}"
expect_status 204
truncate -s 1M "$SCRATCH/fill.img"
LAST_REQUEST="PUT /drives/fill"
[ -n "$REASON" ] || api PUT /drives/fill "{
    \"drive_id\": \"fill\", \"path_on_host\": \"$SCRATCH/fill.img\",
    \"is_root_device\": false, \"is_read_only\": false,
    \"rate_limiter\": {\"ops\": {\"size\": 1000, \"refill_time\": 360000000}}
  }"
expect_status 204
LAST_REQUEST="PUT /logger"
[ -n "$REASON" ] || api PUT /logger "{\"log_path\": \"$WORK/vm1.log\", \"level\": \"Debug\", \"show_level\": true, \"show_log_origin\": false}"
expect_status 204
LAST_REQUEST="PUT /actions InstanceStart"
[ -n "$REASON" ] || api PUT /actions '{"action_type": "InstanceStart"}'
expect_status 204
LAST_REQUEST="GET /"
[ -n "$REASON" ] || api GET /
expect_status 200 && { echo "$BODY" | grep -q '"state":"Running"' || _unmet "GET / says $BODY, not Running"; }
# --id names the instance, as in Firecracker.
echo "$BODY" | grep -q '"id":"e2e-vm-1"' || _unmet "GET / does not report --id e2e-vm-1: $BODY"
wait_for "$OUT" 'EMBER-GUEST COUNT 3 rng=512' 300 || _unmet "the guest started over the socket never counted to 3 (reading /dev/hwrng)"
check api-socket-configure-and-start

# FlushMetrics: a line now, with the running guest's counts (it has printed
# three lines on the serial port: port I/O exits).
LAST_REQUEST="PUT /actions FlushMetrics"
api PUT /actions '{"action_type": "FlushMetrics"}'
expect_status 204
echo "e2e: metrics after FlushMetrics: $(tail -n 1 "$metrics" 2>/dev/null)"
[ "$(metrics_field "$metrics" vm state)" = running ] ||
  _unmet "the flushed metrics line says state '$(metrics_field "$metrics" vm state)', not running"
[ "$(metrics_field "$metrics" vcpu:0 pio_exits)" -ge 1 ] 2>/dev/null ||
  _unmet "the flushed line shows '$(metrics_field "$metrics" vcpu:0 pio_exits)' port I/O exits"
flushed_exits=$(metrics_field "$metrics" vcpu:0 exits)
LAST_REQUEST="PUT /metrics (again)"
api PUT /metrics "{\"metrics_path\": \"$WORK/metrics-again.json\"}"
expect_status 400 && { echo "$BODY" | grep -q 'metrics already go to' || _unmet "a second PUT /metrics: $BODY"; }
check api-socket-metrics-flush

# 2. Pause: the guest stops counting; snapshot; resume: it counts on.
pause_holds 4
after=$AFTER
LAST_REQUEST="GET / (paused)"
api GET /
echo "$BODY" | grep -q '"state":"Paused"' || _unmet "GET / says $BODY, not Paused"
LAST_REQUEST="PUT /snapshot/create"
api PUT /snapshot/create "{\"snapshot_type\": \"Full\", \"snapshot_path\": \"$snap\", \"mem_file_path\": \"$SCRATCH/mem\"}"
expect_status 204 && { [ -f "$snap/manifest.json" ] || _unmet "no manifest.json in $snap"; }
# The guest's kernel read the disk's partition table at boot: the bucket
# gave some of its 1000 requests, and the snapshot says how many are left.
fill_at_snap=$(fill_left "$snap")
echo "e2e: disk fill's ops bucket at the snapshot: ${fill_at_snap:-?} of 1000 left"
case $fill_at_snap in
  '' | *[!0-9]*) _unmet "snapshot-info shows no fill for disk fill: $(tail -n 4 "$WORK/snapshot-info.log" | tr '\n' '|')" ;;
  *) [ "$fill_at_snap" -lt 1000 ] || _unmet "the booted guest took nothing from disk fill's bucket" ;;
esac
LAST_REQUEST="PATCH /vm Resumed"
api PATCH /vm '{"state": "Resumed"}'
expect_status 204
wait_for "$OUT" "EMBER-GUEST COUNT $((after + 2))([^0-9]|\$)" 120 || _unmet "the resumed guest did not count on"
check api-socket-pause-snapshot-resume

# 3. Ctrl-Alt-Del through the guest's PS/2 keyboard: Linux reboots, ember ends.
LAST_REQUEST="PUT /actions SendCtrlAltDel"
api PUT /actions '{"action_type": "SendCtrlAltDel"}'
expect_status 204
finish_ember 240
expect_rc 0 && expect_stderr 'guest rebooted' && expect_no_log 'COUNT DONE'
check api-socket-ctrl-alt-del

# When the VM stopped, ember wrote the final counts: more exits than at the
# flush (the guest counted on, paused and resumed, and rebooted since).
echo "e2e: metrics at the end ($(wc -l <"$metrics") lines): $(tail -n 1 "$metrics" 2>/dev/null)"
[ "$(metrics_field "$metrics" vm state)" = exited ] ||
  _unmet "the last metrics line says state '$(metrics_field "$metrics" vm state)', not exited"
[ "$(metrics_field "$metrics" vcpu:0 exits)" -gt "$flushed_exits" ] 2>/dev/null ||
  _unmet "vcpu0's exits went from '$flushed_exits' at the flush to '$(metrics_field "$metrics" vcpu:0 exits)' at the end"
[ ! -e "$WORK/metrics-again.json" ] || _unmet "the refused second PUT /metrics created its file"
check api-socket-metrics-final

# PUT /logger: from then on ember's log went to vm1.log, at debug level (the
# router's line for each request), down to the reboot; and only there (the
# merged stderr has the exit line once, from the log file).
log1="$WORK/vm1.log"
grep -a -q 'ember: debug: API PUT /actions: 204' "$log1" ||
  _unmet "vm1.log lacks the debug line of PUT /actions: $(head -n 3 "$log1" 2>/dev/null | tr '\n' '|')"
grep -a -q 'ember: guest rebooted' "$log1" || _unmet "vm1.log lacks 'guest rebooted'"
[ "$(grep -a -c 'guest rebooted' "$WORK/vm1.err")" = 1 ] ||
  _unmet "'guest rebooted' is in ember's stderr as well as in vm1.log"
grep -a -q "log continues in $log1" "$WORK/vm1.err" || _unmet "stderr does not say where the log went"
check api-socket-logger

# 4. Load the snapshot in a fresh ember and resume at once: the guest counts
# on from where it was paused (no second boot, no restart at 1) to the end.
SOCK="$SCRATCH/api-2.sock"
start_ember vm2
LAST_REQUEST="PUT /snapshot/load"
api PUT /snapshot/load "{
    \"snapshot_path\": \"$snap\",
    \"mem_backend\": {\"backend_path\": \"$SCRATCH/mem\", \"backend_type\": \"File\"},
    \"enable_diff_snapshots\": false,
    \"resume_vm\": true
  }"
expect_status 204
LAST_REQUEST="GET / (loaded)"
[ -n "$REASON" ] || api GET /
echo "$BODY" | grep -q '"state":"Running"' || _unmet "GET / after load says $BODY, not Running"
# The loaded VM's configuration comes from its checkpoint: kernel, initrd and memory.
LAST_REQUEST="GET /vm/config (loaded)"
[ -n "$REASON" ] || api GET /vm/config
expect_status 200 && { echo "$BODY" | grep -q "\"kernel_image_path\":\"$img/vmlinuz\"" &&
  echo "$BODY" | grep -q "\"initrd_path\":\"$img/initramfs" &&
  echo "$BODY" | grep -q '"mem_size_mib":256' && echo "$BODY" | grep -q '"entropy":{}' ||
  _unmet "GET /vm/config after load: $BODY"; }
# A snapshot of the loaded VM (paused for it, so the guest cannot finish
# counting meanwhile): what its disk's bucket holds now.
snap2="$SCRATCH/snapshot-2"
LAST_REQUEST="PATCH /vm Paused (loaded)"
[ -n "$REASON" ] || api PATCH /vm '{"state": "Paused"}'
expect_status 204
LAST_REQUEST="PUT /snapshot/create (loaded)"
[ -n "$REASON" ] || api PUT /snapshot/create "{\"snapshot_type\": \"Full\", \"snapshot_path\": \"$snap2\", \"mem_file_path\": \"$SCRATCH/mem-2\"}"
expect_status 204
LAST_REQUEST="PATCH /vm Resumed (loaded)"
[ -n "$REASON" ] || api PATCH /vm '{"state": "Resumed"}'
expect_status 204
finish_ember 400
# (The line being printed at the snapshot may start in the first ember's
# output and end in this one's: match its number only.)
expect_rc 0 && expect_stdout 'EMBER-GUEST COUNT DONE' && expect_stdout "COUNT $((after + 1))([^0-9]|\$)" &&
  expect_stdout 'EMBER-GUEST COUNT 40 rng=512' &&
  expect_no_log 'EMBER-GUEST READY' && expect_no_log 'EMBER-GUEST COUNT 1([^0-9]|$)' && expect_stderr 'powered off'
check api-socket-snapshot-load

# The loaded VM's bucket held what the snapshot saved (a token comes back
# every 6 minutes; the loaded guest does no disk I/O): a full bucket, 1000,
# would mean the load gave the guest its requests back.
if [ -n "$fill_at_snap" ] && [ -s "$snap2/manifest.json" ]; then
  fill_again=$(fill_left "$snap2")
  echo "e2e: disk fill's ops bucket in the loaded VM's snapshot: ${fill_again:-?} of 1000 left"
  case $fill_again in
    '' | *[!0-9]*) _unmet "snapshot-info of the loaded VM's snapshot shows no fill for disk fill" ;;
    *) [ "$fill_again" -le $((fill_at_snap + 1)) ] ||
      _unmet "the loaded VM's bucket had $fill_again requests left, the snapshot $fill_at_snap" ;;
  esac
else
  _unmet "no fill at the first snapshot, or no snapshot of the loaded VM"
fi
check api-socket-rate-limit-fill-kept

# 5. `ember run --api-sock`: the command line builds and starts the VM; the
# socket reports it and pauses and resumes it; the guest counts to the end.
SOCK="$SCRATCH/api-3.sock"
truncate -s 1M "$SCRATCH/rl.img"
start_ember vm3 --kernel "$img/vmlinuz" --initrd "$img/initramfs.cpio.gz" --cpus 1 --mem 256 \
  --cmdline "$(guest_cmdline count) ember.count=16" --disk "$SCRATCH/rl.img,id=rl,iops=100"
LAST_REQUEST="GET / (ember run)"
[ -n "$REASON" ] || api GET /
expect_status 200 && { echo "$BODY" | grep -q '"state":"Running"' || _unmet "GET / says $BODY, not Running"; }
LAST_REQUEST="GET /vm/config (ember run)"
[ -n "$REASON" ] || api GET /vm/config
expect_status 200 && { echo "$BODY" | grep -q "$img/vmlinuz" || _unmet "GET /vm/config does not name the kernel: $BODY"; }
# PATCH /drives while the guest runs: the bandwidth bucket is added, the ops
# one (from iops=100 on the command line) kept; the VM's log says so.
LAST_REQUEST="PATCH /drives/rl (ember run)"
[ -n "$REASON" ] || api PATCH /drives/rl '{"drive_id": "rl", "rate_limiter": {"bandwidth": {"size": 1048576, "refill_time": 1000}}}'
expect_status 204
LAST_REQUEST="GET /vm/config after PATCH /drives (ember run)"
[ -n "$REASON" ] || api GET /vm/config
expect_status 200 && {
  echo "$BODY" | grep -q '"rate_limiter":{"bandwidth":{"one_time_burst":0,"refill_time":1000,"size":1048576},"ops":{"one_time_burst":0,"refill_time":1000,"size":100}}' ||
    _unmet "GET /vm/config does not show both buckets: $BODY"
}
LAST_REQUEST="PATCH /drives/nope (ember run)"
[ -n "$REASON" ] || api PATCH /drives/nope '{"drive_id": "nope", "rate_limiter": {"bandwidth": {"size": 0, "refill_time": 0}, "ops": {"size": 5, "refill_time": 100}}}'
expect_status 400 && { echo "$BODY" | grep -q "no disk has the id 'nope' (the disks: rl)" || _unmet "PATCH of an unknown drive said: $BODY"; }
check api-socket-patch-drive
wait_for "$OUT" 'EMBER-GUEST COUNT 2([^0-9]|$)' 300 || _unmet "the guest of ember run never counted to 2"
pause_holds 3 "ember run"
LAST_REQUEST="PATCH /vm Resumed (ember run)"
[ -n "$REASON" ] || api PATCH /vm '{"state": "Resumed"}'
expect_status 204
finish_ember 300
expect_rc 0 && expect_stdout 'EMBER-GUEST COUNT DONE' && expect_stderr 'powered off' &&
  expect_stderr 'disk rl: rate limit now 1048576 bytes per 1000 ms, 100 requests per 1000 ms'
check api-socket-ember-run
