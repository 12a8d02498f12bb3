"""Helpers shared by the demo tasks: threads, seeds, correlations, run bookkeeping."""

import os
import random
import time

import numpy as np
import torch

# One intra-op thread. At these sizes (batch 32, 64 units) a second thread does not
# make a training step faster (measured: 10.0 ms with 1 thread, 10.3 ms with 2 on an
# idle 2-core machine) but doubles the CPU time, and when the cores are shared its
# spin-waiting can make a step hundreds of times slower (3.9 s measured under load).
# The second core is left to the StateWriter's thread and to whatever else runs.
NUM_THREADS = 1


def setup(seed):
    """Seeds every generator the demo uses and pins the thread count."""
    torch.set_num_threads(NUM_THREADS)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def unit_correlations(values, target, mask=None):
    """Pearson r of every unit of `values` `[batch, time, units]` with `target` `[batch, time]`.

    Only positions where `mask` is True count. Units that never move get r = 0.
    """
    values = np.asarray(values, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if mask is None:
        mask = np.ones(target.shape, dtype=bool)
    x = values[mask]  # [positions, units]
    y = target[mask]
    x = x - x.mean(axis=0)
    y = y - y.mean()
    denominator = np.sqrt((x * x).sum(axis=0) * (y * y).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(
            denominator > 0,
            (x * y[:, None]).sum(axis=0) / np.where(denominator > 0, denominator, 1),
            0.0,
        )
    return r


class Timer:
    """Wall-clock and CPU time of a block."""

    def __enter__(self):
        self.wall = time.perf_counter()
        self.cpu = time.process_time()
        return self

    def __exit__(self, *exc_info):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def run_dir(logdir, task, name):
    return os.path.join(logdir, task, name)
