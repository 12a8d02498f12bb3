// The arithmetic of the gradient-through-time view: the logarithmic colour scale of
// |∂L/∂c_t| (whole decades, labelled in powers of ten), gradient magnitudes per timestep
// (or per bin of a long sequence), the per-timestep norm over units, the gradient reach
// and the log-spaced histogram of memory horizons. Pure: no DOM, no fetch.

import type { StatesArray } from "./api";
import { Rgb, pack } from "./colors";
import { segmentOf } from "./window";

/** The array kinds that hold gradients: ∂L/∂c_t (LSTM) and ∂L/∂h_t. */
export const GRAD_CELL = "grad_cell";
export const GRAD_HIDDEN = "grad_hidden";

/** The gradient a record's view shows by default: ∂L/∂c_t for an LSTM, else ∂L/∂h_t;
 * null when the record holds no gradients. */
export function defaultGradKind(kinds: string[]): string | null {
  if (kinds.includes(GRAD_CELL)) return GRAD_CELL;
  if (kinds.includes(GRAD_HIDDEN)) return GRAD_HIDDEN;
  return null;
}

/** The fraction of the largest norm above which a timestep still counts as reached. */
export const REACH_FRACTION = 0.01;
/** The colour scale spans at most this many decades below its top. */
export const MAX_DECADES = 8;

/** A logarithmic domain in whole decades: values from 10^lo to 10^hi (exponents). */
export interface LogDomain {
  lo: number;
  hi: number;
}

/**
 * The decades a colour scale spans for magnitudes whose largest is `max` and whose
 * smallest positive one is `minPositive`: from the decade at or below the smallest to the
 * decade at or above the largest, at least one decade and at most `maxDecades`. Null
 * when nothing is positive (all zero).
 */
export function logDomain(max: number, minPositive: number, maxDecades = MAX_DECADES): LogDomain | null {
  if (!(max > 0) || !Number.isFinite(max)) return null;
  let hi = Math.ceil(Math.log10(max) - 1e-9);
  const low = minPositive > 0 && Number.isFinite(minPositive) ? Math.floor(Math.log10(minPositive) + 1e-9) : hi - maxDecades;
  let lo = Math.max(hi - maxDecades, Math.min(low, hi - 1));
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return null;
  hi = Math.min(hi, 300);
  lo = Math.min(lo, hi - 1);
  return { lo: lo + 0, hi: hi + 0 }; // never -0
}

/** Where a magnitude falls on a log domain, 0 (10^lo or less, zero included) to 1 (10^hi
 * or more); NaN for NaN. */
export function logFraction(value: number, d: LogDomain): number {
  if (value !== value) return NaN;
  if (!(value > 0)) return 0;
  const f = (Math.log10(value) - d.lo) / (d.hi - d.lo);
  return f <= 0 ? 0 : f >= 1 ? 1 : f;
}

/** The lookup-table index (0..255, NaN: 256) of a magnitude on a log domain. */
export function logIndex(value: number, d: LogDomain): number {
  const f = logFraction(value, d);
  return f !== f ? 256 : (f * 255 + 0.5) | 0;
}

/** The exponents of the decades a log domain spans, lo to hi (every one when they fit
 * `max` labels, else every second, third, … always with both ends). */
export function decadeTicks(d: LogDomain, max = 12): number[] {
  const n = d.hi - d.lo;
  const every = Math.max(1, Math.ceil(n / Math.max(1, max - 1)));
  const out: number[] = [];
  for (let k = d.hi; k >= d.lo; k -= every) out.unshift(k);
  if (out[0] !== d.lo) out.unshift(d.lo);
  return out;
}

const SUPERSCRIPT: Record<string, string> = {
  "-": "⁻", "0": "⁰", "1": "¹", "2": "²", "3": "³", "4": "⁴", "5": "⁵", "6": "⁶", "7": "⁷", "8": "⁸", "9": "⁹",
};

/** 10^k as text: "1", "10", else "10⁻³" in superscripts. */
export function powerOfTen(k: number): string {
  if (k === 0) return "1";
  if (k === 1) return "10";
  return "10" + String(k).split("").map((c) => SUPERSCRIPT[c] ?? c).join("");
}

/** A sequential scale for magnitudes (magma-like): dark for small, bright for large. */
const MAGMA: Rgb[] = [[0, 0, 4], [28, 16, 68], [79, 18, 123], [129, 37, 129], [181, 54, 122], [229, 80, 100], [251, 135, 97], [254, 194, 135], [252, 253, 191]];

/** The colour at f in [0, 1] of the magnitude scale. */
export function magnitudeColor(f: number): Rgb {
  const x = Math.min(Math.max(f, 0), 1) * (MAGMA.length - 1);
  const i = Math.min(Math.floor(x), MAGMA.length - 2);
  const a = MAGMA[i], b = MAGMA[i + 1], g = x - i;
  return [a[0] + (b[0] - a[0]) * g, a[1] + (b[1] - a[1]) * g, a[2] + (b[2] - a[2]) * g];
}

/** 256 packed RGBA colours of the magnitude scale, plus NaN's grey at index 256. */
export function magnitudeLut(dark: boolean): Uint32Array {
  const lut = new Uint32Array(257);
  for (let i = 0; i < 256; i++) lut[i] = pack(magnitudeColor(i / 255));
  lut[256] = pack(dark ? [90, 90, 90] : [200, 200, 200]);
  return lut;
}

/**
 * The gradient magnitudes of one sequence: per bin (a timestep at full resolution) and
 * unit, |g| (of a bin, the larger of |min| and |max|: the largest |g| in it).
 * Bin i covers [binStart(i), binStart(i + 1)).
 */
export interface Magnitudes {
  start: number;
  stop: number;
  count: number;
  units: number;
  /** [count, units] */
  mag: Float32Array;
  binned: boolean;
  /** valid timesteps of the sequence, when known */
  length?: number;
}

/** The first timestep of bin i (i = count: the stop). */
export function binStart(m: { start: number; stop: number; count: number }, i: number): number {
  return m.start + Math.floor((i * (m.stop - m.start)) / m.count);
}

const magnitudesOf = new WeakMap<StatesArray, Magnitudes>();

/** The magnitudes of a `states` answer for one sequence (made once per array). */
export function magnitudes(a: StatesArray): Magnitudes {
  const hit = magnitudesOf.get(a);
  if (hit) return hit;
  const s = segmentOf(a);
  const mag = new Float32Array(s.count * s.units);
  for (let i = 0; i < mag.length; i++) mag[i] = Math.max(Math.abs(s.lo[i]), Math.abs(s.hi[i]));
  const m: Magnitudes = { start: s.start, stop: s.stop, count: s.count, units: s.units, mag, binned: s.binned, length: a.lengths?.[0] };
  magnitudesOf.set(a, m);
  return m;
}

/** The largest finite magnitude and the smallest positive one. */
export function magnitudeRange(m: Magnitudes): { max: number; minPositive: number } {
  let max = 0, minPositive = Infinity;
  const data = m.mag, units = m.units;
  const bins = validBins(m);
  for (let i = 0; i < bins * units; i++) {
    const v = data[i];
    if (v > max && v !== Infinity) max = v;
    if (v > 0 && v < minPositive) minPositive = v;
  }
  return { max, minPositive };
}

/** How many bins hold valid timesteps (start before the sequence's length). */
export function validBins(m: Magnitudes): number {
  if (m.length === undefined) return m.count;
  let n = 0;
  while (n < m.count && binStart(m, n) < m.length) n++;
  return n;
}

/**
 * The norm over units of each bin, ‖g_t‖₂ = sqrt(Σ_u g_{t,u}²) at full resolution; for a
 * binned sequence an upper bound of every norm in the bin (each unit's largest |g| in it).
 * NaN for bins past the sequence's length.
 */
export function timestepNorms(m: Magnitudes): Float64Array {
  const out = new Float64Array(m.count).fill(NaN);
  const bins = validBins(m);
  for (let i = 0; i < bins; i++) {
    let s = 0;
    const base = i * m.units;
    for (let u = 0; u < m.units; u++) {
      const v = m.mag[base + u];
      if (v === v) s += v * v;
    }
    out[i] = Math.sqrt(s);
  }
  return out;
}

/**
 * The bins a gradient reaches: walking back from the last bin with a norm (later ones are
 * padding, NaN), the bins whose norm stays at or above `fraction` of the largest norm;
 * it stops before the first bin below. Null when no norm is positive (no gradient).
 */
export function reachedBins(norms: ArrayLike<number>, fraction = REACH_FRACTION): { first: number; last: number } | null {
  let last = norms.length - 1;
  while (last >= 0 && !(norms[last] === norms[last])) last--;
  if (last < 0) return null;
  let max = 0;
  for (let i = 0; i <= last; i++) if (norms[i] > max && norms[i] !== Infinity) max = norms[i];
  if (!(max > 0)) return null;
  const floor = fraction * max;
  let i = last;
  while (i >= 0 && norms[i] >= floor) i--;
  return { first: i + 1, last };
}

/**
 * The gradient reach of a sequence: how many timesteps back from its end (its last valid
 * timestep) the norm ‖∂L/∂x_t‖ stays at or above 1% of its largest value; the whole
 * length when it never falls below. `norms[t]` is of timestep t. Null without gradient.
 */
export function gradientReach(norms: ArrayLike<number>, fraction = REACH_FRACTION): number | null {
  const r = reachedBins(norms, fraction);
  return r && r.last - r.first + 1;
}

/** The reach of a sequence's magnitudes in timesteps (a bin counts its timesteps, up to
 * the sequence's length). */
export function reachOf(m: Magnitudes): number | null {
  const r = reachedBins(timestepNorms(m).subarray(0, validBins(m)));
  if (!r) return null;
  const end = Math.min(binStart(m, r.last + 1), m.length ?? m.stop);
  return end - binStart(m, r.first);
}

/** A histogram of positive values on log-spaced bins, `perDecade` to a decade, spanning
 * whole decades. Values that are null, NaN, infinite or not positive are counted apart. */
export interface LogHistogram {
  /** bin edges, counts.length + 1 of them, ascending */
  edges: number[];
  counts: number[];
  /** decades: exponents lo and hi of the first and last edge */
  lo: number;
  hi: number;
  /** values left out (undefined: null, NaN, infinite or not positive) */
  missing: number;
}

export function logHistogram(values: ArrayLike<number>, perDecade = 4): LogHistogram {
  let min = Infinity, max = -Infinity, missing = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!(v > 0) || v === Infinity) { missing++; continue; }
    if (v < min) min = v;
    if (v > max) max = v;
  }
  if (min === Infinity) return { edges: [1, 10], counts: [0], lo: 0, hi: 1, missing };
  const lo = Math.floor(Math.log10(min) + 1e-9);
  const hi = Math.max(lo + 1, Math.ceil(Math.log10(max) - 1e-9));
  const n = (hi - lo) * perDecade;
  const edges = Array.from({ length: n + 1 }, (_, i) => 10 ** (lo + i / perDecade));
  const counts = new Array<number>(n).fill(0);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!(v > 0) || v === Infinity) continue;
    const b = Math.floor((Math.log10(v) - lo) * perDecade + 1e-9);
    counts[Math.min(n - 1, Math.max(0, b))]++;
  }
  return { edges, counts, lo, hi, missing };
}

/** The median of the finite values, or null. */
export function median(values: ArrayLike<number>): number | null {
  const list = Array.from(values).filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (!list.length) return null;
  const m = list.length >> 1;
  return list.length % 2 ? list[m] : (list[m - 1] + list[m]) / 2;
}
