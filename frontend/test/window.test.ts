import { test } from "node:test";
import assert from "node:assert/strict";
import { statesRange, StatesArray, statesUrl } from "../src/api";
import { heatmapGrid, minMaxBuckets } from "../src/downsample";
import {
  binOf, binsFor, BIN_QUANTUM, describeAt, difference, LONG_TIME, Segment, segmentAt, segmentBuckets,
  segmentGrid, segmentOf, tintAt, unitTrack, valueAt, viewOf, windowed, windowFor,
} from "../src/window";

/** What the backend computes for `bins`: per bin (the contract's ranges) the min and max per unit. */
function binned(data: Float32Array, units: number, start: number, stop: number, bins: number): StatesArray {
  const out = new Float32Array(2 * bins * units);
  for (let i = 0; i < bins; i++) {
    const b0 = start + Math.floor((i * (stop - start)) / bins), b1 = start + Math.floor(((i + 1) * (stop - start)) / bins);
    for (let u = 0; u < units; u++) {
      let lo = Infinity, hi = -Infinity;
      for (let t = b0; t < b1; t++) {
        lo = Math.min(lo, data[t * units + u]);
        hi = Math.max(hi, data[t * units + u]);
      }
      out[i * units + u] = lo;
      out[(bins + i) * units + u] = hi;
    }
  }
  return { shape: [2, bins, units], data: out, binned: true, start, stop, lengths: [stop] };
}

function full(data: Float32Array, units: number, start: number, stop: number): StatesArray {
  return { shape: [stop - start, units], data: data.slice(start * units, stop * units), binned: false, start, stop };
}

function wave(time: number, units: number): Float32Array {
  const data = new Float32Array(time * units);
  for (let t = 0; t < time; t++) for (let u = 0; u < units; u++) data[t * units + u] = Math.sin(t / 37 + u) * 0.5;
  return data;
}

test("short sequences are fetched whole; long ones per window, in bins of at least one per pixel", () => {
  assert.equal(windowFor(LONG_TIME, null, null, 1000), null);
  assert.equal(windowFor(0, null, null, 1000), null);
  assert.deepEqual(windowFor(100_000, null, null, 1000), { start: 0, stop: 100_000, bins: 1024 });
  assert.deepEqual(windowFor(100_000, 500, 900, 1300.5), { start: 500, stop: 900, bins: 1536 });
  assert.deepEqual(windowFor(100_000, 500, 200_000, 700), { start: 0, stop: 100_000, bins: 768 }); // a stale zoom
  assert.equal(binsFor(1), BIN_QUANTUM);
  assert.equal(binsFor(NaN), BIN_QUANTUM);
  const q = { run: "r", tag: "t", step: 3, layer: 0, kind: "cell", sequence: 1 };
  assert.equal(windowed(q, null), q);
  assert.equal(statesUrl(windowed(q, { start: 10, stop: 20, bins: 256 })),
    "./states?run=r&tag=t&step=3&layer=0&kind=cell&sequence=1&start=10&stop=20&bins=256");
});

test("the states headers: binned or not, the range, checked against the shape", () => {
  assert.deepEqual(statesRange([2, 1024, 64], true, "0", "100000", "1"), { binned: true, start: 0, stop: 100_000 });
  assert.deepEqual(statesRange([400, 64], true, "500", "900", "0"), { binned: false, start: 500, stop: 900 });
  assert.deepEqual(statesRange([2, 400, 64], false, "500", "900", "0"), { binned: false, start: 500, stop: 900 });
  // a server that predates ranges: the whole sequence
  assert.deepEqual(statesRange([48, 24], true, null, null, null), { binned: false, start: 0, stop: 48 });
  assert.deepEqual(statesRange([2, 48, 24], false, null, null, null), { binned: false, start: 0, stop: 48 });
  // without X-Binned, rank 3 with a sequence is binned
  assert.deepEqual(statesRange([2, 10, 4], true, "0", "50", null), { binned: true, start: 0, stop: 50 });
  assert.throws(() => statesRange([400, 64], true, "0", "900", "0"), /does not match/);
  assert.throws(() => statesRange([2, 1024, 64], true, "0", "1000", "1"), /does not match/); // not more timesteps than bins
  assert.throws(() => statesRange([3, 10, 64], true, "0", "100", "1"), /\[2, bins, units\]/);
  assert.throws(() => statesRange([2, 10, 64], true, null, null, "1"), /X-Start/);
  assert.throws(() => statesRange([4, 2], true, "-1", "3", "0"), /X-Start/);
  assert.throws(() => statesRange([4, 2], true, "1.5", "5.5", "0"), /X-Start/);
});

test("bin lookup follows the contract's ranges", () => {
  const s = segmentOf(binned(wave(1000, 1), 1, 100, 1000, 7));
  for (let t = 100; t < 1000; t++) {
    const i = binOf(s, t);
    const b0 = 100 + Math.floor((i * 900) / 7), b1 = 100 + Math.floor(((i + 1) * 900) / 7);
    assert.ok(b0 <= t && t < b1, `${t} in bin ${i} [${b0}, ${b1})`);
  }
  const at = segmentAt(s, 100, 0)!;
  assert.deepEqual([at.from, at.to], [100, 228]);
  assert.equal(segmentAt(s, 99, 0), null);
  assert.equal(segmentAt(s, 1000, 0), null);
});

test("a binned window draws like the whole array: extremes per cell, a one-timestep spike survives", () => {
  const time = 100_000, units = 8;
  const data = wave(time, units);
  data[61_234 * units + 5] = -9; // one timestep of one unit
  data[99_999 * units + 2] = 7;
  const order = [7, 6, 5, 4, 3, 2, 1, 0];
  const whole = heatmapGrid(data, units, order, 0, time, 1000, 100);
  // bins exactly one per column: the same grid as downsampling the whole array
  const exact = segmentGrid(segmentOf(binned(data, units, 0, time, 1000)), order, 0, time, 1000, 100);
  assert.deepEqual([exact.rows, exact.cols], [whole.rows, whole.cols]);
  assert.deepEqual(Array.from(exact.grid), Array.from(whole.grid));
  // more bins than columns (binsFor rounds up): every extreme is still there
  const more = segmentGrid(segmentOf(binned(data, units, 0, time, 1024)), order, 0, time, 1000, 100);
  const col = (t: number) => Math.floor((t * 1000) / time);
  assert.equal(more.grid[2 * 1000 + col(61_234)], -9); // unit 5 is row 2
  assert.equal(more.grid[5 * 1000 + 999], 7); // unit 2 is row 5
  assert.ok(more.grid.every((v) => Number.isFinite(v)));
});

test("a full-resolution window draws the exact values; columns outside it are empty", () => {
  const time = 50_000, units = 3;
  const data = wave(time, units);
  const seg = segmentOf(full(data, units, 20_000, 20_400));
  assert.equal(seg.binned, false);
  const g = segmentGrid(seg, [0, 1, 2], 20_000, 20_400, 1000, 100);
  assert.equal(g.cols, 400);
  assert.deepEqual(Array.from(g.grid), Array.from(heatmapGrid(data, units, [0, 1, 2], 20_000, 20_400, 1000, 100).grid));
  // while a wider window loads, the old one is drawn in place, the rest empty
  const wide = segmentGrid(seg, [0, 1, 2], 19_800, 20_600, 800, 3);
  assert.ok(Number.isNaN(wide.grid[0]) && Number.isNaN(wide.grid[799]));
  assert.equal(wide.grid[200], data[20_000 * units + 0]);
  assert.equal(wide.grid[599], data[20_399 * units + 0]);
});

test("line buckets of a binned window: min to max per pixel, like the whole track's", () => {
  const time = 30_000, units = 2;
  const data = wave(time, units);
  data[12_345 * units + 1] = 5;
  const s = segmentOf(binned(data, units, 0, time, 600));
  const b = segmentBuckets(s, 1, 0, time, 600);
  const w = minMaxBuckets((t) => data[t * units + 1], 0, time, 600);
  assert.deepEqual(Array.from(b.min), Array.from(w.min));
  assert.deepEqual(Array.from(b.max), Array.from(w.max));
  assert.equal(Math.max(...b.max), 5);
  const coarse = segmentBuckets(s, 1, 0, time, 250); // fewer columns than bins: merged
  assert.equal(coarse.count, 250);
  assert.equal(Math.max(...coarse.max), 5);
  const empty = segmentBuckets(s, 9, 0, time, 10);
  assert.ok(empty.min.every(Number.isNaN));
});

test("views: exact values at full resolution, min … max of a bin when binned, whole arrays as before", () => {
  const time = 10_000, units = 4;
  const data = wave(time, units);
  const whole: StatesArray = { shape: [time, units], data, binned: false, start: 0, stop: time, lengths: [9000] };
  const v = viewOf(whole, 4000);
  assert.equal(v.segment, null);
  assert.deepEqual([v.units, v.time, v.length], [4, time, 9000]);
  assert.equal(valueAt(v, 17, 2), data[17 * units + 2]);
  assert.equal(unitTrack(v, 2).get(17), data[17 * units + 2]);
  assert.equal(unitTrack(v, 2).buckets, undefined);

  const bv = viewOf(binned(data, units, 0, time, 100), time);
  assert.ok(bv.segment?.binned);
  assert.ok(Number.isNaN(valueAt(bv, 17, 2)));
  assert.match(describeAt(bv, 17, 2), /… .*\(min … max of timesteps 0–99\)/);
  const at = segmentAt(bv.segment!, 17, 2)!;
  assert.equal(tintAt(bv, 17, 2, 0), -at.lo > at.hi ? at.lo : at.hi);
  assert.equal(unitTrack(bv, 2).buckets!(0, time, 100).count, 100);

  const fv = viewOf(full(data, units, 300, 800), time);
  assert.equal(valueAt(fv, 300, 1), data[300 * units + 1]);
  assert.ok(Number.isNaN(valueAt(fv, 299, 1)));
  assert.equal(describeAt(fv, 301, 1), describeAt(v, 301, 1));
});

test("differences only between the same timesteps at full resolution", () => {
  const units = 2, time = 20_000;
  const a = wave(time, units), b = a.map((x) => x / 2);
  const fa = viewOf(full(a, units, 100, 200), time), fb = viewOf(full(b, units, 100, 200), time);
  const d = difference(fa, fb)!;
  assert.equal(d.segment!.start, 100);
  assert.equal(d.data[3], a[(100 + 1) * units + 1] - b[(100 + 1) * units + 1]);
  assert.equal(difference(fa, viewOf(full(b, units, 101, 201), time)), null);
  assert.equal(difference(viewOf(binned(a, units, 0, time, 10), time), viewOf(binned(b, units, 0, time, 10), time)), null);
  const wa: StatesArray = { shape: [4, 1], data: Float32Array.from([1, 2, 3, 4]), binned: false, start: 0, stop: 4 };
  const wb: StatesArray = { ...wa, data: Float32Array.from([0, 0, 0, 8]) };
  const w = difference(viewOf(wa, 4), viewOf(wb, 4))!;
  assert.equal(w.segment, null);
  assert.deepEqual(Array.from(w.data), [1, 2, 3, -4]);
  assert.equal(w.max, 4);
});

test("a segment of a binned array is made once and checks its shape", () => {
  const a = binned(wave(100, 2), 2, 0, 100, 10);
  const s: Segment = segmentOf(a);
  assert.equal(segmentOf(a), s);
  assert.deepEqual([s.count, s.units, s.lo.length, s.hi.length], [10, 2, 20, 20]);
  assert.throws(() => segmentOf({ shape: [2, 10, 2], data: new Float32Array(40), binned: false, start: 0, stop: 10 }), /one sequence/);
});
