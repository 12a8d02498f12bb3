import { test } from "node:test";
import assert from "node:assert/strict";
import { normaliseTag, parseOverview, parseProjection, routeUrl, statesUrl } from "../src/api";

test("routes are relative to the plugin's base and escape every parameter", () => {
  assert.equal(routeUrl("runs"), "./runs");
  assert.equal(routeUrl("steps", { run: "<img src=x>&a=b", tag: "t", skip: null }), "./steps?run=%3Cimg+src%3Dx%3E%26a%3Db&tag=t");
  const q = { run: "r", tag: "t", step: 3, layer: 1, kind: "cell", sequence: 0 };
  assert.equal(statesUrl(q, true), "./states?run=r&tag=t&step=3&layer=1&kind=cell&sequence=0&format=npy");
});

test("tag info from the runs route, with defaults for what is missing", () => {
  const info = normaliseTag({ kind: "gru", layers: 2, directions: 2, batch: 4, time: 9, units: { hidden: 8, reset: 8 },
    kinds: ["hidden", "reset"], steps: 3, first_step: 0, last_step: 2, description: "<p>x</p>" });
  assert.equal(info.directions, 2);
  assert.deepEqual(info.units, { hidden: 8, reset: 8 });
  const empty = normaliseTag(null);
  assert.equal(empty.layers, 1);
  assert.deepEqual(empty.kinds, ["hidden"]);
  assert.equal(empty.description, "");
});

test("projections: per step, the points of the requested sequence out of the flat coordinates", () => {
  const p = parseProjection({
    method: "pca", method_used: "pca", steps: [0, 5], sequences: [1], lengths: [[2], [3]], offsets: [0, 2],
    coordinates: [0, 1, 2, 3, 4, 5, 6, 7, null, 9], bounds: [0, 1, 8, 9], explained_variance: [0.5, 0.25],
  });
  assert.deepEqual(p.steps, [0, 5]);
  assert.deepEqual(Array.from(p.points.get(0)!), [0, 1, 2, 3]);
  assert.deepEqual(Array.from(p.points.get(5)!).slice(0, 4), [4, 5, 6, 7]);
  assert.ok(Number.isNaN(p.points.get(5)![4]));
  assert.deepEqual(p.bounds, [0, 1, 8, 9]);
  assert.deepEqual(p.explained, [0.5, 0.25]);
  assert.equal(parseProjection({}).points.size, 0);
});

test("projections of several sequences: one path per sequence and step", () => {
  const p = parseProjection({
    method: "pca", method_used: "pca", steps: [0, 5], sequences: [0, 3], lengths: [[2, 1], [1, 2]], offsets: [0, 3],
    coordinates: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], bounds: [0, 1, 10, 11], explained_variance: null,
  });
  assert.deepEqual(p.sequences, [0, 3]);
  assert.deepEqual(p.paths.get(0)!.map((a) => Array.from(a)), [[0, 1, 2, 3], [4, 5]]);
  assert.deepEqual(p.paths.get(5)!.map((a) => Array.from(a)), [[6, 7], [8, 9, 10, 11]]);
  assert.deepEqual(Array.from(p.points.get(5)!), [6, 7]);
});

test("the overview: what each step holds, each step's gradient reach (also a statistic) and the gradients' extremes", () => {
  const raw = {
    rows: [[0, "cell"], [0, "hidden"], [0, "grad_cell"], [0, "grad_hidden"]],
    columns: ["mean_abs", "std", "saturated", "dead", "change", "min", "max"],
    steps: [0, 1, 2],
    values: [
      [[1, 1, 0, 0, 0, -2, 2], [1, 1, 0, 0, 0, -1, 1], [0.1, 0.1, null, null, 0, -0.5, 0.25], [0.1, 0.1, null, null, 0, -0.1, 0.3]],
      [[1, 1, 0, 0, 0, -2, 2], [1, 1, 0, 0, 0, -1, 1], null, null],
      [[1, 1, 0, 0, 0, -2, 2], [1, 1, 0, 0, 0, -1, 1], [0.1, 0.1, null, null, 0, -3, 0.5], [0.1, 0.1, null, null, 0, -0.1, 0.3]],
    ],
    kinds: [["cell", "hidden", "grad_cell", "grad_hidden"], ["cell", "hidden"], ["cell", "hidden", "grad_cell", "grad_hidden"]],
    gradient_reach: [12, null, 40],
  };
  const o = parseOverview(raw, 0, "cell");
  assert.deepEqual(o.kinds, raw.kinds);
  assert.deepEqual(Array.from(o.reach!), [12, NaN, 40]);
  assert.deepEqual(Array.from(o.stats["grad reach"]), [12, NaN, 40]);
  assert.deepEqual(Array.from(o.gradMax["0|grad_cell"]), [0.5, NaN, 3]);
  assert.deepEqual(Array.from(o.gradMax["0|grad_hidden"]), [Math.fround(0.3), NaN, Math.fround(0.3)]);
  // a backend without gradients: no kinds, no reach, no statistic
  const old = parseOverview({ ...raw, kinds: undefined, gradient_reach: undefined }, 0, "cell");
  assert.equal(old.kinds, null);
  assert.equal(old.reach, null);
  assert.equal("grad reach" in old.stats, false);
  assert.deepEqual(normaliseTag({ kind: "lstm", gradient_kinds: ["grad_cell", "grad_hidden"] }).gradient_kinds, ["grad_cell", "grad_hidden"]);
  assert.deepEqual(normaliseTag({ kind: "lstm" }).gradient_kinds, []);
});
