// `ember run` and `ember restore` once the VM is built: wait for it to stop,
// write metrics lines meanwhile, and stop it cleanly on a signal to stop.
#pragma once

#include <signal.h>

#include <optional>

#include "ember/vm.h"
#include "vmm/api/metrics_file.h"
#include "vmm/cli.h"

namespace ember {

// SIGTERM, SIGINT and SIGHUP, less those the process was started with
// ignored (nohup's SIGHUP; SIGINT for a background job of a script): blocked
// in every thread by block_stop_signals(), before any thread starts, and
// taken by run_until_exit().
sigset_t block_stop_signals();

// Starts `vm` and waits until it stops. Returns the exit status: the VM's
// (report_exit), or 128 + the signal's number when one of `stops` stopped it
// (the status the signal's default action gave before). The VM is stopped
// through libember, so the terminal is restored and the final metrics line is
// written; if it has not stopped 30 s after the signal, ember exits anyway.
int run_until_exit(embed::Vm& vm, std::optional<api::MetricsFile>& metrics, const sigset_t& stops);

// `--config-file`: the VM `ember run` would build from the same settings.
// The file's logger moves the log now, before anything else is logged, as
// --log-path does. Throws api::ConfigFileError (exit 2) or Error (exit 1:
// the log file cannot be opened).
RunRequest run_request_from(const ConfigFileRequest& c);

} // namespace ember
