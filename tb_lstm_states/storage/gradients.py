"""The gradient arrays of a record: their kinds, the index version holding them, their reach.

A record captured with a loss (`tls.capture(..., loss=...)`) carries, beside each
layer's states, dL/dh_t and (LSTM) dL/dc_t (`LayerStates.grads`). They are stored
like any state array, under the kinds `grad_hidden` and `grad_cell`, after every
state array of the record (so a record's statistics rows are those of a record
without gradients, then the gradients'). A record holds them for every layer or
for none, and they are stored in float32 whatever the record's dtype: float16
flushes values below 6e-8 to zero, and a vanishing gradient is exactly what they
are logged to show.

They are optional per record, so an index lists them only where present, and a
record holding them is written as index version `VERSION` (3): a reader of version
2 then asks for an upgrade instead of calling the record malformed, while records
without gradients stay version 2, readable by every reader of version 2 (but for an
LSTM's, whose forget means are version 3 too: `extras.py`).

The index of a record with gradients also holds its `gradient_reach` (`reach`),
computed once at write time, so the overview of hundreds of steps never opens an
array file. numpy only.
"""

from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from tb_lstm_states import states as states_lib

PREFIX = "grad_"
# The first index version that may list gradient arrays.
VERSION = 3
# Where a gradient's mean norm falls below this fraction of its largest, it no
# longer reaches back (`reach`).
REACH_FRACTION = 0.01
# Norms are taken over blocks of at most this many values (float64 temporaries).
_BLOCK_VALUES = 1 << 16


def kinds(kind: str) -> Tuple[str, ...]:
    """The gradient array kinds a `kind` network's record may hold, in stored order."""
    return tuple(PREFIX + name for name in ("cell", "hidden") if kind == "lstm" or name == "hidden")


def stored_kinds(kind: str, version: int = VERSION) -> Tuple[str, ...]:
    """Every array kind an index of `version` may list for a `kind` network."""
    return states_lib.array_kinds(kind) + (kinds(kind) if version >= VERSION else ())


def is_gradient(name: str) -> bool:
    """Whether the array kind `name` is a gradient (`grad_hidden`, `grad_cell`)."""
    return name.startswith(PREFIX)


def state_of(name: str) -> str:
    """The `LayerStates.grads` key of the gradient kind `name` (`"cell"`, `"hidden"`)."""
    return name[len(PREFIX) :]


def index_version(names: Sequence[str]) -> int:
    """The index version of a record holding arrays of these kinds: `VERSION` with
    gradients, else 2."""
    return VERSION if any(is_gradient(name) for name in names) else 2


def reach_layer(kind: str, num_layers: int, num_directions: int) -> Tuple[int, str]:
    """`(layer entry, kind)` of the array the reach is computed on: the last layer's
    forward direction (backward in time is what "reach" measures; the reverse
    direction's gradients flow the other way), `grad_cell` for LSTM (the memory
    path), else `grad_hidden`."""
    return (num_layers - 1) * num_directions, kinds(kind)[0]


def reach(array: Any, lengths: Sequence[int]) -> Optional[int]:
    """How far back in time a gradient reaches, in timesteps.

    The norm over units of each valid timestep, ||g[b, t]||, is taken per sequence
    counting back from its last valid timestep (`k = length - 1 - t`), and averaged
    over the sequences long enough for each `k`. The reach is the number of
    timesteps, counting back from the last valid one, over which that mean stays at
    or above `REACH_FRACTION` of its largest value: the first `k` where it falls
    below, or the longest length when it never does.

    Args:
      array: `[batch, time, units]` gradients (any real dtype; norms in float64).
      lengths: `[batch]` valid timesteps.

    Returns:
      The reach, or None when no sequence has a valid timestep, the gradient is zero
      everywhere, or a norm is not finite.
    """
    batch, time, units = np.shape(array)
    lengths = [min(max(int(n), 0), time) for n in lengths]
    longest = max(lengths, default=0)
    if longest == 0:
        return None
    total = np.zeros(longest)
    count = np.zeros(longest)
    rows = max(1, _BLOCK_VALUES // max(units, 1))
    for b in range(batch):
        length = lengths[b]
        for t0 in range(0, length, rows):
            t1 = min(t0 + rows, length)
            block = np.asarray(array[b, t0:t1], dtype=np.float64)
            norms = np.sqrt(np.einsum("ij,ij->i", block, block))
            # timesteps t0..t1-1 are k = length-1-t0 down to length-t1
            total[length - t1 : length - t0] += norms[::-1]
        count[:length] += 1
    mean = total / count  # every k < longest has the longest sequence
    if not np.isfinite(mean).all():
        return None
    peak = float(mean.max())
    if peak <= 0:
        return None
    below = np.flatnonzero(mean < REACH_FRACTION * peak)
    return int(below[0]) if below.size else longest


def record_reach(
    kind: str,
    num_layers: int,
    num_directions: int,
    arrays: Dict[Tuple[int, str], Any],
    lengths: Sequence[int],
) -> Optional[int]:
    """The `reach` of a record's arrays (`(layer entry, kind) -> array`), or None
    when it holds no gradients."""
    key = reach_layer(kind, num_layers, num_directions)
    return reach(arrays[key], lengths) if key in arrays else None


def check_index(index: dict, require) -> None:
    """Checks the gradient fields of a parsed index: `gradient_reach`, absent or null
    or an integer in [0, time].

    Args:
      index: the index, its layout (`time`) checked already.
      require: `require(condition, message)`, raising the reader's error.
    """
    value = index.get("gradient_reach")
    require(
        value is None
        or (isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= index["time"]),
        "gradient_reach must be null or an integer in [0, time]",
    )
