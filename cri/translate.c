/* Translation between runt's core results and the wire: status codes, strings. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cri-internal.h"

static const struct {
        int err;
        grpc_status_code code;
} errno_map[] = {
        {-ENOENT, GRPC_STATUS_NOT_FOUND},
        {-ESRCH, GRPC_STATUS_NOT_FOUND},
        {-EEXIST, GRPC_STATUS_ALREADY_EXISTS},
        {-EINVAL, GRPC_STATUS_INVALID_ARGUMENT},
        {-ENAMETOOLONG, GRPC_STATUS_INVALID_ARGUMENT},
        {-EBADMSG, GRPC_STATUS_INVALID_ARGUMENT},
        {-E2BIG, GRPC_STATUS_INVALID_ARGUMENT},
        {-EOPNOTSUPP, GRPC_STATUS_UNIMPLEMENTED},
        {-ENOSYS, GRPC_STATUS_UNIMPLEMENTED},
        {-ETIMEDOUT, GRPC_STATUS_DEADLINE_EXCEEDED},
        {-ECANCELED, GRPC_STATUS_CANCELLED},
        {-EBUSY, GRPC_STATUS_FAILED_PRECONDITION},
        {-ENOTEMPTY, GRPC_STATUS_FAILED_PRECONDITION},
        {-EALREADY, GRPC_STATUS_FAILED_PRECONDITION},
        {-EPERM, GRPC_STATUS_PERMISSION_DENIED},
        {-EACCES, GRPC_STATUS_PERMISSION_DENIED},
        {-ENOMEM, GRPC_STATUS_RESOURCE_EXHAUSTED},
        {-ENOSPC, GRPC_STATUS_RESOURCE_EXHAUSTED},
        {-EMFILE, GRPC_STATUS_RESOURCE_EXHAUSTED},
        {-EAGAIN, GRPC_STATUS_UNAVAILABLE},
        {-ECONNREFUSED, GRPC_STATUS_UNAVAILABLE},
        {-EHOSTUNREACH, GRPC_STATUS_UNAVAILABLE},
        {-ENOTCONN, GRPC_STATUS_UNAVAILABLE},
        {-ESHUTDOWN, GRPC_STATUS_UNAVAILABLE},
        {-EUCLEAN, GRPC_STATUS_DATA_LOSS}, /* content that does not match its digest */
        {-EIO, GRPC_STATUS_INTERNAL},
        {-EPROTO, GRPC_STATUS_INTERNAL},
};

grpc_status_code cri_status_from_errno(int r)
{
        if (r >= 0)
                return GRPC_STATUS_OK;
        for (size_t i = 0; i < sizeof(errno_map) / sizeof(errno_map[0]); i++)
                if (errno_map[i].err == r)
                        return errno_map[i].code;
        return GRPC_STATUS_UNKNOWN;
}

const char *cri_status_name(grpc_status_code code)
{
        static const char *const names[] = {
                "OK",
                "CANCELLED",
                "UNKNOWN",
                "INVALID_ARGUMENT",
                "DEADLINE_EXCEEDED",
                "NOT_FOUND",
                "ALREADY_EXISTS",
                "PERMISSION_DENIED",
                "RESOURCE_EXHAUSTED",
                "FAILED_PRECONDITION",
                "ABORTED",
                "OUT_OF_RANGE",
                "UNIMPLEMENTED",
                "INTERNAL",
                "UNAVAILABLE",
                "DATA_LOSS",
                "UNAUTHENTICATED",
        };

        if ((unsigned)code < sizeof(names) / sizeof(names[0]))
                return names[code];
        return "UNKNOWN";
}

char *cri_strdup(const char *s)
{
        return strdup(s ? s : "");
}

void *cri_msg_new(const ProtobufCMessageDescriptor *desc)
{
        ProtobufCMessage *m = malloc(desc->sizeof_message);

        if (m)
                desc->message_init(m);
        return m;
}

void *cri_array_new(size_t n)
{
        return calloc(n ? n : 1, sizeof(void *));
}
