// An API request that cannot be carried out. The HTTP status goes with the
// message: Firecracker answers bad input and wrong states with 400 and a body
// {"fault_message": "..."}, and ember does the same (README "Control socket").
#pragma once

#include "vmm/errors.h"

namespace ember::api {

class ApiError : public Error {
  public:
    explicit ApiError(const std::string& message, int status = 400)
        : Error(message), status_(status) {}
    int status() const noexcept { return status_; }

  private:
    int status_;
};

} // namespace ember::api
