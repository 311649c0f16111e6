// HTTP/1.1 request parsing (http-parser) and response encoding for the
// control socket.
#include <doctest/doctest.h>

#include <string>

#include "vmm/api/http_request_parser.h"
#include "vmm/api/http_response.h"

using namespace ember::api;

namespace {
std::string put(const std::string& path, const std::string& body, const std::string& extra = "") {
    return "PUT " + path + " HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n" +
           extra + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}
} // namespace

TEST_CASE("HTTP parser: a GET and a PUT with a body") {
    HttpRequestParser p;
    p.feed("GET /machine-config HTTP/1.1\r\nHost: localhost\r\n\r\n");
    auto r = p.next();
    REQUIRE(r);
    CHECK(r->method == "GET");
    CHECK(r->path == "/machine-config");
    CHECK(r->body.empty());
    CHECK(r->keep_alive);
    CHECK_FALSE(p.next());

    p.feed(put("/actions", R"({"action_type": "InstanceStart"})"));
    r = p.next();
    REQUIRE(r);
    CHECK(r->method == "PUT");
    CHECK(r->path == "/actions");
    CHECK(r->body == R"({"action_type": "InstanceStart"})");
    CHECK_FALSE(p.error());
}

TEST_CASE("HTTP parser: a request split into single bytes") {
    HttpRequestParser p;
    const std::string wire = put("/drives/rootfs", R"({"drive_id":"rootfs"})");
    for (size_t i = 0; i < wire.size(); ++i) {
        CHECK_FALSE(p.next()); // nothing complete before the last byte
        p.feed(std::string_view(&wire[i], 1));
    }
    auto r = p.next();
    REQUIRE(r);
    CHECK(r->path == "/drives/rootfs");
    CHECK(r->body == R"({"drive_id":"rootfs"})");
}

TEST_CASE("HTTP parser: pipelined requests come out in order") {
    HttpRequestParser p;
    p.feed(put("/vm", R"({"state":"Paused"})") + "GET / HTTP/1.1\r\n\r\n" +
           put("/vm", R"({"state":"Resumed"})"));
    auto a = p.next(), b = p.next(), c = p.next();
    REQUIRE((a && b && c));
    CHECK(a->body == R"({"state":"Paused"})");
    CHECK(b->method == "GET");
    CHECK(c->body == R"({"state":"Resumed"})");
    CHECK_FALSE(p.next());
}

TEST_CASE("HTTP parser: query strings are not part of the path") {
    HttpRequestParser p;
    p.feed("GET /machine-config?x=1 HTTP/1.1\r\n\r\n");
    auto r = p.next();
    REQUIRE(r);
    CHECK(r->path == "/machine-config");
}

TEST_CASE("HTTP parser: Connection: close and HTTP/1.0 end the connection") {
    HttpRequestParser p;
    p.feed("GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
    auto r = p.next();
    REQUIRE(r);
    CHECK_FALSE(r->keep_alive);

    HttpRequestParser q;
    q.feed("GET / HTTP/1.0\r\n\r\n");
    r = q.next();
    REQUIRE(r);
    CHECK_FALSE(r->keep_alive);

    HttpRequestParser k;
    k.feed("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    r = k.next();
    REQUIRE(r);
    CHECK(r->keep_alive);
}

TEST_CASE("HTTP parser: a body over 64 KiB is refused with 413 before it arrives") {
    HttpRequestParser p;
    p.feed("PUT /boot-source HTTP/1.1\r\nContent-Length: 65537\r\n\r\n");
    REQUIRE(p.error());
    CHECK(p.error()->status == 413);
    CHECK(p.error()->message.find("65537") != std::string::npos);
    CHECK_FALSE(p.next());
    p.feed("more bytes"); // ignored after an error
    CHECK_FALSE(p.next());

    // Exactly the limit is fine.
    HttpRequestParser ok;
    ok.feed(put("/boot-source", std::string(HttpRequestParser::kMaxBodyBytes, 'x')));
    CHECK_FALSE(ok.error());
    auto r = ok.next();
    REQUIRE(r);
    CHECK(r->body.size() == HttpRequestParser::kMaxBodyBytes);
}

TEST_CASE("HTTP parser: a chunked body over 64 KiB is refused as it grows") {
    HttpRequestParser p;
    p.feed("PUT /boot-source HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    const std::string chunk(0x8000, 'a');
    for (int i = 0; i < 3 && !p.error(); ++i)
        p.feed("8000\r\n" + chunk + "\r\n");
    REQUIRE(p.error());
    CHECK(p.error()->status == 413);

    HttpRequestParser small;
    small.feed("PUT /vm HTTP/1.1\r\nTransfer-Encoding: "
               "chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n");
    auto r = small.next();
    REQUIRE(r);
    CHECK(r->body == "{\"a\":1}");
}

TEST_CASE("HTTP parser: malformed requests") {
    SUBCASE("garbage request line") {
        HttpRequestParser p;
        p.feed("HELLO\r\n\r\n");
        REQUIRE(p.error());
        CHECK(p.error()->status == 400);
        CHECK(p.error()->message.find("malformed HTTP request") != std::string::npos);
    }
    SUBCASE("bad Content-Length") {
        HttpRequestParser p;
        p.feed("PUT /vm HTTP/1.1\r\nContent-Length: abc\r\n\r\n");
        REQUIRE(p.error());
        CHECK(p.error()->status == 400);
    }
    SUBCASE("upgrade") {
        HttpRequestParser p;
        p.feed("GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
        REQUIRE(p.error());
        CHECK(p.error()->status == 400);
    }
    SUBCASE("headers over 16 KiB") {
        HttpRequestParser p;
        p.feed("GET / HTTP/1.1\r\nX-Big: " + std::string(17 * 1024, 'h') + "\r\n\r\n");
        REQUIRE(p.error());
        CHECK(p.error()->status == 431);
        CHECK_FALSE(p.next());
    }
}

TEST_CASE("HTTP parser: Expect: 100-continue is reported once, only while the body is missing") {
    HttpRequestParser p;
    p.feed("PUT /vm HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 18\r\n\r\n");
    CHECK(p.take_continue_request());
    CHECK_FALSE(p.take_continue_request());
    p.feed(R"({"state":"Paused"})");
    REQUIRE(p.next());

    HttpRequestParser q; // body already here: nothing to ask for
    q.feed(put("/vm", R"({"state":"Paused"})", "Expect: 100-continue\r\n"));
    CHECK_FALSE(q.take_continue_request());
    CHECK(q.next());
}

TEST_CASE("HTTP response: 204, JSON, faults, Connection: close") {
    CHECK(serialize(no_content(), true) == "HTTP/1.1 204 No Content\r\nServer: ember\r\n\r\n");
    const auto j = serialize(json_response(200, {{"a", 1}}), true);
    CHECK(j == "HTTP/1.1 200 OK\r\nServer: ember\r\nContent-Type: application/json\r\n"
               "Content-Length: 7\r\n\r\n{\"a\":1}");
    const auto f = serialize(fault(400, "bad \"x\""), false);
    CHECK(f.starts_with("HTTP/1.1 400 Bad Request\r\n"));
    CHECK(f.find("Connection: close\r\n") != std::string::npos);
    CHECK(f.ends_with(R"({"fault_message":"bad \"x\""})"));
    // Invalid UTF-8 from a client's input still makes valid JSON.
    const auto bad = fault(400, std::string("path \xff\xfe"));
    CHECK(nlohmann::json::parse(bad.body).contains("fault_message"));
    auto m = fault(405, "no");
    m.allow = "GET, PUT";
    CHECK(serialize(m, true).find("Allow: GET, PUT\r\n") != std::string::npos);
}
