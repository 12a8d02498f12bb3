"""Warm starts: a step's layout begun from, and aligned onto, the layout of the step before.

Points are named across steps by keys (a sequence and timestep): equal keys are the
same point at different steps.
"""

import numpy as np

# A step with fewer points than this cannot be embedded by t-SNE or UMAP in any
# meaningful way; it gets the PCA layout instead (reported as `method_used`).
MIN_NEIGHBOUR_POINTS = 5


def map_previous(previous_keys, previous_coordinates, keys):
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


def align_onto(y, keys, target, target_keys):
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
    norm = (source_centered**2).sum()
    if norm <= 0:
        return y
    scale = singular.sum() / norm
    return ((y - source_mean) @ (u @ vt) * scale + goal_mean).astype(np.float32)


# A step with fewer points than this cannot be embedded by t-SNE or UMAP in any
# meaningful way; it gets the PCA layout instead (reported as `method_used`).
