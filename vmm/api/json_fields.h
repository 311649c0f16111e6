// Strict reading of one JSON request body: every field is looked up by name
// with its expected type, and finish() rejects any field nobody asked for, so
// a typo ("vcpus_count") is an error instead of a silently ignored setting.
// JSON null counts as absent for optional fields (serde's Option does the
// same, so Firecracker clients that send nulls keep working).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>

namespace ember::api {

// Parses `body` as a JSON object; throws ApiError (400) for malformed JSON or
// a non-object. `what` names the request in messages ("PUT /boot-source").
nlohmann::json parse_json_object(std::string_view body, std::string_view what);

class JsonFields final {
  public:
    JsonFields(const nlohmann::json& object, std::string_view what);

    std::string required_string(std::string_view key);
    std::optional<std::string> optional_string(std::string_view key);
    bool required_bool(std::string_view key);
    std::optional<bool> optional_bool(std::string_view key);
    // A non-negative integer no larger than `max`.
    uint64_t required_uint(std::string_view key, uint64_t max);
    std::optional<uint64_t> optional_uint(std::string_view key, uint64_t max);
    // The raw value (for nested objects and arrays); marks the key as known.
    const nlohmann::json* optional_value(std::string_view key);

    // Throws ApiError naming the first field that was never looked up.
    void finish() const;

    const std::string& what() const noexcept { return what_; }

  private:
    const nlohmann::json* lookup(std::string_view key);
    [[noreturn]] void wrong_type(std::string_view key, const char* expected,
                                 const nlohmann::json& value) const;

    const nlohmann::json& object_;
    std::string what_;
    std::set<std::string, std::less<>> known_;
};

} // namespace ember::api
