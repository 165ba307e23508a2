/*
 * Unit tests of backends/agentpod (the agent pod layer) with a fake pod host: its box is a
 * flag, its channel a socketpair to a fake agent thread that answers with proto.c. They
 * check the host ops contract (what the layer asks of a host and when), the CRI log and
 * exit files written from the agent's events, and that a pod left on disk by a runtd of
 * the previous build (microvm's layout) is recovered.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "agentpod.h"
#include "cleanup.h"
#include "fswalk.h"
#include "strutil.h"

#define POD "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define CTR "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

/* ---- the fake agent ---- */

struct fake {
        int fd;
        pthread_t thread;
        pthread_mutex_t lock; /* the fields below, and writes to fd */
        pthread_cond_t changed;
        int hellos, shutdowns;
        int64_t acked; /* the highest LOG_ACK seq */
        struct ag_ctr_spec spec;
        bool has_spec;
};

static void fsend(struct fake *f, uint8_t kind, uint16_t op, uint32_t id, const struct ag_buf *a)
{
        struct ag_buf b;

        ag_buf_init(&b);
        ag_frame_begin(&b, kind, op, 0, id);
        if (a)
                ag_put_raw(&b, a->data, a->len);
        assert_int_equal(ag_frame_end(&b), 0);
        pthread_mutex_lock(&f->lock);
        for (size_t off = 0; off < b.len;) {
                ssize_t n = write(f->fd, b.data + off, b.len - off);

                if (n <= 0)
                        break;
                off += (size_t)n;
        }
        pthread_mutex_unlock(&f->lock);
        ag_buf_done(&b);
}

static void fake_req(struct fake *f, const struct ag_hdr *h, const uint8_t *p)
{
        struct ag_buf b;
        int64_t seq;

        ag_buf_init(&b);
        switch (h->op) {
        case AG_OP_LOG_ACK:
                if (ag_find_i64(p, h->len, AG_A_SEQ, &seq) == 0) {
                        pthread_mutex_lock(&f->lock);
                        if (seq > f->acked)
                                f->acked = seq;
                        pthread_cond_broadcast(&f->changed);
                        pthread_mutex_unlock(&f->lock);
                }
                ag_buf_done(&b);
                return; /* never answered */
        case AG_OP_HELLO:
                pthread_mutex_lock(&f->lock);
                f->hellos++;
                pthread_mutex_unlock(&f->lock);
                ag_put_u64(&b, AG_A_VERSION, AG_VERSION);
                break;
        case AG_OP_CTR_CREATE:
                pthread_mutex_lock(&f->lock);
                if (f->has_spec)
                        ag_ctr_spec_done(&f->spec);
                f->has_spec = ag_ctr_spec_decode(p, h->len, &f->spec) == 0;
                pthread_mutex_unlock(&f->lock);
                break;
        case AG_OP_CTR_STATUS: {
                struct ag_status st = {.state = AG_ST_RUNNING, .started_ns = 1000};

                snprintf(st.id, sizeof(st.id), "%s", CTR);
                ag_status_put(&b, &st);
                break;
        }
        case AG_OP_SHUTDOWN:
                pthread_mutex_lock(&f->lock);
                f->shutdowns++;
                pthread_mutex_unlock(&f->lock);
                break;
        default:
                break; /* CTR_START, CTR_REMOVE, CTR_LIST...: done, nothing to say */
        }
        fsend(f, AG_K_RESP, h->op, h->id, &b);
        ag_buf_done(&b);
}

static void fake_log(struct fake *f, int64_t seq, const char *text);

/* The fake resends this log chunk on connecting, as runt-agent resends what was not acked. */
static int64_t resend_seq;

static void *fake_main(void *arg)
{
        struct fake *f = arg;
        struct ag_reader r;
        struct ag_hdr h;
        const uint8_t *p;
        uint8_t buf[16384];
        ssize_t n;
        struct ag_buf b;

        /* As runt-agent does on every connection: READY at once. */
        ag_buf_init(&b);
        ag_put_u64(&b, AG_A_VERSION, AG_VERSION);
        ag_put_str(&b, AG_A_BOOT_ID, "boot-1");
        fsend(f, AG_K_EVENT, AG_EV_READY, 0, &b);
        ag_buf_done(&b);
        if (resend_seq)
                fake_log(f, resend_seq, "kept while runtd was down\n");
        ag_reader_init(&r);
        while ((n = read(f->fd, buf, sizeof(buf))) > 0) {
                if (ag_reader_feed(&r, buf, (size_t)n) < 0)
                        break;
                while (ag_reader_next(&r, &h, &p) == 1)
                        if (h.kind == AG_K_REQ)
                                fake_req(f, &h, p);
        }
        ag_reader_done(&r);
        return NULL;
}

static void fake_log(struct fake *f, int64_t seq, const char *text)
{
        struct ag_buf b;

        ag_buf_init(&b);
        ag_put_str(&b, AG_A_ID, CTR);
        ag_put_u64(&b, AG_A_SEQ, seq);
        ag_put_u64(&b, AG_A_CHAN, AG_CHAN_STDOUT);
        ag_put_bytes(&b, AG_A_DATA, text, strlen(text));
        fsend(f, AG_K_EVENT, AG_EV_LOG, 0, &b);
        ag_buf_done(&b);
}

static void fake_exit(struct fake *f, int64_t code)
{
        struct ag_status st = {
                .state = AG_ST_EXITED, .exit_code = code, .started_ns = 1000, .finished_ns = 2000};
        struct ag_buf b;

        snprintf(st.id, sizeof(st.id), "%s", CTR);
        ag_buf_init(&b);
        ag_status_put(&b, &st);
        fsend(f, AG_K_EVENT, AG_EV_EXIT, 0, &b);
        ag_buf_done(&b);
}

/* ---- the fake host ---- */

struct tpod {
        struct ap_pod ap;
        struct fake *agent;
};

/* What the layer asked of the host; one test at a time. */
static struct {
        bool alive;
        int reopen_r;
        int teardown_r;
        int connects, reopens, stops, teardowns, prepares, releases, inits, dones;
        char released[65];
} host;

static int t_pod_init(struct ap_pod *p)
{
        (void)p;
        host.inits++;
        return 0;
}

static void t_pod_done(struct ap_pod *ap)
{
        struct fake *f = ((struct tpod *)ap)->agent;

        host.dones++;
        if (!f)
                return;
        /* The layer freed the client (our fd's peer) before: the fake reads EOF. */
        pthread_join(f->thread, NULL);
        close(f->fd);
        if (f->has_spec)
                ag_ctr_spec_done(&f->spec);
        pthread_mutex_destroy(&f->lock);
        pthread_cond_destroy(&f->changed);
        free(f);
}

static bool t_alive(struct ap_pod *p)
{
        (void)p;
        return host.alive;
}

static int t_connect(struct ap_pod *ap, unsigned timeout_ms, const struct ag_client_ops *cbs,
                     void *cb_data, struct ag_client **ret, struct sh_error *err)
{
        struct tpod *p = (struct tpod *)ap;
        struct fake *f;
        int sv[2];

        (void)timeout_ms;
        host.connects++;
        assert_null(p->agent); /* one connection per test pod */
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        f = calloc(1, sizeof(*f));
        assert_non_null(f);
        f->fd = sv[1];
        pthread_mutex_init(&f->lock, NULL);
        pthread_cond_init(&f->changed, NULL);
        assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
        p->agent = f;
        return ag_client_new(sv[0], cbs, cb_data, ret, err);
}

static int t_reopen(struct ap_pod *p, struct sh_error *err)
{
        (void)p;
        (void)err;
        host.reopens++;
        return host.reopen_r;
}

static int t_stop(struct ap_pod *p, struct sh_error *err)
{
        (void)p;
        (void)err;
        host.stops++;
        host.alive = false;
        return 0;
}

static int t_teardown(struct ap_pod *p, struct sh_error *err)
{
        (void)p;
        host.teardowns++;
        if (host.teardown_r < 0 && host.teardown_r != -EBUSY)
                return sh_err(err, host.teardown_r, "the box's host is away");
        return host.teardown_r;
}

static int t_prepare(struct ap_pod *p, const struct be_container *bc, struct ap_ctr_paths *ret,
                     struct sh_error *err)
{
        (void)p;
        (void)err;
        host.prepares++;
        ret->lower = calloc(3, sizeof(char *));
        ret->mount_src = calloc(bc->spec->n_mounts + 1, sizeof(char *));
        assert_non_null(ret->lower);
        assert_non_null(ret->mount_src);
        for (size_t i = 0; bc->spec->layer_dirs[i]; i++)
                ret->lower[i] = sh_strdup_printf("/box/%s/l%zu", bc->id, i);
        for (size_t i = 0; i < bc->spec->n_mounts; i++)
                ret->mount_src[i] = sh_strdup_printf("/box/%s/m%zu", bc->id, i);
        ret->pod_files = strdup("/box/pod");
        return 0;
}

static void t_release(struct ap_pod *p, const char *id)
{
        (void)p;
        host.releases++;
        snprintf(host.released, sizeof(host.released), "%s", id);
}

static const struct ap_host_ops t_host = {
        .name = "testbe",
        .box = "box",
        .box_exited = "the box exited",
        .pod_size = sizeof(struct tpod),
        .pod_init = t_pod_init,
        .pod_done = t_pod_done,
        .alive = t_alive,
        .connect = t_connect,
        .reopen = t_reopen,
        .stop = t_stop,
        .teardown = t_teardown,
        .prepare_container = t_prepare,
        .release_container = t_release,
};

/* ---- fixtures ---- */

struct env {
        char dir[64];
        struct ap_be ab;
        struct be be;
};

static int setup(void **state)
{
        struct env *e = calloc(1, sizeof(*e));
        _cleanup_free_ char *sd = NULL;

        assert_non_null(e);
        snprintf(e->dir, sizeof(e->dir), "/tmp/test-agentpod-XXXXXX");
        assert_non_null(mkdtemp(e->dir));
        sd = sh_path_join(e->dir, "state");
        memset(&host, 0, sizeof(host));
        resend_seq = 0;
        assert_int_equal(ap_be_init(&e->ab, &t_host, sd), 0);
        assert_int_equal(ap_be_mkdir(&e->ab), 0);
        e->be.priv = &e->ab;
        *state = e;
        return 0;
}

static int teardown(void **state)
{
        struct env *e = *state;

        ap_be_fini(&e->ab);
        sh_rm_rf(e->dir);
        free(e);
        return 0;
}

static void write_file(const char *dir, const char *rel, const char *text)
{
        _cleanup_free_ char *path = sh_path_join(dir, rel);

        assert_int_equal(sh_write_file_replace(path, text, strlen(text), 0600), 0);
}

static char *read_text(const char *path)
{
        char *buf = NULL;

        if (sh_read_file(path, 1 << 20, &buf, NULL) < 0)
                return NULL;
        return buf;
}

/* ---- tests ---- */

/*
 * The files a runtd of the previous build (microvm's own pods) left: the layer finds the pod
 * from the ctr/ symlink, loads meta/started/exit, and keeps statuses when the box is gone.
 */
static void test_recover_previous_layout(void **state)
{
        struct env *e = *state;
        char poddir[PATH_MAX], cdir[PATH_MAX], link[PATH_MAX];
        struct be_ctr_status st;
        struct sh_error err = {0};
        bool running = true;
        const char *ran = "1111111111111111111111111111111111111111111111111111111111111111";

        snprintf(poddir, sizeof(poddir), "%s/%.20s", e->ab.dir, POD);
        snprintf(cdir, sizeof(cdir), "%s/c/%s", poddir, CTR);
        assert_int_equal(sh_mkdir_p(cdir, 0700), 0);
        write_file(cdir, "meta", "0 0 0\n/nonexistent/log\n");
        write_file(cdir, "started", "100\n");
        write_file(cdir, "exit", "3 100 200 0 Error\nit failed\n");
        snprintf(link, sizeof(link), "%s/ctr/%s", e->ab.dir, CTR);
        assert_int_equal(symlink(POD, link), 0);
        /* Started, no exit recorded: it ran in a box that is gone. */
        snprintf(cdir, sizeof(cdir), "%s/c/%s", poddir, ran);
        assert_int_equal(sh_mkdir_p(cdir, 0700), 0);
        write_file(cdir, "meta", "0 0 0\n\n");
        write_file(cdir, "started", "100\n");
        snprintf(link, sizeof(link), "%s/ctr/%s", e->ab.dir, ran);
        assert_int_equal(symlink(POD, link), 0);

        host.reopen_r = -ESRCH;
        assert_int_equal(ap_container_status(&e->be, CTR, &st, &err), 0);
        assert_int_equal(host.reopens, 1);
        assert_int_equal(host.connects, 0);
        assert_int_equal(st.state, BE_CTR_EXITED);
        assert_int_equal(st.exit_code, 3);
        assert_int_equal(st.started_ns, 100);
        assert_int_equal(st.finished_ns, 200);
        assert_string_equal(st.reason, "Error");
        assert_string_equal(st.message, "it failed");

        assert_int_equal(ap_container_status(&e->be, ran, &st, &err), 0);
        assert_int_equal(host.reopens, 1); /* the pod is in the table now */
        assert_int_equal(st.state, BE_CTR_EXITED);
        assert_int_equal(st.exit_code, 255);
        assert_string_equal(st.message, "the pod's box ended while runtd was down");
        assert_int_equal(ap_sandbox_running(&e->be, POD, &running, &err), 0);
        assert_false(running);
        /* Its agent is not asked: the pod's box is not running (FAILED_PRECONDITION). */
        assert_int_equal(ap_container_update(&e->be, CTR, &(struct be_resources){0}, &err), -EBUSY);
        assert_string_equal(err.msg, "the pod's box is not running");

        /* An id runtd never recorded. */
        assert_int_equal(ap_container_status(&e->be, "22", &st, &err), -ENOENT);
        assert_string_equal(err.msg, "testbe: no container 22");
}

static void test_stopped_pod_not_reopened(void **state)
{
        struct env *e = *state;
        char poddir[PATH_MAX];
        struct sh_error err = {0};
        bool running = true;

        snprintf(poddir, sizeof(poddir), "%s/%.20s/c", e->ab.dir, POD);
        assert_int_equal(sh_mkdir_p(poddir, 0700), 0);
        snprintf(poddir, sizeof(poddir), "%s/%.20s", e->ab.dir, POD);
        write_file(poddir, "stopped", "");
        host.alive = true;
        assert_int_equal(ap_sandbox_running(&e->be, POD, &running, &err), 0);
        assert_false(running);
        assert_int_equal(host.reopens, 0);
        assert_int_equal(host.connects, 0);
}

/*
 * A teardown that cannot be done now (the box's remote host away) fails RemovePodSandbox with
 * its error and keeps the pod (table, dir) for the retry; -EBUSY (something must not be
 * removed) keeps the dir but the remove succeeds, as before.
 */
static void test_remove_retried_when_teardown_fails(void **state)
{
        struct env *e = *state;
        char poddir[PATH_MAX];
        struct sh_error err = {0};
        bool running = true;

        snprintf(poddir, sizeof(poddir), "%s/%.20s/c", e->ab.dir, POD);
        assert_int_equal(sh_mkdir_p(poddir, 0700), 0);
        snprintf(poddir, sizeof(poddir), "%s/%.20s", e->ab.dir, POD);
        write_file(poddir, "stopped", "");
        host.teardown_r = -EHOSTUNREACH;
        assert_int_equal(ap_sandbox_remove(&e->be, POD, &err), -EHOSTUNREACH);
        assert_string_equal(err.msg, "the box's host is away");
        assert_int_equal(host.teardowns, 1);
        assert_int_equal(access(poddir, F_OK), 0);
        assert_int_equal(e->ab.n_pods, 1);
        assert_int_equal(ap_sandbox_running(&e->be, POD, &running, &err), 0);
        assert_false(running);
        /* The host is back. */
        host.teardown_r = 0;
        assert_int_equal(ap_sandbox_remove(&e->be, POD, &err), 0);
        assert_int_equal(host.teardowns, 2);
        assert_int_equal(access(poddir, F_OK), -1);
        assert_int_equal(e->ab.n_pods, 0);
        assert_int_equal(ap_sandbox_running(&e->be, POD, &running, &err), -ENOENT);

        /* -EBUSY: the pod goes, its dir stays. */
        snprintf(poddir, sizeof(poddir), "%s/%.20s/c", e->ab.dir, POD);
        assert_int_equal(sh_mkdir_p(poddir, 0700), 0);
        snprintf(poddir, sizeof(poddir), "%s/%.20s", e->ab.dir, POD);
        write_file(poddir, "stopped", "");
        host.teardown_r = -EBUSY;
        assert_int_equal(ap_sandbox_remove(&e->be, POD, &err), 0);
        assert_int_equal(host.teardowns, 3);
        assert_int_equal(access(poddir, F_OK), 0);
        assert_int_equal(e->ab.n_pods, 0);
}

static void wait_acked(struct fake *f, int64_t seq)
{
        struct timespec until;

        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 10;
        pthread_mutex_lock(&f->lock);
        while (f->acked < seq && pthread_cond_timedwait(&f->changed, &f->lock, &until) == 0)
                ;
        assert_true(f->acked >= seq);
        pthread_mutex_unlock(&f->lock);
}

/* A pod made as a host's sandbox_create does, and a container's life through the layer. */
static void test_container_life(void **state)
{
        struct env *e = *state;
        struct sh_error err = {0};
        struct ap_pod *p = ap_pod_new(&e->ab, POD);
        struct fake *f;
        char logpath[PATH_MAX], own[PATH_MAX], link[PATH_MAX], seqfile[PATH_MAX];
        char *layers[] = {"/layers/a", "/layers/b", NULL};
        char *argv[] = {"/bin/true", NULL}, *none[] = {NULL};
        struct be_mount m = {.container_path = "/data", .host_path = e->dir, .readonly = true};
        struct be_container_spec s = {
                .name = "c",
                .layer_dirs = layers,
                .argv = argv,
                .cwd = "/",
                .log_path = logpath,
                .mounts = &m,
                .n_mounts = 1,
                .seccomp = BE_SECCOMP_UNCONFINED,
                .seccomp_profile = "",
                .env = none,
                .cap_add = none,
                .cap_drop = none,
                .masked_paths = none,
                .readonly_paths = none,
        };
        struct be_sandbox_spec sb = {.name = "pod"};
        struct be_container bc = {.id = CTR, .sandbox_id = POD, .sandbox = &sb, .spec = &s};
        struct be_ctr_status st;
        _cleanup_free_ char *log = NULL;
        int64_t seq = 0;
        FILE *sf;

        snprintf(logpath, sizeof(logpath), "%s/logs/c.log", e->dir);
        assert_non_null(p);
        assert_int_equal(host.inits, 1);
        host.alive = true;
        assert_int_equal(ap_pod_mkdir(p, &err), 0);
        assert_int_equal(ap_pod_connect(p, 5000, &err), 0);
        assert_int_equal(ap_pod_add(&e->ab, p), 0);
        f = ((struct tpod *)p)->agent;
        assert_int_equal(f->hellos, 1);

        assert_int_equal(ap_container_create(&e->be, &bc, &err), 0);
        assert_int_equal(host.prepares, 1);
        assert_true(f->has_spec);
        assert_string_equal(f->spec.lower[0], "/box/" CTR "/l0");
        assert_string_equal(f->spec.lower[1], "/box/" CTR "/l1");
        assert_null(f->spec.lower[2]);
        assert_int_equal(f->spec.n_mounts, 4); /* /data and the pod's three files */
        assert_string_equal(f->spec.mounts[0].src, "/box/" CTR "/m0");
        assert_string_equal(f->spec.mounts[0].dst, "/data");
        assert_true(f->spec.mounts[0].ro);
        assert_string_equal(f->spec.mounts[1].src, "/box/pod/hosts");
        assert_string_equal(f->spec.mounts[1].dst, "/etc/hosts");
        assert_string_equal(f->spec.mounts[3].src, "/box/pod/resolv.conf");
        /* A second create of the same id touches nothing. */
        assert_int_equal(ap_container_create(&e->be, &bc, &err), -EEXIST);
        assert_string_equal(err.msg, "testbe: container fedcba987654 exists");
        assert_int_equal(host.releases, 0);
        snprintf(own, sizeof(own), "%s/%.20s/c/%s/meta", e->ab.dir, POD, CTR);
        assert_int_equal(access(own, F_OK), 0);
        snprintf(link, sizeof(link), "%s/ctr/%s", e->ab.dir, CTR);
        assert_int_equal(faccessat(AT_FDCWD, link, F_OK, AT_SYMLINK_NOFOLLOW), 0);

        assert_int_equal(ap_container_start(&e->be, CTR, &err), 0);
        assert_int_equal(ap_container_status(&e->be, CTR, &st, &err), 0);
        assert_int_equal(st.state, BE_CTR_RUNNING);

        fake_log(f, 1, "hello\nwor");
        fake_log(f, 2, "ld\n");
        fake_log(f, 2, "again\n"); /* a resent chunk: not written twice, acked */
        wait_acked(f, 2);
        log = read_text(logpath);
        assert_non_null(log);
        assert_non_null(strstr(log, " stdout F hello\n"));
        assert_non_null(strstr(log, " stdout P wor\n"));
        assert_non_null(strstr(log, " stdout F ld\n"));
        assert_null(strstr(log, "again"));
        snprintf(seqfile, sizeof(seqfile), "%s/%.20s/c/%s/logseq", e->ab.dir, POD, CTR);
        sf = fopen(seqfile, "re");
        assert_non_null(sf);
        assert_int_equal(fread(&seq, sizeof(seq), 1, sf), 1);
        fclose(sf);
        assert_int_equal(seq, 2);

        fake_exit(f, 7);
        for (int i = 0; i < 500; i++) {
                assert_int_equal(ap_container_status(&e->be, CTR, &st, &err), 0);
                if (st.state == BE_CTR_EXITED)
                        break;
                usleep(10 * 1000);
        }
        assert_int_equal(st.state, BE_CTR_EXITED);
        assert_int_equal(st.exit_code, 7);
        assert_string_equal(st.reason, "Error");
        snprintf(own, sizeof(own), "%s/%.20s/c/%s/exit", e->ab.dir, POD, CTR);
        assert_int_equal(access(own, F_OK), 0);

        assert_int_equal(ap_container_remove(&e->be, CTR, &err), 0);
        assert_int_equal(host.releases, 1);
        assert_string_equal(host.released, CTR);
        snprintf(own, sizeof(own), "%s/%.20s/c/%s", e->ab.dir, POD, CTR);
        assert_int_equal(access(own, F_OK), -1);
        assert_int_equal(faccessat(AT_FDCWD, link, F_OK, AT_SYMLINK_NOFOLLOW), -1);
        assert_int_equal(ap_container_status(&e->be, CTR, &st, &err), -ENOENT);

        assert_int_equal(ap_sandbox_stop(&e->be, POD, 0, &err), 0);
        assert_int_equal(f->shutdowns, 1);
        assert_int_equal(host.stops, 1);
        snprintf(own, sizeof(own), "%s/%.20s/stopped", e->ab.dir, POD);
        assert_int_equal(access(own, F_OK), 0);
        assert_int_equal(ap_sandbox_remove(&e->be, POD, &err), 0);
        assert_int_equal(host.teardowns, 1);
        snprintf(own, sizeof(own), "%s/%.20s", e->ab.dir, POD);
        assert_int_equal(access(own, F_OK), -1);
        assert_int_equal(host.dones, 1); /* freed: the table's reference was the last */
}

/* A failed prepare_container undoes through release_container; nothing is recorded. */
static int t_prepare_fail(struct ap_pod *p, const struct be_container *bc, struct ap_ctr_paths *ret,
                          struct sh_error *err)
{
        (void)p;
        (void)bc;
        (void)ret;
        host.prepares++;
        return sh_err(err, -EPERM, "mounts are not carried");
}

static void test_prepare_failure_undone(void **state)
{
        struct env *e = *state;
        struct ap_host_ops ops = t_host;
        struct sh_error err = {0};
        struct ap_pod *p;
        char *none[] = {NULL};
        char *argv[] = {"/bin/true", NULL};
        struct be_container_spec s = {.name = "c",
                                      .layer_dirs = none,
                                      .argv = argv,
                                      .env = none,
                                      .cwd = "/",
                                      .log_path = "",
                                      .cap_add = none,
                                      .cap_drop = none,
                                      .masked_paths = none,
                                      .readonly_paths = none,
                                      .seccomp_profile = ""};
        struct be_sandbox_spec sb = {.name = "pod"};
        struct be_container bc = {.id = CTR, .sandbox_id = POD, .sandbox = &sb, .spec = &s};
        char own[PATH_MAX];

        ops.prepare_container = t_prepare_fail;
        e->ab.host = &ops;
        p = ap_pod_new(&e->ab, POD);
        assert_non_null(p);
        host.alive = true;
        assert_int_equal(ap_pod_mkdir(p, &err), 0);
        assert_int_equal(ap_pod_connect(p, 5000, &err), 0);
        assert_int_equal(ap_pod_add(&e->ab, p), 0);
        assert_int_equal(ap_container_create(&e->be, &bc, &err), -EPERM);
        assert_string_equal(err.msg, "mounts are not carried");
        assert_int_equal(host.releases, 1);
        assert_false(((struct tpod *)p)->agent->has_spec);
        snprintf(own, sizeof(own), "%s/%.20s/c/%s", e->ab.dir, POD, CTR);
        assert_int_equal(access(own, F_OK), -1);
        snprintf(own, sizeof(own), "%s/ctr/%s", e->ab.dir, CTR);
        assert_int_equal(faccessat(AT_FDCWD, own, F_OK, AT_SYMLINK_NOFOLLOW), -1);
        ap_be_fini(&e->ab); /* before ops goes out of scope */
}

/*
 * A pod whose box ran on while runtd was down: re-opened, connected, and the log chunk the
 * agent resends at once is written and acknowledged on the new connection (its events wait
 * until the layer has taken the client).
 */
static void test_reopen_running_box(void **state)
{
        struct env *e = *state;
        char cdir[PATH_MAX], link[PATH_MAX], logpath[PATH_MAX];
        _cleanup_free_ char *meta = NULL, *log = NULL;
        struct be_ctr_status st;
        struct sh_error err = {0};
        struct ap_pod *p = NULL;
        bool running = false;

        snprintf(logpath, sizeof(logpath), "%s/c.log", e->dir);
        snprintf(cdir, sizeof(cdir), "%s/%.20s/c/%s", e->ab.dir, POD, CTR);
        assert_int_equal(sh_mkdir_p(cdir, 0700), 0);
        meta = sh_strdup_printf("0 0 0\n%s\n", logpath);
        write_file(cdir, "meta", meta);
        write_file(cdir, "started", "100\n");
        snprintf(link, sizeof(link), "%s/ctr/%s", e->ab.dir, CTR);
        assert_int_equal(symlink(POD, link), 0);
        host.alive = true;
        resend_seq = 5;

        assert_int_equal(ap_container_status(&e->be, CTR, &st, &err), 0);
        assert_int_equal(host.reopens, 1);
        assert_int_equal(host.connects, 1);
        assert_int_equal(st.state, BE_CTR_RUNNING);
        assert_int_equal(ap_pod_get(&e->ab, POD, &p, &err), 0);
        wait_acked(((struct tpod *)p)->agent, 5);
        assert_int_equal(((struct tpod *)p)->agent->hellos, 1);
        ap_pod_put(p);
        log = read_text(logpath);
        assert_non_null(log);
        assert_non_null(strstr(log, " stdout F kept while runtd was down\n"));
        assert_int_equal(ap_sandbox_running(&e->be, POD, &running, &err), 0);
        assert_true(running);
}

int main(void)
{
        const struct CMUnitTest t[] = {
                cmocka_unit_test_setup_teardown(test_recover_previous_layout, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stopped_pod_not_reopened, setup, teardown),
                cmocka_unit_test_setup_teardown(test_remove_retried_when_teardown_fails, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_container_life, setup, teardown),
                cmocka_unit_test_setup_teardown(test_prepare_failure_undone, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reopen_running_box, setup, teardown),
        };

        return cmocka_run_group_tests(t, NULL, NULL);
}
