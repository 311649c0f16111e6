// The user's description of one disk: `--disk PATH[,readonly][,id=NAME]
// [,cache=writeback|none][,engine=uring|sync][,poll=MICROSECONDS]
// [,iothread-cpu=N][,bw=BYTES][,bw-burst=BYTES][,iops=N][,iops-burst=N]`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "devices/virtio/rate_limiter.h"
#include "vmm/errors.h"

namespace ember {

// virtio 1.2 §5.2.6: the GET_ID string is at most 20 bytes.
inline constexpr size_t kBlockIdMax = 20;

struct DiskSpec {
    enum class Cache { writeback, none };
    enum class Engine { uring, sync };

    std::string path;
    bool readonly{false};
    std::string id; // empty: derived from the file name
    Cache cache{Cache::writeback};
    Engine engine{Engine::uring};
    // How long the I/O thread spins for host completions and new requests
    // while requests are in flight, before it sleeps (0: never spins).
    uint32_t poll_us{0};
    // The host CPU the disk's I/O thread runs on; unset: wherever ember's
    // threads may run. Placing it beside the vcpu that kicks it saves the
    // cross-CPU wakeup per batch (README "The block device").
    std::optional<uint32_t> iothread_cpu{};
    // What the guest may do per unit of time (none: no limit). The command
    // line gives rates per second (bw=, iops=); the control socket and
    // libember the whole buckets.
    RateLimit rate_limit{};
};

// The most a disk's I/O thread may spin before it sleeps (poll=).
inline constexpr uint32_t kMaxPollUs = 10000;

// A --disk value that cannot be parsed; the message names the bad part.
class DiskSpecError : public Error {
  public:
    using Error::Error;
};

DiskSpec parse_disk_spec(std::string_view text);
// The checks between options (poll= needs cache=none and engine=uring), of
// the rate limit's buckets, and against the host (iothread-cpu= names a CPU
// ember may run on), for a spec
// built without parse_disk_spec too (libember, a checkpoint). Throws
// DiskSpecError.
void check_disk_spec(const DiskSpec& spec);

} // namespace ember
