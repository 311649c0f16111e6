# Helpers for ember's end-to-end scenarios. POSIX sh: scenarios run under
# BusyBox sh inside the nested sandbox's L1 and under bash/dash on a KVM host.
#
# The runner (tests/e2e/run-scenarios.sh) gives every scenario:
#   EMBER    the ember binary
#   IMAGES   directory with <flavour>/vmlinuz and <flavour>/initramfs.cpio.gz
#            (flavours: cloud, generic; built by guest-images/build)
#   WORK     this scenario's own empty directory; logs kept after the run
#            (in the sandbox it is on the 9p share, so the host sees it)
#   SCRATCH  this scenario's own empty directory on a local filesystem (tmpfs
#            in L1): put disk images here, not in WORK
#   DIRECT_SCRATCH  the same on a filesystem that should take O_DIRECT (in
#            L1 the sandbox's ext4 disk, whose tmpfs refuses it): for
#            cache=none disks; check with takes_o_direct
#   E2E_DIR  the directory holding this file
# A scenario does `. "$E2E_DIR/lib.sh"`, then reports each check with
# `pass NAME` or `fail NAME REASON` (one line each: "EMBER-TEST PASS NAME",
# "EMBER-TEST FAIL NAME: REASON"). A scenario that reports nothing counts as
# one failure, and so does one that is killed by its timeout.

# Default guest command line of the test initramfs. ember's --cmdline
# replaces its default, so this repeats it; `quiet` keeps boot fast under TCG
# (every console byte is a VM exit).
GUEST_CMDLINE=${GUEST_CMDLINE:-"console=ttyS0 reboot=k panic=1 quiet"}
# Guest RAM for test boots: small, as the kernel initialises every page's
# metadata at boot, which TCG makes slow.
GUEST_MEM=${GUEST_MEM:-256M}

# guest_cmdline NAME: the command line that makes the test initramfs run
# /tests/NAME.sh (tests/e2e/guest/NAME.sh) and power off.
guest_cmdline() {
  echo "$GUEST_CMDLINE ember.run=$1"
}

# Seconds without guest output other than kernel messages after which a
# running ember is diagnosed (stall_watch); 0 turns the watch off.
STALL_SECONDS=${STALL_SECONDS:-90}

# ember_pid PID: PID itself when it is ember, else its ember child (coreutils
# `timeout` forks; BusyBox's execs the command in place).
ember_pid() {
  case "$(cat "/proc/$1/comm" 2>/dev/null)" in
    ember) echo "$1" ;;
    *) pgrep -P "$1" 2>/dev/null | head -n 1 ;;
  esac
}

# guest_stalled ERRFILE: true when the last two state dumps (SIGUSR2) in
# ERRFILE show a guest that is stuck through no fault of ember's: the VM
# running, every virtio ring drained on ember's side (all avail entries
# popped, all used entries published, no host I/O in flight), and some vcpu
# with interrupts enabled sitting at the same rip in both dumps while its
# local APIC holds requested interrupts (IRR) it never takes. Under the nested
# sandbox (TCG emulating SVM for L1's KVM) this happens now and then; a lost
# kick, a lost completion or a lost interrupt in ember looks different (a
# ring not drained, or nothing in IRR). Requests the driver made available
# but has not kicked yet are allowed when ember's ring asks for that kick:
# the stuck rip has always been vring_unmap_one_split+0x2c (virtio_ring's
# page offset 0x20c), in the completion path of the interrupt handler,
# which can run between virtio-blk adding requests and kicking for them.
guest_stalled() {
  awk '
    function val(s, k,   i, t) {
      i = index(s, " " k "=")
      if (i == 0) return "?"
      t = substr(s, i + length(k) + 2)
      sub(/[ ;,|].*/, "", t)
      return t
    }
    /state dump \(SIGUSR2\)/ { n++; running[n] = 0; busy[n] = 0; next }
    n && /^VM: / { running[n] = ($0 ~ /, running$/) }
    n && /^  vcpu[0-9]+: / {
      v = $1
      rip[n, v] = val($0, "rip"); irr[n, v] = val($0, "irr"); ifl[n, v] = val($0, "if")
      vcpus[v] = 1
    }
    n && /virtio-mmio\(/ && /next_avail=/ {
      if (val($0, "used.idx") != val($0, "next_used") || val($0, "pending_used") != "0" ||
          index($0, ": 0 in flight;") == 0)
        busy[n] = 1
      else if (val($0, "avail.idx") != val($0, "next_avail")) {
        # Entries ember has not popped are the driver'"'"'s to kick: fine only
        # when ember asked for that kick (avail_event at its next entry, no
        # NO_NOTIFY), i.e. when the stuck vcpu is what keeps the kick back.
        if (val($0, "avail_event") == val($0, "next_avail") && val($0, "used.flags") == "0x0")
          unkicked[n] = 1
        else
          busy[n] = 1
      }
    }
    END {
      if (n < 2 || !running[n] || !running[n - 1] || busy[n] || busy[n - 1]) exit 1
      for (v in vcpus)
        if (rip[n, v] == rip[n - 1, v] && irr[n, v] != "-" && irr[n - 1, v] != "-" && ifl[n, v] == "1") {
          print v " rip=" rip[n, v] " irr=" irr[n, v] (unkicked[n] ? "; new requests not yet kicked" : "")
          exit 0
        }
      exit 1
    }' "$1"
}

# in_sandbox: true inside the nested sandbox's L1 (tests/e2e/run exports
# EMBER_E2E_SANDBOX=1 there), false on a KVM host.
in_sandbox() {
  [ "${EMBER_E2E_SANDBOX:-0}" = 1 ]
}

# takes_o_direct DIR: true when a file in DIR can be written with O_DIRECT,
# as ember's cache=none disks are.
takes_o_direct() {
  _direct_ok=yes
  dd if=/dev/zero of="$1/.odirect-probe" bs=4096 count=1 oflag=direct 2>/dev/null || _direct_ok=no
  rm -f "$1/.odirect-probe"
  [ "$_direct_ok" = yes ]
}

# pool_early_triple_faults POOL_OUT DIR: prints the numbers of the guests in
# ember-pool's summary table (POOL_OUT) that ended in a triple fault before
# their console (DIR/guest-N.log) reached "EMBER-GUEST READY", i.e. in the
# kernel's early boot. Seen once in the nested sandbox, in one of four
# concurrent guests right after an L1 restart, the other three clean: like
# the stalls above, a failure of TCG's SVM emulation. Only the sandbox
# retries on it (embed-pool.sh); on real KVM it is a failure like any other.
pool_early_triple_faults() {
  sed -n 's/^\([0-9][0-9]*\)  *reboot .*(triple fault).*/\1/p' "$1" | while read -r _pt_n; do
    grep -a -q 'EMBER-GUEST READY' "$2/guest-$_pt_n.log" 2>/dev/null || echo "$_pt_n"
  done
}

# unexplained_triple_fault ERRFILE OUTFILE: true, printing why, when ember
# ended on a triple fault (ERRFILE: "guest rebooted (triple fault)") while
# the guest's console (OUTFILE) shows nothing wrong: no panic, oops, BUG,
# double fault or failed check, and no reboot the guest asked for (Linux
# falls back to a triple fault when other ways to reset fail). Seen in the
# nested sandbox after EMBER-GUEST READY too: disk-verify's guest in CI, in
# the middle of a verifier pass with no errors (that run's L1 had wedged
# twice in the same scenario just before), and crash-kill's restored guest
# after three clean verifier cycles, with nothing resubmitted. Like the
# stalls, they come with two-vcpu guests doing disk I/O under TCG's SVM, with
# either engine, and only rarely with one vcpu (README, "The nested sandbox").
# run_ember and finish_bg turn one into a retry in the sandbox only; on real
# KVM it fails like anything else.
unexplained_triple_fault() {
  grep -a -q 'guest rebooted (triple fault)' "$1" 2>/dev/null || return 1
  tr -d '\r' <"$2" 2>/dev/null |
    grep -a -q -E 'Kernel panic|Oops|BUG:|general protection|double fault|Restarting system|FAIL|ERROR' &&
    return 1
  echo "the guest triple-faulted with nothing wrong on its console (last line: $(tr -d '\r' <"$2" 2>/dev/null | grep -a -v '^$' | tail -n 1 | cut -c1-100))"
}

# retry_if_nested_fault LOG: in the sandbox, leaves LOG.guest-stalled (a
# retry for run-scenarios.sh) when LOG's ember ended in an unexplained
# triple fault.
retry_if_nested_fault() {
  in_sandbox || return 0
  _rn_why=$(unexplained_triple_fault "$WORK/$1.err" "$WORK/$1.out") || return 0
  echo "$_rn_why" >"$WORK/$1.guest-stalled"
  echo "e2e: $1: $_rn_why: the scenario runs again"
}

# stall_watch PID LOG: while PID runs, watches $WORK/LOG.out. Once it has
# shown nothing but kernel messages for STALL_SECONDS, asks ember for two state dumps 15 s apart
# (SIGUSR2, into LOG.err) and writes every ember thread's kernel state to
# LOG.stall. When the dumps show a guest stall (guest_stalled), it kills ember
# and leaves LOG.guest-stalled, which makes run-scenarios.sh run the scenario
# once more. Again after the console moves.
stall_watch() {
  _sw_pid=$1
  _sw_out="$WORK/$2.out"
  _sw_size=-1
  _sw_quiet=0
  _sw_done=no
  while kill -0 "$_sw_pid" 2>/dev/null; do
    sleep 5
    # Kernel messages ("[  96.0] rcu: ... detected stalls") are not progress:
    # a guest with one vcpu stuck keeps printing them from the other.
    _sw_now=$(tr -d '\r' <"$_sw_out" 2>/dev/null | grep -a -c -v '^\[')
    if [ "$_sw_now" != "$_sw_size" ]; then
      _sw_size=$_sw_now
      _sw_quiet=0
      _sw_done=no
      continue
    fi
    _sw_quiet=$((_sw_quiet + 5))
    [ "$_sw_done" = no ] && [ "$_sw_quiet" -ge "$STALL_SECONDS" ] || continue
    _sw_done=yes
    _sw_e=$(ember_pid "$_sw_pid")
    [ -n "$_sw_e" ] || continue
    echo "e2e: $2: no guest output but kernel messages for ${_sw_quiet}s: state dumps in $2.err, threads in $2.stall"
    for _sw_round in 1 2; do
      [ "$_sw_round" = 1 ] || sleep 15
      kill -USR2 "$_sw_e" 2>/dev/null
      {
        echo "== ember pid $_sw_e, console silent for ${_sw_quiet}s, $(date)"
        for _sw_t in /proc/"$_sw_e"/task/*; do
          echo "-- thread ${_sw_t##*/} $(cat "$_sw_t/comm" 2>/dev/null): state $(cut -d' ' -f3 "$_sw_t/stat" 2>/dev/null) cpu-ticks user/system $(cut -d' ' -f14,15 "$_sw_t/stat" 2>/dev/null | tr ' ' /) wchan $(cat "$_sw_t/wchan" 2>/dev/null)"
          cat "$_sw_t/stack" 2>/dev/null
        done
      } >>"$WORK/$2.stall" 2>&1
    done
    sleep 5 # the dump pauses and reads every vcpu
    if _sw_why=$(guest_stalled "$WORK/$2.err"); then
      echo "the guest stalled ($_sw_why)" >"$WORK/$2.guest-stalled"
      echo "e2e: $2: guest stall, not ember's (every ring drained; $_sw_why pending, not taken): stopping ember"
      kill -KILL "$_sw_e" 2>/dev/null
    fi
  done
}

# run_ember LOG TIMEOUT ARG...: runs "$EMBER [$EMBER_PRE_ARGS] ARG..." with stdin from
# /dev/null, its stdout (the guest console) in $WORK/LOG.out and its stderr in
# $WORK/LOG.err. Sets RC (exit status; 124 for a timeout), TIMED_OUT (yes|no),
# ELAPSED (seconds), OUT and ERR (the two file names). Never fails itself.
run_ember() {
  _log=$1
  _tmo=$2
  shift 2
  OUT="$WORK/$_log.out"
  ERR="$WORK/$_log.err"
  echo "e2e: ember $*" >"$WORK/$_log.cmd"
  _t0=$(date +%s)
  # BusyBox timeout exits 143 on expiry, coreutils 124: normalise below.
  # shellcheck disable=SC2086 # EMBER_PRE_ARGS: flags before the command, split
  timeout "$_tmo" "$EMBER" ${EMBER_PRE_ARGS:-} "$@" </dev/null >"$OUT" 2>"$ERR" &
  _re_pid=$!
  _re_watch=
  if [ "$STALL_SECONDS" -gt 0 ]; then
    stall_watch "$_re_pid" "$_log" &
    _re_watch=$!
  fi
  wait "$_re_pid"
  RC=$?
  [ -z "$_re_watch" ] || { kill "$_re_watch" 2>/dev/null; wait "$_re_watch" 2>/dev/null; }
  ELAPSED=$(($(date +%s) - _t0))
  retry_if_nested_fault "$_log"
  TIMED_OUT=no
  if [ "$RC" = 124 ] || { [ "$RC" = 143 ] && [ "$ELAPSED" -ge "$_tmo" ]; }; then
    RC=124
    TIMED_OUT=yes
  fi
  echo "e2e: $_log: rc=$RC after ${ELAPSED}s"
}

# boot_guest LOG FLAVOUR CPUS SCRIPT [EXTRA ARG...]: boots the test guest of
# FLAVOUR with CPUS vcpus running /tests/SCRIPT.sh, console on stdout.
boot_guest() {
  _log=$1
  _flavour=$2
  _cpus=$3
  _script=$4
  shift 4
  run_ember "$_log" "${BOOT_TIMEOUT:-240}" run \
    --kernel "$IMAGES/$_flavour/vmlinuz" --initrd "$IMAGES/$_flavour/initramfs.cpio.gz" \
    --cpus "$_cpus" --mem "$GUEST_MEM" --console stdio \
    --cmdline "$(guest_cmdline "$_script")" "$@"
}

# wait_for FILE ERE SECONDS: polls once a second until FILE matches ERE;
# returns 1 when SECONDS pass first.
wait_for() {
  _n=0
  while ! grep -a -q -E -- "$2" "$1" 2>/dev/null; do
    sleep 1
    _n=$((_n + 1))
    [ "$_n" -lt "$3" ] || return 1
  done
}

# sample_thread_status FILE PATTERN KEY: run in the background around an ember
# run (kill it afterwards). Twice a second, for each process named ember,
# appends one line to FILE: "COMM=VALUE " for each of its threads whose name
# matches the shell PATTERN (case syntax), sorted, VALUE as the thread's KEY
# line in /proc/PID/task/TID/status (KEY with its colon). Shell builtins only
# inside the scan: under TCG every fork is slow, and the guest shares L1's
# CPUs with this loop (and the sandbox's BusyBox has no pgrep).
sample_thread_status() {
  while :; do
    for _st_p in /proc/[0-9]*; do
      read -r _st_c 2>/dev/null <"$_st_p/comm" || continue
      [ "$_st_c" = ember ] || continue
      for _st_t in "$_st_p"/task/*; do
        read -r _st_c 2>/dev/null <"$_st_t/comm" || continue
        # shellcheck disable=SC2254 # $2 is a pattern on purpose
        case $_st_c in $2) ;; *) continue ;; esac
        while read -r _st_k _st_v; do
          [ "$_st_k" = "$3" ] && { echo "$_st_c=$_st_v"; break; }
        done 2>/dev/null <"$_st_t/status"
      done | sort | tr '\n' ' '
      echo
    done >>"$1"
    sleep 0.5
  done
}

# sample_thread_cpus FILE PATTERN: where the kernel lets each thread run
# (Cpus_allowed_list). sample_seccomp FILE: every thread's system-call filter
# mode (Seccomp: 0 none, 2 filter).
sample_thread_cpus() { sample_thread_status "$1" "$2" Cpus_allowed_list:; }
sample_seccomp() { sample_thread_status "$1" '*' Seccomp:; }

# allowed_cpus: the CPUs this shell (and so ember) may run on, in list
# format; first_cpu, last_cpu: the lowest- and highest-numbered of them.
allowed_cpus() { sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status; }
last_cpu() { allowed_cpus | tr ',-' '\n\n' | tail -n 1; }
first_cpu() { allowed_cpus | tr ',-' '\n\n' | head -n 1; }

# metrics_field FILE WHAT KEY: KEY's value in the last metrics line ember
# wrote to FILE (--metrics-path, PUT /metrics): WHAT is vm, disk:ID, vcpu:N
# (from 0) or entropy. Empty when absent. ember writes one compact JSON object per line
# with sorted keys and nothing nested inside a disk or a vcpu, so splitting at
# braces isolates each (BusyBox has no JSON tool); e2e-lib tests this on
# testdata/metrics-line.jsonl, and unit-api checks that ember writes that line.
metrics_field() {
  _pieces=$(tail -n 1 "$1" | tr '{' '\n')
  case $2 in
    vm) _obj=$(echo "$_pieces" | grep '^"state":') ;;
    disk:*) _obj=$(echo "$_pieces" | grep -F "\"id\":\"${2#disk:}\"") ;;
    vcpu:*) _obj=$(echo "$_pieces" | grep '^"exits":' | sed -n "$((${2#vcpu:} + 1))p") ;;
    entropy) _obj=$(echo "$_pieces" | grep '"bytes":') ;; # a disk's are bytes_read, bytes_written
    *) _obj= ;;
  esac
  echo "$_obj" | tr ',}' '\n\n' | sed -n "s/^\"$3\"://p" | tr -d '"' | head -n 1
}

# run_bg LOG ARG...: starts "$EMBER ARG..." in the background like run_ember
# (same OUT/ERR files); sets PID. finish_bg waits for it and sets RC.
run_bg() {
  _log=$1
  _bg_log=$1
  shift
  OUT="$WORK/$_log.out"
  ERR="$WORK/$_log.err"
  echo "e2e: ember $*" >"$WORK/$_log.cmd"
  "$EMBER" "$@" </dev/null >"$OUT" 2>"$ERR" &
  PID=$!
  TIMED_OUT=no
  ELAPSED=0
  _bg_watch=
  if [ "$STALL_SECONDS" -gt 0 ]; then
    stall_watch "$PID" "$_log" &
    _bg_watch=$!
  fi
}

finish_bg() {
  wait "$PID"
  RC=$?
  [ -z "$_bg_watch" ] || { kill "$_bg_watch" 2>/dev/null; wait "$_bg_watch" 2>/dev/null; }
  _bg_watch=
  retry_if_nested_fault "$_bg_log"
}

# api METHOD PATH [BODY]: one request on ember's control socket $SOCK, with
# the curl a scenario's .host staged in $CURL_DIR (L1 has BusyBox only; see
# api-socket.host); sets STATUS and BODY and appends both to $WORK/api.log.
api() {
  if [ -n "${3:-}" ]; then
    STATUS=$(timeout 120 "$CURL_DIR/lib/ld-linux-x86-64.so.2" --library-path "$CURL_DIR/lib" "$CURL_DIR/bin/curl" -s \
      -o "$WORK/response" -w '%{http_code}' --unix-socket "$SOCK" -X "$1" "http://localhost$2" \
      -H 'Accept: application/json' -H 'Content-Type: application/json' -d "$3")
  else
    STATUS=$(timeout 120 "$CURL_DIR/lib/ld-linux-x86-64.so.2" --library-path "$CURL_DIR/lib" "$CURL_DIR/bin/curl" -s \
      -o "$WORK/response" -w '%{http_code}' --unix-socket "$SOCK" -X "$1" "http://localhost$2" \
      -H 'Accept: application/json')
  fi
  BODY=$(cat "$WORK/response" 2>/dev/null)
  echo "api: $1 $2 ${3:-} -> $STATUS $BODY" | tee -a "$WORK/api.log"
}

# await_bg SECS: waits up to SECS seconds for the background ember (PID, from
# run_bg) to end; status 1 when it still runs (the caller stops it, then
# finish_bg).
await_bg() {
  _ab_n=0
  while kill -0 "$PID" 2>/dev/null; do
    [ "$_ab_n" -lt "$1" ] || return 1
    sleep 1
    _ab_n=$((_ab_n + 1))
  done
}

# checkpoint_paused LOG SNAPSHOT DIR [ARG...]: restores SNAPSHOT paused (no
# vcpu runs, no device starts) and checkpoints it at once into DIR with
# SIGUSR1; sets RC like run_ember. ARGs go to `ember restore`.
checkpoint_paused() {
  _cp_log=$1
  _cp_from=$2
  _cp_to=$3
  shift 3
  run_bg "$_cp_log" restore "$_cp_from" --paused --checkpoint-dir "$_cp_to" --console none "$@"
  if wait_for "$ERR" 'VM is paused' 120; then
    kill -USR1 "$PID"
  else
    _unmet "restore --paused never reported the paused VM"
    kill "$PID" 2>/dev/null
  fi
  finish_bg
}

# extract_verifier: sets VERIFIER to the in-guest verifier (ember-verify)
# taken out of the cloud test initramfs, for host-side `check-image` (L1 has
# nothing else that knows the format); empty when it is not there.
extract_verifier() {
  VERIFIER=""
  mkdir -p "$SCRATCH/initramfs"
  (cd "$SCRATCH/initramfs" && zcat "$IMAGES/cloud/initramfs.cpio.gz" | cpio -i -d bin/ember-verify 2>/dev/null)
  [ -x "$SCRATCH/initramfs/bin/ember-verify" ] && VERIFIER="$SCRATCH/initramfs/bin/ember-verify"
}

# Each expectation returns 0 when it holds; otherwise it sets REASON (the first
# unmet expectation since the last pass/fail) and returns 1, so checks chain:
#   if expect_rc 0 && expect_stdout 'READY cpus=2'; then pass x; else fail x "$REASON"; fi
REASON=

_unmet() {
  [ -n "$REASON" ] || REASON=$1
  return 1
}

expect_rc() {
  [ "$TIMED_OUT" = no ] || _unmet "ember timed out after ${ELAPSED}s (expected exit status $1)" || return 1
  [ "$RC" = "$1" ] || _unmet "ember exited with $RC, expected $1"
}

expect_rc_nonzero() {
  [ "$TIMED_OUT" = no ] || _unmet "ember timed out after ${ELAPSED}s (expected a non-zero exit)" || return 1
  [ "$RC" != 0 ] || _unmet "ember exited with 0, expected non-zero"
}

# expect_stdout / expect_stderr / expect_log ERE: the pattern occurs in the
# console output / ember's stderr / either.
expect_stdout() {
  grep -a -q -E -- "$1" "$OUT" || _unmet "console output lacks /$1/"
}

expect_stderr() {
  grep -a -q -E -- "$1" "$ERR" || _unmet "stderr lacks /$1/"
}

expect_log() {
  cat "$OUT" "$ERR" | grep -a -q -E -- "$1" || _unmet "output lacks /$1/"
}

expect_no_log() {
  ! cat "$OUT" "$ERR" | grep -a -q -E -- "$1" || _unmet "output unexpectedly has /$1/"
}

# expect_stderr_i ERE: case-insensitive stderr match.
expect_stderr_i() {
  grep -a -q -i -E -- "$1" "$ERR" || _unmet "stderr lacks /$1/ (any case)"
}

pass() {
  echo "EMBER-TEST PASS $1"
  REASON=
}

# fail NAME REASON: reports the failure after the tail of the last ember run
# (lines starting "    | ", which tests/e2e/run shows with the result).
fail() {
  if [ -n "${OUT:-}" ] && [ -f "$OUT" ]; then
    {
      echo "$1: last run: $(cat "${OUT%.out}.cmd" 2>/dev/null)"
      echo "rc=$RC timed_out=$TIMED_OUT elapsed=${ELAPSED}s"
      echo "--- console (stdout) tail:"
      tail -n 25 "$OUT" | tr -d '\r'
      echo "--- stderr tail:"
      tail -n 15 "$ERR"
    } | sed 's/^/    | /'
  fi
  echo "EMBER-TEST FAIL $1: ${2:-unspecified}"
  REASON=
}

# check NAME: pass or fail NAME according to the expectations chained before it.
#   expect_rc 0 && expect_stdout x; check NAME
check() {
  if [ -z "$REASON" ]; then pass "$1"; else fail "$1" "$REASON"; fi
}
