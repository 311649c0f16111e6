#include "vmm/api/json_fields.h"

#include <fmt/format.h>

#include "vmm/api/api_error.h"

namespace ember::api {

nlohmann::json parse_json_object(std::string_view body, std::string_view what) {
    nlohmann::json value;
    try {
        value = nlohmann::json::parse(body.begin(), body.end());
    } catch (const nlohmann::json::parse_error& e) {
        if (body.empty()) throw ApiError(fmt::format("{}: the request needs a JSON body", what));
        // e.byte is 1-based and points just past the offending character.
        throw ApiError(fmt::format("{}: malformed JSON at byte {}", what, e.byte));
    }
    if (!value.is_object())
        throw ApiError(
            fmt::format("{}: the body must be a JSON object, not {}", what, value.type_name()));
    return value;
}

JsonFields::JsonFields(const nlohmann::json& object, std::string_view what)
    : object_(object), what_(what) {}

const nlohmann::json* JsonFields::lookup(std::string_view key) {
    known_.emplace(key);
    const auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) return nullptr;
    return &*it;
}

void JsonFields::wrong_type(std::string_view key, const char* expected,
                            const nlohmann::json& value) const {
    throw ApiError(
        fmt::format("{}: field '{}' must be {}, not {}", what_, key, expected, value.type_name()));
}

std::optional<std::string> JsonFields::optional_string(std::string_view key) {
    const auto* v = lookup(key);
    if (!v) return std::nullopt;
    if (!v->is_string()) wrong_type(key, "a string", *v);
    return v->get<std::string>();
}

std::string JsonFields::required_string(std::string_view key) {
    auto v = optional_string(key);
    if (!v) throw ApiError(fmt::format("{}: missing required field '{}'", what_, key));
    return *v;
}

std::optional<bool> JsonFields::optional_bool(std::string_view key) {
    const auto* v = lookup(key);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) wrong_type(key, "true or false", *v);
    return v->get<bool>();
}

bool JsonFields::required_bool(std::string_view key) {
    auto v = optional_bool(key);
    if (!v) throw ApiError(fmt::format("{}: missing required field '{}'", what_, key));
    return *v;
}

std::optional<uint64_t> JsonFields::optional_uint(std::string_view key, uint64_t max) {
    const auto* v = lookup(key);
    if (!v) return std::nullopt;
    // nlohmann stores non-negative integers as unsigned; negative ones are
    // number_integer and fractions number_float: both rejected by name.
    if (v->is_number_integer() && !v->is_number_unsigned())
        throw ApiError(fmt::format("{}: field '{}' must not be negative", what_, key));
    if (!v->is_number_unsigned()) wrong_type(key, "a whole number", *v);
    const auto n = v->get<uint64_t>();
    if (n > max)
        throw ApiError(
            fmt::format("{}: field '{}' is {}, more than the maximum {}", what_, key, n, max));
    return n;
}

uint64_t JsonFields::required_uint(std::string_view key, uint64_t max) {
    auto v = optional_uint(key, max);
    if (!v) throw ApiError(fmt::format("{}: missing required field '{}'", what_, key));
    return *v;
}

const nlohmann::json* JsonFields::optional_value(std::string_view key) {
    return lookup(key);
}

void JsonFields::finish() const {
    for (const auto& [key, value] : object_.items()) {
        if (!known_.contains(key))
            throw ApiError(fmt::format("{}: unknown field '{}'", what_, key));
    }
}

} // namespace ember::api
