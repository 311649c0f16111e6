// Firecracker's API paths, answered in ember's terms: one HTTP request in,
// one response out, no sockets. It validates the body (request_bodies.h) and
// the VM's state (ApiState) before it calls the VmController, so a bad
// request never reaches the VM. Used from one thread (the main thread's
// io_context, DESIGN.md "Processes and threads").
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "vmm/api/api_state.h"
#include "vmm/api/http_request_parser.h"
#include "vmm/api/http_response.h"
#include "vmm/api/metrics_file.h"
#include "vmm/api/request_bodies.h"
#include "vmm/api/vm_controller.h"
#include "vmm/vm_config.h"

namespace ember::api {

struct InstanceInfo {
    std::string id{"anonymous-instance"}; // Firecracker's default --id
    std::string vmm_version;
};

class ApiRouter final {
  public:
    // `defaults` supplies what the API does not configure (console,
    // --virtio-cmdline) and the machine config GET reports before any PUT.
    ApiRouter(VmController& controller, VmConfig defaults, InstanceInfo info);

    // Never throws: every failure becomes a response (400 bad input or
    // state, 404 unknown path, 405 wrong method, 500 a bug).
    HttpResponse handle(const HttpRequest& request) noexcept;
    // The same request handling for a caller that is not a client (a config
    // file): logs nothing and throws ApiError or Error where handle() would
    // answer with a fault.
    HttpResponse apply(const HttpRequest& request) { return dispatch(request); }

    // `ember run --api-sock`: the VM was built from the command line and is
    // already running; the API serves pause, resume and snapshots.
    void attach_running(const VmConfig& config);
    // The guest has exited (power-off, reboot, panic, error): later requests
    // that need a VM fail with "the VM has stopped".
    void vm_stopped();

    // --metrics-path: as PUT /metrics with that file.
    void set_metrics(MetricsFile file);
    // Appends a metrics line if metrics are configured (the 60 s timer, and
    // once more when the VM has stopped). False if configured and the line
    // could not be written whole.
    bool write_metrics();

    const ApiState& state() const noexcept { return state_; }
    // The VmConfig InstanceStart would use now. Throws ApiError without a
    // boot source.
    VmConfig build_config() const;

  private:
    // What GET /vm/config and PATCH /drives know of a VM that was not
    // configured here (built from the command line, or loaded).
    void describe_vm(const VmConfig& config);
    // After PUT /snapshot/load: the checkpoint's configuration, with the
    // drive overrides applied. Best effort: a manifest the controller could
    // read is readable here too, but nothing depends on it.
    void describe_loaded(const RestoreRequest& request);
    HttpResponse get_instance() const;
    HttpResponse get_version() const;
    HttpResponse get_machine_config() const;
    HttpResponse get_vm_config() const;
    HttpResponse put_boot_source(const std::string& body);
    HttpResponse put_machine_config(const std::string& body, bool patch);
    HttpResponse put_drive(const std::string& id, const std::string& body);
    HttpResponse patch_drive(const std::string& id, const std::string& body);
    HttpResponse put_action(const std::string& body);
    HttpResponse patch_vm(const std::string& body);
    HttpResponse put_snapshot_create(const std::string& body);
    HttpResponse put_snapshot_load(const std::string& body);
    HttpResponse put_metrics(const std::string& body);
    HttpResponse put_entropy(const std::string& body);
    HttpResponse put_network_interface(const std::string& id, const std::string& body);
    HttpResponse patch_network_interface(const std::string& id, const std::string& body);
    HttpResponse put_logger(const std::string& body);
    HttpResponse flush_metrics();
    void require_no_metrics(std::string_view what) const;
    HttpResponse dispatch(const HttpRequest& request);

    VmController& controller_;
    VmConfig defaults_;
    InstanceInfo info_;
    ApiState state_;
    std::optional<BootSource> boot_;
    MachineConfig machine_;
    std::vector<DriveConfig> drives_; // in PUT order; the root device goes first at start
    bool configured_{false};          // any boot resource PUT (blocks snapshot/load)
    bool entropy_{false};             // PUT /entropy
    std::vector<NetSpec> nets_;       // PUT /network-interfaces, in PUT order
    std::optional<MetricsFile> metrics_;
};

} // namespace ember::api
