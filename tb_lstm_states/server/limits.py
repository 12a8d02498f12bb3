"""The most one request of the LSTM States tab may read or compute on.

Every cap here is checked before anything is read: a request beyond one answers 400
naming what to ask for instead (a sequence, a window, bins, fewer steps).
"""

from typing import Dict, Tuple

from tensorboard import errors

PROJECTION_CAPS: Dict[str, Tuple[int, int]] = {
    # method: (points per request, points per step)
    "pca": (250_000, 250_000),
    "tsne": (25_000, 3_000),
    "umap": (25_000, 10_000),
}
# The most values (points x units) one projection request lays out: its input is
# at most this many float32 values (128 MiB).
MAX_PROJECTION_VALUES = 1 << 25
# The most values a route reads or computes on at once: a whole array (`states`
# without `sequence`, `units`), one sequence (`changes`), a window at full
# resolution, or the series of a step. Larger asks answer 400 naming what to ask
# for instead (a sequence, a window, bins).
MAX_READ_VALUES = 1 << 25

# A version 1 statistics table has at most format.MAX_STATISTICS_ROWS rows and this
# many columns (it wrote format.STATISTICS_COLUMNS).
MAX_STATISTICS_COLUMNS = 16


def check_values(values: int, what: str, instead: str) -> None:
    """Refuses a request that would read or compute on more than `MAX_READ_VALUES` values.

    Args:
      values: how many values the request would take.
      what: names what the request asks for, for the message.
      instead: what to ask for instead, for the message.

    Raises:
      errors.InvalidArgumentError: (400) beyond the cap.
    """
    if values > MAX_READ_VALUES:
        raise errors.InvalidArgumentError(
            "%s would take %d values, more than the %d one request may read: %s"
            % (what, values, MAX_READ_VALUES, instead)
        )
