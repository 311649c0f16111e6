#include "vmm/api/api_server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <fmt/format.h>

#include <array>
#include <cstdio>

#include "vmm/log.h"
#include "vmm/unique_fd.h"

namespace ember::api {

using asio::local::stream_protocol;

// One client connection: read, parse, answer in order, repeat.
class ApiConnection final : public std::enable_shared_from_this<ApiConnection> {
  public:
    ApiConnection(stream_protocol::socket socket, ApiRouter& router)
        : socket_(std::move(socket)), router_(router) {}

    void start() { read(); }

    void close() {
        std::error_code ignored;
        socket_.shutdown(stream_protocol::socket::shutdown_both, ignored);
        socket_.close(ignored);
    }

  private:
    void read() {
        socket_.async_read_some(asio::buffer(buffer_),
                                [self = shared_from_this()](std::error_code ec, size_t n) {
                                    if (ec) return; // peer closed, or the server is closing
                                    self->consume(std::string_view(self->buffer_.data(), n));
                                });
    }

    void consume(std::string_view bytes) {
        parser_.feed(bytes);
        std::string out;
        bool close_after = false;
        // Requests parsed before an error are still answered, in order.
        while (auto request = parser_.next()) {
            out += serialize(router_.handle(*request), request->keep_alive);
            if (!request->keep_alive) {
                close_after = true;
                break;
            }
        }
        if (!close_after && parser_.error()) {
            const auto& e = *parser_.error();
            log::info("API: {} ({}), closing the connection", e.message, e.status);
            out += serialize(fault(e.status, e.message), false);
            close_after = true;
        }
        if (!close_after && parser_.take_continue_request()) out += "HTTP/1.1 100 Continue\r\n\r\n";
        if (out.empty()) {
            read();
            return;
        }
        pending_ = std::move(out);
        asio::async_write(socket_, asio::buffer(pending_),
                          [self = shared_from_this(), close_after](std::error_code ec, size_t) {
                              if (ec || close_after) {
                                  self->close();
                                  return;
                              }
                              self->read();
                          });
    }

    stream_protocol::socket socket_;
    ApiRouter& router_;
    HttpRequestParser parser_;
    std::array<char, 4096> buffer_{};
    std::string pending_;
};

namespace {

// Removes a socket file that no process is listening on; refuses to touch
// a live socket or anything that is not a socket.
void remove_stale_socket(const std::filesystem::path& path) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) {
        if (errno == ENOENT) return;
        throw_errno(fmt::format("control socket {}: stat", path.string()));
    }
    if (!S_ISSOCK(st.st_mode))
        throw Error(fmt::format("control socket {}: the file exists and is not a socket; not "
                                "replacing it",
                                path.string()));
    UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!probe) throw_errno("control socket: socket(AF_UNIX)");
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    if (::connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0)
        throw Error(
            fmt::format("control socket {}: another process is serving on it", path.string()));
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
        throw_errno(fmt::format("control socket {}: removing the stale socket", path.string()));
    log::debug("control socket {}: replaced a stale socket file", path.string());
}

} // namespace

ApiServer::ApiServer(asio::io_context& io, std::filesystem::path path, ApiRouter& router)
    : io_(io), path_(std::move(path)), router_(router), acceptor_(io) {
    if (path_.empty()) throw Error("control socket: the path is empty");
    if (path_.native().size() >= sizeof(sockaddr_un::sun_path))
        throw Error(fmt::format("control socket {}: the path is longer than {} bytes",
                                path_.string(), sizeof(sockaddr_un::sun_path) - 1));
    remove_stale_socket(path_);
    try {
        acceptor_.open(stream_protocol());
        // Linux creates the socket file with the socket inode's mode (masked
        // by the umask), so setting it before bind() leaves no window in which
        // another user could connect; the chmod after bind() undoes any umask.
        if (::fchmod(acceptor_.native_handle(), S_IRUSR | S_IWUSR) != 0)
            throw_errno("control socket: fchmod");
        acceptor_.bind(stream_protocol::endpoint(path_.native()));
        acceptor_.listen();
    } catch (const std::system_error& e) {
        throw Error(fmt::format("control socket {}: {}", path_.string(), e.code().message()));
    }
    if (::chmod(path_.c_str(), S_IRUSR | S_IWUSR) != 0) {
        const int err = errno;
        ::unlink(path_.c_str());
        throw SystemError(fmt::format("control socket {}: chmod", path_.string()), err);
    }
    struct stat st {};
    if (::lstat(path_.c_str(), &st) == 0) {
        dev_ = st.st_dev;
        ino_ = st.st_ino;
    }
    open_ = true;
    log::info("API server listening on {}", path_.string());
    accept();
}

ApiServer::~ApiServer() {
    close();
}

void ApiServer::accept() {
    acceptor_.async_accept([this](std::error_code ec, stream_protocol::socket socket) {
        if (ec) {
            if (ec == asio::error::operation_aborted || !open_) return;
            log::warn("control socket: accept failed: {}", ec.message());
        } else {
            auto c = std::make_shared<ApiConnection>(std::move(socket), router_);
            std::erase_if(connections_, [](const auto& w) { return w.expired(); });
            connections_.push_back(c);
            c->start();
        }
        if (open_) accept();
    });
}

void ApiServer::close() {
    if (!open_) return;
    open_ = false;
    std::error_code ignored;
    acceptor_.close(ignored);
    for (auto& w : connections_)
        if (auto c = w.lock()) c->close();
    connections_.clear();
    // Only remove the file this server created: another ember may have
    // replaced it since (after deciding ours was stale).
    struct stat st {};
    if (::lstat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_)
        ::unlink(path_.c_str());
}

} // namespace ember::api
