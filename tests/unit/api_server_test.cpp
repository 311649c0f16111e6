// The control socket end to end over a real Unix socket: file mode,
// stale-socket handling, keep-alive, split and pipelined requests, limits.
// The server runs on an io_context in a thread, as ember's main thread would.
#include <doctest/doctest.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include "tests/support/fake_vm_controller.h"
#include "vmm/api/api_server.h"
#include "vmm/unique_fd.h"

using namespace ember;
using namespace ember::api;
using ember::test::FakeVmController;
using ember::test::TempDir;

namespace {

UniqueFd connect_to(const std::filesystem::path& path) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(fd);
    timeval tv{5, 0}; // a hung server fails the test instead of hanging it
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    REQUIRE(::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    return fd;
}

void send_all(const UniqueFd& fd, std::string_view bytes) {
    while (!bytes.empty()) {
        const ssize_t n = ::send(fd.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
        REQUIRE(n > 0);
        bytes.remove_prefix(static_cast<size_t>(n));
    }
}

struct Response {
    int status{0};
    std::string head;
    std::string body;
};

// Reads exactly one response (headers, then Content-Length bytes), keeping
// any following bytes in `rest` for the next call.
Response read_response(const UniqueFd& fd, std::string& rest) {
    auto fill = [&] {
        char buf[4096];
        const ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
        REQUIRE(n > 0);
        rest.append(buf, static_cast<size_t>(n));
    };
    size_t end;
    while ((end = rest.find("\r\n\r\n")) == std::string::npos)
        fill();
    Response r;
    r.head = rest.substr(0, end + 2);
    rest.erase(0, end + 4);
    REQUIRE(r.head.starts_with("HTTP/1.1 "));
    r.status = std::stoi(r.head.substr(9, 3));
    size_t length = 0;
    if (auto at = r.head.find("Content-Length: "); at != std::string::npos)
        length = std::stoul(r.head.substr(at + 16));
    while (rest.size() < length)
        fill();
    r.body = rest.substr(0, length);
    rest.erase(0, length);
    return r;
}

Response read_response(const UniqueFd& fd) {
    std::string rest;
    auto r = read_response(fd, rest);
    CHECK(rest.empty());
    return r;
}

// True when the server closed the connection: end of file, or ECONNRESET
// when it closed with our unread request bytes still queued (AF_UNIX reports
// that as a reset, after the bytes it did send have been read).
bool closed_by_server(const UniqueFd& fd) {
    char c;
    const ssize_t n = ::recv(fd.get(), &c, 1, 0);
    return n == 0 || (n < 0 && errno == ECONNRESET);
}

std::string request(const std::string& method, const std::string& path,
                    const std::string& body = "", const std::string& extra = "") {
    return method + " " + path + " HTTP/1.1\r\nHost: localhost\r\n" + extra +
           (body.empty() ? "" : "Content-Type: application/json\r\n") +
           "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

// A server on its own io_context thread.
struct Served {
    TempDir tmp;
    FakeVmController vm;
    ApiRouter router{vm, VmConfig{}, InstanceInfo{"sock-test", "0.1.0"}};
    asio::io_context io;
    std::filesystem::path path = tmp.path() / "api.sock";
    std::optional<ApiServer> server;
    std::thread thread;

    Served() {
        server.emplace(io, path, router);
        thread = std::thread([this] { io.run(); });
    }
    ~Served() { stop(); }
    void stop() {
        if (!thread.joinable()) return;
        asio::post(io, [this] { server->close(); });
        thread.join();
    }
};

} // namespace

TEST_CASE("API socket: mode 0600 whatever the umask, removed at close") {
    const mode_t old = ::umask(0);
    Served s;
    ::umask(old);
    struct stat st {};
    REQUIRE(::lstat(s.path.c_str(), &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK((st.st_mode & 07777) == 0600);
    s.stop();
    CHECK_FALSE(std::filesystem::exists(s.path));
}

TEST_CASE("API socket: keep-alive serves several requests on one connection") {
    Served s;
    auto fd = connect_to(s.path);
    send_all(fd, request("GET", "/"));
    auto r = read_response(fd);
    CHECK(r.status == 200);
    CHECK(r.head.find("Content-Type: application/json") != std::string::npos);
    CHECK(nlohmann::json::parse(r.body)["state"] == "Not started");

    const auto kernel = s.tmp.file("vmlinuz");
    send_all(fd,
             request("PUT", "/boot-source", nlohmann::json{{"kernel_image_path", kernel}}.dump()));
    r = read_response(fd);
    CHECK(r.status == 204);
    CHECK(r.body.empty());
    CHECK(r.head.find("Content-Length") == std::string::npos);

    send_all(fd, request("PUT", "/actions", R"({"action_type":"InstanceStart"})"));
    CHECK(read_response(fd).status == 204);
    send_all(fd, request("GET", "/"));
    CHECK(nlohmann::json::parse(read_response(fd).body)["state"] == "Running");
    s.stop();
    CHECK(s.vm.calls == std::vector<std::string>{"start"});
    REQUIRE(s.vm.started);
    CHECK(s.vm.started->kernel == kernel);
}

TEST_CASE("API socket: a request split across several writes") {
    Served s;
    auto fd = connect_to(s.path);
    const auto wire =
        request("PUT", "/machine-config", R"({"vcpu_count": 2, "mem_size_mib": 256})");
    for (size_t at = 0; at < wire.size(); at += 7) {
        send_all(fd, std::string_view(wire).substr(at, 7));
        // Give the server a chance to read each piece on its own.
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    CHECK(read_response(fd).status == 204);
    send_all(fd, request("GET", "/machine-config"));
    CHECK(nlohmann::json::parse(read_response(fd).body)["vcpu_count"] == 2);
}

TEST_CASE("API socket: pipelined requests are answered in order") {
    Served s;
    auto fd = connect_to(s.path);
    send_all(fd, request("PATCH", "/vm", R"({"state":"Paused"})") + request("GET", "/nope") +
                     request("GET", "/"));
    std::string rest;
    auto a = read_response(fd, rest);
    auto b = read_response(fd, rest);
    auto c = read_response(fd, rest);
    CHECK(a.status == 400);
    CHECK(nlohmann::json::parse(a.body)["fault_message"].get<std::string>().find(
              "has not been started") != std::string::npos);
    CHECK(b.status == 404);
    CHECK(c.status == 200);
}

TEST_CASE("API socket: an oversized body gets 413 and the connection is closed") {
    Served s;
    auto fd = connect_to(s.path);
    send_all(fd,
             "PUT /boot-source HTTP/1.1\r\nContent-Length: 70000\r\n\r\n" + std::string(4096, 'x'));
    auto r = read_response(fd);
    CHECK(r.status == 413);
    CHECK(r.head.find("Connection: close") != std::string::npos);
    CHECK(nlohmann::json::parse(r.body).contains("fault_message"));
    CHECK(closed_by_server(fd));
    // The server itself carries on.
    auto again = connect_to(s.path);
    send_all(again, request("GET", "/"));
    CHECK(read_response(again).status == 200);
}

TEST_CASE("API socket: malformed HTTP gets 400 and a close; Connection: close is honoured") {
    Served s;
    auto bad = connect_to(s.path);
    send_all(bad, "THIS IS NOT HTTP\r\n\r\n");
    CHECK(read_response(bad).status == 400);
    CHECK(closed_by_server(bad));

    auto fd = connect_to(s.path);
    send_all(fd, request("GET", "/", "", "Connection: close\r\n"));
    auto r = read_response(fd);
    CHECK(r.status == 200);
    CHECK(r.head.find("Connection: close") != std::string::npos);
    CHECK(closed_by_server(fd));
}

TEST_CASE("API socket: Expect: 100-continue gets an interim response before the body") {
    Served s;
    auto fd = connect_to(s.path);
    const std::string body = R"({"vcpu_count": 1, "mem_size_mib": 64})";
    send_all(fd, "PUT /machine-config HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: " +
                     std::to_string(body.size()) + "\r\n\r\n");
    auto interim = read_response(fd);
    CHECK(interim.status == 100);
    send_all(fd, body);
    CHECK(read_response(fd).status == 204);
}

TEST_CASE("API socket: a stale socket file is replaced") {
    TempDir tmp;
    const auto path = tmp.path() / "api.sock";
    {
        // Bound, then closed without unlink: what a killed ember leaves behind.
        UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM, 0));
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
        REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    }
    REQUIRE(std::filesystem::exists(path));
    FakeVmController vm;
    ApiRouter router{vm, VmConfig{}, InstanceInfo{}};
    asio::io_context io;
    ApiServer server(io, path, router);
    std::thread t([&] { io.run(); });
    auto fd = connect_to(path);
    send_all(fd, request("GET", "/"));
    CHECK(read_response(fd).status == 200);
    asio::post(io, [&] { server.close(); });
    t.join();
}

TEST_CASE("API socket: a live socket and a non-socket file are left alone") {
    Served s;
    FakeVmController vm;
    ApiRouter router{vm, VmConfig{}, InstanceInfo{}};
    asio::io_context io;
    CHECK_THROWS_WITH_AS(ApiServer(io, s.path, router),
                         doctest::Contains("another process is serving"), ember::Error);
    // The first server still answers.
    auto fd = connect_to(s.path);
    send_all(fd, request("GET", "/"));
    CHECK(read_response(fd).status == 200);

    const auto file = s.tmp.file("not-a-socket");
    CHECK_THROWS_WITH_AS(ApiServer(io, file, router), doctest::Contains("is not a socket"),
                         ember::Error);
    CHECK(std::filesystem::exists(file));
    CHECK_THROWS_WITH_AS(ApiServer(io, s.tmp.path() / std::string(120, 'x'), router),
                         doctest::Contains("longer than"), ember::Error);
    CHECK_THROWS_WITH_AS(ApiServer(io, s.tmp.path() / "no-such-dir" / "api.sock", router),
                         doctest::Contains("no-such-dir"), ember::Error);
}
