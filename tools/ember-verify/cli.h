// The command line front end of ember-verify; main.cpp only wires it to stdio
// and signals, so the unit tests drive exactly what the guest runs.
//
// ember-verify is the test guest's I/O workload and oracle. It writes 4 KiB
// self-describing blocks (block_format.h) in a deterministic order
// (write_sequence.h), so both the guest and a host tool can tell what every
// block must hold, without storing anything besides (seed, size, write count).
//
// Output: one line each, on stdout, flushed at once (W, R, F are counts of 4 KiB
// block writes, 4 KiB block reads and successful fdatasyncs; write indices are
// 0-based positions in the write sequence):
//   VERIFY START device=P size=BYTES blocks=N seed=S mode=passes|continuous passes=P qd=Q direct=0|1 flush_every=K
//   VERIFY PROGRESS pass=I/P gen=G writes=W flushes=F errors=E      (passes mode, per pass)
//   VERIFY PROGRESS cycle=C gen=G writes=W reads=R flushes=F errors=E (continuous, per cycle)
//   VERIFY FLUSHED seed=S size=BYTES writes=W   (--log-flushes: writes [0, W) are durable)
//   VERIFY ERROR <error>                         (the first 10 errors, then one "further
//                                                 errors are counted, not printed")
//   VERIFY PASS blocks=N writes=W reads=R flushes=F
//   VERIFY FAIL <count> errors; first: <error>
//   CHECK START image=P size=BYTES blocks=N seed=S writes=W
//   CHECK ERROR <error>
//   CHECK PASS blocks=N writes=W current=C newer=M unwritten=U
//   CHECK FAIL <count> errors; first: <error>
// where <error> is one of
//   block=B expected gen=G got <what> [offset O]       (write-verify read-back)
//   block=B expected gen=G got write error: <strerror> (errno E) [offset O]
//   block=B expected gen=G got read error: <strerror> (errno E) [offset O]
//   flush error: <strerror> (errno E) [after writes=W]
//   block=B expected gen>=G got <what> [offset O]      (check-image)
// and <what> is "gen=G2 ..." or a description of the damage: "zeros (never
// written)", "bad magic (not a verifier block)", "bad checksum (header says
// gen=G2)", "payload mismatch (gen=G2)", "seed=S2 (another run, gen=G2)",
// "block=B2 gen=G2 (misdirected write)", "region of N2 blocks (gen=G2)".
// Setup and usage errors go to stderr as "ember-verify: error: <message>", with
// exit status 2 and no PASS/FAIL line.
//
// Exactly one PASS or FAIL line ends every run that got as far as START. Only
// the final line depends on the result; nothing depends on wall-clock timing
// except when --duration ends, so a run survives being paused, checkpointed and
// restored at any instant. I/O retries EINTR and short transfers.
//
// Durability protocol (crash-injection suite): writes are issued in batches of
// --flush-every within one pass; every write of a batch has returned before the
// batch's fdatasync, so "VERIFY FLUSHED ... writes=W" means writes [0, W) were
// acknowledged and then flushed. After killing the backend, the host runs
// check-image with the last such line's S, BYTES and W. A failed write still
// counts in W (its outcome is unknown) and has already failed the guest's run.
//
// Limits: the region is at most 2^32-1 blocks; the writer keeps 8 bytes per block
// plus 4 bytes per block for the current pass order in memory (12 MiB per GiB of
// region), so give a small guest a --size. A torn 4 KiB block (some sectors old,
// some new) is reported as "bad checksum" even when it was an unflushed write.
// Guest writes reach ember's backend as whole, 4 KiB-aligned blocks, and a killed
// process does not leave a page-cache page half copied, so a torn block in a
// crash test is a real finding, not noise.
#pragma once

#include <atomic>
#include <span>
#include <string>
#include <string_view>

#include "tools/ember-verify/console.h"

namespace ember::verify {

// Exit statuses.
inline constexpr int kExitPass = 0;
inline constexpr int kExitFail = 1;  // verification failed: data wrong or I/O errors
inline constexpr int kExitUsage = 2; // bad command line or unusable device: nothing verified

// The full usage text (also printed by "ember-verify help").
std::string_view usage_text();

// Runs one command; `args` excludes the program name. `stop` is raised by the
// caller's SIGINT/SIGTERM handler (may be null).
int run_cli(std::span<const std::string> args, Console& console,
            const std::atomic<bool>* stop = nullptr);

// Exposed for tests: "4096", "64K", "1M", "2GiB", "0x1000" -> bytes. Throws UsageError.
uint64_t parse_size(std::string_view text);

} // namespace ember::verify
