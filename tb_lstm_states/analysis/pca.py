"""Principal component analysis of recorded states, by scikit-learn.

`project_pca` lays the points of every step out on the two principal axes of all
steps together; `reduced` gives t-SNE and UMAP at most `NEIGHBOUR_DIMENSIONS`
dimensions; `principal_axes` also orders many units by their loadings (`units.py`).
Non-finite values count as zero.
"""

from typing import Dict, List, Sequence, Tuple

import numpy as np

from tb_lstm_states.analysis import libraries

# t-SNE and UMAP run on at most this many principal components.
NEIGHBOUR_DIMENSIONS = 50


def finite(x: np.ndarray) -> np.ndarray:
    """`x` as float32, with NaN and infinities replaced by zero."""
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
        return {
            "coordinates": [np.zeros((n, 2), np.float32) for n in counts],
            "explained_variance": [0.0, 0.0],
        }
    # One float32 copy, centred in place: at 200,000 points the copies are the cost.
    stacked = np.concatenate(points, axis=0).astype(np.float32, copy=False)
    if stacked.base is not None or any(stacked is p for p in points):
        stacked = stacked.copy()
    if not np.isfinite(stacked).all():
        np.nan_to_num(stacked, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    stacked -= stacked.mean(axis=0, dtype=np.float64).astype(np.float32)
    basis, variances, total = principal_axes(stacked, 2)
    explained = [float(max(v, 0.0) / total) if total > 0 else 0.0 for v in variances]
    projected = stacked @ basis.astype(np.float32)
    coordinates = np.split(projected, np.cumsum(counts)[:-1])
    return {"coordinates": coordinates, "explained_variance": explained}


def principal_axes(centered: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray, float]:
    """The `k` leading principal axes of centred `[n, units]` float32 values.

    scikit-learn's `PCA` with `svd_solver="auto"`: an exact decomposition (of the
    values, or of their covariance when points far outnumber units) for small or
    tall inputs, a randomized truncated SVD, whose cost grows with n x units x k
    rather than units^3, for large ones; its random state is fixed, so a layout is
    the same on every request.

    Args:
      centered: the values, each column's mean already subtracted. scikit-learn
        may subtract its own estimate of the (zero) mean in place.
      k: how many axes.

    Returns:
      `(basis [units, k] float64, variances [k], total variance)`; each axis's sign
      fixed (largest loading positive) so layouts do not flip between requests.
      Axes beyond the data's rank are zero with variance 0.
    """
    n, units = centered.shape
    total = float(np.einsum("ij,ij->", centered, centered, dtype=np.float64)) / max(n - 1, 1)
    basis = np.zeros((units, k))
    variances = np.zeros(k)
    components = min(k, n, units)
    if n >= 2 and components > 0 and total > 0:
        libraries.load()
        from sklearn.decomposition import PCA  # imported on first use: TensorBoard starts faster

        model = PCA(n_components=components, svd_solver="auto", random_state=0, copy=False)
        model.fit(centered)
        basis[:, :components] = model.components_.T
        variances[:components] = model.explained_variance_
    signs = np.sign(basis[np.argmax(np.abs(basis), axis=0), np.arange(k)])
    basis = basis * np.where(signs == 0, 1.0, signs)
    return basis, variances, total


def reduced(points: Sequence[np.ndarray]) -> List[np.ndarray]:
    """Each step's points on the `NEIGHBOUR_DIMENSIONS` leading principal axes of all
    steps together (as they are, finite, when they have no more units than that)."""
    points = [finite(p) for p in points]
    units = points[0].shape[1] if points and points[0].ndim == 2 else 0
    if units <= NEIGHBOUR_DIMENSIONS or sum(len(p) for p in points) == 0:
        return points
    stacked = np.concatenate(points, axis=0)
    mean = stacked.mean(axis=0, dtype=np.float64).astype(np.float32)
    stacked -= mean
    basis, _, _ = principal_axes(stacked, NEIGHBOUR_DIMENSIONS)
    projected = stacked @ basis.astype(np.float32)
    return np.split(projected, np.cumsum([len(p) for p in points])[:-1])
