// HTTP/1.1 responses as the control socket sends them: JSON bodies with a
// Content-Length, 204 without a body (RFC 9110 §8.6: no Content-Length on
// 204), and Firecracker's error body {"fault_message": "..."}.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace ember::api {

struct HttpResponse {
    int status{204};
    std::string body;  // JSON text, empty for 204
    std::string allow; // Allow header for 405 (RFC 9110 §15.5.6)
};

HttpResponse no_content();
HttpResponse json_response(int status, const nlohmann::json& body);
HttpResponse fault(int status, std::string_view message);

const char* reason_phrase(int status) noexcept;

// The bytes on the wire; `keep_alive` false adds "Connection: close".
std::string serialize(const HttpResponse& response, bool keep_alive);

} // namespace ember::api
