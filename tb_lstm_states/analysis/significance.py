"""Which units follow a series, and which units of two arrays correspond.

- `lagged_significance`: each unit's best lag against a series, its Pearson r there,
  a p-value valid under autocorrelation and corrected for the search over lags, and
  the Benjamini-Hochberg q over units (the `units` route with `series=`).
- `match_units`: a one-to-one pairing of the units of two arrays of the same probe
  batch that maximises the total |r|, and the linear CKA between them (`match`).
- `follower_across`: both at once, for a story: the unit of one array that follows a
  series most closely, its q, and its counterpart in another array (the brackets
  demo's depth unit across its two runs).

Why not a plain Pearson test: a unit and a series that are both strongly
autocorrelated (an AR(0.97) unit against a random walk) have far fewer independent
positions than positions, so a plain t-test calls about half of pure-noise units
significant. Why not Bartlett's effective sample size on the raw values alone (what
this module did first): it is valid, but a unit that follows a random-walk-like
series is itself random-walk-like, so its n_eff collapses to a handful whatever the
length, and a unit with r = 0.96 on one long sequence came out at q = 0.22.

The test here prewhitens each unit (Box & Jenkins; Haugh 1976):

1. Each sequence's mean is removed from the unit and from the series (differences
   between sequences' levels carry only `batch` degrees of freedom).
2. The unit's own AR(p) model is fitted (Yule-Walker on its autocovariance pooled
   over sequences, p <= `MAX_ORDER` chosen by BIC), and the same filter
   x_t - sum_j a_j x_{t-j} is applied to the unit and to the series, within each
   sequence. The filtered unit is close to white noise, and a filter applied to both
   keeps them independent when they were, so under the null the cross-correlation
   of the filtered pair has variance close to 1/n whatever the series' own
   autocorrelation; while a unit that follows the series keeps its link through the
   filter, now without the autocorrelation that hid it. A unit whose BIC order is 2
   or more is also tested through its AR(1) filter, and its p is twice the smaller
   (Bonferroni): a higher order fitted to a unit that follows an oscillating series
   can cancel the oscillation itself (an AR(2) filter annihilates a sine), an AR(1)
   filter cannot.
3. At each lag in [-max_lag, max_lag], r is the Pearson r of the filtered unit at t
   with the filtered series at t - lag, pooled over sequences, each (sequence, lag)
   window about its own mean. The lag is the one with the largest |r|.
4. What whitening leaves is still accounted for: n is shrunk to Bartlett's effective
   size n_eff = n / sum over |k| <= K of rho_x(k) rho_y(k) (autocorrelations of the
   filtered pair, pooled, K = min(`MAX_BARTLETT_LAG`, longest sequence / 5); clipped
   to [3, n]), and t = r sqrt((n_eff - 2) / (1 - r^2)) with n_eff - 2 degrees of
   freedom gives a two-sided p at the best lag; the Sidak correction
   p' = 1 - (1 - p)^L over the L lags searched accounts for taking the best one
   (conservative: neighbouring lags are correlated).

Measured (20 seeds per case; tests/test_plugin_significance.py checks a subset): 39
null units (AR(0.97) noise, random walks or white noise against a random walk;
AR(0.97) or oscillating AR(2) noise against a sine) on 8-32 sequences of 100-500
steps or one of 300-3,000 have p < 0.05 at 0-8% and at most 2 of 39 with q < 0.05 on
every seed (mean 0-0.35). A unit following a random walk 4 steps behind with white or
AR(0.97) noise at r 0.7-0.96 is found at lag 4 with q < 0.01 on 9-10 of 10 seeds on
many sequences; on one sequence, with AR noise or r >= 0.9 as well, and on 3-6 of 10
with white noise at r = 0.7 (the co-movement left in the white noise's increments is
then weak: no test valid for every unit autocorrelation does much better). A unit
following a sine the same way is found on 9-10 of 10 seeds on many sequences or one
of 1,000 steps (r >= 0.9). Not chosen: a surrogate null across sequences (it needs
about 8 sequences or more, and a probe is often one long sequence); Bartlett on the
raw values with a short sum (too liberal on short sequences: sample autocorrelations
of near-unit-root noise are biased low); a filter fitted to the regression residual
(more power, but up to 8 of 39 null units with q < 0.05 on one sequence of 300).
The reported `r` is the plain Pearson r at that lag (unfiltered, over all valid
positions), the number a user sees on the chart; what is tested is the filtered one.
"""

from typing import Dict, Optional, Tuple

import numpy as np

from tb_lstm_states.analysis import libraries

DEFAULT_MAX_LAG = 20
MAX_MAX_LAG = 1000
# The largest AR order a unit is whitened with (BIC picks the order up to this).
MAX_ORDER = 10
# Bartlett's sum runs over at most this many lags of the (whitened) pair: beyond,
# the sum of sample autocorrelations adds noise, not correction.
MAX_BARTLETT_LAG = 50
# Units are tested a block at a time: a block's float64 copies and spectra stay
# within a few times this many values.
_BLOCK_VALUES = 1 << 19


def _valid(lengths: np.ndarray, time: int, start: int = 0) -> np.ndarray:
    """`[batch, time]` bool: timesteps in [start, length) of each sequence."""
    t = np.arange(time)[None, :]
    return (t >= start) & (t < lengths[:, None])


def _masked(values, mask: np.ndarray) -> np.ndarray:
    """`[batch, time, k]` float64 copy of `values`, zero outside `mask` (non-finite
    values count as zero)."""
    x = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    return x * mask[..., None]


def _within(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`x` (`_masked`) less each sequence's mean over its valid positions."""
    count = np.maximum(mask.sum(axis=1), 1)[:, None, None]
    return (x - x.sum(axis=1, keepdims=True) / count) * mask[..., None]


def _autocovariance(spectrum: np.ndarray, size: int, lags: int) -> np.ndarray:
    """`[lags + 1, k]` autocovariance sums pooled over sequences, from the spectrum of
    `[batch, time, k]` values zero-padded to `size`."""
    libraries.load()
    from scipy import fft

    power = spectrum.real**2 + spectrum.imag**2
    return fft.irfft(power, n=size, axis=1)[:, : lags + 1].sum(axis=0)


def _correlation(acov: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nan_to_num(acov / acov[:1])


def ar_filters(acov: np.ndarray, n: float, max_order: int) -> np.ndarray:
    """`[max_order, k]` AR coefficients of each column from its autocovariance
    `[max_order + 1, k]`: Yule-Walker by the Levinson-Durbin recursion, the order
    (zero-padded beyond it) chosen by BIC, n log(error variance) + order log n."""
    k = acov.shape[1]
    coefficients = np.zeros((0, k))
    error = acov[0].astype(np.float64)
    best = np.zeros((max_order, k))
    live = error > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        best_bic = np.where(live, n * np.log(np.where(live, error, 1.0)), 0.0)
        for p in range(1, max_order + 1):
            previous = (coefficients * acov[p - 1 : 0 : -1]).sum(axis=0)
            reflection = np.nan_to_num((acov[p] - previous) / error)
            # A pooled biased autocovariance keeps |reflection| < 1; clip for rounding.
            reflection = np.clip(reflection, -0.9999, 0.9999)
            coefficients = np.concatenate(
                [coefficients - reflection * coefficients[::-1], reflection[None]]
            )
            error = error * (1 - reflection**2)
            bic = n * np.log(np.where(live, error, 1.0)) + p * np.log(max(n, 2.0))
            better = live & (bic < best_bic)
            best_bic = np.where(better, bic, best_bic)
            best[:, better] = 0.0
            best[:p, better] = coefficients[:, better]
    return best


def _filtered(values: np.ndarray, coefficients: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`values` (`[batch, time, k]`, or `[batch, time]` for every column) minus
    sum_j a_j values_{t-j}, zero outside `mask`."""
    if values.ndim == 2:
        values = values[..., None]
    out = (
        np.repeat(values, coefficients.shape[1], axis=2) if values.shape[2] == 1 else values.copy()
    )
    for j in range(1, coefficients.shape[0] + 1):
        out[:, j:] -= coefficients[j - 1] * values[:, :-j]
    return out * mask[..., None]


def _window_sums(prefix: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Sums over [lo, hi) of each sequence from its prefix sums `[batch, time + 1, k]`;
    `lo`, `hi` `[lags, batch]` -> `[lags, batch, k]`."""
    rows = np.arange(prefix.shape[0])[None, :]
    return prefix[rows, hi] - prefix[rows, lo]


def _prefix(values: np.ndarray) -> np.ndarray:
    shape = (values.shape[0], 1, values.shape[2])
    return np.concatenate([np.zeros(shape), np.cumsum(values, axis=1)], axis=1)


def lagged_within(
    x, y, lengths, start: int, lags: np.ndarray, spectra=None
) -> Tuple[np.ndarray, np.ndarray]:
    """Pooled within-sequence Pearson r of x at t with y at t - lag.

    Args:
      x, y: `[batch, time, k]` float64, zero outside [start, length) of each sequence.
      lengths: `[batch]` int.
      start: the first valid timestep of every sequence.
      lags: the lags, `[lags]` int.
      spectra: `(size, rfft of x, rfft of y)` along time, zero-padded to a size of at
        least time + max |lag| + 1, if the caller has them.

    Returns:
      `(r [lags, k], n [lags])`: r over the pairs where both are valid, each
      (sequence, lag) window about its own means (NaN with fewer than 3 pairs or a
      constant side); n the pairs less one per sequence used (the means taken).
    """
    libraries.load()
    from scipy import fft

    time = x.shape[1]
    shape = (len(lags), len(lengths))
    lo = np.clip(np.broadcast_to(start + np.maximum(lags, 0)[:, None], shape), 0, time)
    hi = np.clip(lengths[None, :] + np.minimum(lags, 0)[:, None], 0, time)
    hi = np.maximum(hi, lo)
    count = (hi - lo).astype(np.float64)  # [lags, batch]
    shifted_lo, shifted_hi = lo - lags[:, None], hi - lags[:, None]
    sx = _window_sums(_prefix(x), lo, hi)
    sxx = _window_sums(_prefix(x * x), lo, hi)
    sy = _window_sums(_prefix(y), shifted_lo, shifted_hi)
    syy = _window_sums(_prefix(y * y), shifted_lo, shifted_hi)
    if spectra is None:
        size = fft.next_fast_len(time + int(np.abs(lags).max(initial=0)) + 1, real=True)
        spectra = (size, fft.rfft(x, n=size, axis=1), fft.rfft(y, n=size, axis=1))
    size, fx, fy = spectra
    cross = fft.irfft(fx * np.conj(fy), n=size, axis=1)
    sxy = np.moveaxis(cross[:, lags % size], 1, 0)  # [lags, batch, k]
    inverse = (np.where(count > 0, 1.0 / np.maximum(count, 1.0), 0.0))[..., None]
    cov = (sxy - sx * sy * inverse).sum(axis=1)
    vx = (sxx - sx * sx * inverse).sum(axis=1)
    vy = (syy - sy * sy * inverse).sum(axis=1)
    n = count.sum(axis=1) - (count > 0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cov / np.sqrt(np.abs(vx * vy))
    floor = 1e-12 * np.maximum(n, 1.0)[:, None]
    r = np.where((vx > floor) & (vy > floor) & (n[:, None] >= 3), r, np.nan)
    return np.clip(r, -1.0, 1.0), n


def _r_at_lags(x, y, lengths, lags_of_units: np.ndarray) -> np.ndarray:
    """`[k]` plain Pearson r of each column of x `[batch, time, k]` at t with y
    `[batch, time, 1]` at t - lag, that column's lag, over all the (sequence, t) pairs
    where both are valid, in one pass."""
    time = x.shape[1]
    source = np.arange(time)[:, None] - lags_of_units[None, :]  # [time, k]
    pairs = (source >= 0)[None] & (source < lengths[:, None, None])
    pairs &= (np.arange(time) < lengths[:, None])[..., None]
    shifted = np.where(pairs, y[:, np.clip(source, 0, time - 1), 0], 0.0)
    xs = np.where(pairs, x, 0.0)
    n = pairs.sum(axis=(0, 1)).astype(np.float64)
    inverse = np.where(n > 0, 1.0 / np.maximum(n, 1.0), 0.0)
    sx, sy = xs.sum(axis=(0, 1)), shifted.sum(axis=(0, 1))
    cov = np.einsum("btk,btk->k", xs, shifted) - sx * sy * inverse
    vx = np.einsum("btk,btk->k", xs, xs) - sx * sx * inverse
    vy = np.einsum("btk,btk->k", shifted, shifted) - sy * sy * inverse
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cov / np.sqrt(np.abs(vx * vy))
    floor = 1e-12 * np.maximum(n, 1.0)
    return np.clip(np.where((vx > floor) & (vy > floor) & (n >= 3), r, np.nan), -1.0, 1.0)


def _t_p(r: np.ndarray, n_eff: np.ndarray) -> np.ndarray:
    """Two-sided p of Pearson r on n_eff positions (t with n_eff - 2 degrees)."""
    libraries.load()
    from scipy import stats

    with np.errstate(invalid="ignore", divide="ignore"):
        rr = np.clip(r * r, 0.0, 1.0 - 1e-15)
        t = np.sqrt(rr * (n_eff - 2) / (1 - rr))
        return 2 * stats.t.sf(t, n_eff - 2)


def _filtered_test(x, y, lengths, lags, coefficients, size, bartlett_lag):
    """`(best lag index, p before Sidak, lags searched)` of each column of x
    `[batch, time, k]` against y `[batch, time, 1]` (both `_within`), both filtered by
    that column's AR coefficients `[order, k]` (steps 2-4 of the module docstring)."""
    libraries.load()
    from scipy import fft

    time, k = x.shape[1], x.shape[2]
    used = np.flatnonzero(np.abs(coefficients).sum(axis=1) > 0)
    start = int(used[-1]) + 1 if used.size else 0
    coefficients = coefficients[:start]
    filtered_mask = _valid(lengths, time, start)
    xf = _filtered(x, coefficients, filtered_mask)
    yf = _filtered(y[..., 0], coefficients, filtered_mask)
    fx, fy = fft.rfft(xf, n=size, axis=1), fft.rfft(yf, n=size, axis=1)
    r_all, n = lagged_within(xf, yf, lengths, start, lags, (size, fx, fy))
    best = np.argmax(np.where(np.isfinite(r_all), np.abs(r_all), -1.0), axis=0)
    r_filtered = r_all[best, np.arange(k)]
    rho_x = _correlation(_autocovariance(fx, size, bartlett_lag))
    rho_y = _correlation(_autocovariance(fy, size, bartlett_lag))
    # Bartlett: var(r) ~ (1/n) sum over k of rho_x(k) rho_y(k), both signs of k.
    inflation = np.maximum(2 * (rho_x * rho_y).sum(axis=0) - 1, 1.0)
    pairs = n[best]
    n_eff = np.clip(pairs / inflation, 3.0, np.maximum(pairs, 3.0))
    p = np.where(np.isfinite(r_filtered), _t_p(r_filtered, n_eff), np.nan)
    return best, p, np.isfinite(r_all).any(axis=1)


def _block_significance(values, series, lengths, lags, max_order, bartlett_lag):
    """`(best lag index, r, p before Sidak of the BIC filter, of the AR(1) filter
    (NaN where the BIC order is at most 1), lags searched)` of a block of columns
    `[batch, time, k]` against a series (`_masked`, `[batch, time, 1]`)."""
    libraries.load()
    from scipy import fft

    _, time, k = values.shape
    mask = _valid(lengths, time)
    raw = _masked(values, mask)
    x = _within(raw, mask)
    y = _within(series, mask)
    reach = max(max_order, bartlett_lag, int(np.abs(lags).max(initial=0)))
    size = fft.next_fast_len(time + reach + 1, real=True)
    n_all = float(mask.sum() - (lengths > 0).sum())
    acov = _autocovariance(fft.rfft(x, n=size, axis=1), size, max(max_order, 1))
    coefficients = ar_filters(acov[: max_order + 1], n_all, max_order)
    best, p, searched = _filtered_test(x, y, lengths, lags, coefficients, size, bartlett_lag)
    # A unit whose BIC order is 2 or more is also tested through its AR(1) filter,
    # which cannot cancel an oscillating series the way a higher order can.
    p_first = np.full(k, np.nan)
    higher = np.flatnonzero(np.abs(coefficients[1:]).sum(axis=0) > 0)
    if higher.size:
        with np.errstate(invalid="ignore", divide="ignore"):
            first = np.nan_to_num(acov[1:2, higher] / acov[0, higher])
        first = np.clip(first, -0.9999, 0.9999)
        best_first, p_first[higher], found = _filtered_test(
            x[:, :, higher], y, lengths, lags, first, size, bartlett_lag
        )
        searched |= found
        better = p_first[higher] < p[higher]
        best[higher] = np.where(better, best_first, best[higher])
    r = _r_at_lags(raw, series, lengths, lags[best])
    return best, r, p, p_first, searched


def _sidak(p_one: np.ndarray, count: int) -> np.ndarray:
    """Sidak over `count` lags; -expm1(L log1p(-p)) keeps tiny p exact."""
    p = -np.expm1(count * np.log1p(-np.clip(p_one, 0.0, 1.0)))
    return np.where(np.isfinite(p_one), np.clip(p, 0.0, 1.0), np.nan)


def lagged_significance(array, series, lengths, max_lag: int = DEFAULT_MAX_LAG) -> Dict:
    """Each unit's best lag against one `[batch, time]` series and its significance
    (the test: the module docstring).

    Args:
      array: `[batch, time, units]`, any float dtype (read a block of units at a time).
      series: `[batch, time]` (longer rows are cut to `time`).
      lengths: valid timesteps per sequence.
      max_lag: lags -max_lag..max_lag are searched.

    Returns:
      `lag`, `r`, `p`, `q`: `[units]` float arrays, NaN where a unit or the series is
      constant (or too short to test).
    """
    _, time, units = array.shape
    lengths = np.clip(np.asarray(lengths, dtype=np.int64).reshape(-1), 0, time)
    longest = int(lengths.max(initial=0))
    reach = min(max_lag, max(longest - 1, 0))
    lags = np.arange(-reach, reach + 1)
    max_order = min(MAX_ORDER, max(longest // 10, 0))
    bartlett_lag = max(1, min(MAX_BARTLETT_LAG, longest // 5))
    series = _masked(np.asarray(series)[:, :time, None], _valid(lengths, time))
    lag = np.full(units, np.nan)
    r = np.full(units, np.nan)
    p_bic = np.full(units, np.nan)
    p_first = np.full(units, np.nan)
    searched = np.zeros(len(lags), dtype=bool)
    block = max(1, _BLOCK_VALUES // max(array.shape[0] * time, len(lags) * array.shape[0], 1))
    for u0 in range(0, units, block):
        u1 = min(u0 + block, units)
        best, r_block, p_block, first_block, found = _block_significance(
            array[:, :, u0:u1], series, lengths, lags, max_order, bartlett_lag
        )
        lag[u0:u1] = np.where(np.isfinite(p_block), lags[best], np.nan)
        r[u0:u1] = np.where(np.isfinite(p_block), r_block, np.nan)
        p_bic[u0:u1] = p_block
        p_first[u0:u1] = first_block
        searched |= found
    count = int(searched.sum()) or 1
    p = _sidak(p_bic, count)
    # Two filters tried: Bonferroni over them (a unit with one filter keeps its p).
    both = np.isfinite(p_first) & np.isfinite(p)
    p[both] = np.minimum(1.0, 2 * np.minimum(p[both], _sidak(p_first[both], count)))
    return {"lag": lag, "r": r, "p": p, "q": benjamini_hochberg(p)}


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


def _centered(array: np.ndarray, lengths) -> np.ndarray:
    """`[positions, units]` float32 of the valid positions of `[batch, time, units]`,
    each unit's mean (taken in float64) removed."""
    array = np.asarray(array)
    time = array.shape[1]
    mask = np.arange(time)[None, :] < np.asarray(lengths, dtype=np.int64).reshape(-1, 1)
    flat = np.nan_to_num(np.asarray(array[mask], dtype=np.float32), posinf=0.0, neginf=0.0)
    flat -= flat.mean(axis=0, dtype=np.float64).astype(np.float32)
    return flat


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
    libraries.load()
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


def follower_across(one, other, series, lengths, max_lag: int = DEFAULT_MAX_LAG) -> Dict:
    """The unit of `one` that follows `series` most closely, and its counterpart in
    `other`: e.g. the depth unit of the brackets demo in two runs' cell states.

    Args:
      one, other: `[batch, time, units]` arrays recorded on one probe batch.
      series: `[batch, time]`.
      lengths: valid timesteps per sequence.
      max_lag: lags -max_lag..max_lag are searched.

    Returns:
      `{unit, lag, r, q}` of the unit of `one` with the largest |r| at its best lag
      (`lagged_significance`; q < 0.01: found); `match: {unit, similarity, sign, lag,
      r, q}`, its paired unit in `other` (`match_units`) with that unit's own
      significance (None if unpaired); `other_best: {unit, lag, r, q}`, the unit of
      `other` with the largest |r|, which need not be the paired one (a network may
      carry a signal in several units); and `cka`.
    """
    found = [lagged_significance(a, series, lengths, max_lag) for a in (one, other)]

    def unit(result, i):
        if i is None:
            return None
        return {
            "unit": int(i),
            **{k: None if result[k][i] != result[k][i] else float(result[k][i]) for k in "rq"},
            "lag": None if result["lag"][i] != result["lag"][i] else int(result["lag"][i]),
        }

    def best(result):
        scores = np.nan_to_num(np.abs(result["r"]), nan=-1.0)
        return int(np.argmax(scores)) if scores.size and scores.max() >= 0 else None

    pairs = match_units(one, other, lengths)
    mine = best(found[0])
    paired = None if mine is None else pairs["units"][mine]
    match = unit(found[1], paired)
    if match is not None:
        match.update(similarity=pairs["similarity"][mine], sign=pairs["sign"][mine])
    return {
        **(unit(found[0], mine) or {"unit": None}),
        "match": match,
        "other_best": unit(found[1], best(found[1])),
        "cka": pairs["cka"],
    }
