/* netmgr/conf.c and netmgr.c: finding and validating the CNI network config; hostport.c: host
 * port claims and the portmap runs of pods networked elsewhere (with a recording stand-in). */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "config.h"
#include "json.h"
#include "netmgr-internal.h"
#include "netmgr.h"
#include "strutil.h"

struct fixture {
        char base[64];
        char conf[96];
        char bin[96];
        char bin2[96];
        char *bins[3]; /* {bin, NULL} or {bin, bin2, NULL} */
};

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
        (void)st;
        (void)type;
        (void)ftw;
        return remove(path);
}

static void write_file_mode(const char *dir, const char *name, const char *text, mode_t mode)
{
        char path[256];
        int fd;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
        assert_int_equal(fchmod(fd, mode), 0);
        close(fd);
}

static void write_conf(struct fixture *f, const char *name, const char *text)
{
        write_file_mode(f->conf, name, text, 0644);
}

static void remove_conf(struct fixture *f, const char *name)
{
        char path[256];

        snprintf(path, sizeof(path), "%s/%s", f->conf, name);
        assert_int_equal(unlink(path), 0);
}

static int setup(void **state)
{
        static const char *const plugins[] = {"bridge", "host-local", "portmap"};
        struct fixture *f = calloc(1, sizeof(*f));

        if (!f)
                return -1;
        snprintf(f->base, sizeof(f->base), "/tmp/runt-netmgr-XXXXXX");
        if (!mkdtemp(f->base)) {
                free(f);
                return -1;
        }
        snprintf(f->conf, sizeof(f->conf), "%s/net.d", f->base);
        snprintf(f->bin, sizeof(f->bin), "%s/bin", f->base);
        snprintf(f->bin2, sizeof(f->bin2), "%s/bin2", f->base);
        if (mkdir(f->conf, 0755) < 0 || mkdir(f->bin, 0755) < 0 || mkdir(f->bin2, 0755) < 0)
                return -1;
        /* Stand-ins for the plugins: executable, never run by these tests. */
        for (size_t i = 0; i < sizeof(plugins) / sizeof(plugins[0]); i++)
                write_file_mode(f->bin, plugins[i], "#!/bin/false\n", 0755);
        /* Present but not executable: must not count as found. */
        write_file_mode(f->bin, "noexec", "#!/bin/false\n", 0644);
        f->bins[0] = f->bin;
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;

        nftw(f->base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        free(f);
        return 0;
}

static const char conflist_bridge[] =
        "{\n"
        "  \"cniVersion\": \"1.0.0\",\n"
        "  \"name\": \"runt-net\",\n"
        "  \"plugins\": [\n"
        "    {\"type\": \"bridge\", \"bridge\": \"cni0\", \"isGateway\": true,\n"
        "     \"ipam\": {\"type\": \"host-local\", \"ranges\": [[{\"subnet\": "
        "\"10.88.0.0/16\"}]]}},\n"
        "    {\"type\": \"portmap\", \"capabilities\": {\"portMappings\": true}}\n"
        "  ]\n"
        "}\n";

/* A conflist named @name with one plugin of @type and version @version. */
static void write_simple(struct fixture *f, const char *file, const char *name, const char *type,
                         const char *version)
{
        char text[512];

        snprintf(text, sizeof(text),
                 "{\"cniVersion\": \"%s\", \"name\": \"%s\", \"plugins\": [{\"type\": \"%s\"}]}",
                 version, name, type);
        write_conf(f, file, text);
}

static void join(char *buf, size_t size, const char *dir, const char *name)
{
        snprintf(buf, size, "%s/%s", dir, name);
}

static void test_valid_conflist(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct net_conf c;
        json_object *plugins = NULL, *v = NULL;
        char want[256];

        write_conf(f, "10-runt.conflist", conflist_bridge);
        assert_int_equal(net_conf_load(f->conf, f->bins, &c, &err), 0);
        assert_int_equal(err.code, 0);
        join(want, sizeof(want), f->conf, "10-runt.conflist");
        assert_string_equal(c.path, want);
        assert_string_equal(c.name, "runt-net");
        assert_string_equal(c.cni_version, "1.0.0");
        assert_int_equal(c.n_plugins, 2);
        assert_string_equal(c.plugin_types[0], "bridge");
        assert_string_equal(c.plugin_types[1], "portmap");
        join(want, sizeof(want), f->bin, "bridge");
        assert_string_equal(c.plugin_paths[0], want);
        join(want, sizeof(want), f->bin, "portmap");
        assert_string_equal(c.plugin_paths[1], want);

        assert_non_null(c.list);
        assert_true(json_object_object_get_ex(c.list, "plugins", &plugins));
        assert_int_equal(json_object_array_length(plugins), 2);
        assert_true(json_object_object_get_ex(json_object_array_get_idx(plugins, 0), "bridge", &v));
        assert_string_equal(json_object_get_string(v), "cni0");
        net_conf_done(&c);
}

static void test_single_conf_is_wrapped(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct net_conf c;
        json_object *plugins = NULL, *v = NULL, *p0;
        char want[256];

        write_conf(f, "10-bridge.conf",
                   "{\"cniVersion\": \"0.4.0\", \"name\": \"single\", \"type\": \"bridge\", "
                   "\"bridge\": \"cni1\", \"ipam\": {\"type\": \"host-local\"}}");
        assert_int_equal(net_conf_load(f->conf, f->bins, &c, &err), 0);
        assert_string_equal(c.name, "single");
        assert_string_equal(c.cni_version, "0.4.0");
        assert_int_equal(c.n_plugins, 1);
        assert_string_equal(c.plugin_types[0], "bridge");
        join(want, sizeof(want), f->bin, "bridge");
        assert_string_equal(c.plugin_paths[0], want);

        /* The list: name and cniVersion lifted up, the whole .conf as plugins[0]. */
        assert_true(json_object_object_get_ex(c.list, "name", &v));
        assert_string_equal(json_object_get_string(v), "single");
        assert_true(json_object_object_get_ex(c.list, "cniVersion", &v));
        assert_string_equal(json_object_get_string(v), "0.4.0");
        assert_true(json_object_object_get_ex(c.list, "plugins", &plugins));
        assert_true(json_object_is_type(plugins, json_type_array));
        assert_int_equal(json_object_array_length(plugins), 1);
        p0 = json_object_array_get_idx(plugins, 0);
        assert_true(json_object_object_get_ex(p0, "type", &v));
        assert_string_equal(json_object_get_string(v), "bridge");
        assert_true(json_object_object_get_ex(p0, "bridge", &v));
        assert_string_equal(json_object_get_string(v), "cni1");
        net_conf_done(&c);
}

static void test_json_extension(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct net_conf c;

        write_simple(f, "net.json", "from-json", "bridge", "0.3.1");
        assert_int_equal(net_conf_load(f->conf, f->bins, &c, &err), 0);
        assert_string_equal(c.name, "from-json");
        net_conf_done(&c);
}

static void test_lexical_order_first_valid_wins(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct net_conf c;

        /* Created in reverse so directory order is unlikely to match lexical order. */
        write_simple(f, "99-last.conflist", "last", "bridge", "1.0.0");
        write_simple(f, "20-middle.conf", "middle", "bridge", "1.0.0");
        write_simple(f, "10-first.conflist", "first", "bridge", "1.0.0");
        assert_int_equal(net_conf_load(f->conf, f->bins, &c, &err), 0);
        assert_string_equal(c.name, "first");
        net_conf_done(&c);

        /* Byte order, not numeric order: "100" sorts before "20". */
        write_simple(f, "100-hundred.conflist", "hundred", "bridge", "1.0.0");
        remove_conf(f, "10-first.conflist");
        assert_int_equal(net_conf_load(f->conf, f->bins, &c, &err), 0);
        assert_string_equal(c.name, "hundred");
        net_conf_done(&c);
}

static void test_invalid_first_is_skipped(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct net_conf c;
        char want[256];

        write_conf(f, "00-broken.conflist", "{ this is not json");
        write_simple(f, "05-novers.conflist", "novers", "bridge", "9.9.9");
        write_simple(f, "07-nobin.conflist", "nobin", "flannel", "1.0.0");
        write_conf(f, "10-good.conflist", conflist_bridge);
        assert_int_equal(net_conf_load(f->conf, f->bins, &c, &err), 0);
        assert_int_equal(err.code, 0);
        assert_string_equal(c.name, "runt-net");
        join(want, sizeof(want), f->conf, "10-good.conflist");
        assert_string_equal(c.path, want);
        net_conf_done(&c);
}

static void test_empty_and_missing_dir(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct net_conf c;
        char missing[128];

        assert_int_equal(net_conf_load(f->conf, f->bins, &c, &err), -ENOENT);
        assert_int_equal(err.code, -ENOENT);
        assert_non_null(strstr(err.msg, f->conf));
        /* @ret is usable (zeroed) after a failure, and done on it is harmless. */
        assert_null(c.name);
        assert_int_equal(c.n_plugins, 0);
        net_conf_done(&c);

        snprintf(missing, sizeof(missing), "%s/nope", f->base);
        assert_int_equal(net_conf_load(missing, f->bins, &c, &err), -ENOENT);
        assert_non_null(strstr(err.msg, missing));

        /* A file where the dir should be: an error naming it, not a crash. */
        snprintf(missing, sizeof(missing), "%s/bridge", f->bin);
        assert_int_equal(net_conf_load(missing, f->bins, &c, &err), -ENOTDIR);
        assert_non_null(strstr(err.msg, missing));
}

static void test_other_files_ignored(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct net_conf c;
        char sub[128];

        write_conf(f, "10-net.conflist.bak", conflist_bridge);
        write_conf(f, "README", conflist_bridge);
        write_conf(f, "net.yaml", conflist_bridge);
        write_conf(f, ".hidden.conflist", conflist_bridge);
        write_conf(f, "conf", conflist_bridge);
        assert_int_equal(net_conf_load(f->conf, f->bins, &c, &err), -ENOENT);

        /* ".conf" alone has no name before the suffix: not a candidate either. */
        write_conf(f, ".conf", conflist_bridge);
        assert_int_equal(net_conf_load(f->conf, f->bins, &c, &err), -ENOENT);

        /* A directory with a candidate name is skipped, not fatal. */
        snprintf(sub, sizeof(sub), "%s/00-dir.conf", f->conf);
        assert_int_equal(mkdir(sub, 0755), 0);
        write_conf(f, "50-net.conflist", conflist_bridge);
        assert_int_equal(net_conf_load(f->conf, f->bins, &c, &err), 0);
        assert_string_equal(c.name, "runt-net");
        net_conf_done(&c);
}

static void test_all_invalid(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct net_conf c;

        write_conf(f, "20-second.conflist", "[1, 2");
        write_conf(f, "10-first.conf", "not json at all");
        assert_int_equal(net_conf_load(f->conf, f->bins, &c, &err), -EINVAL);
        assert_int_equal(err.code, -EINVAL);
        /* The message names the conf dir and the lexically first candidate. */
        assert_non_null(strstr(err.msg, f->conf));
        assert_non_null(strstr(err.msg, "10-first.conf"));
        assert_null(c.name);
        assert_null(c.list);
        net_conf_done(&c);
}

/* Loads a conf dir holding only @text as 10-x.conflist; expects -EINVAL mentioning @needle. */
static void expect_invalid(struct fixture *f, const char *text, const char *needle)
{
        struct sh_error err = {0};
        struct net_conf c;

        write_conf(f, "10-x.conflist", text);
        assert_int_equal(net_conf_load(f->conf, f->bins, &c, &err), -EINVAL);
        if (!strstr(err.msg, needle))
                fail_msg("message \"%s\" does not contain \"%s\"", err.msg, needle);
        assert_non_null(strstr(err.msg, "10-x.conflist"));
        assert_null(c.list);
        assert_null(c.plugin_types);
        assert_null(c.path);
        remove_conf(f, "10-x.conflist");
}

static void test_missing_plugin_binary(void **state)
{
        struct fixture *f = *state;

        expect_invalid(f,
                       "{\"cniVersion\": \"1.0.0\", \"name\": \"n\", \"plugins\": "
                       "[{\"type\": \"bridge\"}, {\"type\": \"calico\"}]}",
                       "\"calico\"");
        /* Present but not executable. */
        expect_invalid(f,
                       "{\"cniVersion\": \"1.0.0\", \"name\": \"n\", \"plugins\": "
                       "[{\"type\": \"noexec\"}]}",
                       "noexec");
        /* No bin dirs at all. */
        {
                struct sh_error err = {0};
                struct net_conf c;

                write_conf(f, "10-x.conflist", conflist_bridge);
                assert_int_equal(net_conf_load(f->conf, NULL, &c, &err), -EINVAL);
                assert_non_null(strstr(err.msg, "bridge"));
        }
}

static void test_bin_dirs_in_order(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct net_conf c;
        char want[256];

        /* bin2 first: it lacks bridge, so bridge comes from bin; portmap from bin2. */
        write_file_mode(f->bin2, "portmap", "#!/bin/false\n", 0755);
        f->bins[0] = f->bin2;
        f->bins[1] = f->bin;
        f->bins[2] = NULL;
        write_conf(f, "10-runt.conflist", conflist_bridge);
        assert_int_equal(net_conf_load(f->conf, f->bins, &c, &err), 0);
        join(want, sizeof(want), f->bin, "bridge");
        assert_string_equal(c.plugin_paths[0], want);
        join(want, sizeof(want), f->bin2, "portmap");
        assert_string_equal(c.plugin_paths[1], want);
        net_conf_done(&c);
}

static void test_unsupported_version(void **state)
{
        struct fixture *f = *state;

        expect_invalid(f,
                       "{\"cniVersion\": \"0.2.0\", \"name\": \"n\", \"plugins\": "
                       "[{\"type\": \"bridge\"}]}",
                       "cniVersion \"0.2.0\" is not supported");
        expect_invalid(f, "{\"name\": \"n\", \"plugins\": [{\"type\": \"bridge\"}]}", "cniVersion");
        expect_invalid(f,
                       "{\"cniVersion\": 1, \"name\": \"n\", \"plugins\": "
                       "[{\"type\": \"bridge\"}]}",
                       "cniVersion");
}

static void test_supported_versions(void **state)
{
        static const char *const versions[] = {"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"};
        struct fixture *f = *state;

        for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
                struct sh_error err = {0};
                struct net_conf c;

                write_simple(f, "10-v.conflist", "v", "bridge", versions[i]);
                assert_int_equal(net_conf_load(f->conf, f->bins, &c, &err), 0);
                assert_string_equal(c.cni_version, versions[i]);
                net_conf_done(&c);
        }
}

static void test_missing_name(void **state)
{
        struct fixture *f = *state;

        expect_invalid(f, "{\"cniVersion\": \"1.0.0\", \"plugins\": [{\"type\": \"bridge\"}]}",
                       "\"name\"");
        expect_invalid(f,
                       "{\"cniVersion\": \"1.0.0\", \"name\": \"\", \"plugins\": "
                       "[{\"type\": \"bridge\"}]}",
                       "\"name\"");
        expect_invalid(f,
                       "{\"cniVersion\": \"1.0.0\", \"name\": [], \"plugins\": "
                       "[{\"type\": \"bridge\"}]}",
                       "\"name\"");
        /* A single-plugin .conf without a name. */
        expect_invalid(f, "{\"cniVersion\": \"1.0.0\", \"type\": \"bridge\"}", "\"name\"");
}

static void test_bad_plugins(void **state)
{
        struct fixture *f = *state;

        expect_invalid(f, "{\"cniVersion\": \"1.0.0\", \"name\": \"n\", \"plugins\": []}", "empty");
        expect_invalid(f, "{\"cniVersion\": \"1.0.0\", \"name\": \"n\", \"plugins\": {}}",
                       "plugins");
        expect_invalid(f, "{\"cniVersion\": \"1.0.0\", \"name\": \"n\", \"plugins\": [\"bridge\"]}",
                       "plugin 0 is not an object");
        expect_invalid(f,
                       "{\"cniVersion\": \"1.0.0\", \"name\": \"n\", \"plugins\": "
                       "[{\"type\": \"bridge\"}, {\"ipam\": {}}]}",
                       "plugin 1 has no \"type\"");
        expect_invalid(f,
                       "{\"cniVersion\": \"1.0.0\", \"name\": \"n\", \"plugins\": "
                       "[{\"type\": \"\"}]}",
                       "plugin 0 has no \"type\"");
}

static void test_plugin_type_not_a_name(void **state)
{
        struct fixture *f = *state;
        char text[512];

        /* Even when the path would resolve to an executable, a type with '/' is refused. */
        snprintf(text, sizeof(text),
                 "{\"cniVersion\": \"1.0.0\", \"name\": \"n\", \"plugins\": "
                 "[{\"type\": \"%s/bridge\"}]}",
                 f->bin);
        expect_invalid(f, text, "is not a name");
        expect_invalid(f,
                       "{\"cniVersion\": \"1.0.0\", \"name\": \"n\", \"plugins\": "
                       "[{\"type\": \"../bin/bridge\"}]}",
                       "\"../bin/bridge\" is not a name");
        expect_invalid(f,
                       "{\"cniVersion\": \"1.0.0\", \"name\": \"n\", \"plugins\": "
                       "[{\"type\": \"..\"}]}",
                       "is not a name");
}

static void test_not_json(void **state)
{
        struct fixture *f = *state;

        expect_invalid(f, "{\"cniVersion\": \"1.0.0\", \"name\": \"n\"", "10-x.conflist");
        expect_invalid(f, "", "10-x.conflist");
        expect_invalid(f, "null", "10-x.conflist");
        expect_invalid(f, "[{\"type\": \"bridge\"}]", "10-x.conflist");
        expect_invalid(f, "\"bridge\"", "10-x.conflist");
        expect_invalid(f, "{} {}", "10-x.conflist");
}

static void test_oversized_file_skipped(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct net_conf c;
        size_t n = (1u << 20) + 16;
        char *big = malloc(n + 1);

        assert_non_null(big);
        memset(big, ' ', n);
        big[0] = '{';
        big[n - 1] = '}';
        big[n] = '\0';
        write_conf(f, "00-big.conflist", big);
        free(big);
        assert_int_equal(net_conf_load(f->conf, f->bins, &c, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "00-big.conflist"));

        write_conf(f, "10-ok.conflist", conflist_bridge);
        assert_int_equal(net_conf_load(f->conf, f->bins, &c, &err), 0);
        assert_string_equal(c.name, "runt-net");
        net_conf_done(&c);
}

static void test_done_twice(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct net_conf c;

        write_conf(f, "10-runt.conflist", conflist_bridge);
        assert_int_equal(net_conf_load(f->conf, f->bins, &c, &err), 0);
        net_conf_done(&c);
        assert_null(c.list);
        assert_null(c.plugin_types);
        assert_int_equal(c.n_plugins, 0);
        net_conf_done(&c);
        net_conf_done(NULL);

        /* Reloading into a done struct works. */
        assert_int_equal(net_conf_load(f->conf, f->bins, &c, &err), 0);
        assert_string_equal(c.name, "runt-net");
        net_conf_done(&c);
}

/* net_mgr over a config pointed at the fixture's dirs. */

static void config_for(struct fixture *f, struct runt_config *cfg)
{
        struct sh_error err = {0};

        assert_int_equal(runt_config_defaults(cfg, &err), 0);
        free(cfg->cni_conf_dir);
        cfg->cni_conf_dir = strdup(f->conf);
        for (char **s = cfg->cni_bin_dirs; s && *s; s++)
                free(*s);
        free(cfg->cni_bin_dirs);
        cfg->cni_bin_dirs = calloc(2, sizeof(char *));
        assert_non_null(cfg->cni_bin_dirs);
        cfg->cni_bin_dirs[0] = strdup(f->bin);
        assert_non_null(cfg->cni_conf_dir);
        assert_non_null(cfg->cni_bin_dirs[0]);
}

static void test_mgr_condition(void **state)
{
        struct fixture *f = *state;
        struct runt_config cfg;
        struct sh_error err = {0};
        struct net_mgr *nm = NULL;
        struct sh_condition cond;

        config_for(f, &cfg);
        assert_int_equal(net_mgr_new(&cfg, &nm, &err), 0);

        net_mgr_condition(nm, &cond);
        assert_false(cond.ok);
        assert_string_equal(cond.reason, "NetworkPluginNotReady");
        assert_non_null(strstr(cond.message, "cni config not ready"));
        assert_non_null(strstr(cond.message, f->conf));

        /* Re-read on every call: a config dropped in turns it ready. */
        write_conf(f, "10-runt.conflist", conflist_bridge);
        net_mgr_condition(nm, &cond);
        assert_true(cond.ok);
        assert_string_equal(cond.reason, "");
        assert_string_equal(cond.message, "");

        /* And an invalid one turns it back, naming the file. */
        remove_conf(f, "10-runt.conflist");
        write_simple(f, "10-runt.conflist", "n", "weave", "1.0.0");
        net_mgr_condition(nm, &cond);
        assert_false(cond.ok);
        assert_string_equal(cond.reason, "NetworkPluginNotReady");
        assert_non_null(strstr(cond.message, "weave"));

        assert_null(net_mgr_free(nm));
        runt_config_done(&cfg);
}

static void test_mgr_info_json(void **state)
{
        struct fixture *f = *state;
        struct runt_config cfg;
        struct sh_error err = {0};
        struct net_mgr *nm = NULL;
        json_object *o, *v = NULL;
        char *s;

        config_for(f, &cfg);
        assert_int_equal(net_mgr_new(&cfg, &nm, &err), 0);

        s = net_mgr_info_json(nm);
        assert_non_null(s);
        o = json_tokener_parse(s);
        assert_non_null(o);
        assert_true(json_object_object_get_ex(o, "confDir", &v));
        assert_string_equal(json_object_get_string(v), f->conf);
        assert_true(json_object_object_get_ex(o, "binDirs", &v));
        assert_int_equal(json_object_array_length(v), 1);
        assert_string_equal(json_object_get_string(json_object_array_get_idx(v, 0)), f->bin);
        assert_true(json_object_object_get_ex(o, "error", &v));
        assert_false(json_object_object_get_ex(o, "network", NULL));
        json_object_put(o);
        free(s);

        write_conf(f, "10-runt.conflist", conflist_bridge);
        s = net_mgr_info_json(nm);
        assert_non_null(s);
        o = json_tokener_parse(s);
        assert_non_null(o);
        assert_true(json_object_object_get_ex(o, "network", &v));
        assert_string_equal(json_object_get_string(v), "runt-net");
        assert_true(json_object_object_get_ex(o, "configFile", &v));
        assert_non_null(strstr(json_object_get_string(v), "10-runt.conflist"));
        assert_true(json_object_object_get_ex(o, "config", &v));
        assert_true(json_object_is_type(v, json_type_object));
        assert_false(json_object_object_get_ex(o, "error", NULL));
        json_object_put(o);
        free(s);

        net_mgr_free(nm);
        runt_config_done(&cfg);
}

static char *slurp(const char *dir, const char *name)
{
        char path[512];
        char *buf = NULL;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        assert_int_equal(sh_read_file(path, 1 << 20, &buf, NULL), 0);
        return buf;
}

static void test_pod_files(void **state)
{
        struct fixture *f = *state;
        char dir[512];
        char *servers[] = {"10.96.0.10", "1.1.1.1", NULL};
        char *searches[] = {"ns.svc.cluster.local", "svc.cluster.local", NULL};
        char *options[] = {"ndots:5", NULL};
        char *ips[] = {"10.211.0.5", "fd00::5", NULL};
        struct net_dns dns = {.servers = servers, .searches = searches, .options = options};
        struct sh_error err = {0};
        struct stat st;
        char *s;

        snprintf(dir, sizeof(dir), "%s/pods/p1", f->base);
        assert_int_equal(net_write_pod_files(dir, &dns, "web-0", ips, &err), 0);
        s = slurp(dir, "resolv.conf");
        assert_string_equal(s, "search ns.svc.cluster.local svc.cluster.local\n"
                               "nameserver 10.96.0.10\nnameserver 1.1.1.1\noptions ndots:5\n");
        free(s);
        s = slurp(dir, "hostname");
        assert_string_equal(s, "web-0\n");
        free(s);
        s = slurp(dir, "hosts");
        assert_non_null(strstr(s, "127.0.0.1\tlocalhost\n"));
        assert_non_null(strstr(s, "10.211.0.5\tweb-0\n"));
        assert_non_null(strstr(s, "fd00::5\tweb-0\n"));
        free(s);
        snprintf(dir + strlen(dir), sizeof(dir) - strlen(dir), "/hosts");
        assert_int_equal(stat(dir, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0644);

        /* No DNSConfig: the host's resolv.conf as it is. */
        snprintf(dir, sizeof(dir), "%s/pods/p2", f->base);
        assert_int_equal(net_write_pod_files(dir, NULL, "h", NULL, &err), 0);
        s = slurp(dir, "resolv.conf");
        {
                char *host = NULL;

                if (sh_read_file("/etc/resolv.conf", 1 << 20, &host, NULL) == 0) {
                        assert_string_equal(s, host);
                        free(host);
                }
        }
        free(s);
        s = slurp(dir, "hosts");
        assert_null(strstr(s, "\th\n")); /* no addresses: no line for the name */
        free(s);
}

static void test_mgr_free_null(void **state)
{
        (void)state;
        assert_null(net_mgr_free(NULL));
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

/* A CNI result's addresses: prefix dropped, IPv4 first, unparseable ones left out (fuzz_cni_result
 * found "/fd00::" reported as the pod IP ""). */
static void test_result_facts_addresses(void **state)
{
        static const char text[] =
                "{\"ips\":[{\"address\":\"fd00::5/64\"},{\"address\":\"/fd00::\"},"
                "{\"address\":\"10.88.0.5/16\"},{\"address\":\"10.88.0\"},"
                "{\"address\":\"\"},{\"address\":7}]}";
        json_object *res = NULL;
        struct net_result r;

        (void)state;
        assert_int_equal(sh_json_parse(text, strlen(text), "t", &res, NULL), 0);
        assert_int_equal(net_result_facts(res, "n", &r), 0);
        assert_string_equal(r.ips[0], "10.88.0.5");
        assert_string_equal(r.ips[1], "fd00::5");
        assert_null(r.ips[2]);
        assert_string_equal(r.network, "n");
        net_result_done(&r);
        json_object_put(res);
}

/* ------------------------------------------------------------------ host ports */

/*
 * A portmap stand-in that keeps what it was given, beside itself: its stdin in
 * portmap.<COMMAND>.in, CNI_NETNS in portmap.<COMMAND>.netns, "<COMMAND> <id>" appended to
 * portmap.log; ADD prints a result, as portmap hands its prevResult back.
 */
static const char portmap_recorder[] =
        "#!/bin/sh\n"
        "d=$(dirname \"$0\")\n"
        "cat > \"$d/portmap.$CNI_COMMAND.in\"\n"
        "printf '%s' \"$CNI_NETNS\" > \"$d/portmap.$CNI_COMMAND.netns\"\n"
        "echo \"$CNI_COMMAND $CNI_CONTAINERID\" >> \"$d/portmap.log\"\n"
        "if [ \"$CNI_COMMAND\" = ADD ]; then\n"
        "  printf '{\"cniVersion\":\"1.0.0\",\"ips\":[{\"address\":\"10.88.7.10/24\"}]}'\n"
        "fi\n";

/* The fixture's config with a state dir of its own and the recorder as portmap. */
static void hostport_config(struct fixture *f, struct runt_config *cfg)
{
        char state[128], path[160];

        config_for(f, cfg);
        snprintf(state, sizeof(state), "%s/state", f->base);
        free(cfg->state_dir);
        cfg->state_dir = strdup(state);
        assert_non_null(cfg->state_dir);
        snprintf(path, sizeof(path), "%s/portmap", f->bin);
        assert_int_equal(unlink(path), 0);
        write_file_mode(f->bin, "portmap", portmap_recorder, 0755);
}

static struct net_pod pod_with(const char *id, const char *name, const struct net_port *ports,
                               size_t n)
{
        return (struct net_pod){.id = id,
                                .name = name,
                                .namespace = "default",
                                .uid = "uid",
                                .ports = ports,
                                .n_ports = n};
}

static bool has_cache(struct fixture *f, const char *id)
{
        char path[256];

        snprintf(path, sizeof(path), "%s/state/cni/%s.json", f->base, id);
        return access(path, F_OK) == 0;
}

static json_object *read_json(const char *dir, const char *name)
{
        char *text = slurp(dir, name);
        json_object *o = NULL;

        assert_int_equal(sh_json_parse(text, strlen(text), name, &o, NULL), 0);
        free(text);
        return o;
}

/* The string at @path ("a.b.0.c": keys and array indexes) in @o. */
static const char *json_at(json_object *o, const char *path)
{
        char buf[128], *save = NULL;

        snprintf(buf, sizeof(buf), "%s", path);
        for (char *k = strtok_r(buf, ".", &save); k; k = strtok_r(NULL, ".", &save)) {
                if (json_object_is_type(o, json_type_array))
                        o = json_object_array_get_idx(o, (size_t)atoi(k));
                else if (!json_object_object_get_ex(o, k, &o))
                        return NULL;
        }
        return o ? json_object_get_string(o) : NULL;
}

static bool collide(const char *a, const char *b)
{
        json_object *x = NULL, *y = NULL;
        bool r;

        assert_int_equal(sh_json_parse(a, strlen(a), "a", &x, NULL), 0);
        assert_int_equal(sh_json_parse(b, strlen(b), "b", &y, NULL), 0);
        r = net_port_maps_collide(x, y);
        assert_true(net_port_maps_collide(y, x) == r);
        json_object_put(x);
        json_object_put(y);
        return r;
}

/* One host port is one protocol, port and host address; unset and 0.0.0.0 / :: are all. */
static void test_port_maps_collide(void **state)
{
        (void)state;
        assert_true(collide("{\"hostPort\":80,\"protocol\":\"tcp\"}",
                            "{\"hostPort\":80,\"protocol\":\"TCP\",\"hostIP\":\"\"}"));
        assert_true(collide("{\"hostPort\":80}", "{\"hostPort\":80,\"protocol\":\"tcp\"}"));
        assert_false(collide("{\"hostPort\":80,\"protocol\":\"tcp\"}",
                             "{\"hostPort\":80,\"protocol\":\"udp\"}"));
        assert_false(collide("{\"hostPort\":80}", "{\"hostPort\":81}"));
        assert_false(collide("{\"hostPort\":0}", "{\"hostPort\":0}"));
        assert_true(collide("{\"hostPort\":80,\"hostIP\":\"10.0.0.1\"}", "{\"hostPort\":80}"));
        assert_true(collide("{\"hostPort\":80,\"hostIP\":\"10.0.0.1\"}",
                            "{\"hostPort\":80,\"hostIP\":\"0.0.0.0\"}"));
        assert_true(collide("{\"hostPort\":80,\"hostIP\":\"fd00::1\"}",
                            "{\"hostPort\":80,\"hostIP\":\"::\"}"));
        assert_true(collide("{\"hostPort\":80,\"hostIP\":\"fd00::1\"}",
                            "{\"hostPort\":80,\"hostIP\":\"fd00:0::1\"}"));
        assert_true(collide("{\"hostPort\":80,\"hostIP\":\"10.0.0.1\"}",
                            "{\"hostPort\":80,\"hostIP\":\"10.0.0.1\"}"));
        assert_false(collide("{\"hostPort\":80,\"hostIP\":\"10.0.0.1\"}",
                             "{\"hostPort\":80,\"hostIP\":\"10.0.0.2\"}"));
}

/* A claim holds its ports until its pod's teardown; another pod asking one is refused. */
static void test_hostports_claim(void **state)
{
        struct fixture *f = *state;
        static const struct net_port web[] = {{"tcp", 8080, 30080, ""}};
        static const struct net_port web_udp[] = {{"udp", 8080, 30080, ""}};
        static const struct net_port on_ip[] = {{"tcp", 80, 30080, "10.1.2.3"}};
        static const struct net_port none[] = {{"tcp", 80, 0, ""}};
        struct net_pod a = pod_with("pod-a", "a", web, 1), b = pod_with("pod-b", "b", web, 1);
        struct net_pod c = pod_with("pod-c", "c", on_ip, 1);
        struct net_pod u = pod_with("pod-u", "u", web_udp, 1);
        struct net_pod z = pod_with("pod-z", "z", none, 1);
        struct runt_config cfg;
        struct sh_error err = {0};
        struct net_mgr *nm = NULL;
        char dir[128];
        json_object *doc;

        hostport_config(f, &cfg);
        assert_int_equal(net_mgr_new(&cfg, &nm, &err), 0);

        assert_int_equal(net_hostports_claim(nm, &a, &err), 0);
        snprintf(dir, sizeof(dir), "%s/state/cni", f->base);
        doc = read_json(dir, "pod-a.json");
        assert_string_equal(json_at(doc, "hostPortsOnly"), "true");
        assert_string_equal(json_at(doc, "netns"), "");
        assert_string_equal(json_at(doc, "config.name"), "runt-hostport");
        assert_string_equal(json_at(doc, "config.plugins.0.type"), "portmap");
        assert_string_equal(json_at(doc, "runtimeConfig.portMappings.0.hostPort"), "30080");
        assert_null(json_at(doc, "result"));
        json_object_put(doc);

        assert_int_equal(net_hostports_claim(nm, &b, &err), -EADDRINUSE);
        assert_non_null(strstr(err.msg, "host port 30080/tcp is already mapped by pod default/a"));
        assert_non_null(strstr(err.msg, "pod-a"));
        assert_false(has_cache(f, "pod-b"));
        assert_int_equal(net_hostports_claim(nm, &c, &err), -EADDRINUSE);
        assert_non_null(strstr(err.msg, "30080/tcp on 10.1.2.3"));
        assert_int_equal(net_hostports_claim(nm, &u, &err), 0);
        /* Host port 0 only declares a container port: nothing is claimed. */
        assert_int_equal(net_hostports_claim(nm, &z, &err), 0);
        assert_false(has_cache(f, "pod-z"));
        /* A pod's own claim is no collision (its setup writes it again). */
        assert_int_equal(net_hostports_claim(nm, &a, &err), 0);

        assert_int_equal(net_teardown(nm, "pod-a", &err), 0);
        assert_false(has_cache(f, "pod-a"));
        assert_int_equal(net_hostports_claim(nm, &b, &err), 0);
        assert_int_equal(net_teardown(nm, "pod-b", &err), 0);
        assert_int_equal(net_teardown(nm, "pod-u", &err), 0);

        net_mgr_free(nm);
        runt_config_done(&cfg);
}

/*
 * Setup runs portmap alone with the pod's address as prevResult and a CNI_NETNS that is no
 * namespace; restore runs that ADD again from the cache; teardown DELs with no netns.
 */
static void test_hostports_setup_restore_teardown(void **state)
{
        struct fixture *f = *state;
        static const struct net_port web[] = {{"tcp", 8080, 30080, ""}, {"udp", 53, 0, ""}};
        struct net_pod a = pod_with("pod-a", "a", web, 2), b = pod_with("pod-b", "b", web, 1);
        char *cidrs[] = {"10.88.7.10/24", NULL}, *bare[] = {"10.88.7.11", NULL};
        char *bad[] = {"10.88.7", NULL}, *bad_prefix[] = {"10.88.7.12/33", NULL};
        struct runt_config cfg;
        struct sh_error err = {0};
        struct net_mgr *nm = NULL;
        json_object *in;
        char *s, dir[128];

        hostport_config(f, &cfg);
        assert_int_equal(net_mgr_new(&cfg, &nm, &err), 0);
        assert_int_equal(net_hostports_claim(nm, &a, &err), 0);
        assert_int_equal(net_hostports_setup(nm, &a, cidrs, &err), 0);

        in = read_json(f->bin, "portmap.ADD.in");
        assert_string_equal(json_at(in, "name"), "runt-hostport");
        assert_string_equal(json_at(in, "cniVersion"), "1.0.0");
        assert_string_equal(json_at(in, "prevResult.ips.0.address"), "10.88.7.10/24");
        assert_null(json_at(in, "prevResult.interfaces"));
        assert_string_equal(json_at(in, "runtimeConfig.portMappings.0.hostPort"), "30080");
        assert_string_equal(json_at(in, "runtimeConfig.portMappings.0.containerPort"), "8080");
        assert_string_equal(json_at(in, "runtimeConfig.portMappings.0.protocol"), "tcp");
        assert_null(json_at(in, "runtimeConfig.portMappings.1")); /* host port 0: left out */
        json_object_put(in);
        s = slurp(f->bin, "portmap.ADD.netns");
        assert_string_equal(s, "/proc/self/ns/none");
        free(s);
        snprintf(dir, sizeof(dir), "%s/state/cni", f->base);
        in = read_json(dir, "pod-a.json");
        assert_string_equal(json_at(in, "result.ips.0.address"), "10.88.7.10/24");
        json_object_put(in);

        /* After a restart: the same ADD again. */
        assert_int_equal(net_hostports_restore(nm, "pod-a", &err), 0);
        s = slurp(f->bin, "portmap.log");
        assert_string_equal(s, "ADD pod-a\nADD pod-a\n");
        free(s);

        assert_int_equal(net_teardown(nm, "pod-a", &err), 0);
        s = slurp(f->bin, "portmap.DEL.netns");
        assert_string_equal(s, "");
        free(s);
        in = read_json(f->bin, "portmap.DEL.in");
        assert_string_equal(json_at(in, "runtimeConfig.portMappings.0.hostPort"), "30080");
        json_object_put(in);
        assert_false(has_cache(f, "pod-a"));
        /* Nothing cached: nothing to restore. */
        assert_int_equal(net_hostports_restore(nm, "pod-a", &err), 0);
        s = slurp(f->bin, "portmap.log");
        assert_string_equal(s, "ADD pod-a\nADD pod-a\nDEL pod-a\n");
        free(s);

        /* A bare address is the pod's alone; what is no address is refused before any run. */
        assert_int_equal(net_hostports_setup(nm, &b, bare, &err), 0);
        in = read_json(f->bin, "portmap.ADD.in");
        assert_string_equal(json_at(in, "prevResult.ips.0.address"), "10.88.7.11/32");
        json_object_put(in);
        assert_int_equal(net_teardown(nm, "pod-b", &err), 0);
        assert_int_equal(net_hostports_setup(nm, &b, bad, &err), -EINVAL);
        assert_int_equal(net_hostports_setup(nm, &b, bad_prefix, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "prefix"));
        assert_false(has_cache(f, "pod-b"));

        net_mgr_free(nm);
        runt_config_done(&cfg);
}

/* No portmap in the bin dirs: a pod with host ports is refused at its claim, saying why. */
static void test_hostports_need_portmap(void **state)
{
        struct fixture *f = *state;
        static const struct net_port web[] = {{"tcp", 8080, 30080, ""}};
        struct net_pod a = pod_with("pod-a", "a", web, 1);
        struct runt_config cfg;
        struct sh_error err = {0};
        struct net_mgr *nm = NULL;
        char path[160];

        config_for(f, &cfg);
        snprintf(path, sizeof(path), "%s/portmap", f->bin);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(net_mgr_new(&cfg, &nm, &err), 0);
        assert_int_equal(net_hostports_claim(nm, &a, &err), -EBUSY);
        assert_non_null(strstr(err.msg, "portmap"));
        net_mgr_free(nm);
        runt_config_done(&cfg);
}

/* A CNI pod's portmap ports go through the same claim: refused before any plugin runs. */
static void test_cni_setup_refuses_a_taken_port(void **state)
{
        struct fixture *f = *state;
        static const struct net_port web[] = {{"tcp", 80, 30080, ""}};
        struct net_pod a = pod_with("pod-a", "a", web, 1), l = pod_with("pod-l", "l", web, 1);
        struct runt_config cfg;
        struct sh_error err = {0};
        struct net_mgr *nm = NULL;
        struct net_result res = {0};

        hostport_config(f, &cfg);
        write_conf(f, "10-runt.conflist", conflist_bridge);
        assert_int_equal(net_mgr_new(&cfg, &nm, &err), 0);
        assert_int_equal(net_hostports_claim(nm, &a, &err), 0);
        /* The bridge stand-in would fail with EIO had it run. */
        assert_int_equal(net_setup(nm, &l, "/nonexistent", &res, &err), -EADDRINUSE);
        assert_non_null(strstr(err.msg, "network runt-net: host port 30080/tcp"));
        assert_false(has_cache(f, "pod-l"));
        assert_int_equal(net_teardown(nm, "pod-a", &err), 0);
        net_mgr_free(nm);
        runt_config_done(&cfg);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                T(test_valid_conflist),
                T(test_result_facts_addresses),
                T(test_single_conf_is_wrapped),
                T(test_json_extension),
                T(test_lexical_order_first_valid_wins),
                T(test_invalid_first_is_skipped),
                T(test_empty_and_missing_dir),
                T(test_other_files_ignored),
                T(test_all_invalid),
                T(test_missing_plugin_binary),
                T(test_bin_dirs_in_order),
                T(test_unsupported_version),
                T(test_supported_versions),
                T(test_missing_name),
                T(test_bad_plugins),
                T(test_plugin_type_not_a_name),
                T(test_not_json),
                T(test_oversized_file_skipped),
                T(test_done_twice),
                T(test_mgr_condition),
                T(test_mgr_info_json),
                T(test_pod_files),
                cmocka_unit_test(test_mgr_free_null),
                cmocka_unit_test(test_port_maps_collide),
                T(test_hostports_claim),
                T(test_hostports_setup_restore_teardown),
                T(test_hostports_need_portmap),
                T(test_cni_setup_refuses_a_taken_port),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
