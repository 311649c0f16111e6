// A running virtual machine: KVM VM, guest memory, devices and vcpu threads.
#pragma once

#include <memory>
#include <vector>

#include "devices/io_bus.h"
#include "devices/serial.h"
#include "devices/virtio/mmio_transport.h"
#include "vmm/acpi/acpi.h"
#include "vmm/console.h"
#include "vmm/exit_monitor.h"
#include "vmm/guest_memory.h"
#include "vmm/kvm.h"
#include "vmm/vcpu_thread.h"
#include "vmm/vm_config.h"

namespace ember {

class Vm final {
public:
    // Builds the whole VM; throws ember::Error with a user-facing message.
    explicit Vm(const VmConfig& config);
    ~Vm();

    // Runs the guest until it stops; returns why.
    VmExit run();

    ExitMonitor& exits() noexcept { return exits_; }

private:
    void setup_memory();
    void setup_devices();
    void load_guest();
    void setup_disks();
    void shutdown();

    VmConfig config_;
    Kvm kvm_;
    KvmVm vm_;
    GuestMemory mem_;
    ExitMonitor exits_;
    Console console_;
    IoBus pio_{"port I/O"};
    IoBus mmio_{"MMIO"};
    EventFd serial_irq_;
    std::shared_ptr<Serial> serial_;
    std::vector<std::shared_ptr<VirtioMmioTransport>> virtio_;
    std::vector<acpi::VirtioMmioSlot> virtio_slots_;
    std::vector<std::unique_ptr<VcpuThread>> vcpus_;
};

} // namespace ember
