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
[ "$bad" = 0 ]
