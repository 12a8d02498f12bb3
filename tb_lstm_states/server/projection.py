"""The `projection` route: which steps and points to lay out, and their layout.

`within_caps` checks a request against `limits.PROJECTION_CAPS` and
`limits.MAX_PROJECTION_VALUES` before anything is read (keeping evenly spaced steps
when the default choice of steps is too many); `layout` reads the points, runs
`analysis.project` and encodes the answer.
"""

from concurrent import futures
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
from tensorboard import errors

from tb_lstm_states import analysis
from tb_lstm_states.server import limits, params, records
from tb_lstm_states.server.params import encode
from tb_lstm_states.storage import format

# (record, handle) of the array of one step.
Found = Tuple[records.Record, Any]


def check_method(method: str) -> None:
    """Refuses `umap` when umap-learn is not installed (400 naming the package)."""
    if method == "umap" and not analysis.umap_available():
        raise errors.InvalidArgumentError(
            "method=umap needs the umap-learn package: pip install 'tb-lstm-states[umap]'"
        )


def within_caps(
    found: List[Found],
    method: str,
    sequences: Optional[List[int]],
    chosen: List[int],
    *,
    steps_given: bool,
    run: str,
    tag: str,
) -> List[Found]:
    """The steps of a projection request that fit its caps.

    Args:
      found: the arrays of the steps `chosen`, in step order.
      method: a method of `analysis.METHODS`.
      sequences: the sequences to lay out (sorted, distinct), or None for all.
      chosen: the steps asked for.
      steps_given: whether the request named its steps (`steps=`): then more points
        than a request may lay out answer 400; else evenly spaced steps are kept.
      run, tag: name the steps in errors.

    Raises:
      errors.InvalidArgumentError: (400) for a step or request beyond the caps,
        naming what to ask for instead.
      errors.NotFoundError: for a sequence a step does not have.
    """
    total_cap, step_cap = limits.PROJECTION_CAPS[method]
    if sequences is not None:
        for record, _ in found:
            for sequence in sequences:
                records.check_sequence(record.header, sequence, run, tag)
    per_step = [
        sum(
            r.header["lengths"][b]
            for b in (sequences if sequences is not None else range(r.header["batch"]))
        )
        for r, _ in found
    ]
    largest = max(per_step) if per_step else 0
    if largest > step_cap:
        raise errors.InvalidArgumentError(
            "projection with method=%s is capped at %d points per step; a step here has %d "
            "(sequences x valid timesteps): choose fewer sequences with sequence="
            % (method, step_cap, largest)
        )
    units = max((r.units_of(h) for r, h in found), default=1)
    if largest * units > limits.MAX_PROJECTION_VALUES:
        raise errors.InvalidArgumentError(
            "a projection is capped at %d values (points x units); a step here has %d "
            "points of %d units: choose fewer sequences with sequence="
            % (limits.MAX_PROJECTION_VALUES, largest, units)
        )
    total_cap = min(total_cap, limits.MAX_PROJECTION_VALUES // units)
    if sum(per_step) > total_cap:
        if steps_given:
            raise errors.InvalidArgumentError(
                "projection with method=%s is capped at %d points per request; steps=%s "
                "asks for %d: request fewer steps (steps=) or sequences (sequence=)"
                % (method, total_cap, _abbreviate(chosen), sum(per_step))
            )
        keep = _evenly_spaced(len(found), max(total_cap // max(largest, 1), 1))
        found = [found[i] for i in keep]
    return found


def layout(
    found: List[Found],
    layer: int,
    kind: str,
    method: str,
    sequences: Optional[List[int]],
    pool: futures.Executor,
) -> bytes:
    """The encoded JSON of the `projection` route.

    Args:
      found: the arrays of the steps to lay out, in step order.
      layer, kind, method: as asked.
      sequences: the sequences to lay out, or None for all.
      pool: reads the steps' points side by side.
    """

    def rows_of(item):
        record, handle = item
        header = record.header
        chosen = sequences if sequences is not None else list(range(header["batch"]))
        lengths = [header["lengths"][b] for b in chosen]
        if sequences is None:
            array = record.read(handle)
            rows = [array[b, :n] for b, n in zip(chosen, lengths)]
        else:  # only the sequences asked for: a version 2 step reads just those
            rows = [record.read(handle, b, 0, n) for b, n in zip(chosen, lengths) if n]
        empty = np.zeros((0, record.units_of(handle)), format.DTYPES[record.stored_dtype(handle)])
        points = np.concatenate(rows, axis=0) if rows else empty
        keys = np.concatenate(
            [np.zeros(0, np.int64)]
            + [
                b * record.time_of(handle) + np.arange(n, dtype=np.int64)
                for b, n in zip(chosen, lengths)
            ]
        )
        return points, keys, lengths

    points, keys, lengths = [], [], []
    for step_points, step_keys, step_lengths in pool.map(rows_of, found):
        points.append(step_points)
        keys.append(step_keys)
        lengths.append(step_lengths)
    result = analysis.project(method, points, keys)
    coordinates = result["coordinates"]
    flat = np.concatenate(coordinates, axis=0) if coordinates else np.zeros((0, 2), np.float32)
    flat = np.nan_to_num(flat.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    offsets = np.concatenate([[0], np.cumsum([len(c) for c in coordinates])[:-1]]).astype(int)
    if len(flat):
        bounds = [
            float(flat[:, 0].min()),
            float(flat[:, 1].min()),
            float(flat[:, 0].max()),
            float(flat[:, 1].max()),
        ]
    else:
        bounds = [0.0, 0.0, 0.0, 0.0]
    return encode(
        {
            "method": method,
            "method_used": result["method_used"],
            "layer": layer,
            "kind": kind,
            "steps": [r.step for r, _ in found],
            "sequences": sequences
            if sequences is not None
            else list(range(found[0][0].header["batch"] if found else 0)),
            "lengths": lengths,
            "offsets": [int(o) for o in offsets] if coordinates else [],
            "coordinates": params.rounded_relative(flat.ravel()),
            "bounds": bounds,
            "explained_variance": result.get("explained_variance"),
        }
    )


def _evenly_spaced(count: int, keep: int) -> List[int]:
    """Indices of `keep` of `count` items, evenly spaced, always with the last."""
    if keep >= count:
        return list(range(count))
    if keep == 1:
        return [count - 1]
    return sorted({round(i * (count - 1) / (keep - 1)) for i in range(keep)})


def _abbreviate(values: Sequence[int], limit: int = 8) -> str:
    text = ",".join(str(v) for v in values[:limit])
    return text + (",..." if len(values) > limit else "")


def release_free_memory() -> None:
    """Hands freed heap memory back to the system (glibc only).

    A projection's temporaries (a float32 copy of its points, a Python float per
    coordinate) are freed into malloc's per-thread arenas, which glibc keeps:
    without this, resident memory grows well past the cache after a few projections.
    """
    trim = _MALLOC_TRIM
    if trim is not None:
        trim(0)


def _find_malloc_trim():
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return None


_MALLOC_TRIM = _find_malloc_trim()
