"""What a unit means: its significance against a series (`units?...&series=`) and the
units of another array it corresponds to (`match`).

The analyses are in `analysis/significance.py`; here the parameters are checked
against the step (an unknown series answers 404 naming the available ones; probes
that differ answer 400 naming the difference) and the answers encoded.
"""

import dataclasses
from typing import Any, Dict, Optional

from tensorboard import errors

from tb_lstm_states.analysis import significance
from tb_lstm_states.server import limits, records
from tb_lstm_states.server.params import Args, encode, floats


def parse_significance(args: Args):
    """`(series, max_lag)` of the `units` route: `(None, None)` without `series`."""
    series = args.optional_string("series")
    max_lag = args.integer("max_lag", minimum=0, required=False)
    if series is None:
        if max_lag is not None:
            raise errors.InvalidArgumentError("parameter 'max_lag' needs 'series'")
        return None, None
    if max_lag is None:
        max_lag = significance.DEFAULT_MAX_LAG
    if max_lag > significance.MAX_MAX_LAG:
        raise errors.InvalidArgumentError(
            "parameter 'max_lag' must be at most %d, got %d" % (significance.MAX_MAX_LAG, max_lag)
        )
    return series, max_lag


def check_significance(record: records.Record, series: Optional[str]) -> None:
    """Answers 404 naming the available series when the step lacks `series`."""
    if series is None:
        return
    available = list(record.header["series"])
    if series not in available:
        raise errors.NotFoundError(
            "run %r tag %r step %d has no series %r; it has %s"
            % (
                record.run,
                record.tag,
                record.step,
                series[:100],
                ", ".join(repr(name) for name in available) or "none",
            )
        )


def significance_of(record: records.Record, array, series: str, max_lag: int) -> Dict[str, Any]:
    """The `significance` member of the `units` answer."""
    track = records.series_arrays(record)[series]
    result = significance.lagged_significance(array, track, record.header["lengths"], max_lag)
    return {
        "series": series,
        "max_lag": max_lag,
        "lag": [None if v != v else int(v) for v in result["lag"].tolist()],
        "r": floats(result["r"]),
        "p": floats(result["p"]),
        "q": floats(result["q"]),
    }


@dataclasses.dataclass(frozen=True)
class MatchQuery:
    run: str
    tag: str
    step: int
    layer: int
    kind: str
    other_run: str
    other_tag: str
    other_step: int
    other_layer: int
    other_kind: str


def parse_match(args: Args) -> MatchQuery:
    """The parameters of the `match` route; `other_layer` and `other_kind` default to
    `layer` and `kind`."""
    run, tag = args.string("run"), args.string("tag")
    step = args.integer("step")
    layer = args.integer("layer", minimum=0)
    kind = args.string("kind")
    other_run, other_tag = args.string("other_run"), args.string("other_tag")
    other_step = args.integer("other_step")
    other_layer = args.integer("other_layer", minimum=0, required=False)
    other_kind = args.optional_string("other_kind")
    return MatchQuery(
        run,
        tag,
        step,
        layer,
        kind,
        other_run,
        other_tag,
        other_step,
        layer if other_layer is None else other_layer,
        kind if other_kind is None else other_kind,
    )


def check_match(one, other, query: MatchQuery) -> None:
    """Refuses two probes that differ (400 naming the difference) or arrays beyond the
    caps. `one` and `other` are `(record, handle)`."""
    (record, handle), (other_record, other_handle) = one, other
    mine, theirs = record.header, other_record.header
    differences = []
    if mine["batch"] != theirs["batch"]:
        differences.append("batch %d vs %d" % (mine["batch"], theirs["batch"]))
    elif list(mine["lengths"]) != list(theirs["lengths"]):
        differences.append("the sequence lengths")
    if record.time_of(handle) != other_record.time_of(other_handle):
        differences.append(
            "time %d vs %d" % (record.time_of(handle), other_record.time_of(other_handle))
        )
    if differences:
        raise errors.InvalidArgumentError(
            "the two sides were recorded on different probes: they differ in %s; "
            "matching needs the same probe batch" % ", ".join(differences)
        )
    for r, h, side in ((record, handle, "this side"), (other_record, other_handle, "other side")):
        limits.check_values(
            mine["batch"] * r.time_of(h) * r.units_of(h),
            "matching units (%s)" % side,
            "this array is larger than the tab analyses",
        )


def match(one, other) -> bytes:
    """The encoded JSON of the `match` route."""
    (record, handle), (other_record, other_handle) = one, other
    result = significance.match_units(
        record.read(handle), other_record.read(other_handle), record.header["lengths"]
    )
    result.update(
        step=record.step,
        other_step=other_record.step,
        other_units=int(other_record.units_of(other_handle)),
    )
    return encode(result)
