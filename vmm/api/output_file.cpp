#include "vmm/api/output_file.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <cstring>

#include <fmt/format.h>

#include "vmm/errors.h"
#include "vmm/log.h"

namespace ember::api {

OutputFile open_output_file(const std::filesystem::path& path, std::string_view what) {
    OutputFile out;
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && S_ISFIFO(st.st_mode)) {
        // Read-write: opening a pipe write-only without blocking fails while
        // nobody reads it (ENXIO).
        out.pipe = true;
        out.fd = UniqueFd(::open(path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC));
    } else {
        out.fd = UniqueFd(::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644));
    }
    if (!out.fd)
        throw Error(fmt::format("{} {}: cannot be opened for writing: {}", what, path.string(),
                                std::strerror(errno)));
    return out;
}

void move_log_to(const std::filesystem::path& path, std::string_view what) {
    if (const auto current = log::output_name(); !current.empty())
        throw Error(fmt::format("{}: the log already goes to {}; it can be set once per process",
                                what, current));
    auto out = open_output_file(path, fmt::format("{}: log file", what));
    log::info("log continues in {}", path.string());
    log::set_output(out.fd.release(), path.string()); // the log keeps it open (log.h)
}

} // namespace ember::api
