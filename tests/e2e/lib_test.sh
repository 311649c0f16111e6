#!/bin/sh
# Unit test of lib.sh's classifiers of nested-sandbox failures: guest_stalled
# against state dumps in testdata/ (only a guest stuck on interrupts it never
# takes, with every ring drained on ember's side, may count as a stall to
# retry), pool_early_triple_faults and unexplained_triple_fault.
#   lib_test.sh E2E_DIR
E2E_DIR=${1:?usage: lib_test.sh E2E_DIR}
. "$E2E_DIR/lib.sh"
data=$E2E_DIR/testdata
bad=0
expect() { # expect yes|no FILE
  if got=$(guest_stalled "$data/$2"); then r=yes; else r=no; fi
  if [ "$r" = "$1" ]; then
    echo "ok: $2: $r${got:+ ($got)}"
  else
    echo "FAIL: $2: expected $1, got $r"
    bad=$((bad + 1))
  fi
}
expect yes stall-guest.err
expect no stall-lost-kick.err
expect yes stall-unkicked.err
case $(guest_stalled "$data/stall-unkicked.err") in
  "vcpu0: rip=0xffffffffc040920c irr=0xec; new requests not yet kicked") ;;
  *)
    echo "FAIL: the reason names the requests not yet kicked: $(guest_stalled "$data/stall-unkicked.err")"
    bad=$((bad + 1))
    ;;
esac
expect no stall-all-idle.err
expect no stall-moving.err
expect no stall-paused.err
expect no stall-one-dump.err
case $(guest_stalled "$data/stall-guest.err") in
  "vcpu0: rip=0xffffffff81a17a0b irr=0xec" | "vcpu1: rip=0xffffffffc05c220c irr=0x22,0xfb") ;;
  *)
    echo "FAIL: the reason names a stuck vcpu: $(guest_stalled "$data/stall-guest.err")"
    bad=$((bad + 1))
    ;;
esac
# ember-pool: guest 1 triple-faulted in early boot (pool-triple-fault is the
# run that showed it); a clean table, and a triple fault after READY (the
# guest's own user space was running), do not count.
got=$(pool_early_triple_faults "$data/pool-triple-fault/pool.out" "$data/pool-triple-fault" | tr '\n' ' ')
if [ "$got" = "1 " ]; then echo "ok: pool-triple-fault: guest 1"; else
  echo "FAIL: pool-triple-fault: expected guest 1, got '$got'"
  bad=$((bad + 1))
fi
tmp=$(mktemp -d)
cp "$data"/pool-triple-fault/* "$tmp/"
sed -i 's/^1      reboot    -        21.2     -       (triple fault)/1      poweroff  22.0     22.5     0       APIC/' "$tmp/pool.out"
got=$(pool_early_triple_faults "$tmp/pool.out" "$tmp")
if [ -z "$got" ]; then echo "ok: clean pool table: none"; else
  echo "FAIL: clean pool table: expected none, got '$got'"
  bad=$((bad + 1))
fi
cp "$data"/pool-triple-fault/pool.out "$tmp/pool.out"
echo "EMBER-GUEST READY cpus=1" >>"$tmp/guest-1.log"
got=$(pool_early_triple_faults "$tmp/pool.out" "$tmp")
if [ -z "$got" ]; then echo "ok: triple fault after READY: none"; else
  echo "FAIL: triple fault after READY: expected none, got '$got'"
  bad=$((bad + 1))
fi
# A triple fault with a clean console (CI's disk-verify, mid-pass) is retried
# in the sandbox; one the guest explains, or asked for, is not.
triple() { # triple yes|no CASE ERR_LINE CONSOLE_LINE
  printf 'ember: %s\n' "$3" >"$tmp/t.err"
  printf 'EMBER-GUEST READY cpus=2 acpi=yes\r\nVERIFY PROGRESS pass=1/3 gen=1 writes=4096 errors=0\r\n%s\r\n' "$4" >"$tmp/t.out"
  if got=$(unexplained_triple_fault "$tmp/t.err" "$tmp/t.out"); then r=yes; else r=no; fi
  if [ "$r" = "$1" ]; then echo "ok: triple fault, $2: $r"; else
    echo "FAIL: triple fault, $2: expected $1, got $r ($got)"
    bad=$((bad + 1))
  fi
}
triple no "plain reboot" "guest rebooted" ""
triple no "guest panicked" "guest rebooted (triple fault)" "Kernel panic - not syncing: Fatal exception"
triple no "guest oopsed" "guest rebooted (triple fault)" "BUG: unable to handle page fault for address: ffff8880"
triple no "verifier failed" "guest rebooted (triple fault)" "VERIFY FAIL errors=3"
triple no "guest asked to reboot" "guest rebooted (triple fault)" "[   12.1] reboot: Restarting system"
triple yes "clean console" "guest rebooted (triple fault)" ""
case $got in
  *"last line: VERIFY PROGRESS pass=1/3"*) echo "ok: the reason quotes the console's last line" ;;
  *)
    echo "FAIL: the reason quotes the console's last line: $got"
    bad=$((bad + 1))
    ;;
esac
# retry_if_nested_fault leaves the retry marker in the sandbox only.
WORK=$tmp
cp "$tmp/t.err" "$tmp/boot.err"
cp "$tmp/t.out" "$tmp/boot.out"
EMBER_E2E_SANDBOX=0 retry_if_nested_fault boot >/dev/null
if [ -e "$tmp/boot.guest-stalled" ]; then echo "FAIL: a retry marker on real KVM"; bad=$((bad + 1)); else
  echo "ok: no retry on real KVM"
fi
EMBER_E2E_SANDBOX=1 retry_if_nested_fault boot >/dev/null
if grep -q 'triple-faulted' "$tmp/boot.guest-stalled" 2>/dev/null; then echo "ok: retry in the sandbox"; else
  echo "FAIL: no retry marker in the sandbox"
  bad=$((bad + 1))
fi
# takes_o_direct: no directory, no O_DIRECT (and no probe file left behind
# where there is one: disk-verify-direct runs the true case in the sandbox).
if takes_o_direct "$tmp/missing"; then echo "FAIL: O_DIRECT in a missing directory"; bad=$((bad + 1)); else
  echo "ok: no O_DIRECT in a missing directory"
fi
takes_o_direct "$tmp" || true
if [ -e "$tmp/.odirect-probe" ]; then echo "FAIL: the O_DIRECT probe file was left behind"; bad=$((bad + 1)); else
  echo "ok: no probe file left behind"
fi
# sample_thread_cpus: a process named ember, pinned to the first CPU with
# taskset, shows up as "ember=CPU"; the sampler stops when killed.
# sample_seccomp: the same process, without a filter, as "ember=0".
# (A script: the kernel names its process after the script's file.)
printf '#!/bin/sh\nwhile :; do sleep 1; done\n' >"$tmp/ember"
chmod +x "$tmp/ember"
taskset -c "$(first_cpu)" "$tmp/ember" 10 &
sleeper=$!
sample_thread_cpus "$tmp/samples" 'ember' &
sampler=$!
sample_seccomp "$tmp/seccomp" &
seccomp_sampler=$!
sleep 1.5
kill "$sampler" "$seccomp_sampler"
wait "$sampler" "$seccomp_sampler" 2>/dev/null
kill "$sleeper"
wait "$sleeper" 2>/dev/null
if grep -q -x -F -- "ember=$(first_cpu) " "$tmp/samples"; then echo "ok: sampled ember=$(first_cpu)"; else
  echo "FAIL: no sample 'ember=$(first_cpu)': $(head -n 3 "$tmp/samples" | tr '\n' '|')"
  bad=$((bad + 1))
fi
# sample_seccomp: the same process without a filter shows "ember=0".
if grep -q -x -F -- "ember=0 " "$tmp/seccomp"; then echo "ok: sampled seccomp ember=0"; else
  echo "FAIL: no sample 'ember=0': $(head -n 3 "$tmp/seccomp" | tr '\n' '|')"
  bad=$((bad + 1))
fi

# metrics_field on a line as ember writes it (unit-api checks that it does).
metrics_expect() { # metrics_expect WHAT KEY VALUE
  got=$(metrics_field "$tmp/metrics.json" "$1" "$2")
  if [ "$got" = "$3" ]; then echo "ok: metrics $1 $2 = $3"; else
    echo "FAIL: metrics $1 $2: expected '$3', got '$got'"
    bad=$((bad + 1))
  fi
}
{ echo '{"older":"line"}'; cat "$data/metrics-line.jsonl"; } >"$tmp/metrics.json"
metrics_expect vm state paused
metrics_expect disk:root bytes_read 40960
metrics_expect disk:root writes 5
metrics_expect disk:root path /images/root.img
metrics_expect disk:data bytes_written 1536
metrics_expect disk:data writes 3
metrics_expect disk:data requests 3
metrics_expect disk:root throttled 4
metrics_expect disk:data throttled 0
metrics_expect disk:nope writes ''
metrics_expect vcpu:0 exits 100
metrics_expect vcpu:0 mmio_exits 30
metrics_expect vcpu:1 pio_exits 1
metrics_expect vcpu:2 exits ''
metrics_expect entropy bytes 768
metrics_expect entropy requests 12
metrics_expect entropy bad_requests 1
metrics_expect disk:root utc_timestamp_ms ''
rm -rf "$tmp"
[ "$bad" = 0 ]
