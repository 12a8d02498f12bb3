import { test } from "node:test";
import assert from "node:assert/strict";
import { PALETTE } from "../src/colors";
import { colouring, legendText } from "../src/trajcolor";

const base = { sequences: [0, 2], t0: 0, t1: 4, series: null, tokens: null };

test("by timestep: a ramp from t0 to t1 - 1", () => {
  const c = colouring({ ...base, colorBy: "time" });
  assert.equal(legendText(c.legend), "colour: timestep from 0 to 3");
  assert.notEqual(c.colorOf(0, 0), c.colorOf(0, 3));
  assert.equal(c.colorOf(0, 2), c.colorOf(1, 2));
});

test("by sequence: one colour per path, named by its sequence", () => {
  const c = colouring({ ...base, colorBy: "#sequence" });
  assert.equal(legendText(c.legend), "colour: sequence: #0, #2");
  assert.equal(c.colorOf(0, 1), PALETTE[0]);
  assert.equal(c.colorOf(1, 3), PALETTE[1]);
});

test("by token: the most frequent tokens of the shown sequences, the rest 'other'", () => {
  const tokens = [["a", "b", "a", "c"], ["x", "x", "x", "x"], ["a", "a", "b", "b"]];
  const c = colouring({ ...base, colorBy: "#token", tokens });
  assert.equal(legendText(c.legend), "colour: token: a, b, c");
  assert.equal(c.colorOf(0, 0), c.colorOf(1, 0));
  assert.notEqual(c.colorOf(0, 0), c.colorOf(0, 1));
  const none = colouring({ ...base, colorBy: "#token" });
  assert.match(none.note, /no tokens/);
});

test("by a series: each sequence's own values on one ramp over the shown sequences", () => {
  const series = { price: [Float64Array.from([0, 1, 2, 3]), Float64Array.from([9, 9, 9, 9]), Float64Array.from([10, 10, 10, 10])] };
  const c = colouring({ ...base, colorBy: "price", series });
  assert.equal(legendText(c.legend), "colour: price from 0 to 10");
  assert.equal(c.colorOf(1, 0), c.colorOf(1, 3));
  assert.notEqual(c.colorOf(0, 0), c.colorOf(1, 0));
  assert.match(colouring({ ...base, colorBy: "missing", series }).note, /no series "missing"/);
});
