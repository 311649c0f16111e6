#include "vmm/api/serve.h"

#include <signal.h>

#include <asio.hpp>
#include <functional>
#include <optional>

#include "vmm/api/api_router.h"
#include "vmm/api/api_server.h"
#include "vmm/api/embed_vm_controller.h"
#include "vmm/cli_embed.h"

namespace ember {

int serve_api(const std::filesystem::path& socket, const VmConfig& config,
              std::optional<embed::Vm> vm, std::optional<api::MetricsFile> metrics,
              const std::string& instance_id) {
    asio::io_context io;
    asio::signal_set signals(io, SIGINT, SIGTERM);
    asio::steady_timer metrics_timer(io);
    std::optional<embed::ExitInfo> exit;
    // Declared in this order so they are destroyed in reverse: the server
    // stops accepting before the router and the controller (which stops a
    // live VM and joins its thread) go away.
    std::optional<api::ApiRouter> router;
    std::optional<api::ApiServer> server;
    api::EmbedVmController controller(to_embed(config.console), [&](const embed::ExitInfo& e) {
        asio::post(io, [&, e] {
            exit = e;
            if (router) {
                router->write_metrics(); // the final counts
                router->vm_stopped();
            }
            if (server) server->close();
            signals.cancel();
            metrics_timer.cancel();
        });
    });
    router.emplace(controller, config, api::InstanceInfo{instance_id, "0.1.0"});
    if (metrics) router->set_metrics(std::move(*metrics));
    server.emplace(io, socket, *router);
    if (vm) {
        router->attach_running(config);
        controller.adopt(std::move(*vm));
    }
    signals.async_wait([&](const std::error_code& ec, int) {
        if (ec) return;
        router->write_metrics();
        server->close();
        metrics_timer.cancel();
    });
    // Firecracker's period; a no-op until metrics are configured.
    std::function<void()> arm_metrics = [&] {
        metrics_timer.expires_after(api::kMetricsPeriod);
        metrics_timer.async_wait([&](const std::error_code& ec) {
            if (ec) return;
            router->write_metrics();
            arm_metrics();
        });
    };
    arm_metrics();
    io.run();
    if (!exit) return 0;
    return report_exit(*exit);
}

} // namespace ember
