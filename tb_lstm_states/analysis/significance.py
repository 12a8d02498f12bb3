"""Which units follow a series, and which units of two arrays correspond.

- `lagged_significance`: each unit's best lag against a series, its Pearson r there,
  a p-value valid under autocorrelation and corrected for the search over lags, and
  the Benjamini-Hochberg q over units (the `units` route with `series=`).
- `match_units`: a one-to-one pairing of the units of two arrays of the same probe
  batch that maximises the total |r|, and the linear CKA between them (`match`).

The test behind `p` (why a plain Pearson test is wrong here): a unit and a series
that are both strongly autocorrelated (an AR(0.97) unit against a random walk) have
far fewer independent positions than positions, so a plain t-test calls about half
of pure-noise units significant. We shrink the sample size to an effective one with
Bartlett's formula for the variance of a correlation between two autocorrelated
series (Bartlett 1935; Bretherton et al. 1999):

    n_eff = n / sum over k = -K..K of rho_x(k) rho_y(k),

rho_x and rho_y the autocorrelations of the unit and the series, pooled over the
sequences (within each, about the mean of all valid positions), K half the longest
sequence; n_eff is clipped to [3, n]. Then t = r sqrt((n_eff - 2) / (1 - r^2)) with
n_eff - 2 degrees of freedom gives a two-sided p at the best lag, and the Sidak
correction p' = 1 - (1 - p)^L over the L = 2 max_lag + 1 lags searched accounts for
taking the best one (lags are not independent, so Sidak is conservative).
"""

from typing import Dict, Optional

import numpy as np

DEFAULT_MAX_LAG = 20
MAX_MAX_LAG = 1000
# Autocorrelations are computed on blocks of columns of at most this many values.
_BLOCK_VALUES = 1 << 20


def _centered(array: np.ndarray, lengths) -> np.ndarray:
    """`[positions, units]` float32 of the valid positions of `[batch, time, units]`,
    each unit's mean (taken in float64) removed."""
    array = np.asarray(array)
    time = array.shape[1]
    mask = np.arange(time)[None, :] < np.asarray(lengths, dtype=np.int64).reshape(-1, 1)
    flat = np.nan_to_num(np.asarray(array[mask], dtype=np.float32), posinf=0.0, neginf=0.0)
    flat -= flat.mean(axis=0, dtype=np.float64).astype(np.float32)
    return flat


def _autocorrelation(values: np.ndarray, mask: np.ndarray, lags: int) -> np.ndarray:
    """`[lags + 1, k]` pooled autocorrelation of each column of `[batch, time, k]`
    values: within each sequence over its valid positions, about the mean of all valid
    positions, summed over sequences (columns a block at a time, through the FFT)."""
    batch, time, k = values.shape
    count = max(float(mask.sum()), 1.0)
    result = np.zeros((lags + 1, k))
    block = max(1, _BLOCK_VALUES // max(2 * time * batch, 1))
    for k0 in range(0, k, block):
        x = np.nan_to_num(np.asarray(values[:, :, k0 : k0 + block], dtype=np.float64))
        x = (x - (x * mask[..., None]).sum(axis=(0, 1)) / count) * mask[..., None]
        spectrum = np.fft.rfft(x, n=2 * time, axis=1)
        total = np.fft.irfft(spectrum.real**2 + spectrum.imag**2, axis=1)[:, : lags + 1]
        total = total.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            result[:, k0 : k0 + block] = np.nan_to_num(total / total[:1])
    return result


def lagged_correlation(array, series, lengths, max_lag: int):
    """`[2 max_lag + 1, units]` Pearson r of each unit at t with the series at
    t - lag, lag = -max_lag..max_lag, over the positions where both are valid
    (units a block at a time, so that the float64 copies stay small)."""
    array = np.asarray(array)
    _, time, units = array.shape
    mask = np.arange(time)[None, :] < np.asarray(lengths, dtype=np.int64).reshape(-1, 1)
    series = np.asarray(series, dtype=np.float64)[:, :time] * mask
    series = np.nan_to_num(series, posinf=0.0, neginf=0.0)
    result = np.full((2 * max_lag + 1, units), np.nan)
    block = max(1, _BLOCK_VALUES // max(mask.size, 1))
    for u0 in range(0, units, block):
        values = np.asarray(array[:, :, u0 : u0 + block], dtype=np.float64) * mask[..., None]
        values = np.nan_to_num(values, posinf=0.0, neginf=0.0)
        for i, lag in enumerate(range(-max_lag, max_lag + 1)):
            if abs(lag) >= time:
                continue
            if lag >= 0:
                x, y = values[:, lag:], series[:, : time - lag]
                m = mask[:, lag:] & mask[:, : time - lag]
            else:
                x, y = values[:, : time + lag], series[:, -lag:]
                m = mask[:, : time + lag] & mask[:, -lag:]
            n = float(m.sum())
            if n < 3:
                continue
            x = x * m[..., None]
            y = y * m
            sx, sy = x.sum(axis=(0, 1)), y.sum()
            cov = np.einsum("btu,bt->u", x, y) - sx * sy / n
            vx = np.einsum("btu,btu->u", x, x) - sx * sx / n
            vy = float((y * y).sum()) - sy * sy / n
            with np.errstate(invalid="ignore", divide="ignore"):
                r = cov / np.sqrt(np.abs(vx * vy))
            result[i, u0 : u0 + block] = np.where((vx > 1e-12 * n) & (vy > 0), r, np.nan)
    return result


def benjamini_hochberg(p) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q); NaN p stay NaN, not counted."""
    p = np.asarray(p, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    finite = np.isfinite(p)
    values = p[finite]
    if values.size:
        order = np.argsort(values)
        ranked = values[order] * values.size / np.arange(1, values.size + 1)
        adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
        out = np.empty_like(values)
        out[order] = np.clip(adjusted, 0.0, 1.0)
        q[finite] = out
    return q


def lagged_significance(array, series, lengths, max_lag: int = DEFAULT_MAX_LAG) -> Dict:
    """Each unit's best lag against one `[batch, time]` series and its significance.

    Returns:
      `lag`, `r`, `p`, `q`: `[units]` float arrays, NaN where a unit or the series
      is constant.
    """
    from scipy import stats

    array = np.asarray(array)
    _, time, units = array.shape
    lengths = [min(max(int(n), 0), time) for n in lengths]
    mask = np.arange(time)[None, :] < np.asarray(lengths, dtype=np.int64).reshape(-1, 1)
    r_all = lagged_correlation(array, series, lengths, max_lag)
    lags = np.arange(-max_lag, max_lag + 1)
    scores = np.where(np.isfinite(r_all), np.abs(r_all), -1.0)
    best = np.argmax(scores, axis=0)
    r = r_all[best, np.arange(units)]
    lag = np.where(np.isfinite(r), lags[best].astype(np.float64), np.nan)
    n = float(mask.sum())
    horizon = max(1, max(lengths, default=0) // 2)
    a = _autocorrelation(array, mask, horizon)
    b = _autocorrelation(np.asarray(series, dtype=np.float64)[:, :time, None], mask, horizon)
    # Bartlett: var(r) ~ (1/n) sum over k of rho_x(k) rho_y(k), both signs of k.
    inflation = np.maximum(2 * (a * b).sum(axis=0) - 1, 1.0)
    n_eff = np.clip(n / inflation, 3.0, max(n, 3.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        rr = np.clip(r * r, 0.0, 1.0 - 1e-15)
        t = np.sqrt(rr * (n_eff - 2) / (1 - rr))
        p_one = 2 * stats.t.sf(t, n_eff - 2)
    searched = int(np.isfinite(r_all).any(axis=1).sum()) or 1
    # Sidak over the lags searched; -expm1(L log1p(-p)) keeps tiny p exact.
    p = -np.expm1(searched * np.log1p(-np.clip(p_one, 0.0, 1.0)))
    p = np.where(np.isfinite(r), np.clip(p, 0.0, 1.0), np.nan)
    return {"lag": lag, "r": r, "p": p, "q": benjamini_hochberg(p)}


def linear_cka(x: np.ndarray, y: np.ndarray) -> Optional[float]:
    """Linear CKA (Kornblith et al. 2019) of `[n, p]` and `[n, q]`:
    ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F), columns centred; None if either is
    constant."""
    xc = x - x.mean(axis=0)
    yc = y - y.mean(axis=0)
    cross = np.linalg.norm((yc.T @ xc).astype(np.float64)) ** 2
    own = np.linalg.norm((xc.T @ xc).astype(np.float64))
    denominator = own * np.linalg.norm((yc.T @ yc).astype(np.float64))
    return float(cross / denominator) if denominator > 0 else None


def match_units(one, other, lengths) -> Dict:
    """Pairs the units of two `[batch, time, units]` arrays of one probe batch.

    Returns:
      `units` (list: the other side's unit of each unit, or None), `similarity` (|r| of
      each pair, None if unpaired), `sign` (+-1, None if unpaired), `cka`.
    """
    from scipy.optimize import linear_sum_assignment

    x = _centered(one, lengths)
    y = _centered(other, lengths)
    x_scale = np.sqrt(np.einsum("nu,nu->u", x, x, dtype=np.float64))
    y_scale = np.sqrt(np.einsum("nu,nu->u", y, y, dtype=np.float64))
    covariance = (x.T @ y).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        correlation = covariance / np.outer(x_scale, y_scale)
    correlation = np.clip(np.nan_to_num(correlation, nan=0.0, posinf=0.0, neginf=0.0), -1, 1)
    rows, cols = linear_sum_assignment(np.abs(correlation), maximize=True)
    count = x.shape[1]
    units: list = [None] * count
    similarity: list = [None] * count
    sign: list = [None] * count
    for i, j in zip(rows.tolist(), cols.tolist()):
        units[i] = j
        similarity[i] = float(abs(correlation[i, j]))
        sign[i] = -1 if correlation[i, j] < 0 else 1
    return {
        "units": units,
        "similarity": similarity,
        "sign": sign,
        "cka": linear_cka(x, y) if x.shape[0] else None,
    }
