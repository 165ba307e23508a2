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
 * In a child (a KVM that misbehaves may hang or crash the caller): a real-mode guest at
 * 0x1000 running "mov al, 0x5a; mov dx, 0x3f0; out dx, al; hlt". Exit 0 when KVM returns
 * the I/O exit with that byte and then the HLT exit.
 */
static int kvm_probe_child(void)
{
        static const uint8_t code[] = {0xb0, PROBE_BYTE, 0xba, PROBE_PORT & 0xff, PROBE_PORT >> 8,
                                       0xee, 0xf4};
        struct kvm_userspace_memory_region region;
        struct kvm_sregs sregs;
        struct kvm_regs regs = {.rip = 0x1000, .rflags = 0x2};
        struct kvm_run *run;
        int kvm, vm, cpu, mmap_size;
        uint8_t *mem;

        kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        if (kvm < 0 || ioctl(kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION)
                return 10;
        vm = ioctl(kvm, KVM_CREATE_VM, 0);
        if (vm < 0)
                return 11;
        mem = mmap(NULL, 0x2000, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED)
                return 12;
        memcpy(mem + 0x1000, code, sizeof(code));
        region = (struct kvm_userspace_memory_region){
                .slot = 0, .guest_phys_addr = 0, .memory_size = 0x2000,
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
                        return sh_err(err, -ENODEV, "accel kvm: KVM cannot run a guest here");
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
