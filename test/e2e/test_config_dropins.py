"""runt.yaml.d/ drop-ins seen over CRI, and runtd --print-config (docs/configuration.md,
"Drop-in files")."""

import json
import subprocess

import pytest

from conftest import CALL_TIMEOUT, RUNTD, RUNTD_ENV, pb

T = CALL_TIMEOUT


def print_config(config, *flags):
    """runtd --config CONFIG --print-config FLAGS... -> CompletedProcess (text)."""
    return subprocess.run([str(RUNTD), "--config", str(config), "--print-config", *flags],
                          capture_output=True, text=True, timeout=30, env=RUNTD_ENV,
                          stdin=subprocess.DEVNULL)


def status(d):
    r = d.runtime().Status(pb.StatusRequest(verbose=True), timeout=T)
    return (r, {c.type: c for c in r.status.conditions}, json.loads(r.info["runtime"]),
            json.loads(r.info["config"]))


@pytest.mark.valgrind
def test_dropins_change_what_cri_reports(runtd_factory, tmp_path):
    d = runtd_factory(start=False, default_runtime="f",
                      runtimes={"lxc": ("lxc", {}), "f": ("fake", {"ready": "true"})},
                      containers={"pids_limit": 100})
    dropins = d.config.parent / "runt.yaml.d"
    dropins.mkdir()
    # Applied in name order: 10 adds a handler and removes one, 20 changes one option of f
    # (the rest of f stays), makes the new handler the default and sets a section key.
    (dropins / "10-extra.yaml").write_text(
        "runtimes:\n"
        "  extra:\n"
        "    backend: fake\n"
        "  lxc: !unset\n"
        "containers:\n"
        "  pids_limit: 200\n")
    (dropins / "20-more.yaml").write_text(
        "default_runtime: extra\n"
        "runtimes:\n"
        "  f:\n"
        "    options:\n"
        "      ready: 'false'\n"
        "containers:\n"
        "  pids_limit: 300\n"
        "log_level: warn\n")
    # Not read: not named *.yaml, or hidden.
    for name in ("30-off.yaml.disabled", "README", ".40-hidden.yaml", "50.yml"):
        (dropins / name).write_text("runtimes: [not, read]\n")
    d.start()

    r, cond, runtime, config = status(d)
    assert sorted(h.name for h in r.runtime_handlers) == ["", "extra", "f"]
    assert runtime["defaultRuntime"] == "extra"
    handlers = {h["name"]: h for h in runtime["handlers"]}
    assert handlers["extra"]["backend"] == "fake"
    assert handlers["f"]["backend"] == "fake"
    assert handlers["f"]["ready"] is False  # the option 20-more.yaml set
    assert cond["RuntimeReady"].status is True  # it follows the default handler: extra
    assert config["pidsLimit"] == 300
    assert config["logLevel"] == "debug"  # the test's --log-level flag beats the drop-in

    # --print-config: the same merged config, flags included, nothing started.
    flags = ["--listen", d.listen, "--state-dir", str(d.state_dir), "--root-dir",
             str(d.root_dir), "--run-dir", str(d.run_dir), "--log-level", "debug"]
    p = print_config(d.config, *flags)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    text = p.stdout
    assert "default_runtime: extra\n" in text
    runtimes = text.split("runtimes:\n", 1)[1].split("\ncni:", 1)[0]
    assert runtimes == ("  f:\n"
                        "    backend: fake\n"
                        "    options:\n"
                        "      ready: 'false'\n"
                        "  extra:\n"
                        "    backend: fake"), text
    assert "containers:\n  pids_limit: 300\n" in text
    assert "log_level: debug\n" in text
    assert f"listen: {d.listen}\n" in text
    assert f"state_dir: {d.state_dir}\n" in text

    # Round trip: the printed file, loaded again and printed, is the same text.
    printed = tmp_path / "printed.yaml"
    printed.write_text(text)
    again = print_config(printed)
    assert again.returncode == 0, again.stderr
    assert again.stdout == text
    # and without the flags, the drop-in's log level shows
    assert "log_level: warn\n" in print_config(d.config).stdout


def test_print_config_error_names_the_dropin(tmp_path):
    config = tmp_path / "runt.yaml"
    config.write_text("log_level: info\nruntimes:\n  lxc:\n")
    dropins = tmp_path / "runt.yaml.d"
    dropins.mkdir()
    (dropins / "10-good.yaml").write_text("runtimes:\n  f: {backend: fake}\n")
    bad = dropins / "20-bad.yaml"
    bad.write_text("server:\n  workers: 10\n  wrokers: 12\n")
    p = print_config(config)
    assert p.returncode != 0
    assert p.stdout == ""
    assert f"{bad}:3:3: key 'server.wrokers': unknown key" in p.stderr, p.stderr

    bad.write_text("cni:\n  plugin_timeout: 0\n")
    p = print_config(config)
    assert p.returncode != 0
    assert f"{bad}:2:19: key 'cni.plugin_timeout': 0 is out of range" in p.stderr, p.stderr

    # runtd itself refuses to start with it, with the same message.
    r = subprocess.run([str(RUNTD), "--config", str(config), "--listen",
                        f"unix://{tmp_path}/runt.sock", "--state-dir", str(tmp_path / "s"),
                        "--root-dir", str(tmp_path / "r"), "--run-dir", str(tmp_path / "run")],
                       capture_output=True, text=True, timeout=30, env=RUNTD_ENV,
                       stdin=subprocess.DEVNULL)
    assert r.returncode != 0
    assert f"{bad}:2:19: key 'cni.plugin_timeout'" in r.stderr, r.stderr
    assert not (tmp_path / "runt.sock").exists()

    bad.unlink()
    p = print_config(config)
    assert p.returncode == 0, p.stderr
    assert "  lxc:\n    backend: lxc\n  f:\n    backend: fake\n" in p.stdout
