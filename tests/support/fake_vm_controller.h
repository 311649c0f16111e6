// A VmController that records what the API asked for, for the control socket
// tests (no KVM). `fail_with` makes the next call throw ember::Error, as a
// real VM does when, say, the kernel cannot be loaded.
#pragma once

#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "vmm/api/vm_controller.h"
#include "vmm/errors.h"

namespace ember::test {

class FakeVmController final : public api::VmController {
  public:
    void start(const VmConfig& config) override {
        call("start");
        started = config;
    }
    void pause() override { call("pause"); }
    void resume() override { call("resume"); }
    void checkpoint(const std::filesystem::path& dir) override {
        call("checkpoint");
        checkpoint_dir = dir;
    }
    void restore(const api::RestoreRequest& request) override {
        call("restore");
        restored = request;
    }
    void send_ctrl_alt_del() override { call("ctrl-alt-del"); }
    // Not recorded in `calls`: metrics are read, they change nothing.
    std::optional<embed::Metrics> metrics() override { return vm_metrics; }
    void set_rate_limit(const std::string& drive_id, const RateLimit& limit) override {
        call("rate-limit");
        rate_limits.emplace_back(drive_id, limit);
    }
    std::vector<std::pair<std::string, RateLimit>> rate_limits;
    void set_net_rate_limit(const std::string& iface_id, std::optional<RateLimit> rx,
                            std::optional<RateLimit> tx) override {
        call("net-rate-limit");
        net_rate_limits.push_back({iface_id, rx, tx});
    }
    struct NetRateLimitCall {
        std::string iface_id;
        std::optional<RateLimit> rx, tx;
        bool operator==(const NetRateLimitCall&) const = default;
    };
    std::vector<NetRateLimitCall> net_rate_limits;

    std::vector<std::string> calls;
    std::optional<VmConfig> started;
    std::filesystem::path checkpoint_dir;
    std::optional<api::RestoreRequest> restored;
    std::optional<std::string> fail_with;
    std::optional<embed::Metrics> vm_metrics; // what metrics() returns

  private:
    void call(const char* name) {
        if (fail_with) {
            auto message = *fail_with;
            fail_with.reset();
            throw Error(message);
        }
        calls.emplace_back(name);
    }
};

// A directory under /tmp removed with everything in it at scope exit.
class TempDir final {
  public:
    TempDir() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "ember-api-XXXXXX").string();
        if (!::mkdtemp(tmpl.data())) throw Error("mkdtemp failed");
        path_ = tmpl;
    }
    ~TempDir() {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    const std::filesystem::path& path() const noexcept { return path_; }
    // Creates a file with `bytes` bytes and returns its path.
    std::filesystem::path file(const std::string& name, size_t bytes = 4096) const;

  private:
    std::filesystem::path path_;
};

inline std::filesystem::path TempDir::file(const std::string& name, size_t bytes) const {
    const auto p = path_ / name;
    std::filesystem::create_directories(p.parent_path());
    {
        std::FILE* f = std::fopen(p.c_str(), "wb");
        if (!f) throw Error("cannot create " + p.string());
        std::fclose(f);
    }
    std::filesystem::resize_file(p, bytes);
    return p;
}

} // namespace ember::test
