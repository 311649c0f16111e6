// The control socket: HTTP/1.1 on a Unix stream socket, served with Asio on
// the caller's io_context (the main thread's, DESIGN.md "Processes and
// threads"). Each connection is read as bytes arrive, requests are answered
// in order, and the connection stays open for the next request unless the
// client asks to close (HTTP/1.1 keep-alive, as curl and Firecracker's SDKs
// expect). A protocol error is answered and the connection closed, since the
// framing of what follows cannot be trusted.
#pragma once

#include <sys/types.h>

#include <asio.hpp>

#include <filesystem>
#include <memory>
#include <vector>

#include "vmm/api/api_router.h"

namespace ember::api {

class ApiConnection;

class ApiServer final {
  public:
    // Creates the socket at `path` with mode 0600 (only the owner may drive
    // the VM). A socket file left behind by a dead process is replaced; a
    // socket someone still listens on, or a file that is not a socket, is an
    // ember::Error (nothing is deleted). Starts accepting at once.
    ApiServer(asio::io_context& io, std::filesystem::path path, ApiRouter& router);
    ~ApiServer();
    ApiServer(const ApiServer&) = delete;
    ApiServer& operator=(const ApiServer&) = delete;

    // Stops accepting, closes every connection and removes the socket file
    // (if it is still the one this server created). Idempotent.
    void close();

    const std::filesystem::path& path() const noexcept { return path_; }

  private:
    void accept();

    asio::io_context& io_;
    std::filesystem::path path_;
    ApiRouter& router_;
    asio::local::stream_protocol::acceptor acceptor_;
    std::vector<std::weak_ptr<ApiConnection>> connections_;
    dev_t dev_{};
    ino_t ino_{};
    bool open_{false};
};

} // namespace ember::api
