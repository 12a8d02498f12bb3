// How the input series are drawn (pure): 0/1 label series as shaded spans, series of the
// same quantity on one shared, labelled axis, the residual of a prediction/target pair,
// and a `time` series (epoch seconds) as the time axis's labels.

/** Whether a series only holds 0 and 1 (and NaN) with at least one 1: a label. */
export function isLabelSeries(v: ArrayLike<number>): boolean {
  let ones = 0;
  for (let i = 0; i < v.length; i++) {
    const x = v[i];
    if (x !== x) continue;
    if (x === 1) ones++;
    else if (x !== 0) return false;
  }
  return ones > 0;
}

/** Whether a series reads as epoch seconds: named `time`, increasing, after 1990. */
export function isTimeSeries(name: string, v: ArrayLike<number>): boolean {
  if (name !== "time" || v.length < 1) return false;
  let last = -Infinity;
  for (let i = 0; i < v.length; i++) {
    const x = v[i];
    if (x !== x) continue;
    if (x < 6.3e8 || x < last) return false;
    last = x;
  }
  return last > -Infinity;
}

function extentOf(v: ArrayLike<number>): [number, number] {
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < v.length; i++) {
    const x = v[i];
    if (x < lo) lo = x;
    if (x > hi) hi = x;
  }
  return [lo, hi];
}

/**
 * Groups the value series (not labels, not time) into axes: two series share an axis
 * when their ranges overlap over at least half of the smaller one's span and their
 * spans differ by less than 10x (a price and its prediction; not a price and a return).
 */
export function axisGroups(series: Record<string, ArrayLike<number>>): string[][] {
  const names = Object.keys(series).filter((n) => !isLabelSeries(series[n]) && !isTimeSeries(n, series[n]));
  const groups: { names: string[]; lo: number; hi: number }[] = [];
  for (const name of names) {
    const [lo, hi] = extentOf(series[name]);
    if (!(hi >= lo)) {
      groups.push({ names: [name], lo: 0, hi: 1 });
      continue;
    }
    const group = groups.find((g) => {
      const span = Math.max(hi - lo, 1e-12), gspan = Math.max(g.hi - g.lo, 1e-12);
      const overlap = Math.min(hi, g.hi) - Math.max(lo, g.lo);
      return overlap >= 0.5 * Math.min(span, gspan) && Math.max(span, gspan) / Math.min(span, gspan) < 10;
    });
    if (group) {
      group.names.push(name);
      group.lo = Math.min(group.lo, lo);
      group.hi = Math.max(group.hi, hi);
    } else groups.push({ names: [name], lo, hi });
  }
  return groups.map((g) => g.names);
}

const PREDICTION = /pred|forecast|estimate|output|fit/i;

/** The residual pairs [prediction, target] of series sharing an axis; the most likely first. */
export function residualPairs(series: Record<string, ArrayLike<number>>): [string, string][] {
  const pairs: [string, string][] = [];
  for (const group of axisGroups(series)) {
    for (const a of group) for (const b of group) if (a !== b) pairs.push([a, b]);
  }
  const score = ([a, b]: [string, string]) => (PREDICTION.test(a) ? 0 : 1) + (PREDICTION.test(b) ? 1 : 0);
  return pairs.sort((x, y) => score(x) - score(y));
}

/** The [start, end) timestep runs where a label series is 1. */
export function labelSpans(v: ArrayLike<number>, length = v.length): [number, number][] {
  const spans: [number, number][] = [];
  let start = -1;
  for (let t = 0; t <= length; t++) {
    const on = t < length && v[t] === 1;
    if (on && start < 0) start = t;
    if (!on && start >= 0) {
      spans.push([start, t]);
      start = -1;
    }
  }
  return spans;
}

/** A timestamp label for epoch seconds: date and time to the minute (seconds when the
 * visible span is under 10 minutes), in UTC, ISO-like. */
export function formatTimestamp(seconds: number, span: number): string {
  if (!Number.isFinite(seconds)) return "";
  const iso = new Date(seconds * 1000).toISOString();
  if (span >= 3 * 86400) return iso.slice(0, 10);
  return iso.slice(span < 86400 ? 11 : 5, span < 600 ? 19 : 16).replace("T", " ");
}
