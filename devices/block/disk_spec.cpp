#include "devices/block/disk_spec.h"

#include <fmt/format.h>

namespace ember {

DiskSpec parse_disk_spec(std::string_view text) {
    DiskSpec spec;
    size_t pos = text.find(',');
    spec.path = std::string(text.substr(0, pos));
    if (spec.path.empty())
        throw DiskSpecError(fmt::format("disk '{}': the path is missing (PATH[,readonly][,id=NAME]"
                                        "[,cache=writeback|none][,engine=uring|sync])",
                                        text));
    bool seen_id = false, seen_cache = false, seen_engine = false, seen_ro = false;
    while (pos != std::string_view::npos) {
        const size_t start = pos + 1;
        pos = text.find(',', start);
        const auto part = text.substr(start, pos == std::string_view::npos ? pos : pos - start);
        const size_t eq = part.find('=');
        const auto key = part.substr(0, eq);
        const auto value = eq == std::string_view::npos ? std::string_view{} : part.substr(eq + 1);
        auto once = [&](bool& seen) {
            if (seen)
                throw DiskSpecError(fmt::format("disk '{}': option '{}' given twice", text, key));
            seen = true;
        };
        if (part == "readonly") {
            once(seen_ro);
            spec.readonly = true;
        } else if (key == "id" && eq != std::string_view::npos) {
            once(seen_id);
            if (value.empty() || value.size() > kBlockIdMax)
                throw DiskSpecError(fmt::format("disk '{}': id '{}' must be 1 to {} bytes", text,
                                                value, kBlockIdMax));
            spec.id = std::string(value);
        } else if (key == "cache" && eq != std::string_view::npos) {
            once(seen_cache);
            if (value == "writeback")
                spec.cache = DiskSpec::Cache::writeback;
            else if (value == "none")
                spec.cache = DiskSpec::Cache::none;
            else
                throw DiskSpecError(fmt::format(
                    "disk '{}': cache '{}' is not one of writeback, none", text, value));
        } else if (key == "engine" && eq != std::string_view::npos) {
            once(seen_engine);
            if (value == "uring")
                spec.engine = DiskSpec::Engine::uring;
            else if (value == "sync")
                spec.engine = DiskSpec::Engine::sync;
            else
                throw DiskSpecError(
                    fmt::format("disk '{}': engine '{}' is not one of uring, sync", text, value));
        } else {
            throw DiskSpecError(fmt::format(
                "disk '{}': unknown option '{}' (known: readonly, id=NAME, cache=writeback|none, "
                "engine=uring|sync)",
                text, part));
        }
    }
    return spec;
}

} // namespace ember
