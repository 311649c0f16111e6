// Error types shared by every layer. Setup code throws; the vcpu and I/O paths
// convert guest mistakes into guest-visible errors instead (see STYLE.md).
#pragma once

#include <cerrno>
#include <stdexcept>
#include <string>
#include <string_view>

#include "ember/error.h"

namespace ember {

// ember::Error, a failure the user can act on (bad input, missing file, a
// host resource; the message is complete and printed as is), is part of the
// library's public interface: include/ember/error.h.

// A failed system call or ioctl; the message names the call and errno.
class SystemError : public Error {
public:
    SystemError(std::string_view what, int err);
    int code() const noexcept { return err_; }

private:
    int err_;
};

// Throws SystemError for the current errno, naming `what` (e.g. "KVM_CREATE_VM").
[[noreturn]] void throw_errno(std::string_view what);

} // namespace ember
