#pragma once

/*
 * The audit log (docs/audit.md): one JSON line per mutating CRI call, naming who called
 * (the peer's uid, gid and pid from SO_PEERCRED), what (the method and the object ids) and
 * how it ended (the gRPC status), appended to a file of its own.
 */
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <protobuf-c/protobuf-c.h>

#include "error.h"

struct cri_method;
struct cri_audit;

/* Who is on the other end of a call's connection; known is false when it could not be told. */
struct cri_peer {
        bool known;
        uid_t uid;
        gid_t gid;
        pid_t pid;
};

/*
 * Opens @path for appending (created 0600, its directory 0700 when missing). Refused: a
 * symlink, anything but a regular file, a file another user owns; a wider mode is narrowed
 * to 0600. 0 or -errno with @err saying which path and why.
 */
int cri_audit_new(const char *path, struct cri_audit **ret, struct sh_error *err);
/* Closes the file; NULL-safe, returns NULL. No call may be writing a line. */
struct cri_audit *cri_audit_free(struct cri_audit *a);

/*
 * Opens the path again and writes from then on to what is there now (logrotate renamed the
 * old file): SIGHUP. Lines being written finish in the old file first. On failure the old
 * file stays in use and -errno comes back with @err filled. Any thread.
 */
int cri_audit_reopen(struct cri_audit *a, struct sh_error *err);

/* Whether calls of @m are audited: the mutating ones. */
bool cri_audit_wants(const struct cri_method *m);

/*
 * The line for one call of @m (audited) that ended with @code and @msg: @req as unpacked
 * (NULL: none could be read), @resp the answer (NULL: none), @real_ns the CLOCK_REALTIME of
 * the end, @dur_ns how long it took. A malloc'd, newline-terminated line in *@ret_line,
 * *@ret_len bytes. 0 or -ENOMEM.
 */
int cri_audit_format(const struct cri_method *m, const struct cri_peer *peer,
                     const ProtobufCMessage *req, const ProtobufCMessage *resp, int code,
                     const char *msg, long long real_ns, long long dur_ns, char **ret_line,
                     size_t *ret_len);

/*
 * Formats and appends the line for a call (as cri_audit_format, the time taken now) in one
 * write(2), so that lines of concurrent calls never mix. A failure fails no call: it is
 * logged once in runtd's log until a line goes out again (which logs how many were lost).
 * NULL @a (audit off) does nothing. Any thread; waits only for the write itself.
 */
void cri_audit_call(struct cri_audit *a, const struct cri_method *m, const struct cri_peer *peer,
                    const ProtobufCMessage *req, const ProtobufCMessage *resp, int code,
                    const char *msg, long long dur_ns);

/*
 * Checks the audit table against the dispatch table: every audited method exists, every
 * field path names a field of its request or response. 0 or -EINVAL with @err naming it
 * (for the unit test).
 */
int cri_audit_check_table(struct sh_error *err);
