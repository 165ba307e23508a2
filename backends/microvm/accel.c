/* Which accelerator really runs a guest here: KVM only if a tiny guest reaches its HLT. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "error.h"
#include "vm.h"

#define PROBE_PORT 0x3f0
#define PROBE_BYTE 0x5a

/*
 * The probe guest, loaded at 0x1000 and started in real mode (as a kernel's setup code
 * is): lgdt, protected mode, PAE + EFER.LME + paging (identity-mapped 2 MiB page at 0),
 * far jump to 64-bit code, "mov al, 0x5a; mov dx, 0x3f0; out dx, al; hlt". A guest that only
 * stays in real mode is not enough: on a host where /dev/kvm works but cannot run Linux
 * (this one, a PVM host), real mode and a long mode set up from outside both run, and
 * QEMU's guest then hangs or aborts.
 */
static const uint8_t probe_code[] = {
        0xfa,
        0x66,
        0x0f,
        0x01,
        0x16,
        0x00,
        0x11, /* cli; lgdtl (0x1100) */
        0x0f,
        0x20,
        0xc0,
        0x66,
        0x83,
        0xc8,
        0x01,
        0x0f,
        0x22,
        0xc0, /* cr0 |= PE */
        0x66,
        0xea,
        0x20,
        0x10,
        0x00,
        0x00,
        0x08,
        0x00, /* ljmpl $0x08, $0x1020 */
        0x00,
        0x00,
        0x00,
        0x00,
        0x00,
        0x00,
        0x00,
        /* 0x1020, 32-bit */
        0x66,
        0xb8,
        0x10,
        0x00,
        0x8e,
        0xd8,
        0x8e,
        0xd0, /* ds = ss = 0x10 */
        0x0f,
        0x20,
        0xe0,
        0x83,
        0xc8,
        0x20,
        0x0f,
        0x22,
        0xe0, /* cr4 |= PAE */
        0xb8,
        0x00,
        0x20,
        0x00,
        0x00,
        0x0f,
        0x22,
        0xd8, /* cr3 = 0x2000 */
        0xb9,
        0x80,
        0x00,
        0x00,
        0xc0,
        0x0f,
        0x32, /* rdmsr EFER */
        0x0d,
        0x00,
        0x01,
        0x00,
        0x00,
        0x0f,
        0x30, /* |= LME; wrmsr */
        0x0f,
        0x20,
        0xc0,
        0x0d,
        0x00,
        0x00,
        0x00,
        0x80,
        0x0f,
        0x22,
        0xc0, /* cr0 |= PG */
        0xea,
        0x60,
        0x10,
        0x00,
        0x00,
        0x18,
        0x00, /* ljmp $0x18, $0x1060 */
        0x00,
        0x00,
        0x00,
        0x00,
        0x00,
        0x00,
        0x00,
        /* 0x1060, 64-bit */
        0xb0,
        PROBE_BYTE,
        0x66,
        0xba,
        PROBE_PORT & 0xff,
        PROBE_PORT >> 8,
        0xee,
        0xf4,
};

/* In a child (a KVM that misbehaves may hang or crash its caller). Exit 0 when KVM returns
 * the I/O exit with the byte, then the HLT exit. */
static int kvm_probe_child(void)
{
        static const uint64_t gdt[] = {0, 0x00cf9a000000ffffull, 0x00cf92000000ffffull,
                                       0x00af9a000000ffffull};
        struct kvm_userspace_memory_region region;
        struct kvm_sregs sregs;
        struct kvm_regs regs = {.rip = 0x1000, .rsp = 0x8000, .rflags = 0x2};
        struct kvm_run *run;
        int kvm, vm, cpu, mmap_size;
        uint64_t *pt;
        uint8_t *mem;
        uint16_t limit = sizeof(gdt) - 1;
        uint32_t base = 0x1108;

        kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        if (kvm < 0 || ioctl(kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION)
                return 10;
        vm = ioctl(kvm, KVM_CREATE_VM, 0);
        if (vm < 0)
                return 11;
        mem = mmap(NULL, 0x10000, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED)
                return 12;
        _Static_assert(sizeof(probe_code) == 0x68, "probe code layout");
        memcpy(mem + 0x1000, probe_code, sizeof(probe_code));
        memcpy(mem + 0x1100, &limit, 2);
        memcpy(mem + 0x1102, &base, 4);
        memcpy(mem + 0x1108, gdt, sizeof(gdt));
        pt = (uint64_t *)(mem + 0x2000); /* PML4 -> PDPT (0x3000) -> PD (0x4000) -> 2 MiB */
        pt[0] = 0x3000 | 0x3;
        pt = (uint64_t *)(mem + 0x3000);
        pt[0] = 0x4000 | 0x3;
        pt = (uint64_t *)(mem + 0x4000);
        pt[0] = 0x0 | 0x83;
        region = (struct kvm_userspace_memory_region){.slot = 0,
                                                      .guest_phys_addr = 0,
                                                      .memory_size = 0x10000,
                                                      .userspace_addr = (uint64_t)(uintptr_t)mem};
        if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
                return 13;
        cpu = ioctl(vm, KVM_CREATE_VCPU, 0);
        mmap_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
        if (cpu < 0 || mmap_size <= 0)
                return 14;
        run = mmap(NULL, (size_t)mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, cpu, 0);
        if (run == MAP_FAILED)
                return 15;
        if (ioctl(cpu, KVM_GET_SREGS, &sregs) < 0)
                return 16;
        sregs.cs.base = 0;
        sregs.cs.selector = 0;
        if (ioctl(cpu, KVM_SET_SREGS, &sregs) < 0 || ioctl(cpu, KVM_SET_REGS, &regs) < 0)
                return 17;
        if (ioctl(cpu, KVM_RUN, 0) < 0)
                return 18;
        if (run->exit_reason != KVM_EXIT_IO || run->io.direction != KVM_EXIT_IO_OUT ||
            run->io.port != PROBE_PORT || run->io.size != 1 ||
            ((uint8_t *)run)[run->io.data_offset] != PROBE_BYTE)
                return 19;
        if (ioctl(cpu, KVM_RUN, 0) < 0)
                return 20;
        if (run->exit_reason != KVM_EXIT_HLT)
                return 21;
        return 0;
}

static int mv_kvm_probe_status; /* last failed probe's wait status, for messages */

static int kvm_works(void)
{
        pid_t pid;
        int pidfd, status = 0;
        struct pollfd p;

        if (access("/dev/kvm", R_OK | W_OK) < 0)
                return -errno;
        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                alarm(2);
                _exit(kvm_probe_child());
        }
        pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (pidfd >= 0) {
                p = (struct pollfd){.fd = pidfd, .events = POLLIN};
                if (poll(&p, 1, 3000) <= 0)
                        kill(pid, SIGKILL);
                close(pidfd);
        }
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
                return 0;
        mv_kvm_probe_status = status;
        return -ENODEV;
}

int mv_accel_probe(const char *want, char **ret_accel, struct sh_error *err)
{
        char *a;

        if (want && strcmp(want, "tcg") == 0) {
                a = strdup("tcg");
        } else if (want && strcmp(want, "kvm") == 0) {
                int r = kvm_works();

                if (r < 0)
                        return sh_err(
                                err, -ENODEV,
                                "accel kvm: KVM cannot run a test guest here (probe status 0x%x)",
                                mv_kvm_probe_status);
                a = strdup("kvm");
        } else if (!want || !*want || strcmp(want, "auto") == 0) {
                a = strdup(kvm_works() == 0 ? "kvm" : "tcg");
        } else {
                return sh_err(err, -EINVAL, "accel %s: not auto, kvm or tcg", want);
        }
        if (!a)
                return -ENOMEM;
        *ret_accel = a;
        return 0;
}
