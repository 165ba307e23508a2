#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "agentpod.h"

/* Between the files of backends/agentpod (ap-pod.c, ap-ctr.c, ap-log.c). */

struct ap_ctr {
        char id[65];
        int refs;            /* under the pod's mu: its list's, and each call's that holds it */
        struct ap_pod *pod;  /* borrowed: the pod outlives its containers' entries */
        struct ag_status st; /* what runtd knows; st.state AG_ST_* */
        bool exited;         /* st holds a final status */
        int watch_fd;        /* eventfd: written when it exited; -1 before the first watch */
        /* logs: written by the agent client's thread only */
        char *log_path; /* "" none */
        unsigned log_max_line;
        int log_fd;
        int64_t log_seq;
        int seq_fd;
        bool tty, stdin_open;
        bool partial[3]; /* the last chunk of stdout/stderr ended mid-line */
};

/* ap-pod.c */
struct ap_ctr *ap_ctr_find(struct ap_pod *p, const char *id);

/* ap-ctr.c */
/* Loads what runtd recorded of container @id of @p (meta, exit, logseq) into a new entry. */
struct ap_ctr *ap_ctr_load(struct ap_pod *p, const char *id);
void ap_ctr_free(struct ap_ctr *c);
/* Records @st as @c's status; a final one is written to c/<id>/exit and wakes watchers. */
void ap_ctr_set_status(struct ap_ctr *c, const struct ag_status *st);
/* The box is gone: every container that has not exited did, with @why. Under p->mu. */
void ap_pod_all_exited(struct ap_pod *p, const char *why);

/* ap-log.c: a chunk of a container's output, in the CRI log format. */
void ap_log_chunk(struct ap_ctr *c, int64_t seq, int chan, int64_t time_ns, const uint8_t *data,
                  size_t len, bool partial);
int ap_log_open(struct ap_ctr *c);
