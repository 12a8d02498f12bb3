"""Derived views of recorded states: changes over time, per-unit statistics, projections.

Everything here takes numpy arrays as they are read from a logdir (`[batch, time, units]`,
float16 or float32, with `lengths` valid timesteps per sequence) and returns plain
numpy values; the plugin turns them into JSON. numpy, scipy and scikit-learn, except
the optional UMAP projection, which imports `umap` when first asked for.

- `temporal`: how a state moves along a sequence (`changes`);
- `units`: per-unit statistics, an order of units (`unit_statistics`) and memory
  horizons from the forget gate or its stored mean (`memory_horizon`, `horizon_of_mean`);
- `pca`: principal axes, by scikit-learn (`project_pca`);
- `tsne`, `umap_layout`: layouts of each step continued from the step before
  (`warm`: the warm starts).

Non-finite values (a diverged model writes NaN) never raise: statistics that depend
on them come out NaN, and projections treat them as zero.

Cost is bounded by construction, whatever the array: statistics stream over blocks
of a bounded number of values (no float64 copy of a whole array); units are ordered
by hierarchical clustering up to `MAX_CLUSTER_UNITS` units, by the angle of their two
principal loadings beyond; PCA is exact on small or tall inputs and a randomized
truncated SVD on large ones; t-SNE and UMAP see at most `NEIGHBOUR_DIMENSIONS`
dimensions (a PCA of all steps first) and the plugin caps their points.
"""

from typing import Dict, List

import numpy as np

from tb_lstm_states.analysis.pca import NEIGHBOUR_DIMENSIONS, project_pca
from tb_lstm_states.analysis.temporal import DEFAULT_THRESHOLD, changes
from tb_lstm_states.analysis.tsne import project_tsne
from tb_lstm_states.analysis.umap_layout import project_umap, umap_available
from tb_lstm_states.analysis.units import (
    MAX_CLUSTER_UNITS,
    cluster_order,
    dominant_periods,
    horizon_of_mean,
    memory_horizon,
    saturated,
    unit_statistics,
    valid_mask,
)
from tb_lstm_states.analysis.warm import MIN_NEIGHBOUR_POINTS

__all__ = [
    "DEFAULT_THRESHOLD",
    "MAX_CLUSTER_UNITS",
    "METHODS",
    "MIN_NEIGHBOUR_POINTS",
    "NEIGHBOUR_DIMENSIONS",
    "changes",
    "cluster_order",
    "dominant_periods",
    "horizon_of_mean",
    "memory_horizon",
    "project",
    "project_pca",
    "project_tsne",
    "project_umap",
    "saturated",
    "umap_available",
    "unit_statistics",
    "valid_mask",
]

METHODS = ("pca", "tsne", "umap")


def project(method: str, points: List[np.ndarray], keys: List[np.ndarray]) -> Dict:
    """Lays out the points of every step with `method`.

    Dispatches to `project_pca`, `project_tsne` or `project_umap`.

    Raises:
      ValueError: for a method not in `METHODS`.
    """
    if method == "pca":
        return dict(project_pca(points), method_used="pca")
    if method == "tsne":
        return project_tsne(points, keys)
    if method == "umap":
        return project_umap(points, keys)
    raise ValueError("method must be one of %s, got %r" % (METHODS, method))
