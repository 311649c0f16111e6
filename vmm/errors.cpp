#include "vmm/errors.h"

#include <cstring>
#include <fmt/format.h>

namespace ember {

SystemError::SystemError(std::string_view what, int err)
    : Error(fmt::format("{}: {} (errno {})", what, std::strerror(err), err)), err_(err) {}

void throw_errno(std::string_view what) { throw SystemError(what, errno); }

} // namespace ember
