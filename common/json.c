#include "json.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#include "cleanup.h"

static void json_tokener_freep(json_tokener **t)
{
        if (*t) {
                json_tokener_free(*t);
                *t = NULL;
        }
}

static void json_object_putp(json_object **o)
{
        if (*o) {
                json_object_put(*o);
                *o = NULL;
        }
}

static bool is_json_space(char c)
{
        return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int sh_json_parse(const char *buf, size_t len, const char *what, json_object **ret,
                  struct sh_error *err)
{
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        _cleanup_(json_object_putp) json_object *obj = NULL;
        enum json_tokener_error jerr;
        size_t end;

        if (!buf || len == 0)
                return sh_err(err, -EINVAL, "%s: empty document", what);
        if (len > INT_MAX)
                return sh_err(err, -EFBIG, "%s: document of %zu bytes is too large", what, len);
        tok = json_tokener_new();
        if (!tok)
                return sh_err(err, -ENOMEM, "%s: out of memory", what);
        obj = json_tokener_parse_ex(tok, buf, (int)len);
        jerr = json_tokener_get_error(tok);
        if (jerr == json_tokener_continue) {
                /* All input consumed mid-value; a bare top-level number needs a terminator. */
                obj = json_tokener_parse_ex(tok, "", 1);
                jerr = json_tokener_get_error(tok);
                if (jerr == json_tokener_continue)
                        return sh_err(err, -EINVAL, "%s: invalid JSON: unexpected end of input",
                                      what);
                if (jerr != json_tokener_success)
                        return sh_err(err, -EINVAL, "%s: invalid JSON at end of input: %s", what,
                                      json_tokener_error_desc(jerr));
                if (!obj)
                        return sh_err(err, -EINVAL, "%s: document is null", what);
                *ret = TAKE_PTR(obj);
                return 0;
        }
        if (jerr != json_tokener_success)
                return sh_err(err, -EINVAL, "%s: invalid JSON at offset %zu: %s", what,
                              json_tokener_get_parse_end(tok), json_tokener_error_desc(jerr));
        /* json-c stops after the first value; anything but whitespace after it is an error. */
        for (end = json_tokener_get_parse_end(tok); end < len; end++)
                if (!is_json_space(buf[end]))
                        return sh_err(err, -EINVAL, "%s: invalid JSON: trailing data at offset %zu",
                                      what, end);
        if (!obj)
                return sh_err(err, -EINVAL, "%s: document is null", what);
        *ret = TAKE_PTR(obj);
        return 0;
}

/*
 * Looks @key up in @obj. A JSON null counts as absent: CNI results and image configs use
 * "key": null for "not set".
 */
static int lookup(json_object *obj, const char *key, const char *what, json_type want,
                  json_object **ret, struct sh_error *err)
{
        json_object *v = NULL;

        if (!json_object_is_type(obj, json_type_object))
                return sh_err(err, -EINVAL, "%s: expected an object to look up '%s' in, got %s",
                              what, key, json_type_to_name(json_object_get_type(obj)));
        if (!json_object_object_get_ex(obj, key, &v) || !v)
                return sh_err(err, -ENOENT, "%s: missing key '%s'", what, key);
        if (!json_object_is_type(v, want))
                return sh_err(err, -EINVAL, "%s: key '%s' must be %s, got %s", what, key,
                              json_type_to_name(want), json_type_to_name(json_object_get_type(v)));
        *ret = v;
        return 0;
}

int sh_json_get_string(json_object *obj, const char *key, const char *what, const char **ret,
                       struct sh_error *err)
{
        json_object *v = NULL;
        int r = lookup(obj, key, what, json_type_string, &v, err);

        if (r < 0)
                return r;
        *ret = json_object_get_string(v);
        return 0;
}

int sh_json_get_int64(json_object *obj, const char *key, const char *what, int64_t *ret,
                      struct sh_error *err)
{
        json_object *v = NULL;
        int64_t i;
        int r = lookup(obj, key, what, json_type_int, &v, err);

        if (r < 0)
                return r;
        i = json_object_get_int64(v);
        /* json-c keeps integers above INT64_MAX as uint64 and clamps get_int64 silently. */
        if (i == INT64_MAX && json_object_get_uint64(v) > (uint64_t)INT64_MAX)
                return sh_err(err, -ERANGE, "%s: key '%s' is out of range for int64", what, key);
        *ret = i;
        return 0;
}

int sh_json_get_bool(json_object *obj, const char *key, const char *what, bool *ret,
                     struct sh_error *err)
{
        json_object *v = NULL;
        int r = lookup(obj, key, what, json_type_boolean, &v, err);

        if (r < 0)
                return r;
        *ret = json_object_get_boolean(v);
        return 0;
}

int sh_json_get_object(json_object *obj, const char *key, const char *what, json_object **ret,
                       struct sh_error *err)
{
        return lookup(obj, key, what, json_type_object, ret, err);
}

int sh_json_get_array(json_object *obj, const char *key, const char *what, json_object **ret,
                      struct sh_error *err)
{
        return lookup(obj, key, what, json_type_array, ret, err);
}

char *sh_json_to_string(json_object *obj)
{
        const char *s = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN |
                                                                    JSON_C_TO_STRING_NOSLASHESCAPE);

        return s ? strdup(s) : NULL;
}
