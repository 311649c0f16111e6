#!/bin/sh
# e2e-timeout: 480
# ember's --net: a virtio-net device backed by a host tap. Bad --net values
# are usage errors (exit status 2, as every malformed flag) that name what is
# wrong, before anything is built: no guest, tap or root needed. Then the
# scenario makes a tap (ember-tap0, 172.30.0.1/24) with an httpd on it
# serving 1 MiB of random bytes, and boots the cloud guest with
# --net tap=ember-tap0,mac=06:00:ac:1e:00:02 running /tests/net.sh, which
# finds the interface virtio_net drives, takes 172.30.0.2/24, pings the host,
# fetches its file, and serves 1 MiB of its own that the host fetches back:
# the guest sees the MAC given, ping gets every reply, both files arrive
# bit-exact (sha256), and the guest powers off (status 0). Meanwhile a second
# ember asking for the same tap is refused (status 1, "in use"), the device's
# I/O thread is under the guest-facing system-call filter, and the last
# metrics line counts what crossed the device. A second guest fetches the
# file round after round; ember is checkpointed (SIGUSR1) while a round is
# half sent and restored in a new process, on the same tap: the round in
# flight completes, later ones follow, each bit-exact, and snapshot-info
# names the tap and MAC. A third boots from a Firecracker configuration file
# whose network-interfaces section gives it the device. A fourth makes the
# first one's exchange through rate limits (rx-bw=, tx-bw=): it takes at
# least as long as they allow, and loses nothing. Making a tap needs
# root (CAP_NET_ADMIN): L1 runs everything as root; directly on a host without
# it the guest part is skipped. The tap is deleted at the end.
. "$E2E_DIR/lib.sh"

img="$IMAGES/cloud"
tap=ember-tap0
host_ip=172.30.0.1
guest_ip=172.30.0.2
port=8080
mac=06:00:ac:1e:00:02

# bad_net NAME ERE ERE2 VALUE...: ember run with a --net for each VALUE must
# exit 2, with both EREs (any case) on stderr, and no guest output; chains
# like expect_*, its reason naming the values. The first run that fails is
# remembered (bad_*), so that fail shows its output rather than the last one's.
bad_out=
bad_net() {
  _bn_name=$1
  _bn_ere=$2
  _bn_ere2=$3
  shift 3
  _bn_args=
  for _bn_v in "$@"; do _bn_args="$_bn_args --net $_bn_v"; done
  _bn_before=$REASON
  # shellcheck disable=SC2086 # the values here hold no blanks
  run_ember "net-bad-$_bn_name" 30 run --kernel "$img/vmlinuz" --initrd "$img/initramfs.cpio.gz" \
    --mem 128M --console stdio --cmdline "$(guest_cmdline poweroff)" $_bn_args
  expect_rc 2 && expect_stderr_i "$_bn_ere" && expect_stderr_i "$_bn_ere2" && {
    [ ! -s "$OUT" ] || _unmet "the guest started"
  }
  if [ -z "$_bn_before" ] && [ -n "$REASON" ]; then
    REASON="--net $*: $REASON"
    bad_out=$OUT bad_err=$ERR bad_rc=$RC bad_timed_out=$TIMED_OUT bad_elapsed=$ELAPSED
  fi
}

bad_net no-tap 'tap' . "mac=06:00:ac:1e:00:09"
bad_net empty-tap 'tap' . "tap="
bad_net mac-not-hex 'zz' 'mac' "tap=ember-bad0,mac=zz"
bad_net mac-five-octets '06:00:ac:1e:00' 'mac' "tap=ember-bad0,mac=06:00:ac:1e:00"
# The first octet's low bit set: a group (multicast) address, no NIC's own.
bad_net mac-multicast '07:00:ac:1e:00:02' 'multicast|unicast|group' "tap=ember-bad0,mac=07:00:ac:1e:00:02"
bad_net five-nets 'net|tap' 'at most 4|more than 4|4 (net|tap|interface|device|network)|too many' \
  tap=ember-bad0 tap=ember-bad1 tap=ember-bad2 tap=ember-bad3 tap=ember-bad4
# An interface name has at most 15 bytes (IFNAMSIZ, 16 with its NUL).
bad_net tap-name-too-long 'ember-tap-name-too-long' '15|16|long|IFNAMSIZ' "tap=ember-tap-name-too-long"
if [ -n "$bad_out" ]; then
  OUT=$bad_out ERR=$bad_err RC=$bad_rc TIMED_OUT=$bad_timed_out ELAPSED=$bad_elapsed
fi
check net-bad-flags

if ! in_sandbox && [ "$(id -u)" != 0 ]; then
  echo "e2e: net guest checks skipped: making tap $tap needs root (CAP_NET_ADMIN); the sandbox's L1 runs them as root"
  exit 0
fi

www="$SCRATCH/www"
# The CGI's files (armed, stalled, released): beside www, so never served.
state="$SCRATCH/cgi-state"
mkdir -p "$www/cgi-bin" "$state"
head -c 1048576 /dev/urandom >"$www/blob"
host_sum=$(sha256sum <"$www/blob" | cut -d' ' -f1)
# The rounds guest fetches the blob through this CGI, which sends all of it at
# once, unless the host has armed it ($state/arm): then it sends the first
# half, says so ($state/paused, holding the request's query, round=N), and
# trickles the rest 4 KiB every 0.2 s until the host releases it
# ($state/release), when it sends what is left. So the response is half sent
# and frames are flowing when the host checkpoints the guest. Unreleased, it
# ends after the last block (some 30 s).
cat >"$www/cgi-bin/blob" <<CGI
#!/bin/sh
printf 'Content-Type: application/octet-stream\r\n\r\n'
[ -e "$state/arm" ] || exec cat "$www/blob"
rm -f "$state/arm"
head -c 524288 "$www/blob"
echo "\$QUERY_STRING" >"$state/paused"
block=128
while [ "\$block" -lt 256 ] && [ ! -e "$state/release" ]; do
  dd if="$www/blob" bs=4096 skip="\$block" count=1 2>/dev/null
  block=\$((block + 1))
  sleep 0.2
done
[ "\$block" -ge 256 ] || tail -c +\$((block * 4096 + 1)) "$www/blob"
CGI
chmod +x "$www/cgi-bin/blob"
made_tap=no
httpd_pid=
live_pid=
filter_sampler=
tcp_watch_pid=
cleanup() {
  touch "$state/release" 2>/dev/null
  for p in $filter_sampler $tcp_watch_pid; do kill "$p" 2>/dev/null; done
  if [ -n "$live_pid" ] && kill -0 "$live_pid" 2>/dev/null; then
    kill -KILL "$live_pid" 2>/dev/null
    wait "$live_pid" 2>/dev/null
  fi
  [ -z "$httpd_pid" ] || kill "$httpd_pid" 2>/dev/null
  [ "$made_tap" = no ] || busybox tunctl -d "$tap" >/dev/null 2>&1
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# collect_guest: collects the guest's ember (finish_bg; the caller ended or
# stopped it) and stops the filter sampler started with it, if one runs.
collect_guest() {
  finish_bg
  live_pid=
  if [ -n "$filter_sampler" ]; then
    kill "$filter_sampler" 2>/dev/null
    wait "$filter_sampler" 2>/dev/null
  fi
  filter_sampler=
}

# The tap (persistent, made with BusyBox's tunctl: L1 has no iproute2) and the
# host's httpd on its address. A tap left by an earlier run that was killed
# goes first.
[ ! -d "/sys/class/net/$tap" ] || busybox tunctl -d "$tap" >/dev/null 2>&1
if ip addr show 2>/dev/null | grep -q "inet 172\.30\.0\."; then
  _unmet "172.30.0.0/24 is already in use on this machine: $(ip addr show | grep 'inet 172\.30\.0\.' | head -n 1)"
elif [ ! -c /dev/net/tun ]; then
  _unmet "no /dev/net/tun (the tun module is not loaded)"
elif ! busybox tunctl -t "$tap" >"$WORK/tunctl.log" 2>&1; then
  _unmet "busybox tunctl -t $tap failed: $(head -n 2 "$WORK/tunctl.log" | tr '\n' ' ')"
else
  made_tap=yes
  if ! { ip addr add "$host_ip/24" dev "$tap" && ip link set "$tap" up; } >"$WORK/ip.log" 2>&1; then
    _unmet "cannot give $tap $host_ip/24 and bring it up: $(head -n 2 "$WORK/ip.log" | tr '\n' ' ')"
  else
    busybox httpd -f -p "$host_ip:$port" -h "$www" >"$WORK/httpd.log" 2>&1 &
    httpd_pid=$!
    sleep 1
    kill -0 "$httpd_pid" 2>/dev/null ||
      _unmet "busybox httpd on $host_ip:$port ended at once: $(head -n 2 "$WORK/httpd.log" | tr '\n' ' ')"
  fi
fi
setup_ok=yes
[ -z "$REASON" ] || setup_ok=no
check net-tap-setup
[ "$setup_ok" = yes ] || exit 0

# net_metric FILE ID KEY: KEY's value for network device ID on the last
# metrics line in FILE (empty when absent). metrics_field (lib.sh) has no net
# group; this splits the line at braces as it does, both kinds here, so that
# each device's "ID": is a piece of its own (after the first device, it
# follows the previous one's closing brace and a comma) and the next piece
# holds its counters.
net_metric() {
  tail -n 1 "$1" 2>/dev/null | tr '}' '{' | tr '{' '\n' | sed 's/^,//' | sed -n "/^\"$2\":\$/{n;p;}" |
    tr , '\n' | sed -n "s/^\"$3\"://p" | tr -d '"' | head -n 1
}

# The first guest: the full exchange (the checks net-guest-mac to
# net-poweroff). Meanwhile every ember thread's count of system-call filters
# is sampled from /proc (net-seccomp), a second ember asks for the same tap
# (net-tap-busy), and the metrics go to a file (net-metrics).
filters="$WORK/seccomp-filters.txt"
: >"$filters"
sample_thread_status "$filters" '*' Seccomp_filters: &
filter_sampler=$!
metrics="$WORK/net-metrics.json"
rm -f "$metrics"
run_bg net-guest run --kernel "$img/vmlinuz" --initrd "$img/initramfs.cpio.gz" --cpus 1 --mem "$GUEST_MEM" \
  --console stdio --cmdline "$(guest_cmdline net)" --net "tap=$tap,mac=$mac" --metrics-path "$metrics"
live_pid=$PID
# The guest serves its file once it has pinged and fetched ours; it may also
# end early (no interface).
await_serving() {
  _as_n=0
  while ! grep -a -q -E 'EMBER-NET serving |EMBER-GUEST EXIT' "$OUT" 2>/dev/null; do
    { kill -0 "$PID" 2>/dev/null && [ "$_as_n" -lt 240 ]; } || break
    sleep 1
    _as_n=$((_as_n + 1))
  done
}
await_serving
echo "e2e: $tap while the guest runs: carrier=$(cat "/sys/class/net/$tap/carrier" 2>/dev/null) tun_flags=$(cat "/sys/class/net/$tap/tun_flags" 2>/dev/null)"
guest_file="$SCRATCH/guest-blob"
host_fetch="the guest never said it was serving"
if grep -a -q 'EMBER-NET serving ' "$OUT"; then
  if timeout 90 busybox wget -q -Y off -O "$guest_file" "http://$guest_ip:$port/blob" >"$WORK/host-wget.log" 2>&1; then
    host_fetch=ok
  else
    host_fetch="busybox wget http://$guest_ip:$port/blob failed with status $?: $(head -n 2 "$WORK/host-wget.log" | tr '\n' ' ')"
  fi
fi

# A tap has one reader: while the guest holds ember-tap0 (it waits for /done
# below), a second ember asking for it is refused before a guest starts, with
# a setup error (1) that says the tap is in use.
guest_out=$OUT guest_err=$ERR
if grep -a -q 'EMBER-NET serving ' "$OUT" && kill -0 "$PID" 2>/dev/null; then
  run_ember net-tap-busy 60 run --kernel "$img/vmlinuz" --initrd "$img/initramfs.cpio.gz" \
    --mem 128M --console stdio --cmdline "$(guest_cmdline poweroff)" --net "tap=$tap"
  expect_rc 1 && expect_stderr_i 'in use' && {
    [ ! -s "$OUT" ] || _unmet "the second guest started: its console has $(wc -c <"$OUT") bytes"
  }
  kill -0 "$PID" 2>/dev/null || _unmet "the first guest ended while the second ember ran: the tap was not held"
else
  _unmet "the first guest was not waiting with the tap attached (no 'EMBER-NET serving', or ember ended)"
fi
check net-tap-busy
OUT=$guest_out ERR=$guest_err TIMED_OUT=no ELAPSED=0

# The guest polls for /done on our httpd, then powers off.
touch "$www/done"
if ! await_bg 60; then
  echo "e2e: the guest did not power off within 60 s of /done: stopping ember"
  kill -TERM "$PID" 2>/dev/null
fi
collect_guest
echo "e2e: net-guest: rc=$RC"

# net_field KEY FIELD: FIELD's value on the guest's first "EMBER-NET KEY" line.
net_line() { tr -d '\r' <"$OUT" | grep -a -o "EMBER-NET $1.*" | head -n 1; }
net_field() { net_line "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1; }

# The guest's interface is virtio_net's, with the MAC given.
ifl=$(net_line iface=)
case $ifl in
  *" driver=virtio_net mac=$mac "*) ;;
  "") _unmet "the guest printed no EMBER-NET iface line" ;;
  *) _unmet "the guest's interface: '$ifl', not virtio_net with mac=$mac" ;;
esac
check net-guest-mac

# ICMP on a tap with nothing else on it loses nothing: every ping answered.
{ [ "$(net_field ping sent)" = 3 ] && [ "$(net_field ping received)" = 3 ]; } ||
  _unmet "ping from the guest: '$(net_line ping)', not 3 sent and 3 received"
check net-ping

# The guest's copy of the host's blob.
{ [ "$(net_field fetched rc)" = 0 ] && [ "$(net_field fetched bytes)" = 1048576 ] &&
  [ "$(net_field fetched sha256)" = "$host_sum" ]; } ||
  _unmet "the guest's fetch: '$(net_line fetched)', expected rc=0 bytes=1048576 sha256=$host_sum"
check net-guest-fetch
echo "e2e: without a rate limit the guest fetched 1 MiB in $(net_field fetched secs) s"

# The host's copy of the guest's blob.
guest_sum=$(net_field serving sha256)
if [ "$host_fetch" != ok ]; then
  _unmet "$host_fetch"
elif [ "$(net_field serving rc)" != 0 ] || [ "$(net_field serving bytes)" != 1048576 ]; then
  _unmet "the guest's httpd: '$(net_line serving)'"
else
  got=$(sha256sum <"$guest_file" | cut -d' ' -f1)
  [ "$got" = "$guest_sum" ] ||
    _unmet "the host fetched $(wc -c <"$guest_file") bytes with sha256 $got; the guest served sha256 ${guest_sum:-?}"
fi
check net-host-fetch

expect_rc 0 && expect_stdout 'EMBER-NET done=yes' && expect_stdout 'EMBER-GUEST EXIT rc=0' &&
  expect_stderr_i 'power(ed)?[ -]?(off|down)'
check net-poweroff

# --metrics-path: the last line (written when the VM stopped) has the device
# under its default id, net0, on its tap, with what crossed it: the 1 MiB the
# guest fetched and the 1 MiB the host fetched back, at least the frames the
# guest's driver counted each way (the EMBER-NET stats line, read just before
# it powered off), nothing malformed, dropped or refused.
nm() { net_metric "$metrics" net0 "$1"; }
echo "e2e: metrics, last of $(wc -l <"$metrics" 2>/dev/null) lines: $(tail -n 1 "$metrics" 2>/dev/null)"
[ "$(metrics_field "$metrics" vm state)" = exited ] ||
  _unmet "the last metrics line's state is '$(metrics_field "$metrics" vm state)', not exited"
[ "$(nm tap)" = "$tap" ] || _unmet "net.net0.tap is '$(nm tap)', not $tap"
[ "$(nm rx_frames)" -gt 0 ] 2>/dev/null || _unmet "net.net0.rx_frames is '$(nm rx_frames)'"
[ "$(nm tx_frames)" -gt 0 ] 2>/dev/null || _unmet "net.net0.tx_frames is '$(nm tx_frames)'"
[ "$(nm rx_bytes)" -gt 1048576 ] 2>/dev/null ||
  _unmet "net.net0.rx_bytes is '$(nm rx_bytes)'; the guest fetched 1048576 bytes"
[ "$(nm tx_bytes)" -gt 1048576 ] 2>/dev/null ||
  _unmet "net.net0.tx_bytes is '$(nm tx_bytes)'; the host fetched 1048576 bytes from the guest"
g_rx=$(net_field stats rx_packets)
g_tx=$(net_field stats tx_packets)
[ "$(nm rx_frames)" -ge "${g_rx:-0}" ] 2>/dev/null ||
  _unmet "net.net0.rx_frames is '$(nm rx_frames)', fewer than the $g_rx packets the guest received"
[ "$(nm tx_frames)" -ge "${g_tx:-0}" ] 2>/dev/null ||
  _unmet "net.net0.tx_frames is '$(nm tx_frames)', fewer than the $g_tx packets the guest sent"
for k in bad_requests rx_dropped tx_errors; do
  [ "$(nm $k)" = 0 ] || _unmet "net.net0.$k is '$(nm $k)', not 0"
done
[ "$(nm interrupts)" -gt 0 ] 2>/dev/null || _unmet "net.net0.interrupts is '$(nm interrupts)'"
check net-metrics

# The rounds guest: it fetches the blob again and again; after its second
# round the host arms the CGI, which stalls the next round halfway, trickling
# the rest; the host checkpoints ember then (SIGUSR1), restores it in a new
# process, releases the CGI, and lets the guest end two rounds later. The
# restored guest completes the stalled round and goes on, every round's
# sha256 the blob's, no round lost or repeated, no reboot.
#
# For a round that hangs, the host's view of the connection: every second,
# the tap's carrier and neighbour entry and the port's sockets in
# /proc/net/tcp (tx_queue: bytes not acknowledged; the retransmit timer and
# count) into tcp-watch.txt, and the host's non-zero TcpExt counters before
# and after. A guest that acknowledged data it then forgot shows as a socket
# stuck with data in tx_queue and a retransmit count that keeps growing,
# TCPSACKDiscard on the host and TCPDSACKOfoSent on the guest (its round
# failing prints the guest's counters).
tcp_watch() {
  while :; do
    echo "== $(date +%s) $(cut -d' ' -f1 /proc/uptime) $tap carrier=$(cat "/sys/class/net/$tap/carrier" 2>/dev/null) neigh: $(ip neigh show dev "$tap" 2>&1 | tr '\n' ' ')"
    grep ':1F90 ' /proc/net/tcp # port 8080
    sleep 1
  done
}
tcp_ext() {
  awk '/^TcpExt:/ { if (!h) { for (i = 2; i <= NF; i++) k[i] = $i; h = 1 } else for (i = 2; i <= NF; i++) if ($i != 0) printf "%s=%s ", k[i], $i }' /proc/net/netstat
}
echo "e2e: the host's TcpExt counters before the rounds: $(tcp_ext)"
tcp_watch >"$WORK/tcp-watch.txt" 2>&1 &
tcp_watch_pid=$!
ck="$SCRATCH/net-ck"
rm -rf "$ck"
rm -f "$state/arm" "$state/paused" "$state/release" "$www/rounds-done"
run_bg net-ckpt run --kernel "$img/vmlinuz" --initrd "$img/initramfs.cpio.gz" --cpus 1 --mem "$GUEST_MEM" \
  --console stdio --cmdline "$(guest_cmdline net) ember.net.mode=rounds ember.net.rounds=40" \
  --net "tap=$tap,mac=$mac" --checkpoint-dir "$ck"
live_pid=$PID
ck_out=$OUT
stalled=
if wait_for "$OUT" 'EMBER-NET round=2 rc=' 240; then
  touch "$state/arm"
  if wait_for "$state/paused" '^round=[0-9]+' 60; then
    stalled=$(sed -n 's/^round=\([0-9]*\).*/\1/p' "$state/paused")
    # A second of trickle, so frames are on their way as the guest pauses.
    sleep 1
    echo "e2e: $(date +%s): round $stalled stalled halfway: SIGUSR1"
    kill -USR1 "$PID"
  else
    _unmet "no round stalled halfway within 60 s of arming the CGI"
    kill -TERM "$PID" 2>/dev/null
  fi
else
  _unmet "the guest never completed round 2"
  kill -TERM "$PID" 2>/dev/null
fi
collect_guest
echo "e2e: net-ckpt: rc=$RC; round $stalled stalled; $(grep -a 'checkpoint written to' "$ERR")"
expect_rc 0 && expect_stderr 'checkpoint written to' && expect_stderr 'checkpoint taken; exiting'
ck_ok=no
[ -n "$REASON" ] || ck_ok=yes

restore_filters="$WORK/seccomp-filters-restore.txt"
: >"$restore_filters"
rs_out=
if [ "$ck_ok" = yes ]; then
  sample_thread_status "$restore_filters" '*' Seccomp_filters: &
  filter_sampler=$!
  run_bg net-restore restore "$ck" --console stdio
  live_pid=$PID
  rs_out=$OUT
  wait_for "$ERR" 'restored from' 60 || _unmet "the restore never said 'restored from'"
  touch "$state/release"
  echo "e2e: $(date +%s): restored; the CGI released"
  last=$((stalled + 2))
  if wait_for "$OUT" "EMBER-NET round=$last rc=" 180; then
    touch "$www/rounds-done"
  else
    _unmet "the restored guest did not complete round $last within 180 s"
  fi
  if ! await_bg 60; then
    _unmet "the restored guest did not power off within 60 s"
    kill -TERM "$PID" 2>/dev/null
  fi
  collect_guest
  echo "e2e: net-restore: rc=$RC"
fi
touch "$state/release"
kill "$tcp_watch_pid"
wait "$tcp_watch_pid" 2>/dev/null
tcp_watch_pid=
echo "e2e: the host's TcpExt counters after the rounds: $(tcp_ext)"

# rounds SIDE FILE: the guest's rounds in FILE as lines "SIDE start N" and
# "SIDE done N ok" (or "bad(...)" with what it printed when that is not the
# whole blob).
rounds() {
  tr -d '\r' <"$2" | grep -a -o 'EMBER-NET round=[0-9]* .*' | while read -r _ r rest; do
    case $rest in
      start | "start "*) echo "$1 start ${r#round=}" ;;
      "rc=0 bytes=1048576 sha256=$host_sum" | "rc=0 bytes=1048576 sha256=$host_sum "*) echo "$1 done ${r#round=} ok" ;;
      *) echo "$1 done ${r#round=} bad($rest)" ;;
    esac
  done
}
if [ "$ck_ok" = yes ] && [ -n "$stalled" ]; then
  # What the two consoles must show: rounds 1 .. stalled-1 whole before the
  # checkpoint, the stalled one started there and ended after the restore,
  # then whole rounds up to the last one the restored guest completed, at
  # least two after the stalled one.
  { rounds ckpt "$ck_out"; rounds restore "$rs_out"; } >"$WORK/rounds.txt"
  final=$(sed -n 's/^restore done \([0-9]*\) .*/\1/p' "$WORK/rounds.txt" | tail -n 1)
  {
    i=1
    while [ "$i" -lt "$stalled" ]; do
      echo "ckpt start $i"
      echo "ckpt done $i ok"
      i=$((i + 1))
    done
    echo "ckpt start $stalled"
    echo "restore done $stalled ok"
    i=$((stalled + 1))
    while [ "$i" -le "${final:-0}" ]; do
      echo "restore start $i"
      echo "restore done $i ok"
      i=$((i + 1))
    done
  } >"$WORK/rounds.expected"
  echo "e2e: rounds: $(tr '\n' ';' <"$WORK/rounds.txt")"
  if ! cmp -s "$WORK/rounds.expected" "$WORK/rounds.txt"; then
    diverge=$(awk 'NR == FNR { want[FNR] = $0; n = FNR; next }
      $0 != want[FNR] { print "line " FNR ": \"" $0 "\", expected \"" want[FNR] "\""; found = 1; exit }
      END { if (!found) print "the consoles end after " FNR " lines, expected " n }' \
      "$WORK/rounds.expected" "$WORK/rounds.txt")
    _unmet "the rounds across checkpoint and restore (rounds.txt) are not whole and in order: $diverge"
  fi
  [ "${final:-0}" -ge "$((stalled + 2))" ] ||
    _unmet "the restored guest completed rounds up to ${final:-none}; expected two after the stalled round $stalled"
  grep -a -q 'EMBER-GUEST READY' "$rs_out" && _unmet "the restored guest booted again (EMBER-GUEST READY)"
  expect_rc 0 && expect_stdout 'EMBER-NET rounds-end done=yes' && expect_stdout 'EMBER-GUEST EXIT rc=0' &&
    expect_stderr_i 'power(ed)?[ -]?(off|down)'
fi
check net-checkpoint-mid-transfer

# snapshot-info describes the device from the manifest: its id, tap and MAC.
if [ "$ck_ok" = yes ]; then
  run_ember net-ckpt-info 60 snapshot-info "$ck"
  expect_rc 0 && expect_stdout 'checksums ok' &&
    expect_stdout "^  net +id=net0 tap $tap \\(MAC $mac\\)\$"
else
  _unmet "no checkpoint was taken"
fi
check net-snapshot-info

# Seccomp: a sample of the first guest's ember with the main thread under the
# process's filter (1), vcpu0 under a second of its own, and the one
# ember-net-io thread, which vcpu0 started when the driver set DRIVER_OK,
# under those two and a third of its own, as disk-io expects of a disk's I/O
# thread; in the restored ember, which starts it from its main thread, 2. A
# thread just started may be sampled before it confines itself, so not every
# sample need show it. ember without its filter (--no-seccomp) skips this.
# filtered FILE N: some sample in FILE shows vcpu0=2, a main thread with 1
# and exactly one ember-net-io, with N.
filtered() {
  grep 'vcpu0=2 ' "$1" | grep -E '(^| )ember=1 ' | while read -r line; do
    [ "$(echo "$line" | tr ' ' '\n' | grep -c '^ember-net-io=')" = 1 ] &&
      echo "$line" | grep -q -E "(^| )ember-net-io=$2 " && echo yes
  done | head -n 1
}
if grep 'vcpu0=' "$filters" | grep -q -E '(^| )ember=[1-9]'; then
  [ "$(filtered "$filters" 3)" = yes ] ||
    _unmet "no sample of the first guest showed vcpu0 with 2 filters, the main thread with 1 and one ember-net-io with 3; the last ones: $(grep 'vcpu0=' "$filters" | tail -n 2 | tr '\n' '|')"
  if [ "$ck_ok" = yes ]; then
    [ "$(filtered "$restore_filters" 2)" = yes ] ||
      _unmet "no sample of the restored guest showed vcpu0 with 2 filters, the main thread with 1 and one ember-net-io with 2; the last ones: $(grep 'vcpu0=' "$restore_filters" | tail -n 2 | tr '\n' '|')"
  fi
  check net-seccomp
else
  echo "e2e: net-seccomp skipped: no sample shows ember's main thread under a system-call filter (ember ran without it)"
fi

# Firecracker's configuration file: its network-interfaces section gives the
# guest the device, on the tap, with the file's MAC (another one than above),
# and the device's metrics group is named by iface_id.
cfg="$WORK/net-config.json"
cf_metrics="$WORK/net-config-metrics.json"
cf_mac=06:00:ac:1e:00:03
rm -f "$cf_metrics"
cat >"$cfg" <<JSON
{
  "boot-source": {
    "kernel_image_path": "$img/vmlinuz",
    "initrd_path": "$img/initramfs.cpio.gz",
    "boot_args": "$(guest_cmdline net) ember.net.mode=ping"
  },
  "machine-config": {"vcpu_count": 1, "mem_size_mib": ${GUEST_MEM%M}, "smt": false},
  "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "$tap", "guest_mac": "$cf_mac",
                          "rx_rate_limiter": null, "tx_rate_limiter": null}],
  "metrics": {"metrics_path": "$cf_metrics"}
}
JSON
run_ember net-config-file "${BOOT_TIMEOUT:-240}" --no-api --config-file "$cfg"
ifl=$(net_line iface=)
expect_rc 0 && expect_stdout 'EMBER-GUEST EXIT rc=0' && expect_stderr_i 'power(ed)?[ -]?(off|down)' && {
  case $ifl in
    *" driver=virtio_net mac=$cf_mac "*) ;;
    *) _unmet "the guest's interface: '$ifl', not virtio_net with mac=$cf_mac" ;;
  esac
} && {
  { [ "$(net_field ping sent)" = 3 ] && [ "$(net_field ping received)" = 3 ]; } ||
    _unmet "ping from the guest: '$(net_line ping)', not 3 sent and 3 received"
} && {
  if [ "$(net_metric "$cf_metrics" eth0 tap)" != "$tap" ] || ! [ "$(net_metric "$cf_metrics" eth0 rx_frames)" -gt 0 ] 2>/dev/null; then
    _unmet "the metrics file has no net.eth0 on $tap with frames received: $(tail -n 1 "$cf_metrics" 2>/dev/null)"
  fi
}
check net-config-file

# Rate limits: a guest with --net ...,rx-bw=128K,tx-bw=128K makes the same
# exchange as the first. Each MiB needs more than 1 MiB of frames, and the
# buckets start with 128 KiB: at 128 KiB per second each way takes at least
# 7 s (the guest's fetch timed by its own clock, the host's by L1's), both
# files arrive bit-exact (frames held back are not lost; the tap's frames
# wait), and the metrics count frames held back in both directions. Then
# PATCH /network-interfaces on its control socket lifts the transmit limit:
# GET /vm/config shows only the receive one, and the host fetches the file
# again in under 4 s, which the old limit would not allow (unlimited, the
# first guest's MiB took about 0.2 s here).
rl_metrics="$WORK/net-rate-metrics.json"
rm -f "$rl_metrics" "$www/done"
CURL_DIR="$WORK/../../host/net"
SOCK="$SCRATCH/net-api.sock"
run_bg net-rate-limit run --kernel "$img/vmlinuz" --initrd "$img/initramfs.cpio.gz" --cpus 1 \
  --mem "$GUEST_MEM" --console stdio --cmdline "$(guest_cmdline net)" \
  --net "tap=$tap,mac=$mac,rx-bw=128K,tx-bw=128K" --metrics-path "$rl_metrics" --api-sock "$SOCK"
live_pid=$PID
await_serving
# host_fetch LOG: the host fetches the guest's blob into $guest_file; sets
# host_fetch (ok, or why not) and host_secs (by L1's clock).
host_fetch() {
  t0=$(cut -d' ' -f1 /proc/uptime)
  if timeout 120 busybox wget -q -Y off -O "$guest_file" "http://$guest_ip:$port/blob" >"$WORK/$1" 2>&1; then
    host_fetch=ok
  else
    host_fetch="busybox wget http://$guest_ip:$port/blob failed with status $?: $(head -n 2 "$WORK/$1" | tr '\n' ' ')"
  fi
  t1=$(cut -d' ' -f1 /proc/uptime)
  host_secs=$(awk "BEGIN { print $t1 - $t0 }")
}
host_fetch="the guest never said it was serving"
host_secs=
limited_sum=
lifted="the guest never said it was serving"
if grep -a -q 'EMBER-NET serving ' "$OUT"; then
  host_fetch host-wget-limited.log
  limited_fetch=$host_fetch limited_secs=$host_secs
  limited_sum=$(sha256sum <"$guest_file" | cut -d' ' -f1)
  lifted=
  if [ ! -x "$CURL_DIR/bin/curl" ]; then
    lifted="net.host did not stage curl (see host/net.log)"
  else
    api PATCH /network-interfaces/net0 '{"iface_id": "net0", "tx_rate_limiter": {"bandwidth": {"size": 0, "refill_time": 0}}}'
    [ "$STATUS" = 204 ] || lifted="PATCH /network-interfaces/net0 answered $STATUS: $BODY"
    api GET /vm/config
    case $BODY in
      *'"rx_rate_limiter"'*'"tx_rate_limiter"'* | *'"tx_rate_limiter"'*)
        lifted="${lifted:-GET /vm/config after the PATCH still shows a tx_rate_limiter: $BODY}" ;;
      *'"rx_rate_limiter"'*) ;;
      *) lifted="${lifted:-GET /vm/config after the PATCH lost the rx_rate_limiter: $BODY}" ;;
    esac
    host_fetch host-wget-lifted.log
    echo "e2e: with the transmit limit lifted the host fetched 1 MiB in ${host_secs:-?} s"
    if [ -z "$lifted" ]; then
      if [ "$host_fetch" != ok ]; then
        lifted="after the PATCH: $host_fetch"
      elif [ "$(sha256sum <"$guest_file" | cut -d' ' -f1)" != "$limited_sum" ]; then
        lifted="after the PATCH the host's copy of the guest's blob differs from the first"
      elif ! awk "BEGIN { exit !($host_secs < 4) }"; then
        lifted="after the PATCH lifting tx_rate_limiter the host took $host_secs s for 1 MiB (at 128 KiB/s it needs at least 7)"
      fi
    fi
  fi
  host_fetch=$limited_fetch host_secs=$limited_secs
fi
touch "$www/done"
if ! await_bg 60; then
  echo "e2e: the rate-limited guest did not power off within 60 s of /done: stopping ember"
  kill -TERM "$PID" 2>/dev/null
fi
collect_guest
guest_secs=$(net_field fetched secs)
echo "e2e: at 128 KiB/s the guest fetched 1 MiB in ${guest_secs:-?} s, the host in ${host_secs:-?} s"
rl_last=$(tail -n 1 "$rl_metrics" 2>/dev/null)
echo "e2e: metrics: $rl_last"
expect_rc 0 && expect_stdout 'EMBER-NET done=yes' && {
  { [ "$(net_field fetched rc)" = 0 ] && [ "$(net_field fetched sha256)" = "$host_sum" ]; } ||
    _unmet "the guest's fetch: '$(net_line fetched)', expected rc=0 sha256=$host_sum"
} && {
  guest_sum=$(net_field serving sha256)
  if [ "$host_fetch" != ok ]; then
    _unmet "$host_fetch"
  elif [ "${limited_sum:-}" != "$guest_sum" ]; then
    _unmet "the host's copy of the guest's blob (sha256 ${limited_sum:-?}) differs from what the guest served (sha256 ${guest_sum:-?})"
  fi
} && {
  awk "BEGIN { exit !($guest_secs >= 7) }" 2>/dev/null ||
    _unmet "the guest fetched 1 MiB in '${guest_secs}' s through rx-bw=128K; it cannot take less than 7 s"
} && {
  awk "BEGIN { exit !($host_secs >= 7) }" 2>/dev/null ||
    _unmet "the host fetched 1 MiB from the guest in '${host_secs}' s through tx-bw=128K; it cannot take less than 7 s"
} && {
  for k in rx_throttled tx_throttled; do
    [ "$(net_metric "$rl_metrics" net0 $k)" -gt 0 ] 2>/dev/null ||
      _unmet "net.net0.$k is '$(net_metric "$rl_metrics" net0 $k)': no frame was held back"
  done
  [ "$(net_metric "$rl_metrics" net0 bad_requests)" = 0 ] ||
    _unmet "net.net0.bad_requests is '$(net_metric "$rl_metrics" net0 bad_requests)'"
}
check net-rate-limit
[ -z "$lifted" ] || _unmet "$lifted"
check net-rate-limit-patch
