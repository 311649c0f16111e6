/* Smallest proof that /dev/kvm runs guest code: one VM, one 64 KiB slot, one
 * vcpu in real mode executing `mov al,0x42; out 0x10,al; hlt`. Prints each exit
 * and "KVM-PROBE OK" when it sees the port write and then the halt. Built
 * static by tools/sandbox so it runs in the nested sandbox's BusyBox L1. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

static int fail(const char *what)
{
    printf("KVM-PROBE FAIL %s: %s\n", what, strerror(errno));
    return 1;
}

int main(void)
{
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0)
        return fail("open /dev/kvm");
    int api = ioctl(kvm, KVM_GET_API_VERSION, 0);
    printf("KVM-PROBE api=%d\n", api);
    if (api != KVM_API_VERSION)
        return fail("KVM_GET_API_VERSION");
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0)
        return fail("KVM_CREATE_VM");
    const size_t mem_size = 0x10000;
    uint8_t *mem = mmap(NULL, mem_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return fail("mmap guest memory");
    const uint8_t code[] = {0xb0, 0x42, 0xe6, 0x10, 0xf4}; /* mov al,0x42; out 0x10,al; hlt */
    memcpy(mem + 0x1000, code, sizeof code);
    struct kvm_userspace_memory_region region = {
        .slot = 0, .guest_phys_addr = 0, .memory_size = mem_size, .userspace_addr = (uintptr_t)mem};
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
        return fail("KVM_SET_USER_MEMORY_REGION");
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0)
        return fail("KVM_CREATE_VCPU");
    int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (run_size <= 0)
        return fail("KVM_GET_VCPU_MMAP_SIZE");
    struct kvm_run *run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED)
        return fail("mmap kvm_run");
    struct kvm_sregs sregs;
    if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0)
        return fail("KVM_GET_SREGS");
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0)
        return fail("KVM_SET_SREGS");
    struct kvm_regs regs = {.rip = 0x1000, .rflags = 0x2};
    if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0)
        return fail("KVM_SET_REGS");
    int saw_out = 0;
    for (int i = 0; i < 4; i++) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0)
            return fail("KVM_RUN");
        if (run->exit_reason == KVM_EXIT_IO) {
            uint8_t value = ((uint8_t *)run)[run->io.data_offset];
            printf("KVM-PROBE exit=io port=0x%x value=0x%x\n", run->io.port, value);
            saw_out = run->io.port == 0x10 && value == 0x42;
        } else if (run->exit_reason == KVM_EXIT_HLT) {
            printf("KVM-PROBE exit=hlt\n");
            printf(saw_out ? "KVM-PROBE OK\n" : "KVM-PROBE FAIL halted without the port write\n");
            return saw_out ? 0 : 1;
        } else {
            printf("KVM-PROBE FAIL unexpected exit_reason=%u\n", run->exit_reason);
            return 1;
        }
    }
    printf("KVM-PROBE FAIL no halt after 4 exits\n");
    return 1;
}
