"""Per-(layer, kind) statistics of one record, for the training-wide overview.

They are written beside every record as a small tensor so the overview of a whole
run never reads the large blobs. Computed in one compiled pass per array
(`statistics_kernel`, numba), which reads float16 and float32 arrays as they are.
"""

import warnings

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


def _saturation_bounds(name):
    """`(low, high)`: a value of kind `name` outside them is saturated (float32, as
    numpy compared float32 arrays with these constants)."""
    if name in _SIGMOID_GATES:  # near 0 or 1
        return np.float32(0.05), np.float32(0.95)
    limit = np.float32(_CELL_SATURATION if name == "cell" else 0.95)
    return -limit, limit


def array_statistics(array, name, lengths, sample=None):
    """Statistics of one `[batch, time, units]` array over its valid positions.

    Args:
      array: the array (any float dtype; float16 and float32 are read as they are).
      name: its kind (`cell`, `hidden` or a gate name), which sets what saturated means.
      lengths: `[batch]` valid timesteps of each sequence of `array`.
      sample: optional indices of the sequences to use (all by default).

    Returns:
      A float32 vector in the order of `COLUMNS`; NaN where nothing is valid.
    """
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
    sample = np.arange(len(lengths)) if sample is None else np.asarray(sample, dtype=np.int64)
    low, high = _saturation_bounds(name)
    return np.array(_columns(array, sample, lengths[sample], low, high), dtype=np.float32)


def _columns(array, sample, sampled_lengths, low, high):
    array = np.asarray(array)
    if array.dtype == np.dtype("=f2"):
        array = array.view(np.uint16)  # numba has no float16: the kernel reads the bits
    elif array.dtype != np.dtype("=f4"):
        array = np.asarray(array, dtype=np.float32)
    return _kernel()(array, sample, sampled_lengths, low, high, _DEAD_RANGE_32)


_DEAD_RANGE_32 = np.float32(_DEAD_RANGE)  # numpy compared the float32 span with it
_KERNEL = None


def _kernel():
    """The compiled kernel (`statistics_kernel`), imported on first use: numba is slow
    to import, and the TensorBoard backend reads statistics without computing any."""
    global _KERNEL
    if _KERNEL is None:
        with warnings.catch_warnings():
            # numba warns (and compiles anyway) where its cache dir is read-only.
            warnings.simplefilter("ignore")
            from tb_lstm_states import statistics_kernel
        _KERNEL = statistics_kernel.array_statistics
    return _KERNEL


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
    lengths = np.asarray(recurrent_states.lengths, dtype=np.int64).reshape(-1)[sample]
    return np.array([_columns(array, sample, lengths, *_saturation_bounds(name))
                     for array, (_, name) in zip(arrays, entries)], dtype=np.float32)
