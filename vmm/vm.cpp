#include "vmm/vm.h"

#include <fmt/format.h>
#include <fmt/std.h>

#include "devices/block/block_disk.h"
#include "devices/block/virtio_block.h"
#include "devices/legacy.h"
#include "vmm/boot/kernel_image.h"
#include "vmm/boot/memory_map.h"
#include "vmm/boot/x86_boot.h"
#include "vmm/cpuid.h"
#include "vmm/log.h"
#include "vmm/platform.h"

namespace ember {
namespace {

// KVM on Intel needs a 3-page TSS region and an identity-map page somewhere
// in guest-physical space; put them inside the MMIO hole where no RAM is.
constexpr uint64_t kTssAddress = 0xfffb'd000;
constexpr uint64_t kIdentityMapAddress = 0xfffb'c000;

GuestMemory make_memory(uint64_t mem_bytes) {
    const auto layout = ram_layout(mem_bytes);
    return GuestMemory(layout);
}

} // namespace

Vm::Vm(const VmConfig& config)
    : config_(config), vm_(kvm_), mem_(make_memory(config.mem_bytes)), console_(config.console) {
    setup_memory();
    setup_devices();
    setup_disks();
    load_guest();
}

Vm::~Vm() { shutdown(); }

void Vm::setup_memory() {
    vm_.set_tss_address(kTssAddress);
    vm_.set_identity_map_address(kIdentityMapAddress);
    vm_.create_irqchip();
    vm_.create_pit2();
    uint32_t slot = 0;
    for (const auto& r : mem_.regions()) vm_.set_user_memory_region(slot++, r.start.value, r.size, r.host);
}

void Vm::setup_devices() {
    GuestEventSink sink = [this](GuestEvent e) {
        switch (e) {
        case GuestEvent::poweroff: exits_.report(ExitReason::poweroff); break;
        case GuestEvent::reboot: exits_.report(ExitReason::reboot); break;
        case GuestEvent::panic: exits_.report(ExitReason::panic); break;
        }
    };
    serial_ = std::make_shared<Serial>([this](std::span<const uint8_t> b) { console_.write(b); }, serial_irq_);
    pio_.add(platform::kCom1Port, 8, serial_);
    vm_.add_irqfd(serial_irq_.fd(), platform::kCom1Gsi);
    pio_.add(platform::kI8042DataPort, platform::kI8042CommandPort - platform::kI8042DataPort + 1,
             std::make_shared<I8042>(sink));
    pio_.add(platform::kAcpiSleepControlPort, 4, std::make_shared<AcpiPowerRegisters>(sink));
    pio_.add(platform::kPvPanicPort, 1, std::make_shared<PvPanic>(sink));
}

void Vm::setup_disks() {
    if (config_.disks.size() > platform::kMaxVirtioDevices)
        throw Error(fmt::format("{} disks given; ember supports at most {}", config_.disks.size(),
                                platform::kMaxVirtioDevices));
    for (size_t i = 0; i < config_.disks.size(); ++i) {
        const auto& spec = config_.disks[i];
        auto disk = BlockDisk::open(spec); // validates the file before the guest starts
        const uint64_t base = platform::kVirtioMmioBase + i * platform::kVirtioMmioSize;
        const uint32_t gsi = platform::kVirtioFirstGsi + static_cast<uint32_t>(i);
        EventFd irq;
        vm_.add_irqfd(irq.fd(), gsi);
        auto dev = std::make_shared<VirtioMmioTransport>(mem_, std::make_unique<VirtioBlock>(std::move(disk)),
                                                         std::move(irq));
        mmio_.add(base, platform::kVirtioMmioSize, dev);
        // Guest kicks go straight to the I/O thread's eventfd (virtio 1.2
        // §4.2.2 QueueNotify at 0x50, value = queue index): no vcpu exit.
        for (uint16_t q = 0; q < dev->device().queue_count(); ++q)
            vm_.add_ioeventfd_mmio(base + 0x50, 4, q, dev->notify_event(q).fd());
        virtio_.push_back(std::move(dev));
        virtio_slots_.push_back({base, platform::kVirtioMmioSize, gsi});
        log::debug("disk {} ({}) at {:#x}, GSI {}", i, spec.path, base, gsi);
    }
}

void Vm::load_guest() {
    const uint64_t low_end = ram_end_low(config_.mem_bytes);
    BootInfo info;
    info.kernel = load_kernel(config_.kernel, mem_, low_end);
    if (config_.initrd) info.initrd_addr = load_initrd(*config_.initrd, mem_, info.kernel, low_end, info.initrd_size);
    info.cmdline = config_.cmdline;
    if (config_.virtio_cmdline) {
        // For kernels built with CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES, which
        // may not read the DSDT (Documentation/admin-guide/kernel-parameters).
        for (const auto& slot : virtio_slots_)
            info.cmdline += fmt::format(" virtio_mmio.device={}K@{:#x}:{}", slot.size >> 10, slot.base, slot.gsi);
    }
    info.e820 = e820_map(config_.mem_bytes);

    acpi::PlatformConfig acpi_config{config_.cpus, virtio_slots_};
    const auto tables = acpi::build_tables(acpi_config, platform::kAcpiTablesAddr);
    mem_.write_bytes(GuestAddress{platform::kAcpiTablesAddr}, tables);
    info.rsdp_addr = platform::kAcpiTablesAddr;
    write_boot_structures(mem_, info);
    log::debug("kernel entry {:#x} ({}), initrd {:#x}+{:#x}", info.kernel.entry,
               info.kernel.mode == EntryMode::linux64 ? "64-bit" : "PVH", info.initrd_addr, info.initrd_size);

    VcpuThread::install_kick_handler();
    const auto supported = kvm_.supported_cpuid();
    for (uint32_t i = 0; i < config_.cpus; ++i) {
        auto vcpu = std::make_unique<KvmVcpu>(vm_, i);
        vcpu->set_cpuid(vcpu_cpuid(supported, i, config_.cpus));
        setup_vcpu_common(*vcpu);
        if (i == 0) setup_boot_vcpu(*vcpu, info);
        vcpus_.push_back(std::make_unique<VcpuThread>(std::move(vcpu), pio_, mmio_, exits_));
    }
}

VmExit Vm::run() {
    console_.start_input([this](std::span<const uint8_t> b) { serial_->enqueue_input(b); },
                         [this] { exits_.report(ExitReason::user_quit); });
    for (auto& v : vcpus_) v->start();
    VmExit e = exits_.wait();
    shutdown();
    return e;
}

void Vm::shutdown() {
    for (auto& v : vcpus_) v->stop();
    for (auto& v : vcpus_) v->join();
    // After the vcpus: no register access can race the I/O threads' teardown.
    for (auto& d : virtio_) d->shutdown();
    console_.stop_input();
}

} // namespace ember
