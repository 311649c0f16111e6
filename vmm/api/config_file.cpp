#include "vmm/api/config_file.h"

#include <fmt/format.h>

#include <array>
#include <fstream>
#include <set>
#include <sstream>
#include <string_view>

#include "vmm/api/api_error.h"
#include "vmm/api/api_router.h"

namespace ember::api {
namespace {

// Larger than any configuration of 8 drives; a bigger file is a wrong path.
constexpr uintmax_t kMaxConfigBytes = 1 << 20;

// The router asks nothing of the VM for the requests a config file makes;
// anything else reaching it is a bug in this file.
class NoVm final : public VmController {
  public:
    void start(const VmConfig&) override { refuse(); }
    void pause() override { refuse(); }
    void resume() override { refuse(); }
    void checkpoint(const std::filesystem::path&) override { refuse(); }
    void restore(const RestoreRequest&) override { refuse(); }
    void send_ctrl_alt_del() override { refuse(); }
    std::optional<embed::Metrics> metrics() override { return std::nullopt; }
    void set_rate_limit(const std::string&, const RateLimit&) override { refuse(); }
    void set_net_rate_limit(const std::string&, std::optional<RateLimit>,
                            std::optional<RateLimit>) override {
        refuse();
    }

  private:
    [[noreturn]] static void refuse() { throw Error("no VM while a config file is read"); }
};

// Firecracker sections for devices ember does not have: accepted when they
// configure nothing (null, or an empty list), as Firecracker's own example
// files write them.
struct Unsupported {
    std::string_view key;
    std::string_view what;
};
constexpr std::array kUnsupported{
    Unsupported{"vsock", "vsock device"},
    Unsupported{"balloon", "balloon device"},
    Unsupported{"mmds-config", "metadata service (MMDS)"},
    Unsupported{"cpu-config", "custom CPU templates"},
};

// "an array", "a string": nlohmann's type name with its article.
std::string a_type(const nlohmann::json& value) {
    const std::string_view name = value.type_name();
    return fmt::format(
        "{} {}", std::string_view("aeiou").find(name[0]) == std::string_view::npos ? "a" : "an",
        name);
}

[[noreturn]] void section_error(const std::filesystem::path& path, std::string_view section,
                                std::string_view message) {
    throw ConfigFileError(fmt::format("{}: \"{}\": {}", path.string(), section, message));
}

std::string read_text(const std::filesystem::path& path) {
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    if (ec) throw ConfigFileError(fmt::format("{}: {}", path.string(), ec.message()));
    if (!std::filesystem::is_regular_file(status))
        throw ConfigFileError(fmt::format("{}: not a regular file", path.string()));
    const auto size = std::filesystem::file_size(path, ec);
    if (!ec && size > kMaxConfigBytes)
        throw ConfigFileError(fmt::format("{}: {} bytes; a VM configuration is at most {} bytes",
                                          path.string(), size, kMaxConfigBytes));
    std::ifstream in(path, std::ios::binary);
    std::ostringstream text;
    if (!in || !(text << in.rdbuf()))
        throw ConfigFileError(fmt::format("{}: cannot be read", path.string()));
    return text.str();
}

} // namespace

ConfigFile read_config_file(const std::filesystem::path& path, const VmConfig& defaults) {
    const std::string text = read_text(path);
    nlohmann::json root;
    try {
        root = nlohmann::json::parse(text);
    } catch (const nlohmann::json::parse_error& e) {
        throw ConfigFileError(fmt::format("{}: not JSON: {}", path.string(), e.what()));
    }
    if (!root.is_object())
        throw ConfigFileError(
            fmt::format("{}: expected a JSON object of sections (\"boot-source\", "
                        "\"machine-config\", \"drives\", ...), found {}",
                        path.string(), a_type(root)));
    const auto fail = [&](std::string_view section, std::string_view message) {
        section_error(path, section, message);
    };

    NoVm no_vm;
    ApiRouter router(no_vm, defaults, InstanceInfo{});
    // One section as the body of PUT `url`, as the control socket takes it.
    const auto put = [&](std::string_view section, std::string url, const nlohmann::json& body) {
        try {
            router.apply(HttpRequest{"PUT", std::move(url), body.dump()});
        } catch (const Error& e) {
            fail(section, e.what());
        }
    };

    // A list section (drives, network-interfaces): each entry as the body of
    // PUT `url` + its id, which is checked before it becomes part of a URL
    // ("a/b" would be another path) and must be given once (a second PUT
    // would replace the first entry).
    const auto put_each = [&](const std::string& key, const nlohmann::json& value,
                              const std::string& id_key, std::string_view no_id,
                              const std::string& url, const auto& validate_id) {
        if (value.is_null()) return;
        if (!value.is_array()) fail(key, fmt::format("expected a list, found {}", a_type(value)));
        std::set<std::string> ids;
        for (size_t i = 0; i < value.size(); ++i) {
            const auto& entry = value[i];
            const auto where = fmt::format("{}[{}]", key, i);
            const auto id = entry.is_object() ? entry.find(id_key) : entry.end();
            if (id == entry.end() || !id->is_string()) fail(where, no_id);
            const auto name = id->get<std::string>();
            try {
                validate_id(name);
            } catch (const Error& e) {
                fail(where, e.what());
            }
            if (!ids.insert(name).second)
                fail(where, fmt::format("{} '{}' is given twice", id_key, name));
            put(where, url + name, entry);
        }
    };

    ConfigFile out;
    for (const auto& [key, value] : root.items()) {
        if (key == "boot-source") {
            put(key, "/boot-source", value);
        } else if (key == "machine-config") {
            if (!value.is_null()) put(key, "/machine-config", value);
        } else if (key == "drives") {
            put_each(key, value, "drive_id", "every drive needs a \"drive_id\" string", "/drives/",
                     [](const std::string& id) { validate_drive_id(id); });
        } else if (key == "network-interfaces") {
            put_each(key, value, "iface_id", "every interface needs an \"iface_id\" string",
                     "/network-interfaces/", [](const std::string& id) {
                         check_net_spec(NetSpec{id, "tap", std::nullopt});
                     });
        } else if (key == "entropy") {
            if (!value.is_null()) put(key, "/entropy", value);
        } else if (key == "logger" || key == "metrics") {
            if (value.is_null()) continue;
            try {
                if (key == "logger")
                    out.logger = parse_logger_config(value.dump());
                else
                    out.metrics_path = parse_metrics_config(value.dump());
            } catch (const ApiError& e) {
                fail(key, e.what());
            }
        } else {
            const auto* u = std::find_if(kUnsupported.begin(), kUnsupported.end(),
                                         [&](const Unsupported& s) { return s.key == key; });
            if (u == kUnsupported.end())
                fail(key, "not a section ember knows (boot-source, machine-config, drives, "
                          "network-interfaces, entropy, logger, metrics)");
            if (!value.is_null() && !(value.is_array() && value.empty()))
                fail(key, fmt::format("ember has no {} (null or [] is accepted)", u->what));
        }
    }
    if (!root.contains("boot-source"))
        throw ConfigFileError(fmt::format(
            "{}: no \"boot-source\": a VM needs at least its kernel_image_path", path.string()));
    out.config = router.build_config();
    return out;
}

} // namespace ember::api
