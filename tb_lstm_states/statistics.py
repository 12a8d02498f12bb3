"""Per-(layer, kind) statistics of one record, for the training-wide overview.

They are written beside every record as a small tensor so the overview of a whole
run never reads the large blobs. Computed in one compiled pass per array
(`statistics_kernel`, numba), which reads float16 and float32 arrays as they are.
"""

import functools
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
    return list(_rows(kind, num_entries))


@functools.lru_cache(maxsize=64)
def _rows(kind, num_entries):
    return tuple((layer, name) for layer in range(num_entries)
                 for name in states_lib.array_kinds(kind))


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
    return _statistics([array], [name], sample, lengths[sample])()[0]


def _statistics(arrays, names, sample, sampled_lengths):
    """A function returning the statistics table of `arrays` (of kinds `names`) on the
    sampled sequences. The numpy work is done before it is returned: the function
    itself spends its time in the kernel, with the GIL released."""
    kernel = _kernel()
    arrays = [np.asarray(array) for array in arrays]
    dtype = arrays[0].dtype
    if dtype in _KERNEL_DTYPES and all(
            a.dtype == dtype and a.ndim == 3 and a.flags.c_contiguous for a in arrays):
        # numba has no float16: the kernel reads the bits.
        arrays = [a.view(np.uint16) for a in arrays] if dtype == np.float16 else arrays
    else:  # other dtypes, mixed ones, strided arrays: the sampled sequences, as float32
        arrays = [np.ascontiguousarray(a[sample], dtype=np.float32) for a in arrays]
        sample = np.arange(len(sample))
    group = kernel.GROUP
    # The last group is padded with an array of no timesteps.
    arrays += [_padding(arrays[0].shape[0], arrays[0].dtype.str)] * (-len(arrays) % group)
    table = np.empty((len(arrays), len(COLUMNS)))
    calls = [(tuple(arrays[start:start + group]), sample, sampled_lengths, low, high,
              _DEAD_RANGE_32, table[start:start + group])
             for start, (low, high) in zip(range(0, len(arrays), group),
                                           _group_bounds(tuple(names), group))]

    def compute():
        for args in calls:
            kernel.group_statistics(*args)
        return table[:len(names)].astype(np.float32)
    return compute


@functools.lru_cache(maxsize=64)
def _group_bounds(names, group):
    """`(lows, highs)` float32 arrays for each group of `group` arrays of kinds `names`."""
    bounds = [_saturation_bounds(name) for name in names]
    bounds += [(np.float32(0), np.float32(0))] * (-len(bounds) % group)
    bounds = np.array(bounds, dtype=np.float32)
    return [(bounds[start:start + group, 0].copy(), bounds[start:start + group, 1].copy())
            for start in range(0, len(bounds), group)]


@functools.lru_cache(maxsize=64)
def _padding(batch, dtype):
    """An array of no timesteps with `batch` sequences (so any sampled index is valid)."""
    return np.zeros((batch, 0, 1), dtype=dtype)


_KERNEL_DTYPES = (np.dtype("=f2"), np.dtype("=f4"))
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
        _KERNEL = statistics_kernel
    return _KERNEL


def sample_sequences(batch, values_per_sequence, max_values=MAX_VALUES):
    """Indices of the sequences statistics are computed on: all of them, or evenly
    spaced ones holding at most `max_values` values (at least one sequence)."""
    return _sample_sequences(batch, values_per_sequence, max_values).copy()


@functools.lru_cache(maxsize=256)
def _sample_sequences(batch, values_per_sequence, max_values):
    # The same few shapes every record: computed once each (numpy calls cost
    # tens of microseconds a record).
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
    return prepare_record_statistics(recurrent_states, max_values)()


def prepare_record_statistics(recurrent_states, max_values=MAX_VALUES):
    """`record_statistics` in two halves: this one does the numpy work and returns a
    function that computes the table in the kernel with the GIL released (a writer
    calls it while its thread writes)."""
    return RecordStatistics(recurrent_states, max_values).prepare(recurrent_states)


class RecordStatistics:
    """The statistics of records of one layout: its kind, shapes and lengths.

    What does not depend on the values (the rows, the sampled sequences and their
    lengths) is worked out once, so a writer logging the same layout every step
    pays for it once.
    """

    def __init__(self, recurrent_states, max_values=MAX_VALUES):
        """Args: as for `record_statistics`; `recurrent_states` gives the layout."""
        self._entries = _rows(recurrent_states.kind, len(recurrent_states.layers))
        self._names = [name for _, name in self._entries]
        widest = max(int(np.shape(recurrent_states.layers[layer].get(name))[2])
                     for layer, name in self._entries)
        self._sample = _sample_sequences(
            recurrent_states.batch_size, recurrent_states.time_steps * widest, max_values)
        lengths = np.asarray(recurrent_states.lengths, dtype=np.int64).reshape(-1)
        self._lengths = lengths[self._sample]

    def prepare(self, recurrent_states):
        """A function computing the table of `recurrent_states` (of this layout) with
        the GIL released, as `prepare_record_statistics` returns."""
        arrays = [recurrent_states.layers[layer].get(name) for layer, name in self._entries]
        return _statistics(arrays, self._names, self._sample, self._lengths)
