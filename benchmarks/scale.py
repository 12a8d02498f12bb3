"""A logdir of several GB through a real `tensorboard`: listing time, memory, request latency.

    .venv/bin/python benchmarks/scale.py   # both load paths, v1 baseline on the data server
    .venv/bin/python benchmarks/scale.py --load-fast true --no-baseline
    .venv/bin/python benchmarks/scale.py --logdir /tmp/scale  # keep (and reuse) the logdir

Writes `--runs` runs x `--steps` steps of a 1-layer LSTM probe of 8 x 500 x 256
(6 float16 arrays: 12.3 MB a step; 3 x 60 = 2.2 GB by default) with `tls.StateWriter`,
plus a run `long` of one step of a 2 x 100,000 x 64 LSTM (154 MB). Then, for each load
path, it starts `tensorboard --logdir` with no other flag and prints:

- the time until every step of every run is listed by the tab's `runs` route;
- the resident memory of TensorBoard plus its data server, after listing and after
  the requests below;
- p50 and p95 of `states` requests of one whole array ([8, 500, 256]): cold (each a
  step and kind not read before) and warm (the same again);
- on the 100,000-step sequence: the binned route over the whole sequence (1,000
  bins; cold per kind, then warm) and 1,000-step windows at full resolution;
- whether the served arrays equal `read_states`.

The baseline is TensorBoard's own loading of the same bytes, as this package stored
them before version 2 (each step's arrays inside the event file as a blob sequence):
the same runs and steps written in that format, loaded by the data server
(`--baseline-python` adds the Python loader, which takes minutes), listing time and
memory side by side.
"""

import argparse
import json
import os
import shutil
import tempfile
import time

import google_crc32c
import numpy as np
from common import (
    directory_bytes,
    get,
    make_states,
    report,
    tensorboard,
    timed,
    tree_rss_mb,
    url_of,
)
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

import tb_lstm_states as tls
from tb_lstm_states import metadata
from tb_lstm_states import states as states_lib

BATCH, TIME, UNITS = 8, 500, 256
LONG_BATCH, LONG_TIME, LONG_UNITS = 2, 100_000, 64


def drifted(base, step):
    layer = base.layers[0]
    return states_lib.RecurrentStates(
        kind="lstm",
        lengths=base.lengths,
        layers=[
            states_lib.LayerStates(
                np.tanh(layer.hidden + 0.01 * step), layer.cell + 0.01 * step, dict(layer.gates)
            )
        ],
    )


def build_logdir(logdir, runs, steps):
    rs = np.random.RandomState(0)
    base = make_states(rs, BATCH, TIME, UNITS)
    start = time.perf_counter()
    for run in range(runs):
        with tls.StateWriter(os.path.join(logdir, "run%d" % run)) as writer:
            for step in range(steps):
                writer.add_states("encoder", drifted(base, step + run), step)
    with tls.StateWriter(os.path.join(logdir, "long")) as writer:
        writer.add_states("encoder", make_states(rs, LONG_BATCH, LONG_TIME, LONG_UNITS), 0)
    print(
        "logdir: %d runs x %d steps x %.1f MB + one step of %d x %d x %d: %.2f GB, "
        "written in %.0f s"
        % (
            runs,
            steps,
            directory_bytes(os.path.join(logdir, "run0")) / steps / 1e6,
            LONG_BATCH,
            LONG_TIME,
            LONG_UNITS,
            directory_bytes(logdir) / 1e9,
            time.perf_counter() - start,
        )
    )


def _masked(crc):
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def _v1_value(tag, states):
    """The version 1 record of `states`: header JSON and raw arrays, a blob sequence."""
    entries, blobs = [], []
    for index, layer in enumerate(states.layers):
        for name in states_lib.array_kinds("lstm"):
            array = np.ascontiguousarray(layer.get(name), "<f2")
            entries.append(
                {"layer": index, "kind": name, "dtype": "float16", "shape": list(array.shape)}
            )
            blobs.append(array.tobytes())
    header = {
        "version": 1,
        "kind": "lstm",
        "num_layers": 1,
        "num_directions": 1,
        "batch": BATCH,
        "time": TIME,
        "lengths": [TIME] * BATCH,
        "series": [],
        "tokens": None,
        "arrays": entries,
    }
    blobs.insert(0, b"TLSH" + json.dumps(header).encode())
    content = {
        "version": 1,
        "role": "states",
        "kind": "lstm",
        "num_layers": 1,
        "num_directions": 1,
        "batch": BATCH,
        "time": TIME,
        "units": {k: UNITS for k in states_lib.array_kinds("lstm")},
    }
    return summary_pb2.Summary.Value(
        tag=tag,
        tensor=tensor_pb2.TensorProto(
            dtype=types_pb2.DT_STRING,
            string_val=blobs,
            tensor_shape=tensor_shape_pb2.TensorShapeProto(
                dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(blobs))]
            ),
        ),
        metadata=summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(
                plugin_name=metadata.PLUGIN_NAME, content=json.dumps(content).encode()
            ),
            data_class=summary_pb2.DATA_CLASS_BLOB_SEQUENCE,
        ),
    )


def build_baseline(logdir, runs, steps):
    """The same runs and steps, each step's arrays inside the event file (version 1)."""
    rs = np.random.RandomState(0)
    base = make_states(rs, BATCH, TIME, UNITS)
    for run in range(runs):
        directory = os.path.join(logdir, "run%d" % run)
        os.makedirs(directory)
        with open(os.path.join(directory, "events.out.tfevents.1.baseline"), "wb") as f:
            for step in range(steps):
                event = event_pb2.Event(
                    wall_time=time.time(),
                    step=step,
                    summary=summary_pb2.Summary(
                        value=[_v1_value("encoder", drifted(base, step + run))]
                    ),
                )
                payload = event.SerializeToString()
                length = len(payload).to_bytes(8, "little")
                f.write(length + _masked(google_crc32c.value(length)).to_bytes(4, "little"))
                f.write(payload + _masked(google_crc32c.value(payload)).to_bytes(4, "little"))
    print(
        "baseline logdir (version 1, arrays in the event file): %.2f GB"
        % (directory_bytes(logdir) / 1e9)
    )


def wait_listed(base, started, expected, timeout):
    """Seconds from `started` until the `runs` route lists `expected` {run: steps}, or
    None on timeout."""
    while time.perf_counter() - started < timeout:
        try:
            runs = json.loads(get(url_of(base, "runs")))
            if all(
                runs.get(r, {}).get("encoder", {}).get("steps") == n for r, n in expected.items()
            ):
                return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.25)
    return None


def bench(logdir, load_fast, runs, steps, rng):
    print("\n--load_fast=%s" % load_fast)
    expected = dict({"run%d" % r: steps for r in range(runs)}, long=1)
    with tensorboard(logdir, load_fast) as (base, pid, started):
        listed = wait_listed(base, started, expected, 900)
        print(
            "  every step listed %s after tensorboard started"
            % ("%.1f s" % listed if listed else "TIMEOUT")
        )
        memory = tree_rss_mb(pid)
        print("  memory after listing: %.0f MB (tensorboard + data server)" % memory)
        kinds = states_lib.array_kinds("lstm")
        picks = [
            (int(rng.integers(runs)), int(rng.integers(steps)), kinds[int(rng.integers(6))])
            for _ in range(40)
        ]
        urls = [
            url_of(base, "states", run="run%d" % r, tag="encoder", step=s, layer=0, kind=k)
            for r, s, k in dict.fromkeys(picks)
        ]
        report("states, one array (%d x %d x %d), cold" % (BATCH, TIME, UNITS), timed(urls))
        report("states, one array, warm", timed(urls))
        long = dict(run="long", tag="encoder", step=0, layer=0, sequence=0)
        binned = [url_of(base, "states", kind=k, bins=1000, **long) for k in kinds]
        report("binned, 100,000 steps -> 1,000 bins, cold", timed(binned), 500)
        report("binned, 100,000 steps -> 1,000 bins, warm", timed(binned), 500)
        windows = [
            url_of(base, "states", kind=kinds[i % 6], start=t, stop=t + 1000, **long)
            for i, t in enumerate(rng.integers(0, LONG_TIME - 1000, 30).tolist())
        ]
        report("window of 1,000 steps, full resolution", timed(windows), 200)
        print("  memory after the requests: %.0f MB (tensorboard + data server)" % tree_rss_mb(pid))
        r, s, k = picks[0]
        served = np.frombuffer(
            get(url_of(base, "states", run="run%d" % r, tag="encoder", step=s, layer=0, kind=k)),
            "<f4",
        )
        (record,) = tls.read_states(logdir, run="run%d" % r, steps=s)
        same = np.array_equal(served, record.states.layers[0].get(k).astype(np.float32).ravel())
        print("  served array equals read_states: %s" % same)
    return listed, memory


def bench_baseline(logdir, load_fast, runs, steps):
    print("\nbaseline (version 1), --load_fast=%s" % load_fast)
    with tensorboard(logdir, load_fast) as (base, pid, started):
        listed = wait_listed(base, started, {"run%d" % r: steps for r in range(runs)}, 1800)
        print(
            "  every step listed %s after tensorboard started"
            % ("%.1f s" % listed if listed else "TIMEOUT")
        )
        memory = tree_rss_mb(pid)
        print("  memory after listing: %.0f MB (tensorboard + data server)" % memory)
    return listed, memory


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load-fast", choices=["both", "true", "false"], default="both")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--baseline-python",
        action="store_true",
        help="also load the baseline with the Python loader (minutes)",
    )
    parser.add_argument("--logdir", help="keep (and reuse) the logdir here")
    args = parser.parse_args()
    print(
        "machine: %d CPUs, load average %s; %s"
        % (os.cpu_count(), " ".join("%.1f" % x for x in os.getloadavg()), time.strftime("%Y-%m-%d"))
    )
    workdir = tempfile.mkdtemp(prefix="tls-scale-")
    logdir = args.logdir or os.path.join(workdir, "logdir")
    rng = np.random.default_rng(0)
    try:
        if not os.path.isdir(logdir):
            build_logdir(logdir, args.runs, args.steps)
        paths = ["true", "false"] if args.load_fast == "both" else [args.load_fast]
        listed = {p: bench(logdir, p, args.runs, args.steps, rng) for p in paths}
        if not args.no_baseline:
            baseline = os.path.join(workdir, "baseline")
            build_baseline(baseline, args.runs, args.steps)
            for path in ["true"] + (["false"] if args.baseline_python else []):
                before, before_memory = bench_baseline(baseline, path, args.runs, args.steps)
                after, after_memory = listed.get(path, (None, None))
                if before and after:
                    print(
                        "  version 1 / version 2 on --load_fast=%s: "
                        "listing time %.1fx, memory %.1fx"
                        % (path, before / after, before_memory / after_memory)
                    )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
