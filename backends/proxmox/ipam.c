/* Pod IP leases from a configured range, host-local style: see ipam.h. */
#include "ipam.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sha256.h"
#include "strutil.h"

#define LOCK_FILE      "lock"
#define LAST_FILE      "last_reserved_ip"
#define TMP_FILE       ".lease.tmp"
#define LEASE_FILE_MAX 512

/* Addresses as integers: IPv4 in the low 32 bits. gcc and clang have it on every 64-bit
 * target runt builds for. */
__extension__ typedef unsigned __int128 u128;

struct pve_ipam {
        int dfd;
        char *dir;
        char name[PVE_IPAM_NAME_MAX + 1];
        int family;
        unsigned bits; /* 32 or 128 */
        unsigned prefix;
        u128 net, last; /* the subnet's first and last address */
        u128 start, end, gw;
};

static bool name_char(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '.' || c == '-';
}

/* PVE's pattern for a net's name and bridge, and a Linux interface name's length. */
static bool ifname_ok(const char *s)
{
        size_t n = s ? strlen(s) : 0;

        if (n == 0 || n > PVE_IPAM_IFNAME_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!name_char(s[i]))
                        return false;
        return true;
}

static bool owner_ok(const char *s)
{
        size_t n = s ? strlen(s) : 0;

        if (n == 0 || n > PVE_IPAM_OWNER_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (s[i] <= ' ' || s[i] > '~')
                        return false;
        return true;
}

static bool range_name_ok(const char *s)
{
        size_t n = s ? strlen(s) : 0;

        if (n == 0 || n > PVE_IPAM_NAME_MAX || s[0] == '.')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!name_char(s[i]))
                        return false;
        return true;
}

/* Parses an address of either family (@family 0) or of @family. 0 or -EINVAL. */
static int addr_parse(const char *s, int family, int *ret_family, u128 *ret)
{
        unsigned char b[16];
        u128 v = 0;
        int fam;

        if (!s)
                return -EINVAL;
        if ((family == 0 || family == AF_INET) && inet_pton(AF_INET, s, b) == 1)
                fam = AF_INET;
        else if ((family == 0 || family == AF_INET6) && inet_pton(AF_INET6, s, b) == 1)
                fam = AF_INET6;
        else
                return -EINVAL;
        for (size_t i = 0; i < (fam == AF_INET ? 4u : 16u); i++)
                v = (v << 8) | b[i];
        if (ret_family)
                *ret_family = fam;
        *ret = v;
        return 0;
}

static void addr_format(int family, u128 v, char out[INET6_ADDRSTRLEN])
{
        unsigned char b[16];
        size_t n = family == AF_INET ? 4 : 16;

        for (size_t i = n; i-- > 0;) {
                b[i] = (unsigned char)(v & 0xff);
                v >>= 8;
        }
        if (!inet_ntop(family, b, out, INET6_ADDRSTRLEN))
                out[0] = '\0'; /* cannot happen with a valid family */
}

/* Every bit of a @bits-wide address set. */
static u128 all_of(unsigned bits)
{
        return bits == 128 ? ~(u128)0 : (((u128)1 << bits) - 1);
}

/* The netmask of a /@prefix (1 <= @prefix <= @bits). */
static u128 mask_of(unsigned bits, unsigned prefix)
{
        return all_of(bits) & ~((((u128)1) << (bits - prefix)) - 1);
}

static bool in_subnet(const struct pve_ipam *r, u128 a)
{
        return a >= r->net && a <= r->last;
}

/* A host address of the subnet: not the network address, nor IPv4's broadcast. */
static bool is_host(const struct pve_ipam *r, u128 a)
{
        return in_subnet(r, a) && a != r->net && (r->family == AF_INET6 || a != r->last);
}

static int parse_subnet(struct pve_ipam *r, const char *subnet, struct sh_error *err)
{
        char buf[INET6_ADDRSTRLEN + 8], want[INET6_ADDRSTRLEN];
        const char *slash = subnet ? strchr(subnet, '/') : NULL;
        unsigned long prefix;
        char *end;
        u128 a, mask;

        if (!slash || (size_t)(slash - subnet) >= sizeof(buf) || !slash[1] || slash[1] < '0' ||
            slash[1] > '9')
                return sh_err(err, -EINVAL, "IP range '%s': subnet '%s' is not ADDRESS/PREFIX",
                              r->name, subnet ? subnet : "");
        memcpy(buf, subnet, (size_t)(slash - subnet));
        buf[slash - subnet] = '\0';
        errno = 0;
        prefix = strtoul(slash + 1, &end, 10);
        if (*end || errno || addr_parse(buf, 0, &r->family, &a) < 0)
                return sh_err(err, -EINVAL, "IP range '%s': subnet '%s' is not ADDRESS/PREFIX",
                              r->name, subnet);
        r->bits = r->family == AF_INET ? 32 : 128;
        if (prefix == 0 || prefix > r->bits)
                return sh_err(err, -EINVAL, "IP range '%s': subnet '%s': prefix not in /1-/%u",
                              r->name, subnet, r->bits);
        r->prefix = (unsigned)prefix;
        mask = mask_of(r->bits, r->prefix);
        if (a & ~mask) {
                addr_format(r->family, a & mask, want);
                return sh_err(err, -EINVAL,
                              "IP range '%s': subnet '%s' has host bits set (the subnet is "
                              "%s/%u)",
                              r->name, subnet, want, r->prefix);
        }
        /* IPv4 loses the network and broadcast addresses, IPv6 the subnet-router anycast. */
        if (r->prefix + (r->family == AF_INET ? 2 : 1) > r->bits)
                return sh_err(err, -EINVAL,
                              "IP range '%s': subnet '%s' is too small: it has no address for "
                              "pods",
                              r->name, subnet);
        r->net = a;
        r->last = a | (~mask & all_of(r->bits));
        return 0;
}

/* One host address of the subnet given as @what; @dflt when @s is NULL. */
static int parse_host(struct pve_ipam *r, const char *what, const char *s, u128 dflt, u128 *ret,
                      const char *subnet, struct sh_error *err)
{
        int fam;
        u128 a;

        if (!s) {
                *ret = dflt;
                return 0;
        }
        if (addr_parse(s, 0, &fam, &a) < 0)
                return sh_err(err, -EINVAL, "IP range '%s': %s '%s' is not an IP address", r->name,
                              what, s);
        if (fam != r->family)
                return sh_err(err, -EINVAL, "IP range '%s': %s '%s' is not of subnet %s's family",
                              r->name, what, s, subnet);
        if (!is_host(r, a))
                return sh_err(err, -EINVAL,
                              "IP range '%s': %s '%s' is outside subnet %s or not a host "
                              "address of it",
                              r->name, what, s, subnet);
        *ret = a;
        return 0;
}

int pve_ipam_open(const char *state_dir, const struct pve_ipam_config *cfg, struct pve_ipam **ret,
                  struct sh_error *err)
{
        _cleanup_(pve_ipam_freep) struct pve_ipam *r = NULL;
        char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];
        int rc;

        if (!state_dir || !*state_dir || !cfg || !ret)
                return sh_err(err, -EINVAL, "IP range: state dir and config needed");
        if (!range_name_ok(cfg->name))
                return sh_err(err, -EINVAL,
                              "IP range name '%s': want 1-%d of [A-Za-z0-9_.-], not starting "
                              "with '.'",
                              cfg->name ? cfg->name : "", PVE_IPAM_NAME_MAX);
        r = calloc(1, sizeof(*r));
        if (!r)
                return sh_err(err, -ENOMEM, "IP range '%s': out of memory", cfg->name);
        r->dfd = -EBADF;
        snprintf(r->name, sizeof(r->name), "%s", cfg->name);

        rc = parse_subnet(r, cfg->subnet, err);
        if (rc < 0)
                return rc;
        rc = parse_host(r, "gateway", cfg->gateway, r->net + 1, &r->gw, cfg->subnet, err);
        if (rc >= 0)
                rc = parse_host(r, "rangeStart", cfg->range_start, r->net + 1, &r->start,
                                cfg->subnet, err);
        if (rc >= 0)
                rc = parse_host(r, "rangeEnd", cfg->range_end,
                                r->family == AF_INET ? r->last - 1 : r->last, &r->end, cfg->subnet,
                                err);
        if (rc < 0)
                return rc;
        addr_format(r->family, r->start, a);
        addr_format(r->family, r->end, b);
        if (r->start > r->end)
                return sh_err(err, -EINVAL, "IP range '%s': rangeStart %s is after rangeEnd %s",
                              r->name, a, b);
        if (r->start == r->end && r->start == r->gw)
                return sh_err(err, -EINVAL,
                              "IP range '%s': %s-%s holds only the gateway, no address for "
                              "pods",
                              r->name, a, b);

        r->dir = sh_strdup_printf("%s/proxmox/ipam/%s", state_dir, r->name);
        if (!r->dir)
                return sh_err(err, -ENOMEM, "IP range '%s': out of memory", r->name);
        rc = sh_mkdir_p(r->dir, 0700);
        if (rc < 0)
                return sh_err(err, rc, "IP range '%s': mkdir '%s': %s", r->name, r->dir,
                              strerror(-rc));
        r->dfd = open(r->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (r->dfd < 0) {
                rc = -errno;
                return sh_err(err, rc, "IP range '%s': open '%s': %s", r->name, r->dir,
                              strerror(-rc));
        }
        *ret = TAKE_PTR(r);
        return 0;
}

struct pve_ipam *pve_ipam_free(struct pve_ipam *r)
{
        if (!r)
                return NULL;
        if (r->dfd >= 0)
                close(r->dfd);
        free(r->dir);
        free(r);
        return NULL;
}

const char *pve_ipam_dir(const struct pve_ipam *r)
{
        return r ? r->dir : NULL;
}

/* ---- the lock ---- */

static void unlockp(int *fd)
{
        if (*fd >= 0)
                close(*fd); /* drops the flock */
        *fd = -EBADF;
}

/*
 * A lock of its own per call: flock locks belong to the open file description, so two threads
 * (or two handles) exclude each other as two processes do.
 */
static int range_lock(const struct pve_ipam *r, int how, int *ret_fd, struct sh_error *err)
{
        int fd = openat(r->dfd, LOCK_FILE, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        int rc;

        if (fd < 0) {
                rc = -errno;
                return sh_err(err, rc, "IP range '%s': open lock: %s", r->name, strerror(-rc));
        }
        while (flock(fd, how) < 0) {
                if (errno == EINTR)
                        continue;
                rc = -errno;
                close(fd);
                return sh_err(err, rc, "IP range '%s': lock: %s", r->name, strerror(-rc));
        }
        *ret_fd = fd;
        return 0;
}

/* ---- lease files ---- */

/* Reads the lease file @name: 1 with @l filled, 0 when it is no lease, -errno. */
static int lease_read(const struct pve_ipam *r, const char *name, struct pve_ipam_lease *l)
{
        _cleanup_close_ int fd = -EBADF;
        char buf[LEASE_FILE_MAX + 1];
        size_t len = 0;
        char *nl, *ifn, *e;
        int fam;
        u128 a;

        if (addr_parse(name, 0, &fam, &a) < 0)
                return 0;
        fd = openat(r->dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return errno == ENOENT || errno == ELOOP ? 0 : -errno;
        while (len < LEASE_FILE_MAX) {
                ssize_t n = read(fd, buf + len, LEASE_FILE_MAX - len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return errno == EISDIR ? 0 : -errno;
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        buf[len] = '\0';
        if (strlen(buf) != len)
                return 0;
        nl = strchr(buf, '\n');
        if (!nl)
                return 0;
        ifn = nl + 1;
        if (nl > buf && nl[-1] == '\r')
                nl--;
        *nl = '\0';
        e = ifn + strcspn(ifn, "\r\n");
        if (*e && strcmp(e, "\n") != 0 && strcmp(e, "\r\n") != 0)
                return 0;
        *e = '\0';
        if (!owner_ok(buf) || !ifname_ok(ifn))
                return 0;

        *l = (struct pve_ipam_lease){.family = fam};
        addr_format(fam, a, l->ip);
        if (fam == r->family && in_subnet(r, a)) {
                l->prefix = r->prefix;
                addr_format(r->family, r->gw, l->gateway);
        }
        snprintf(l->owner, sizeof(l->owner), "%s", buf);
        snprintf(l->ifname, sizeof(l->ifname), "%s", ifn);
        return 1;
}

static int fsync_dir(const struct pve_ipam *r)
{
        return fsync(r->dfd) < 0 ? -errno : 0;
}

/*
 * Calls @fn for each lease in the directory (under the caller's lock); a return other than 0
 * stops the walk and is returned. Also removes a temp file a crash left behind, when @clean.
 */
static int scan(const struct pve_ipam *r, bool clean,
                int (*fn)(const struct pve_ipam_lease *l, void *ctx), void *ctx)
{
        struct dirent *de;
        DIR *d;
        int fd, rc = 0;

        fd = openat(r->dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        d = fdopendir(fd);
        if (!d) {
                rc = -errno;
                close(fd);
                return rc;
        }
        while (rc == 0) {
                struct pve_ipam_lease l;
                int lr;

                errno = 0;
                de = readdir(d);
                if (!de) {
                        rc = errno ? -errno : 0;
                        break;
                }
                if (clean && strcmp(de->d_name, TMP_FILE) == 0) {
                        (void)unlinkat(r->dfd, TMP_FILE, 0);
                        continue;
                }
                lr = lease_read(r, de->d_name, &l);
                if (lr < 0)
                        rc = lr;
                else if (lr > 0)
                        rc = fn(&l, ctx);
        }
        closedir(d);
        return rc;
}

struct find {
        const char *owner;
        struct pve_ipam_lease lease;
        bool found;
};

static int find_fn(const struct pve_ipam_lease *l, void *ctx)
{
        struct find *f = ctx;

        if (strcmp(l->owner, f->owner) != 0)
                return 0;
        f->lease = *l;
        f->found = true;
        return 1;
}

/* Writes the lease content under the temp name, fsynced. */
static int tmp_write(const struct pve_ipam *r, const char *owner, const char *ifname)
{
        _cleanup_close_ int fd = -EBADF;
        char buf[LEASE_FILE_MAX];
        int n = snprintf(buf, sizeof(buf), "%s\n%s\n", owner, ifname);
        size_t off = 0;

        (void)unlinkat(r->dfd, TMP_FILE, 0);
        fd = openat(r->dfd, TMP_FILE, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        while (off < (size_t)n) {
                ssize_t w = write(fd, buf + off, (size_t)n - off);

                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0)
                        return -errno;
                off += (size_t)w;
        }
        if (fsync(fd) < 0)
                return -errno;
        return close(TAKE_FD(fd)) < 0 ? -errno : 0;
}

/* The search's first address: after last_reserved_ip if it is in the range, else the start. */
static u128 search_start(const struct pve_ipam *r)
{
        char buf[INET6_ADDRSTRLEN + 4];
        _cleanup_close_ int fd = openat(r->dfd, LAST_FILE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        ssize_t n;
        int fam;
        u128 a;

        if (fd < 0)
                return r->start;
        n = read(fd, buf, sizeof(buf) - 1);
        if (n <= 0)
                return r->start;
        buf[n] = '\0';
        buf[strcspn(buf, "\r\n")] = '\0';
        if (addr_parse(buf, r->family, &fam, &a) < 0 || a < r->start || a >= r->end)
                return r->start;
        return a + 1;
}

int pve_ipam_alloc(struct pve_ipam *r, const char *owner, const char *ifname,
                   struct pve_ipam_lease *ret, struct sh_error *err)
{
        _cleanup_(unlockp) int lock = -EBADF;
        struct find f = {.owner = owner};
        char ip[INET6_ADDRSTRLEN], a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];
        u128 cur, tried, size;
        int rc;

        if (!r || !ret)
                return sh_err(err, -EINVAL, "IP range: no range");
        if (!owner_ok(owner))
                return sh_err(err, -EINVAL, "IP range '%s': bad owner id", r->name);
        if (!ifname_ok(ifname))
                return sh_err(err, -EINVAL, "IP range '%s': bad interface name '%s'", r->name,
                              ifname ? ifname : "");
        rc = range_lock(r, LOCK_EX, &lock, err);
        if (rc < 0)
                return rc;

        rc = scan(r, true, find_fn, &f);
        if (rc < 0)
                return sh_err(err, rc, "IP range '%s': read leases: %s", r->name, strerror(-rc));
        if (f.found) {
                int fam;
                u128 held;

                if (strcmp(f.lease.ifname, ifname) == 0 &&
                    addr_parse(f.lease.ip, r->family, &fam, &held) == 0 && in_subnet(r, held)) {
                        *ret = f.lease;
                        return 0;
                }
                return sh_err(err, -EEXIST, "IP range '%s': %s already holds %s for %s", r->name,
                              owner, f.lease.ip, f.lease.ifname);
        }

        rc = tmp_write(r, owner, ifname);
        if (rc < 0)
                return sh_err(err, rc, "IP range '%s': write lease: %s", r->name, strerror(-rc));
        /*
         * Round robin from the address after the last one handed out. Every address tried
         * and taken has a lease file, so this ends after at most (leases + 2) tries when any
         * address is free: a huge IPv6 range costs no more than a small one.
         */
        size = r->end - r->start + 1;
        cur = search_start(r);
        for (tried = 0; tried < size; tried++, cur = cur == r->end ? r->start : cur + 1) {
                if (cur == r->gw)
                        continue;
                addr_format(r->family, cur, ip);
                if (linkat(r->dfd, TMP_FILE, r->dfd, ip, 0) == 0)
                        break;
                if (errno != EEXIST) {
                        rc = -errno;
                        (void)unlinkat(r->dfd, TMP_FILE, 0);
                        return sh_err(err, rc, "IP range '%s': lease %s: %s", r->name, ip,
                                      strerror(-rc));
                }
        }
        (void)unlinkat(r->dfd, TMP_FILE, 0);
        if (tried == size) {
                addr_format(r->family, r->start, a);
                addr_format(r->family, r->end, b);
                return sh_err(err, -ENOSPC,
                              "IP range '%s' (%s-%s) is exhausted: every address is leased",
                              r->name, a, b);
        }
        rc = fsync_dir(r);
        if (rc < 0) {
                (void)unlinkat(r->dfd, ip, 0);
                return sh_err(err, rc, "IP range '%s': fsync: %s", r->name, strerror(-rc));
        }
        /* A hint for the next search; losing it in a crash only moves where that starts. */
        {
                _cleanup_free_ char *path = sh_path_join(r->dir, LAST_FILE);

                if (path)
                        (void)sh_write_file_replace(path, ip, strlen(ip), 0600);
        }
        *ret = (struct pve_ipam_lease){.family = r->family, .prefix = r->prefix};
        snprintf(ret->ip, sizeof(ret->ip), "%s", ip);
        addr_format(r->family, r->gw, ret->gateway);
        snprintf(ret->owner, sizeof(ret->owner), "%s", owner);
        snprintf(ret->ifname, sizeof(ret->ifname), "%s", ifname);
        return 0;
}

struct release {
        const struct pve_ipam *r;
        const char *owner;
        int removed;
};

static int release_fn(const struct pve_ipam_lease *l, void *ctx)
{
        struct release *rel = ctx;

        if (strcmp(l->owner, rel->owner) != 0)
                return 0;
        if (unlinkat(rel->r->dfd, l->ip, 0) < 0 && errno != ENOENT)
                return -errno;
        rel->removed++;
        return 0;
}

int pve_ipam_release(struct pve_ipam *r, const char *owner, struct sh_error *err)
{
        _cleanup_(unlockp) int lock = -EBADF;
        struct release rel = {.r = r, .owner = owner};
        int rc;

        if (!r)
                return sh_err(err, -EINVAL, "IP range: no range");
        if (!owner_ok(owner))
                return sh_err(err, -EINVAL, "IP range '%s': bad owner id", r->name);
        rc = range_lock(r, LOCK_EX, &lock, err);
        if (rc < 0)
                return rc;
        rc = scan(r, true, release_fn, &rel);
        if (rc >= 0 && rel.removed)
                rc = fsync_dir(r);
        if (rc < 0)
                return sh_err(err, rc, "IP range '%s': release %s: %s", r->name, owner,
                              strerror(-rc));
        return 0;
}

int pve_ipam_get(struct pve_ipam *r, const char *owner, struct pve_ipam_lease *ret,
                 struct sh_error *err)
{
        _cleanup_(unlockp) int lock = -EBADF;
        struct find f = {.owner = owner};
        int rc;

        if (!r || !ret)
                return sh_err(err, -EINVAL, "IP range: no range");
        if (!owner_ok(owner))
                return sh_err(err, -EINVAL, "IP range '%s': bad owner id", r->name);
        rc = range_lock(r, LOCK_SH, &lock, err);
        if (rc < 0)
                return rc;
        rc = scan(r, false, find_fn, &f);
        if (rc < 0)
                return sh_err(err, rc, "IP range '%s': read leases: %s", r->name, strerror(-rc));
        if (!f.found)
                return sh_err(err, -ENOENT, "IP range '%s': %s holds no lease", r->name, owner);
        *ret = f.lease;
        return 0;
}

struct collect {
        struct pve_ipam_lease *v;
        size_t n, cap;
};

static int collect_fn(const struct pve_ipam_lease *l, void *ctx)
{
        struct collect *c = ctx;

        if (c->n == c->cap) {
                size_t cap = c->cap ? c->cap * 2 : 16;
                struct pve_ipam_lease *v = reallocarray(c->v, cap, sizeof(*v));

                if (!v)
                        return -ENOMEM;
                c->v = v;
                c->cap = cap;
        }
        c->v[c->n++] = *l;
        return 0;
}

static int lease_cmp(const void *pa, const void *pb)
{
        const struct pve_ipam_lease *a = pa, *b = pb;
        u128 x = 0, y = 0;

        if (a->family != b->family)
                return a->family == AF_INET ? -1 : 1;
        (void)addr_parse(a->ip, a->family, NULL, &x);
        (void)addr_parse(b->ip, b->family, NULL, &y);
        return x < y ? -1 : x > y;
}

int pve_ipam_list(struct pve_ipam *r, struct pve_ipam_lease **ret, size_t *ret_n,
                  struct sh_error *err)
{
        _cleanup_(unlockp) int lock = -EBADF;
        struct collect c = {0};
        int rc;

        if (!r || !ret || !ret_n)
                return sh_err(err, -EINVAL, "IP range: no range");
        rc = range_lock(r, LOCK_SH, &lock, err);
        if (rc < 0)
                return rc;
        rc = scan(r, false, collect_fn, &c);
        if (rc < 0) {
                free(c.v);
                return sh_err(err, rc, "IP range '%s': read leases: %s", r->name, strerror(-rc));
        }
        if (c.n > 1)
                qsort(c.v, c.n, sizeof(*c.v), lease_cmp);
        *ret = c.v;
        *ret_n = c.n;
        return 0;
}

void pve_ipam_mac(const char *pod_id, char out[PVE_IPAM_MAC_LEN])
{
        struct sh_sha256 c;
        unsigned char sum[32];

        sh_sha256_init(&c);
        sh_sha256_update(&c, pod_id ? pod_id : "", pod_id ? strlen(pod_id) : 0);
        sh_sha256_final(&c, sum);
        sum[0] = (unsigned char)((sum[0] & 0xfc) | 0x02); /* unicast, locally administered */
        snprintf(out, PVE_IPAM_MAC_LEN, "%02X:%02X:%02X:%02X:%02X:%02X", sum[0], sum[1], sum[2],
                 sum[3], sum[4], sum[5]);
}

int pve_ipam_net0(const struct pve_ipam_lease *v4, const struct pve_ipam_lease *v6,
                  const char *bridge, const char *pod_id, char *buf, size_t size,
                  struct sh_error *err)
{
        const struct pve_ipam_lease *any = v4 ? v4 : v6;
        char mac[PVE_IPAM_MAC_LEN], ip4[INET6_ADDRSTRLEN + 64] = "",
                                                           ip6[INET6_ADDRSTRLEN * 2 + 64] = "";
        int n;

        if (!any || !buf)
                return sh_err(err, -EINVAL, "net0: no lease");
        if ((v4 && v4->family != AF_INET) || (v6 && v6->family != AF_INET6))
                return sh_err(err, -EINVAL, "net0: lease of the wrong address family");
        if ((v4 && (!v4->prefix || !v4->gateway[0])) || (v6 && (!v6->prefix || !v6->gateway[0])))
                return sh_err(err, -EINVAL, "net0: lease %s is outside its range's subnet",
                              (v4 && (!v4->prefix || !v4->gateway[0])) ? v4->ip : v6->ip);
        if (v4 && v6 && strcmp(v4->ifname, v6->ifname) != 0)
                return sh_err(err, -EINVAL, "net0: leases for two interfaces (%s, %s)", v4->ifname,
                              v6->ifname);
        if (!ifname_ok(any->ifname))
                return sh_err(err, -EINVAL, "net0: bad interface name '%s'", any->ifname);
        if (!ifname_ok(bridge))
                return sh_err(err, -EINVAL, "net0: bad bridge name '%s'", bridge ? bridge : "");
        if (!owner_ok(pod_id))
                return sh_err(err, -EINVAL, "net0: bad pod id");
        pve_ipam_mac(pod_id, mac);
        if (v4)
                snprintf(ip4, sizeof(ip4), ",ip=%s/%u,gw=%s", v4->ip, v4->prefix, v4->gateway);
        if (v6)
                snprintf(ip6, sizeof(ip6), ",ip6=%s/%u,gw6=%s", v6->ip, v6->prefix, v6->gateway);
        n = snprintf(buf, size, "name=%s,bridge=%s%s%s,hwaddr=%s,firewall=0,host-managed=1",
                     any->ifname, bridge, ip4, ip6, mac);
        if (n < 0 || (size_t)n >= size)
                return sh_err(err, -ENOSPC, "net0: buffer too small");
        return n;
}
