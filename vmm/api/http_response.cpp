#include "vmm/api/http_response.h"

#include <fmt/format.h>

namespace ember::api {

HttpResponse no_content() {
    return HttpResponse{204, {}, {}};
}

HttpResponse json_response(int status, const nlohmann::json& body) {
    return HttpResponse{status, body.dump(), {}};
}

HttpResponse fault(int status, std::string_view message) {
    // dump() with a replacement error handler: a message quoting a client's
    // invalid UTF-8 must still produce valid JSON, not throw.
    nlohmann::json body = {{"fault_message", std::string(message)}};
    return HttpResponse{
        status, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), {}};
}

const char* reason_phrase(int status) noexcept {
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Payload Too Large";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    }
    return "Unknown";
}

std::string serialize(const HttpResponse& r, bool keep_alive) {
    std::string out =
        fmt::format("HTTP/1.1 {} {}\r\nServer: ember\r\n", r.status, reason_phrase(r.status));
    if (!r.allow.empty()) out += fmt::format("Allow: {}\r\n", r.allow);
    if (!keep_alive) out += "Connection: close\r\n";
    if (r.status != 204 && r.status >= 200) {
        out +=
            fmt::format("Content-Type: application/json\r\nContent-Length: {}\r\n", r.body.size());
    }
    out += "\r\n";
    if (r.status != 204) out += r.body;
    return out;
}

} // namespace ember::api
