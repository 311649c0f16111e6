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
# bit-exact (sha256), and the guest powers off (status 0). Making a tap needs
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
mkdir -p "$www"
head -c 1048576 /dev/urandom >"$www/blob"
host_sum=$(sha256sum <"$www/blob" | cut -d' ' -f1)
made_tap=no
httpd_pid=
cleanup() {
  [ -z "$httpd_pid" ] || kill "$httpd_pid" 2>/dev/null
  [ "$made_tap" = no ] || busybox tunctl -d "$tap" >/dev/null 2>&1
}
trap cleanup EXIT
trap 'exit 143' TERM INT

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

run_bg net-guest run --kernel "$img/vmlinuz" --initrd "$img/initramfs.cpio.gz" --cpus 1 --mem "$GUEST_MEM" \
  --console stdio --cmdline "$(guest_cmdline net)" --net "tap=$tap,mac=$mac"
# The guest serves its file once it has pinged and fetched ours; it may also
# end early (no interface).
waited=0
while ! grep -a -q -E 'EMBER-NET serving |EMBER-GUEST EXIT' "$OUT" 2>/dev/null; do
  { kill -0 "$PID" 2>/dev/null && [ "$waited" -lt 240 ]; } || break
  sleep 1
  waited=$((waited + 1))
done
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
# The guest polls for /done on our httpd, then powers off.
touch "$www/done"
waited=0
while kill -0 "$PID" 2>/dev/null && [ "$waited" -lt 60 ]; do
  sleep 1
  waited=$((waited + 1))
done
if kill -0 "$PID" 2>/dev/null; then
  echo "e2e: the guest did not power off within 60 s of /done: stopping ember"
  kill -TERM "$PID" 2>/dev/null
fi
finish_bg
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
