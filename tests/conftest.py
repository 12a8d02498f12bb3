"""Shared test fixtures: real TensorBoard subprocesses and a real Chromium."""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARTIFACTS = os.path.join(REPO, "test-artifacts")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port():
    """Returns a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=30):
    """Returns `(status, headers, body)` of a GET, without raising on 4xx/5xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def _read_log(path):
    with open(path, errors="replace") as f:
        return f.read()


@contextlib.contextmanager
def tensorboard_server(logdir, *, load_fast, extra_args=(), startup_timeout=90):
    """Runs a real `tensorboard` on 127.0.0.1 and a free port; yields its base URL.

    The process is started in its own session and stopped through its PID's process
    group, which also stops the Rust data server it spawns with `--load_fast=true`.
    """
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "tensorboard.main",
        "--logdir",
        str(logdir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--load_fast",
        "true" if load_fast else "false",
        "--reload_interval",
        "1",
        *list(extra_args),
    ]
    log_path = os.path.join(str(logdir), "..", "tensorboard-%d.log" % port)
    with open(log_path, "wb") as log:  # the server writes to its own copy of the descriptor
        process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = "http://127.0.0.1:%d" % port
    try:
        deadline = time.time() + startup_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError("tensorboard exited: " + _read_log(log_path))
            try:
                status, _, _ = http_get(url + "/data/plugins_listing", timeout=5)
                if status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError("tensorboard did not start: " + _read_log(log_path))
            time.sleep(0.2)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def wait_for_json(url, predicate, timeout=60):
    """Polls a JSON route until `predicate(body)` holds; returns the body."""
    deadline = time.time() + timeout
    body = None
    while time.time() < deadline:
        status, _, raw = http_get(url)
        if status == 200:
            body = json.loads(raw)
            if predicate(body):
                return body
        time.sleep(0.5)
    raise AssertionError("timed out waiting on %s; last answer: %r" % (url, body))


@pytest.fixture(params=[True, False], ids=["load_fast", "python_loader"])
def load_fast(request):
    """Runs a test once per TensorBoard load path."""
    return request.param


@pytest.fixture(scope="session")
def chromium_path():
    """Path to Debian's Chromium. Missing is a failure under CI=true, a skip elsewhere."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return path


@pytest.fixture(scope="session")
def browser(chromium_path):
    """A headless Chromium driven by Playwright."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def artifacts_dir():
    """Where tests save screenshots; kept after the run."""
    os.makedirs(ARTIFACTS, exist_ok=True)
    return ARTIFACTS
