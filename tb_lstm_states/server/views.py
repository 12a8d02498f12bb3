"""The views of one step the routes serve: a window of states, the series, the changes
of a sequence and the statistics of every unit.

Each function takes a record (`records.Record`) and the handle of one of its arrays,
checks what the request would read against the caps (`limits.py`), and computes;
the routes parse the parameters and cache the results.
"""

import dataclasses
from typing import Any, Dict, List, Optional

import numpy as np
from tensorboard import errors

from tb_lstm_states import analysis
from tb_lstm_states.server import compare, limits, records
from tb_lstm_states.server.params import encode, floats, json_float
from tb_lstm_states.storage import format


@dataclasses.dataclass
class StatesResult:
    """What the `states` route serves.

    Attributes:
      record: the step (`records.Record`).
      array: `[2, bins, units]` float32 when `binned`; else the stored array's window,
        `[stop - start, units]` with a sequence, `[batch, stop - start, units]` without.
      start, stop: the timestep window.
      binned: whether `array` is per-bin minimum and maximum.
      time: the timesteps of the whole sequence.
      stored_dtype: the dtype the step stores the array in.
      lengths: the valid timesteps of each sequence served.
    """

    record: records.Record
    array: np.ndarray
    start: int
    stop: int
    time: int
    binned: bool
    stored_dtype: str
    lengths: list


def states_window(
    record: records.Record,
    handle: Any,
    layer: int,
    kind: str,
    sequence: Optional[int],
    start: Optional[int],
    stop: Optional[int],
    bins: Optional[int],
) -> StatesResult:
    """One array of one step, or a window of one sequence, or its binned view.

    Args:
      record, handle: the step and its array (`layer`, `kind`).
      sequence: a sequence of the probe batch, or None for all of them.
      start, stop: the timesteps `[start, stop)`; default the whole sequence.
      bins: with `sequence`, the most timesteps to answer: a longer window is
        answered as each bin's minimum and maximum.

    Raises:
      errors.InvalidArgumentError: for a window out of the sequence, or one that
        would read more than `limits.MAX_READ_VALUES` values.
      errors.NotFoundError: for what the logdir lacks or cannot serve.
    """
    header = record.header
    if bins is not None and sequence is None:
        raise errors.InvalidArgumentError(
            "parameter 'bins' needs 'sequence': bins cover the timesteps of one sequence"
        )
    if sequence is not None:
        records.check_sequence(header, sequence, record.run, record.tag)
    time_steps = record.time_of(handle)
    start = 0 if start is None else start
    stop = time_steps if stop is None else stop
    if stop > time_steps:
        raise errors.InvalidArgumentError(
            "parameter 'stop' is %d, past the end of the sequence: it has %d timesteps "
            "(stop is exclusive, at most %d)" % (stop, time_steps, time_steps)
        )
    if start >= stop:
        raise errors.InvalidArgumentError(
            "parameter 'start' (%d) must be less than 'stop' (%d)" % (start, stop)
        )
    binned = bins is not None and stop - start > bins
    units = record.units_of(handle)
    window = stop - start
    if (
        bins is not None
        and binned
        and record.has_pyramid(handle)
        and window >= 4 * format.PYRAMID_BLOCK * bins
    ):
        # whole blocks from the pyramid, the partial blocks at bin edges from the array
        values = (
            2 * -(-window // format.PYRAMID_BLOCK) + 2 * format.PYRAMID_BLOCK * (bins + 1)
        ) * units
    else:
        values = window * units * (header["batch"] if sequence is None else 1)
    limits.check_values(
        values,
        "states of layer %d %s, timesteps %d to %d%s"
        % (layer, kind, start, stop, "" if sequence is None else " of sequence %d" % sequence),
        "ask for one sequence (sequence=), a window (start=, stop=) or a binned view (bins=)",
    )
    if binned and sequence is not None and bins is not None:
        array = record.binned(handle, sequence, start, stop, bins)
    else:
        array = record.read(handle, sequence, start, stop)
    lengths = header["lengths"] if sequence is None else [header["lengths"][sequence]]
    return StatesResult(
        record, array, start, stop, time_steps, binned, record.stored_dtype(handle), lengths
    )


def check_series(record: records.Record) -> None:
    """Refuses a step whose series hold more values than one request reads."""
    header = record.header
    limits.check_values(
        len(header["series"]) * header["batch"] * header["time"],
        "the series of step %d" % record.step,
        "this step holds more than the tab reads",
    )


def series(record: records.Record) -> Dict[str, Any]:
    """The `series` route's answer: the step's series, lengths and tokens."""
    check_series(record)
    header = record.header
    return {
        "step": record.step,
        "batch": header["batch"],
        "time": header["time"],
        "lengths": header["lengths"],
        "series": {name: floats(array) for name, array in records.series_arrays(record).items()},
        "tokens": record.tokens(),
    }


def check_changes(record: records.Record, handle: Any, sequence: int) -> None:
    """Refuses a sequence that is not in the step or longer than the tab analyses."""
    records.check_sequence(record.header, sequence, record.run, record.tag)
    limits.check_values(
        record.header["lengths"][sequence] * record.units_of(handle),
        "the changes of sequence %d" % sequence,
        "this sequence is longer than the tab analyses",
    )


def changes(
    record: records.Record, handle: Any, layer: int, kind: str, sequence: int, threshold: float
) -> bytes:
    """The encoded JSON of the `changes` route (`analysis.changes` of one sequence)."""
    length = record.header["lengths"][sequence]
    result = analysis.changes(record.read(handle, sequence), length, threshold)
    return encode(
        {
            "step": record.step,
            "layer": layer,
            "kind": kind,
            "sequence": sequence,
            "length": length,
            "threshold": threshold,
            "norm": floats(result["norm"]),
            "cosine": floats(result["cosine"]),
            "zscore": floats(result["zscore"]),
            "anomalies": [int(t) for t in result["anomalies"]],
            "median": json_float(result["median"]),
            "mad": json_float(result["mad"]),
        }
    )


def check_units(record: records.Record, handle: Any, layer: int, kind: str) -> None:
    """Refuses an array (or series, or the forget gate of its memory horizons, unless
    its mean is stored) larger than the tab analyses."""
    header = record.header
    for name, array in ((kind, handle), ("forget", _forget(record, layer))):
        if array is not None and (name == kind or not record.has_mean(array)):
            limits.check_values(
                header["batch"] * record.time_of(array) * record.units_of(array),
                "the unit statistics of layer %d %s" % (layer, name),
                "this array is larger than the tab analyses",
            )
    check_series(record)


def _forget(record: records.Record, layer: int) -> Any:
    """The handle of the forget gate of an LSTM record's `layer`, or None (another kind,
    or a record that lacks it)."""
    if record.header["kind"] != "lstm":
        return None
    try:
        return record.entry(layer, "forget")
    except errors.NotFoundError:
        return None


def memory_horizon(record: records.Record, layer: int) -> Optional[list]:
    """Per unit of `layer`'s cell, -1/ln(mean forget gate) in timesteps, null where
    undefined; None for a GRU or RNN. The mean is the one stored at write time from
    the captured gate (`storage/extras.py`) where the step has it, else that of the
    stored gate (`analysis.memory_horizon`: older steps, version 1)."""
    handle = _forget(record, layer)
    if handle is None:
        return None
    if record.has_mean(handle):
        return floats(analysis.horizon_of_mean(record.mean(handle)))
    return floats(analysis.memory_horizon(record.read(handle), record.header["lengths"]))


def units(
    record: records.Record,
    handle: Any,
    layer: int,
    kind: str,
    series: Optional[str] = None,
    max_lag: int = 0,
) -> bytes:
    """The encoded JSON of the `units` route (`analysis.unit_statistics` of one array),
    with `significance` against `series` when given (`compare.significance_of`), and
    for an LSTM the memory horizon of each unit of the layer, whatever the kind."""
    array = record.read(handle)
    result = analysis.unit_statistics(
        array, kind, record.header["lengths"], records.series_arrays(record)
    )
    order: List[int] = [int(u) for u in result["order"]]
    extra = (
        {}
        if series is None
        else {"significance": compare.significance_of(record, array, series, max_lag)}
    )
    return encode(
        {
            **extra,
            "step": record.step,
            "layer": layer,
            "kind": kind,
            "units": int(array.shape[2]),
            "variance": floats(result["variance"]),
            "saturation": floats(result["saturation"]),
            "activity": floats(result["activity"]),
            "dead": [bool(d) for d in result["dead"]],
            "period": floats(result["period"]),
            "period_strength": floats(result["period_strength"]),
            "correlation": {k: floats(v) for k, v in result["correlation"].items()},
            "order": order,
            "memory_horizon": memory_horizon(record, layer),
        }
    )
