"""Per-(layer, kind) statistics of one record, for the training-wide overview.

A writer stores them in the index of every step (`storage/format.py`), so the
overview of a whole run never opens an array file. numpy only.

Past `MAX_VALUES` values per array they are estimated from evenly spaced sequences
of the batch (all timesteps of each), so their cost does not grow with the probe
batch (figures: benchmarks/write.py): the arrays are that small, and plain numpy is
fast enough.
"""

import functools

import numpy as np

from tb_lstm_states import states as states_lib
from tb_lstm_states.storage import gradients

COLUMNS = ("mean_abs", "std", "saturated", "dead", "change")

_SIGMOID_GATES = frozenset({"input", "forget", "output", "reset", "update"})
# |c| beyond atanh(0.95): the cell's tanh is saturated.
_CELL_SATURATION = float(np.arctanh(0.95))
# A unit whose values span less than this over every valid position is dead
# (compared with the span in float32).
_DEAD_RANGE = np.float32(1e-3)

MAX_VALUES = 1 << 16


def rows(kind, num_entries, with_gradients=False):
    """The `(layer, array kind)` of each statistics row, in stored order: every
    layer's states, then (`with_gradients`) every layer's gradients."""
    names = [states_lib.array_kinds(kind)] + ([gradients.kinds(kind)] if with_gradients else [])
    return [(layer, name) for group in names for layer in range(num_entries) for name in group]


def _saturation_bounds(name):
    """`(low, high)` in float32: a value of kind `name` outside them is saturated."""
    if name in _SIGMOID_GATES:  # near 0 or 1
        return np.float32(0.05), np.float32(0.95)
    limit = np.float32(_CELL_SATURATION if name == "cell" else 0.95)
    return -limit, limit


def _as_float32(array):
    """`array` as float32 (float16 converts exactly; float64 rounds once)."""
    return np.asarray(array, dtype=np.float32)


def array_statistics(array, name, lengths, sample=None):
    """Statistics of one `[batch, time, units]` array over its valid positions.

    Args:
      array: the array (any real dtype; read as float32).
      name: its kind (`cell`, `hidden`, a gate name or a gradient kind), which sets
        what saturated means (nothing for a gradient: that column and `dead` are NaN).
      lengths: `[batch]` valid timesteps of each sequence of `array` (past `time`:
        the whole sequence).
      sample: optional indices of the sequences to use (all by default).

    Returns:
      A float32 vector in the order of `COLUMNS`: the mean absolute value, the
      standard deviation, the fraction of saturated values, the fraction of units
      whose values span less than 1e-3 (dead), and the mean norm of the change
      between consecutive valid timesteps. NaN where nothing is valid.

    Raises:
      IndexError: if `sample` names a sequence `array` does not have.
    """
    array = np.asarray(array)
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
    if sample is not None:
        sample = np.asarray(sample, dtype=np.int64).reshape(-1)
        array, lengths = array[sample], lengths[sample]
    return _statistics(array, name, lengths)


# Arrays of up to this many values are taken whole; larger ones (a long sequence:
# sampling keeps at least one) a run of timesteps at a time, so the float64
# temporaries stay this small however long the sequence, as fast either way
# (figures: benchmarks/write.py).
_CHUNK_VALUES = 1 << 16


def _statistics(values, name, lengths):
    """`array_statistics` of a `[batch, time, units]` array, every sequence."""
    with np.errstate(invalid="ignore", over="ignore"):  # Inf - Inf: NaN, as it should
        out = _statistics_of(values, name, lengths)
    if gradients.is_gradient(name):
        # A gradient has no range to saturate, and its scale is the loss's: a span
        # below 1e-3 is no sign of a dead unit. Neither column means anything.
        out[2:4] = np.nan
    return out


def _statistics_of(values, name, lengths):
    batch, time, units = values.shape
    if values.size == 0:
        return np.full(len(COLUMNS), np.nan, dtype=np.float32)
    lengths = np.minimum(lengths, time)
    bounds = _saturation_bounds(name)
    if values.size <= _CHUNK_VALUES:
        values = _as_float32(values)
        if bool((lengths == time).all()):  # without padding a reshape, not a gather
            valid = values.reshape(-1, units)
            change = (values[:, 1:] - values[:, :-1]).reshape(-1, units)
        else:
            mask = np.arange(time)[None, :] < lengths[:, None]  # [batch, time]
            valid = values[mask]  # [valid, units]
            change = (values[:, 1:] - values[:, :-1])[mask[:, 1:] & mask[:, :-1]]
        return _finish(_Partial(valid, change, bounds), units)
    rows = max(2, _CHUNK_VALUES // units)
    total = None
    for sequence in range(batch):
        previous = None  # the last timestep of the previous chunk
        length = int(lengths[sequence])
        for start in range(0, length, rows):
            chunk = _as_float32(values[sequence, start : min(start + rows, length)])
            change = chunk[1:] - chunk[:-1]
            if previous is not None:
                change = np.concatenate([chunk[:1] - previous, change])
            previous = chunk[-1:]
            partial = _Partial(chunk, change, bounds)
            total = partial if total is None else total.merge(partial)
    return _finish(total, units)


class _Partial:
    """The sums behind the columns, over some valid values and changes, which merge."""

    def __init__(self, valid, change, bounds):
        """Args: valid: `[n, units]` float32 values; change: `[m, units]` float32
        differences of consecutive valid timesteps; bounds: `(low, high)`."""
        self.count = valid.size
        self.steps = len(change)
        self.norms = 0.0
        if not self.count:
            return
        low, high = bounds
        with np.errstate(invalid="ignore", over="ignore"):
            # Sums in float64 (numpy's pairwise summation), the spread around this
            # part's own mean: no cancellation far from zero. NaN and Inf propagate.
            wide = valid.reshape(-1).astype(np.float64)
            self.abs_sum = np.add.reduce(np.abs(wide))
            self.mean = np.add.reduce(wide) / self.count
            wide -= self.mean
            self.square_sum = np.dot(wide, wide)
            # NaN is neither: it compares false.
            self.saturated = np.count_nonzero(valid < low) + np.count_nonzero(valid > high)
            # NaN propagates through max and min: a unit holding one is not dead.
            self.minimum = np.minimum.reduce(valid, axis=0)
            self.maximum = np.maximum.reduce(valid, axis=0)
            if self.steps:
                # In float32, as the stored states differ; each norm in float64.
                change = change.astype(np.float64)
                self.norms = np.add.reduce(np.sqrt(np.einsum("ij,ij->i", change, change)))

    def merge(self, other):
        """`self` and `other` together (Chan et al.'s update of the spread)."""
        if not other.count:
            return self
        if not self.count:
            return other
        count = self.count + other.count
        with np.errstate(invalid="ignore", over="ignore"):
            delta = other.mean - self.mean
            self.square_sum += other.square_sum + delta * delta * self.count * other.count / count
            self.mean += delta * other.count / count
            self.abs_sum += other.abs_sum
            self.minimum = np.minimum(self.minimum, other.minimum)
            self.maximum = np.maximum(self.maximum, other.maximum)
        self.count = count
        self.saturated += other.saturated
        self.steps += other.steps
        self.norms += other.norms
        return self


def _finish(partial, units):
    out = np.full(len(COLUMNS), np.nan, dtype=np.float32)
    if partial is None or not partial.count:
        return out
    count = partial.count
    with np.errstate(invalid="ignore", over="ignore"):
        out[0] = partial.abs_sum / count
        out[1] = np.sqrt(partial.square_sum / count)
        out[2] = partial.saturated / count
        out[3] = np.count_nonzero(partial.maximum - partial.minimum < _DEAD_RANGE) / units
        if partial.steps:
            out[4] = partial.norms / partial.steps
    return out


def sample_sequences(batch, values_per_sequence, max_values=MAX_VALUES):
    """Indices of the sequences statistics are computed on: all of them, or evenly
    spaced ones holding at most `max_values` values (at least one sequence)."""
    return _sample_sequences(int(batch), int(values_per_sequence), int(max_values)).copy()


@functools.lru_cache(maxsize=256)
def _sample_sequences(batch, values_per_sequence, max_values):
    if batch * values_per_sequence <= max_values:
        return np.arange(batch)
    count = max(1, max_values // max(1, values_per_sequence))
    return np.unique(np.linspace(0, batch - 1, count).round().astype(np.int64))


def table(arrays, names, lengths):
    """The statistics table of `arrays` (of kinds `names`), every sequence of each.

    Args:
      arrays: `[batch, time, units]` arrays (any real dtype), sampled already.
      names: the kind of each.
      lengths: `[batch]` valid timesteps of their sequences.

    Returns:
      A float32 array `[len(arrays), len(COLUMNS)]`.
    """
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
    out = np.empty((len(arrays), len(COLUMNS)), dtype=np.float32)
    for i, (array, name) in enumerate(zip(arrays, names)):
        out[i] = _statistics(np.asarray(array), name, lengths)
    return out


def record_statistics(recurrent_states, max_values=MAX_VALUES):
    """Statistics of every (layer, kind) of a `RecurrentStates` of numpy arrays.

    Args:
      recurrent_states: the states.
      max_values: past this many values in an array, the statistics are computed on
        evenly spaced sequences of the batch (see `sample_sequences`).

    Returns:
      A float32 array `[len(rows(...)), len(COLUMNS)]`.
    """
    layers = recurrent_states.layers
    entries = rows(recurrent_states.kind, len(layers), bool(layers[0].grads))
    arrays = [
        layers[layer].grads[gradients.state_of(name)]
        if gradients.is_gradient(name)
        else layers[layer].get(name)
        for layer, name in entries
    ]
    widest = max(int(np.shape(a)[2]) for a in arrays)
    batch = recurrent_states.batch_size
    sample = sample_sequences(batch, recurrent_states.time_steps * widest, max_values)
    lengths = np.asarray(recurrent_states.lengths, dtype=np.int64).reshape(-1)
    if len(sample) < batch:
        arrays = [np.asarray(a)[sample] for a in arrays]
        lengths = lengths[sample]
    return table(arrays, [name for _, name in entries], lengths)
