import { test } from "node:test";
import assert from "node:assert/strict";
import type { StatesArray } from "../src/api";
import {
  alignArray, alignmentSummary, identityPoints, identitySteps, Match, matchLabel, orderBySignificance, parseMatch, parseSearch,
  parseSignificance,
} from "../src/matching";
import { short, shortQ, significanceSeries } from "../src/views/unittable";
import { alignmentNote } from "../src/views/states";
import * as win from "../src/window";

const array = (shape: number[], data: number[], binned = false): StatesArray => ({
  shape, data: Float32Array.from(data), binned, start: 0, stop: binned ? 8 : shape[0], lengths: [shape[binned ? 1 : 0]],
});

test("the match answer: unpaired units are -1 with NaN similarity and sign 0", () => {
  const m = parseMatch({ units: [2, null, 0], similarity: [0.9, null, 0.5], sign: [-1, null, 1], cka: 0.75, step: 3, other_step: 4, other_units: 3 });
  assert.deepEqual(Array.from(m.units), [2, -1, 0]);
  assert.deepEqual(Array.from(m.sign), [-1, 0, 1]);
  assert.ok(Number.isNaN(m.similarity[1]));
  assert.ok(Math.abs(m.similarity[0] - 0.9) < 1e-6);
  assert.equal(m.cka, 0.75);
  assert.equal(m.step, 3);
  assert.equal(m.otherStep, 4);
  assert.equal(m.otherUnits, 3);
  assert.ok(Number.isNaN(parseMatch({ units: [], cka: null }).cka));
});

test("aligned rows: partner columns, flipped about the centre where the sign is -1, empty where unpaired", () => {
  // b: 2 timesteps x 3 units
  const b = array([2, 3], [1, 2, 3, 4, 5, 6]);
  const m = parseMatch({ units: [2, 0, null, 1], similarity: [1, 1, null, 1], sign: [1, -1, null, 1] });
  const a = alignArray(b, m, 0);
  assert.deepEqual(a.shape, [2, 4]);
  const rows = Array.from(a.data);
  assert.deepEqual(rows.slice(0, 2), [3, -1]);
  assert.ok(Number.isNaN(rows[2]));
  assert.deepEqual(rows.slice(3, 6), [2, 6, -4]);
  assert.ok(Number.isNaN(rows[6]));
  assert.equal(rows[7], 5);
  // a sigmoid gate reflects about 0.5
  const g = alignArray(array([1, 1], [0.2]), parseMatch({ units: [0], similarity: [1], sign: [-1] }), 0.5);
  assert.ok(Math.abs(g.data[0] - 0.8) < 1e-6);
});

test("a flipped binned unit swaps its minima and maxima", () => {
  // [2, bins=1, units=2]: minima [0, -1], maxima [2, 3]
  const b = array([2, 1, 2], [0, -1, 2, 3], true);
  const m = parseMatch({ units: [1, 0], similarity: [1, 1], sign: [-1, 1] });
  const a = alignArray(b, m, 0);
  assert.deepEqual(a.shape, [2, 1, 2]);
  assert.deepEqual(Array.from(a.data), [-3, 0, 1, 2]); // unit 0: -(max 3) .. -(min -1)
});

test("an aligned copy of a permuted, sign-flipped run subtracts to zero", () => {
  // a: 3 timesteps x 3 units; b holds a's units permuted, unit 1 negated
  const aData = [1, 2, 3, 4, 5, 6, 7, 8, 9];
  const perm = [2, 0, 1]; // b's unit j holds a's unit perm[j]
  const bData: number[] = [];
  for (let t = 0; t < 3; t++) for (let j = 0; j < 3; j++) bData.push((perm[j] === 1 ? -1 : 1) * aData[t * 3 + perm[j]]);
  // a's unit i is paired with b's unit perm.indexOf(i)
  const m = parseMatch({ units: [1, 2, 0], similarity: [1, 1, 1], sign: [1, -1, 1], cka: 1 });
  const aligned = alignArray(array([3, 3], bData), m, 0);
  const d = win.difference(win.viewOf(array([3, 3], aData), 3), win.viewOf(aligned, 3))!;
  assert.ok(d.max < 1e-5, String(d.max));
  assert.equal(alignmentSummary(m).flipped, 1);
  assert.equal(matchLabel(m, 1), "−2");
  assert.equal(matchLabel(m, 0), "1");
});

test("the legend says what was flipped, left empty and matched", () => {
  const m: Match = parseMatch({ units: [1, 0, null], similarity: [0.9, 0.7, null], sign: [1, -1, null], cka: 0.5, other_units: 2 });
  const query = { run: "a", tag: "t", step: 1, layer: 0, kind: "cell", other_run: "b", other_tag: "t", other_step: 1 };
  const note = alignmentNote({ query, match: m, matchedAt: [1, 1], view: null, error: "" }, "a", "b", "cell");
  assert.match(note, /1 of 3 rows flipped/);
  assert.match(note, /mean \|r\| 0\.80/);
  assert.match(note, /CKA 0\.500/);
  assert.match(note, /1 row unmatched \(b has fewer units\)/);
  assert.match(note, /sign-flipped/);
  assert.match(alignmentNote({ query, match: m, matchedAt: [0, 0], view: null, error: "" }, "a", "b", "forget"), /1 − value.*matched at steps 0 \/ 0/);
  assert.match(alignmentNote({ query, match: null, matchedAt: null, view: null, error: "HTTP 400: batch differs" }, "a", "b", "cell"), /could not be matched.*batch differs/);
});

test("order by significance: ascending q, then p, then |r|; units without q last", () => {
  const s = parseSignificance({ series: "x", max_lag: 20, lag: [0, 4, 1, null, 2], r: [0.1, 0.9, -0.8, null, 0.85], p: [0.5, 1e-9, 1e-6, null, 1e-6], q: [0.5, 1e-8, 1e-5, null, 1e-5] })!;
  assert.deepEqual(orderBySignificance(s, 5), [1, 4, 2, 0, 3]);
  assert.equal(s.maxLag, 20);
  assert.ok(Number.isNaN(s.lag[3]));
  assert.equal(parseSignificance(undefined), null);
  assert.equal(parseSignificance({ series: "x" }), null);
});

test("search matches: well-formed ones only, nearest first", () => {
  const m = parseSearch({ matches: [
    { step: 2, sequence: 1, start: 5, distance: 0.5 }, { step: 1, sequence: 0, start: 9, distance: 0.1 },
    { step: "x", sequence: 0, start: 0, distance: 0 }, { step: 3, sequence: -1, start: 0, distance: 0 }, { step: 4, sequence: 2, start: 0, distance: null },
  ] });
  assert.deepEqual(m.map((x) => [x.step, x.sequence, x.start]), [[1, 0, 9], [2, 1, 5], [4, 2, 0]]);
  assert.deepEqual(parseSearch(null), []);
});

test("a unit's identity: its partner at each step, the reference itself at |r| 1", () => {
  const matches = new Map<number, Match>([
    [0, parseMatch({ units: [3, 0], similarity: [0.2, 0.9], sign: [-1, 1] })],
    [10, parseMatch({ units: [1, null], similarity: [0.95, null], sign: [1, null] })],
  ]);
  const p = identityPoints(0, 5, [0, 5, 10, 15], matches);
  assert.deepEqual(p.map((x) => [x.step, x.unit, x.sign]), [[0, 3, -1], [5, 0, 1], [10, 1, 1]]);
  assert.ok(Math.abs(p[0].similarity - 0.2) < 1e-6);
  assert.equal(identityPoints(1, 5, [10], matches)[0].unit, -1);
});

test("identity steps: at most n, evenly spaced, the reference always in", () => {
  const steps = Array.from({ length: 100 }, (_, i) => i * 10);
  const s = identitySteps(steps, 370, 40);
  assert.ok(s.length <= 40);
  assert.equal(s[0], 0);
  assert.equal(s[s.length - 1], 990);
  assert.ok(s.includes(370));
  assert.deepEqual(identitySteps([1, 2, 3], 2, 40), [1, 2, 3]);
  assert.deepEqual([...identitySteps(steps, 990, 40)].sort((a, b) => a - b), identitySteps(steps, 990, 40));
});

test("the unit table: a short number display and the series its significance is of", () => {
  assert.equal(short(3.2e-12), "3e-12");
  assert.equal(short(0.123456), "0.12");
  assert.equal(short(0.123456, 3), "0.123");
  assert.equal(shortQ(0), "<1e-15");
  assert.equal(shortQ(0.0123), "0.012");
  assert.equal(short(NaN), "–");
  const series = { series: { time: new Float64Array(3), label: Float64Array.from([0, 1, 0]), price: Float64Array.from([1, 2, 3]) } } as any;
  assert.equal(significanceSeries("", "auto", series), "price");
  assert.equal(significanceSeries("", "sig:label", series), "label");
  assert.equal(significanceSeries("label", "corr:price", series), "label");
  assert.equal(significanceSeries("gone", "variance", series), "price");
  assert.equal(significanceSeries("", "auto", undefined), "");
});
