// Errors of the verifier (it links none of the VMM's libraries). Both are caught
// by the command line front end, printed as "ember-verify: error: <what>" and
// turned into exit status 2: nothing was verified, so neither PASS nor FAIL.
#pragma once

#include <stdexcept>

namespace ember::verify {

// The command line is wrong: unknown option, missing value, bad number or size.
class UsageError final : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// The environment is wrong: the device cannot be opened, is too small, is not a
// block device or regular file, does not support O_DIRECT, ...
class SetupError final : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

} // namespace ember::verify
