"""Trees deeper than any stack and longer than PATH_MAX (issue 14): a container's writable
layer and an image's layer, 5,000 levels each. runtd measures and removes them and stays up
(the same process all along)."""

import os
import time

import pytest

import registry as R
from conftest import fresh_fs_info, pb
from test_containers import EMPTY_CTRS, Ctrs

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="LXC containers need root")
T = 60
DEPTH = 5000
# 20 rounds of `mkdir -p` 250 levels deep, each followed by a physical cd (ash's logical cd
# builds the whole path and stops at PATH_MAX): 5,000 levels, a path of 10,000 bytes.
BUILD = ("p=d; j=1; while [ $j -lt 250 ]; do p=$p/d; j=$((j+1)); done; "
         "i=0; while [ $i -lt 20 ]; do mkdir -p $p && cd -P $p || exit 1; i=$((i+1)); done; "
         ": > bottom; : > /built; trap 'exit 0' TERM; while true; do sleep 0.1; done")


@pytest.fixture(scope="module")
def images(registry, tmp_path_factory):
    """plain: busybox; deep: busybox + a layer holding one file 5,000 levels down."""
    lay = R.OciLayout.create(tmp_path_factory.mktemp("deep-oci"))
    try:
        R.busybox_image(lay, "plain")
        deep = "/".join(["a"] * DEPTH) + "/f"  # 10,001 bytes: a PAX path
        lay.append_layer("plain", R.layer_tar([R.File(deep, "deep\n")]), new_tag="deep")
        out = {}
        for tag in ("plain", "deep"):
            lay.push(tag, registry.host, f"deep/{tag}:1")
            out[tag] = f"{registry.host}/deep/{tag}:1"
        out["deep-chain"] = lay.chain_ids("deep")[-1]
        return out
    finally:
        lay.remove()


def test_deep_container_tree(runtd_factory, tmp_path, images):
    ctrs = Ctrs(runtd_factory, tmp_path, {"plain": images["plain"]})
    try:
        pid = ctrs.d.proc.pid
        pod, cfg = ctrs.pod()
        cid = ctrs.run_ctr(pod, cfg, command=["/bin/sh", "-c", BUILD])
        upper = ctrs.d.root_dir / "containers" / cid / "upper"
        t0 = time.monotonic()
        while not (upper / "built").exists():
            assert time.monotonic() - t0 < 25, "the container did not build its tree"
            assert ctrs.cstatus(cid).state == pb.CONTAINER_RUNNING
            time.sleep(0.2)
        built_s = time.monotonic() - t0

        t0 = time.monotonic()
        fs = fresh_fs_info(ctrs.d.image()).container_filesystems[0]
        assert fs.inodes_used.value > DEPTH, fs
        st = ctrs.rt().ContainerStats(pb.ContainerStatsRequest(container_id=cid),
                                      timeout=T).stats
        assert st.writable_layer.inodes_used.value >= DEPTH + 2, st.writable_layer
        measured_s = time.monotonic() - t0

        t0 = time.monotonic()
        ctrs.cstop(cid, timeout=5)
        ctrs.crm(cid)
        removed_s = time.monotonic() - t0
        assert not (ctrs.d.root_dir / "containers" / cid).exists()
        assert ctrs.d.alive() and ctrs.d.proc.pid == pid
        fs = fresh_fs_info(ctrs.d.image()).container_filesystems[0]
        assert fs.inodes_used.value < DEPTH, fs
        print(f"built {built_s:.1f}s measured {measured_s:.1f}s removed {removed_s:.1f}s")
        ctrs.remove(pod)
        assert ctrs.leftovers() == EMPTY_CTRS
        assert ctrs.d.alive() and ctrs.d.proc.pid == pid
    finally:
        ctrs.cleanup()


def test_deep_image_layer(runtd_factory, images):
    host = images["deep"].split("/")[0]
    d = runtd_factory(images={"registries": [{"prefix": host, "insecure": True}]})
    pid = d.proc.pid
    spec = pb.ImageSpec(image=images["deep"])
    t0 = time.monotonic()
    d.image().PullImage(pb.PullImageRequest(image=spec), timeout=T)
    pulled_s = time.monotonic() - t0
    layer = d.root_dir / "layers" / images["deep-chain"].removeprefix("sha256:")
    assert layer.is_dir()
    fs = fresh_fs_info(d.image()).image_filesystems[0]
    assert fs.inodes_used.value > DEPTH, fs
    t0 = time.monotonic()
    d.image().RemoveImage(pb.RemoveImageRequest(image=spec), timeout=T)
    removed_s = time.monotonic() - t0
    assert not layer.exists()
    assert os.listdir(d.root_dir / "layers") == []
    fs = fresh_fs_info(d.image()).image_filesystems[0]
    assert fs.inodes_used.value < 10, fs
    assert d.alive() and d.proc.pid == pid
    print(f"pulled {pulled_s:.1f}s removed {removed_s:.1f}s")
