"""The `search` route's parameters, checks and answer: where else a window of states
occurs (`analysis/search.py` finds the windows).

Everything is checked before any array is read: the query window must lie within its
sequence's valid length, the units within the array, and the steps searched must
read at most `limits.MAX_READ_VALUES` values together (else 400 naming how many
steps fit).
"""

import dataclasses
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
from tensorboard import errors

from tb_lstm_states.analysis import search
from tb_lstm_states.server import limits, records
from tb_lstm_states.server.params import Args, encode

DEFAULT_TOP = 20
MAX_TOP = 1000


@dataclasses.dataclass(frozen=True)
class SearchQuery:
    """A `search` request; `units` and `steps` are None for all of them."""

    run: str
    tag: str
    step: int
    layer: int
    kind: str
    sequence: int
    start: int
    stop: int
    units: Optional[Tuple[int, ...]]
    steps: Optional[Tuple[int, ...]]
    top: int


def parse_search(args: Args) -> SearchQuery:
    """The parameters of the `search` route (400 naming a bad one)."""
    run, tag = args.string("run"), args.string("tag")
    step = args.integer("step")
    layer = args.integer("layer", minimum=0)
    kind = args.string("kind")
    sequence = args.integer("sequence", minimum=0)
    start = args.integer("start", minimum=0)
    stop = args.integer("stop", minimum=0)
    units = args.integer_list("units", minimum=0, required=False)
    steps = args.integer_list("steps", required=False)
    top = args.integer("top", minimum=1, required=False)
    if start >= stop:
        raise errors.InvalidArgumentError(
            "parameter 'start' (%d) must be less than 'stop' (%d)" % (start, stop)
        )
    if top is None:
        top = DEFAULT_TOP
    if top > MAX_TOP:
        raise errors.InvalidArgumentError(
            "parameter 'top' must be at most %d, got %d" % (MAX_TOP, top)
        )
    kept = (top + 1) * (2 * (stop - start) - 1)
    if kept > search.MAX_KEPT:
        raise errors.InvalidArgumentError(
            "a window of %d timesteps and top=%d keep (top + 1) x (2 x window - 1) = %d "
            "candidate windows, more than the %d one request may: ask for fewer matches "
            "(top=) or a shorter window" % (stop - start, top, kept, search.MAX_KEPT)
        )
    if units is not None and len(set(units)) != len(units):
        ordered = np.sort(np.asarray(units))
        twice = int(ordered[1:][ordered[1:] == ordered[:-1]][0])
        raise errors.InvalidArgumentError("parameter 'units' lists unit %d more than once" % twice)
    return SearchQuery(
        run,
        tag,
        step,
        layer,
        kind,
        sequence,
        start,
        stop,
        None if units is None else tuple(units),
        None if steps is None else tuple(sorted(set(steps))),
        top,
    )


def check_query(record: records.Record, handle: Any, query: SearchQuery) -> None:
    """Refuses a query window outside its sequence (400) or an unknown sequence or
    unit (404)."""
    header = record.header
    records.check_sequence(header, query.sequence, record.run, record.tag)
    length = min(int(header["lengths"][query.sequence]), record.time_of(handle))
    if query.stop > length:
        raise errors.InvalidArgumentError(
            "parameter 'stop' is %d, past the end of sequence %d: it has %d valid "
            "timesteps (stop is exclusive, at most %d)"
            % (query.stop, query.sequence, length, length)
        )
    _check_units(record, handle, query)


def _check_units(record: records.Record, handle: Any, query: SearchQuery) -> None:
    units = record.units_of(handle)
    if query.units is not None and max(query.units) >= units:
        raise errors.NotFoundError(
            "run %r tag %r step %d layer %d %s has units 0 to %d; no unit %d"
            % (
                record.run,
                record.tag,
                record.step,
                query.layer,
                query.kind,
                units - 1,
                max(query.units),
            )
        )


def check_searched(found: Sequence[Tuple[records.Record, Any]], query: SearchQuery) -> None:
    """Refuses steps that lack a unit of the query (404) or that would read more than
    `limits.MAX_READ_VALUES` values together (400 naming how many fit)."""
    sizes = []
    for record, handle in found:
        _check_units(record, handle, query)
        sizes.append(record.header["batch"] * record.time_of(handle) * record.units_of(handle))
    total = int(sum(sizes))
    if total > limits.MAX_READ_VALUES:
        fit = int(np.searchsorted(np.cumsum(sizes), limits.MAX_READ_VALUES, side="right"))
        limits.check_values(
            total,
            "searching %d steps of layer %d %s" % (len(found), query.layer, query.kind),
            "ask for fewer steps with steps= (the first %d of these fit), or a step at a "
            "time" % fit,
        )


def search_windows(
    query_side: Tuple[records.Record, Any], found: List[Tuple[records.Record, Any]], query
) -> bytes:
    """The encoded JSON of the `search` route: the nearest windows in the arrays
    `found` (one per step searched, read one at a time) to the query window."""
    record, handle = query_side
    window = record.read(handle, query.sequence, query.start, query.stop)
    units = list(query.units) if query.units is not None else list(range(record.units_of(handle)))
    window = np.asarray(window)[:, units]
    length = query.stop - query.start
    candidates = search.Candidates(length, query.top, (record.step, query.sequence, query.start))
    for other, other_handle in found:
        values = other.read(other_handle)
        if query.units is not None:
            values = values[:, :, units]
        distances = search.window_distances(values, other.header["lengths"], window)
        candidates.add(other.step, distances)
    matches = [
        {
            "step": m["key"],
            "sequence": m["sequence"],
            "start": m["start"],
            "distance": m["distance"],
        }
        for m in candidates.matches()
    ]
    return encode(
        {
            "matches": matches,
            "step": record.step,
            "sequence": query.sequence,
            "start": query.start,
            "stop": query.stop,
            "units": None if query.units is None else units,
            "steps": [other.step for other, _ in found],
        }
    )
