/*
 * Image references, normalised as containerd and the docker CLI do it:
 * "busybox" -> "docker.io/library/busybox:latest", "localhost:5000/a/b" -> ...:latest,
 * "name@sha256:..." stays a digest reference. Grammar: distribution's reference package
 * (name components, tag and digest syntax) written out by hand.
 */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "imagemgr-internal.h"
#include "imagemgr.h"
#include "strutil.h"

#define NAME_MAX_TOTAL 255
#define TAG_MAX        128

static bool is_lower_alnum(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_hex_lower(char c)
{
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

bool img_is_hex(const char *s, size_t len)
{
        for (size_t i = 0; i < len; i++)
                if (!is_hex_lower(s[i]))
                        return false;
        return len > 0;
}

/* path-component := [a-z0-9]+ (separator [a-z0-9]+)*, separator := [_.] | __ | -+ */
static bool valid_path_component(const char *s, size_t len)
{
        size_t i = 0;

        if (len == 0 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[len - 1]))
                return false;
        while (i < len) {
                if (is_lower_alnum(s[i])) {
                        i++;
                        continue;
                }
                /* A separator run, followed by an alphanumeric (the last char is one). */
                size_t j = i;

                if (s[i] == '.') {
                        j = i + 1;
                } else if (s[i] == '_') {
                        j = i + 1;
                        if (j < len && s[j] == '_')
                                j++;
                } else if (s[i] == '-') {
                        while (j < len && s[j] == '-')
                                j++;
                } else {
                        return false;
                }
                if (j >= len || !is_lower_alnum(s[j]))
                        return false;
                i = j;
        }
        return true;
}

/* domain := host [":" port]; host := components of [A-Za-z0-9-] joined by '.', or [IPv6]. */
static bool valid_domain(const char *s, size_t len)
{
        size_t i = 0, host_end = len;
        const char *colon;

        if (len == 0)
                return false;
        if (s[0] == '[') {
                const char *close = memchr(s, ']', len);

                if (!close)
                        return false;
                for (const char *p = s + 1; p < close; p++)
                        if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '.')
                                return false;
                if (close == s + 1)
                        return false;
                i = (size_t)(close - s) + 1;
                host_end = i;
                if (i < len && s[i] != ':')
                        return false;
        } else {
                colon = memchr(s, ':', len);
                if (colon)
                        host_end = (size_t)(colon - s);
                size_t start = 0;

                for (i = 0; i <= host_end; i++) {
                        if (i == host_end || s[i] == '.') {
                                size_t n = i - start;

                                if (n == 0 || s[start] == '-' || s[i - 1] == '-')
                                        return false;
                                start = i + 1;
                                continue;
                        }
                        if (!isalnum((unsigned char)s[i]) && s[i] != '-')
                                return false;
                }
                i = host_end;
        }
        if (i < len) { /* ":port" */
                size_t digits = len - i - 1;

                if (digits == 0 || digits > 5)
                        return false;
                for (size_t k = i + 1; k < len; k++)
                        if (!isdigit((unsigned char)s[k]))
                                return false;
        }
        return true;
}

/* tag := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127} */
static bool valid_tag(const char *s, size_t len)
{
        if (len == 0 || len > TAG_MAX)
                return false;
        for (size_t i = 0; i < len; i++) {
                char c = s[i];
                bool word = isalnum((unsigned char)c) || c == '_';

                if (!word && (i == 0 || (c != '.' && c != '-')))
                        return false;
        }
        return true;
}

bool img_valid_digest(const char *s)
{
        return strncmp(s, "sha256:", 7) == 0 && strlen(s) == 7 + 64 && img_is_hex(s + 7, 64);
}

void img_ref_done(struct img_ref *r)
{
        if (!r)
                return;
        free(r->name);
        free(r->tag);
        free(r->digest);
        *r = (struct img_ref){0};
}

int img_ref_parse(const char *in, struct img_ref *ret, struct sh_error *err)
{
        _cleanup_free_ char *name = NULL;
        const char *s = in, *at, *slash, *tag = NULL, *remote;
        size_t len, name_len, dom_len = 0, tag_len = 0;
        bool has_domain = false;

        if (!in || !in[0])
                return sh_err(err, -EINVAL, "image reference is empty");
        len = strlen(in);
        if (len > 4096)
                return sh_err(err, -EINVAL, "image reference is too long (%zu bytes)", len);
        for (size_t i = 0; i < len; i++)
                if ((unsigned char)in[i] <= ' ' || (unsigned char)in[i] >= 0x7f)
                        return sh_err(err, -EINVAL,
                                      "image reference '%.200s': invalid character at offset %zu",
                                      in, i);

        at = strchr(s, '@');
        name_len = at ? (size_t)(at - s) : len;
        if (at && !img_valid_digest(at + 1))
                return sh_err(err, -EINVAL,
                              "image reference '%.200s': digest must be sha256: and 64 lowercase "
                              "hex digits",
                              in);

        /* A ':' after the last '/' starts the tag. */
        slash = memrchr(s, '/', name_len);
        {
                const char *from = slash ? slash + 1 : s;
                const char *colon = memchr(from, ':', name_len - (size_t)(from - s));

                if (colon) {
                        tag = colon + 1;
                        tag_len = name_len - (size_t)(tag - s);
                        name_len = (size_t)(colon - s);
                        if (!valid_tag(tag, tag_len))
                                return sh_err(err, -EINVAL,
                                              "image reference '%.200s': invalid tag (want "
                                              "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})",
                                              in);
                }
        }
        if (name_len == 0)
                return sh_err(err, -EINVAL, "image reference '%.200s': no repository name", in);

        /* The first component is a registry when it has '.' or ':', or is "localhost". */
        slash = memchr(s, '/', name_len);
        if (slash) {
                size_t n = (size_t)(slash - s);

                /* As the docker CLI and skopeo: "UPPER/x" is a bad name, not a registry. */
                if (memchr(s, '.', n) || memchr(s, ':', n) ||
                    (n == 9 && !memcmp(s, "localhost", 9))) {
                        has_domain = true;
                        dom_len = n;
                }
        }
        if (has_domain && !valid_domain(s, dom_len))
                return sh_err(err, -EINVAL, "image reference '%.200s': invalid registry host", in);
        remote = has_domain ? s + dom_len + 1 : s;
        {
                size_t rlen = name_len - (size_t)(remote - s), start = 0;

                if (rlen == 0)
                        return sh_err(err, -EINVAL, "image reference '%.200s': no repository name",
                                      in);
                for (size_t i = 0; i <= rlen; i++) {
                        if (i < rlen && remote[i] != '/')
                                continue;
                        if (!valid_path_component(remote + start, i - start))
                                return sh_err(err, -EINVAL,
                                              "image reference '%.200s': invalid repository name "
                                              "(lowercase letters, digits and separators . _ __ -)",
                                              in);
                        start = i + 1;
                }
                if (!has_domain && rlen == 64 && img_is_hex(remote, 64))
                        return sh_err(err, -EINVAL,
                                      "image reference '%.200s': a 64-hex-digit string is an image "
                                      "id, not a repository name",
                                      in);

                if (!has_domain || (dom_len == 15 && !memcmp(s, "index.docker.io", 15)) ||
                    (dom_len == 9 && !memcmp(s, "docker.io", 9)))
                        name = memchr(remote, '/', rlen)
                                       ? sh_strdup_printf("docker.io/%.*s", (int)rlen, remote)
                                       : sh_strdup_printf("docker.io/library/%.*s", (int)rlen,
                                                          remote);
                else
                        name = sh_strdup_printf("%.*s/%.*s", (int)dom_len, s, (int)rlen, remote);
        }
        if (!name)
                return -ENOMEM;
        if (strlen(name) > NAME_MAX_TOTAL)
                return sh_err(err, -EINVAL, "image reference '%.200s': name longer than %d bytes",
                              in, NAME_MAX_TOTAL);

        *ret = (struct img_ref){0};
        ret->name = TAKE_PTR(name);
        if (at) {
                ret->digest = strdup(at + 1);
                if (!ret->digest)
                        goto oom;
        }
        if (tag || !at) {
                ret->tag = tag ? strndup(tag, tag_len) : strdup("latest");
                if (!ret->tag)
                        goto oom;
        }
        return 0;
oom:
        img_ref_done(ret);
        return -ENOMEM;
}

char *img_ref_domain(const struct img_ref *r)
{
        const char *slash = strchr(r->name, '/');

        return strndup(r->name, slash ? (size_t)(slash - r->name) : strlen(r->name));
}

char *img_ref_string(const struct img_ref *r)
{
        if (r->digest)
                return sh_strdup_printf("%s@%s", r->name, r->digest);
        return sh_strdup_printf("%s:%s", r->name, r->tag);
}

int img_ref_normalize(const char *in, char **ret, struct sh_error *err)
{
        _cleanup_(img_ref_done) struct img_ref r = {0};
        int rc = img_ref_parse(in, &r, err);

        if (rc < 0)
                return rc;
        *ret = img_ref_string(&r);
        return *ret ? 0 : -ENOMEM;
}
