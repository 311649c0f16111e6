// Where the verifier's lines go. In the guest both streams end on the serial
// console, where the host test harness parses the result lines; the unit tests
// capture them instead.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

namespace ember::verify {

class Console {
public:
    virtual ~Console() = default;
    // One result line ("VERIFY ...", "CHECK ..."), without the newline. Must be
    // visible immediately: a crash test may kill the VM right after it.
    virtual void line(std::string_view text) = 0;
    // One diagnostic line for stderr ("ember-verify: ..."), without the newline.
    virtual void error(std::string_view text) = 0;
};

// Counts errors, prints the first few as "<PREFIX> ERROR <text>" lines and keeps
// the first for the final FAIL line. Thread safe.
class ErrorLog final {
public:
    static constexpr uint64_t kPrintLimit = 10;

    ErrorLog(Console& console, std::string_view prefix) : console_{console}, prefix_{prefix} {}

    void add(const std::string& text);
    uint64_t count() const;
    std::string first() const;

private:
    Console& console_;
    std::string prefix_;
    mutable std::mutex mutex_;
    uint64_t count_{0};  // guarded by mutex_
    std::string first_;  // guarded by mutex_
};

} // namespace ember::verify
