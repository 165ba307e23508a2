/* netmgr/conf.c and netmgr.c: finding and validating the CNI network config. */
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
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
