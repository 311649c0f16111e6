// The user's description of one disk: `--disk PATH[,readonly][,id=NAME]
// [,cache=writeback|none][,engine=uring|sync]`.
#pragma once

#include <string>
#include <string_view>

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
};

// A --disk value that cannot be parsed; the message names the bad part.
class DiskSpecError : public Error {
  public:
    using Error::Error;
};

DiskSpec parse_disk_spec(std::string_view text);

} // namespace ember
