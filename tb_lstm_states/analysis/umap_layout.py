"""UMAP layouts of every step, each begun from the layout of the step before.

UMAP is optional (`pip install 'tb-lstm-states[umap]'`): `umap` is imported only
when a UMAP layout is asked for.
"""

import warnings
from typing import Any, Dict, Sequence

import numpy as np

from tb_lstm_states.analysis import libraries, pca, warm


def umap_available() -> bool:
    """Whether the optional `umap-learn` package can be imported."""
    import importlib.util

    return importlib.util.find_spec("umap") is not None


def project_umap(
    points: Sequence[np.ndarray],
    keys: Sequence[np.ndarray],
    *,
    seed: int = 0,
    next_epochs: int = 100,
) -> Dict:
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
    if any(len(p) < warm.MIN_NEIGHBOUR_POINTS for p in points):
        return dict(pca.project_pca(points), method_used="pca")
    libraries.load()  # umap imports scipy and scikit-learn too
    import umap  # optional; slow to import, so only when asked for

    points = pca.reduced(points)

    coordinates = []
    previous = previous_keys = None
    for x, step_keys in zip(points, keys):
        x = pca.finite(x)
        n = len(x)
        options: Dict[str, Any] = dict(
            n_components=2, n_neighbors=int(min(15, n - 1)), random_state=seed, n_jobs=1
        )
        if previous is None:
            options["init"] = "spectral" if n > 16 else "random"
        else:
            options["init"] = warm.map_previous(previous_keys, previous, step_keys)
            options["n_epochs"] = next_epochs
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y = np.nan_to_num(umap.UMAP(**options).fit_transform(x).astype(np.float32))
        if previous is not None:
            # UMAP rescales its initial layout into a box of its own; bring the
            # result back into the previous step's frame.
            y = warm.align_onto(y, step_keys, previous, previous_keys)
        coordinates.append(y)
        previous, previous_keys = y, step_keys
    return {"coordinates": coordinates, "method_used": "umap"}
