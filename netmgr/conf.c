/* CNI network configuration: finding, parsing and validating it (libcni's conf.go semantics). */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "json.h"
#include "netmgr.h"
#include "strutil.h"

/* Config files larger than this are refused rather than parsed. */
#define NET_CONF_MAX (1 << 20)

static const char *const supported_versions[] = {"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0", NULL};

void net_conf_done(struct net_conf *c)
{
        if (!c)
                return;
        free(c->path);
        free(c->name);
        free(c->cni_version);
        for (size_t i = 0; i < c->n_plugins; i++) {
                free(c->plugin_types[i]);
                free(c->plugin_paths[i]);
        }
        free(c->plugin_types);
        free(c->plugin_paths);
        if (c->list)
                json_object_put(c->list);
        memset(c, 0, sizeof(*c));
}

static bool has_suffix(const char *s, const char *suf)
{
        size_t a = strlen(s), b = strlen(suf);

        return a > b && strcmp(s + a - b, suf) == 0;
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The sorted candidate file names of @dir (malloc'd strv). */
static int list_candidates(const char *dir, char ***ret, size_t *ret_n)
{
        DIR *d = opendir(dir);
        char **v = NULL;
        size_t n = 0;
        struct dirent *de;

        if (!d)
                return -errno;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                if (!has_suffix(de->d_name, ".conflist") && !has_suffix(de->d_name, ".conf") &&
                    !has_suffix(de->d_name, ".json"))
                        continue;
                char **nv = realloc(v, (n + 2) * sizeof(*v));
                if (!nv)
                        goto oom;
                v = nv;
                v[n] = strdup(de->d_name);
                if (!v[n])
                        goto oom;
                v[++n] = NULL;
        }
        closedir(d);
        if (n)
                qsort(v, n, sizeof(*v), cmp_str);
        *ret = v;
        *ret_n = n;
        return 0;
oom:
        closedir(d);
        sh_strv_free(v);
        return -ENOMEM;
}

static char *find_plugin(char *const *bin_dirs, const char *type)
{
        for (size_t i = 0; bin_dirs && bin_dirs[i]; i++) {
                char *p = sh_path_join(bin_dirs[i], type);

                if (p && access(p, X_OK) == 0)
                        return p;
                free(p);
        }
        return NULL;
}

static bool valid_version(const char *v)
{
        for (size_t i = 0; supported_versions[i]; i++)
                if (strcmp(v, supported_versions[i]) == 0)
                        return true;
        return false;
}

/* Parses and validates one file into @c. -EINVAL with a message when it is not usable. */
static int load_file(const char *path, char *const *bin_dirs, struct net_conf *c,
                     struct sh_error *err)
{
        _cleanup_free_ char *buf = NULL;
        json_object *root = NULL, *plugins = NULL;
        const char *name = NULL, *version = NULL;
        size_t len;
        int r;

        r = sh_read_file(path, NET_CONF_MAX, &buf, &len);
        if (r < 0)
                return sh_err(err, r, "read %s: %s", path, strerror(-r));
        r = sh_json_parse(buf, len, path, &root, err);
        if (r < 0)
                return r;
        c->path = strdup(path);
        r = sh_json_get_array(root, "plugins", path, &plugins, err);
        if (r == -ENOENT) {
                /* A single-plugin .conf: wrap it in a list as libcni's ConfListFromConf does. */
                json_object *list = json_object_new_object();
                json_object *arr = json_object_new_array();
                json_object *v;

                if (json_object_object_get_ex(root, "name", &v))
                        json_object_object_add(list, "name", json_object_get(v));
                if (json_object_object_get_ex(root, "cniVersion", &v))
                        json_object_object_add(list, "cniVersion", json_object_get(v));
                json_object_array_add(arr, root);
                json_object_object_add(list, "plugins", arr);
                root = list;
                plugins = arr;
        } else if (r < 0) {
                json_object_put(root);
                return r;
        }
        c->list = root;
        if (sh_json_get_string(root, "name", path, &name, err) < 0 || !name[0])
                return sh_err(err, -EINVAL, "%s: the network has no \"name\"", path);
        if (sh_json_get_string(root, "cniVersion", path, &version, err) < 0)
                return sh_err(err, -EINVAL, "%s: no \"cniVersion\"", path);
        if (!valid_version(version))
                return sh_err(err, -EINVAL, "%s: cniVersion \"%s\" is not supported", path,
                              version);
        c->name = strdup(name);
        c->cni_version = strdup(version);
        c->n_plugins = json_object_array_length(plugins);
        if (c->n_plugins == 0)
                return sh_err(err, -EINVAL, "%s: \"plugins\" is empty", path);
        c->plugin_types = calloc(c->n_plugins, sizeof(char *));
        c->plugin_paths = calloc(c->n_plugins, sizeof(char *));
        if (!c->plugin_types || !c->plugin_paths || !c->name || !c->cni_version || !c->path)
                return -ENOMEM;
        for (size_t i = 0; i < c->n_plugins; i++) {
                json_object *p = json_object_array_get_idx(plugins, i);
                const char *type = NULL;

                if (!json_object_is_type(p, json_type_object))
                        return sh_err(err, -EINVAL, "%s: plugin %zu is not an object", path, i);
                if (sh_json_get_string(p, "type", path, &type, err) < 0 || !type[0])
                        return sh_err(err, -EINVAL, "%s: plugin %zu has no \"type\"", path, i);
                if (strchr(type, '/') || strcmp(type, "..") == 0)
                        return sh_err(err, -EINVAL, "%s: plugin type \"%s\" is not a name", path,
                                      type);
                c->plugin_types[i] = strdup(type);
                c->plugin_paths[i] = find_plugin(bin_dirs, type);
                if (!c->plugin_types[i])
                        return -ENOMEM;
                if (!c->plugin_paths[i])
                        return sh_err(err, -ENOENT,
                                      "%s: plugin \"%s\" was not found in the CNI bin dirs", path,
                                      type);
        }
        return 0;
}

int net_conf_load(const char *conf_dir, char *const *bin_dirs, struct net_conf *ret,
                  struct sh_error *err)
{
        _cleanup_strv_ char **names = NULL;
        struct sh_error first = {0};
        size_t n = 0;
        int r;

        memset(ret, 0, sizeof(*ret));
        r = list_candidates(conf_dir, &names, &n);
        if (r == -ENOENT || (r == 0 && n == 0))
                return sh_err(err, -ENOENT, "no network config found in %s", conf_dir);
        if (r < 0)
                return sh_err(err, r, "read %s: %s", conf_dir, strerror(-r));
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *path = sh_path_join(conf_dir, names[i]);
                struct sh_error e = {0};

                if (!path)
                        return -ENOMEM;
                r = load_file(path, bin_dirs, ret, &e);
                if (r == 0)
                        return 0;
                net_conf_done(ret);
                if (r == -ENOMEM)
                        return r;
                if (!first.msg[0])
                        first = e;
        }
        return sh_err(err, -EINVAL, "no valid network config in %s: %s", conf_dir, first.msg);
}
