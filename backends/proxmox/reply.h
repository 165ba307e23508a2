#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "error.h"

/*
 * Proxmox VE API replies (../shared/notes/proxmox-api.md §1, "Response envelope and
 * errors"): `{"data": ...}` on success; on failure the status code, and the text in the
 * body's "message" (servers since libpve-http-server-perl 5.2.0) or only in the status
 * line's reason phrase (older ones), plus "errors": {param: msg} for a 400.
 */

struct pve_reply {
        int http;          /* the status code */
        json_object *data; /* success: the "data" value (NULL for JSON null); owned */
        bool retry;        /* 595/596: the node could not be reached; try again, mark it */
};

/*
 * Reads a reply: @http its status code, @reason the status line's reason phrase (NULL or ""
 * when none), @body/@len its body. A success (2xx with a JSON object body) fills @ret and
 * returns 0. A failure returns -errno with the server's words in @err: 400 -EINVAL, 401
 * -EACCES, 403 -EPERM, 404 -ENOENT, 501 -EOPNOTSUPP, 595/596/599 -EHOSTUNREACH (@ret->retry
 * set for 595/596), others -EIO; "message" is preferred to @reason, and the "errors"
 * entries follow it. A 2xx body that is not an object with "data" is -EPROTO.
 */
int pve_reply_parse(int http, const char *reason, const char *body, size_t len,
                    struct pve_reply *ret, struct sh_error *err);
void pve_reply_done(struct pve_reply *r);

/*
 * An integer PVE may send as a JSON number or as a string of decimal digits ("100", as
 * /cluster/nextid does). 0, -EINVAL (anything else: a double, "", "1x", a bool), -ERANGE.
 */
int pve_json_int(json_object *o, int64_t *ret);
