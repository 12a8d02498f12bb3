"""Per-(layer, kind) statistics of one record, for the training-wide overview.

A writer stores them in the index of every step (`storage/format.py`), so the
overview of a whole run never opens an array file. numpy only.

Past `MAX_VALUES` values per array they are estimated from evenly spaced sequences
of the batch (all timesteps of each), so a large probe batch costs a millisecond,
not seconds: the arrays are that small, and plain numpy is fast enough.
"""

import functools

import numpy as np

from tb_lstm_states import states as states_lib

COLUMNS = ("mean_abs", "std", "saturated", "dead", "change")

_SIGMOID_GATES = frozenset({"input", "forget", "output", "reset", "update"})
# |c| beyond atanh(0.95): the cell's tanh is saturated.
_CELL_SATURATION = float(np.arctanh(0.95))
# A unit whose values span less than this over every valid position is dead
# (compared with the span in float32).
_DEAD_RANGE = np.float32(1e-3)

MAX_VALUES = 1 << 16


def rows(kind, num_entries):
    """The `(layer, array kind)` of each statistics row, in stored order."""
    return [(layer, name) for layer in range(num_entries)
            for name in states_lib.array_kinds(kind)]


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
      name: its kind (`cell`, `hidden` or a gate name), which sets what saturated means.
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
    return _statistics(_as_float32(array), name, lengths)


def _statistics(values, name, lengths):
    """`array_statistics` of a float32 `[batch, time, units]` array, every sequence."""
    batch, time, units = values.shape
    out = np.full(len(COLUMNS), np.nan, dtype=np.float32)
    if values.size == 0:
        return out
    lengths = np.minimum(lengths, time)
    complete = bool((lengths == time).all())
    if complete:  # without padding a reshape, not a gather
        valid = values.reshape(-1, units)
    else:
        mask = np.arange(time)[None, :] < lengths[:, None]  # [batch, time]
        valid = values[mask]  # [valid, units]
    count = valid.size
    if count == 0:
        return out
    low, high = _saturation_bounds(name)
    with np.errstate(invalid="ignore", over="ignore"):
        flat = valid.reshape(-1)
        # Sums in float64 (numpy's pairwise summation); the spread around the mean
        # in two passes, so no cancellation far from zero. NaN and Inf propagate.
        wide = flat.astype(np.float64)
        out[0] = np.add.reduce(np.abs(wide)) / count
        wide -= np.add.reduce(wide) / count
        out[1] = np.sqrt(np.dot(wide, wide) / count)
        # NaN is neither: it compares false.
        out[2] = (np.count_nonzero(flat < low) + np.count_nonzero(flat > high)) / count
        # NaN propagates through max and min: a unit holding one is not dead.
        span = np.maximum.reduce(valid, axis=0) - np.minimum.reduce(valid, axis=0)
        out[3] = np.count_nonzero(span < _DEAD_RANGE) / units
        change = None
        if time > 1:
            # In float32, as the stored states differ; each step's norm in float64.
            change = (values[:, 1:] - values[:, :-1]).reshape(-1, units)
            if not complete:
                change = change[(mask[:, 1:] & mask[:, :-1]).reshape(-1)]
        if change is not None and len(change):
            change = change.astype(np.float64)
            out[4] = np.sqrt(np.einsum("ij,ij->i", change, change)).mean()
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
        out[i] = _statistics(_as_float32(array), name, lengths)
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
    entries = rows(recurrent_states.kind, len(recurrent_states.layers))
    arrays = [recurrent_states.layers[layer].get(name) for layer, name in entries]
    widest = max(int(np.shape(a)[2]) for a in arrays)
    batch = recurrent_states.batch_size
    sample = sample_sequences(batch, recurrent_states.time_steps * widest, max_values)
    lengths = np.asarray(recurrent_states.lengths, dtype=np.int64).reshape(-1)
    if len(sample) < batch:
        arrays = [np.asarray(a)[sample] for a in arrays]
        lengths = lengths[sample]
    return table(arrays, [name for _, name in entries], lengths)
