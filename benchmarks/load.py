"""`states` latency while heavy requests run, against the same without them, in one run.

    .venv/bin/python benchmarks/load.py                    # the Rust load path
    .venv/bin/python benchmarks/load.py --load-fast false  # the Python loader
    .venv/bin/python benchmarks/load.py --heavy 12 --requests 400

Builds a run of 40 steps x 2 MB (a 1-layer LSTM: batch 8, time 250, 80 units, float16),
starts `tensorboard` with no flag but `--logdir`, and measures `states` of one
sequence (a 40 kB ranged read; every request a (step, kind, sequence) not read
before, so none is served from the cache) twice:

1. alone;
2. while `--heavy` clients (default 8) ask for projections without pause, each a
   t-SNE or PCA of steps and sequences nobody asked for before (so none is cached
   or shared): half of them patient, half giving up after 2 s, as a browser tab
   that moved on would.

It prints p50/p99 of both and their ratios, how many projections were answered and
abandoned, and the peak resident memory of TensorBoard and its data server during
the heavy phase. Projections run on `--lstm_states_workers` threads (default 2): the
rest wait their turn, and those whose client left before their turn never run.

Measured on 2026-12-07 on a busy 2-core AMD EPYC: several computations at once, each
on a multi-threaded BLAS, were 10-70 times slower than with BLAS on one thread, which
`server/work.py` sets once, when its first pool starts.
"""

import argparse
import itertools
import os
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.request

import numpy as np
from common import get, make_states, tensorboard, tree_rss_mb, url_of

import tb_lstm_states as tls
from tb_lstm_states import states as states_lib

STEPS = 40
BATCH, TIME, UNITS = 8, 250, 80


def build_logdir(logdir):
    rs = np.random.RandomState(0)
    base = make_states(rs, BATCH, TIME, UNITS)
    with tls.StateWriter(os.path.join(logdir, "run")) as writer:
        for step in range(STEPS):
            drifted = states_lib.RecurrentStates(
                kind="lstm",
                layers=[
                    states_lib.LayerStates(
                        np.tanh(base.layers[0].hidden + 0.01 * step),
                        base.layers[0].cell + 0.01 * step,
                        dict(base.layers[0].gates),
                    )
                ],
                lengths=base.lengths,
            )
            writer.add_states("encoder", drifted, step)


def states_urls(base, keys):
    return [
        url_of(
            base,
            "states",
            run="run",
            tag="encoder",
            step=step,
            layer=0,
            kind=kind,
            sequence=sequence,
        )
        for step, kind, sequence in keys
    ]


def latencies(urls):
    times = []
    for url in urls:
        start = time.perf_counter()
        get(url)
        times.append(time.perf_counter() - start)
    return np.array(times) * 1000


def heavy_requests(base):
    """Projections nobody asked for before: (steps, sequences, method) never repeat."""
    kinds = states_lib.array_kinds("lstm")
    for i in itertools.count():
        first = i % STEPS
        steps = "%d,%d" % (first, (first + 1 + i // STEPS) % STEPS)
        if steps.split(",")[0] == steps.split(",")[1]:
            continue
        sequences = ",".join(str((i + k) % BATCH) for k in range(4))
        method = "tsne" if i % 3 else "pca"
        yield url_of(
            base,
            "projection",
            run="run",
            tag="encoder",
            layer=0,
            kind=kinds[(i // (2 * STEPS)) % len(kinds)],
            method=method,
            steps=steps,
            sequence=sequences,
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load-fast", default="true", choices=["true", "false"])
    parser.add_argument("--heavy", type=int, default=8, help="concurrent projection clients")
    parser.add_argument("--requests", type=int, default=300, help="states requests per phase")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="--lstm_states_workers for tensorboard (default: its default)",
    )
    args = parser.parse_args()

    root = tempfile.mkdtemp(prefix="tls-load-")
    logdir = os.path.join(root, "logdir")
    try:
        build_logdir(logdir)
        keys = [
            (s, k, q)
            for s in range(STEPS)
            for k in states_lib.array_kinds("lstm")
            for q in range(BATCH)
        ]
        np.random.RandomState(1).shuffle(keys)
        if 2 * args.requests > len(keys):
            raise SystemExit("--requests is at most %d" % (len(keys) // 2))
        extra = [] if args.workers is None else ["--lstm_states_workers", str(args.workers)]
        with tensorboard(logdir, args.load_fast, extra) as (base, pid, _):
            get(url_of(base, "steps", run="run", tag="encoder"))
            for url in states_urls(base, [(0, "cell", 0)] * 3):  # warm the listing
                get(url)
            alone = latencies(states_urls(base, keys[: args.requests]))

            stop = threading.Event()
            counts = {"answered": 0, "abandoned": 0, "errors": 0}
            lock = threading.Lock()
            requests = heavy_requests(base)
            peak = [tree_rss_mb(pid)]

            def client(patient):
                while not stop.is_set():
                    with lock:
                        url = next(requests)
                    try:
                        with urllib.request.urlopen(url, timeout=600 if patient else 2) as response:
                            response.read()
                        outcome = "answered"
                    except (TimeoutError, OSError) as e:
                        outcome = "abandoned" if "timed out" in str(e) else "errors"
                    with lock:
                        counts[outcome] += 1

            def sample_memory():
                while not stop.is_set():
                    peak[0] = max(peak[0], tree_rss_mb(pid))
                    time.sleep(0.2)

            threads = [
                threading.Thread(target=client, args=(i % 2 == 0,), daemon=True)
                for i in range(args.heavy)
            ]
            threads.append(threading.Thread(target=sample_memory, daemon=True))
            for t in threads:
                t.start()
            time.sleep(3.0)  # the pools are full before measuring
            started = time.perf_counter()
            loaded = latencies(states_urls(base, keys[args.requests : 2 * args.requests]))
            seconds = time.perf_counter() - started
            stop.set()
            for t in threads:
                t.join(120)

        print(
            "states of one sequence (40 kB, uncached), %d requests each, %s load path, "
            "--lstm_states_workers %s, %d CPUs"
            % (
                args.requests,
                "Rust" if args.load_fast == "true" else "Python",
                "default" if args.workers is None else args.workers,
                os.cpu_count(),
            )
        )
        print("  %-36s %10s %10s" % ("", "p50 ms", "p99 ms"))
        p50a, p99a = np.percentile(alone, 50), np.percentile(alone, 99)
        p50b, p99b = np.percentile(loaded, 50), np.percentile(loaded, 99)
        print("  %-36s %10.1f %10.1f" % ("alone", p50a, p99a))
        print("  %-36s %10.1f %10.1f" % ("with %d projection clients" % args.heavy, p50b, p99b))
        print("  %-36s %10.2f %10.2f" % ("ratio (loaded / alone)", p50b / p50a, p99b / p99a))
        print(
            "projections during the %.1f s measured (and the 3 s before): %d answered, %d "
            "abandoned by their clients, %d errors"
            % (seconds, counts["answered"], counts["abandoned"], counts["errors"])
        )
        print("peak resident memory of TensorBoard and its data server: %.0f MiB" % peak[0])
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
