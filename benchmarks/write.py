"""How fast StateWriter gets states to disk, against `ndarray.tofile` of the same bytes.

    .venv/bin/python benchmarks/write.py [--sizes 1 8 60] [--time 128] [--repeats 7] \
        [--min-megabytes 64] [--dir DIR]

For one-layer LSTM records (256 units, `--time` timesteps: 2048 or more adds the
min/max pyramids) of about 1, 8 and 60 MiB of stored (float16) bytes, the payload,
prints side by side, from the same runs:

- `add_states`: how long the call blocks the caller (checks, the copy at the stored
  dtype, statistics; the writing is left to the writer's thread);
- `end to end`: a new writer, `add_states`, `close` (which waits until the array
  file and its index are written), in MiB/s of payload;
- `tofile`: the same arrays, already float16, written with `ndarray.tofile` into a
  new file, flushed and closed: what dumping raw arrays costs;
- `vs tofile`: end-to-end throughput as a share of tofile's;
- `on disk`: the bytes the record added (array file and event file) / payload.

Inputs: float32 arrays (the usual case: `add_states` casts to float16) and float16
arrays (a plain copy), both numpy. Runs alternate between tofile and the writer,
round by round, and every file is deleted after its run, so each meets the same
page cache. Figures are medians of `--repeats` runs, and of as many more as it
takes to write at least `--min-megabytes` per size.

Figures behind choices in `storage/convert.py` and `statistics.py`, measured on
2026-12-07 on a 2-core AMD EPYC (not all of them rerun by this script):

- numpy's float32 to float16 cast (scalar code) was about 4x slower than torch's,
  which `convert.py` uses where torch can be imported;
- a small tensor cast on torch's thread pool left its threads spinning for
  milliseconds on the core the writer thread needs: a 1 MiB record took 2x longer to
  reach the disk on 2 cores, so tensors up to `convert._SERIAL_VALUES` values are
  cast on the calling thread;
- the overflow check of a float16 cast (one reduction) took about a millisecond for
  60 MiB;
- the statistics of a large probe batch, estimated from sampled sequences, took about
  a millisecond, not seconds; taken a run of timesteps at a time
  (`statistics._CHUNK_VALUES`) or whole, they cost about 6 ns a value either way.
"""

import argparse
import glob
import math
import os
import shutil
import statistics as stats_lib
import sys
import tempfile
import time

import numpy as np

import tb_lstm_states as tls
from tb_lstm_states import states as states_lib

HIDDEN = 256
MIB = float(1 << 20)


def make_states(mebibytes, dtype, time_steps=128, seed=0):
    """A one-layer LSTM record of about `mebibytes` MiB at float16."""
    row_bytes = len(states_lib.array_kinds("lstm")) * time_steps * HIDDEN * 2  # a sequence
    batch = max(1, round(mebibytes * MIB / row_bytes))
    rng = np.random.default_rng(seed)

    def array(low=-1.0, high=1.0):
        return rng.uniform(low, high, size=(batch, time_steps, HIDDEN)).astype(dtype)

    layer = states_lib.LayerStates(
        hidden=array(),
        cell=array(-3, 3),
        gates={g: array(0, 1) for g in states_lib.GATE_NAMES["lstm"]},
    )
    return states_lib.RecurrentStates("lstm", [layer], np.full(batch, time_steps), 1)


def arrays_of(states):
    return [
        layer.get(name) for layer in states.layers for name in states_lib.array_kinds(states.kind)
    ]


def disk_bytes(directory):
    return sum(
        os.path.getsize(p)
        for p in glob.glob(os.path.join(directory, "**"), recursive=True)
        if os.path.isfile(p)
    )


def run_tofile(directory, arrays16):
    path = os.path.join(directory, "raw.bin")
    start = time.perf_counter()
    with open(path, "wb") as f:
        for array in arrays16:
            array.tofile(f)
        f.flush()
    seconds = time.perf_counter() - start
    os.remove(path)
    return seconds


def run_writer(directory, states, step):
    """`(blocked seconds, end-to-end seconds, bytes on disk)` of one record."""
    run = os.path.join(directory, "run")
    start = time.perf_counter()
    writer = tls.StateWriter(run)
    before = time.perf_counter()
    writer.add_states("lstm", states, step)
    blocked = time.perf_counter() - before
    writer.close()
    seconds = time.perf_counter() - start
    size = disk_bytes(run)
    shutil.rmtree(run)
    return blocked, seconds, size


def bench(directory, states, arrays16, rounds):
    tofile, blocked, seconds, sizes = [], [], [], []
    for round_ in range(rounds + 1):  # the first round warms up
        order = [0, 1] if round_ % 2 else [1, 0]  # neither always runs first
        for which in order:
            if which == 0:
                t = run_tofile(directory, arrays16)
                if round_:
                    tofile.append(t)
            else:
                b, s, size = run_writer(directory, states, round_)
                if round_:
                    blocked.append(b)
                    seconds.append(s)
                    sizes.append(size)
    return (
        stats_lib.median(tofile),
        stats_lib.median(blocked),
        stats_lib.median(seconds),
        max(sizes),
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1, 8, 60])
    parser.add_argument("--time", type=int, default=128, help="timesteps per sequence")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--min-megabytes",
        type=float,
        default=64,
        help="small records get more runs, to write at least this much",
    )
    parser.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    args = parser.parse_args(argv)

    directory = tempfile.mkdtemp(prefix="tls-bench-", dir=args.dir)
    try:
        print(
            "medians of >= %d runs (>= %g MiB each size); %s, %d CPUs; %d timesteps; "
            "payload = stored float16 bytes"
            % (args.repeats, args.min_megabytes, sys.platform, os.cpu_count(), args.time)
        )
        header = "%8s %8s | %12s | %12s %12s | %9s | %8s" % (
            "payload",
            "input",
            "add_states",
            "end to end",
            "tofile",
            "vs tofile",
            "on disk",
        )
        print(header)
        print(
            "%8s %8s | %12s | %12s %12s | %9s | %8s"
            % ("MiB", "", "blocks ms", "MiB/s", "MiB/s", "", "/payload")
        )
        print("-" * len(header))
        for mebibytes in args.sizes:
            states32 = make_states(mebibytes, np.float32, args.time)
            states16 = make_states(mebibytes, np.float16, args.time)
            arrays16 = arrays_of(states16)
            payload = sum(a.nbytes for a in arrays16)
            rounds = max(args.repeats, math.ceil(args.min_megabytes * MIB / payload))
            for label, states in (("float32", states32), ("float16", states16)):
                tofile, blocked, seconds, size = bench(directory, states, arrays16, rounds)
                mib = payload / MIB
                print(
                    "%8.1f %8s | %12.1f | %12.0f %12.0f | %8.0f%% | %8.3f"
                    % (
                        mib,
                        label,
                        blocked * 1e3,
                        mib / seconds,
                        mib / tofile,
                        100 * tofile / seconds,
                        size / payload,
                    )
                )
                sys.stdout.flush()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
