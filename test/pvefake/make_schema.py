#!/usr/bin/python3
"""Writes pve-schema.json, the subset of the Proxmox VE API schema that runt's fake PVE
(pvefake.py) validates requests against.

The source is the published schema, `api-viewer/apidata.js` of the pve-docs repository (the
data behind https://pve.proxmox.com/pve-docs/api-viewer/). Refresh the fixture when PVE
releases:

    /usr/bin/python3 test/pvefake/make_schema.py path/to/apidata.js 'pve-docs <commit> <date>' \
        > test/pvefake/pve-schema.json

Only the endpoints runt's Proxmox backend uses are kept (ENDPOINTS below), and of each only
what validation and reply shapes need: parameters with type, format (a named format, or the
keys of a property-string format), enum, pattern, minimum/maximum, length limits, optional,
default, default_key, requires; returns with types. Descriptions are dropped.
"""

import json
import sys

ENDPOINTS = [
    ("/version", "GET"),
    ("/cluster/nextid", "GET"),
    ("/cluster/resources", "GET"),
    ("/nodes", "GET"),
    ("/nodes/{node}/lxc", "GET"),
    ("/nodes/{node}/lxc", "POST"),
    ("/nodes/{node}/lxc/{vmid}", "DELETE"),
    ("/nodes/{node}/lxc/{vmid}/status/current", "GET"),
    ("/nodes/{node}/lxc/{vmid}/status/start", "POST"),
    ("/nodes/{node}/lxc/{vmid}/status/stop", "POST"),
    ("/nodes/{node}/lxc/{vmid}/status/shutdown", "POST"),
    ("/nodes/{node}/lxc/{vmid}/config", "GET"),
    ("/nodes/{node}/lxc/{vmid}/config", "PUT"),
    ("/nodes/{node}/lxc/{vmid}/interfaces", "GET"),
    ("/nodes/{node}/tasks/{upid}", "DELETE"),
    ("/nodes/{node}/tasks/{upid}/status", "GET"),
    ("/nodes/{node}/tasks/{upid}/log", "GET"),
    ("/nodes/{node}/storage/{storage}/content", "GET"),
    ("/nodes/{node}/storage/{storage}/content/{volume}", "DELETE"),
    ("/nodes/{node}/storage/{storage}/upload", "POST"),
]

KEEP_PARAM = ("type", "format", "enum", "pattern", "minimum", "maximum", "minLength",
              "maxLength", "optional", "default", "default_key", "requires", "alias",
              "keyAlias")
KEEP_INFO = ("method", "name", "proxyto", "allowtoken", "protected", "download_allowed")


def load_apidata(path):
    text = open(path, encoding="utf-8").read()
    start = text.index("[")
    end = text.rindex("]") + 1
    tree = json.loads(text[start:end])
    flat = {}

    def walk(nodes):
        for n in nodes:
            flat[n["path"]] = n
            walk(n.get("children", []))

    walk(tree)
    return flat


def slim_param(p):
    out = {}
    for k in KEEP_PARAM:
        if k not in p:
            continue
        v = p[k]
        if k == "format" and isinstance(v, dict):
            v = {sk: slim_param(sv) for sk, sv in sorted(v.items())}
        out[k] = v
    return out


def slim_returns(r):
    if not isinstance(r, dict):
        return r
    out = {k: r[k] for k in ("type", "optional", "enum") if k in r}
    if "properties" in r:
        out["properties"] = {k: slim_returns(v) for k, v in sorted(r["properties"].items())}
    if "items" in r:
        out["items"] = slim_returns(r["items"])
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: make_schema.py APIDATA.JS SOURCE-DESCRIPTION")
    flat = load_apidata(sys.argv[1])
    paths = {}
    for path, method in ENDPOINTS:
        info = flat[path]["info"][method]
        params = info.get("parameters", {})
        entry = {k: info[k] for k in KEEP_INFO if k in info}
        entry["additionalProperties"] = params.get("additionalProperties", 0)
        entry["parameters"] = {k: slim_param(v)
                               for k, v in sorted(params.get("properties", {}).items())}
        entry["returns"] = slim_returns(info.get("returns", {}))
        paths.setdefault(path, {})[method] = entry
    out = {
        "comment": "Subset of the Proxmox VE API schema for runt's fake PVE; written by "
                   "make_schema.py, do not edit by hand.",
        "source": sys.argv[2],
        "paths": paths,
    }
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
