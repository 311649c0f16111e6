// libember's error type. Every failure the library reports to its caller is
// an ember::Error (or a subclass): a bad configuration, a missing file, a host
// resource (KVM, memory), a request in the wrong state. what() is a complete
// message meant for a person, e.g. "kernel /no/such/vmlinuz: No such file or
// directory". The library never calls exit() or abort().
#pragma once

#include <stdexcept>

namespace ember {

class Error : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

} // namespace ember
