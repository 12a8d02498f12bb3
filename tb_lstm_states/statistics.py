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


def rows(kind, num_entries):
    """The `(layer, array kind)` of each statistics row, in stored order."""
    return [(layer, name) for layer in range(num_entries) for name in states_lib.array_kinds(kind)]


def _valid_mask(lengths, time):
    return np.arange(time)[None, :] < np.asarray(lengths).reshape(-1, 1)


def array_statistics(array, name, mask):
    """Statistics of one `[batch, time, units]` array over its valid positions.

    Args:
      array: the array (any float dtype).
      name: its kind (`cell`, `hidden` or a gate name), which sets what saturated means.
      mask: `[batch, time]` bool, True at valid positions.

    Returns:
      A float32 vector in the order of `COLUMNS`; NaN where nothing is valid.
    """
    array = np.asarray(array, dtype=np.float32)
    values = array[mask]  # [valid, units]
    out = np.full(len(COLUMNS), np.nan, dtype=np.float32)
    if values.size == 0:
        return out
    with np.errstate(invalid="ignore", over="ignore"):
        out[0] = np.mean(np.abs(values))
        out[1] = np.std(values)
        if name in _SIGMOID_GATES:
            saturated = (values < 0.05) | (values > 0.95)
        elif name == "cell":
            saturated = np.abs(values) > _CELL_SATURATION
        else:
            saturated = np.abs(values) > 0.95
        out[2] = np.mean(saturated)
        out[3] = np.mean((values.max(axis=0) - values.min(axis=0)) < _DEAD_RANGE)
        steps = mask[:, 1:] & mask[:, :-1]
        if steps.any():
            out[4] = np.mean(np.linalg.norm(np.diff(array, axis=1)[steps], axis=-1))
    return out


def record_statistics(recurrent_states):
    """Statistics of every (layer, kind) of a `RecurrentStates` of numpy arrays.

    Returns:
      A float32 array `[len(rows(...)), len(COLUMNS)]`.
    """
    mask = _valid_mask(recurrent_states.lengths, recurrent_states.time_steps)
    result = [
        array_statistics(recurrent_states.layers[layer].get(name), name, mask)
        for layer, name in rows(recurrent_states.kind, len(recurrent_states.layers))
    ]
    return np.stack(result).astype(np.float32)
