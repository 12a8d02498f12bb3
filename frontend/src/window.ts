// Long sequences (market data: tens of thousands of timesteps) are not fetched whole.
// The heatmap and the line plots ask the `states` route for the window on screen,
// [t0, t1), in about as many bins as the plots have device pixels: the route answers
// each bin's minimum and maximum, or the window at full resolution once it holds no
// more timesteps than bins (zoom in far enough). Short sequences are fetched whole and
// drawn as before. Pure: no DOM, no fetch.
//
// Drawing binned data faithfully: a heatmap cell shows, of the minima and maxima of the
// bins it covers, the one further from the colour scale's centre (0, or 0.5 for sigmoid
// gates), the rule the whole-array heatmap uses for its pixel buckets; a line plot
// draws each pixel column as a vertical span from the minimum to the maximum. A spike
// one timestep wide in 100,000 stays visible in both. A bin that straddles two pixel
// columns counts in both.

import type { StatesArray, StatesQuery } from "./api";
import { bucketRange } from "./downsample";
import { formatValue } from "./layout";

/** Sequences longer than this are fetched per window; shorter ones whole, as before. */
export const LONG_TIME = 4096;

/** Bin counts are rounded up to a multiple of this: a small resize keeps the cached windows. */
export const BIN_QUANTUM = 256;

/** A request for the timesteps [start, stop) in at most `bins` bins. */
export interface Range {
  start: number;
  stop: number;
  bins: number;
}

/** Bins for a plot `pixels` device pixels wide: at least one per pixel. */
export function binsFor(pixels: number): number {
  const p = Number.isFinite(pixels) && pixels > 0 ? pixels : 1;
  return Math.ceil(p / BIN_QUANTUM) * BIN_QUANTUM;
}

/**
 * What to fetch of a sequence of `time` timesteps for a view of [t0, t1) (null: all of
 * it) on `pixels` device pixels: null for a short sequence (the whole array, as before),
 * else the window in binsFor(pixels) bins.
 */
export function windowFor(time: number, t0: number | null, t1: number | null, pixels: number): Range | null {
  if (!(time > LONG_TIME)) return null;
  const zoomed = t0 !== null && t1 !== null && t0 >= 0 && t1 > t0 && t1 <= time;
  return { start: zoomed ? t0! : 0, stop: zoomed ? t1! : time, bins: binsFor(pixels) };
}

/** The query with the window's range and bins (unchanged for null). */
export function windowed(q: StatesQuery, w: Range | null): StatesQuery {
  return w ? { ...q, start: w.start, stop: w.stop, bins: w.bins } : q;
}

/**
 * A window of one sequence as `count` bins over [start, stop): bin i covers
 * [start + ⌊i·(stop−start)/count⌋, start + ⌊(i+1)·(stop−start)/count⌋) and holds per unit
 * its minimum (`lo`) and maximum (`hi`), both [count, units]. At full resolution count is
 * stop − start and `lo` and `hi` are the same array: the values.
 */
export interface Segment {
  start: number;
  stop: number;
  count: number;
  units: number;
  lo: Float32Array;
  hi: Float32Array;
  binned: boolean;
}

const segments = new WeakMap<StatesArray, Segment>();

/** The segment of a `states` answer for one sequence (made once per array). */
export function segmentOf(a: StatesArray): Segment {
  const cached = segments.get(a);
  if (cached) return cached;
  let s: Segment;
  if (a.binned) {
    const [, count, units] = a.shape;
    const lo = a.data.subarray(0, count * units), hi = a.data.subarray(count * units, 2 * count * units);
    s = { start: a.start, stop: a.stop, count, units, lo, hi, binned: true };
  } else {
    if (a.shape.length !== 2) throw new Error(`expected [time, units] of one sequence, got [${a.shape}]`);
    s = fullSegment(a.data, a.start, a.stop, a.shape[1]);
  }
  segments.set(a, s);
  return s;
}

/** A segment at full resolution: `data` is [stop - start, units]. */
export function fullSegment(data: Float32Array, start: number, stop: number, units: number): Segment {
  return { start, stop, count: stop - start, units, lo: data, hi: data, binned: false };
}

function binStart(s: Segment, i: number): number {
  return s.count === s.stop - s.start ? s.start + i : s.start + Math.floor((i * (s.stop - s.start)) / s.count);
}

/** The bin holding timestep t (t within [start, stop)). */
export function binOf(s: Segment, t: number): number {
  const span = s.stop - s.start;
  if (s.count === span) return t - s.start;
  // the largest i with ⌊i·span/count⌋ <= t - start
  return Math.min(s.count - 1, Math.ceil(((t - s.start + 1) * s.count) / span) - 1);
}

/** The first bin that ends after t. */
function firstBinAfter(s: Segment, t: number): number {
  if (t <= s.start) return 0;
  if (t >= s.stop) return s.count;
  return binOf(s, t);
}

/**
 * A [rows, cols] heatmap grid of a segment, like `heatmapGrid` of a whole array: rows
 * are the units in `order` (bucketed when there are more than maxRows), columns the
 * timesteps [t0, t1) in at most maxCols buckets. A cell holds, of its bins' minima and
 * maxima, the one further from `centre`; NaN where the segment has no bin.
 */
export function segmentGrid(
  s: Segment, order: ArrayLike<number>, t0: number, t1: number, maxCols: number, maxRows: number, centre = 0,
): { grid: Float32Array; rows: number; cols: number } {
  const span = Math.max(0, t1 - t0);
  const cols = Math.max(1, Math.min(span, Math.max(1, Math.floor(maxCols))));
  const nUnits = order.length;
  const rows = Math.max(1, Math.min(nUnits, Math.max(1, Math.floor(maxRows))));
  const grid = new Float32Array(rows * cols).fill(NaN);
  if (span === 0 || nUnits === 0) return { grid, rows, cols };
  const units = s.units;
  const rowOfUnit = new Int32Array(units).fill(-1);
  for (let r = 0; r < rows; r++) {
    const [r0, r1] = bucketRange(0, nUnits, rows, r);
    for (let k = r0; k < r1; k++) if (order[k] < units) rowOfUnit[order[k]] = r;
  }
  const lo = new Float32Array(rows), hi = new Float32Array(rows);
  const { lo: mins, hi: maxs, count } = s;
  let i = firstBinAfter(s, t0);
  for (let c = 0; c < cols; c++) {
    const [c0, c1] = bucketRange(t0, t1, cols, c);
    while (i < count && binStart(s, i + 1) <= c0) i++;
    if (i >= count) break;
    if (binStart(s, i) >= c1) continue;
    lo.fill(Infinity);
    hi.fill(-Infinity);
    for (let j = i; j < count && binStart(s, j) < c1; j++) {
      const base = j * units;
      for (let u = 0; u < units; u++) {
        const r = rowOfUnit[u];
        if (r < 0) continue;
        const a = mins[base + u], b = maxs[base + u];
        if (a < lo[r]) lo[r] = a; // NaN compares false: skipped
        if (b > hi[r]) hi[r] = b;
      }
    }
    for (let r = 0; r < rows; r++) {
      const l = lo[r], h = hi[r];
      grid[r * cols + c] = l === Infinity ? NaN : centre - l > h - centre ? l : h;
    }
  }
  return { grid, rows, cols };
}

/**
 * Min and max of one unit per bucket of [t0, t1), like `minMaxBuckets` of a whole
 * track (min(t1 - t0, n) buckets): NaN where the segment has no bin.
 */
export function segmentBuckets(
  s: Segment, unit: number, t0: number, t1: number, n: number,
): { min: Float32Array; max: Float32Array; count: number } {
  const span = Math.max(0, t1 - t0);
  const count = Math.max(0, Math.min(span, Math.floor(n)));
  const min = new Float32Array(count).fill(NaN), max = new Float32Array(count).fill(NaN);
  if (unit < 0 || unit >= s.units) return { min, max, count };
  const units = s.units;
  let i = firstBinAfter(s, t0);
  for (let b = 0; b < count; b++) {
    const [c0, c1] = bucketRange(t0, t1, count, b);
    while (i < s.count && binStart(s, i + 1) <= c0) i++;
    if (i >= s.count) break;
    let mn = Infinity, mx = -Infinity;
    for (let j = i; j < s.count && binStart(s, j) < c1; j++) {
      const a = s.lo[j * units + unit], h = s.hi[j * units + unit];
      if (a < mn) mn = a;
      if (h > mx) mx = h;
    }
    if (mn !== Infinity) min[b] = mn;
    if (mx !== -Infinity) max[b] = mx;
  }
  return { min, max, count };
}

/** What the segment holds at timestep t of a unit: its bin's [lo, hi] and timesteps, or null. */
export function segmentAt(s: Segment, t: number, unit: number): { lo: number; hi: number; from: number; to: number } | null {
  if (!(t >= s.start && t < s.stop) || unit < 0 || unit >= s.units) return null;
  const i = binOf(s, t);
  return { lo: s.lo[i * s.units + unit], hi: s.hi[i * s.units + unit], from: binStart(s, i), to: binStart(s, i + 1) };
}

/** What the views need of the states on screen: the whole sequence, or a window of it. */
export interface StatesView {
  array: StatesArray;
  /** null: `array` is the whole sequence, [time, units], drawn as before */
  segment: Segment | null;
  units: number;
  /** timesteps of the whole sequence */
  time: number;
  /** valid timesteps; later ones are padding */
  length?: number;
}

/** The view of an array of a sequence of `time` timesteps: fetched whole when short, else a window. */
export function viewOf(array: StatesArray, time: number): StatesView {
  const length = array.lengths?.[0];
  if (!(time > LONG_TIME)) return { array, segment: null, units: array.shape[1], time: array.shape[0], length };
  const segment = segmentOf(array);
  return { array, segment, units: segment.units, time: Math.max(time, segment.stop), length };
}

/** The exact value at (t, unit), NaN when that timestep is binned or not held. */
export function valueAt(v: StatesView | null | undefined, t: number, unit: number): number {
  if (!v || unit < 0 || unit >= v.units) return NaN;
  if (!v.segment) return t >= 0 && t < v.array.shape[0] ? v.array.data[t * v.units + unit] : NaN;
  const at = segmentAt(v.segment, t, unit);
  return at && !v.segment.binned ? at.lo : NaN;
}

/** The value at (t, unit), or for a binned timestep the min and max of its bin, as text. */
export function describeAt(v: StatesView | null | undefined, t: number, unit: number): string {
  if (v?.segment?.binned) {
    const at = segmentAt(v.segment, t, unit);
    if (at) return `${formatValue(at.lo)} … ${formatValue(at.hi)} (min … max of timesteps ${at.from}–${at.to - 1})`;
  }
  return formatValue(valueAt(v, t, unit));
}

/** One value per timestep for tinting (tokens): exact, or the bin's extreme further from `centre`. */
export function tintAt(v: StatesView, t: number, unit: number, centre: number): number {
  if (!v.segment?.binned) return valueAt(v, t, unit);
  const at = segmentAt(v.segment, t, unit);
  return !at ? NaN : centre - at.lo > at.hi - centre ? at.lo : at.hi;
}

/** A track of one unit for a line plot: per-timestep values, or min/max buckets of a window. */
export function unitTrack(v: StatesView, unit: number): { get: (t: number) => number; buckets?: (t0: number, t1: number, n: number) => ReturnType<typeof segmentBuckets> } {
  const s = v.segment;
  if (!s) {
    const data = v.array.data, units = v.units;
    return { get: (t) => data[t * units + unit] };
  }
  return { get: (t) => valueAt(v, t, unit), buckets: (t0, t1, n) => segmentBuckets(s, unit, t0, t1, n) };
}

/**
 * The element-wise difference a − b with its largest finite |value|, when both hold the
 * same timesteps at full resolution; else null (binned minima and maxima do not subtract).
 */
export function difference(a: StatesView, b: StatesView): { data: Float32Array; max: number; segment: Segment | null } | null {
  if (a.array.shape.join() !== b.array.shape.join()) return null;
  if (!!a.segment !== !!b.segment) return null;
  if (a.segment && (a.segment.binned || b.segment!.binned || a.segment.start !== b.segment!.start)) return null;
  const x = a.array.data, y = b.array.data;
  const d = new Float32Array(x.length);
  let m = 0;
  for (let i = 0; i < d.length; i++) {
    d[i] = x[i] - y[i];
    const e = Math.abs(d[i]);
    if (e > m && e !== Infinity) m = e;
  }
  const segment = a.segment ? fullSegment(d, a.segment.start, a.segment.stop, a.units) : null;
  return { data: d, max: Math.max(m, 1e-6), segment };
}
