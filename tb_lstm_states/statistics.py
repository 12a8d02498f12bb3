"""Per-(layer, kind) statistics of one record, for the training-wide overview.

They are written beside every record as a small tensor so the overview of a whole
run never reads the large blobs. numpy only.
"""

import numpy as np

from tb_lstm_states import states as states_lib

COLUMNS = ("mean_abs", "std", "saturated", "dead", "change")

_SIGMOID_GATES = frozenset({"input", "forget", "output", "reset", "update"})
# |c| beyond atanh(0.95): the cell's tanh is saturated.
_CELL_SATURATION = float(np.arctanh(0.95))
# A unit whose values span less than this over every valid position is dead.
_DEAD_RANGE = 1e-3

# Statistics are an overview computed for every record the writer writes: past this
# many values per array they are estimated from evenly spaced sequences of the batch
# (all timesteps of each), so a large probe batch costs milliseconds, not seconds.
MAX_VALUES = 1 << 16


def rows(kind, num_entries):
    """The `(layer, array kind)` of each statistics row, in stored order."""
    return [(layer, name) for layer in range(num_entries) for name in states_lib.array_kinds(kind)]


def _valid_mask(lengths, time):
    return np.arange(time)[None, :] < np.asarray(lengths).reshape(-1, 1)


# float16 -> float32 by table lookup: numpy's own cast of float16 is scalar code, twice
# as slow, and was the largest part of the statistics of a float16 record. The table
# is that cast of every float16 bit pattern, so the results are bitwise the same.
_FLOAT16_TO_FLOAT32 = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)


def _as_float32(array):
    array = np.asarray(array)
    if array.dtype == np.dtype("=f2"):
        return _FLOAT16_TO_FLOAT32.take(array.view(np.uint16))
    return np.asarray(array, dtype=np.float32)


def array_statistics(array, name, mask):
    """Statistics of one `[batch, time, units]` array over its valid positions.

    Args:
      array: the array (any float dtype).
      name: its kind (`cell`, `hidden` or a gate name), which sets what saturated means.
      mask: `[batch, time]` bool, True at valid positions.

    Returns:
      A float32 vector in the order of `COLUMNS`; NaN where nothing is valid.
    """
    # One array at a time: its temporaries stay in the CPU cache (a record's arrays
    # stacked into one were slower for it).
    array = _as_float32(array)
    units = array.shape[-1]
    complete = bool(mask.all())
    # [valid, units]; without padding a reshape, not a gather.
    values = array.reshape(-1, units) if complete else array[mask]
    out = np.full(len(COLUMNS), np.nan, dtype=np.float32)
    if values.size == 0:
        return out
    with np.errstate(invalid="ignore", over="ignore"):
        magnitude = np.abs(values)
        out[0] = magnitude.mean()
        out[1] = values.std()
        # Counts, not means of boolean masks: the same fractions, without float passes.
        if name in _SIGMOID_GATES:  # the two sides are disjoint
            saturated = np.count_nonzero(values < 0.05) + np.count_nonzero(values > 0.95)
        else:
            limit = _CELL_SATURATION if name == "cell" else 0.95
            saturated = np.count_nonzero(magnitude > limit)
        out[2] = saturated / values.size
        span = values.max(axis=0) - values.min(axis=0)
        out[3] = np.count_nonzero(span < _DEAD_RANGE) / units
        steps = mask[:, 1:] & mask[:, :-1]
        if steps.any():
            change = array[:, 1:] - array[:, :-1]
            change = change.reshape(-1, units) if complete else change[steps]
            # np.linalg.norm(change, axis=-1), computed as it does, in place.
            np.square(change, out=change)
            out[4] = np.sqrt(change.sum(axis=-1)).mean()
    return out


def sample_sequences(batch, values_per_sequence, max_values=MAX_VALUES):
    """Indices of the sequences statistics are computed on: all of them, or evenly
    spaced ones holding at most `max_values` values (at least one sequence)."""
    if batch * values_per_sequence <= max_values:
        return np.arange(batch)
    count = max(1, max_values // max(1, values_per_sequence))
    return np.unique(np.linspace(0, batch - 1, count).round().astype(np.int64))


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
    sample = sample_sequences(
        recurrent_states.batch_size, recurrent_states.time_steps * widest, max_values)
    everything = len(sample) == recurrent_states.batch_size
    lengths = np.asarray(recurrent_states.lengths).reshape(-1)[sample]
    mask = _valid_mask(lengths, recurrent_states.time_steps)
    result = [
        array_statistics(array if everything else np.asarray(array)[sample], name, mask)
        for array, (_, name) in zip(arrays, entries)
    ]
    return np.stack(result).astype(np.float32)
