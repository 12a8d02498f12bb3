"""t-SNE layouts of every step, each continued from the layout of the step before.

This is the project's own t-SNE (exact gradients, dense numpy), not
`sklearn.manifold.TSNE`, because each step after the first must be a warm start:
a few iterations (`next_iterations`, 50) from where the same points lay in the step
before, without early exaggeration, so that consecutive layouts move smoothly.
scikit-learn cannot do that: its `TSNE` runs at least 250 iterations, always
begins with its 250-iteration early exaggeration phase and keeps no state between
fits. The first step is laid out by the same optimiser on the same affinities, so
that the steps continued from it optimise the same objective.
"""

from typing import Dict, Sequence

import numpy as np

from tb_lstm_states.analysis import libraries, pca, warm


def project_tsne(
    points: Sequence[np.ndarray],
    keys: Sequence[np.ndarray],
    *,
    perplexity: float = 30.0,
    first_iterations: int = 400,
    next_iterations: int = 50,
) -> Dict:
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
      (`"tsne"`, or `"pca"` when a step has fewer than `warm.MIN_NEIGHBOUR_POINTS`).
    """
    if any(len(p) < warm.MIN_NEIGHBOUR_POINTS for p in points):
        return dict(pca.project_pca(points), method_used="pca")
    first_layouts = pca.project_pca(points)["coordinates"]
    points = pca.reduced(points)
    coordinates = []
    previous = previous_keys = None
    for index, (x, step_keys) in enumerate(zip(points, keys)):
        x = pca.finite(x).astype(np.float64)
        n = len(x)
        rows, cols, p = _neighbour_affinities(x, min(perplexity, (n - 1) / 3.0))
        if previous is None:
            init = first_layouts[index].astype(np.float64)
            spread = init[:, 0].std() if n > 1 else 0.0
            init = (
                init / spread * 1e-4
                if spread > 0
                else np.random.RandomState(0).normal(0, 1e-4, (n, 2))
            )
            y = _tsne_optimize(
                init,
                rows,
                cols,
                p,
                iterations=first_iterations,
                exaggeration_iterations=min(200, first_iterations // 2),
            )
        else:
            init = warm.map_previous(previous_keys, previous, step_keys).astype(np.float64)
            y = _tsne_optimize(
                init, rows, cols, p, iterations=next_iterations, exaggeration_iterations=0
            )
        y = y.astype(np.float32)
        coordinates.append(y)
        previous, previous_keys = y, step_keys
    return {"coordinates": coordinates, "method_used": "tsne"}


def _neighbour_affinities(x: np.ndarray, perplexity: float):
    """The symmetric t-SNE affinities of `x`, over each point's nearest neighbours.

    Returns:
      `(rows, cols, p)`: the edges and their joint probabilities (summing to 1).
    """
    libraries.load()
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


def _tsne_optimize(y, rows, cols, p, *, iterations, exaggeration_iterations, exaggeration=12.0):
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
