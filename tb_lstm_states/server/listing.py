"""Which (run, tag, step)s a logdir holds, as TensorBoard's data provider lists them.

Version 2 steps are index summaries: tensors of plugin `lstm_states`, role `index`,
one `DT_STRING` scalar per step holding the step's JSON index. Version 1 steps are
blob sequences, role `states` (their statistics tensors, role `statistics`, under
`tag + "/_statistics"`, are not steps). A tag is one or the other in a run; a tag
name may be version 1 in one run and version 2 in another.

A step logged twice keeps the later one: the larger wall time, or of equal wall
times the later in the provider's list. (The Rust data server drops the earlier
itself; the Python loader keeps both.)
"""

import dataclasses
from typing import Any, Dict, Optional, Tuple

import numpy as np

from tb_lstm_states import metadata
from tb_lstm_states import states as states_lib
from tb_lstm_states.storage import format, gradients

V1 = 1
V2 = 2


@dataclasses.dataclass
class TagIndex:
    """The steps of one (run, tag), and the layout its plugin data gives.

    Attributes:
      version: `V1` (blob sequences) or `V2` (index tensors).
      structure: the tag's `runs` entry without its step counts.
      description: the summary description (Markdown) as logged.
      data: the provider's data, one per step (the later of a step logged twice),
        ascending: `BlobSequenceDatum` (V1) or `TensorDatum` (V2).
      by_step: step -> datum.
      fetched: `time.monotonic()` when listed.
      signature: for V2, `(max_step, max_wall_time)` of the listing: while it is
        unchanged the steps are too, and are not read again.
    """

    version: int
    structure: Dict[str, Any]
    description: str
    data: list
    by_step: Dict[int, Any]
    fetched: float
    signature: Optional[Tuple] = None


def make_index(version, structure, description, data, fetched, signature=None) -> TagIndex:
    data = latest_per_step(data)
    return TagIndex(
        version, structure, description, data, {d.step: d for d in data}, fetched, signature
    )


def latest_per_step(data) -> list:
    """One datum per step, the later of repeats, in ascending step order."""
    by_step: Dict[int, Any] = {}
    for datum in data:
        old = by_step.get(datum.step)
        if old is None or datum.wall_time >= old.wall_time:
            by_step[datum.step] = datum
    return [by_step[step] for step in sorted(by_step)]


def signature(series) -> Tuple:
    """What changes in a tensor listing when a step is added or logged again."""
    return (series.max_step, series.max_wall_time)


def structure(content: dict) -> Optional[Dict[str, Any]]:
    """The `runs` entry of a states tag from its plugin content.

    Returns:
      `{kind, layers, directions, batch, time, units, kinds, gradient_kinds}`, or
      None when the content is not a states tag (a version 1 statistics tensor,
      another role). `gradient_kinds` are those a step may hold besides `kinds`
      when logged with a loss (which steps do: the overview's `kinds`).

    Raises:
      ValueError: for a states tag with an unknown kind, or a layout field that is
        not an integer within the caps of `format` (`MAX_LAYERS`, `MAX_BATCH`,
        `MAX_UNITS`): the browser is never handed a size no record can have.
    """
    role = content.get("role")
    if role not in (metadata.ROLE_STATES, metadata.ROLE_INDEX):
        return None
    kind = content.get("kind")
    if not isinstance(kind, str) or kind not in states_lib.KINDS:
        raise ValueError("unknown kind %r" % (str(kind)[:40],))
    kinds = list(states_lib.array_kinds(kind))
    fields = {}
    for name, key, low, high in (
        ("layers", "num_layers", 1, format.MAX_LAYERS),
        ("directions", "num_directions", 1, 2),
        ("batch", "batch", 1, format.MAX_BATCH),
        ("time", "time", 1, format.MAX_DIM),
    ):
        value = content.get(key)
        if not _is_int(value, low, high):
            raise ValueError(
                "plugin data field %r must be an integer in [%d, %d], got %s"
                % (key, low, high, _short(value))
            )
        fields[name] = value
    units = content.get("units")
    if units is None:
        units = {}
    if not (
        isinstance(units, dict)
        and all(k in kinds and _is_int(v, 1, format.MAX_UNITS) for k, v in units.items())
    ):
        raise ValueError(
            "plugin data field 'units' must map array kinds to integers in "
            "[1, %d], got %s" % (format.MAX_UNITS, _short(units))
        )
    return dict(
        kind=kind, **fields, units=units, kinds=kinds, gradient_kinds=list(gradients.kinds(kind))
    )


def _is_int(value, low, high):
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _short(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."


def role(series) -> Optional[str]:
    """The role of a listed time series, or None if its plugin data is unreadable."""
    try:
        return metadata.parse_plugin_content(series.plugin_content).get("role")
    except ValueError:
        return None


def index_bytes(datum) -> bytes:
    """The JSON index bytes of a version 2 step's tensor datum.

    Raises:
      format.FormatError: if the tensor is not a string scalar.
    """
    value = np.asarray(datum.numpy)
    item = value.item() if value.shape == () else None
    if isinstance(item, str):
        item = item.encode("utf-8", "surrogatepass")
    if not isinstance(item, bytes):
        raise format.FormatError(
            "malformed lstm_states index: a %s tensor of shape %s, not a string scalar"
            % (value.dtype, list(value.shape))
        )
    return item


def step_counts(index: TagIndex) -> Dict[str, Any]:
    """The step fields of a tag's `runs` entry."""
    steps = [d.step for d in index.data]
    return {
        "steps": len(steps),
        "first_step": steps[0] if steps else None,
        "last_step": steps[-1] if steps else None,
    }
