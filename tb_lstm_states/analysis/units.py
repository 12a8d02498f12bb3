"""Per-unit statistics of one state array: the `units` route.

Variance, saturation, activity, dead units, dominant periods, correlation with the
series, and an order of units that puts correlated units side by side. Statistics
stream over blocks of at most `_BLOCK_VALUES` values (no float64 copy of a whole
array); units are ordered by hierarchical clustering up to `MAX_CLUSTER_UNITS`
units, by the angle of their two principal loadings beyond.
"""

from typing import Any, Dict, List, Optional

import numpy as np

from tb_lstm_states.analysis import libraries, pca
from tb_lstm_states.storage import extras, gradients

# Saturation thresholds, as in `statistics.py`: sigmoid gates near 0 or 1, the cell
# beyond atanh(0.95) (its tanh is saturated), anything else (tanh outputs) near +-1.
_SIGMOID_GATES = frozenset({"input", "forget", "output", "reset", "update"})
_CELL_SATURATION = float(np.arctanh(0.95))
_DEAD_RANGE = 1e-3

# Units are clustered on at most this many positions (a fixed stride over them),
# which bounds the work on long probe batches without changing the picture.
_MAX_CLUSTER_POSITIONS = 20000
# ... and at most this many values (positions x units) in all.
_MAX_CLUSTER_VALUES = 1 << 21
_MAX_OPTIMAL_ORDERING_UNITS = 256
# Hierarchical clustering takes units^2 memory and more time: beyond this many units,
# units are ordered by the angle of their loadings on the two principal axes.
MAX_CLUSTER_UNITS = 1024
# Streaming statistics work on blocks of at most this many values.
_BLOCK_VALUES = 1 << 20


def valid_mask(lengths, time: int) -> np.ndarray:
    """`[batch, time]` bool, True where a timestep lies within its sequence's length."""
    return np.arange(time)[None, :] < np.asarray(lengths, dtype=np.int64).reshape(-1, 1)


def saturated(values: np.ndarray, name: str) -> np.ndarray:
    """Where `values` of array kind `name` are saturated (bool, same shape)."""
    if name in _SIGMOID_GATES:
        return (values < 0.05) | (values > 0.95)
    if name == "cell":
        return np.abs(values) > _CELL_SATURATION
    return np.abs(values) > 0.95


# A mean forget gate above this keeps its memory longer than float64 can tell apart.
_MAX_MEAN_FORGET = 1 - 1e-7


def memory_horizon(forget: np.ndarray, lengths) -> np.ndarray:
    """Each unit's memory time constant, in timesteps, from its forget gate.

    A cell that keeps a fraction f of itself each timestep forgets as f**t =
    exp(-t / tau), tau = -1 / ln f. With f the unit's mean forget gate over every
    valid position (all sequences, timesteps below their length), summed in float64
    (`horizon_of_mean` of `extras.valid_mean`).

    Args:
      forget: `[batch, time, units]` forget gate activations (float16 or float32).
      lengths: `[batch]` valid timesteps.

    Returns:
      `[units]` float64, NaN where there is no valid position, the mean is not
      above 0, or it is above `1 - 1e-7` (a memory longer than can be told).
    """
    return horizon_of_mean(extras.valid_mean(np.asarray(forget), lengths))


def horizon_of_mean(mean: np.ndarray) -> np.ndarray:
    """`memory_horizon` of each unit's mean forget gate f (`[units]`, any values, as a
    logdir stores them): -1 / ln f, NaN where f is not in `(0, 1 - 1e-7]`."""
    mean = np.asarray(mean, np.float64)
    horizon = np.full(mean.shape, np.nan)
    usable = (mean > 0) & (mean <= _MAX_MEAN_FORGET)  # NaN is neither
    with np.errstate(divide="ignore", invalid="ignore"):
        horizon[usable] = -1.0 / np.log(mean[usable])
    return horizon


def dominant_periods(array: np.ndarray, lengths) -> Dict[str, np.ndarray]:
    """The strongest periodicity of each unit, from its autocorrelation.

    The autocorrelation of each sequence (mean removed, over its valid length) is
    averaged across sequences; a unit's period is the lag of the highest local
    maximum of that average, and its strength the autocorrelation there.

    Args:
      array: `[batch, time, units]`.
      lengths: `[batch]` valid timesteps.

    Returns:
      `period` and `strength`, `[units]` float arrays, NaN where a unit shows no
      periodicity (no local maximum, or too few timesteps).
    """
    array = np.asarray(array)
    batch, time, units = array.shape
    max_lag = time // 2
    period = np.full(units, np.nan)
    strength = np.full(units, np.nan)
    lengths = [min(int(n), time) for n in lengths]
    counts = np.zeros(max_lag + 1)
    for length in lengths:
        if length >= 4:
            counts[: length // 2 + 1] += 1
    if max_lag < 3 or counts[2] == 0:
        return {"period": period, "strength": strength}
    last = int(np.nonzero(counts)[0].max())
    # Units a block at a time, so that every buffer (a block's summed autocorrelation,
    # its spectrum: 2 x time x block complex) stays within a few _BLOCK_VALUES.
    block = max(1, _BLOCK_VALUES // (2 * time))
    for u0 in range(0, units, block):
        u1 = min(u0 + block, units)
        total = np.zeros((max_lag + 1, u1 - u0))
        for b in range(batch):
            length = lengths[b]
            if length < 4:
                continue
            lags = length // 2 + 1
            x = np.asarray(array[b, :length, u0:u1], dtype=np.float64)
            x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
            x -= x.mean(axis=0)
            spectrum = np.fft.rfft(x, n=2 * length, axis=0)
            autocorrelation = np.fft.irfft(spectrum.real**2 + spectrum.imag**2, axis=0)[:lags]
            zero_lag = autocorrelation[0]
            usable = zero_lag > 1e-12
            total[:lags] += np.where(usable, autocorrelation / np.where(usable, zero_lag, 1.0), 0.0)
        mean = total[: last + 1] / counts[: last + 1, None]
        # Local maxima at lags 2..last-1 (lag 1 is adjacent smoothing, not a period).
        inner = mean[2:last]
        if not inner.size:
            continue
        peaks = (inner > mean[1 : last - 1]) & (inner >= mean[3 : last + 1]) & (inner > 0)
        scores = np.where(peaks, inner, -np.inf)
        best = np.argmax(scores, axis=0)
        best_scores = scores[best, np.arange(u1 - u0)]
        found = np.isfinite(best_scores)
        period[u0:u1][found] = best[found] + 2
        strength[u0:u1][found] = best_scores[found]
    return {"period": period, "strength": strength}


def cluster_order(values: np.ndarray) -> np.ndarray:
    """An ordering of units that puts units with correlated activity side by side.

    Average-linkage hierarchical clustering on 1 - correlation (optimal leaf order
    for up to 256 units).

    Args:
      values: `[positions, units]` finite values.

    Returns:
      A permutation of `range(units)`.
    """
    libraries.load()
    from scipy.cluster import hierarchy
    from scipy.spatial import distance

    units = values.shape[1]
    if units < 3:
        return np.arange(units)
    if values.shape[0] > _MAX_CLUSTER_POSITIONS:
        stride = -(-values.shape[0] // _MAX_CLUSTER_POSITIONS)
        values = values[::stride]
    if units > MAX_CLUSTER_UNITS:
        return _loading_order(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        centered = values - values.mean(axis=0)
        scale = np.sqrt((centered * centered).sum(axis=0))
        z = centered / np.where(scale > 0, scale, 1.0)
        correlation = np.clip(z.T @ z, -1.0, 1.0)
    dist = 1.0 - correlation
    np.fill_diagonal(dist, 0.0)
    dist = np.nan_to_num((dist + dist.T) / 2, nan=1.0)
    linkage = hierarchy.linkage(
        distance.squareform(dist, checks=False),
        method="average",
        optimal_ordering=units <= _MAX_OPTIMAL_ORDERING_UNITS,
    )
    return hierarchy.leaves_list(linkage)


def _loading_order(values: np.ndarray) -> np.ndarray:
    """Units ordered by the angle of their loadings on the two principal axes of the
    standardized values: correlated units lie at similar angles. O(positions x units)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        centered = values - values.mean(axis=0)
        scale = np.sqrt((centered * centered).sum(axis=0))
        z = np.nan_to_num(centered / np.where(scale > 0, scale, 1.0)).astype(np.float32)
    if z.shape[0] < 2:
        return np.arange(values.shape[1])
    basis, _, _ = pca.principal_axes(z, 2)
    angle = np.arctan2(basis[:, 1], basis[:, 0])
    return np.argsort(angle, kind="stable")


def unit_statistics(
    array: np.ndarray, name: str, lengths, series: Optional[Dict[str, np.ndarray]] = None
) -> Dict:
    """Per-unit statistics of one `[batch, time, units]` array over valid positions.

    Args:
      array: the array.
      name: its kind (`cell`, `hidden`, a gate name or a gradient kind), which sets
        what saturated means (for a gradient: nothing, NaN; dead: never changing).
      lengths: `[batch]` valid timesteps.
      series: optional named `[batch, time]` tracks to correlate each unit with.

    Returns:
      A dict: `variance`, `saturation` (fraction of positions saturated), `activity`
      (mean absolute value), `dead` (bool: the unit spans less than 1e-3),
      `period` and `period_strength` (see `dominant_periods`), each `[units]`;
      `correlation`, a dict series name -> `[units]` Pearson correlation; and
      `order`, a permutation of units from hierarchical clustering.
    """
    array = np.asarray(array)
    batch, time, units = array.shape
    lengths = [min(max(int(n), 0), time) for n in lengths]
    positions = sum(lengths)
    tracks = {key: np.asarray(track) for key, track in (series or {}).items()}
    moments = _Moments(units, list(tracks))
    saturated_count = np.zeros(units, np.int64)
    absolute = np.zeros(units)
    low = np.full(units, np.inf)
    high = np.full(units, -np.inf)
    # The positions clustering sees: every `stride`-th valid position.
    budget = max(1, min(_MAX_CLUSTER_POSITIONS, _MAX_CLUSTER_VALUES // max(units, 1)))
    stride = max(1, -(-positions // budget))
    sample, seen = [], 0
    rows = max(1, _BLOCK_VALUES // max(units, 1))
    with np.errstate(invalid="ignore", over="ignore"):
        for b in range(batch):
            for t0 in range(0, lengths[b], rows):
                t1 = min(t0 + rows, lengths[b])
                x = np.asarray(array[b, t0:t1], dtype=np.float64)
                moments.add(
                    x,
                    {key: np.asarray(track[b, t0:t1], np.float64) for key, track in tracks.items()},
                )
                saturated_count += saturated(x, name).sum(axis=0)
                absolute += np.abs(x).sum(axis=0)
                np.maximum(high, x.max(axis=0), out=high)
                np.minimum(low, x.min(axis=0), out=low)
                first = -seen % stride  # the first position of this block on the stride
                sample.append(x[first::stride].copy())  # (a view would keep the block alive)
                seen += t1 - t0
        result = {}
        if positions:
            result["variance"] = moments.m2 / positions
            result["saturation"] = saturated_count / positions
            result["activity"] = absolute / positions
            result["dead"] = (high - low) < _DEAD_RANGE
            if gradients.is_gradient(name):
                # A gradient has no range to saturate, and its scale is the loss's:
                # a unit is dead to it only where it never changes (no gradient reaches it).
                result["saturation"] = np.full(units, np.nan)
                result["dead"] = high == low
        else:
            for key in ("variance", "saturation", "activity"):
                result[key] = np.full(units, np.nan)
            result["dead"] = np.zeros(units, dtype=bool)
    periods = dominant_periods(array, lengths)
    result["period"] = periods["period"]
    result["period_strength"] = periods["strength"]
    result["correlation"] = {
        key: moments.correlation(key) if positions else np.full(units, np.nan) for key in tracks
    }
    if positions:
        finite = np.nan_to_num(np.concatenate(sample), nan=0.0, posinf=0.0, neginf=0.0)
        result["order"] = cluster_order(finite)
    else:
        result["order"] = np.arange(units)
    return result


class _Moments:
    """Means, centred second moments and co-moments with series, merged block by
    block (Chan et al.'s pairwise update): exact in float64 without a copy of it all."""

    def __init__(self, units, keys):
        self.count = 0
        self.mean = np.zeros(units)
        self.m2 = np.zeros(units)
        # key -> [mean, m2, co-moment with each unit]
        self.series: Dict[str, List[Any]] = {key: [0.0, 0.0, np.zeros(units)] for key in keys}

    def add(self, x, tracks):
        n_b = x.shape[0]
        if n_b == 0:
            return
        n_a = self.count
        n = n_a + n_b
        mean_b = x.mean(axis=0)
        centered = x - mean_b
        delta = mean_b - self.mean
        for key, y in tracks.items():
            state = self.series[key]
            y_mean = float(y.mean())
            y_centered = y - y_mean
            y_delta = y_mean - state[0]
            state[2] += centered.T @ y_centered + delta * y_delta * n_a * n_b / n
            state[1] += float(y_centered @ y_centered) + y_delta * y_delta * n_a * n_b / n
            state[0] += y_delta * n_b / n
        self.m2 += (centered * centered).sum(axis=0) + delta * delta * n_a * n_b / n
        self.mean += delta * n_b / n
        self.count = n

    def correlation(self, key):
        _, y_m2, comoment = self.series[key]
        with np.errstate(invalid="ignore", divide="ignore"):
            denominator = np.sqrt(self.m2 * y_m2)
            return np.where(
                denominator > 0, comoment / np.where(denominator > 0, denominator, 1), np.nan
            )
