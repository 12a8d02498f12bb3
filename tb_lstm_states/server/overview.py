"""The `overview` route's tables: the statistics of every state array at every step.

Version 2 steps carry their statistics in their index (`format.STATISTICS_COLUMNS`);
version 1 runs logged them as a tensor of their own, under the tag's
`metadata.STATISTICS_SUFFIX`, whose plugin data names the rows and columns. Either
way the route answers `{rows, columns, steps, wall_times, values, kinds,
gradient_reach}`, `values` being `[steps, rows, columns]` with `null` where a step
has no table of that layout or lacks that row, `kinds` the array kinds each step
holds, and `gradient_reach` each step's (`storage/gradients.py`), from its index.
"""

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from tensorboard import errors
from tensorboard.util import tb_logging

from tb_lstm_states import metadata
from tb_lstm_states import states as states_lib
from tb_lstm_states.server import limits
from tb_lstm_states.server.params import floats
from tb_lstm_states.storage import format, gradients

logger = tb_logging.get_logger()

# Six significant digits: plenty for a plot, and a third of the JSON.
SIGNIFICANT_DIGITS = 6


def v2_tables(
    parse_index: Callable[[Any], dict], run: str, tag: str, data: Sequence[Any]
) -> Dict[str, Any]:
    """The overview of version 2 steps, from their indexes.

    Args:
      parse_index: returns the parsed index of a listed step (a datum).
      run, tag: name the steps in warnings.
      data: the listed steps, in step order.

    Returns:
      The route's answer. The rows are those of every step with a readable index,
      in the order they first appear (the gradients' rows follow the states', as
      steps logged with a loss store them); a step's values are NaN in the rows it
      lacks, and everywhere when it has no statistics or an unreadable index, whose
      `kinds` and `gradient_reach` are null.
    """
    # Every (layer, kind) a valid index lists is within the caps (`parse_index`), so
    # the rows of every step together are at most `format.MAX_STATISTICS_ROWS`.
    rows: Dict[Tuple[int, str], int] = {}
    tables: List[Optional[Tuple[List[int], np.ndarray]]] = []
    kinds: List[Optional[List[str]]] = []
    reach: List[Optional[int]] = []
    for datum in data:
        try:
            index = parse_index(datum)
        except (format.FormatError, ValueError) as e:
            logger.warning("lstm_states: run %r tag %r step %d: %s", run, tag, datum.step, e)
            tables.append(None)
            kinds.append(None)
            reach.append(None)
            continue
        step_rows = format.statistics_rows(index)
        present = {name for _, name in step_rows}
        kinds.append([k for k in gradients.stored_kinds(index["kind"]) if k in present])
        reach.append(index.get("gradient_reach"))
        positions = [rows.setdefault(row, len(rows)) for row in step_rows]
        statistics = index["statistics"]
        table = None
        if statistics is not None:
            try:  # a JSON integer can be too large for a float
                table = (
                    positions,
                    np.array(
                        [[np.nan if v is None else v for v in row] for row in statistics],
                        dtype=np.float64,
                    ),
                )
            except (OverflowError, ValueError, TypeError):
                table = None
        tables.append(table)
    values = np.full((len(tables), len(rows), len(format.STATISTICS_COLUMNS)), np.nan)
    for step, table in enumerate(tables):
        if table is not None:
            values[step, table[0]] = table[1]
    return {
        "rows": [list(row) for row in rows],
        "columns": list(format.STATISTICS_COLUMNS),
        "steps": [d.step for d in data],
        "wall_times": [d.wall_time for d in data],
        "values": floats(values, significant=SIGNIFICANT_DIGITS),
        "kinds": kinds,
        "gradient_reach": reach,
    }


def v1_layout(content: dict, run: str, tag: str) -> Tuple[list, list]:
    """The rows and columns of a version 1 statistics tensor, from its plugin content.

    Raises:
      errors.NotFoundError: (404) if they are malformed or beyond the caps.
    """
    rows, columns = content.get("rows"), content.get("columns")
    if (
        content.get("role") != metadata.ROLE_STATISTICS
        or not isinstance(rows, list)
        or not isinstance(columns, list)
        or len(rows) > format.MAX_STATISTICS_ROWS
        or len(columns) > limits.MAX_STATISTICS_COLUMNS
        or not all(isinstance(c, str) and len(c) <= 64 for c in columns)
        or not all(
            isinstance(r, list)
            and len(r) == 2
            and isinstance(r[0], int)
            and isinstance(r[1], str)
            and len(r[1]) <= 64
            for r in rows
        )
    ):
        raise errors.NotFoundError(
            "run %r tag %r statistics are malformed (at most %d rows [layer, kind] and %d "
            "named columns)" % (run, tag, format.MAX_STATISTICS_ROWS, limits.MAX_STATISTICS_COLUMNS)
        )
    return rows, columns


def v1_tables(rows: list, columns: list, data: Sequence[Any]) -> Dict[str, Any]:
    """The overview of version 1 steps, from their statistics tensors (`datum.numpy`).

    A table of another size than `rows` x `columns`, or not numeric, is NaN.
    """
    shape = (len(rows), len(columns))
    values = []
    for datum in data:
        table = np.asarray(datum.numpy)
        if table.shape != shape or not np.issubdtype(table.dtype, np.number):
            table = np.full(shape, np.nan)  # a table of another size is never built
        values.append(table)
    stacked = np.stack(values) if values else np.zeros((0, *shape))
    # Version 1 records hold the states' kinds only: those its rows name (known
    # kinds only: the rows come from the logdir).
    known = {k for network in states_lib.KINDS for k in states_lib.array_kinds(network)}
    kinds = list(dict.fromkeys(kind for _, kind in rows if kind in known))
    return {
        "rows": rows,
        "columns": columns,
        "steps": [d.step for d in data],
        "wall_times": [d.wall_time for d in data],
        "values": floats(stacked, significant=SIGNIFICANT_DIGITS),
        "kinds": [kinds] * len(data),
        "gradient_reach": [None] * len(data),
    }
