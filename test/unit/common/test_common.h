#pragma once

#include <stddef.h>

/* One cmocka group per file of common/; each returns its number of failed tests. */
int test_error_run(void);
int test_log_run(void);
int test_exec_run(void);
int test_json_run(void);
int test_validate_run(void);
int test_strutil_run(void);
int test_fdpass_run(void);
int test_nofollow_run(void);
int test_fswalk_run(void);
int test_cgstats_run(void);
int test_cgroup_run(void);
int test_metrics_run(void);
int test_notify_run(void);

/* A fresh directory under $TMPDIR (or /tmp), malloc'd; removed with test_tmpdir_remove(). */
char *test_tmpdir_new(void);
void test_tmpdir_remove(char *dir);

/* Number of open fds of this process (entries of /proc/self/fd, minus the one used to list). */
int test_count_fds(void);
