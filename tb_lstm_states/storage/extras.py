"""The small tensors an array file holds beside the arrays: min/max pyramids and forget means.

Both are computed at write time and listed in the index under the array they belong
to (`format.build_index`), which `format.parse_index` checks like every other tensor
(offset, size, checksum slices, tiling of the file):

- **min/max pyramids**, `"<layer>/<kind>/minmax"`: for sequences of `PYRAMID_MIN_TIME`
  timesteps or more, the minimum and maximum of each block of `PYRAMID_BLOCK`
  timesteps (`compute_pyramid`), so binned views of a long sequence never read all of
  it; index member `"pyramid": {"offset", "chunk", "blocks"}`.
- **forget means**, `"<layer>/forget/mean"` (LSTM): `F64` `[units]`, each unit's mean
  forget gate over every valid position (timesteps below each sequence's length),
  summed in float64 from the gate as captured, before any float16 rounding
  (`forget_means`); index member `"mean": {"offset", "chunk"}` of the forget gate's
  entry. The memory horizon -1/ln(mean) (the `units` route) is taken from it: a
  float16 gate is the captured one rounded by up to 2.4e-4, which the horizon
  amplifies by 1 / (1 - mean), 2.4e-2 at a mean of 0.99. An index lists them from
  version `VERSION` (3) on, the version of the gradient arrays (`gradients.py`): a
  reader of version 2 then asks for an upgrade instead of calling the record
  malformed. A record without them (version 2, version 1) falls back to the mean of
  the stored gate.

numpy only (torch, where the caller's arrays are torch tensors, lazily).
"""

from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from tb_lstm_states.storage import convert, gradients

PYRAMID_BLOCK = 64
PYRAMID_MIN_TIME = 2048

# The array kind whose entries may carry a mean, in an LSTM record, and its dtype.
MEAN_KIND = "forget"
MEAN_DTYPE = np.dtype("<f8")
# The first index version whose entries may carry a mean (that of the gradients).
VERSION = gradients.VERSION

# The means are summed over tiles of at most this many values (float64 temporaries).
_BLOCK_VALUES = 1 << 20


def pyramid_name(layer: int, kind: str) -> str:
    """The tensor name of a state array's min/max pyramid."""
    return "%d/%s/minmax" % (layer, kind)


def mean_name(layer: int) -> str:
    """The tensor name of an LSTM layer entry's forget mean."""
    return "%d/%s/mean" % (layer, MEAN_KIND)


def pyramid_blocks(time: int) -> int:
    """How many pyramid blocks a sequence of `time` timesteps has (0: no pyramid)."""
    return -(-time // PYRAMID_BLOCK) if time >= PYRAMID_MIN_TIME else 0


def compute_pyramid(array: np.ndarray) -> np.ndarray:
    """The min/max pyramid of a `[batch, time, units]` array: `[batch, blocks, 2, units]`.

    The last block covers the remaining timesteps only. Computed in float32 a
    sequence at a time (numpy compares float16 values one by one; float16 to
    float32 and back is exact), and returned in the array's dtype.
    """
    batch, time, units = array.shape
    blocks = -(-time // PYRAMID_BLOCK)
    whole = time // PYRAMID_BLOCK
    out = np.empty((batch, blocks, 2, units), array.dtype)
    for sequence in range(batch):
        values = np.asarray(array[sequence], np.float32)
        grouped = values[: whole * PYRAMID_BLOCK].reshape(whole, PYRAMID_BLOCK, units)
        out[sequence, :whole, 0] = grouped.min(axis=1)
        out[sequence, :whole, 1] = grouped.max(axis=1)
        if whole < blocks:  # the last block, shorter
            out[sequence, whole, 0] = values[whole * PYRAMID_BLOCK :].min(axis=0)
            out[sequence, whole, 1] = values[whole * PYRAMID_BLOCK :].max(axis=0)
    return out


def tensors(entries: Sequence[dict], arrays: Sequence[np.ndarray], job: Any) -> List[tuple]:
    """`(entry, member, tensor name, array)` of each pyramid and forget mean of a record.

    Args:
      entries: the `build_index` entries of its state arrays (`"layer"`, `"kind"`).
      arrays: those arrays, as stored.
      job: the record (`plan.Job`): its `time` and `means`.
    """
    found: List[tuple] = []
    if pyramid_blocks(job.time):
        for entry, array in zip(entries, arrays):
            name = pyramid_name(entry["layer"], entry["kind"])
            found.append((entry, "pyramid", name, compute_pyramid(array)))
    for entry in entries:
        mean = job.means.get(entry["layer"]) if entry["kind"] == MEAN_KIND else None
        if mean is not None:
            found.append((entry, "mean", mean_name(entry["layer"]), mean))
    return found


# ----------------------------------------------------------------------
# Forget means.


def index_version(arrays: Sequence[dict]) -> int:
    """The index version of a record whose arrays are `arrays` (`build_index`'s:
    `{"layer", "kind"}` or `{"series"}`, a forget gate's with `"mean"` where it has
    one): `VERSION` with gradients or means, else 2."""
    means = any(a.get("mean") for a in arrays)
    kinds = [a.get("kind", "") for a in arrays]
    return max(gradients.index_version(kinds), VERSION if means else 2)


def forget_means(
    kind: str, keys: Sequence[Tuple[int, str]], arrays: Sequence[Any], lengths: Sequence[int]
) -> Dict[int, np.ndarray]:
    """The forget mean of every layer entry of an LSTM record (`valid_mean`).

    Args:
      kind: the record's kind (nothing for a GRU or RNN).
      keys: `(layer entry, array kind)` of each array.
      arrays: the caller's arrays (torch tensors on any device, or numpy arrays), as
        captured: not yet rounded to the stored dtype.
      lengths: `[batch]` valid timesteps, checked (`plan.plan`).

    Returns:
      `{layer entry: [units] little-endian float64}`.
    """
    if kind != "lstm":
        return {}
    return {
        layer: valid_mean(array, lengths)
        for (layer, name), array in zip(keys, arrays)
        if name == MEAN_KIND
    }


def valid_mean(array: Any, lengths: Sequence[int]) -> np.ndarray:
    """Each unit's mean over the valid positions of a `[batch, time, units]` array.

    Summed in float64 over tiles of at most `_BLOCK_VALUES` values (no float64 copy
    of the whole array); what lies past a sequence's length, NaN included, is not
    counted. A torch tensor on an accelerator is summed there (only `[units]` crosses
    to the host), in float32 tiles moved to the host where the device has no float64.

    Args:
      array: a numpy array or a torch tensor (any device) of real numbers.
      lengths: `[batch]` valid timesteps, each in `[0, time]`.

    Returns:
      `[units]` little-endian float64: NaN everywhere where no position is valid.
    """
    batch, time, units = (int(d) for d in np.shape(array))
    lengths = [min(max(int(n), 0), time) for n in lengths]
    positions = sum(lengths)
    if convert.is_torch(array) and array.device.type != "cpu":
        total = _device_sum(array, lengths)
    else:
        values = convert.to_numpy(array)  # a view of a CPU float32 or float64 tensor
        total = np.zeros(units)
        for b0, b1, t0, t1, valid in _tiles(batch, time, units, lengths):
            tile = np.asarray(values[b0:b1, t0:t1], np.float64)
            if valid is not None:
                tile = np.where(valid[..., None], tile, 0.0)
            total += tile.sum(axis=(0, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / positions if positions else np.full(units, np.nan)
    return np.ascontiguousarray(mean, MEAN_DTYPE)


def _tiles(batch: int, time: int, units: int, lengths: List[int]):
    """`(b0, b1, t0, t1, valid)` tiles of `[batch, time, units]` of at most
    `_BLOCK_VALUES` values (or one row of units) covering every valid position:
    whole sequences together where they are short, else rows of one sequence.
    `valid` is the `[b1 - b0, t1 - t0]` mask of valid positions, None where all are."""
    if time * units <= _BLOCK_VALUES:
        group = max(1, _BLOCK_VALUES // (time * units))
        for b0 in range(0, batch, group):
            b1 = min(b0 + group, batch)
            t1 = max(lengths[b0:b1])
            if t1 == 0:
                continue
            steps = np.arange(t1)[None, :] < np.asarray(lengths[b0:b1])[:, None]
            yield b0, b1, 0, t1, None if steps.all() else steps
        return
    rows = max(1, _BLOCK_VALUES // units)
    for b, length in enumerate(lengths):
        for t0 in range(0, length, rows):
            yield b, b + 1, t0, min(t0 + rows, length), None


def _device_sum(tensor: Any, lengths: List[int]) -> np.ndarray:
    """`valid_mean`'s float64 sums of a torch tensor on an accelerator: `[units]`."""
    import torch

    source = tensor.detach()
    batch, time, units = source.shape
    on_device = source.device.type == "cuda"  # float64 there; not on every device (MPS)
    total = torch.zeros(units, dtype=torch.float64, device=source.device if on_device else "cpu")
    for b0, b1, t0, t1, valid in _tiles(batch, time, units, lengths):
        tile = source[b0:b1, t0:t1]
        tile = tile.to(torch.float64) if on_device else tile.to("cpu", torch.float32).double()
        if valid is not None:
            mask = torch.from_numpy(valid).to(tile.device)
            tile = tile.masked_fill(~mask[..., None], 0.0)
        total += tile.sum(dim=(0, 1))
    return total.cpu().numpy()


def check_mean(index: dict, entry: dict, check_span, require) -> Tuple[int, int, int, int]:
    """Checks the `"mean"` member of an index entry (not None), its shape checked.

    Args:
      index: the index, its version, kind and file layout checked already.
      entry: the array's entry, its kind and shape checked.
      check_span: `check_span(member, nbytes, index)`, the format's check of a
        tensor's offset and checksum slices, returning its span.
      require: `require(condition, message)`, raising the reader's error.

    Returns:
      The span `(offset, bytes, first slice, slices)` of the mean.
    """
    mean = entry["mean"]
    require(
        index["version"] >= VERSION
        and index["kind"] == "lstm"
        and entry.get("kind") == MEAN_KIND
        and "series" not in entry
        and isinstance(mean, dict),
        "bad forget mean (only an LSTM's forget gates have one, from version %d)" % VERSION,
    )
    return check_span(mean, MEAN_DTYPE.itemsize * entry["shape"][2], index)
