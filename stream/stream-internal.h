#pragma once

/*
 * The streaming server's insides, shared by stream.c (HTTP, tokens, the server's life) and
 * stream-session.c (one upgraded connection: SPDY or WebSocket, exec, attach, port-forward).
 */
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stream.h"
#include "websocket.h"

struct MHD_Daemon;
struct MHD_UpgradeResponseHandle;
struct st_peer;

struct stream_server {
        const struct stream_ops *ops; /* NULL: none (stream.h) */
        void *ops_data;
        struct MHD_Daemon *mhd;
        char base_url[96];
        unsigned ttl_s, creation_s, idle_s;
        int stop_fd; /* eventfd, readable once the server stops: sessions end */
        pthread_mutex_t lock;
        pthread_cond_t idle; /* signalled when n_sessions drops */
        struct st_token *tokens;
        size_t n_tokens, n_unused;
        size_t n_sessions;
        bool stopping;
        /*
         * Every accepted socket, oldest first (stream.c "peers"): the header deadline and
         * the connection limit are ours, not MHD's. peers_lock protects the list, each
         * peer's state, n_live and reaper_stop; it is never held with lock.
         */
        pthread_mutex_t peers_lock;
        pthread_cond_t reaper_wake;
        struct st_peer *peers_head, *peers_tail;
        size_t n_live;     /* peers not yet shut down by us */
        unsigned header_s; /* streaming.header_timeout */
        bool reaper_stop;
        bool reaper_started;
        pthread_t reaper;
};

/* One upgraded connection, handed from the HTTP side to its session thread. */
struct st_session {
        struct stream_server *srv;
        struct stream_req *req;
        int fd;
        struct MHD_UpgradeResponseHandle *urh;
        bool spdy;            /* else WebSocket */
        int version;          /* remotecommand: 1 (channel.k8s.io) .. 5; port-forward: 0 */
        enum ws_k8s_proto ws; /* WebSocket framing */
        uint8_t *extra;       /* bytes MHD read past the request headers */
        size_t n_extra;
};

/* ---- What stream.c parses itself from a request (the rest is libmicrohttpd's) ---- */

#define ST_TOKEN_LEN      32 /* hex digits of a streaming token */
#define PORTFORWARD_PROTO "portforward.k8s.io"

/*
 * The kind and token of a streaming URL path, "/exec/<token>", "/attach/<token>" or
 * "/portforward/<token>". With @query the path may go on with "?..." (the request line as
 * MHD first sees it); without, it must end after the token (MHD's url, query removed).
 * *@ret_token points into @path, @ret_len bytes. 0, or -ENOENT (no such path, or a token
 * that is not ST_TOKEN_LEN characters or is followed by a '/'). @path may be NULL.
 */
int st_path_token(const char *path, bool query, enum stream_kind *ret_kind, const char **ret_token,
                  size_t *ret_len);

/* True if the comma-separated header value @v (NULL: none) holds @token, case-insensitive. */
bool st_has_token(const char *v, const char *token);

/* Every value of one header, joined with ", " (MHD keeps repeated header lines apart). */
struct st_joined {
        const char *name;
        char buf[2048];
        size_t len;
        bool overflow; /* a value did not fit: the header is refused */
};

/* Appends @value to @j; false (and @j->overflow) if it does not fit. */
bool st_joined_add(struct st_joined *j, const char *value);

/*
 * The SPDY sub-protocol: the first in @offered (X-Stream-Protocol-Version values, joined)
 * that we speak, as the kubelet negotiates. remotecommand: v5 (as v4 over SPDY) down to
 * v1, *@ret_version 5..1; port-forward: PORTFORWARD_PROTO, version 0. *@ret_name is static.
 * -ENOENT if none is.
 */
int st_spdy_choose(const char *offered, enum stream_kind kind, int *ret_version,
                   const char **ret_name);

/* The session thread (stream-session.c): runs @arg (a struct st_session) and frees it. */
void *st_session_main(void *arg);

/* Frees @s and closes its connection; for a session that never ran. */
void st_session_free(struct st_session *s);

/* Called by a session thread as its last step. */
void st_session_done(struct stream_server *srv);
