/* Proxmox VE API replies: see reply.h. */
#include "reply.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

static int errno_of(int http)
{
        switch (http) {
        case 400:
                return -EINVAL;
        case 401:
                return -EACCES;
        case 403:
                return -EPERM;
        case 404:
                return -ENOENT;
        case 501:
                return -EOPNOTSUPP;
        case 595:
        case 596:
        case 599:
                return -EHOSTUNREACH;
        default:
                return -EIO;
        }
}

/* Appends @n bytes of @s to @out (size @size), control characters as spaces. */
static void put_text(char *out, size_t size, const char *s, size_t n)
{
        size_t at = strlen(out);

        for (size_t i = 0; i < n && at + 1 < size; i++)
                out[at++] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? ' ' : s[i];
        out[at] = 0;
}

int pve_reply_parse(int http, const char *reason, const char *body, size_t len,
                    struct pve_reply *ret, struct sh_error *err)
{
        json_object *root = NULL, *data = NULL, *errors = NULL, *m = NULL;
        char text[400] = "";
        int r;

        *ret = (struct pve_reply){.http = http, .retry = http == 595 || http == 596};
        /* Bodies of failures may be empty (401, 595) or not JSON at all (a proxy's page). */
        if (body && len && sh_json_parse(body, len, "PVE reply", &root, NULL) < 0)
                root = NULL;
        if (http >= 200 && http < 300) {
                if (!root || !json_object_is_type(root, json_type_object) ||
                    !json_object_object_get_ex(root, "data", &data)) {
                        json_object_put(root);
                        return sh_err(err, -EPROTO, "PVE: HTTP %d without a data field", http);
                }
                ret->data = data ? json_object_get(data) : NULL;
                json_object_put(root);
                return 0;
        }
        r = errno_of(http);
        if (root && json_object_is_type(root, json_type_object) &&
            json_object_object_get_ex(root, "message", &m) &&
            json_object_is_type(m, json_type_string)) {
                const char *s = json_object_get_string(m);
                size_t n = strlen(s);

                while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
                        n--;
                put_text(text, sizeof(text), s, n);
        } else if (reason && reason[0]) {
                put_text(text, sizeof(text), reason, strlen(reason));
        }
        if (root && json_object_is_type(root, json_type_object) &&
            json_object_object_get_ex(root, "errors", &errors) &&
            json_object_is_type(errors, json_type_object)) {
                json_object_object_foreach (errors, key, val) {
                        const char *v = json_object_is_type(val, json_type_string)
                                                ? json_object_get_string(val)
                                                : "";
                        size_t n = strlen(v);

                        while (n && v[n - 1] == '\n')
                                n--;
                        put_text(text, sizeof(text), text[0] ? "; " : "", text[0] ? 2 : 0);
                        put_text(text, sizeof(text), key, strlen(key));
                        put_text(text, sizeof(text), ": ", 2);
                        put_text(text, sizeof(text), v, n);
                }
        }
        json_object_put(root);
        return sh_err(err, r, "PVE: HTTP %d%s%s", http, text[0] ? " " : "", text);
}

void pve_reply_done(struct pve_reply *r)
{
        json_object_put(r->data);
        r->data = NULL;
}

int pve_json_int(json_object *o, int64_t *ret)
{
        if (json_object_is_type(o, json_type_int)) {
                errno = 0;
                *ret = json_object_get_int64(o);
                return errno == ERANGE ? -ERANGE : 0;
        }
        if (json_object_is_type(o, json_type_string)) {
                const char *s = json_object_get_string(o);
                char *end = NULL;
                long long v;

                if (!s[0] || !((s[0] >= '0' && s[0] <= '9') || s[0] == '-'))
                        return -EINVAL;
                errno = 0;
                v = strtoll(s, &end, 10);
                if (errno == ERANGE)
                        return -ERANGE;
                if (!end || *end)
                        return -EINVAL;
                *ret = v;
                return 0;
        }
        return -EINVAL;
}
