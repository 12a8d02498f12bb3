"""Checking and planning one record of `StateWriter.add_states`.

`plan` checks a record from its shapes alone, before anything is copied: kinds,
layer and direction counts, shapes, gradients, lengths, series and tokens, each
within the caps of `format.py`, and counts its bytes for the writer's queue. The `Job` it
returns carries the record from `add_states` to the thread that writes it.
"""

import dataclasses
import numbers
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from tb_lstm_states import states as states_lib
from tb_lstm_states import statistics
from tb_lstm_states.storage import convert, format, gradients

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


@dataclasses.dataclass
class Job:
    """One record, from the `add_states` that makes it to the thread that writes it.

    Attributes:
      tag, step, wall_time, description: as logged.
      kind, num_layers, num_directions, batch, time, lengths: the record's layout.
      keys: `(layer, kind)` of each state array, in file order.
      arrays: the state arrays (the caller's until `add_states` copies them).
      series_names, series: the series and their `[batch, time]` values.
      tokens: `batch` lists of strings, or None.
      nbytes: the bytes the record holds in the writer's queue.
      structure: the layout the index summary's plugin data carries.
      sources: the caller's arrays, until `samples` copies what the statistics need.
      samples, sample_lengths: the sequences the statistics are computed on.
      means: `{layer entry: [units] float64}`, an LSTM's forget means, computed from
        the caller's arrays (`extras.forget_means`).
    """

    tag: str
    step: int
    wall_time: float
    description: Optional[str]
    kind: str
    num_layers: int
    num_directions: int
    batch: int
    time: int
    lengths: List[int]
    keys: List[Tuple[int, str]]
    arrays: List[Any]
    series_names: List[str]
    series: List[Any]
    tokens: Optional[List[List[str]]]
    nbytes: int
    structure: Dict[str, Any]
    sources: List[Any]
    samples: List[Any] = dataclasses.field(default_factory=list)
    sample_lengths: Optional[np.ndarray] = None
    means: Dict[int, np.ndarray] = dataclasses.field(default_factory=dict)


def plan(
    tag: str,
    step: int,
    states: Any,
    series: Optional[Dict[str, Any]],
    tokens: Optional[Sequence[Sequence[str]]],
    description: Optional[str],
    dtype: str,
) -> Job:
    """Checks a record from the shapes alone (before anything is copied) and plans it.

    Raises:
      ValueError: on a kind, shape or dtype that does not fit, naming the fix.
    """
    kind = states.kind
    if kind not in states_lib.KINDS:
        raise ValueError("kind must be one of %s, got %r" % (states_lib.KINDS, kind))
    layers = states.layers
    num_directions = states.num_directions
    if (
        not isinstance(num_directions, numbers.Integral)
        or num_directions not in (1, 2)
        or not layers
        or len(layers) % num_directions
    ):
        raise ValueError(
            "states need one LayerStates per (layer, direction); got %d layers for "
            "%r directions" % (len(layers), num_directions)
        )
    num_directions = int(num_directions)
    if len(layers) // num_directions > format.MAX_LAYERS:
        raise ValueError(
            "states have %d layers; at most %d (format.MAX_LAYERS) can be logged: "
            "log the layers you want to see" % (len(layers) // num_directions, format.MAX_LAYERS)
        )
    first = tuple(np.shape(layers[0].hidden)) if layers[0].hidden is not None else ()
    if len(first) != 3:
        raise ValueError("layer 0 hidden must be [batch, time, units], got shape %s" % list(first))
    batch, time_steps = int(first[0]), int(first[1])
    if not (batch >= 1 and 1 <= time_steps <= format.MAX_DIM):
        raise ValueError(
            "states need at least one sequence and one timestep, got "
            "[batch=%d, time=%d]" % (batch, time_steps)
        )
    if batch > format.MAX_BATCH:
        raise ValueError(
            "the probe batch has %d sequences; at most %d (format.MAX_BATCH) can be "
            "logged: log a smaller probe" % (batch, format.MAX_BATCH)
        )
    lengths = convert.to_numpy(states.lengths)
    lengths = np.asarray(lengths).reshape(-1) if lengths is not None else np.zeros(0)
    if lengths.shape != (batch,):
        raise ValueError(
            "lengths has shape %s, expected [%d] (one per sequence)" % (list(lengths.shape), batch)
        )
    if not (
        np.issubdtype(lengths.dtype, np.integer)
        or (
            np.issubdtype(lengths.dtype, np.floating) and np.array_equal(lengths, np.round(lengths))
        )
    ):
        raise ValueError("lengths must be integers, got %s" % lengths.tolist())
    length_list = [int(n) for n in lengths.tolist()]
    if min(length_list) < 0 or max(length_list) > time_steps:
        raise ValueError("lengths must lie in [0, time=%d], got %s" % (time_steps, length_list))

    keys: List[Tuple[int, str]] = []
    arrays: List[Any] = []
    units: Dict[str, int] = {}
    itemsize = convert.DTYPES[dtype].itemsize
    nbytes = 0
    gate_names = states_lib.GATE_NAMES[kind]
    for index, layer in enumerate(layers):
        for name in states_lib.array_kinds(kind):
            try:
                array = layer.get(name)
            except KeyError:
                array = None
            shape = tuple(np.shape(array)) if array is not None else ()
            if len(shape) != 3:
                raise ValueError(
                    "layer %d %s must be [batch, time, units], got shape %s"
                    % (index, name, list(shape))
                )
            if shape[:2] != (batch, time_steps) or not 1 <= shape[2] <= format.MAX_DIM:
                raise ValueError(
                    "layer %d %s has shape %s, expected %s (batch, time[, units]) to match "
                    "the states" % (index, name, list(shape), [batch, time_steps, max(1, shape[2])])
                )
            if shape[2] > format.MAX_UNITS:
                raise ValueError(
                    "layer %d %s has %d units; at most %d (format.MAX_UNITS) can be "
                    "logged" % (index, name, shape[2], format.MAX_UNITS)
                )
            if name in gate_names:
                # Gates are as wide as the cell (LSTM) or the hidden state (GRU).
                width = np.shape(layer.cell if kind == "lstm" else layer.hidden)[2]
                if shape[2] != width:
                    raise ValueError(
                        "layer %d %s gate has %d units, expected %d like its %s state"
                        % (index, name, shape[2], width, "cell" if kind == "lstm" else "hidden")
                    )
            convert.check_real(array, "layer %d %s" % (index, name))
            keys.append((index, name))
            arrays.append(array)
            units.setdefault(name, int(shape[2]))
            nbytes += int(np.prod(shape, dtype=np.int64)) * itemsize
    for key, array in _gradients(kind, layers):
        keys.append(key)
        arrays.append(array)
        nbytes += int(np.prod(np.shape(array), dtype=np.int64)) * 4  # always float32

    series_names: List[str] = []
    series_values: List[Any] = []
    series = series or {}
    if len(series) > format.MAX_SERIES:
        raise ValueError(
            "%d series; at most %d (format.MAX_SERIES) can be logged with a record"
            % (len(series), format.MAX_SERIES)
        )
    for name, values in series.items():
        if not isinstance(name, str) or not name or len(name) > format.MAX_NAME_CHARS:
            raise ValueError(
                "series names must be non-empty strings of at most %d characters, "
                "got %r" % (format.MAX_NAME_CHARS, str(name)[:80])
            )
        if not (convert.is_torch(values) or isinstance(values, np.ndarray)):
            values = np.asarray(values)
        shape = tuple(np.shape(values))
        if len(shape) == 1 and batch == 1:
            shape = (1, *shape)
        try:
            convert.check_real(values, "series %r" % name)
        except ValueError:
            raise ValueError(
                "series %r must be numeric, got dtype %s" % (name, values.dtype)
            ) from None
        if shape != (batch, time_steps):
            raise ValueError(
                "series %r has shape %s, expected %s (batch, time[, units]) to match the "
                "states" % (name, list(np.shape(values)), [batch, time_steps])
            )
        series_names.append(name)
        series_values.append(values)
        nbytes += batch * time_steps * 4

    token_lists = None
    if tokens is not None:
        if isinstance(tokens, str) or len(tokens) != batch:
            raise ValueError(
                "tokens must be %d lists (one per sequence) of strings, got %s"
                % (batch, type(tokens).__name__ if isinstance(tokens, str) else len(tokens))
            )
        token_lists = []
        for b, sequence in enumerate(tokens):
            if isinstance(sequence, str) or len(sequence) > time_steps:
                raise ValueError(
                    "tokens[%d] must be a list of at most time=%d strings" % (b, time_steps)
                )
            token_lists.append([str(t) for t in sequence])

    if description is not None and not isinstance(description, str):
        raise ValueError("description must be a string, got %s" % type(description).__name__)
    return Job(
        tag=tag,
        step=step,
        wall_time=time.time(),
        description=description,
        kind=kind,
        num_layers=len(layers) // num_directions,
        num_directions=num_directions,
        batch=batch,
        time=time_steps,
        lengths=length_list,
        keys=keys,
        arrays=arrays,
        series_names=series_names,
        series=series_values,
        tokens=token_lists,
        nbytes=nbytes,
        structure={
            "kind": kind,
            "num_layers": len(layers) // num_directions,
            "num_directions": num_directions,
            "batch": batch,
            "time": time_steps,
            "units": units,
        },
        sources=arrays,
    )


def _gradients(kind: str, layers: Sequence[Any]) -> List[Tuple[Tuple[int, str], Any]]:
    """`((layer, gradient kind), array)` of the layers' `grads`, after every state
    array (`gradients.py`), each checked against the state it is the gradient of.

    Raises:
      ValueError: if some layers have gradients and others not, a layer has other
        gradients than its kind's, or one's shape differs from its state's.
    """
    present = [bool(getattr(layer, "grads", None)) for layer in layers]
    if not any(present):
        return []
    if not all(present):
        raise ValueError(
            "layers %s have gradients (grads) and layers %s do not: a record holds them "
            "for every layer or none; capture with tls.capture(..., loss=...) to fill every "
            "layer's grads, or set grads = {} on all of them"
            % ([i for i, p in enumerate(present) if p], [i for i, p in enumerate(present) if not p])
        )
    expected = [gradients.state_of(name) for name in gradients.kinds(kind)]
    found = []
    for index, layer in enumerate(layers):
        if set(layer.grads) != set(expected):
            raise ValueError(
                "layer %d grads has keys %s; the gradients of a %s record are %s"
                % (index, sorted(map(str, layer.grads)), kind, expected)
            )
        for name, state in zip(gradients.kinds(kind), expected):
            array = layer.grads[state]
            shape = list(np.shape(array))
            want = list(np.shape(layer.get(state)))
            if shape != want:
                raise ValueError(
                    "layer %d grads[%r] has shape %s, expected %s like its %s state"
                    % (index, state, shape, want, state)
                )
            convert.check_real(array, "layer %d grads[%r]" % (index, state))
            found.append(((index, name), array))
    return found


def stored_dtype(name: str, dtype: str) -> str:
    """The dtype an array of kind `name` is stored in, the record's being `dtype`:
    gradients are float32 always (`gradients.py` says why)."""
    return "float32" if gradients.is_gradient(name) else dtype


def samples(job: Job) -> List[Any]:
    """Copies of the sequences of the caller's arrays (`job.sources`) that the
    statistics are computed on (`statistics.sample_sequences`), in their own dtype:
    the statistics are of the values the caller gave, not of the float16 copies.
    A few hundred kilobytes at most; the writer thread computes the statistics."""
    widest = max(units for units in job.structure["units"].values())
    sample = statistics.sample_sequences(job.batch, job.time * widest)
    rows = None if len(sample) == job.batch else sample
    copies = [convert.sampled_copy(source, rows) for source in job.sources]
    job.sources = []
    job.sample_lengths = np.asarray(job.lengths, dtype=np.int64)
    if rows is not None:
        job.sample_lengths = job.sample_lengths[rows]
    return copies


def check_step(step: Any) -> int:
    """`step` as an int, refused unless it is an integer (not a bool) within int64."""
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise TypeError(
            "step must be an int (the training step or epoch), got %r of type %s"
            % (step, type(step).__name__)
        )
    step = int(step)
    if not _INT64_MIN <= step <= _INT64_MAX:
        raise ValueError("step must fit in a signed 64-bit integer, got %d" % step)
    return step
