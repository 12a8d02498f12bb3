"""Speed of `capture` against the module's own forward and against an LSTMCell loop.

For each shape it times, interleaved in one run so that machine noise hits all of
them alike: the 2-layer `nn.LSTM` forward without grad (what the ratios divide by),
`tls.capture` (every layer's hidden, cell and gates at every timestep; timed after
its first 12 calls, in which it times its candidate plans for the shape), and the
`nn.LSTMCell` loop a user would otherwise write (hidden and cell only, no gates).

    python benchmarks/capture.py                 # CPU, 2 threads
    python benchmarks/capture.py --device cuda   # capture vs cuDNN
"""

import argparse
import statistics
import time

import torch
from torch import nn

import tb_lstm_states as tls

SHAPES = ((8, 128, 64), (4, 512, 128), (32, 256, 256), (64, 100, 512))
INPUT_SIZE = 64
NUM_LAYERS = 2


def cell_loop(cells, inputs):
    """Per-timestep hidden and cell states with nn.LSTMCell, the usual workaround."""
    batch = inputs.shape[1]
    states = [
        (inputs.new_zeros(batch, c.hidden_size), inputs.new_zeros(batch, c.hidden_size))
        for c in cells
    ]
    hidden = [[] for _ in cells]
    cell = [[] for _ in cells]
    for step in inputs:
        layer_input = step
        for index, lstm_cell in enumerate(cells):
            states[index] = lstm_cell(layer_input, states[index])
            layer_input = states[index][0]
            hidden[index].append(states[index][0])
            cell[index].append(states[index][1])
    return [torch.stack(h, 1) for h in hidden], [torch.stack(c, 1) for c in cell]


def cells_of(lstm):
    """nn.LSTMCell copies of each layer of a 1-direction nn.LSTM."""
    cells = []
    for layer in range(lstm.num_layers):
        in_size = lstm.input_size if layer == 0 else lstm.hidden_size
        lstm_cell = nn.LSTMCell(in_size, lstm.hidden_size).to(lstm.weight_ih_l0)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(lstm_cell, name).data.copy_(getattr(lstm, "%s_l%d" % (name, layer)))
        cells.append(lstm_cell)
    return cells


def time_interleaved(functions, repeats, synchronize, warmups):
    """Median seconds of each function, timed round-robin `repeats` times.

    `warmups` maps a function's name to its untimed calls before (default 1).
    """
    for name, function in functions.items():
        for _ in range(warmups.get(name, 1)):
            function()
    synchronize()
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            synchronize()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds per shape")
    parser.add_argument(
        "--shapes",
        nargs="*",
        default=["%d,%d,%d" % shape for shape in SHAPES],
        help="batch,time,hidden triples (default: the four of the issue)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        synchronize = torch.cuda.synchronize
    else:
        synchronize = lambda: None  # noqa: E731
    torch.manual_seed(0)
    print(
        "capture vs nn.LSTM forward (no grad), %d layers, input %d, float32, %s, %d "
        "threads, median of %d interleaved rounds"
        % (NUM_LAYERS, INPUT_SIZE, device, torch.get_num_threads(), args.repeats)
    )
    header = "%-16s %12s %12s %12s %14s %14s" % (
        "batch,time,hid", "forward ms", "capture ms", "cells ms", "capture/fwd", "cells/fwd",
    )
    print(header)
    print("-" * len(header))
    worst = 0.0
    shapes = [tuple(int(n) for n in shape.split(",")) for shape in args.shapes]
    for batch, steps, hidden in shapes:
        lstm = nn.LSTM(INPUT_SIZE, hidden, NUM_LAYERS).to(device).eval()
        cells = cells_of(lstm)
        inputs = torch.randn(steps, batch, INPUT_SIZE, device=device)
        with torch.no_grad():
            medians = time_interleaved(
                {
                    "forward": lambda: lstm(inputs),
                    "capture": lambda: tls.capture(lstm, inputs),
                    "cells": lambda: cell_loop(cells, inputs),
                },
                args.repeats,
                synchronize,
                # capture times its candidate plans on the first calls of a shape
                # (2 thread counts x 3 trials), then keeps the faster.
                {"capture": 12},
            )
        forward = medians["forward"]
        worst = max(worst, medians["capture"] / forward)
        print(
            "%-16s %12.2f %12.2f %12.2f %13.2fx %13.2fx"
            % (
                "%d,%d,%d" % (batch, steps, hidden),
                forward * 1e3,
                medians["capture"] * 1e3,
                medians["cells"] * 1e3,
                medians["capture"] / forward,
                medians["cells"] / forward,
            ),
            flush=True,
        )
    print("worst capture/forward: %.2fx" % worst)


if __name__ == "__main__":
    main()
