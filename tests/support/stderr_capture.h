// Captures what the process writes to stderr (ember's log) while alive, for
// tests that check what is logged and how often.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <string>

#include "vmm/errors.h"

namespace ember::testing {

class StderrCapture final {
  public:
    StderrCapture() : file_(std::tmpfile()) {
        if (file_ == nullptr) throw_errno("tmpfile");
        std::fflush(stderr);
        saved_ = ::dup(STDERR_FILENO);
        if (saved_ < 0 || ::dup2(::fileno(file_), STDERR_FILENO) < 0) throw_errno("dup2");
    }
    ~StderrCapture() {
        restore();
        std::fclose(file_);
    }
    StderrCapture(const StderrCapture&) = delete;
    StderrCapture& operator=(const StderrCapture&) = delete;

    // Stops capturing and returns everything written meanwhile.
    std::string text() {
        restore();
        std::string out;
        std::rewind(file_);
        char buf[4096];
        size_t n = 0;
        while ((n = std::fread(buf, 1, sizeof buf, file_)) > 0)
            out.append(buf, n);
        return out;
    }
    // How many lines of text() contain `needle`.
    size_t lines_with(const std::string& needle) {
        const std::string all = text();
        size_t count = 0;
        for (size_t start = 0; start < all.size();) {
            size_t end = all.find('\n', start);
            if (end == std::string::npos) end = all.size();
            if (all.substr(start, end - start).find(needle) != std::string::npos) ++count;
            start = end + 1;
        }
        return count;
    }

  private:
    void restore() noexcept {
        if (saved_ < 0) return;
        std::fflush(stderr);
        ::dup2(saved_, STDERR_FILENO);
        ::close(saved_);
        saved_ = -1;
    }

    std::FILE* file_;
    int saved_{-1};
};

} // namespace ember::testing
