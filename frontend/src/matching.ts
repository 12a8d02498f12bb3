// What a unit means, the pure parts: the answers of the `match` and `search` routes
// parsed, a compared run's array aligned to the first run's matched units (sign-flipped
// where a pair runs opposite), units ordered by significance, a unit's matched unit at
// each step. No DOM, no fetch.

import type { StatesArray } from "./api";

/** Each unit's significance against one series (the `units` route with `series=`). */
export interface Significance {
  series: string;
  maxLag: number;
  /** the lag with the largest |r| (positive: the unit follows the series); NaN: none */
  lag: Float32Array;
  r: Float32Array;
  p: Float32Array;
  /** Benjamini-Hochberg adjusted p over the units */
  q: Float32Array;
}

/** The `match` route's answer: unit i of the first array is paired with `units[i]` of
 * the other (-1: unpaired), with |r| `similarity[i]` and sign `sign[i]` (+1, -1; 0 unpaired). */
export interface Match {
  units: Int32Array;
  similarity: Float32Array;
  sign: Int8Array;
  /** linear CKA of the two arrays, NaN when undefined */
  cka: number;
  step: number | null;
  otherStep: number | null;
  /** units of the other side, when said */
  otherUnits: number | null;
}

export interface SearchMatch {
  step: number;
  sequence: number;
  start: number;
  distance: number;
}

const finite = (v: unknown): number => (typeof v === "number" && Number.isFinite(v) ? v : NaN);
const floats = (v: unknown): Float32Array => Float32Array.from(Array.isArray(v) ? v.map(finite) : []);
const intOr = (v: unknown, fallback: number): number => (typeof v === "number" && Number.isInteger(v) ? v : fallback);

export function parseSignificance(raw: any): Significance | null {
  if (!raw || typeof raw !== "object" || !Array.isArray(raw.q)) return null;
  return {
    series: String(raw.series ?? ""), maxLag: intOr(raw.max_lag, 20),
    lag: floats(raw.lag), r: floats(raw.r), p: floats(raw.p), q: floats(raw.q),
  };
}

export function parseMatch(raw: any): Match {
  const list: unknown[] = Array.isArray(raw?.units) ? raw.units : [];
  const n = list.length;
  const units = Int32Array.from(list, (u) => (typeof u === "number" && Number.isInteger(u) && u >= 0 ? u : -1));
  const similarity = new Float32Array(n), sign = new Int8Array(n);
  for (let i = 0; i < n; i++) {
    if (units[i] < 0) { similarity[i] = NaN; continue; }
    similarity[i] = finite(raw?.similarity?.[i]);
    sign[i] = raw?.sign?.[i] === -1 ? -1 : 1;
  }
  return {
    units, similarity, sign, cka: finite(raw?.cka),
    step: Number.isInteger(raw?.step) ? raw.step : null, otherStep: Number.isInteger(raw?.other_step) ? raw.other_step : null,
    otherUnits: typeof raw?.other_units === "number" ? raw.other_units : null,
  };
}

/** The matches of a `search` answer, well-formed ones only, nearest first. */
export function parseSearch(raw: any): SearchMatch[] {
  const list: any[] = Array.isArray(raw?.matches) ? raw.matches : [];
  const out: SearchMatch[] = [];
  for (const m of list) {
    const step = m?.step, sequence = m?.sequence, start = m?.start;
    if (![step, sequence, start].every((v) => typeof v === "number" && Number.isInteger(v)) || sequence < 0 || start < 0) continue;
    out.push({ step, sequence, start, distance: finite(m?.distance) });
  }
  const key = (m: SearchMatch) => (Number.isFinite(m.distance) ? m.distance : Number.MAX_VALUE);
  return out.sort((a, b) => key(a) - key(b));
}

/**
 * Units by significance: ascending q, ties by ascending p then by descending |r|, then
 * by index; units without a q (constant) last.
 */
export function orderBySignificance(s: Significance, units: number): number[] {
  const key = (a: Float32Array, i: number, missing: number) => (i < a.length && Number.isFinite(a[i]) ? a[i] : missing);
  const order = Array.from({ length: units }, (_, i) => i);
  return order.sort((a, b) =>
    key(s.q, a, Infinity) - key(s.q, b, Infinity) || key(s.p, a, Infinity) - key(s.p, b, Infinity) ||
    Math.abs(key(s.r, b, 0)) - Math.abs(key(s.r, a, 0)) || a - b);
}

/**
 * The compared array laid out on the first array's units: column i holds the other's
 * unit `match.units[i]`, reflected about `centre` (2 centre - v) where the pair's sign is
 * -1 so that a matched row looks like its partner; NaN where unit i is unpaired. A
 * binned array ([2, bins, units]: minima, then maxima) swaps a flipped unit's minimum
 * and maximum. The result has the first array's `units` columns.
 */
export function alignArray(b: StatesArray, match: Match, centre: number): StatesArray {
  const n = match.units.length;
  const binned = b.binned;
  const unitsB = b.shape[b.shape.length - 1];
  const rows = binned ? b.shape[1] : b.shape[0];
  const planes = binned ? 2 : 1;
  const out = new Float32Array(planes * rows * n);
  const src = b.data;
  for (let plane = 0; plane < planes; plane++) {
    for (let t = 0; t < rows; t++) {
      const o = (plane * rows + t) * n;
      for (let i = 0; i < n; i++) {
        const u = match.units[i];
        if (u < 0 || u >= unitsB) { out[o + i] = NaN; continue; }
        if (match.sign[i] < 0) {
          // a flipped bin's minimum is the reflection of its maximum
          const from = binned ? 1 - plane : plane;
          out[o + i] = 2 * centre - src[(from * rows + t) * unitsB + u];
        } else out[o + i] = src[(plane * rows + t) * unitsB + u];
      }
    }
  }
  const shape = binned ? [2, rows, n] : [rows, n];
  return { ...b, shape, data: out };
}

/** What the alignment did, for the legend. */
export function alignmentSummary(match: Match): { flipped: number; unmatched: number; meanSimilarity: number } {
  let flipped = 0, unmatched = 0, sum = 0, paired = 0;
  for (let i = 0; i < match.units.length; i++) {
    if (match.units[i] < 0) { unmatched++; continue; }
    if (match.sign[i] < 0) flipped++;
    if (Number.isFinite(match.similarity[i])) { sum += match.similarity[i]; paired++; }
  }
  return { flipped, unmatched, meanSimilarity: paired ? sum / paired : NaN };
}

/** The label of row `unit` of an aligned panel: the other's unit, "−" before it when flipped, "–" unpaired. */
export function matchLabel(match: Match, unit: number): string {
  const u = match.units[unit] ?? -1;
  if (u < 0) return "–";
  return (match.sign[unit] < 0 ? "−" : "") + u;
}

/** One point of a unit's identity across steps. */
export interface IdentityPoint {
  step: number;
  /** the matched unit at that step, -1 unpaired */
  unit: number;
  similarity: number;
  sign: number;
}

/**
 * A unit's matched unit at each step: from the matches of the reference step against
 * each other step (`matches.get(step)`, undefined while loading: left out), plus the
 * reference step itself (the unit, |r| 1). Sorted by step.
 */
export function identityPoints(unit: number, reference: number, steps: number[], matches: Map<number, Match>): IdentityPoint[] {
  const out: IdentityPoint[] = [];
  for (const step of steps) {
    if (step === reference) { out.push({ step, unit, similarity: 1, sign: 1 }); continue; }
    const m = matches.get(step);
    if (!m || unit >= m.units.length) continue;
    out.push({ step, unit: m.units[unit], similarity: m.units[unit] < 0 ? NaN : m.similarity[unit], sign: m.sign[unit] });
  }
  return out.sort((a, b) => a.step - b.step);
}

/** The steps whose matches track a unit: at most `n` of `steps`, evenly spaced (first
 * and last kept), with the reference step always among them. */
export function identitySteps(steps: number[], reference: number, n: number): number[] {
  if (steps.length <= n) return steps.slice();
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const s = steps[Math.round((i * (steps.length - 1)) / Math.max(1, n - 1))];
    if (out[out.length - 1] !== s) out.push(s);
  }
  if (steps.includes(reference) && !out.includes(reference)) {
    // the nearest sampled step (never the first or the last) gives way to the reference
    let best = -1, bestD = Infinity;
    for (let i = 1; i < out.length - 1; i++) {
      const d = Math.abs(out[i] - reference);
      if (d < bestD) { best = i; bestD = d; }
    }
    if (best >= 0) out[best] = reference;
    else out.push(reference);
    out.sort((a, b) => a - b);
  }
  return out;
}
