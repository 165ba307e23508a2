#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "error.h"

/*
 * Typed access to json-c objects. json-c's own getters coerce silently (a string "12"
 * reads as int 12, a missing key as 0); these check the type and say which key was wrong.
 * @what names the document in messages ("CNI result", "image config").
 */

/*
 * Parses @len bytes of @buf (one JSON value, optional surrounding whitespace) into a new object
 * (@ret owned by the caller, json_object_put). Invalid JSON, trailing data or a top-level null:
 * -EINVAL with a message naming @what.
 */
int sh_json_parse(const char *buf, size_t len, const char *what, json_object **ret,
                  struct sh_error *err);

/*
 * Getters for key @key of object @obj. Absent key or a JSON null value: -ENOENT (the
 * out-param untouched), wrong type (or @obj not an object): -EINVAL with a message naming
 * @what and @key. Integers are never coerced from doubles or strings; an integer beyond
 * int64 is -ERANGE. Strings and objects are borrowed from @obj.
 */
int sh_json_get_string(json_object *obj, const char *key, const char *what, const char **ret,
                       struct sh_error *err);
int sh_json_get_int64(json_object *obj, const char *key, const char *what, int64_t *ret,
                      struct sh_error *err);
int sh_json_get_bool(json_object *obj, const char *key, const char *what, bool *ret,
                     struct sh_error *err);
int sh_json_get_object(json_object *obj, const char *key, const char *what, json_object **ret,
                       struct sh_error *err);
int sh_json_get_array(json_object *obj, const char *key, const char *what, json_object **ret,
                      struct sh_error *err);

/* Serialises @obj compactly into a new malloc'd string (caller frees), NULL on ENOMEM. */
char *sh_json_to_string(json_object *obj);
