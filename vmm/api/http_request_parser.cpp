#include "vmm/api/http_request_parser.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <utility>

namespace ember::api {
namespace {

HttpRequestParser& self(http_parser* p) {
    return *static_cast<HttpRequestParser*>(p->data);
}

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

} // namespace

HttpRequestParser::HttpRequestParser() {
    http_parser_init(&parser_, HTTP_REQUEST);
    parser_.data = this;
    http_parser_settings_init(&settings_);
    settings_.on_message_begin = &HttpRequestParser::on_message_begin;
    settings_.on_url = &HttpRequestParser::on_url;
    settings_.on_header_field = &HttpRequestParser::on_header_field;
    settings_.on_header_value = &HttpRequestParser::on_header_value;
    settings_.on_headers_complete = &HttpRequestParser::on_headers_complete;
    settings_.on_body = &HttpRequestParser::on_body;
    settings_.on_message_complete = &HttpRequestParser::on_message_complete;
}

void HttpRequestParser::fail(int status, std::string message) {
    if (!error_) error_ = HttpParseError{status, std::move(message)};
    // Inside a callback: stops http_parser_execute at once (it returns with
    // HPE_PAUSED), so no callback runs on bytes after the error. Pausing a
    // parser already in an error state is an assertion failure in
    // http-parser, hence the check.
    if (HTTP_PARSER_ERRNO(&parser_) == HPE_OK) http_parser_pause(&parser_, 1);
}

void HttpRequestParser::feed(std::string_view bytes) {
    if (error_ || bytes.empty()) return;
    const size_t used = http_parser_execute(&parser_, &settings_, bytes.data(), bytes.size());
    if (error_) return;
    const auto err = static_cast<http_errno>(parser_.http_errno);
    if (err != HPE_OK) {
        fail(400, fmt::format("malformed HTTP request: {}", http_errno_description(err)));
        return;
    }
    if (parser_.upgrade) {
        fail(400, "protocol upgrades are not supported on the control socket");
        return;
    }
    if (used != bytes.size()) fail(400, "malformed HTTP request: unexpected bytes after a request");
}

std::optional<HttpRequest> HttpRequestParser::next() {
    if (ready_.empty()) return std::nullopt;
    HttpRequest r = std::move(ready_.front());
    ready_.pop_front();
    return r;
}

bool HttpRequestParser::take_continue_request() noexcept {
    return std::exchange(continue_pending_, false);
}

bool HttpRequestParser::count_header_bytes(size_t len) {
    header_bytes_ += len;
    if (header_bytes_ <= kMaxHeaderBytes) return true;
    fail(431, fmt::format("request line and headers exceed {} bytes", kMaxHeaderBytes));
    return false;
}

void HttpRequestParser::end_header() {
    if (iequals(field_, "expect") && iequals(value_, "100-continue")) expect_continue_ = true;
    field_.clear();
    value_.clear();
}

int HttpRequestParser::on_message_begin(http_parser* p) {
    auto& s = self(p);
    s.url_.clear();
    s.body_.clear();
    s.field_.clear();
    s.value_.clear();
    s.in_value_ = false;
    s.expect_continue_ = false;
    s.header_bytes_ = 0;
    return 0;
}

int HttpRequestParser::on_url(http_parser* p, const char* at, size_t len) {
    auto& s = self(p);
    if (s.count_header_bytes(len)) s.url_.append(at, len);
    return 0;
}

int HttpRequestParser::on_header_field(http_parser* p, const char* at, size_t len) {
    auto& s = self(p);
    if (!s.count_header_bytes(len)) return 0;
    if (s.in_value_) {
        s.end_header();
        s.in_value_ = false;
    }
    s.field_.append(at, len);
    return 0;
}

int HttpRequestParser::on_header_value(http_parser* p, const char* at, size_t len) {
    auto& s = self(p);
    if (!s.count_header_bytes(len)) return 0;
    s.in_value_ = true;
    s.value_.append(at, len);
    return 0;
}

int HttpRequestParser::on_headers_complete(http_parser* p) {
    auto& s = self(p);
    if (s.in_value_) s.end_header();
    s.in_value_ = false;
    // content_length is ULLONG_MAX when there is no Content-Length header
    // (chunked bodies are checked as they arrive, in on_body).
    if (p->content_length != ULLONG_MAX && p->content_length > kMaxBodyBytes) {
        s.fail(413, fmt::format("request body of {} bytes exceeds the {} byte limit",
                                p->content_length, kMaxBodyBytes));
        return 0;
    }
    if (s.expect_continue_) s.continue_pending_ = true;
    return 0;
}

int HttpRequestParser::on_body(http_parser* p, const char* at, size_t len) {
    auto& s = self(p);
    if (s.body_.size() + len > kMaxBodyBytes) {
        s.fail(413, fmt::format("request body exceeds the {} byte limit", kMaxBodyBytes));
        return 0;
    }
    s.body_.append(at, len);
    return 0;
}

int HttpRequestParser::on_message_complete(http_parser* p) {
    auto& s = self(p);
    s.continue_pending_ = false; // the body is here: no need to ask for it
    http_parser_url url;
    http_parser_url_init(&url);
    if (http_parser_parse_url(s.url_.data(), s.url_.size(), 0, &url) != 0 ||
        !(url.field_set & (1u << UF_PATH))) {
        s.fail(400, fmt::format("malformed request target '{}'", s.url_));
        return 0;
    }
    HttpRequest r;
    r.method = http_method_str(static_cast<http_method>(p->method));
    r.path = s.url_.substr(url.field_data[UF_PATH].off, url.field_data[UF_PATH].len);
    r.body = std::move(s.body_);
    r.keep_alive = http_should_keep_alive(p) != 0;
    s.ready_.push_back(std::move(r));
    return 0;
}

} // namespace ember::api
