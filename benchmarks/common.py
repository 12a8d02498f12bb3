"""What the server benchmarks share: a real `tensorboard` subprocess, HTTP timing, memory."""

import contextlib
import glob
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import numpy as np

from tb_lstm_states import states as states_lib

PREFIX = "/data/plugin/lstm_states/"


def make_states(rs, batch, time_steps, units, num_layers=1):
    """An LSTM's states of plausible ranges: tanh-like states, gates in (0, 1)."""
    layers = []
    for _ in range(num_layers):
        arrays = {
            name: np.tanh(rs.randn(batch, time_steps, units)).astype(np.float32)
            for name in states_lib.array_kinds("lstm")
        }
        gates = {g: (arrays[g] + 1) / 2 for g in states_lib.GATE_NAMES["lstm"]}
        layers.append(states_lib.LayerStates(arrays["hidden"], arrays["cell"], gates))
    return states_lib.RecurrentStates(
        kind="lstm", layers=layers, lengths=np.full(batch, time_steps)
    )


def directory_bytes(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url):
    with urllib.request.urlopen(url, timeout=600) as response:
        return response.read()


def url_of(base, route, **params):
    return base + PREFIX + route + "?" + urllib.parse.urlencode(params)


@contextlib.contextmanager
def tensorboard(logdir, load_fast, extra_args=()):
    """Runs `tensorboard` on 127.0.0.1 in its own process group.

    Yields:
      `(base URL, pid, started)`: `started` is `time.perf_counter()` at its launch.
    """
    port = free_port()
    started = time.perf_counter()
    log_path = os.path.join(os.path.dirname(os.path.abspath(logdir)), "tensorboard-%d.log" % port)
    log = open(log_path, "wb")  # noqa: SIM115 - closed in the finally below, once the server stops
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            logdir,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--load_fast",
            load_fast,
            *list(extra_args),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = "http://127.0.0.1:%d" % port
    try:
        deadline = time.time() + 120
        while True:
            try:
                get(base + "/data/plugins_listing")
                break
            except OSError:
                if process.poll() is not None or time.time() > deadline:
                    raise RuntimeError("tensorboard did not start; see %s" % log.name) from None
                time.sleep(0.2)
        yield base, process.pid, started
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def rss_mb(pid):
    """Resident memory of one process, in MiB (NaN once it is gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def children(pid):
    """The direct children of a process, started from any of its threads (TensorBoard
    starts its data server from a thread of its own)."""
    found = []
    for task in glob.glob("/proc/%d/task/*/children" % pid):
        try:
            with open(task) as f:
                found += [int(p) for p in f.read().split()]
        except OSError:
            pass
    return found


def tree_rss_mb(pid):
    """Resident memory of a process and its children, in MiB."""
    return rss_mb(pid) + sum(rss_mb(c) for c in children(pid))


def timed(urls):
    """Seconds each GET took, in order."""
    times = []
    for url in urls:
        start = time.perf_counter()
        get(url)
        times.append(time.perf_counter() - start)
    return times


def report(name, times, target_ms=None):
    times_ms = np.array(times) * 1000
    p50, p95 = np.percentile(times_ms, 50), np.percentile(times_ms, 95)
    verdict = (
        ""
        if target_ms is None
        else ("  (target %g ms: %s)" % (target_ms, "ok" if p95 <= target_ms else "MISSED"))
    )
    print("  %-52s n=%-4d p50 %8.1f ms  p95 %8.1f ms%s" % (name, len(times), p50, p95, verdict))
    return p50, p95
