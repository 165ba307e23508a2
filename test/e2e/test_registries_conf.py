"""images.registries_conf: the containers-registries.conf(5) file runt hands to skopeo.

runt normalises every reference itself, so what registries.conf can still change for a
pull is per-location behaviour: `insecure`, and `prefix` -> `location` rewriting. Both are
skopeo's own features; these tests check the file runt.yaml names really is the one used.
"""

import grpc
import pytest

import registry as R
from conftest import pb

PULL_T = 60.0


@pytest.fixture(scope="module")
def small_image(registry):
    lay = R.OciLayout.create()
    try:
        R.busybox_image(lay, "small")
        digest = lay.push("small", registry.host, "confd/small:v1")
        yield {"id": lay.config_digest("small"), "digest": digest}
    finally:
        lay.remove()


def pull(d, ref):
    return d.image().PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref)),
                               timeout=PULL_T).image_ref


def test_without_insecure_the_plain_http_registry_fails(runtd_factory, registry, small_image,
                                                        tmp_path):
    """The control: nothing says the registry is plain HTTP, so skopeo insists on TLS."""
    conf = tmp_path / "registries.conf"
    conf.write_text("")
    d = runtd_factory(images={"registries_conf": str(conf)}, allow_log_errors=True)
    with pytest.raises(grpc.RpcError) as e:
        pull(d, f"{registry.host}/confd/small:v1")
    assert e.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN,
                              grpc.StatusCode.INTERNAL), e.value
    assert registry.host in e.value.details()


def test_registries_conf_insecure_is_honoured(runtd_factory, registry, small_image, tmp_path):
    conf = tmp_path / "registries.conf"
    conf.write_text(f'[[registry]]\nlocation = "{registry.host}"\ninsecure = true\n')
    d = runtd_factory(images={"registries_conf": str(conf)})
    assert pull(d, f"{registry.host}/confd/small:v1") == small_image["id"]


def test_registries_conf_prefix_rewrite_is_honoured(runtd_factory, registry, small_image,
                                                    tmp_path):
    """A prefix that never resolves, rewritten by registries.conf to the local registry."""
    conf = tmp_path / "registries.conf"
    conf.write_text(f'[[registry]]\nprefix = "rewrite.invalid"\nlocation = "{registry.host}"\n'
                    f'insecure = true\n')
    d = runtd_factory(images={"registries_conf": str(conf)})
    assert pull(d, "rewrite.invalid/confd/small:v1") == small_image["id"]
    st = d.image().ImageStatus(pb.ImageStatusRequest(
        image=pb.ImageSpec(image="rewrite.invalid/confd/small:v1")), timeout=10)
    assert list(st.image.repo_tags) == ["rewrite.invalid/confd/small:v1"]
    assert list(st.image.repo_digests) == ["rewrite.invalid/confd/small@" + small_image["digest"]]
