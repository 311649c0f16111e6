// Where Firecracker sends metrics and logs: a file or a named pipe the user
// names (PUT /metrics, PUT /logger, --metrics-path).
#pragma once

#include <filesystem>
#include <string_view>

#include "vmm/unique_fd.h"

namespace ember::api {

struct OutputFile {
    UniqueFd fd;
    bool pipe = false;
};

// Opens `path` for appending: a regular file is created (mode 0644, less the
// umask) if missing; a named pipe is opened read-write and non-blocking, so
// it opens with no reader yet, and a reader that is absent or slow costs
// lines, never a writer that waits. Throws ember::Error "WHAT PATH: ...".
OutputFile open_output_file(const std::filesystem::path& path, std::string_view what);

// --log-path and PUT /logger: ember's log goes to `path` from now on (said
// first on the old output). Throws ember::Error "WHAT: ..." if it cannot be
// opened, or if the log was moved already: once per process, as in
// Firecracker, since lines would be split between two files.
void move_log_to(const std::filesystem::path& path, std::string_view what);

} // namespace ember::api
