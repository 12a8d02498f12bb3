"""The `overview` route's tables: the statistics of every state array at every step.

Version 2 steps carry their statistics in their index (`format.STATISTICS_COLUMNS`);
version 1 runs logged them as a tensor of their own, under the tag's
`metadata.STATISTICS_SUFFIX`, whose plugin data names the rows and columns. Either
way the route answers `{rows, columns, steps, wall_times, values}`, `values` being
`[steps, rows, columns]` with `null` where a step has no table of that layout.
"""

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from tensorboard import errors
from tensorboard.util import tb_logging

from tb_lstm_states import metadata
from tb_lstm_states.server import limits
from tb_lstm_states.server.params import floats
from tb_lstm_states.storage import format

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
      The route's answer. The rows are those of the first step with a readable
      index; a step with other rows, no statistics or an unreadable index is NaN.
    """
    rows: Optional[List[list]] = None
    tables: List[Optional[np.ndarray]] = []
    for datum in data:
        try:
            index = parse_index(datum)
        except (format.FormatError, ValueError) as e:
            logger.warning("lstm_states: run %r tag %r step %d: %s", run, tag, datum.step, e)
            tables.append(None)
            continue
        step_rows = [list(row) for row in format.statistics_rows(index)]
        if rows is None:
            rows = step_rows
        statistics = index["statistics"]
        table = None
        if step_rows == rows and statistics is not None:
            try:  # a JSON integer can be too large for a float
                table = np.array(
                    [[np.nan if v is None else v for v in row] for row in statistics],
                    dtype=np.float64,
                )
            except (OverflowError, ValueError, TypeError):
                table = None
        tables.append(table)
    rows = rows or []
    shape = (len(rows), len(format.STATISTICS_COLUMNS))
    if tables:
        values = np.stack([t if t is not None else np.full(shape, np.nan) for t in tables])
    else:
        values = np.zeros((0, *shape))
    return {
        "rows": rows,
        "columns": list(format.STATISTICS_COLUMNS),
        "steps": [d.step for d in data],
        "wall_times": [d.wall_time for d in data],
        "values": floats(values, significant=SIGNIFICANT_DIGITS),
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
    return {
        "rows": rows,
        "columns": columns,
        "steps": [d.step for d in data],
        "wall_times": [d.wall_time for d in data],
        "values": floats(stacked, significant=SIGNIFICANT_DIGITS),
    }
