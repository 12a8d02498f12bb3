"""Derived views of recorded states: changes over time, per-unit statistics, projections.

Everything here takes numpy arrays as they are read from a logdir (`[batch, time, units]`,
float16 or float32, with `lengths` valid timesteps per sequence) and returns plain
numpy values; the plugin turns them into JSON. numpy and scipy only, except the
optional UMAP projection, which imports `umap` when first asked for.

Non-finite values (a diverged model writes NaN) never raise: statistics that depend
on them come out NaN, and projections treat them as zero.

Cost is bounded by construction, whatever the array: statistics stream over blocks
of at most `_BLOCK_VALUES` values (no float64 copy of a whole array); units are
ordered by hierarchical clustering up to `MAX_CLUSTER_UNITS` units, by the angle of
their two principal loadings beyond; PCA is exact up to `_EXACT_PCA_UNITS` units and
a randomized truncated SVD (scikit-learn) beyond; t-SNE and UMAP see at most
`NEIGHBOUR_DIMENSIONS` dimensions (a PCA of all steps first) and the plugin caps
their points.
"""

import warnings
from typing import Dict, List, Optional, Sequence

import numpy as np

# Saturation thresholds, as in `statistics.py`: sigmoid gates near 0 or 1, the cell
# beyond atanh(0.95) (its tanh is saturated), anything else (tanh outputs) near +-1.
_SIGMOID_GATES = frozenset({"input", "forget", "output", "reset", "update"})
_CELL_SATURATION = float(np.arctanh(0.95))
_DEAD_RANGE = 1e-3
# 1.4826 * MAD estimates the standard deviation of normally distributed values.
_MAD_SCALE = 1.4826
DEFAULT_THRESHOLD = 3.5
# The robust scale is at least this fraction of the median change.
_MIN_RELATIVE_SCALE = 0.01

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
_EXACT_PCA_UNITS = 256
# t-SNE and UMAP run on at most this many principal components.
NEIGHBOUR_DIMENSIONS = 50

METHODS = ("pca", "tsne", "umap")


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


def changes(sequence: np.ndarray, length: int, threshold: float = DEFAULT_THRESHOLD) -> Dict:
    """How a state moves from each timestep to the next, and where it jumps.

    Args:
      sequence: `[time, units]` states of one sequence.
      length: its valid timesteps; later ones are ignored.
      threshold: robust z-score above which a timestep is flagged.

    Returns:
      A dict of arrays of length `length`, NaN where undefined: `norm` (the norm of
      x_t - x_{t-1}; undefined at t = 0), `cosine` (the cosine between that change
      and the previous one; undefined at t < 2), `zscore` ((norm - median) / (1.4826
      * MAD) over the sequence), plus `anomalies` (timesteps whose z-score exceeds
      `threshold`), `median` and `mad`.
    """
    sequence = np.asarray(sequence)[: int(length)]
    n = sequence.shape[0]
    norm = np.full(n, np.nan)
    cosine = np.full(n, np.nan)
    zscore = np.full(n, np.nan)
    median = mad = float("nan")
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if n >= 2:
            # Row blocks in float64 (one row of overlap), never a float64 copy of it all.
            delta_norm = np.empty(n - 1)
            dots = np.empty(max(n - 2, 0))
            rows = max(2, _BLOCK_VALUES // max(sequence.shape[1] if sequence.ndim == 2 else 1, 1))
            previous = None  # the last change of the block before
            for t0 in range(0, n - 1, rows):
                x = np.asarray(sequence[t0:min(t0 + rows + 1, n)], dtype=np.float64)
                delta = np.diff(x, axis=0)
                delta_norm[t0:t0 + len(delta)] = np.linalg.norm(delta, axis=1)
                if previous is not None:
                    delta = np.concatenate([previous, delta])
                    start = t0 - 1
                else:
                    start = 0
                if len(delta) >= 2:
                    dots[start:start + len(delta) - 1] = np.sum(delta[1:] * delta[:-1], axis=1)
                previous = delta[-1:]
            norm[1:] = delta_norm
            if n >= 3:
                denominator = delta_norm[1:] * delta_norm[:-1]
                cosine[2:] = np.where(denominator > 0, dots / np.where(denominator > 0, denominator, 1), np.nan)
            finite = delta_norm[np.isfinite(delta_norm)]
            if finite.size:
                median = float(np.median(finite))
                mad = float(np.median(np.abs(finite - median)))
                # Near-constant steps give a MAD of rounding noise; the floor
                # keeps that noise from scoring as anomalies.
                scale = max(_MAD_SCALE * mad, _MIN_RELATIVE_SCALE * median)
                if scale > 0:
                    zscore[1:] = (delta_norm - median) / scale
                else:
                    # Constant zero steps: any step at all is infinitely unusual.
                    zscore[1:] = np.where(delta_norm > median, np.inf, 0.0)
    flagged = np.nonzero(np.nan_to_num(zscore, nan=-np.inf) > threshold)[0]
    zscore[np.isinf(zscore)] = np.nan
    return {
        "norm": norm,
        "cosine": cosine,
        "zscore": zscore,
        "anomalies": flagged,
        "median": median,
        "mad": mad,
    }


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
            counts[:length // 2 + 1] += 1
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
            autocorrelation = np.fft.irfft(spectrum.real ** 2 + spectrum.imag ** 2, axis=0)[:lags]
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


def _pearson_columns(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """Pearson correlation of each column of `matrix` [n, k] with `vector` [n]."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        m = matrix - matrix.mean(axis=0)
        v = vector - vector.mean()
        denominator = np.sqrt((m * m).sum(axis=0) * (v * v).sum())
        return np.where(denominator > 0, (m * v[:, None]).sum(axis=0) / np.where(denominator > 0, denominator, 1), np.nan)


def cluster_order(values: np.ndarray) -> np.ndarray:
    """An ordering of units that puts units with correlated activity side by side.

    Average-linkage hierarchical clustering on 1 - correlation (optimal leaf order
    for up to 256 units).

    Args:
      values: `[positions, units]` finite values.

    Returns:
      A permutation of `range(units)`.
    """
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
    basis, _, _ = _principal_axes(z, 2)
    angle = np.arctan2(basis[:, 1], basis[:, 0])
    return np.argsort(angle, kind="stable")


def unit_statistics(array: np.ndarray, name: str, lengths,
                    series: Optional[Dict[str, np.ndarray]] = None) -> Dict:
    """Per-unit statistics of one `[batch, time, units]` array over valid positions.

    Args:
      array: the array.
      name: its kind (`cell`, `hidden` or a gate name), which sets what saturated means.
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
                moments.add(x, {key: np.asarray(track[b, t0:t1], np.float64)
                                for key, track in tracks.items()})
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
        else:
            for key in ("variance", "saturation", "activity"):
                result[key] = np.full(units, np.nan)
            result["dead"] = np.zeros(units, dtype=bool)
    periods = dominant_periods(array, lengths)
    result["period"] = periods["period"]
    result["period_strength"] = periods["strength"]
    result["correlation"] = {key: moments.correlation(key) if positions else np.full(units, np.nan)
                             for key in tracks}
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
        self.series = {key: [0.0, 0.0, np.zeros(units)] for key in keys}  # mean, m2, co-moment

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
            return np.where(denominator > 0, comoment / np.where(denominator > 0, denominator, 1), np.nan)


# ---------------------------------------------------------------------------
# Aligned projections.


def _finite(x: np.ndarray) -> np.ndarray:
    return np.nan_to_num(np.asarray(x, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)


def project_pca(points: Sequence[np.ndarray]) -> Dict:
    """Projects every step's points on the 2 principal axes of all steps together.

    One basis for all steps means a point that does not change does not move.

    Args:
      points: one `[n_k, units]` array per step.

    Returns:
      `coordinates` (one `[n_k, 2]` float32 array per step) and
      `explained_variance` (the fraction of variance on each axis).
    """
    counts = [len(p) for p in points]
    units = points[0].shape[1] if points and np.ndim(points[0]) == 2 else 0
    if sum(counts) == 0 or units == 0:
        return {"coordinates": [np.zeros((n, 2), np.float32) for n in counts],
                "explained_variance": [0.0, 0.0]}
    # One float32 copy, centred in place: at 200,000 points the copies are the cost.
    stacked = np.concatenate(points, axis=0).astype(np.float32, copy=False)
    if stacked.base is not None or any(stacked is p for p in points):
        stacked = stacked.copy()
    if not np.isfinite(stacked).all():
        np.nan_to_num(stacked, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    stacked -= stacked.mean(axis=0, dtype=np.float64).astype(np.float32)
    basis, variances, total = _principal_axes(stacked, 2)
    explained = [float(max(v, 0.0) / total) if total > 0 else 0.0 for v in variances]
    projected = stacked @ basis.astype(np.float32)
    coordinates = np.split(projected, np.cumsum(counts)[:-1])
    return {"coordinates": coordinates, "explained_variance": explained}


def _principal_axes(centered: np.ndarray, k: int):
    """The `k` leading principal axes of centred `[n, units]` float32 values.

    Exact (the covariance's eigenvectors) up to `_EXACT_PCA_UNITS` units or points;
    beyond, scikit-learn's randomized truncated SVD, whose cost grows with
    n x units x k rather than units^3.

    Returns:
      `(basis [units, k] float64, variances [k], total variance)`; each axis's sign
      fixed (largest loading positive) so layouts do not flip between requests.
      Axes beyond the data's rank are zero with variance 0.
    """
    n, units = centered.shape
    denominator = max(n - 1, 1)
    total = float(np.einsum("ij,ij->", centered, centered, dtype=np.float64)) / denominator
    if units <= _EXACT_PCA_UNITS:
        covariance = (centered.T @ centered).astype(np.float64) / denominator
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        order = np.argsort(eigenvalues)[::-1][:k]
        basis, variances = eigenvectors[:, order], eigenvalues[order]
        total = float(np.clip(eigenvalues, 0, None).sum())
    elif n <= _EXACT_PCA_UNITS:
        _, singular, vt = np.linalg.svd(centered.astype(np.float64), full_matrices=False)
        basis, variances = vt[:k].T, singular[:k] ** 2 / denominator
    else:
        from sklearn.utils.extmath import randomized_svd

        _, singular, vt = randomized_svd(centered, n_components=k, random_state=0)
        basis, variances = vt.T.astype(np.float64), singular.astype(np.float64) ** 2 / denominator
    if basis.shape[1] < k:  # fewer units (or points) than axes: the rest are zero
        missing = k - basis.shape[1]
        basis = np.concatenate([basis, np.zeros((units, missing))], axis=1)
        variances = np.concatenate([variances, np.zeros(missing)])
    signs = np.sign(basis[np.argmax(np.abs(basis), axis=0), np.arange(k)])
    basis = basis * np.where(signs == 0, 1.0, signs)
    return basis, variances, total


def _reduced(points: Sequence[np.ndarray]) -> List[np.ndarray]:
    """Each step's points on the `NEIGHBOUR_DIMENSIONS` leading principal axes of all
    steps together (as they are, finite, when they have no more units than that)."""
    points = [_finite(p) for p in points]
    units = points[0].shape[1] if points and points[0].ndim == 2 else 0
    if units <= NEIGHBOUR_DIMENSIONS or sum(len(p) for p in points) == 0:
        return points
    stacked = np.concatenate(points, axis=0)
    mean = stacked.mean(axis=0, dtype=np.float64).astype(np.float32)
    stacked -= mean
    basis, _, _ = _principal_axes(stacked, NEIGHBOUR_DIMENSIONS)
    reduced = stacked @ basis.astype(np.float32)
    return np.split(reduced, np.cumsum([len(p) for p in points])[:-1])


def _neighbour_affinities(x: np.ndarray, perplexity: float):
    """The symmetric t-SNE affinities of `x`, over each point's nearest neighbours.

    Returns:
      `(rows, cols, p)`: the edges and their joint probabilities (summing to 1).
    """
    from scipy import sparse

    n = x.shape[0]
    k = int(min(n - 1, max(3 * perplexity, 3)))
    squared = (x * x).sum(axis=1)
    neighbours = np.empty((n, k), dtype=np.int64)
    distances = np.empty((n, k), dtype=np.float64)
    for start in range(0, n, 1024):
        stop = min(start + 1024, n)
        block = squared[start:stop, None] + squared[None, :] - 2.0 * (x[start:stop] @ x.T)
        block[np.arange(stop - start), np.arange(start, stop)] = np.inf
        nearest = np.argpartition(block, k - 1, axis=1)[:, :k]
        neighbours[start:stop] = nearest
        distances[start:stop] = np.maximum(np.take_along_axis(block, nearest, axis=1), 0.0)
    # Binary search, for all points at once, of the precision giving `perplexity`.
    distances -= distances.min(axis=1, keepdims=True)
    target = np.log(perplexity)
    beta = np.ones(n)
    low = np.zeros(n)
    high = np.full(n, np.inf)
    for _ in range(64):
        weights = np.exp(-distances * beta[:, None])
        total = np.maximum(weights.sum(axis=1), 1e-12)
        entropy = np.log(total) + beta * (distances * weights).sum(axis=1) / total
        too_flat = entropy > target
        low = np.where(too_flat, beta, low)
        high = np.where(too_flat, high, beta)
        beta = np.where(np.isinf(high), beta * 2.0, (low + high) / 2.0)
    conditional = weights / total[:, None]
    matrix = sparse.csr_matrix(
        (conditional.ravel(), (np.repeat(np.arange(n), k), neighbours.ravel())), shape=(n, n)
    )
    matrix = (matrix + matrix.T).tocoo()
    p = matrix.data / matrix.data.sum()
    return matrix.row.astype(np.int64), matrix.col.astype(np.int64), p


def _tsne_optimize(y, rows, cols, p, *, iterations, exaggeration_iterations,
                   exaggeration=12.0):
    """Gradient descent on the t-SNE objective, exact and dense (O(n^2) per step).

    At the few thousand points a step has, dense numpy beats tree codes and is
    deterministic. With W = 1 / (1 + |y_i - y_j|^2) and Z = sum W, the gradient is
    4 * sum_j M_ij (y_i - y_j) with M = exaggeration * P * W - W^2 / Z: two n x n
    buffers updated in place and one matrix product per step. Momentum and
    per-coordinate gains follow van der Maaten (2008).
    """
    n = y.shape[0]
    learning_rate = max(n / exaggeration / 4.0, 50.0)
    y = y.astype(np.float32)
    affinities = np.zeros((n, n), dtype=np.float32)
    np.add.at(affinities, (rows, cols), p.astype(np.float32))
    update = np.zeros_like(y)
    gains = np.ones_like(y)
    kernel = np.empty((n, n), dtype=np.float32)
    repulsion = np.empty((n, n), dtype=np.float32)
    diagonal = np.arange(n)
    ones = np.ones((n, 1), np.float32)
    for iteration in range(iterations):
        exaggerating = iteration < exaggeration_iterations
        momentum = 0.5 if exaggerating else 0.8
        factor = exaggeration if exaggerating else 1.0
        squared = (y * y).sum(axis=1)
        # Rounding can make the squared distance slightly negative, never below -1.
        np.matmul(y, y.T, out=kernel)
        kernel *= -2.0
        kernel += (squared + 1.0)[:, None]
        kernel += squared[None, :]
        np.reciprocal(kernel, out=kernel)
        kernel[diagonal, diagonal] = 0.0
        z = float(kernel.sum(dtype=np.float64))
        np.multiply(kernel, kernel, out=repulsion)
        repulsion *= -1.0 / z
        kernel *= affinities
        if factor != 1.0:
            kernel *= factor
        kernel += repulsion  # now M
        weighted = kernel @ np.concatenate([y, ones], axis=1)
        gradient = 4.0 * (weighted[:, 2:3] * y - weighted[:, :2])
        same_sign = np.sign(gradient) == np.sign(update)
        gains = np.maximum(np.where(same_sign, gains * 0.8, gains + 0.2), 0.01)
        update = momentum * update - learning_rate * gains * gradient
        y = y + update
    return y


def _map_previous(previous_keys, previous_coordinates, keys):
    """Initial coordinates for `keys` from the layout of the step before.

    A key without a previous position (a sequence that got longer) starts at the
    centroid of the previous layout.
    """
    lookup = {int(k): i for i, k in enumerate(previous_keys)}
    centroid = previous_coordinates.mean(axis=0) if len(previous_coordinates) else np.zeros(2)
    init = np.empty((len(keys), 2), dtype=np.float32)
    for i, key in enumerate(keys):
        j = lookup.get(int(key))
        init[i] = previous_coordinates[j] if j is not None else centroid
    return init


def _align_onto(y, keys, target, target_keys):
    """Moves `y` by the similarity transform (rotation or reflection, uniform scale,
    translation) that best fits its points onto the same keys in `target`."""
    lookup = {int(k): i for i, k in enumerate(target_keys)}
    pairs = [(i, lookup[int(k)]) for i, k in enumerate(keys) if int(k) in lookup]
    if len(pairs) < 3:
        return y
    mine, theirs = (np.array(index) for index in zip(*pairs))
    source = y[mine].astype(np.float64)
    goal = target[theirs].astype(np.float64)
    source_mean, goal_mean = source.mean(axis=0), goal.mean(axis=0)
    source_centered, goal_centered = source - source_mean, goal - goal_mean
    u, singular, vt = np.linalg.svd(source_centered.T @ goal_centered)
    norm = (source_centered ** 2).sum()
    if norm <= 0:
        return y
    scale = singular.sum() / norm
    return ((y - source_mean) @ (u @ vt) * scale + goal_mean).astype(np.float32)


# A step with fewer points than this cannot be embedded by t-SNE or UMAP in any
# meaningful way; it gets the PCA layout instead (reported as `method_used`).
MIN_NEIGHBOUR_POINTS = 5


def project_tsne(points: Sequence[np.ndarray], keys: Sequence[np.ndarray], *,
                 perplexity: float = 30.0,
                 first_iterations: int = 400, next_iterations: int = 50) -> Dict:
    """t-SNE of each step, each initialised from the previous step's layout.

    The first step starts from its PCA layout (scaled to a small spread, as t-SNE
    expects) with early exaggeration; each next step starts where the same
    (sequence, timestep) lay in the step before, without exaggeration, so
    consecutive layouts move smoothly instead of jumping.

    Args:
      points: one `[n_k, units]` array per step, in step order.
      keys: one `[n_k]` int array per step naming each point (equal keys are the
        same (sequence, timestep) in different steps).
      perplexity: the t-SNE perplexity, reduced for small steps.
      first_iterations, next_iterations: optimisation steps.

    Returns:
      `coordinates` (one `[n_k, 2]` float32 array per step) and `method_used`
      (`"tsne"`, or `"pca"` when a step has fewer than `MIN_NEIGHBOUR_POINTS`).
    """
    if any(len(p) < MIN_NEIGHBOUR_POINTS for p in points):
        return dict(project_pca(points), method_used="pca")
    pca = project_pca(points)["coordinates"]
    points = _reduced(points)
    coordinates = []
    previous = previous_keys = None
    for index, (x, step_keys) in enumerate(zip(points, keys)):
        x = _finite(x).astype(np.float64)
        n = len(x)
        rows, cols, p = _neighbour_affinities(x, min(perplexity, (n - 1) / 3.0))
        if previous is None:
            init = pca[index].astype(np.float64)
            spread = init[:, 0].std() if n > 1 else 0.0
            init = init / spread * 1e-4 if spread > 0 else np.random.RandomState(0).normal(0, 1e-4, (n, 2))
            y = _tsne_optimize(init, rows, cols, p, iterations=first_iterations,
                               exaggeration_iterations=min(200, first_iterations // 2))
        else:
            init = _map_previous(previous_keys, previous, step_keys).astype(np.float64)
            y = _tsne_optimize(init, rows, cols, p, iterations=next_iterations,
                               exaggeration_iterations=0)
        y = y.astype(np.float32)
        coordinates.append(y)
        previous, previous_keys = y, step_keys
    return {"coordinates": coordinates, "method_used": "tsne"}


def umap_available() -> bool:
    """Whether the optional `umap-learn` package can be imported."""
    import importlib.util

    return importlib.util.find_spec("umap") is not None


def project_umap(points: Sequence[np.ndarray], keys: Sequence[np.ndarray], *,
                 seed: int = 0, next_epochs: int = 100) -> Dict:
    """UMAP of each step, each initialised from the previous step's layout.

    Args:
      points: one `[n_k, units]` array per step, in step order.
      keys: one `[n_k]` int array per step naming each point across steps.
      seed: the random state of every fit (deterministic, single-threaded).
      next_epochs: optimisation epochs of the steps after the first.

    Returns:
      `coordinates` and `method_used`, as `project_tsne`.

    Raises:
      ImportError: when `umap-learn` is not installed.
    """
    if any(len(p) < MIN_NEIGHBOUR_POINTS for p in points):
        return dict(project_pca(points), method_used="pca")
    import umap  # optional; slow to import, so only when asked for

    points = _reduced(points)

    coordinates = []
    previous = previous_keys = None
    for x, step_keys in zip(points, keys):
        x = _finite(x)
        n = len(x)
        options = dict(n_components=2, n_neighbors=int(min(15, n - 1)), random_state=seed,
                       n_jobs=1)
        if previous is None:
            options["init"] = "spectral" if n > 16 else "random"
        else:
            options["init"] = _map_previous(previous_keys, previous, step_keys)
            options["n_epochs"] = next_epochs
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y = np.nan_to_num(umap.UMAP(**options).fit_transform(x).astype(np.float32))
        if previous is not None:
            # UMAP rescales its initial layout into a box of its own; bring the
            # result back into the previous step's frame.
            y = _align_onto(y, step_keys, previous, previous_keys)
        coordinates.append(y)
        previous, previous_keys = y, step_keys
    return {"coordinates": coordinates, "method_used": "umap"}


def project(method: str, points: List[np.ndarray], keys: List[np.ndarray]) -> Dict:
    """Dispatches to `project_pca`, `project_tsne` or `project_umap`."""
    if method == "pca":
        return dict(project_pca(points), method_used="pca")
    if method == "tsne":
        return project_tsne(points, keys)
    if method == "umap":
        return project_umap(points, keys)
    raise ValueError("method must be one of %s, got %r" % (METHODS, method))
