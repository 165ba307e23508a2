"""The ImageService over a real registry: PullImage, ImageStatus, ListImages, RemoveImage,
ImageFsInfo, the layer store under <root_dir>/layers, auth, mirrors, errors, hostile layers.

Every registry is Debian's docker-registry on 127.0.0.1 (see registry.py); every image is
built here, once per session, from busybox-static with umoci and hand-crafted layers, and
pushed with skopeo. Nothing is downloaded.
"""

import base64
import json
import os
import stat
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

import registry as R
from conftest import CALL_TIMEOUT, REGISTRY_PASSWORD, REGISTRY_USER, Runtd, fresh_fs_info, pb
from registry import Dir, File, Hardlink, Opaque, Symlink, Whiteout

T = CALL_TIMEOUT
PULL_T = 30.0  # every PullImage call

MULTI_CMD = ["/bin/sh", "-c", "echo multi"]
MULTI_ENV = ["PATH=/bin", "RUNT_E2E=multi"]
MULTI_LABELS = {"org.runt.e2e": "multi", "org.runt.layers": "3"}

# Hostile layers, each on top of the base layer in an image of its own. The names are
# unique so that a file that escaped can be searched for anywhere.
ESC = "runt-e2e-esc-"
HOSTILE = {
    "dotdot": [File(f"../{ESC}dotdot", "x")],
    "dotdot-nested": [Dir("a"), File(f"a/../../{ESC}nested", "x")],
    "abs-path": [File(f"/tmp/{ESC}abs", "x")],
    "symlink-abs": [Symlink("evil", "/etc"), File(f"evil/{ESC}symabs", "x")],
    "symlink-rel": [Symlink("evil", "../../.."), File(f"evil/{ESC}symrel", "x")],
    "hardlink-dotdot": [Hardlink("link", "../../outside")],
    "hardlink-abs": [Hardlink("link", "/etc/passwd")],
}
ESCAPE_NAMES = [f"{ESC}{n}" for n in ("dotdot", "nested", "abs", "symabs", "symrel")]


# --------------------------------------------------------------------------- images


@dataclass
class Img:
    host: str
    name: str          # repository, e.g. "multi"
    tags: list         # the tags pushed with this manifest
    id: str            # sha256:<config digest>
    manifest: str      # sha256:<manifest digest as pushed>
    diff_ids: list
    chain: list        # chain ids, base first
    config: dict       # the OCI image config
    blobs: list        # config + layer blob digests
    extra: dict = field(default_factory=dict)

    @property
    def ref(self):
        return f"{self.host}/{self.name}:{self.tags[0]}"

    @property
    def repo_tags(self):
        return sorted(f"{self.host}/{self.name}:{t}" for t in self.tags)

    @property
    def digest_ref(self):
        return f"{self.host}/{self.name}@{self.manifest}"

    @property
    def hex(self):
        return self.id.split(":", 1)[1]

    @property
    def chain_hex(self):
        return [c.split(":", 1)[1] for c in self.chain]


class Images:
    """Everything the tests pull, built and pushed once per session."""


def _layer_delete_and_opaque():
    return R.layer_tar([
        Dir("data"),
        Whiteout("data/remove-me"),
        File("data/added", "added\n"),
        Dir("opq"),
        Opaque("opq"),
        File("opq/new1", "new1\n"),
    ])


def _layer_links_owners_xattrs():
    return R.layer_tar([
        Dir("hl"),
        File("hl/a", "hard\n", mode=0o644),
        Hardlink("hl/b", "hl/a"),
        File("owned", "owned\n", uid=1234, gid=5678, mode=0o640),
        File("xattr", "xattr\n", xattrs={"user.test": "hello"}),
        Dir("sticky", mode=0o1777),
        File("bin/tool", "#!/bin/sh\necho tool\n", mode=0o4755),
    ])


def _push(lay, tag, host, name, tags, creds=None, **extra):
    digest = None
    for t in tags:
        d = lay.push(tag, host, f"{name}:{t}", creds=creds)
        assert digest in (None, d), "one manifest pushed under two tags got two digests"
        digest = d
    assert digest == lay.manifest_digest(tag), (digest, lay.manifest_digest(tag))
    return Img(host=host, name=name, tags=list(tags), id=lay.config_digest(tag),
               manifest=digest, diff_ids=lay.diff_ids(tag), chain=lay.chain_ids(tag),
               config=lay.image_config(tag), blobs=lay.blob_digests(tag), extra=extra)


def build_images(registry, auth_registry, lay):
    """Builds every test image in the OCI layout @lay and pushes it; returns an Images."""
    h = registry.host
    im = Images()
    im.host, im.layout, im.registry = h, lay, registry

    # base: one umoci layer, busybox and the files the upper layers change.
    R.busybox_image(lay, "base", cmd=["/bin/sh"], env=["PATH=/bin"])
    im.base = _push(lay, "base", h, "base", ["latest"])

    # multi: base + (delete a file, opaque dir) + (hard links, owners, modes, xattr).
    lay.append_layer("base", _layer_delete_and_opaque(), new_tag="multi")
    lay.append_layer("multi", _layer_links_owners_xattrs())
    lay.config("multi", user="1000", cmd=MULTI_CMD, env=MULTI_ENV[1:], workdir="/data",
               labels=MULTI_LABELS)
    im.multi = _push(lay, "multi", h, "multi", ["v1", "v2"])

    # The same layers, other users: by name, uid:gid, name:group.
    im.users = {}
    for tag, user in (("name", "nobody"), ("uidgid", "1000:1000"),
                      ("namegroup", "nobody:nogroup")):
        lay.config("multi", new_tag=f"u-{tag}", user=user)
        im.users[tag] = _push(lay, f"u-{tag}", h, "users", [tag], user=user)

    # shared: base + one layer of its own.
    lay.append_layer("base", R.layer_tar([Dir("shared"), File("shared/only-here", "s\n")]),
                     new_tag="shared")
    im.shared = _push(lay, "shared", h, "shared", ["v1"])

    # conc: base + its own layer, pulled by 4 clients at once.
    lay.append_layer("base", R.layer_tar([File("conc", os.urandom(64 * 1024))]),
                     new_tag="conc")
    im.conc = _push(lay, "conc", h, "conc", ["v1"])

    # plaintar: base + an uncompressed layer (media type ...layer.v1.tar).
    lay.append_layer("base", R.layer_tar([File("plain", os.urandom(256 * 1024))]),
                     new_tag="plaintar", compress=False)
    im.plaintar = _push(lay, "plaintar", h, "plaintar", ["v1"])

    # corrupt: base + an uncompressed layer whose stored blob no longer matches its digest
    # (bytes in the middle of a file's data flipped: the tar itself still reads fine).
    lay.append_layer("base", R.layer_tar([File("corrupt", os.urandom(256 * 1024))]),
                     new_tag="corrupt", compress=False)
    im.corrupt = _push(lay, "corrupt", h, "corrupt", ["v1"])
    registry.corrupt_blob(im.corrupt.blobs[-1])

    # hostile: base + one hostile layer each.
    im.hostile = {}
    for name, entries in HOSTILE.items():
        lay.append_layer("base", R.layer_tar(entries), new_tag=f"hostile-{name}")
        im.hostile[name] = _push(lay, f"hostile-{name}", h, "hostile", [name])

    # private: the base image on the htpasswd registry.
    im.private = _push(lay, "base", auth_registry.host, "private", ["v1"],
                       creds=(REGISTRY_USER, REGISTRY_PASSWORD))
    return im


@pytest.fixture(scope="session")
def images(registry, auth_registry):
    lay = R.OciLayout.create()
    try:
        yield build_images(registry, auth_registry, lay)
    finally:
        lay.remove()


# --------------------------------------------------------------------------- helpers


def registries_cfg(*hosts, **extra):
    cfg = {"registries": [{"prefix": h, "insecure": True} for h in hosts]}
    cfg.update(extra)
    return cfg


def err(e):
    return f"{e.code()}: {e.details()!r}"


def tmp_entries(d):
    p = d.root_dir / "tmp"
    return sorted(os.listdir(p)) if p.exists() else []


def assert_tmp_clean(d, what=""):
    left = tmp_entries(d)
    assert not left, f"{d.root_dir}/tmp not empty after {what}: {left}"


def pull(d, ref, auth=None, timeout=PULL_T, stub=None):
    """PullImage; checks <root_dir>/tmp is clean after it, success or failure."""
    req = pb.PullImageRequest(image=pb.ImageSpec(image=ref))
    if auth is not None:
        req.auth.CopyFrom(auth)
    try:
        resp = (stub or d.image()).PullImage(req, timeout=timeout)
    except grpc.RpcError:
        assert_tmp_clean(d, f"failed pull of {ref!r}")
        raise
    assert_tmp_clean(d, f"pull of {ref!r}")
    return resp.image_ref


def pull_fails(d, ref, codes=None, auth=None, timeout=PULL_T):
    """Pulls @ref, expecting a failure (with one of @codes); returns the RpcError."""
    try:
        got = pull(d, ref, auth=auth, timeout=timeout)
    except grpc.RpcError as e:
        if codes is not None:
            assert e.code() in codes, f"pull {ref!r}: want {codes}, got {err(e)}"
        return e
    pytest.fail(f"pull {ref!r} succeeded ({got}), expected a failure")


def status(d, ref, verbose=False):
    return d.image().ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=ref),
                                                       verbose=verbose), timeout=T)


def listed(d, ref=None):
    req = pb.ListImagesRequest()
    if ref is not None:
        req.filter.image.image = ref
    return list(d.image().ListImages(req, timeout=T).images)


def remove(d, ref):
    d.image().RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=ref)), timeout=T)


def layer_dirs(d):
    p = d.root_dir / "layers"
    return sorted(os.listdir(p)) if p.exists() else []


def fs_used(d):
    """The image filesystem's figures, measured now (runtd caches them a few seconds)."""
    return fresh_fs_info(d.image()).image_filesystems[0]


def assert_no_image(d, ref):
    r = status(d, ref)
    assert not r.HasField("image"), f"ImageStatus({ref!r}) still has {r.image}"


def image_runtd(runtd_factory, *hosts, allow_log_errors=False, **extra):
    return runtd_factory(images=registries_cfg(*hosts, **extra),
                         allow_log_errors=allow_log_errors)


class Loaded:
    """A daemon that has pulled the read-only test images once for the whole module."""

    def __init__(self, d, images):
        self.d, self.im, self.pulled = d, images, {}

    def pull(self, ref):
        try:
            self.pulled[ref] = pull(self.d, ref)
        except grpc.RpcError as e:
            self.pulled[ref] = e
        except AssertionError as e:
            self.pulled[ref] = e

    def need(self, *refs):
        for ref in refs:
            got = self.pulled.get(ref)
            if not isinstance(got, str):
                pytest.fail(f"the module's pull of {ref} failed: "
                            + (err(got) if isinstance(got, grpc.RpcError) else str(got)))


@pytest.fixture(scope="module")
def loaded(images):
    d = Runtd(images=registries_cfg(images.host))
    try:
        d.start()
        ld = Loaded(d, images)
        for ref in ([images.base.ref.rsplit(":", 1)[0],  # "HOST/base": tag latest implied
                     images.multi.ref, f"{images.host}/multi:v2", images.shared.ref]
                    + [u.ref for u in images.users.values()]):
            ld.pull(ref)
        yield ld
        d.stop()
    finally:
        d.cleanup()


# --------------------------------------------------------------------------- pull, status


def test_pull_returns_config_digest(loaded):
    im = loaded.im
    want = {
        f"{im.host}/base": im.base.id,
        im.multi.ref: im.multi.id,
        f"{im.host}/multi:v2": im.multi.id,
        im.shared.ref: im.shared.id,
    }
    want.update({u.ref: u.id for u in im.users.values()})
    loaded.need(*want)
    for ref, wid in want.items():
        got = loaded.pulled[ref]
        assert got == wid, f"PullImage({ref}).image_ref = {got!r}, want the config digest {wid}"
        assert got.startswith("sha256:") and len(got) == 71


@pytest.mark.parametrize("form", ["id", "sha256-hex", "bare-hex", "tag-v1", "tag-v2",
                                  "digest-ref"])
def test_image_status_by_every_reference_form(loaded, form):
    im = loaded.im
    m = im.multi
    loaded.need(m.ref, f"{im.host}/multi:v2")
    x = {"id": m.id, "sha256-hex": "sha256:" + m.hex, "bare-hex": m.hex,
         "tag-v1": f"{im.host}/multi:v1", "tag-v2": f"{im.host}/multi:v2",
         "digest-ref": m.digest_ref}[form]
    r = status(loaded.d, x)
    assert r.HasField("image"), f"ImageStatus({x!r}) found no image"
    i = r.image
    assert i.id == m.id
    assert sorted(i.repo_tags) == [f"{im.host}/multi:v1", f"{im.host}/multi:v2"]
    assert list(i.repo_digests) == [m.digest_ref]
    assert i.size > 0
    assert i.HasField("uid") and i.uid.value == 1000, i
    assert i.username == ""
    assert i.pinned is False
    assert not r.info, "info without verbose"


@pytest.mark.parametrize("variant,uid,username", [
    ("uid", 1000, ""), ("uidgid", 1000, ""), ("name", None, "nobody"),
    ("namegroup", None, "nobody")])
def test_image_status_user(loaded, variant, uid, username):
    im = loaded.im
    img = im.multi if variant == "uid" else im.users[variant]
    loaded.need(img.ref)
    i = status(loaded.d, img.ref).image
    assert i.id == img.id
    if uid is None:
        assert not i.HasField("uid"), f"User {img.config['config']['User']!r}: uid {i.uid}"
    else:
        assert i.HasField("uid") and i.uid.value == uid, i
    assert i.username == username


def test_tag_defaults_to_latest(loaded):
    im = loaded.im
    loaded.need(f"{im.host}/base")
    for x in (f"{im.host}/base", f"{im.host}/base:latest"):
        i = status(loaded.d, x).image
        assert i.id == im.base.id, f"ImageStatus({x!r}) -> {i.id!r}"
        assert list(i.repo_tags) == [f"{im.host}/base:latest"]
        assert list(i.repo_digests) == [im.base.digest_ref]


@pytest.mark.parametrize("what", ["other-tag", "unknown-repo", "unknown-id", "unknown-hex",
                                  "unknown-digest-ref"])
def test_image_status_unknown_has_no_image(loaded, what):
    h = loaded.im.host
    x = {"other-tag": f"{h}/multi:nope", "unknown-repo": f"{h}/nothing-here:v1",
         "unknown-id": "sha256:" + "0" * 64, "unknown-hex": "f" * 64,
         "unknown-digest-ref": f"{h}/multi@sha256:" + "1" * 64}[what]
    for verbose in (False, True):
        r = status(loaded.d, x, verbose=verbose)
        assert not r.HasField("image"), f"ImageStatus({x!r}) -> {r.image}"


def test_image_status_verbose(loaded):
    im = loaded.im
    m = im.multi
    loaded.need(m.ref)
    r = status(loaded.d, m.ref, verbose=True)
    assert r.image.id == m.id
    assert "info" in r.info, dict(r.info)
    info = json.loads(r.info["info"])
    assert info["id"] == m.id
    assert info["chainIDs"] == m.chain
    assert info["layers"] == [str(loaded.d.root_dir / "layers" / c) for c in m.chain_hex]
    assert all(os.path.isabs(p) and os.path.isdir(p) for p in info["layers"])
    assert info["manifestDigest"] == m.manifest
    spec = info["imageSpec"]
    assert spec["rootfs"]["diff_ids"] == m.diff_ids
    c = spec["config"]
    assert c["Cmd"] == MULTI_CMD
    assert c["User"] == "1000"
    assert c["Env"] == MULTI_ENV
    assert c["WorkingDir"] == "/data"
    assert c["Labels"] == MULTI_LABELS
    assert spec == m.config, "imageSpec is not the image's config"


def test_list_images(loaded):
    im = loaded.im
    want = {im.base.id, im.multi.id, im.shared.id} | {u.id for u in im.users.values()}
    imgs = listed(loaded.d)
    ids = [i.id for i in imgs]
    assert sorted(ids) == sorted(want), "every image listed once"
    by_id = {i.id: i for i in imgs}
    assert sorted(by_id[im.multi.id].repo_tags) == im.multi.repo_tags
    assert list(by_id[im.multi.id].repo_digests) == [im.multi.digest_ref]
    assert list(by_id[im.shared.id].repo_tags) == im.shared.repo_tags
    assert all(i.size > 0 for i in imgs)
    assert by_id[im.multi.id].uid.value == 1000
    assert by_id[im.users["name"].id].username == "nobody"


@pytest.mark.parametrize("by", ["tag", "other-tag", "digest-ref", "id"])
def test_list_images_filter(loaded, by):
    im = loaded.im
    m = im.multi
    x = {"tag": m.ref, "other-tag": f"{im.host}/multi:v2", "digest-ref": m.digest_ref,
         "id": m.id}[by]
    got = listed(loaded.d, x)
    assert [i.id for i in got] == [m.id], f"filter {x!r}: {[i.id for i in got]}"
    assert sorted(got[0].repo_tags) == m.repo_tags


@pytest.mark.parametrize("x", ["HOST/multi:nope", "HOST/nothing:v1", "sha256:" + "0" * 64,
                               "HOST/multi@sha256:" + "2" * 64])
def test_list_images_filter_no_match(loaded, x):
    x = x.replace("HOST", loaded.im.host)
    assert listed(loaded.d, x) == [], f"filter {x!r} matched"


# --------------------------------------------------------------------------- layer store


def test_layer_dirs_are_the_chain_ids(loaded):
    im = loaded.im
    loaded.need(*loaded.pulled)
    want = set()
    for img in [im.base, im.multi, im.shared] + list(im.users.values()):
        want |= set(img.chain_hex)
    assert layer_dirs(loaded.d) == sorted(want)


def test_shared_base_layer_extracted_once(runtd_factory, images):
    d = image_runtd(runtd_factory, images.host)
    m, s = images.multi, images.shared
    assert m.chain[0] == s.chain[0] and m.chain[1] != s.chain[1]
    assert pull(d, m.ref) == m.id
    assert layer_dirs(d) == sorted(m.chain_hex)
    before = {c: os.stat(d.root_dir / "layers" / c) for c in m.chain_hex}
    time.sleep(0.05)
    assert pull(d, s.ref) == s.id
    assert layer_dirs(d) == sorted(set(m.chain_hex) | set(s.chain_hex))
    for c, st in before.items():
        now = os.stat(d.root_dir / "layers" / c)
        assert (now.st_ino, now.st_mtime_ns) == (st.st_ino, st.st_mtime_ns), \
            f"layer {c} was re-extracted"
    # Pulling the same image again changes nothing either.
    assert pull(d, m.ref) == m.id
    assert layer_dirs(d) == sorted(set(m.chain_hex) | set(s.chain_hex))


def _lstat(p):
    return os.lstat(p)


def check_multi_layer_dirs(base, l2, l3):
    """The three layer dirs of the multi image, as the layer store must hold them."""
    # Each layer dir is that layer's own diff, not a merged tree.
    assert (base / "bin" / "busybox").is_file()
    assert not (l2 / "bin").exists() and not (l3 / "opq").exists()
    assert (l3 / "hl" / "a").is_file() and not (l2 / "hl").exists()
    # Whiteouts are overlay whiteouts: char devices 0:0; opaque dirs carry the xattr.
    wh = _lstat(l2 / "data" / "remove-me")
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0, oct(wh.st_mode)
    assert os.getxattr(l2 / "opq", "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    assert not (l2 / "data" / ".wh.remove-me").exists()
    assert not os.path.lexists(l2 / "opq" / ".wh..wh..opq")
    assert (base / "data" / "remove-me").read_text() == "bye\n"  # the lower layer keeps it


def check_multi_merged(mnt):
    """The multi image as an overlay of its layer dirs shows it."""
    assert (mnt / "bin" / "busybox").read_bytes() == Path(R.BUSYBOX).read_bytes()
    assert os.readlink(mnt / "bin" / "sh") == "busybox"
    assert (mnt / "etc" / "passwd").is_file()
    assert sorted(os.listdir(mnt / "data")) == ["added", "keep"]
    assert sorted(os.listdir(mnt / "opq")) == ["new1"]
    a, b = os.lstat(mnt / "hl" / "a"), os.lstat(mnt / "hl" / "b")
    assert a.st_ino == b.st_ino and a.st_nlink == 2, (a, b)
    o = os.lstat(mnt / "owned")
    assert (o.st_uid, o.st_gid, stat.S_IMODE(o.st_mode)) == (1234, 5678, 0o640)
    assert os.getxattr(mnt / "xattr", "user.test") == b"hello"
    assert stat.S_IMODE(os.lstat(mnt / "sticky").st_mode) == 0o1777
    assert stat.S_IMODE(os.lstat(mnt / "bin" / "tool").st_mode) == 0o4755
    assert stat.S_IMODE(os.lstat(mnt / "tmp").st_mode) == 0o1777


@pytest.mark.skipif(os.geteuid() != 0, reason="whiteouts, trusted xattrs and overlay need root")
def test_layer_contents_and_overlay_view(loaded, tmp_path):
    m = loaded.im.multi
    loaded.need(m.ref)
    layers = json.loads(status(loaded.d, m.ref, verbose=True).info["info"])["layers"]
    assert len(layers) == 3
    base, l2, l3 = (Path(p) for p in layers)

    check_multi_layer_dirs(base, l2, l3)

    mnt = tmp_path / "mnt"
    mnt.mkdir()
    lower = ":".join(reversed(layers))
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"ro,lowerdir={lower}",
                    str(mnt)], check=True, capture_output=True, timeout=10)
    try:
        check_multi_merged(mnt)
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True, timeout=10)


# --------------------------------------------------------------------------- references


def test_pull_by_digest_then_by_two_tags(runtd_factory, images):
    d = image_runtd(runtd_factory, images.host)
    m, h = images.multi, images.host
    assert pull(d, m.digest_ref) == m.id
    i = status(d, m.digest_ref).image
    assert i.id == m.id
    assert list(i.repo_tags) == [], "a pull by digest adds no tag"
    assert list(i.repo_digests) == [m.digest_ref]
    assert not status(d, f"{h}/multi:v1").HasField("image")

    assert pull(d, f"{h}/multi:v1") == m.id
    assert list(status(d, m.id).image.repo_tags) == [f"{h}/multi:v1"]
    assert pull(d, f"{h}/multi:v2") == m.id
    i = status(d, m.id).image
    assert sorted(i.repo_tags) == [f"{h}/multi:v1", f"{h}/multi:v2"]
    assert list(i.repo_digests) == [m.digest_ref]
    assert [x.id for x in listed(d)] == [m.id], "one digest, one image"
    assert layer_dirs(d) == sorted(m.chain_hex)


# --------------------------------------------------------------------------- remove


@pytest.mark.valgrind
def test_remove_image(runtd_factory, images):
    d = image_runtd(runtd_factory, images.host)
    m, s, h = images.multi, images.shared, images.host
    for ref in (m.ref, f"{h}/multi:v2", s.ref):
        pull(d, ref)
    base_st = os.stat(d.root_dir / "layers" / m.chain_hex[0])

    remove(d, m.ref)  # by one tag: the image goes, with all its tags and digests
    for x in (m.ref, f"{h}/multi:v2", m.digest_ref, m.id, m.hex):
        assert_no_image(d, x)
    assert [i.id for i in listed(d)] == [s.id]
    assert listed(d, m.id) == []
    # The base layer is still used by shared: kept, untouched; multi's own layers gone.
    assert layer_dirs(d) == sorted(s.chain_hex)
    st = os.stat(d.root_dir / "layers" / m.chain_hex[0])
    assert (st.st_ino, st.st_mtime_ns) == (base_st.st_ino, base_st.st_mtime_ns)
    assert status(d, s.ref).image.id == s.id

    # Unknown images: success.
    remove(d, m.ref)
    remove(d, f"{h}/never-pulled:v9")
    remove(d, "sha256:" + "0" * 64)

    remove(d, s.id)  # by id
    assert_no_image(d, s.ref)
    assert listed(d) == []
    assert layer_dirs(d) == []

    # And it can be pulled again.
    assert pull(d, m.ref) == m.id
    assert layer_dirs(d) == sorted(m.chain_hex)


def test_image_fs_info_follows_pull_and_remove(runtd_factory, images):
    d = image_runtd(runtd_factory, images.host)
    u0 = fs_used(d)
    assert u0.fs_id.mountpoint == str(d.root_dir / "layers")
    pull(d, images.multi.ref)
    u1 = fs_used(d)
    busybox = os.path.getsize(R.BUSYBOX)
    assert u1.used_bytes.value >= u0.used_bytes.value + busybox, (u0, u1)
    assert u1.inodes_used.value > u0.inodes_used.value
    remove(d, images.multi.ref)
    u2 = fs_used(d)
    assert u2.used_bytes.value < u1.used_bytes.value, (u1, u2)
    assert u2.used_bytes.value <= u0.used_bytes.value + 64 * 1024, (u0, u2)
    assert u2.fs_id.mountpoint == str(d.root_dir / "layers")


# --------------------------------------------------------------------------- concurrency


def test_concurrent_pulls_of_one_ref(runtd_factory, images):
    reg = images.registry
    c = images.conc
    d = image_runtd(runtd_factory, images.host)
    since = reg.log_offset()
    results, errors = [None] * 4, []
    stubs = [d.image(d.channel()) for _ in range(4)]
    start = threading.Barrier(4)

    def one(i):
        try:
            start.wait(timeout=10)
            results[i] = pull(d, c.ref, stub=stubs[i])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(f"client {i}: {err(e) if isinstance(e, grpc.RpcError) else e!r}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=PULL_T + 5)
    assert not errors, errors
    assert results == [c.id] * 4
    assert layer_dirs(d) == sorted(c.chain_hex)
    assert [i.id for i in listed(d)] == [c.id]

    # Each blob (config, base layer, own layer) fetched from the registry exactly once.
    def counts():
        return {b: reg.count("GET", f"/v2/conc/blobs/{b}", since) for b in c.blobs}

    deadline = time.monotonic() + 3
    while min(counts().values()) < 1 and time.monotonic() < deadline:
        time.sleep(0.1)  # the access log is written after the response
    got = counts()
    assert got == {b: 1 for b in c.blobs}, f"blob GETs per digest: {got}"


# --------------------------------------------------------------------------- mirrors


def test_pull_through_mirror(runtd_factory, images):
    reg, b = images.registry, images.base
    d = runtd_factory(images={"registries": [
        {"prefix": "mirror.invalid", "mirrors": [images.host], "insecure": True},
        {"prefix": images.host, "insecure": True}]})
    since = reg.log_offset()
    ref = "mirror.invalid/base:latest"
    assert pull(d, ref) == b.id
    i = status(d, ref).image
    assert i.id == b.id
    assert list(i.repo_tags) == [ref]
    assert list(i.repo_digests) == [f"mirror.invalid/base@{b.manifest}"]
    assert not status(d, b.ref).HasField("image"), "the mirror's name is no repo tag"
    assert any(l.startswith("GET /v2/base/manifests/") for l in reg.access_lines(since))


# --------------------------------------------------------------------------- auth


def _secrets():
    pw = REGISTRY_PASSWORD.encode()
    b64 = base64.b64encode(f"{REGISTRY_USER}:{REGISTRY_PASSWORD}".encode())
    return pw, b64


def _files_holding(top, needles, newer_than=None, max_size=64 << 20):
    hits = []
    for p in R.walk_files(top):
        try:
            st = p.stat()
            if st.st_size > max_size or (newer_than and st.st_mtime < newer_than):
                continue
            data = p.read_bytes()
        except OSError:
            continue
        hits += [f"{p} holds {n[:6]!r}..." for n in needles if n in data]
    return hits


@pytest.mark.valgrind
def test_auth(runtd_factory, images, auth_registry):
    t0 = time.time() - 1
    p = images.private
    ah = auth_registry.host
    d = image_runtd(runtd_factory, ah, allow_log_errors=True)
    denied = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)

    e = pull_fails(d, p.ref, denied)
    assert ah in e.details(), f"no registry host:port in {err(e)}"
    e = pull_fails(d, p.ref, denied, auth=pb.AuthConfig(username=REGISTRY_USER,
                                                        password="wrong-" + REGISTRY_PASSWORD))
    assert ah in e.details(), f"no registry host:port in {err(e)}"
    assert REGISTRY_PASSWORD not in e.details()
    assert_no_image(d, p.ref)

    assert pull(d, p.ref, auth=pb.AuthConfig(username=REGISTRY_USER,
                                             password=REGISTRY_PASSWORD)) == p.id
    assert status(d, p.ref).image.id == p.id
    remove(d, p.ref)
    assert_no_image(d, p.ref)
    auth = base64.b64encode(f"{REGISTRY_USER}:{REGISTRY_PASSWORD}".encode()).decode()
    assert pull(d, p.ref, auth=pb.AuthConfig(auth=auth)) == p.id
    assert list(status(d, p.ref).image.repo_tags) == [p.ref]

    # The password (or user:pass in base64) is in no log and no file runtd left.
    d.stop()
    needles = _secrets()
    hits = _files_holding(d.base, needles)
    assert not hits, hits
    # Nor in a stray credentials file anywhere under /tmp (written during this test).
    hits = _files_holding("/tmp", needles, newer_than=t0)
    assert not hits, hits


# --------------------------------------------------------------------------- errors


@pytest.fixture(scope="module")
def errd(images):
    """A daemon for failing pulls, the base image already pulled. A port nothing listens
    on is configured as a registry too."""
    dead = R.free_port()
    d = Runtd(images=registries_cfg(images.host, f"127.0.0.1:{dead}"), allow_log_errors=True)
    d.dead_host = f"127.0.0.1:{dead}"
    try:
        d.start()
        d.base_pulled = None
        try:
            d.base_pulled = pull(d, images.base.ref)
        except grpc.RpcError as e:
            d.base_pulled = e
        yield d
        d.stop()
    finally:
        d.cleanup()


def _need_base(errd, images):
    if errd.base_pulled != images.base.id:
        pytest.fail(f"pulling the base image failed: {errd.base_pulled}")


@pytest.mark.parametrize("ref", ["UPPER/case", "a b", "name:tag:extra", "",
                                 "x@sha256:short", "HOST/base:" + "t" * 300,
                                 "HOST/base@sha256:" + "g" * 64, "HOST//base:v1",
                                 "HOST/base:-bad"])
def test_malformed_reference_is_invalid_argument(errd, images, ref):
    ref = ref.replace("HOST", images.host)
    e = pull_fails(errd, ref, (grpc.StatusCode.INVALID_ARGUMENT,))
    assert e.details(), "no message"


@pytest.mark.parametrize("what", ["repo", "tag"])
def test_missing_image_is_not_found(errd, images, what):
    ref = {"repo": f"{images.host}/no-such-image-e2e:v1",
           "tag": f"{images.host}/base:no-such-tag-e2e"}[what]
    e = pull_fails(errd, ref, (grpc.StatusCode.NOT_FOUND,))
    name = "no-such-image-e2e" if what == "repo" else "no-such-tag-e2e"
    assert name in e.details(), err(e)
    assert_no_image(errd, ref)


def test_nothing_listening_is_unavailable(errd):
    ref = f"{errd.dead_host}/x:v1"
    t0 = time.monotonic()
    e = pull_fails(errd, ref, (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN))
    assert errd.dead_host in e.details(), err(e)
    assert time.monotonic() - t0 < 20


def _free_port_in(lo, hi):
    import socket
    for port in range(lo, hi):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    pytest.skip(f"no free port in {lo}..{hi}")


def test_dead_port_that_reads_like_a_status_is_unavailable(errd):
    """A registry port holding 401 or 404 (127.0.0.1:40163) is no HTTP status: connection
    refused stays UNAVAILABLE, not PERMISSION_DENIED or NOT_FOUND."""
    for lo in (40100, 40400):
        host = f"127.0.0.1:{_free_port_in(lo, lo + 100)}"
        e = pull_fails(errd, f"{host}/x:v1", (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN))
        assert host in e.details(), err(e)


def test_corrupt_blob_fails(errd, images):
    _need_base(errd, images)
    c = images.corrupt
    # Its twin, an uncorrupted uncompressed layer, pulls: the failure is the digest's.
    assert pull(errd, images.plaintar.ref) == images.plaintar.id
    before = layer_dirs(errd)
    e = pull_fails(errd, c.ref, (grpc.StatusCode.DATA_LOSS,))
    assert "did not match" in e.details() or "mismatch" in e.details(), err(e)
    assert_no_image(errd, c.ref)
    assert_no_image(errd, c.id)
    assert layer_dirs(errd) == before


@pytest.mark.parametrize("variant", list(HOSTILE))
def test_hostile_layer_is_refused(errd, images, variant):
    _need_base(errd, images)
    img = images.hostile[variant]
    root = errd.root_dir
    outside = root / "outside"  # "../../outside" from a dir two levels under root_dir
    outside.write_text("outside\n")
    nlinks = {str(outside): 1, "/etc/passwd": os.lstat("/etc/passwd").st_nlink}
    before = layer_dirs(errd)
    escaped = []
    try:
        pull_fails(errd, img.ref)
        escaped += R.find_names(errd.base, ESCAPE_NAMES)
        for top in ("/", "/etc", "/tmp", "/var/tmp"):
            escaped += [os.path.join(top, n) for n in ESCAPE_NAMES
                        if os.path.lexists(os.path.join(top, n))]
        links = {p: os.lstat(p).st_nlink for p in nlinks}
        assert not escaped, f"hostile layer {variant}: files escaped: {escaped}"
        assert links == nlinks, f"hostile layer {variant}: hard-linked outside: {links}"
        assert_no_image(errd, img.ref)
        assert_no_image(errd, img.id)
        assert layer_dirs(errd) == before, "a layer dir left by a refused pull"
        assert img.chain_hex[1] not in layer_dirs(errd)
    finally:
        for p in escaped:
            if os.path.lexists(p):
                os.unlink(p)
        outside.unlink()


def test_errd_still_serves(errd, images):
    _need_base(errd, images)
    assert status(errd, images.base.ref).image.id == images.base.id
    assert images.base.id in [i.id for i in listed(errd)]
    assert_tmp_clean(errd)


# --------------------------------------------------------------------------- stalls


def test_stalled_registry_times_out(runtd_factory):
    stall = R.StallingRegistry(stall=40).start()
    try:
        d = runtd_factory(images=registries_cfg(stall.host, pull_timeout=2),
                          allow_log_errors=True)
        t0 = time.monotonic()
        e = pull_fails(d, f"{stall.host}/stalled:v1", timeout=30)
        took = time.monotonic() - t0
        assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, err(e)
        assert took < 20, f"took {took:.1f}s with pull_timeout 2"
        assert any(r != "GET /v2/" for r in stall.requests), stall.requests
        assert_no_image(d, f"{stall.host}/stalled:v1")
        # The daemon is fine afterwards.
        d.runtime().Version(pb.VersionRequest(), timeout=T)
    finally:
        stall.stop()


# --------------------------------------------------------------------------- restart


def test_images_survive_restart(runtd_factory, images):
    """Not in the CRI text, but the kubelet assumes it: pulled images stay after a restart."""
    d = image_runtd(runtd_factory, images.host)
    m = images.multi
    pull(d, m.ref)
    before = {c: os.stat(d.root_dir / "layers" / c).st_ino for c in m.chain_hex}
    d.stop()
    d.start()
    i = status(d, m.ref).image
    assert i.id == m.id and list(i.repo_digests) == [m.digest_ref]
    assert {c: os.stat(d.root_dir / "layers" / c).st_ino for c in m.chain_hex} == before
    assert [x.id for x in listed(d)] == [m.id]
    assert_tmp_clean(d, "restart")
