#include "tools/ember-verify/console.h"

#include <fmt/format.h>

namespace ember::verify {

void ErrorLog::add(const std::string& text) {
    std::lock_guard lock{mutex_};
    if (count_ == 0) first_ = text;
    ++count_;
    if (count_ <= kPrintLimit)
        console_.line(fmt::format("{} ERROR {}", prefix_, text));
    else if (count_ == kPrintLimit + 1)
        console_.line(fmt::format("{} ERROR (further errors are counted, not printed)", prefix_));
}

uint64_t ErrorLog::count() const {
    std::lock_guard lock{mutex_};
    return count_;
}

std::string ErrorLog::first() const {
    std::lock_guard lock{mutex_};
    return first_;
}

} // namespace ember::verify
