#include "fswalk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <search.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"

/* One directory on the walk's stack. */
struct frame {
        DIR *d;    /* NULL while left closed (more than SH_WALK_OPEN_MAX levels up) */
        dev_t dev; /* what it is, to know it again through a child's ".." */
        ino_t ino;
        char *child; /* the subdirectory being walked below it, a name in it */
        size_t plen; /* sh_walk_tree_at: the length of its path */
};

struct walk {
        bool remove; /* unlink each entry, the directories once emptied */
        dev_t root_dev;
        struct frame *v;
        size_t n, cap;
        struct sh_walk_usage usage;
        void *seen;    /* tsearch tree of the inodes with more than one link, counted */
        sh_walk_fn fn; /* sh_walk_tree_at: its callback, and the path of the entry */
        void *ud;
        char *path;
        size_t path_len, path_cap;
};

static int cmp_ino(const void *a, const void *b)
{
        ino_t x = *(const ino_t *)a, y = *(const ino_t *)b;

        return x < y ? -1 : x > y;
}

static void walk_done(struct walk *w)
{
        for (size_t i = 0; i < w->n; i++) {
                if (w->v[i].d)
                        closedir(w->v[i].d);
                free(w->v[i].child);
        }
        free(w->v);
        w->v = NULL;
        w->n = w->cap = 0;
        tdestroy(w->seen, free);
        w->seen = NULL;
        free(w->path);
        w->path = NULL;
        w->path_len = w->path_cap = 0;
}

/* Counts @st once; 0 or -ENOMEM. */
static int count(struct walk *w, const struct stat *st)
{
        if (st->st_nlink > 1 && !S_ISDIR(st->st_mode)) {
                ino_t *key = malloc(sizeof(*key));
                void *found;

                if (!key)
                        return -ENOMEM;
                *key = st->st_ino;
                found = tsearch(key, &w->seen, cmp_ino);
                if (!found) {
                        free(key);
                        return -ENOMEM;
                }
                if (*(ino_t **)found != key) { /* another name of one already counted */
                        free(key);
                        return 0;
                }
        }
        w->usage.bytes += (uint64_t)st->st_blocks * 512;
        w->usage.inodes++;
        return 0;
}

/* Pushes the open directory @fd (taken, closed on failure). */
static int push(struct walk *w, int fd, const struct stat *st)
{
        _cleanup_close_ int owned = fd;
        struct frame *f;

        if (w->n == w->cap) {
                size_t cap = w->cap ? w->cap * 2 : 64;
                struct frame *v = realloc(w->v, cap * sizeof(*v));

                if (!v)
                        return -ENOMEM;
                w->v = v;
                w->cap = cap;
        }
        f = &w->v[w->n];
        *f = (struct frame){.dev = st->st_dev, .ino = st->st_ino};
        f->d = fdopendir(owned);
        if (!f->d)
                return -errno;
        owned = -EBADF;
        w->n++;
        /* Keeps the root and the deepest levels open: a deep tree must not use up the fds. */
        if (w->n > SH_WALK_OPEN_MAX) {
                struct frame *old = &w->v[w->n - SH_WALK_OPEN_MAX];

                if (old->d) {
                        closedir(old->d);
                        old->d = NULL;
                }
        }
        return 0;
}

/* Whether a directory on the stack is @st: a bind mount of an ancestor would loop. */
static bool on_stack(const struct walk *w, const struct stat *st)
{
        for (size_t i = 0; i < w->n; i++)
                if (w->v[i].ino == st->st_ino && w->v[i].dev == st->st_dev)
                        return true;
        return false;
}

/*
 * Leaves the top directory for its parent, reopening the parent through "..", when it was
 * closed, and checking it is the one left (-ESTALE if the tree moved). A removal then
 * removes the emptied directory; a usage walk reads on past it.
 */
static int pop(struct walk *w)
{
        struct frame *c = &w->v[w->n - 1], *p = &w->v[w->n - 2];
        bool reopened = false;
        int r = 0;

        if (!p->d) {
                _cleanup_close_ int fd =
                        openat(dirfd(c->d), "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                struct stat st;

                if (fd < 0)
                        return -errno;
                if (fstat(fd, &st) < 0)
                        return -errno;
                if (st.st_dev != p->dev || st.st_ino != p->ino)
                        return -ESTALE;
                p->d = fdopendir(fd);
                if (!p->d)
                        return -errno;
                fd = -EBADF;
                reopened = true;
        }
        closedir(c->d);
        c->d = NULL;
        w->n--;
        if (w->fn) {
                w->path_len = p->plen;
                w->path[w->path_len] = '\0';
        }
        if (w->remove) {
                /* A reopened parent reads from its start: what was removed is gone from it. */
                if (unlinkat(dirfd(p->d), p->child, AT_REMOVEDIR) < 0 && errno != ENOENT)
                        r = -errno;
        } else if (reopened) {
                struct dirent *de;

                /* Resumes after the child; if it was renamed meanwhile, the rest is missed. */
                while ((de = readdir(p->d)) && strcmp(de->d_name, p->child) != 0)
                        ;
        }
        free(p->child);
        p->child = NULL;
        return r;
}

/* Handles entry @name of the top directory: counts or removes it, or descends into it. */
static int visit(struct walk *w, const char *name)
{
        struct frame *f = &w->v[w->n - 1];
        int dfd = dirfd(f->d), fd;
        struct stat st;
        int r;

        if (w->remove) {
                if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT)
                        return 0;
                if (errno != EISDIR)
                        return -errno;
        } else {
                if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        return 0; /* gone meanwhile */
                if (!S_ISDIR(st.st_mode))
                        return count(w, &st);
                if (st.st_dev != w->root_dev)
                        return 0; /* a mount point: another filesystem's figures */
        }
        fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
                if (!w->remove || errno == ENOENT)
                        return 0;
                if (errno == ENOTDIR || errno == ELOOP) /* replaced by a file meanwhile */
                        return unlinkat(dfd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
                return -errno;
        }
        if (fstat(fd, &st) < 0)
                r = -errno;
        else if (st.st_dev != w->root_dev)
                r = -EBUSY; /* a mount point: not crossed */
        else if (on_stack(w, &st))
                r = -ELOOP;
        else
                r = 0;
        if (r < 0) {
                close(fd);
                return w->remove ? r : 0;
        }
        if (!w->remove && (r = count(w, &st)) < 0) {
                close(fd);
                return r;
        }
        f->child = strdup(name);
        if (!f->child) {
                close(fd);
                return -ENOMEM;
        }
        return push(w, fd, &st);
}

/* Appends "/@name" (or @name at the root) to the walk's path. 0 or -ENOMEM. */
static int path_push(struct walk *w, const char *name)
{
        size_t n = strlen(name), need = w->path_len + 1 + n + 1;

        if (need > w->path_cap) {
                size_t cap = w->path_cap ? w->path_cap : 256;
                char *p;

                while (cap < need)
                        cap *= 2;
                p = realloc(w->path, cap);
                if (!p)
                        return -ENOMEM;
                w->path = p;
                w->path_cap = cap;
        }
        if (w->path_len)
                w->path[w->path_len++] = '/';
        memcpy(w->path + w->path_len, name, n + 1);
        w->path_len += n;
        return 0;
}

/* sh_walk_tree_at's visit: the callback for entry @name, then down into it if a directory. */
static int visit_tree(struct walk *w, const char *name)
{
        struct frame *f = &w->v[w->n - 1];
        int dfd = dirfd(f->d), fd;
        struct stat st, st2;
        int r;

        r = path_push(w, name);
        if (r < 0)
                return r;
        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return -errno;
        r = w->fn(w->ud, dfd, name, w->path, &st);
        if (r < 0)
                return r;
        if (!S_ISDIR(st.st_mode)) {
                w->path_len = f->plen;
                w->path[w->path_len] = '\0';
                return 0;
        }
        if (st.st_dev != w->root_dev)
                return -EXDEV;
        fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st2) < 0 || st2.st_dev != st.st_dev || st2.st_ino != st.st_ino) {
                close(fd);
                return -ESTALE;
        }
        if (on_stack(w, &st)) {
                close(fd);
                return -ELOOP;
        }
        f->child = strdup(name);
        if (!f->child) {
                close(fd);
                return -ENOMEM;
        }
        r = push(w, fd, &st);
        if (r == 0)
                w->v[w->n - 1].plen = w->path_len;
        return r;
}

/* Walks below the open directory @fd (taken). 0 or -errno. */
static int walk_below(struct walk *w, int fd)
{
        struct stat st;
        int r;

        if (fstat(fd, &st) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        w->root_dev = st.st_dev;
        if (!w->remove && !w->fn && (r = count(w, &st)) < 0) {
                close(fd);
                return r;
        }
        r = push(w, fd, &st);
        while (r == 0) {
                struct frame *f = &w->v[w->n - 1];
                struct dirent *de;

                errno = 0;
                de = readdir(f->d);
                if (!de) {
                        if (errno && w->remove)
                                r = -errno;
                        else if (w->n > 1)
                                r = pop(w);
                        else
                                break;
                        continue;
                }
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                r = w->fn ? visit_tree(w, de->d_name) : visit(w, de->d_name);
        }
        return r;
}

int sh_walk_usage_at(int dirfd, const char *name, struct sh_walk_usage *ret)
{
        struct walk w = {0};
        int r = -ESTALE;

        /*
         * A tree moved under a deep walk (a closed parent reopened through ".." is not the
         * one left) is walked again from its root, a few times at most; then it is an
         * error, never a partial count a container could shrink its usage to.
         */
        for (int tries = 0; tries < 3 && r == -ESTALE; tries++) {
                int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

                if (fd < 0)
                        return -errno;
                walk_done(&w);
                w = (struct walk){0};
                r = walk_below(&w, fd);
                if (r == 0)
                        *ret = w.usage;
        }
        walk_done(&w);
        return r;
}

int sh_rm_rf_at(int dirfd, const char *name)
{
        struct stat st;
        int r = -ESTALE;

        /*
         * A tree moved mid-walk, or added to after its walk (liblxc creates a container's
         * lxc.log each time anyone loads its config), is walked again from its root, a few
         * times at most.
         */
        for (int tries = 0; tries < 4 && r == -ESTALE; tries++) {
                struct walk w = {.remove = true};
                int fd;

                if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        return errno == ENOENT ? 0 : -errno;
                if (!S_ISDIR(st.st_mode))
                        return unlinkat(dirfd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
                fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0)
                        return errno == ENOENT ? 0 : -errno;
                r = walk_below(&w, fd);
                walk_done(&w);
                if (r == 0 && unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
                        r = errno == ENOTEMPTY ? -ESTALE : -errno;
        }
        return r == -ESTALE ? -ENOTEMPTY : r;
}

int sh_walk_tree_at(int dirfd, const char *name, sh_walk_fn fn, void *ud)
{
        struct walk w = {.fn = fn, .ud = ud};
        struct stat st;
        int fd, r;

        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return -errno;
        if (!S_ISDIR(st.st_mode))
                return -ENOTDIR;
        r = path_push(&w, "");
        if (r == 0)
                r = fn(ud, dirfd, name, w.path, &st);
        if (r < 0) {
                walk_done(&w);
                return r;
        }
        fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
                walk_done(&w);
                return -errno;
        }
        r = walk_below(&w, fd);
        walk_done(&w);
        return r;
}
