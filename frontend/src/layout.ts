// Geometry and small numeric helpers shared by the views. Pure.

/** A linear map between a data interval and a pixel interval. */
export interface Scale {
  (v: number): number;
  invert(px: number): number;
  domain: [number, number];
  range: [number, number];
}

export function linear(domain: [number, number], range: [number, number]): Scale {
  const [d0, d1] = domain, [r0, r1] = range;
  const k = d1 === d0 ? 0 : (r1 - r0) / (d1 - d0);
  const f = ((v: number) => r0 + (v - d0) * k) as Scale;
  f.invert = (px: number) => (k === 0 ? d0 : d0 + (px - r0) / k);
  f.domain = domain;
  f.range = range;
  return f;
}

/** The timestep under pixel x of a plot spanning [left, left + width) over [t0, t1). */
export function timestepAt(x: number, left: number, width: number, t0: number, t1: number): number | null {
  if (width <= 0 || x < left || x >= left + width) return null;
  const t = t0 + Math.floor(((x - left) / width) * (t1 - t0));
  return Math.min(Math.max(t, t0), t1 - 1);
}

/** The left pixel edge of timestep t. */
export function timestepX(t: number, left: number, width: number, t0: number, t1: number): number {
  return left + ((t - t0) / (t1 - t0)) * width;
}

/** The row index under pixel y of a heatmap of `rows` rows over [top, top + height). */
export function rowAt(y: number, top: number, height: number, rows: number): number | null {
  if (height <= 0 || y < top || y >= top + height) return null;
  return Math.min(rows - 1, Math.floor(((y - top) / height) * rows));
}

/** Up to `count` "nice" tick values over [lo, hi]. */
export function ticks(lo: number, hi: number, count: number): number[] {
  if (!(hi > lo) || count < 1) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** A compact display of a value: 4 significant digits, exponent only when needed. */
export function formatValue(v: number): string {
  if (v !== v) return "NaN";
  if (!Number.isFinite(v)) return v > 0 ? "∞" : "-∞";
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(3);
  return String(Number(v.toPrecision(4)));
}

/** The nearest entry of sorted `steps` at or below `step`, else the first. */
export function nearestStep(steps: number[], step: number): number | null {
  if (!steps.length) return null;
  let best = steps[0];
  for (const s of steps) if (s <= step) best = s;
  return best;
}

/** A unit order from per-unit scores, highest first; ties by index. */
export function orderByScore(scores: ArrayLike<number>): number[] {
  const idx = Array.from({ length: scores.length }, (_, i) => i);
  const key = (i: number) => (Number.isFinite(scores[i]) ? scores[i] : -Infinity);
  return idx.sort((a, b) => key(b) - key(a) || a - b);
}

/** Whether `order` is a permutation of 0..n-1. */
export function isPermutation(order: unknown, n: number): order is number[] {
  if (!Array.isArray(order) || order.length !== n) return false;
  const seen = new Uint8Array(n);
  for (const v of order) {
    if (!Number.isInteger(v) || v < 0 || v >= n || seen[v]) return false;
    seen[v] = 1;
  }
  return true;
}

/** At most `n` of sorted `steps`, evenly spaced, always with the first and the last. */
export function evenlySpaced(steps: number[], n: number): number[] {
  if (steps.length <= n) return steps.slice();
  if (n <= 1) return steps.slice(-1);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const s = steps[Math.round((i * (steps.length - 1)) / (n - 1))];
    if (out[out.length - 1] !== s) out.push(s);
  }
  return out;
}
