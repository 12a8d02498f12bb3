import { test } from "node:test";
import assert from "node:assert/strict";
import type { StatesArray } from "../src/api";
import {
  binStart, decadeTicks, defaultGradKind, gradientReach, logDomain, logFraction, logHistogram, logIndex, magnitudeColor,
  magnitudeLut, magnitudeRange, magnitudes, median, powerOfTen, reachOf, timestepNorms, validBins,
} from "../src/gradmath";
import { luminance } from "../src/colors";

function array(data: number[], time: number, units: number, length = time, extra: Partial<StatesArray> = {}): StatesArray {
  return { shape: [time, units], data: Float32Array.from(data), lengths: [length], binned: false, start: 0, stop: time, ...extra };
}

test("the record's gradient: ∂L/∂c_t for an LSTM, ∂L/∂h_t for a GRU or RNN, none without gradients", () => {
  assert.equal(defaultGradKind(["cell", "hidden", "grad_hidden", "grad_cell"]), "grad_cell");
  assert.equal(defaultGradKind(["hidden", "reset", "grad_hidden"]), "grad_hidden");
  assert.equal(defaultGradKind(["cell", "hidden", "forget"]), null);
});

test("the log domain spans whole decades from the smallest positive magnitude to the largest, at most 8", () => {
  assert.deepEqual(logDomain(3.2, 0.004), { lo: -3, hi: 1 });
  assert.deepEqual(logDomain(1, 1), { lo: -1, hi: 0 }); // at least one decade
  assert.deepEqual(logDomain(100, 100), { lo: 1, hi: 2 });
  assert.deepEqual(logDomain(5e-2, 1e-30), { lo: -9, hi: -1 }); // capped at 8 decades below the top
  assert.deepEqual(logDomain(0.5, Infinity), { lo: -8, hi: 0 }); // nothing positive below: the cap
  assert.equal(logDomain(0, 0), null);
  assert.equal(logDomain(NaN, 1), null);
});

test("the colour scale is logarithmic: each decade takes the same share of the colours", () => {
  const d = { lo: -4, hi: 0 };
  assert.equal(logFraction(1, d), 1);
  assert.equal(logFraction(1e-4, d), 0);
  assert.equal(logFraction(1e-2, d), 0.5);
  assert.ok(Math.abs(logFraction(1e-3, d) - 0.25) < 1e-12);
  assert.equal(logFraction(0, d), 0); // zero: the bottom of the scale
  assert.equal(logFraction(1e-9, d), 0); // clamped
  assert.equal(logFraction(50, d), 1);
  assert.ok(Number.isNaN(logFraction(NaN, d)));
  assert.equal(logIndex(1e-2, d), 128);
  assert.equal(logIndex(1, d), 255);
  assert.equal(logIndex(0, d), 0);
  assert.equal(logIndex(NaN, d), 256);
  // a factor of 10 moves the colour by a quarter of the bar here, whatever the magnitude
  assert.equal(logIndex(3e-3, d) - logIndex(3e-4, d), logIndex(3e-1, d) - logIndex(3e-2, d));
});

test("the magnitude colours run from dark to bright: larger gradients are brighter", () => {
  let last = -1;
  for (let i = 0; i <= 10; i++) {
    const l = luminance(magnitudeColor(i / 10));
    assert.ok(l > last, `luminance rises at ${i / 10}`);
    last = l;
  }
  const lut = magnitudeLut(false);
  assert.equal(lut.length, 257);
  assert.notEqual(lut[0], lut[255]);
});

test("decade ticks and their labels in powers of ten", () => {
  assert.deepEqual(decadeTicks({ lo: -3, hi: 1 }), [-3, -2, -1, 0, 1]);
  const many = decadeTicks({ lo: -20, hi: 0 }, 6);
  assert.equal(many[0], -20);
  assert.equal(many[many.length - 1], 0);
  assert.ok(many.length <= 7);
  assert.equal(powerOfTen(0), "1");
  assert.equal(powerOfTen(1), "10");
  assert.equal(powerOfTen(-3), "10⁻³");
  assert.equal(powerOfTen(12), "10¹²");
});

test("norms over units per timestep, and the reach: timesteps back from the end at or above 1% of the largest", () => {
  // 2 units, 6 timesteps: the norm falls by 8x per step going back from the end
  const data: number[] = [];
  for (let t = 0; t < 6; t++) data.push(3 * 8 ** (t - 5), 4 * 8 ** (t - 5));
  const m = magnitudes(array(data, 6, 2));
  const norms = timestepNorms(m);
  assert.ok(Math.abs(norms[5] - 5) < 1e-6);
  assert.ok(Math.abs(norms[3] - 5 / 64) < 1e-7); // 1.6% of 5: reached; 5 / 512 (0.2%) is not
  // 5, 0.5, 0.05 (exactly 1%: reached), 0.005 (below): 3 timesteps
  assert.equal(gradientReach([5e-5, 5e-4, 5e-3, 0.05, 0.5, 5]), 3);
  assert.equal(reachOf(m), 3);
  // never below: the whole length; no gradient: null; NaN padding past the length is skipped
  assert.equal(gradientReach([1, 1, 1]), 3);
  assert.equal(gradientReach([0, 0]), null);
  assert.equal(gradientReach([]), null);
  assert.equal(gradientReach([0.001, 1, 1, NaN, NaN]), 2);
  // a dip below 1% stops the walk even when earlier timesteps rise again
  assert.equal(gradientReach([1, 1, 0.001, 1, 1]), 2);
  // the sign of the gradient does not matter
  assert.equal(reachOf(magnitudes(array([-0.001, 0, -0.5, 0, 2, 0], 3, 2))), 2);
});

test("padding past the sequence's length is neither norm nor reach", () => {
  const m = magnitudes(array([1e-6, 1, 1, 0, 0, 0], 6, 1, 3));
  assert.equal(validBins(m), 3);
  const norms = timestepNorms(m);
  assert.ok(Number.isNaN(norms[4]));
  assert.equal(reachOf(m), 2);
  assert.deepEqual(magnitudeRange(m), { max: 1, minPositive: Math.fround(1e-6) });
});

test("a binned long sequence: each bin's magnitude is its largest |g|, the reach counts the bins' timesteps", () => {
  // 10 timesteps in 4 bins of [0,2) [2,5) [5,7) [7,10): mins row, then maxes row, 1 unit
  const lo = [-1e-5, -1e-3, -0.5, -0.1];
  const hi = [1e-6, 2e-3, 0.2, 1];
  const a: StatesArray = { shape: [2, 4, 1], data: Float32Array.from([...lo, ...hi]), lengths: [10], binned: true, start: 0, stop: 10 };
  const m = magnitudes(a);
  assert.equal(m.binned, true);
  assert.deepEqual(Array.from(m.mag, (v) => Number(v.toPrecision(3))), [1e-5, 2e-3, 0.5, 1]);
  assert.equal(binStart(m, 1), 2);
  assert.equal(binStart(m, 4), 10);
  // bins 3 and 2 (1, 0.5) are reached; bin 1 (0.002 < 1% of 1) stops the walk: timesteps [5, 10)
  assert.equal(reachOf(m), 5);
});

test("memory horizons on log-spaced bins: whole decades, 4 bins to a decade, nulls counted apart", () => {
  const h = logHistogram([1.5, 2, 9, 11, 95, NaN, Infinity, -1, 0]);
  assert.equal(h.lo, 0);
  assert.equal(h.hi, 2);
  assert.equal(h.counts.length, 8);
  assert.equal(h.edges.length, 9);
  assert.equal(h.edges[0], 1);
  assert.ok(Math.abs(h.edges[4] - 10) < 1e-9);
  assert.equal(h.missing, 4);
  assert.equal(h.counts.reduce((a, b) => a + b, 0), 5);
  // 1.5 in [1, 1.78), 2 in [1.78, 3.16), 9 in [5.6, 10), 11 in [10, 17.8), 95 in [56, 100)
  assert.deepEqual(h.counts, [1, 1, 0, 1, 1, 0, 0, 1]);
  // a value on an edge goes to the bin it starts; the top edge to the last bin
  assert.deepEqual(logHistogram([10, 100]).counts, [1, 0, 0, 1]);
  const none = logHistogram([NaN]);
  assert.equal(none.missing, 1);
  assert.deepEqual(none.counts, [0]);
});

test("the median of the finite values", () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 2, NaN, 3]), 2.5);
  assert.equal(median([NaN]), null);
});
