/* common/fswalk.c: usage and removal walks at any depth, on a small stack (issue 14). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cleanup.h"
#include "fsusage.h"
#include "fswalk.h"
#include "strutil.h"
#include "test_common.h"

#define DEEP     5000
#define DEEP_DIR "aaaaaaaa" /* 9 bytes a level with its '/': 45,000 bytes at the bottom */

/* Builds DEEP levels of DEEP_DIR below @root with a file of 4 KiB at the bottom. */
static void build_deep(const char *root)
{
        int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        assert_true(fd >= 0);
        for (int i = 0; i < DEEP; i++) {
                int next;

                assert_int_equal(mkdirat(fd, DEEP_DIR, 0755), 0);
                next = openat(fd, DEEP_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                assert_true(next >= 0);
                close(fd);
                fd = next;
        }
        {
                char buf[4096];
                int f = openat(fd, "bottom", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);

                assert_true(f >= 0);
                memset(buf, 'x', sizeof(buf));
                assert_int_equal(write(f, buf, sizeof(buf)), (ssize_t)sizeof(buf));
                close(f);
        }
        close(fd);
}

/* A job run on a thread with a 256 KiB stack, as runtd's handler threads have. */
struct job {
        const char *path;
        bool remove;
        int r;
        struct sh_walk_usage u;
        struct sh_fs_usage fs;
};

static void *job_main(void *data)
{
        struct job *j = data;

        if (j->remove)
                j->r = sh_rm_rf(j->path);
        else
                j->r = sh_fs_usage_scan(j->path, &j->fs, NULL);
        return NULL;
}

static void run_small_stack(struct job *j)
{
        pthread_attr_t attr;
        pthread_t t;

        assert_int_equal(pthread_attr_init(&attr), 0);
        assert_int_equal(pthread_attr_setstacksize(&attr, 256 << 10), 0);
        assert_int_equal(pthread_create(&t, &attr, job_main, j), 0);
        assert_int_equal(pthread_join(t, NULL), 0);
        pthread_attr_destroy(&attr);
}

static void test_deep_tree_usage_and_removal(void **state)
{
        char *dir = test_tmpdir_new();
        char *root = sh_path_join(dir, "deep");
        int fds = test_count_fds();
        struct job j = {.path = root};
        struct stat st;

        (void)state;
        assert_non_null(root);
        assert_int_equal(mkdir(root, 0755), 0);
        build_deep(root);
        run_small_stack(&j);
        assert_int_equal(j.r, 0);
        /* the root, DEEP directories and the file */
        assert_int_equal(j.fs.inodes_used, DEEP + 2);
        assert_true(j.fs.used_bytes >= (uint64_t)(DEEP + 2) * 512);
        assert_int_equal(test_count_fds(), fds);

        j = (struct job){.path = root, .remove = true};
        run_small_stack(&j);
        assert_int_equal(j.r, 0);
        assert_int_equal(lstat(root, &st), -1);
        assert_int_equal(errno, ENOENT);
        assert_int_equal(test_count_fds(), fds);
        free(root);
        test_tmpdir_remove(dir);
}

/* Every entry of a small known tree, each counted once: the figures must be exact. */
static void test_usage_exact(void **state)
{
        char *dir = test_tmpdir_new();
        char *root = sh_path_join(dir, "t"), *out = sh_path_join(dir, "outside");
        _cleanup_close_ int fd = -EBADF;
        struct sh_walk_usage u = {0};
        const char *const names[] = {".", "a", "s", "s/c", "l", "s/fifo"};
        uint64_t bytes = 0;
        char buf[10000];

        (void)state;
        assert_int_equal(mkdir(root, 0755), 0);
        assert_int_equal(mkdir(out, 0755), 0);
        fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(fd >= 0);
        {
                int f = openat(fd, "a", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);

                memset(buf, 'y', sizeof(buf));
                assert_int_equal(write(f, buf, sizeof(buf)), (ssize_t)sizeof(buf));
                close(f);
        }
        assert_int_equal(linkat(fd, "a", fd, "b", 0), 0); /* a hard link: counted once */
        assert_int_equal(mkdirat(fd, "s", 0755), 0);
        close(openat(fd, "s/c", O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
        assert_int_equal(mkfifoat(fd, "s/fifo", 0600), 0);
        assert_int_equal(symlinkat(out, fd, "l"), 0); /* not followed */
        {
                int f = open(out, O_RDONLY | O_DIRECTORY | O_CLOEXEC), g;

                g = openat(f, "big", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
                assert_int_equal(write(g, buf, sizeof(buf)), (ssize_t)sizeof(buf));
                close(g);
                close(f);
        }
        for (size_t i = 0; i < SH_ARRAY_SIZE(names); i++) {
                struct stat st;

                assert_int_equal(fstatat(fd, names[i], &st, AT_SYMLINK_NOFOLLOW), 0);
                bytes += (uint64_t)st.st_blocks * 512;
        }
        assert_int_equal(sh_walk_usage_at(AT_FDCWD, root, &u), 0);
        assert_int_equal(u.inodes, SH_ARRAY_SIZE(names));
        assert_int_equal(u.bytes, bytes);
        /* relative to a directory fd as well */
        assert_int_equal(sh_walk_usage_at(fd, "s", &u), 0);
        assert_int_equal(u.inodes, 3);
        assert_int_equal(sh_walk_usage_at(fd, "missing", &u), -ENOENT);
        /* nor a symlink as the root: O_NOFOLLOW with O_DIRECTORY answers ENOTDIR */
        assert_int_equal(sh_walk_usage_at(fd, "l", &u), -ENOTDIR);

        /* Removal leaves nothing and does not reach through the symlink. */
        assert_int_equal(sh_rm_rf(root), 0);
        assert_int_equal(access(root, F_OK), -1);
        {
                char *big = sh_path_join(out, "big");

                assert_int_equal(access(big, F_OK), 0);
                free(big);
        }
        assert_int_equal(sh_rm_rf(root), 0); /* gone already: fine */
        free(root);
        free(out);
        test_tmpdir_remove(dir);
}

/* A symlink given as the root is removed itself, its target kept. */
static void test_rm_rf_symlink_root(void **state)
{
        char *dir = test_tmpdir_new();
        char *target = sh_path_join(dir, "target"), *link = sh_path_join(dir, "link");
        char *inside = sh_path_join(target, "f");

        (void)state;
        assert_int_equal(mkdir(target, 0755), 0);
        close(open(inside, O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
        assert_int_equal(symlink(target, link), 0);
        assert_int_equal(sh_rm_rf(link), 0);
        assert_int_equal(access(link, F_OK), -1);
        assert_int_equal(access(inside, F_OK), 0);
        free(inside);
        free(target);
        free(link);
        test_tmpdir_remove(dir);
}

/* Many wide levels beyond the open-directory budget: every entry once, then all removed. */
static void test_wide_and_deep(void **state)
{
        char *dir = test_tmpdir_new();
        char *root = sh_path_join(dir, "w");
        int fd, levels = SH_WALK_OPEN_MAX * 3, files = 5;
        struct sh_walk_usage u = {0};

        (void)state;
        assert_int_equal(mkdir(root, 0755), 0);
        fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        for (int i = 0; i < levels; i++) {
                int next;

                /* files before and after the subdirectory in readdir's order, whatever it is */
                for (int k = 0; k < files; k++) {
                        char name[16];

                        snprintf(name, sizeof(name), "f%d", k);
                        close(openat(fd, name, O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
                }
                assert_int_equal(mkdirat(fd, "d", 0755), 0);
                assert_int_equal(mkdirat(fd, "e", 0755), 0); /* an empty sibling */
                next = openat(fd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                close(fd);
                fd = next;
        }
        close(fd);
        assert_int_equal(sh_walk_usage_at(AT_FDCWD, root, &u), 0);
        assert_int_equal(u.inodes, 1 + (uint64_t)levels * (files + 2));
        assert_int_equal(sh_rm_rf(root), 0);
        assert_int_equal(access(root, F_OK), -1);
        free(root);
        test_tmpdir_remove(dir);
}

/* What a tree walk saw. */
struct seen {
        size_t n, dirs, longest;
        char last_dir[64]; /* of the deepest: its name */
        bool order_ok;     /* each entry's parent came before it */
        char *prev_dirs;   /* the path of the last directory seen */
        int stop_at;       /* the callback fails at this entry (-1: never) */
};

static int tree_cb(void *ud, int dfd, const char *name, const char *path, const struct stat *st)
{
        struct seen *s = ud;
        const char *slash = strrchr(path, '/');
        size_t plen = slash ? (size_t)(slash - path) : 0;
        struct stat st2;

        if ((int)s->n == s->stop_at)
                return -ECANCELED;
        /* @dfd and @name name the entry, and @st is its lstat. */
        assert_int_equal(fstatat(dfd, name, &st2, AT_SYMLINK_NOFOLLOW), 0);
        assert_int_equal(st2.st_ino, st->st_ino);
        if (s->n == 0)
                assert_string_equal(path, "");
        else
                assert_string_equal(slash ? slash + 1 : path, name);
        /* Pre-order: the parent is a directory seen before (the last one, in a chain). */
        if (s->n && plen && (!s->prev_dirs || strncmp(s->prev_dirs, path, plen) != 0))
                s->order_ok = false;
        if (S_ISDIR(st->st_mode)) {
                s->dirs++;
                free(s->prev_dirs);
                s->prev_dirs = strdup(path);
                assert_non_null(s->prev_dirs);
        }
        if (strlen(path) > s->longest)
                s->longest = strlen(path);
        s->n++;
        return 0;
}

struct tree_job {
        const char *path;
        struct seen s;
        int r;
};

static void *tree_job_main(void *data)
{
        struct tree_job *j = data;

        j->r = sh_walk_tree_at(AT_FDCWD, j->path, tree_cb, &j->s);
        return NULL;
}

/* A pre-order walk of a tree deeper than PATH_MAX, on a small stack, within the fd budget. */
static void test_walk_tree_deep(void **state)
{
        char *dir = test_tmpdir_new();
        char *root = sh_path_join(dir, "deep");
        int fds = test_count_fds();
        struct tree_job j = {.path = root, .s = {.order_ok = true, .stop_at = -1}};
        pthread_attr_t attr;
        pthread_t t;

        (void)state;
        assert_int_equal(mkdir(root, 0755), 0);
        build_deep(root);
        assert_int_equal(pthread_attr_init(&attr), 0);
        assert_int_equal(pthread_attr_setstacksize(&attr, 256 << 10), 0);
        assert_int_equal(pthread_create(&t, &attr, tree_job_main, &j), 0);
        assert_int_equal(pthread_join(t, NULL), 0);
        pthread_attr_destroy(&attr);
        assert_int_equal(j.r, 0);
        assert_int_equal(j.s.n, DEEP + 2);
        assert_int_equal(j.s.dirs, DEEP + 1);
        assert_true(j.s.order_ok);
        /* "aaaaaaaa/" DEEP times, then "bottom" */
        assert_int_equal(j.s.longest, (size_t)DEEP * 9 + 6);
        assert_int_equal(test_count_fds(), fds);
        free(j.s.prev_dirs);

        /* A callback's error stops the walk and is returned; nothing stays open. */
        j = (struct tree_job){.path = root, .s = {.order_ok = true, .stop_at = 3000}};
        tree_job_main(&j);
        assert_int_equal(j.r, -ECANCELED);
        assert_int_equal(j.s.n, 3000);
        assert_int_equal(test_count_fds(), fds);
        free(j.s.prev_dirs);
        assert_int_equal(sh_rm_rf(root), 0);
        free(root);
        test_tmpdir_remove(dir);
}

/* Wide levels past the open-directory budget: every entry once, with its path; a symlink
 * is an entry, never followed, and no directory as the root. */
static void test_walk_tree_wide(void **state)
{
        char *dir = test_tmpdir_new();
        char *root = sh_path_join(dir, "w");
        char *link = sh_path_join(dir, "link");
        int fd, levels = SH_WALK_OPEN_MAX * 3, files = 4;
        struct seen s = {.order_ok = true, .stop_at = -1};

        (void)state;
        assert_int_equal(mkdir(root, 0755), 0);
        fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        for (int i = 0; i < levels; i++) {
                int next;

                for (int k = 0; k < files; k++) {
                        char name[16];

                        snprintf(name, sizeof(name), "f%d", k);
                        close(openat(fd, name, O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
                }
                assert_int_equal(symlinkat("/", fd, "up"), 0);
                assert_int_equal(mkdirat(fd, "d", 0755), 0);
                next = openat(fd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                close(fd);
                fd = next;
        }
        close(fd);
        assert_int_equal(sh_walk_tree_at(AT_FDCWD, root, tree_cb, &s), 0);
        assert_int_equal(s.n, 1 + (size_t)levels * (files + 2));
        assert_int_equal(s.dirs, 1 + (size_t)levels);
        assert_int_equal(s.longest, (size_t)(levels - 1) * 2 + 2);
        free(s.prev_dirs);
        assert_int_equal(symlink(root, link), 0);
        assert_int_equal(sh_walk_tree_at(AT_FDCWD, link, tree_cb, &s), -ENOTDIR);
        assert_int_equal(sh_rm_rf(root), 0);
        free(root);
        free(link);
        test_tmpdir_remove(dir);
}

int test_fswalk_run(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_usage_exact),
                cmocka_unit_test(test_rm_rf_symlink_root),
                cmocka_unit_test(test_wide_and_deep),
                cmocka_unit_test(test_deep_tree_usage_and_removal),
                cmocka_unit_test(test_walk_tree_deep),
                cmocka_unit_test(test_walk_tree_wide),
        };

        return cmocka_run_group_tests_name("fswalk", tests, NULL, NULL);
}
