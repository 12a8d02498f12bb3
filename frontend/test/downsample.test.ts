import { test } from "node:test";
import assert from "node:assert/strict";
import { bucketRange, extent, heatmapGrid, minMaxBuckets } from "../src/downsample";

test("buckets tile the range without gaps or overlaps", () => {
  for (const [start, end, n] of [[0, 10, 3], [5, 10_005, 777], [0, 7, 7]]) {
    let next = start;
    for (let b = 0; b < n; b++) {
      const [lo, hi] = bucketRange(start, end, n, b);
      assert.equal(lo, next);
      assert.ok(hi > lo);
      next = hi;
    }
    assert.equal(next, end);
  }
});

test("heatmapGrid copies exactly when it fits, in the given unit order", () => {
  // [time=3, units=2]
  const data = Float32Array.from([1, 2, 3, 4, 5, 6]);
  const { grid, rows, cols } = heatmapGrid(data, 2, [1, 0], 0, 3, 100, 100);
  assert.equal(rows, 2);
  assert.equal(cols, 3);
  assert.deepEqual(Array.from(grid), [2, 4, 6, 1, 3, 5]);
  const zoomed = heatmapGrid(data, 2, [0, 1], 1, 3, 100, 100);
  assert.deepEqual(Array.from(zoomed.grid), [3, 5, 4, 6]);
});

test("heatmapGrid keeps the extreme of each bucket: a one-timestep spike survives", () => {
  const time = 10_000, units = 1024;
  const data = new Float32Array(time * units).fill(0.1);
  data[5_000 * units + 700] = -9;
  data[9_999 * units + 3] = 7;
  const order = Array.from({ length: units }, (_, i) => i);
  const { grid, rows, cols } = heatmapGrid(data, units, order, 0, time, 800, 300);
  assert.equal(cols, 800);
  assert.equal(rows, 300);
  let min = Infinity, max = -Infinity;
  for (const v of grid) { min = Math.min(min, v); max = Math.max(max, v); }
  assert.equal(min, -9);
  assert.equal(max, 7);
  assert.equal(grid[0], Math.fround(0.1));
});

test("minMaxBuckets spans each bucket and skips NaN", () => {
  const values = [0, 5, -1, NaN, 2, 3];
  const r = minMaxBuckets((t) => values[t], 0, 6, 3);
  assert.equal(r.count, 3);
  assert.deepEqual(Array.from(r.min), [0, -1, 2]);
  assert.deepEqual(Array.from(r.max), [5, -1, 3]);
  assert.equal(minMaxBuckets((t) => t, 0, 4, 100).count, 4);
});

test("extent is finite and never empty", () => {
  assert.deepEqual(extent([3, NaN, -1, Infinity]), [-1, 3]);
  assert.deepEqual(extent([]), [0, 1]);
  assert.deepEqual(extent([2, 2]), [1.5, 2.5]);
});
