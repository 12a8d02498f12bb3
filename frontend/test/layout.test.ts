import { test } from "node:test";
import assert from "node:assert/strict";
import { formatValue, isPermutation, linear, nearestStep, orderByScore, rowAt, ticks, timestepAt, timestepX } from "../src/layout";

test("linear scales invert", () => {
  const s = linear([0, 10], [100, 200]);
  assert.equal(s(5), 150);
  assert.equal(s.invert(150), 5);
  assert.equal(linear([1, 1], [0, 10]).invert(3), 1);
});

test("pixel to timestep and back", () => {
  assert.equal(timestepAt(0, 0, 100, 0, 10), 0);
  assert.equal(timestepAt(99.9, 0, 100, 0, 10), 9);
  assert.equal(timestepAt(150, 100, 100, 20, 30), 25);
  assert.equal(timestepAt(-1, 0, 100, 0, 10), null);
  assert.equal(timestepX(25, 100, 100, 20, 30), 150);
  assert.equal(rowAt(5, 0, 10, 2), 1);
  assert.equal(rowAt(11, 0, 10, 2), null);
});

test("ticks are round numbers inside the range", () => {
  assert.deepEqual(ticks(0, 10, 5), [0, 2, 4, 6, 8, 10]);
  assert.deepEqual(ticks(-1, 1, 4), [-1, -0.5, 0, 0.5, 1]);
});

test("values, steps and orders", () => {
  assert.equal(formatValue(0.123456), "0.1235");
  assert.equal(formatValue(-2), "-2");
  assert.equal(formatValue(1e-5), "1.000e-5");
  assert.equal(formatValue(NaN), "NaN");
  assert.equal(nearestStep([0, 10, 20], 15), 10);
  assert.equal(nearestStep([5, 10], 1), 5);
  assert.equal(nearestStep([], 1), null);
  assert.deepEqual(orderByScore([1, 3, NaN, 3]), [1, 3, 0, 2]);
  assert.ok(isPermutation([2, 0, 1], 3));
  assert.ok(!isPermutation([0, 0, 1], 3));
  assert.ok(!isPermutation([0, 1], 3));
});

test("evenly spaced steps keep the first and the last", async () => {
  const { evenlySpaced } = await import("../src/layout");
  assert.deepEqual(evenlySpaced([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 3), [0, 5, 10]);
  assert.deepEqual(evenlySpaced([1, 2], 5), [1, 2]);
  assert.deepEqual(evenlySpaced([1, 2, 3], 1), [3]);
});
