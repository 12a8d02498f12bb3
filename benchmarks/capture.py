"""Speed of `capture` against the module's own forward and against an LSTMCell loop.

For each shape it times, interleaved in one run so that machine noise hits all of
them alike, and reports medians:

- `forward`: the 2-layer `nn.LSTM` forward without grad, what the ratios divide by;
- `capture`: `tls.capture`, every layer's hidden state, cell state and gates at
  every timestep (the module's kernel per layer, plus the gates recomputed from it);
- `cells`: the `nn.LSTMCell` loop a user would otherwise write, which gives the
  hidden and cell states only, no gates.

A second table times `capture(..., loss=)` (states and dL/dh_t, dL/dc_t) against
the module's forward plus backward, a training step's work.

The goal (issue 13): capture takes no longer than max(3x forward, 5 ms) on every
shape. The last column says whether it did; the exit status is 1 if any did not.

    python benchmarks/capture.py                 # CPU, 2 threads
    python benchmarks/capture.py --device cuda   # capture vs cuDNN

Measured on 2026-12-07 on a 2-core AMD EPYC shared with other jobs (2 threads,
float32, medians of 15 interleaved rounds); two runs of the same code:

    batch,time,hid  forward ms  capture ms  cells ms  capture/fwd  cells/fwd
    16,64,32              0.96        1.90      4.53        1.98x      4.72x
    8,128,64              3.31        5.31     11.99        1.60x      3.62x
    4,512,128            14.86       23.70     77.39        1.60x      5.21x
    32,256,256           97.01      239.91    297.95        2.47x      3.07x
    64,100,512          316.05      744.90   1705.38        2.36x      5.40x
    1,1000,64            10.43       15.98     52.56        1.53x      5.04x

    16,64,32              1.84        3.27      6.23        1.77x      3.38x
    8,128,64              3.68        6.25     13.05        1.70x      3.55x
    4,512,128            19.20       27.85     88.43        1.45x      4.61x
    32,256,256          100.40      229.59    293.83        2.29x      2.93x
    64,100,512          245.16      560.02    702.24        2.28x      2.86x
    1,1000,64             9.48       13.89     52.01        1.47x      5.49x

With `loss=` (issue 14), against the module's forward plus backward, the goal is at
most 3x on every shape. Measured on 2026-12-07 on the same 2-core AMD EPYC, quiet
(2 threads, float32, medians of 15 interleaved rounds):

    batch,time,hid   fwd+bwd ms  capture ms    cells ms  capture/f+b  cells/f+b
    16,64,32               2.88        4.87       14.62        1.69x      5.07x
    8,128,64               5.82        9.77       32.02        1.68x      5.51x
    4,512,128             25.62       46.32      182.85        1.81x      7.14x
    32,256,256           309.89      604.81      330.27        1.95x      1.07x
    64,100,512           794.97     1578.31      926.49        1.99x      1.17x
    1,1000,64             13.21       22.94      262.15        1.74x     19.85x

(`cells`: an LSTMCell loop asked for dL/dh_t and dL/dc_t of every step, which gives
no gates; at the large shapes its plain per-step matrix products cost about what
the fused backward does.)

Capture costs the kernel (about the forward) plus about as much matrix work again
for the gates, so the large shapes come out above 2x; the small ones pay mostly
the one operation per timestep of the cell-state recurrence (one for all layers
together while a step is small).

The cost model that picks the scan's chunk length (`SCAN_COSTS` in
`tb_lstm_states/capturing/scan.py`) rests on figures of this machine (2026-12-07):
a strided elementwise pass on the CPU cost about 1 ns an element, so there the
sequential scan nearly always wins; on a GPU the launches dominate.
"""

import argparse
import functools
import statistics
import sys
import time

import torch
from torch import nn

import tb_lstm_states as tls

# (batch, time, hidden): a small probe batch, the four shapes of DESIGN.md's table,
# and a long single sequence.
SHAPES = ((16, 64, 32), (8, 128, 64), (4, 512, 128), (32, 256, 256), (64, 100, 512), (1, 1000, 64))
INPUT_SIZE = 64
NUM_LAYERS = 2
# Capture may take up to this many times the forward, or this many seconds.
GOAL_RATIO, GOAL_FLOOR = 3.0, 5e-3


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


def cell_loop_gradients(cells, inputs):
    """dL/dh_t and dL/dc_t with an nn.LSTMCell loop, every state its own node."""
    batch = inputs.shape[1]
    states = [
        (inputs.new_zeros(batch, c.hidden_size), inputs.new_zeros(batch, c.hidden_size))
        for c in cells
    ]
    nodes, outputs = [], []
    for step in inputs:
        layer_input = step
        for index, lstm_cell in enumerate(cells):
            states[index] = lstm_cell(layer_input, states[index])
            nodes.extend(states[index])
            layer_input = states[index][0]
        outputs.append(layer_input)
    loss = gradient_loss(torch.stack(outputs))
    return torch.autograd.grad(loss, nodes)


def train_step(lstm, inputs):
    """The module's forward and backward, as one training step computes them."""
    lstm.zero_grad(set_to_none=True)
    lstm(inputs)[0].pow(2).mean().backward()


def gradient_loss(output):
    return output.pow(2).mean()


def time_interleaved(functions, repeats, synchronize):
    """Median seconds of each function, timed round-robin `repeats` times.

    Each function is called once untimed first.
    """
    for function in functions.values():
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
        help="batch,time,hidden triples (default: %(default)s)",
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
    header = "%-15s %11s %11s %11s %12s %10s %10s %5s" % (
        "batch,time,hid",
        "forward ms",
        "capture ms",
        "cells ms",
        "capture/fwd",
        "cells/fwd",
        "goal ms",
        "met",
    )
    print(header)
    print("-" * len(header))
    missed = 0
    shapes = [tuple(int(n) for n in shape.split(",")) for shape in args.shapes]
    for batch, steps, hidden in shapes:
        lstm = nn.LSTM(INPUT_SIZE, hidden, NUM_LAYERS).to(device).eval()
        cells = cells_of(lstm)
        inputs = torch.randn(steps, batch, INPUT_SIZE, device=device)
        with torch.no_grad():
            medians = time_interleaved(
                {
                    "forward": functools.partial(lstm, inputs),
                    "capture": functools.partial(tls.capture, lstm, inputs),
                    "cells": functools.partial(cell_loop, cells, inputs),
                },
                args.repeats,
                synchronize,
            )
        forward, captured, looped = medians["forward"], medians["capture"], medians["cells"]
        goal = max(GOAL_RATIO * forward, GOAL_FLOOR)
        missed += captured > goal
        print(
            "%-15s %11.2f %11.2f %11.2f %11.2fx %9.2fx %10.2f %5s"
            % (
                "%d,%d,%d" % (batch, steps, hidden),
                forward * 1e3,
                captured * 1e3,
                looped * 1e3,
                captured / forward,
                looped / forward,
                goal * 1e3,
                "yes" if captured <= goal else "NO",
            ),
            flush=True,
        )
    print(
        "capture within max(%gx forward, %g ms): %d of %d shapes"
        % (GOAL_RATIO, GOAL_FLOOR * 1e3, len(shapes) - missed, len(shapes))
    )
    missed += gradient_table(shapes, device, args.repeats, synchronize)
    return 1 if missed else 0


def gradient_table(shapes, device, repeats, synchronize):
    """capture(loss=) against the module's forward plus backward; returns misses."""
    print()
    print(
        "capture(loss=) (every state and dL/dh_t, dL/dc_t) vs nn.LSTM forward + backward "
        "(parameter gradients), and an LSTMCell loop's per-timestep gradients"
    )
    header = "%-15s %11s %11s %11s %12s %10s %5s" % (
        "batch,time,hid",
        "fwd+bwd ms",
        "capture ms",
        "cells ms",
        "capture/f+b",
        "cells/f+b",
        "met",
    )
    print(header)
    print("-" * len(header))
    missed = 0
    for batch, steps, hidden in shapes:
        lstm = nn.LSTM(INPUT_SIZE, hidden, NUM_LAYERS).to(device).train()
        cells = cells_of(lstm)
        inputs = torch.randn(steps, batch, INPUT_SIZE, device=device)
        medians = time_interleaved(
            {
                "step": functools.partial(train_step, lstm, inputs),
                "capture": functools.partial(tls.capture, lstm, inputs, loss=gradient_loss),
                "cells": functools.partial(cell_loop_gradients, cells, inputs),
            },
            repeats,
            synchronize,
        )
        step, captured, looped = medians["step"], medians["capture"], medians["cells"]
        met = captured <= GOAL_RATIO * step
        missed += not met
        print(
            "%-15s %11.2f %11.2f %11.2f %11.2fx %9.2fx %5s"
            % (
                "%d,%d,%d" % (batch, steps, hidden),
                step * 1e3,
                captured * 1e3,
                looped * 1e3,
                captured / step,
                looped / step,
                "yes" if met else "NO",
            ),
            flush=True,
        )
    print(
        "capture(loss=) within %gx forward + backward: %d of %d shapes"
        % (GOAL_RATIO, len(shapes) - missed, len(shapes))
    )
    return missed


if __name__ == "__main__":
    sys.exit(main())
