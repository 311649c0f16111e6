// Incremental HTTP/1.1 request parsing for the control socket, on top of
// Node's http-parser 2.9 (libhttp-parser-dev). Bytes go in as they arrive,
// in pieces of any size; whole requests come out in order (pipelining and
// keep-alive). Limits protect the VMM from a client that sends too much:
// a body over 64 KiB is refused with 413 (Firecracker's limit is 50 KiB),
// request line and headers over 16 KiB with 431.
#pragma once

#include <http_parser.h>

#include <cstddef>
#include <deque>
#include <optional>
#include <string>
#include <string_view>

namespace ember::api {

struct HttpRequest {
    std::string method; // "GET", "PUT", ...
    std::string path;   // URL path without query or fragment
    std::string body;
    bool keep_alive{true}; // false: answer with Connection: close and close
};

// Why a connection's byte stream cannot be parsed any further; the server
// answers with `status` and closes the connection.
struct HttpParseError {
    int status{400};
    std::string message;
};

class HttpRequestParser final {
  public:
    static constexpr size_t kMaxBodyBytes = 64 * 1024;
    static constexpr size_t kMaxHeaderBytes = 16 * 1024;

    HttpRequestParser();
    HttpRequestParser(const HttpRequestParser&) = delete;
    HttpRequestParser& operator=(const HttpRequestParser&) = delete;

    // Parses `bytes`. Complete requests are queued for next(); on a protocol
    // error, error() is set and further input is ignored.
    void feed(std::string_view bytes);

    std::optional<HttpRequest> next();
    const std::optional<HttpParseError>& error() const noexcept { return error_; }

    // True once per request whose headers asked for "Expect: 100-continue"
    // and whose body has not fully arrived (RFC 9110 §10.1.1); the server
    // then sends "100 Continue" so clients such as curl do not wait.
    bool take_continue_request() noexcept;

  private:
    static int on_message_begin(http_parser* p);
    static int on_url(http_parser* p, const char* at, size_t len);
    static int on_header_field(http_parser* p, const char* at, size_t len);
    static int on_header_value(http_parser* p, const char* at, size_t len);
    static int on_headers_complete(http_parser* p);
    static int on_body(http_parser* p, const char* at, size_t len);
    static int on_message_complete(http_parser* p);

    void fail(int status, std::string message);
    bool count_header_bytes(size_t len);
    void end_header();

    http_parser parser_{};
    http_parser_settings settings_{};
    std::deque<HttpRequest> ready_;
    std::optional<HttpParseError> error_;

    // The request being parsed.
    std::string url_;
    std::string body_;
    std::string field_, value_;
    bool in_value_{false};
    bool expect_continue_{false};
    bool continue_pending_{false};
    size_t header_bytes_{0};
};

} // namespace ember::api
