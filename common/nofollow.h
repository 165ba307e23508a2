#pragma once

#include <stdbool.h>

/*
 * Paths that something other than runtd may have planted symlinks in (the kubelet's log
 * directory, which a pod with a hostPath of /var/log/pods can write) are walked from "/"
 * one component at a time with O_NOFOLLOW, so a symlink anywhere in them is refused, never
 * followed. No dependency beyond libc: runt-lxc-shim compiles this file in.
 */

/*
 * Opens the directory @path (absolute; "." and ".." components are refused) as an
 * O_PATH|O_DIRECTORY|O_CLOEXEC fd, making the missing components with @mode when @create.
 * Returns the fd or -errno: -ENOTDIR when a component is a symlink or no directory,
 * -EINVAL for a relative path or a "."/".." component.
 */
int sh_open_dir_nofollow(const char *path, bool create, unsigned mode);

/*
 * Opens the regular file @path for appending (O_WRONLY|O_APPEND|O_CLOEXEC), creating it
 * with @mode, none of its components followed if a symlink. Returns the fd or -errno:
 * -ELOOP when the file is a symlink, -EINVAL when it is no regular file (a FIFO would
 * block the writer), else as sh_open_dir_nofollow() for its directory.
 */
int sh_open_append_nofollow(const char *path, unsigned mode);
