"""How fast states reach the disk: StateWriter vs torch's SummaryWriter vs ndarray.tofile.

    .venv/bin/python benchmarks/write.py [--sizes 1 8 64] [--repeats 5] [--min-megabytes 64] [--dir DIR]

For LSTM records of about 1, 8 and 64 MB (at float16, the stored size), prints MB/s of
the stored bytes, side by side:

- `tofile`: the record's float16 arrays written with `ndarray.tofile` and flushed: the
  disk bandwidth a user gets by dumping raw arrays.
- `StateWriter`: `add_states` + `flush` of states that are already float16, so the
  conversion is a plain copy (`write`), and of float32 states, which pays the float16
  cast (`end to end`). Both include statistics, CRC and framing.
- `SummaryWriter`: torch's `SummaryWriter` writing the same summary:
  `sw._get_file_writer().add_summary(states_pb(...), step)` + `sw.flush()`. `write`
  times a prebuilt summary; `end to end` includes `states_pb` from float32 states.
- `tofile/torch`: how many times faster than torch's writer `tofile` itself is: the
  most any writer of these bytes can show against torch on this machine's page cache.

Then the cost to the training thread: a pure-Python loop runs while a 64 MB record is
written in the background, and its loss of speed against the same loop just before and
after is printed, with how long `add_states` itself blocked. As a floor, the same loss
is measured while a thread writes as many bytes with one `os.write` (no GIL held):
what the disk write alone costs the loop on this machine.

Figures are medians of `--repeats` runs, and of as many more as it takes to write at
least `--min-megabytes` per writer and size: a median of five sub-millisecond writes on
a shared machine swings by 15 points of `tofile` from run to run.
"""

import argparse
import math
import os
import shutil
import statistics as stats_lib
import sys
import tempfile
import threading
import time

import numpy as np

import tb_lstm_states as tls
from tb_lstm_states import states as states_lib
from tb_lstm_states import summary as summary_lib

TIME, HIDDEN = 128, 256
ROW_BYTES = len(states_lib.array_kinds("lstm")) * TIME * HIDDEN * 2  # one sequence, float16


def make_states(megabytes, dtype, seed=0):
    """An LSTM record (one layer) of about `megabytes` MB at float16."""
    batch = max(1, round(megabytes * 2**20 / ROW_BYTES))
    rng = np.random.default_rng(seed)

    def array(low=-1.0, high=1.0):
        return rng.uniform(low, high, size=(batch, TIME, HIDDEN)).astype(dtype)

    layer = states_lib.LayerStates(
        hidden=array(), cell=array(-3, 3),
        gates={g: array(0, 1) for g in states_lib.GATE_NAMES["lstm"]})
    return states_lib.RecurrentStates("lstm", [layer], np.full(batch, TIME), 1)


def arrays_of(states):
    return [layer.get(name) for layer in states.layers for name in states_lib.array_kinds("lstm")]


def stored_bytes(states):
    return sum(a.size * 2 for a in arrays_of(states))


def median_seconds(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return stats_lib.median(times)


def bench_interleaved(directory, states16, states32, repeats):
    """Median seconds of tofile, StateWriter (float16 input), StateWriter (float32 input).

    One of each per round, so all three meet the same state of the machine: the
    kernel throttles writers once enough dirty pages pile up, whoever wrote them.
    Each round starts with the next one of the three, so none always runs first or
    always follows the same one. On this project's VMs a write into the page cache
    costs up to 8x more when it gets pages the VM has never touched, and which
    writes get them varies within a run: medians over rounds, not a single round.

    Returns:
      `({name: wall seconds}, {name: CPU seconds})`: CPU time of the whole process
      (every thread), which a loaded machine disturbs much less than wall time.
    """
    wall = {"tofile": [], "ours": [], "ours_e2e": []}
    cpu = {"tofile": [], "ours": [], "ours_e2e": []}
    with open(os.path.join(directory, "raw.bin"), "wb") as f, \
            tls.StateWriter(os.path.join(directory, "state_writer")) as writer:
        steps = iter(range(10**9))

        def tofile():
            for array in arrays_of(states16):
                array.tofile(f)
            f.flush()

        def ours(states):
            writer.add_states("lstm", states, next(steps))
            writer.flush()

        runs = [("tofile", tofile), ("ours", lambda: ours(states16)),
                ("ours_e2e", lambda: ours(states32))]
        for round_ in range(repeats + 1):  # the first round warms up
            for name, run in runs[round_ % 3:] + runs[:round_ % 3]:
                start = (time.perf_counter(), time.process_time())
                run()
                if round_:
                    wall[name].append(time.perf_counter() - start[0])
                    cpu[name].append(time.process_time() - start[1])
    return ({k: stats_lib.median(v) for k, v in wall.items()},
            {k: stats_lib.median(v) for k, v in cpu.items()})


def bench_summary_writer(directory, states32, repeats, prebuilt):
    from torch.utils.tensorboard import SummaryWriter

    sw = SummaryWriter(os.path.join(directory, "summary_writer"))
    file_writer = sw._get_file_writer()
    pb = tls.states_pb("lstm", states32)
    step = iter(range(10**9))

    def write():
        summary = pb if prebuilt else tls.states_pb("lstm", states32)
        file_writer.add_summary(summary, next(step))
        sw.flush()
    try:
        return median_seconds(write, repeats)
    finally:
        sw.close()


def python_loop(iterations):
    total = 0
    for i in range(iterations):
        total += i
    return total


def loop_rate(seconds):
    """Iterations per second of `python_loop`, over about `seconds`."""
    chunk, done = 20000, 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        python_loop(chunk)
        done += chunk
    return done / (time.perf_counter() - start)


def _loop_while(done):
    """`(iterations per second, seconds)` of `python_loop` until `done` is set, or
    `(None, 0.0)` if it was set before the loop began."""
    chunk, iterations = 20000, 0
    start = time.perf_counter()
    while not done.is_set():
        python_loop(chunk)
        iterations += chunk
    seconds = time.perf_counter() - start
    return (iterations / seconds if iterations else None), (seconds if iterations else 0.0)


def bench_training_thread(directory, states, repeats):
    """Returns `(median slowdown, median add_states seconds, median write seconds)`.

    The loop's rate while the record is written is compared with its rate just
    before and just after, so drifts in the machine's load cancel out. A run where
    the record was all written by the time `add_states` returned (the writer thread
    kept up with the copies) lost nothing in the background: its slowdown is 0.
    """
    slowdowns, blocked, written = [], [], []
    with tls.StateWriter(os.path.join(directory, "training_thread")) as writer:
        for step in range(repeats):
            before = loop_rate(0.3)
            done = threading.Event()
            start = time.perf_counter()
            writer.add_states("lstm", states, step)
            returned = time.perf_counter()
            waiter = threading.Thread(target=lambda: (writer.flush(), done.set()))
            waiter.start()
            during, seconds = _loop_while(done)
            waiter.join()
            after = loop_rate(0.3)
            slowdowns.append(0.0 if during is None else 1 - during / ((before + after) / 2))
            blocked.append(returned - start)
            written.append(seconds)
    return stats_lib.median(slowdowns), stats_lib.median(blocked), stats_lib.median(written)


def bench_control(directory, nbytes, repeats):
    """The loop's slowdown while another thread writes `nbytes` with one `os.write`.

    `os.write` holds no GIL while the kernel copies and writes back the bytes, so
    this is what the disk write alone costs the loop on this machine (CPU for the
    copy and the writeback, on a machine whose cores may be shared): the floor under
    the StateWriter figure.
    """
    data = np.ones(nbytes, np.uint8).tobytes()
    path = os.path.join(directory, "control.bin")
    slowdowns = []
    for _ in range(repeats):
        before = loop_rate(0.3)
        done = threading.Event()

        def work():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
                done.set()
        thread = threading.Thread(target=work)
        thread.start()
        during, _ = _loop_while(done)
        thread.join()
        after = loop_rate(0.3)
        slowdowns.append(0.0 if during is None else 1 - during / ((before + after) / 2))
    return stats_lib.median(slowdowns)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1, 8, 64])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--min-megabytes", type=float, default=64,
                        help="small records get more runs, to write at least this much")
    parser.add_argument("--summary-writer-seconds", type=float, default=30,
                        help="time budget per size for the slow SummaryWriter runs")
    parser.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    args = parser.parse_args(argv)

    directory = tempfile.mkdtemp(prefix="tls-bench-", dir=args.dir)
    try:
        print("MB/s of stored (float16) bytes; medians of >= %d runs (>= %g MB); %s, %d CPUs"
              % (args.repeats, args.min_megabytes, sys.platform, os.cpu_count()))
        print("%8s | %8s | %11s %11s | %11s %11s | %9s %9s %12s"
              % ("record", "tofile", "StateWriter", "StateWriter", "SummaryWr.", "SummaryWr.",
                 "SW/tofile", "SW/torch", "tofile/torch"))
        print("%8s | %8s | %11s %11s | %11s %11s | %9s %9s %12s"
              % ("MB", "", "write", "end to end", "write", "end to end", "write", "write",
                 "(ceiling)"))
        cpu_rows = []
        for megabytes in args.sizes:
            states32 = make_states(megabytes, np.float32)
            states16 = summary_lib.to_numpy_states(states32)
            for layer in states16.layers:
                layer.hidden = layer.hidden.astype(np.float16)
                layer.cell = layer.cell.astype(np.float16)
                layer.gates = {k: v.astype(np.float16) for k, v in layer.gates.items()}
            size = stored_bytes(states16) / 1e6
            rounds = max(args.repeats, math.ceil(args.min_megabytes / size))
            wall, cpu = bench_interleaved(directory, states16, states32, rounds)
            tofile, ours, ours_e2e = wall["tofile"], wall["ours"], wall["ours_e2e"]
            cpu_rows.append("%8.1f | %8.1f | %11.1f %11.1f | %9.0f%%"
                            % (size, cpu["tofile"] * 1e3, cpu["ours"] * 1e3,
                               cpu["ours_e2e"] * 1e3, 100 * cpu["tofile"] / cpu["ours"]))
            # torch's writer runs at a few MB/s: as many runs as fit the time budget.
            sw_repeats = max(1, min(args.repeats, int(args.summary_writer_seconds * 6 / size)))
            theirs = bench_summary_writer(directory, states32, sw_repeats, prebuilt=True)
            theirs_e2e = bench_summary_writer(directory, states32, 1, prebuilt=False)
            print("%8.1f | %8.0f | %11.0f %11.0f | %11.1f %11.1f | %8.0f%% %8.0fx %11.0fx"
                  % (size, size / tofile, size / ours, size / ours_e2e, size / theirs,
                     size / theirs_e2e, 100 * tofile / ours, theirs / ours, theirs / tofile))
            sys.stdout.flush()

        print("\nCPU ms per record (all threads; less disturbed by a loaded machine)")
        print("%8s | %8s | %11s %11s | %10s" % ("MB", "tofile", "StateWriter", "StateWriter",
                                              "SW/tofile"))
        print("%8s | %8s | %11s %11s | %10s" % ("", "", "write", "end to end", "write"))
        print("\n".join(cpu_rows))
        print()
        for label, dtype in (("float16", np.float16), ("float32", np.float32)):
            states = make_states(64, dtype)
            slowdown, blocked, written = bench_training_thread(directory, states, args.repeats)
            control = bench_control(directory, stored_bytes(states), args.repeats)
            print("training thread, 64 MB record (%s input): add_states blocked %.0f ms; "
                  "while the writer thread wrote it (%.0f ms) a pure-Python loop ran %.1f%% "
                  "slower (lost %.0f ms); one os.write of as many bytes from a thread: %.1f%%"
                  % (label, blocked * 1e3, written * 1e3, 100 * slowdown,
                     slowdown * written * 1e3, 100 * control))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
