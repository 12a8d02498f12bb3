"""The wheel: built from the repo, it carries the tab's bundle; installed into a fresh
virtual environment, it registers the plugin and a real TensorBoard from that
environment serves the tab.

The fresh environment gets the wheel alone (`--no-deps`); its dependencies (torch,
tensorboard, ...) come from this test's own environment through a `.pth` file naming
a directory of links to them, with this repo's editable install left out, so the
package that runs is the wheel's and nothing is downloaded.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import time
import zipfile

import pytest
from conftest import REPO, free_port, http_get

pytestmark = pytest.mark.timeout(300)

# Entries of the parent site-packages that belong to this repo's own install.
_OWN = ("tb_lstm_states", "__editable__", "tb-lstm-states")


def _bundle():
    with open(os.path.join(REPO, "tb_lstm_states", "static", "index.js"), "rb") as f:
        return f.read()


def _run(args, **kwargs):
    result = subprocess.run(args, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise AssertionError(
            "%s failed (%d):\n%s\n%s"
            % (
                " ".join(map(str, args)),
                result.returncode,
                result.stdout[-4000:],
                result.stderr[-4000:],
            )
        )
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """Builds the wheel from a copy of the repo's files (tracked and not ignored)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    files = _run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO
    ).stdout
    for name in filter(None, files.split("\0")):
        origin = os.path.join(REPO, name)
        if not os.path.isfile(origin):  # deleted in the working tree
            continue
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(origin, target)
    dist = tmp / "dist"
    # No build isolation: setuptools from this environment, nothing downloaded.
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(dist),
            str(source),
        ]
    )
    wheels = list(dist.glob("tb_lstm_states-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_contains_the_bundle_and_the_entry_point(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert "tb_lstm_states/static/index.js" in names
        for package in ("server", "storage"):  # subpackages are packaged too
            assert "tb_lstm_states/%s/__init__.py" % package in names
        bundle = archive.read("tb_lstm_states/static/index.js")
        assert bundle == _bundle()
        entry_points = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        assert len(entry_points) == 1
        text = archive.read(entry_points[0]).decode()
    assert "[tensorboard_plugins]" in text
    assert "lstm_states = tb_lstm_states.server.loader:StatesLoader" in text
    # Nothing from the demo, the tests or the frontend sources.
    assert not any(n.startswith(("demo/", "tests/", "frontend/", "benchmarks/")) for n in names)


@pytest.fixture(scope="module")
def fresh_venv(wheel, tmp_path_factory):
    """A new virtual environment with the wheel installed; returns its python."""
    tmp = tmp_path_factory.mktemp("venv")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    # pip from this environment installs into the new one.
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ]
    )
    # The dependencies: links to this environment's packages, minus this repo's install.
    parent = sysconfig.get_paths()["purelib"]
    deps = tmp / "deps"
    deps.mkdir()
    for name in os.listdir(parent):
        if name.startswith(_OWN) or name.endswith(".pth"):
            continue
        os.symlink(os.path.join(parent, name), deps / name)
    purelib = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
    ).stdout.strip()
    with open(os.path.join(purelib, "zz_parent_deps.pth"), "w") as f:
        f.write(str(deps) + "\n")
    return python


def test_installed_wheel_registers_the_plugin(fresh_venv):
    script = textwrap.dedent("""
        import importlib.metadata as md, json, os, sys
        import tb_lstm_states
        eps = [e for e in md.entry_points(group="tensorboard_plugins") if e.name == "lstm_states"]
        loader = eps[0].load()
        static = os.path.join(os.path.dirname(tb_lstm_states.__file__), "static", "index.js")
        print(json.dumps({
            "entry_points": [e.value for e in eps],
            "package": tb_lstm_states.__file__,
            "distribution": str(md.distribution("tb-lstm-states").locate_file("")),
            "loader": loader.__module__ + "." + loader.__name__,
            "static": os.path.isfile(static),
            "prefix": sys.prefix,
        }))
    """)
    info = json.loads(_run([str(fresh_venv), "-c", script], cwd="/").stdout)
    assert info["entry_points"] == ["tb_lstm_states.server.loader:StatesLoader"]
    assert info["package"].startswith(info["prefix"]), info  # the wheel's copy, not the repo's
    assert info["distribution"].startswith(info["prefix"]), info
    assert info["loader"] == "tb_lstm_states.server.loader.StatesLoader"
    assert info["static"]


def test_tensorboard_from_the_fresh_venv_serves_the_tab(fresh_venv, tmp_path):
    logdir = tmp_path / "logs"
    # Log a few steps with the installed wheel, as a user would.
    script = textwrap.dedent("""
        import sys, torch, tb_lstm_states as tls
        lstm = torch.nn.LSTM(3, 5, batch_first=True)
        with tls.StateWriter(sys.argv[1]) as writer:
            for step in range(3):
                writer.add_states("lstm", tls.capture(lstm, torch.randn(2, 7, 3)), step)
    """)
    _run([str(fresh_venv), "-c", script, str(logdir / "run1")], cwd="/")
    port = free_port()
    log_path = tmp_path / "tensorboard.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                str(fresh_venv),
                "-m",
                "tensorboard.main",
                "--logdir",
                str(logdir),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd="/",
            start_new_session=True,
        )
    url = "http://127.0.0.1:%d" % port
    try:
        listing = None
        deadline = time.time() + 90
        while time.time() < deadline:
            assert process.poll() is None, log_path.read_text(errors="replace")
            try:
                status, _, body = http_get(url + "/data/plugins_listing", timeout=5)
            except OSError:
                status = None
            if status == 200:
                listing = json.loads(body)
                if listing.get("lstm_states", {}).get("enabled"):
                    break
            time.sleep(0.3)
        assert listing is not None, log_path.read_text(errors="replace")
        assert listing["lstm_states"]["enabled"], listing.get("lstm_states")
        assert listing["lstm_states"]["tab_name"] == "LSTM States"
        status, headers, body = http_get(url + "/data/plugin/lstm_states/index.js")
        assert status == 200
        assert headers["Content-Type"].split(";")[0] == "text/javascript"
        assert body == _bundle()
        status, _, body = http_get(url + "/data/plugin/lstm_states/runs")
        assert status == 200
        assert json.loads(body)["run1"]["lstm"]["kind"] == "lstm"
    finally:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()
