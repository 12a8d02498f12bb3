// Downsampling for drawing: min/max per pixel bucket. Pure.

/** Bucket b of n over [start, end): the half-open index range it covers. */
export function bucketRange(start: number, end: number, n: number, b: number): [number, number] {
  const span = end - start;
  const lo = start + Math.floor((b * span) / n);
  const hi = Math.max(lo + 1, start + Math.floor(((b + 1) * span) / n));
  return [lo, Math.min(hi, end)];
}

/**
 * A [rows, cols] grid for a heatmap of a [time, units] array: rows are the units in
 * `order`, columns the timesteps in [t0, t1). When there are more timesteps (units) than
 * `maxCols` (`maxRows`), each cell covers a bucket and holds the bucket's min or max,
 * whichever lies further from `centre`, so spikes survive downsampling.
 */
export function heatmapGrid(
  data: Float32Array, units: number, order: ArrayLike<number>, t0: number, t1: number,
  maxCols: number, maxRows: number, centre = 0, out?: Float32Array,
): { grid: Float32Array; rows: number; cols: number } {
  const span = Math.max(0, t1 - t0);
  const cols = Math.max(1, Math.min(span, Math.max(1, Math.floor(maxCols))));
  const nUnits = order.length;
  const rows = Math.max(1, Math.min(nUnits, Math.max(1, Math.floor(maxRows))));
  const grid = out && out.length >= rows * cols ? out.subarray(0, rows * cols) : new Float32Array(rows * cols);
  if (span === 0 || nUnits === 0) return { grid: grid.fill(NaN), rows, cols };
  if (cols === span && rows === nUnits) {
    for (let r = 0; r < rows; r++) {
      const u = order[r];
      for (let c = 0; c < cols; c++) grid[r * cols + c] = data[(t0 + c) * units + u];
    }
    return { grid, rows, cols };
  }
  // One pass through the array in memory order (time-major); the min and max of one
  // column of cells at a time stay in a small buffer (in cache): 10,000 x 1,024 values
  // take tens of milliseconds.
  const rowOfUnit = new Int32Array(units).fill(-1);
  for (let r = 0; r < rows; r++) {
    const [r0, r1] = bucketRange(0, nUnits, rows, r);
    for (let k = r0; k < r1; k++) rowOfUnit[order[k]] = r;
  }
  const lo = scratch(0, rows);
  const hi = scratch(1, rows);
  for (let c = 0; c < cols; c++) {
    lo.fill(Infinity);
    hi.fill(-Infinity);
    const [c0, c1] = bucketRange(t0, t1, cols, c);
    for (let t = c0; t < c1; t++) {
      const base = t * units;
      for (let u = 0; u < units; u++) {
        const r = rowOfUnit[u];
        if (r < 0) continue;
        const v = data[base + u];
        if (v < lo[r]) lo[r] = v; // NaN compares false: skipped
        if (v > hi[r]) hi[r] = v;
      }
    }
    for (let r = 0; r < rows; r++) {
      const l = lo[r], h = hi[r];
      grid[r * cols + c] = l === Infinity ? NaN : centre - l > h - centre ? l : h;
    }
  }
  return { grid, rows, cols };
}

const scratchBuffers: Float32Array[] = [new Float32Array(0), new Float32Array(0)];

/** A reusable buffer of at least `size` floats (its contents are garbage). */
function scratch(which: number, size: number): Float32Array {
  if (scratchBuffers[which].length < size) scratchBuffers[which] = new Float32Array(size);
  return scratchBuffers[which].subarray(0, size);
}

/** Min and max of a strided track per bucket, for drawing a line as vertical spans. */
export function minMaxBuckets(
  get: (t: number) => number, t0: number, t1: number, n: number,
): { min: Float32Array; max: Float32Array; count: number } {
  const span = Math.max(0, t1 - t0);
  const count = Math.max(0, Math.min(span, Math.floor(n)));
  const min = new Float32Array(count), max = new Float32Array(count);
  for (let b = 0; b < count; b++) {
    const [lo, hi] = bucketRange(t0, t1, count, b);
    let mn = Infinity, mx = -Infinity;
    for (let t = lo; t < hi; t++) {
      const v = get(t);
      if (v === v) {
        if (v < mn) mn = v;
        if (v > mx) mx = v;
      }
    }
    min[b] = mn === Infinity ? NaN : mn;
    max[b] = mx === -Infinity ? NaN : mx;
  }
  return { min, max, count };
}

/** Finite min and max of values; [0, 1] when there are none; widened when flat. */
export function extent(values: Iterable<number>): [number, number] {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) {
    if (Number.isFinite(v)) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  if (lo === Infinity) return [0, 1];
  if (lo === hi) return [lo - 0.5, hi + 0.5];
  return [lo, hi];
}
