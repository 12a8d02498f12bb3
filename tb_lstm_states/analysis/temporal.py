"""How a state moves along a sequence: the change track of the `changes` route.

A timestep is flagged when the norm of its change is an outlier among the
sequence's changes by a robust z-score (median and MAD). The sequence is read in
row blocks of at most `_BLOCK_VALUES` values (no float64 copy of all of it).
"""

from typing import Dict

import numpy as np

# 1.4826 * MAD estimates the standard deviation of normally distributed values.
_MAD_SCALE = 1.4826
DEFAULT_THRESHOLD = 3.5
# The robust scale is at least this fraction of the median change.
_MIN_RELATIVE_SCALE = 0.01
# Changes are computed on row blocks of at most this many values.
_BLOCK_VALUES = 1 << 20


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
                x = np.asarray(sequence[t0 : min(t0 + rows + 1, n)], dtype=np.float64)
                delta = np.diff(x, axis=0)
                delta_norm[t0 : t0 + len(delta)] = np.linalg.norm(delta, axis=1)
                if previous is not None:
                    delta = np.concatenate([previous, delta])
                    start = t0 - 1
                else:
                    start = 0
                if len(delta) >= 2:
                    dots[start : start + len(delta) - 1] = np.sum(delta[1:] * delta[:-1], axis=1)
                previous = delta[-1:]
            norm[1:] = delta_norm
            if n >= 3:
                denominator = delta_norm[1:] * delta_norm[:-1]
                cosine[2:] = np.where(
                    denominator > 0, dots / np.where(denominator > 0, denominator, 1), np.nan
                )
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
