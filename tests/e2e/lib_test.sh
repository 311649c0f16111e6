#!/bin/sh
# Unit test of lib.sh's guest-stall classifier (guest_stalled) against state
# dumps in testdata/: only a guest stuck on interrupts it never takes, with
# every ring drained on ember's side, may count as a stall to retry.
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
rm -rf "$tmp"
[ "$bad" = 0 ]
