/*
 * A main() for the fuzz targets when they are built without libFuzzer: each argument is a
 * file or a directory of files (not recursive), fed once to LLVMFuzzerTestOneInput. With no
 * arguments, a few built-in inputs are fed instead. The regular test suite uses it to replay
 * the seed corpus (and any crash reproducer added to it) under the normal build's flags.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
        FILE *f = fopen(path, "rbe");
        uint8_t *buf = NULL;
        size_t len = 0, cap = 0, n;

        if (!f) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                return -1;
        }
        do {
                if (len == cap) {
                        uint8_t *nb;

                        cap = cap ? cap * 2 : 4096;
                        nb = realloc(buf, cap);
                        if (!nb) {
                                free(buf);
                                fclose(f);
                                return -1;
                        }
                        buf = nb;
                }
                n = fread(buf + len, 1, cap - len, f);
                len += n;
        } while (n > 0);
        if (ferror(f)) {
                fprintf(stderr, "%s: read error\n", path);
                free(buf);
                fclose(f);
                return -1;
        }
        fclose(f);
        LLVMFuzzerTestOneInput(buf, len);
        free(buf);
        return 0;
}

static int cmp_name(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Feeds every regular file of @dir, in name order. Returns the number fed, or -1. */
static int run_dir(const char *dir)
{
        DIR *d = opendir(dir);
        struct dirent *de;
        char **names = NULL;
        size_t n = 0;
        int fed = 0;

        if (!d) {
                fprintf(stderr, "%s: %s\n", dir, strerror(errno));
                return -1;
        }
        while ((de = readdir(d))) {
                char **nv;

                if (de->d_name[0] == '.')
                        continue;
                nv = realloc(names, (n + 1) * sizeof(*names));
                if (!nv)
                        break;
                names = nv;
                names[n] = strdup(de->d_name);
                if (names[n])
                        n++;
        }
        closedir(d);
        if (n)
                qsort(names, n, sizeof(*names), cmp_name);
        for (size_t i = 0; i < n; i++) {
                char path[4096];
                struct stat st;

                snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
                if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
                        if (run_file(path) < 0)
                                fed = -1;
                        else if (fed >= 0)
                                fed++;
                }
                free(names[i]);
        }
        free(names);
        return fed;
}

int main(int argc, char **argv)
{
        int total = 0;

        if (argc < 2) {
                static const struct {
                        const char *data;
                        size_t len;
                } seeds[] = {
                        {"", 0},       {"\x00", 1}, {"\x01\x0a\x00", 3}, {"\xff\xff\xff", 3},
                        {"a: b\n", 5}, {"{}", 2},
                };

                for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++)
                        LLVMFuzzerTestOneInput((const uint8_t *)seeds[i].data, seeds[i].len);
                for (unsigned b = 0; b < 256; b++) {
                        uint8_t one = (uint8_t)b;

                        LLVMFuzzerTestOneInput(&one, 1);
                }
                printf("fed %zu built-in inputs\n", sizeof(seeds) / sizeof(seeds[0]) + 256);
                return 0;
        }
        for (int i = 1; i < argc; i++) {
                struct stat st;
                int r;

                if (stat(argv[i], &st) < 0) {
                        fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
                        return 1;
                }
                r = S_ISDIR(st.st_mode) ? run_dir(argv[i]) : (run_file(argv[i]) < 0 ? -1 : 1);
                if (r < 0)
                        return 1;
                total += r;
        }
        printf("fed %d inputs\n", total);
        /* An empty corpus would make the replay test pass vacuously. */
        return total > 0 ? 0 : 1;
}
