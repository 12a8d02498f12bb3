"""How fast the plugin backend answers, through a real `tensorboard`, on both load paths.

    .venv/bin/python benchmarks/serve.py            # both load paths
    .venv/bin/python benchmarks/serve.py --load-fast true

Builds a logdir with a run of 200 steps x 2 MB (a 1-layer LSTM record: batch 8,
time 250, 80 units, 6 float16 arrays of 320 kB) and a run of 1,000 small steps, starts
`tensorboard` with no flag but `--logdir` (and the cache size), and prints p50/p95
latencies over HTTP of:

- `states` of one array: cold (each request a step and kind not yet read) and warm;
- `overview` over 1,000 steps;
- an aligned PCA over 100 steps x 2,000 points (cold: each request a new kind);
- an aligned t-SNE over 20 steps x 1,000 points (4 sequences of 250 timesteps; cold);

and the resident memory of the TensorBoard process (which holds the plugin and its
cache; on the Python load path it also holds every loaded event) and of the Rust data
server, after all of them. Targets (p50): states <= 10 ms, overview <= 100 ms,
PCA <= 1 s, t-SNE <= 30 s.

Figures behind choices in the server, measured on 2026-12-07 on a 2-core AMD EPYC
(not all of them rerun by this script):

- TensorBoard's Markdown sanitizer took about 0.3 s for 4,000 characters of some
  inputs, and minutes for 150 KB of `"<a "`: `server/descriptions.py` cuts
  descriptions, renders each text once off the request and never on a poll;
- encoding a projection's 400,000 coordinates as JSON was most of its reply's time;
  rounded to 1e-3 of the largest (`params.rounded_relative`), the short numbers
  encoded several times faster;
- the Rust data server answered a small blob read only after about 40 ms (a TCP
  delayed-ACK stall) but served many at once: `server/source.py` reads version 1
  headers ahead of need and a header beside its array, and re-reads the steps of a
  version 1 tag without listing it again.
"""

import argparse
import json
import os
import shutil
import tempfile
import time

import numpy as np
from common import (
    children,
    directory_bytes,
    get,
    make_states,
    report,
    rss_mb,
    tensorboard,
    timed,
    url_of,
)

import tb_lstm_states as tls
from tb_lstm_states import states as states_lib


def build_logdir(logdir, steps):
    rs = np.random.RandomState(0)
    start = time.perf_counter()
    base = make_states(rs, 8, 250, 80)
    with tls.StateWriter(os.path.join(logdir, "big")) as writer:
        for step in range(steps):
            # A slow drift, so that aligned layouts have something to follow.
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
    small = make_states(rs, 2, 8, 8, num_layers=2)
    with tls.StateWriter(os.path.join(logdir, "long")) as writer:
        for step in range(1000):
            writer.add_states("encoder", small, step)
    print(
        "logdir: %d steps x %.2f MB + 1,000 small steps, %.0f MB, written in %.1f s"
        % (
            steps,
            directory_bytes(os.path.join(logdir, "big")) / steps / 1e6,
            directory_bytes(logdir) / 1e6,
            time.perf_counter() - start,
        )
    )


def bench(logdir, load_fast, steps, cache_mb):
    print("\n--load_fast=%s (cache %d MB)" % (load_fast, cache_mb))
    with tensorboard(logdir, load_fast, ["--lstm_states_cache_mb", str(cache_mb)]) as (
        base,
        pid,
        _,
    ):
        start = time.perf_counter()
        big = url_of(base, "steps", run="big", tag="encoder")
        long = url_of(base, "steps", run="long", tag="encoder")
        while True:
            try:
                if len(json.loads(get(big))) >= steps and len(json.loads(get(long))) >= 1000:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        print("  all %d + 1,000 steps loaded after %.1f s" % (steps, time.perf_counter() - start))
        rss_loaded = rss_mb(pid)

        kinds = states_lib.array_kinds("lstm")
        cold = [
            url_of(base, "states", run="big", tag="encoder", step=s, layer=0, kind=kinds[s % 6])
            for s in range(steps)
        ]
        report("states, one array, cold", timed(cold))
        warm = [
            url_of(base, "states", run="big", tag="encoder", step=7, layer=0, kind="cell")
        ] * 100
        report("states, one array, warm", timed(warm))
        overview = [url_of(base, "overview", run="long", tag="encoder")] * 30
        report("overview, 1,000 steps", timed(overview))
        pca_steps = ",".join(str(s) for s in range(min(100, steps)))
        pca = [
            url_of(
                base,
                "projection",
                run="big",
                tag="encoder",
                layer=0,
                kind=k,
                method="pca",
                steps=pca_steps,
            )
            for k in ("cell", "hidden", "input")
        ]
        report("aligned PCA, 100 steps x 2,000 points, cold", timed(pca))
        tsne = [
            url_of(
                base,
                "projection",
                run="big",
                tag="encoder",
                layer=0,
                kind="hidden",
                method="tsne",
                steps=",".join(str(s) for s in range(20)),
                sequence="0,1,2,3",
            )
        ]
        report("aligned t-SNE, 20 steps x 1,000 points, cold", timed(tsne))
        servers = children(pid)
        print(
            "  resident memory: tensorboard %.0f MB after loading, %.0f MB after the requests"
            "%s; cache budget %d MB"
            % (
                rss_loaded,
                rss_mb(pid),
                "".join(", data server %.0f MB" % rss_mb(c) for c in servers),
                cache_mb,
            )
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load-fast", choices=["both", "true", "false"], default="both")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--cache-mb", type=int, default=256)
    parser.add_argument("--logdir", help="reuse or keep this logdir (default: a temporary one)")
    args = parser.parse_args()
    print(
        "machine: %d CPUs, load average %s"
        % (os.cpu_count(), " ".join("%.1f" % x for x in os.getloadavg()))
    )
    workdir = tempfile.mkdtemp(prefix="tls-serve-")
    logdir = args.logdir or os.path.join(workdir, "logdir")
    try:
        if not os.path.isdir(logdir):
            build_logdir(logdir, args.steps)
        paths = ["true", "false"] if args.load_fast == "both" else [args.load_fast]
        for load_fast in paths:
            bench(logdir, load_fast, args.steps, args.cache_mb)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
