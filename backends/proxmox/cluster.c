/* Tasks, nodes and vmids of a Proxmox VE cluster: see cluster.h. */
#define SH_LOG_MODULE "proxmox"
#include "cluster.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "json.h"
#include "log.h"
#include "reply.h"
#include "strutil.h"
#include "upid.h"

#define POLL_FIRST_MS 50   /* the first look at a task of a new type, and the earliest */
#define POLL_AGAIN_MS 25   /* the least wait after a first look that found the task running */
#define POLL_MAX_MS   1000 /* the latest first look, and the longest wait between looks */
#define LOG_PAGE      500  /* task log lines per call */
#define LOG_PAGES     4    /* at most: a longer log is cut, its last lines unread */
#define LOG_TAIL      3    /* lines quoted in an error */
#define VMID_MIN      100
#define VMID_MAX      999999999

static void sleep_ms(unsigned ms)
{
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* A failed task's errno, from the words PVE uses (notes §2, §6). */
static int task_errno(const char *exitstatus)
{
        if (strstr(exitstatus, "already exists"))
                return -EEXIST;
        if (strstr(exitstatus, "does not exist") || strstr(exitstatus, "can't find file"))
                return -ENOENT;
        if (strstr(exitstatus, "is locked") || strstr(exitstatus, "can't lock file"))
                return -EBUSY;
        return -EIO;
}

/* Appends @s to @out (size @size) as one line: control characters become spaces. */
static void put_line(char *out, size_t size, const char *s, size_t max)
{
        size_t at = strlen(out);

        for (size_t i = 0; s[i] && i < max && at + 1 < size; i++)
                out[at++] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? ' ' : s[i];
        out[at] = 0;
}

/*
 * The last lines of a task's log before its "TASK ..." line, " | "-separated into @out
 * (empty when the log cannot be read: the exit status says the most already).
 */
static void task_log_tail(struct pve_client *c, const char *node, const char *esc, char *out,
                          size_t size)
{
        json_object *lines[LOG_TAIL] = {NULL};
        json_object *pages[LOG_PAGES] = {NULL};
        size_t n_lines = 0, start = 0;

        out[0] = 0;
        for (size_t page = 0; page < LOG_PAGES; page++) {
                struct pve_reply rep = {0};
                char s_start[24], s_limit[24];
                size_t len;

                snprintf(s_start, sizeof(s_start), "%zu", start);
                snprintf(s_limit, sizeof(s_limit), "%d", LOG_PAGE);
                if (pve_callf(c, "GET",
                              (const char *const[]){"start", s_start, "limit", s_limit, NULL}, &rep,
                              NULL, "/nodes/%s/tasks/%s/log", node, esc) < 0)
                        break;
                if (!rep.data || !json_object_is_type(rep.data, json_type_array)) {
                        pve_reply_done(&rep);
                        break;
                }
                pages[page] = TAKE_PTR(rep.data);
                len = json_object_array_length(pages[page]);
                for (size_t i = 0; i < len; i++) {
                        json_object *l = json_object_array_get_idx(pages[page], i), *t = NULL;
                        const char *s;

                        if (!json_object_object_get_ex(l, "t", &t) ||
                            !json_object_is_type(t, json_type_string))
                                continue;
                        s = json_object_get_string(t);
                        s += strspn(s, " \t");
                        if (!s[0] || strncmp(s, "TASK ", 5) == 0)
                                continue;
                        if (n_lines == LOG_TAIL) {
                                memmove(lines, lines + 1, sizeof(lines[0]) * (LOG_TAIL - 1));
                                n_lines--;
                        }
                        lines[n_lines++] = t;
                }
                if (len < LOG_PAGE)
                        break;
                start += len;
        }
        for (size_t i = 0; i < n_lines; i++) {
                if (i)
                        put_line(out, size, " | ", 3);
                const char *s = json_object_get_string(lines[i]);

                put_line(out, size, s + strspn(s, " \t"), 120);
        }
        for (size_t i = 0; i < LOG_PAGES; i++)
                json_object_put(pages[i]);
}

static unsigned clamp_ms(unsigned long long ms)
{
        return ms < POLL_FIRST_MS ? POLL_FIRST_MS : ms > POLL_MAX_MS ? POLL_MAX_MS : (unsigned)ms;
}

/*
 * The first look at the next task of @type, from this one that ended OK: a task that had
 * ended by the first look (@first ms) moves it 1/8 earlier, as tasks may have got quicker;
 * one that took more looks moves it to when the look that saw it done was (@done_ms), so a
 * task as long is seen done at the first look. Between @POLL_FIRST_MS and POLL_MAX_MS.
 */
static void task_learn(struct pve_client *c, const char *type, unsigned first, unsigned looks,
                       unsigned long long done_ms)
{
        pve_task_hint_set(c, type, clamp_ms(looks == 1 ? first - first / 8 : done_ms));
}

int pve_task_wait(struct pve_client *c, const char *upid, unsigned timeout_ms, struct sh_error *err)
{
        _cleanup_free_ char *esc = NULL;
        unsigned long long t0 = sh_now_ns();
        unsigned long long deadline = t0 + (unsigned long long)timeout_ms * 1000000ULL;
        unsigned hint, first, delay, looks = 0;
        struct pve_upid u;
        char what[256];
        int r;

        if (!upid || pve_upid_parse(upid, &u) < 0)
                return sh_err(err, -EINVAL, "PVE task: '%.100s' is not a UPID", upid ? upid : "");
        /* When tasks of this type ended lately, so one look is enough without waiting long. */
        hint = pve_task_hint(c, u.type, 0);
        first = hint ? clamp_ms(hint) : POLL_FIRST_MS;
        delay = first;
        snprintf(what, sizeof(what), "task %s%s%s on %s", u.type, u.id[0] ? " " : "", u.id, u.node);
        esc = pve_escape(upid);
        if (!esc)
                return -ENOMEM;
        for (;;) {
                struct pve_reply rep = {0};
                const char *status = NULL, *exitstatus = NULL;
                unsigned long long now = sh_now_ns();
                unsigned left = now < deadline ? (unsigned)((deadline - now) / 1000000ULL) : 0;

                sleep_ms(delay < left ? delay : left);
                r = pve_callf(c, "GET", NULL, &rep, err, "/nodes/%s/tasks/%s/status", u.node, esc);
                looks++;
                if (r < 0)
                        return sh_err_prefix(err, r, "%s", what);
                if (sh_json_get_string(rep.data, "status", "PVE task status", &status, err) < 0) {
                        pve_reply_done(&rep);
                        return sh_err_prefix(err, -EPROTO, "%s", what);
                }
                if (strcmp(status, "stopped") == 0) {
                        char tail[300];

                        if (sh_json_get_string(rep.data, "exitstatus", "PVE task status",
                                               &exitstatus, NULL) < 0)
                                exitstatus = "unknown";
                        if (!pve_task_failed(exitstatus)) {
                                pve_reply_done(&rep);
                                task_learn(c, u.type, first, looks,
                                           (sh_now_ns() - t0) / 1000000ULL);
                                return 0;
                        }
                        r = task_errno(exitstatus);
                        task_log_tail(c, u.node, esc, tail, sizeof(tail));
                        sh_err(err, r, "%s failed: %s%s%s%s", what, exitstatus,
                               tail[0] ? " (log: " : "", tail, tail[0] ? ")" : "");
                        pve_reply_done(&rep);
                        return r;
                }
                pve_reply_done(&rep);
                if (sh_now_ns() >= deadline)
                        break;
                /* A type seen before was missed by a little, likely: half the first wait. */
                if (looks == 1 && hint)
                        delay = first / 2 < POLL_AGAIN_MS ? POLL_AGAIN_MS : first / 2;
                else
                        delay = delay * 2 > POLL_MAX_MS ? POLL_MAX_MS : delay * 2;
        }
        /* Still running: stop it, so it does not go on doing what the caller gave up on. */
        {
                struct sh_error e = {0};

                r = pve_callf(c, "DELETE", NULL, NULL, &e, "/nodes/%s/tasks/%s", u.node, esc);
                return sh_err(err, -ETIMEDOUT, "%s still running after %u ms: %s%s", what,
                              timeout_ms, r < 0 ? "stopping it failed: " : "stopped it",
                              r < 0 ? e.msg : "");
        }
}

static bool in_list(const char *const *list, const char *s)
{
        for (; *list; list++)
                if (strcmp(*list, s) == 0)
                        return true;
        return false;
}

int pve_node_pick(struct pve_client *c, const char *const *allowed, char **ret_node,
                  struct sh_error *err)
{
        struct pve_reply rep = {0};
        const char *best = NULL;
        int64_t best_free = -1;
        char why[300] = "";
        size_t len, seen = 0;
        int r;

        r = pve_call(c, "GET", "/cluster/resources", (const char *const[]){"type", "node", NULL},
                     &rep, err);
        if (r < 0)
                return r;
        if (!rep.data || !json_object_is_type(rep.data, json_type_array)) {
                pve_reply_done(&rep);
                return sh_err(err, -EPROTO, "GET /cluster/resources: not a list");
        }
        len = json_object_array_length(rep.data);
        for (size_t i = 0; i < len; i++) {
                json_object *o = json_object_array_get_idx(rep.data, i), *v;
                const char *node = NULL, *status = NULL, *type = NULL;
                int64_t maxmem = 0, mem = 0, free_mem;
                size_t at = strlen(why);

                if (sh_json_get_string(o, "type", "node", &type, NULL) == 0 &&
                    strcmp(type, "node") != 0)
                        continue;
                if (sh_json_get_string(o, "node", "node", &node, NULL) < 0)
                        continue;
                if (allowed && !in_list(allowed, node))
                        continue;
                seen++;
                if (sh_json_get_string(o, "status", "node", &status, NULL) < 0)
                        status = "unknown";
                if (strcmp(status, "online") != 0) {
                        snprintf(why + at, sizeof(why) - at, "%s'%s' is %s", at ? ", " : "", node,
                                 status);
                        continue;
                }
                if (!pve_node_available(c, node)) {
                        snprintf(why + at, sizeof(why) - at, "%s'%s' is unreachable",
                                 at ? ", " : "", node);
                        continue;
                }
                if (json_object_object_get_ex(o, "maxmem", &v))
                        pve_json_int(v, &maxmem);
                if (json_object_object_get_ex(o, "mem", &v))
                        pve_json_int(v, &mem);
                free_mem = maxmem > mem ? maxmem - mem : 0;
                if (free_mem > best_free || (free_mem == best_free && strcmp(node, best) < 0)) {
                        best = node;
                        best_free = free_mem;
                }
        }
        if (!best) {
                r = sh_err(err, -EHOSTUNREACH, "no Proxmox VE node to run a pod on: %s",
                           seen      ? why
                           : allowed ? "none of the allowed nodes is in the cluster"
                                     : "the cluster lists no node");
                pve_reply_done(&rep);
                return r;
        }
        *ret_node = strdup(best);
        pve_reply_done(&rep);
        if (!*ret_node)
                return -ENOMEM;
        sh_log_debug("pve: picked node=%s free_mem=%lld", *ret_node, (long long)best_free);
        return 0;
}

int pve_nextid(struct pve_client *c, uint32_t *ret_vmid, struct sh_error *err)
{
        struct pve_reply rep = {0};
        int64_t id = 0;
        int r;

        r = pve_call(c, "GET", "/cluster/nextid", NULL, &rep, err);
        if (r < 0)
                return r;
        r = rep.data ? pve_json_int(rep.data, &id) : -EINVAL;
        pve_reply_done(&rep);
        if (r < 0 || id < VMID_MIN || id > VMID_MAX)
                return sh_err(err, -EPROTO, "GET /cluster/nextid: not a vmid");
        *ret_vmid = (uint32_t)id;
        return 0;
}

int pve_create_with_nextid(struct pve_client *c, unsigned attempts, pve_create_fn create,
                           void *userdata, uint32_t *ret_vmid, struct sh_error *err)
{
        struct sh_error e = {0};
        uint32_t vmid = 0;
        int r = -EEXIST;

        if (!attempts)
                attempts = 5;
        for (unsigned i = 0; i < attempts; i++) {
                sh_err_clear(&e);
                r = pve_nextid(c, &vmid, err);
                if (r < 0)
                        return r;
                r = create(c, vmid, userdata, &e);
                if (r >= 0) {
                        *ret_vmid = vmid;
                        return 0;
                }
                /* nextid is racy; the create's own check is authoritative (notes §2). */
                if (r != -EEXIST && !(r == -EIO && strstr(e.msg, "already exists"))) {
                        if (err)
                                *err = e;
                        return r;
                }
                sh_log_debug("pve: vmid=%u taken meanwhile, another one", vmid);
        }
        return sh_err(err, -EEXIST, "no free vmid in %u attempts: %s", attempts, e.msg);
}
