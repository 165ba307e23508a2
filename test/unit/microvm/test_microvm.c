/* backends/microvm: the pieces that need no VM. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "cleanup.h"
#include "strutil.h"
#include "vm-internal.h"
#include "vm.h"

/* ---- a newc reader, independent of the writer ---- */

struct entry {
        char name[256];
        unsigned mode, nlink, rmaj, rmin;
        size_t size;
        const unsigned char *data;
};

static unsigned hex8(const unsigned char *p)
{
        char b[9];

        memcpy(b, p, 8);
        b[8] = '\0';
        return (unsigned)strtoul(b, NULL, 16);
}

/* Parses @len bytes; returns the number of entries before the trailer, -1 if malformed. */
static int cpio_parse(const unsigned char *p, size_t len, struct entry *out, int max)
{
        size_t off = 0;
        int n = 0;

        while (off + 110 <= len) {
                struct entry e = {0};
                unsigned namesize;

                if (memcmp(p + off, "070701", 6) != 0)
                        return -1;
                e.mode = hex8(p + off + 14);
                e.nlink = hex8(p + off + 38);
                e.size = hex8(p + off + 54);
                e.rmaj = hex8(p + off + 78);
                e.rmin = hex8(p + off + 86);
                namesize = hex8(p + off + 94);
                if (off + 110 + namesize > len || namesize == 0 || namesize > sizeof(e.name))
                        return -1;
                memcpy(e.name, p + off + 110, namesize);
                if (e.name[namesize - 1] != '\0')
                        return -1;
                off += 110 + namesize;
                if (off % 4 != 0)
                        off += 4 - off % 4;
                e.data = p + off;
                off += e.size;
                if (off > len)
                        return -1;
                if (off % 4 != 0)
                        off += 4 - off % 4;
                if (strcmp(e.name, "TRAILER!!!") == 0)
                        return off == len ? n : -1;
                if (n < max)
                        out[n] = e;
                n++;
        }
        return -1;
}

static const struct entry *find(const struct entry *v, int n, const char *name)
{
        for (int i = 0; i < n; i++)
                if (strcmp(v[i].name, name) == 0)
                        return &v[i];
        return NULL;
}

static void test_cpio_roundtrip(void **state)
{
        struct mv_buf b = {0};
        struct entry e[8];
        int n;

        (void)state;
        assert_int_equal(mv_cpio_add(&b, "dev", S_IFDIR | 0755, 0, 0, NULL, 0), 0);
        assert_int_equal(mv_cpio_add(&b, "dev/console", S_IFCHR | 0600, 5, 1, NULL, 0), 0);
        assert_int_equal(mv_cpio_add(&b, "init", S_IFREG | 0755, 0, 0, "abcde", 5), 0);
        assert_int_equal(mv_cpio_add(&b, "x", S_IFREG | 0644, 0, 0, "1234", 4), 0);
        assert_int_equal(mv_cpio_finish(&b), 0);
        assert_int_equal(b.len % 4, 0);
        n = cpio_parse(b.p, b.len, e, 8);
        assert_int_equal(n, 4);
        assert_string_equal(e[0].name, "dev");
        assert_int_equal(e[0].mode, S_IFDIR | 0755);
        assert_int_equal(e[0].nlink, 2);
        assert_int_equal(e[1].mode, S_IFCHR | 0600);
        assert_int_equal(e[1].rmaj, 5);
        assert_int_equal(e[1].rmin, 1);
        assert_int_equal(e[2].size, 5);
        assert_memory_equal(e[2].data, "abcde", 5);
        assert_memory_equal(e[3].data, "1234", 4);
        mv_buf_done(&b);
}

/* ---- modules.dep ---- */

static const char dep[] =
        "kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n"
        "kernel/drivers/virtio/virtio_ring.ko:\n"
        "kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko "
        "kernel/drivers/virtio/virtio_ring.ko\n"
        "kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko "
        "kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko "
        "kernel/drivers/virtio/virtio_ring.ko\n"
        "kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n"
        "kernel/net/core/failover.ko:\n"
        "kernel/drivers/char/hw_random/virtio-rng.ko: kernel/drivers/virtio/virtio.ko "
        "kernel/drivers/virtio/virtio_ring.ko\n"
        "kernel/fs/loop/a.ko: kernel/fs/loop/b.ko\n"
        "kernel/fs/loop/b.ko: kernel/fs/loop/a.ko\n";

static int index_of(char **v, const char *s)
{
        for (int i = 0; v[i]; i++)
                if (strcmp(v[i], s) == 0)
                        return i;
        return -1;
}

static void test_modules_order(void **state)
{
        const char *names[] = {"virtio_net", "virtio_mmio", "virtio-net", NULL};
        _cleanup_strv_ char **v = NULL;
        struct sh_error err = {0};
        int n = 0;

        (void)state;
        assert_int_equal(mv_modules_resolve(dep, NULL, names, &v, &err), 0);
        while (v[n])
                n++;
        assert_int_equal(n, 6); /* each once */
        assert_true(index_of(v, "kernel/drivers/virtio/virtio_ring.ko") <
                    index_of(v, "kernel/drivers/virtio/virtio.ko"));
        assert_true(index_of(v, "kernel/net/core/failover.ko") <
                    index_of(v, "kernel/drivers/net/net_failover.ko"));
        assert_true(index_of(v, "kernel/drivers/net/net_failover.ko") <
                    index_of(v, "kernel/drivers/net/virtio_net.ko"));
        assert_true(index_of(v, "kernel/drivers/virtio/virtio.ko") <
                    index_of(v, "kernel/drivers/net/virtio_net.ko"));
        assert_true(index_of(v, "kernel/drivers/virtio/virtio.ko") <
                    index_of(v, "kernel/drivers/virtio/virtio_mmio.ko"));
}

static void test_modules_builtin_missing_loop(void **state)
{
        const char *rng[] = {"virtio_rng", NULL};
        const char *bi[] = {"ext4", NULL};
        const char *missing[] = {"nosuch", NULL};
        const char *loop[] = {"a", NULL};
        _cleanup_strv_ char **v = NULL, **w = NULL, **x = NULL;
        struct sh_error err = {0};

        (void)state;
        assert_int_equal(mv_modules_resolve(dep, NULL, rng, &v, &err), 0); /* dash == underscore */
        assert_int_equal(index_of(v, "kernel/drivers/char/hw_random/virtio-rng.ko"), 2);
        assert_int_equal(mv_modules_resolve(dep, "kernel/fs/ext4/ext4.ko\n", bi, &w, &err), 0);
        assert_null(w[0]);
        assert_int_equal(mv_modules_resolve(dep, NULL, missing, &x, &err), -ENOENT);
        assert_non_null(strstr(err.msg, "nosuch"));
        assert_int_equal(mv_modules_resolve(dep, NULL, loop, &x, &err), -ELOOP);
}

/* ---- initramfs cache ---- */

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
        (void)st;
        (void)type;
        (void)ftw;
        return remove(path);
}

static void put(const char *dir, const char *rel, const char *text)
{
        _cleanup_free_ char *path = sh_path_join(dir, rel);
        _cleanup_free_ char *d = strdup(path);

        *strrchr(d, '/') = '\0';
        assert_int_equal(sh_mkdir_p(d, 0755), 0);
        assert_int_equal(sh_write_file_replace(path, text, strlen(text), 0644), 0);
}

static void test_initramfs_cache(void **state)
{
        char base[] = "/tmp/mv-test-XXXXXX";
        _cleanup_free_ char *mods = NULL, *cache = NULL, *agent = NULL, *p1 = NULL, *p2 = NULL,
                            *p3 = NULL, *data = NULL;
        const char *names[] = {"virtio_net", NULL};
        struct mv_initramfs_opts o = {.kver = "9.9.9-test", .modules = names, .gzip = 0};
        struct sh_error err = {0};
        struct entry e[32];
        const struct entry *list, *init, *ko;
        size_t len = 0;
        int n;

        (void)state;
        assert_non_null(mkdtemp(base));
        mods = sh_path_join(base, "lib/modules/9.9.9-test");
        cache = sh_path_join(base, "cache");
        agent = sh_path_join(base, "agent");
        put(mods, "modules.dep", dep);
        put(mods, "kernel/drivers/virtio/virtio.ko", "V");
        put(mods, "kernel/drivers/virtio/virtio_ring.ko", "R");
        put(mods, "kernel/drivers/net/virtio_net.ko", "N");
        put(mods, "kernel/drivers/net/net_failover.ko", "NF");
        put(mods, "kernel/net/core/failover.ko", "F");
        put(base, "agent", "#!agent-binary");
        o.agent_path = agent;
        o.modules_dir = mods;
        o.cache_dir = cache;
        assert_int_equal(mv_initramfs_get(&o, &p1, &err), 0);
        assert_non_null(strstr(p1, "/cache/initramfs-"));
        assert_int_equal(strlen(strrchr(p1, '-') + 1), 64 + strlen(".cpio"));
        assert_int_equal(mv_initramfs_get(&o, &p2, &err), 0); /* cached: same name */
        assert_string_equal(p1, p2);
        assert_int_equal(sh_read_file(p1, 1 << 20, &data, &len), 0);
        n = cpio_parse((unsigned char *)data, len, e, 32);
        assert_true(n > 0);
        init = find(e, n, "init");
        assert_non_null(init);
        assert_int_equal(init->mode, S_IFREG | 0755);
        assert_memory_equal(init->data, "#!agent-binary", 14);
        assert_non_null(find(e, n, "dev/console"));
        assert_non_null(find(e, n, "lib/modules/9.9.9-test/kernel/drivers/net")); /* parents */
        ko = find(e, n, "lib/modules/9.9.9-test/kernel/net/core/failover.ko");
        assert_non_null(ko);
        assert_memory_equal(ko->data, "F", 1);
        list = find(e, n, "etc/runt-modules");
        assert_non_null(list);
        {
                /* virtio_net's modules.dep line lists net_failover, failover, virtio,
                 * virtio_ring: each comes after its own dependencies */
                const char *want = "/lib/modules/9.9.9-test/kernel/net/core/failover.ko\n"
                                   "/lib/modules/9.9.9-test/kernel/drivers/net/net_failover.ko\n"
                                   "/lib/modules/9.9.9-test/kernel/drivers/virtio/virtio_ring.ko\n"
                                   "/lib/modules/9.9.9-test/kernel/drivers/virtio/virtio.ko\n"
                                   "/lib/modules/9.9.9-test/kernel/drivers/net/virtio_net.ko\n";

                assert_int_equal(list->size, strlen(want));
                assert_memory_equal(list->data, want, strlen(want));
        }
        /* another agent: another file; gzip: another file, a gzip stream */
        put(base, "agent", "#!agent-binary-2");
        o.gzip = 1;
        assert_int_equal(mv_initramfs_get(&o, &p3, &err), 0);
        assert_string_not_equal(p1, p3);
        assert_non_null(strstr(p3, ".cpio.gz"));
        free(data);
        data = NULL;
        assert_int_equal(sh_read_file(p3, 1 << 20, &data, &len), 0);
        assert_true(len > 2 && (unsigned char)data[0] == 0x1f && (unsigned char)data[1] == 0x8b);
        nftw(base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void test_kernel_find_configured(void **state)
{
        char base[] = "/tmp/mv-test-XXXXXX";
        _cleanup_free_ char *k = NULL, *kernel = NULL, *kver = NULL, *mods = NULL, *bad = NULL;
        struct sh_error err = {0};

        (void)state;
        assert_non_null(mkdtemp(base));
        k = sh_path_join(base, "vmlinuz-6.1.0-99-cloud-amd64");
        bad = sh_path_join(base, "bzImage");
        put(base, "vmlinuz-6.1.0-99-cloud-amd64", "k");
        put(base, "bzImage", "k");
        assert_int_equal(mv_kernel_find(k, &kernel, &kver, &mods, &err), 0);
        assert_string_equal(kernel, k);
        assert_string_equal(kver, "6.1.0-99-cloud-amd64");
        assert_string_equal(mods, "/lib/modules/6.1.0-99-cloud-amd64");
        assert_int_equal(mv_kernel_find(bad, &kernel, &kver, &mods, &err), -EINVAL);
        nftw(base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- argv ---- */

static bool has(char **v, const char *s)
{
        return index_of(v, s) >= 0;
}

static const char *after(char **v, const char *opt, const char *prefix)
{
        for (int i = 0; v[i] && v[i + 1]; i++)
                if (strcmp(v[i], opt) == 0 && strncmp(v[i + 1], prefix, strlen(prefix)) == 0)
                        return v[i + 1];
        return NULL;
}

static void test_qemu_argv(void **state)
{
        struct mv_vm_opts o = {.kernel = "/k",
                               .initramfs = "/i",
                               .dir = "/run/vm/p1",
                               .tap_fd = -1,
                               .cmdline_extra = "rt.x=1",
                               .mem_mib = 192};
        _cleanup_strv_ char **v = NULL, **w = NULL, **f = NULL;
        struct sh_error err = {0};
        const char *s;

        (void)state;
        assert_int_equal(mv_qemu_argv(&o, 2596142, &v, &err), 0);
        assert_string_equal(v[0], "qemu-system-x86_64");
        assert_true(has(v, "-nodefaults") && has(v, "-no-user-config") && has(v, "-no-reboot"));
        s = after(v, "-M", "microvm");
        assert_non_null(s);
        assert_non_null(strstr(s, "memory-backend=mem"));
        assert_non_null(strstr(s, "x-option-roms=off"));
        assert_non_null(strstr(s, "isa-serial=off"));
        assert_non_null(after(v, "-object", "memory-backend-memfd,id=mem,size=192M,share=on"));
        assert_non_null(after(v, "-global", "virtio-mmio.force-legacy=false"));
        assert_non_null(after(v, "-accel", "tcg,tb-size="));
        assert_non_null(after(v, "-pidfile", "/run/vm/p1/qemu.pid"));
        assert_non_null(after(v, "-qmp", "unix:/run/vm/p1/qmp.sock,server=on,wait=off"));
        assert_non_null(after(v, "-chardev",
                              "socket,id=agent,path=/run/vm/p1/agent.sock,server=on,wait=off"));
        assert_non_null(after(v, "-device", "virtserialport,chardev=agent,name=runt.agent"));
        s = after(v, "-append", "");
        assert_non_null(strstr(s, "tsc_early_khz=2596142"));
        assert_non_null(strstr(s, "panic=-1"));
        assert_non_null(strstr(s, " rt.x=1"));
        assert_null(after(v, "-netdev", ""));
        assert_null(after(v, "-device", "vhost-user-fs-device"));
        assert_null(after(v, "-serial", ""));

        o.tap_fd = 7;
        o.mac = "0e:00:00:00:00:01";
        o.shared_dir = "/srv/share";
        o.accel = "kvm";
        o.console = true;
        o.balloon = true;
        assert_int_equal(mv_qemu_argv(&o, 1000, &w, &err), 0);
        assert_non_null(after(w, "-netdev", "tap,id=n0,fd=3"));
        assert_non_null(after(w, "-device", "virtio-net-device,netdev=n0,mac=0e:00:00:00:00:01"));
        assert_non_null(after(w, "-device", "vhost-user-fs-device,chardev=vfs,tag=runt"));
        assert_non_null(after(w, "-chardev", "socket,id=vfs,path=/run/vm/p1/vfs.sock"));
        assert_non_null(after(w, "-accel", "kvm"));
        assert_non_null(after(w, "-cpu", "host"));
        assert_non_null(after(w, "-serial", "file:/run/vm/p1/console.log"));
        assert_non_null(after(w, "-device", "virtio-balloon-device,free-page-reporting=on"));
        assert_non_null(strstr(after(w, "-M", "microvm"), "isa-serial=on"));

        assert_int_equal(mv_virtiofsd_argv(&o, &f, &err), 0);
        assert_string_equal(f[0], "/usr/lib/qemu/virtiofsd");
        assert_true(has(f, "--socket-path=/run/vm/p1/vfs.sock"));
        assert_non_null(after(f, "-o", "source=/srv/share"));
        assert_non_null(after(f, "-o", "xattr"));
        assert_non_null(after(f, "-o", "modcaps=+sys_admin"));

        o.accel = "hvf";
        assert_int_equal(mv_qemu_argv(&o, 1000, &v, &err), -EINVAL);
        o.accel = NULL;
        o.kernel = NULL;
        assert_int_equal(mv_qemu_argv(&o, 1000, &v, &err), -EINVAL);
}

/* ---- QMP ---- */

static const char greeting[] =
        "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, "
        "\"package\": \"Debian 1:7.2+dfsg-7\"}, \"capabilities\": [\"oob\"]}}";

static void test_qmp_parse(void **state)
{
        int a = 0, b = 0, c = 0;
        char msg[64] = "";

        (void)state;
        assert_int_equal(mv_qmp_parse_greeting(greeting, &a, &b, &c), 0);
        assert_int_equal(a, 7);
        assert_int_equal(b, 2);
        assert_int_equal(c, 0);
        assert_int_equal(mv_qmp_parse_greeting("{\"return\": {}}", &a, &b, &c), -EPROTO);
        assert_int_equal(
                mv_qmp_parse_greeting("{\"QMP\": {\"version\": {\"qemu\": {\"major\": \"7\"}}}}",
                                      &a, &b, &c),
                -EPROTO);
        assert_int_equal(mv_qmp_parse_greeting("not json", &a, &b, &c), -EPROTO);
        assert_int_equal(mv_qmp_parse_reply("{\"return\": {}}", msg, sizeof(msg)), 1);
        assert_int_equal(mv_qmp_parse_reply("{\"timestamp\": {}, \"event\": \"SHUTDOWN\"}", msg,
                                            sizeof(msg)),
                         0);
        assert_int_equal(
                mv_qmp_parse_reply("{\"error\": {\"class\": \"GenericError\", \"desc\": \"nope\"}}",
                                   msg, sizeof(msg)),
                -EIO);
        assert_string_equal(msg, "nope");
        assert_int_equal(mv_qmp_parse_reply("[]", msg, sizeof(msg)), -EPROTO);
}

struct fake_qmp {
        int lfd;
        char got[512];
};

static ssize_t read_line_fd(int fd, char *buf, size_t size)
{
        size_t n = 0;

        while (n + 1 < size && read(fd, buf + n, 1) == 1 && buf[n] != '\n')
                n++;
        buf[n] = '\0';
        return (ssize_t)n;
}

static void *fake_qmp_thread(void *data)
{
        struct fake_qmp *f = data;
        int fd = accept(f->lfd, NULL, NULL);
        char line[256];
        const char *ev =
                "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"SHUTDOWN\"}\n";

        if (fd < 0)
                return NULL;
        dprintf(fd, "%s\r\n", greeting);
        read_line_fd(fd, line, sizeof(line));
        snprintf(f->got, sizeof(f->got), "%s", line);
        dprintf(fd, "{\"return\": {}}\n");
        read_line_fd(fd, line, sizeof(line));
        snprintf(f->got + strlen(f->got), sizeof(f->got) - strlen(f->got), "%s", line);
        if (write(fd, ev, strlen(ev)) < 0) /* an event before the return is skipped */
                return NULL;
        dprintf(fd, "{\"return\": {}}\n");
        close(fd);
        return NULL;
}

static void test_qmp_client(void **state)
{
        char dir[] = "/tmp/mv-qmp-XXXXXX";
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        struct fake_qmp f = {0};
        struct sh_error err = {0};
        pthread_t t;

        (void)state;
        assert_non_null(mkdtemp(dir));
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/qmp.sock", dir);
        f.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_int_equal(bind(f.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(f.lfd, 1), 0);
        assert_int_equal(pthread_create(&t, NULL, fake_qmp_thread, &f), 0);
        assert_int_equal(mv_qmp_command(sa.sun_path, "system_powerdown", 2000, &err), 0);
        pthread_join(t, NULL);
        assert_string_equal(f.got, "{\"execute\":\"qmp_capabilities\"}"
                                   "{\"execute\":\"system_powerdown\"}");
        close(f.lfd);
        unlink(sa.sun_path);
        /* nobody listening */
        assert_true(mv_qmp_command(sa.sun_path, "quit", 200, &err) < 0);
        rmdir(dir);
}

static void test_cleanup_dir(void **state)
{
        char dir[] = "/tmp/mv-dir-XXXXXX";
        struct sh_error err = {0};
        struct stat st;

        (void)state;
        assert_non_null(mkdtemp(dir));
        put(dir, "qemu.pid", "1\n");
        put(dir, "console.log", "x");
        put(dir, "virtiofsd.pid", "2\n");
        assert_int_equal(mv_vm_cleanup_dir(dir, &err), 0);
        assert_int_equal(stat(dir, &st), -1);
        /* a file it did not make keeps the dir */
        snprintf(dir, sizeof(dir), "/tmp/mv-dir-XXXXXX");
        assert_non_null(mkdtemp(dir));
        put(dir, "qemu.pid", "1\n");
        put(dir, "mine", "x");
        assert_int_equal(mv_vm_cleanup_dir(dir, &err), 0);
        assert_int_equal(stat(dir, &st), 0);
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void test_open_missing(void **state)
{
        struct mv_vm vm = {0};
        struct sh_error err = {0};

        (void)state;
        assert_int_equal(mv_vm_open("/nonexistent/mv", &vm, &err), -ESRCH);
        assert_int_equal(vm.qemu_pidfd, -1);
        assert_int_equal(vm.vfsd_pidfd, -1);
        mv_vm_done(&vm);
}

static void test_accel_explicit(void **state)
{
        _cleanup_free_ char *a = NULL;
        struct sh_error err = {0};

        (void)state;
        assert_int_equal(mv_accel_probe("tcg", &a, &err), 0);
        assert_string_equal(a, "tcg");
        assert_int_equal(mv_accel_probe("xen", &a, &err), -EINVAL);
        assert_true(mv_host_tsc_khz() > 0);
}

/* ---- spawns from several threads at once ---- */

#define SPAWN_THREADS 6
#define SPAWNS_EACH   40

struct spawner {
        const char *log;
        int failed;
        pid_t pids[SPAWNS_EACH];
};

static void *spawn_many(void *arg)
{
        struct spawner *s = arg;
        char *argv[] = {(char *)"/bin/true", NULL};

        for (int i = 0; i < SPAWNS_EACH; i++) {
                struct sh_error err = {0};
                int pidfd = -1;

                if (mv_spawn_detached(argv, -1, s->log, NULL, &s->pids[i], &pidfd, &err) < 0) {
                        s->failed++;
                        continue;
                }
                close(pidfd);
        }
        return NULL;
}

/*
 * Each spawn's intermediate child waits for EOF on a pipe only its spawner holds; when it
 * also kept copies of the other threads' pipes, two spawns at once waited on each other
 * for ever (VMs started together hung at boot). All threads must finish, every child ran.
 */
static void test_spawn_concurrent(void **state)
{
        char dir[] = "/tmp/mv-spawn-XXXXXX", log[64];
        struct spawner sp[SPAWN_THREADS];
        pthread_t t[SPAWN_THREADS];
        struct timespec until;
        int reaped = 0, status;

        (void)state;
        assert_non_null(mkdtemp(dir));
        snprintf(log, sizeof(log), "%s/log", dir);
        /* the grandchildren are reparented here, so this test reaps them */
        assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
        for (int i = 0; i < SPAWN_THREADS; i++) {
                sp[i] = (struct spawner){.log = log};
                assert_int_equal(pthread_create(&t[i], NULL, spawn_many, &sp[i]), 0);
        }
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 60;
        for (int i = 0; i < SPAWN_THREADS; i++) {
                int r = pthread_timedjoin_np(t[i], NULL, &until);

                if (r == ETIMEDOUT)
                        fail_msg("spawner %d still waiting after 60 s: spawns deadlocked", i);
                assert_int_equal(r, 0);
                assert_int_equal(sp[i].failed, 0);
        }
        for (int i = 0; i < SPAWN_THREADS; i++)
                for (int j = 0; j < SPAWNS_EACH; j++) {
                        assert_true(sp[i].pids[j] > 0);
                        if (waitpid(sp[i].pids[j], &status, 0) == sp[i].pids[j] &&
                            WIFEXITED(status) && WEXITSTATUS(status) == 0)
                                reaped++;
                }
        assert_int_equal(reaped, SPAWN_THREADS * SPAWNS_EACH);
        prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_cpio_roundtrip),
                cmocka_unit_test(test_modules_order),
                cmocka_unit_test(test_modules_builtin_missing_loop),
                cmocka_unit_test(test_initramfs_cache),
                cmocka_unit_test(test_kernel_find_configured),
                cmocka_unit_test(test_qemu_argv),
                cmocka_unit_test(test_qmp_parse),
                cmocka_unit_test(test_qmp_client),
                cmocka_unit_test(test_cleanup_dir),
                cmocka_unit_test(test_open_missing),
                cmocka_unit_test(test_accel_explicit),
                cmocka_unit_test(test_spawn_concurrent),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
