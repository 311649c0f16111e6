# Guest half of tests/e2e/scenarios/net.sh (ember's --net: a virtio-net device
# on a host tap): finds the interface virtio_net drives, gives it
# 172.30.0.2/24 and pings the host's side of the tap (172.30.0.1). Then, by
# ember.net.mode=:
#   full (default)  fetches a file from the host's httpd (and says how many
#                   seconds that took), then serves a file of its own until
#                   the host says it has it (/done)
#   ping            nothing more
#   rounds          fetches the host's 1 MiB blob (through its CGI, which the
#                   host can make stall mid-transfer for a checkpoint) again
#                   and again, one "EMBER-NET round=N ..." pair of lines per
#                   round, until the host puts /rounds-done on its httpd or
#                   ember.net.rounds=N rounds (default 40) are done
# Prints "EMBER-NET ..." lines of key=value facts that the scenario checks; it
# checks nothing itself. ember.net.wait=N (seconds, default 180) bounds the
# wait for the host in full mode; init powers off when this returns.
host=172.30.0.1
me=172.30.0.2
port=8080
wait_s=180
mode=full
rounds=40
read -r cmdline </proc/cmdline
for arg in $cmdline; do
  case $arg in
    ember.net.wait=*) wait_s=${arg#ember.net.wait=} ;;
    ember.net.mode=*) mode=${arg#ember.net.mode=} ;;
    ember.net.rounds=*) rounds=${arg#ember.net.rounds=} ;;
  esac
done

# The first interface whose device virtio_net drives: the driver binds when
# init loads it, but give it a few seconds all the same.
iface=
tries=0
while [ -z "$iface" ] && [ "$tries" -lt 20 ]; do
  for dev in /sys/class/net/*; do
    drv=$(readlink "$dev/device/driver" 2>/dev/null)
    if [ "${drv##*/}" = virtio_net ]; then
      iface=${dev##*/}
      break
    fi
  done
  [ -n "$iface" ] || { sleep 0.5; tries=$((tries + 1)); }
done
if [ -z "$iface" ]; then
  names=
  for dev in /sys/class/net/*; do names="$names${names:+,}${dev##*/}"; done
  echo "EMBER-NET iface=none interfaces=$names"
  exit 0
fi
sys=/sys/class/net/$iface
echo "EMBER-NET iface=$iface driver=virtio_net mac=$(cat "$sys/address") operstate=$(cat "$sys/operstate") mtu=$(cat "$sys/mtu")"

ip addr add "$me/24" dev "$iface"
ip link set "$iface" up
tries=0
while [ "$(cat "$sys/operstate")" != up ] && [ "$tries" -lt 20 ]; do
  sleep 0.5
  tries=$((tries + 1))
done
echo "EMBER-NET link iface=$iface operstate=$(cat "$sys/operstate") carrier=$(cat "$sys/carrier" 2>/dev/null)"

# BusyBox ping's summary: "3 packets transmitted, 3 packets received, ...".
summary=$(ping -c 3 -W 5 "$host" 2>&1 | grep 'packets transmitted')
sent=$(echo "$summary" | sed -n 's/^\([0-9]*\) packets transmitted.*/\1/p')
received=$(echo "$summary" | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')
echo "EMBER-NET ping host=$host sent=${sent:-0} received=${received:-0}"
[ "$mode" != ping ] || exit 0

if [ "$mode" = rounds ]; then
  # Each round's wget is bounded (timeout; BusyBox's own -T crashes), and so
  # is the number of rounds, so the guest ends even if the host never says
  # so. A round the host stalls for its checkpoint takes as long as the
  # checkpoint and the restore.
  n=1
  host_done=no
  while [ "$n" -le "$rounds" ]; do
    echo "EMBER-NET round=$n start up=$(cut -d' ' -f1 /proc/uptime)"
    timeout 120 wget -q -Y off -O /tmp/round "http://$host:$port/cgi-bin/blob?round=$n"
    rc=$?
    echo "EMBER-NET round=$n rc=$rc bytes=$(wc -c </tmp/round 2>/dev/null) sha256=$(sha256sum </tmp/round 2>/dev/null | cut -d' ' -f1) up=$(cut -d' ' -f1 /proc/uptime)"
    if [ "$rc" != 0 ]; then
      # What the guest's TCP counted, for the scenario's log: a round that
      # hangs after a restore shows here (with the host's side in its
      # tcp-watch.txt) whether the guest kept out-of-order data it could not
      # use (TCPOFOQueue, TCPDSACKOfoSent).
      echo "EMBER-NET tcpext $(awk '/^TcpExt:/ { if (!h) { for (i = 2; i <= NF; i++) k[i] = $i; h = 1 } else for (i = 2; i <= NF; i++) if ($i != 0) printf "%s=%s ", k[i], $i }' /proc/net/netstat)"
      echo "EMBER-NET tcp $(awk '/^Tcp:/ { if (!h) { for (i = 2; i <= NF; i++) k[i] = $i; h = 1 } else for (i = 2; i <= NF; i++) printf "%s=%s ", k[i], $i }' /proc/net/snmp)"
    fi
    rm -f /tmp/round
    if timeout 10 wget -q -Y off -O /tmp/done "http://$host:$port/rounds-done" 2>/dev/null; then
      host_done=yes
      break
    fi
    n=$((n + 1))
  done
  echo "EMBER-NET rounds-end done=$host_done"
  exit 0
fi

# -Y off: no proxy from the environment. BusyBox's own -T crashes (1.35), so
# timeout bounds the transfer.
t0=$(cut -d' ' -f1 /proc/uptime)
timeout 120 wget -q -Y off -O /tmp/host-blob "http://$host:$port/blob"
rc=$?
t1=$(cut -d' ' -f1 /proc/uptime)
echo "EMBER-NET fetched rc=$rc bytes=$(wc -c </tmp/host-blob 2>/dev/null) sha256=$(sha256sum </tmp/host-blob 2>/dev/null | cut -d' ' -f1) secs=$(awk "BEGIN { print $t1 - $t0 }")"

mkdir -p /tmp/www
head -c 1048576 /dev/urandom >/tmp/www/blob
httpd -p "$me:$port" -h /tmp/www
rc=$?
echo "EMBER-NET serving rc=$rc bytes=$(wc -c </tmp/www/blob) sha256=$(sha256sum </tmp/www/blob | cut -d' ' -f1) url=http://$me:$port/blob"

# The host puts /done on its httpd once it has fetched the blob above.
waited=0
host_done=no
while [ "$waited" -lt "$wait_s" ]; do
  if timeout 10 wget -q -Y off -O /tmp/done "http://$host:$port/done" 2>/dev/null; then
    host_done=yes
    break
  fi
  sleep 1
  waited=$((waited + 1))
done
echo "EMBER-NET done=$host_done waited=${waited}s"
echo "EMBER-NET stats rx_packets=$(cat "$sys/statistics/rx_packets") tx_packets=$(cat "$sys/statistics/tx_packets") rx_errors=$(cat "$sys/statistics/rx_errors") tx_errors=$(cat "$sys/statistics/tx_errors") rx_dropped=$(cat "$sys/statistics/rx_dropped") tx_dropped=$(cat "$sys/statistics/tx_dropped")"
