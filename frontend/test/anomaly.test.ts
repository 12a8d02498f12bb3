import { test } from "node:test";
import assert from "node:assert/strict";
import { poolScores, scoreFlags } from "../src/anomaly";
import { axisGroups, formatTimestamp, isLabelSeries, isTimeSeries, labelSpans, residualPairs } from "../src/seriesaxes";

test("flags are scored against label runs: precision, recall and lead time", () => {
  const label = new Float32Array(100);
  label[20] = 1; label[21] = 1; label[60] = 1; label[90] = 1;
  assert.deepEqual(labelSpans(label), [[20, 22], [60, 61], [90, 91]]);
  // 18 detects the first event 2 steps early, 62 detects the second 2 late, 40 is false
  const s = scoreFlags([18, 40, 62], label, 100);
  assert.equal(s.events, 3);
  assert.equal(s.flags, 3);
  assert.equal(s.truePositives, 2);
  assert.equal(s.precision, 2 / 3);
  assert.equal(s.recall, 2 / 3);
  assert.equal(s.lead, 0); // (+2 and -2) / 2
  // past the sequence's length nothing counts
  assert.equal(scoreFlags([95], label, 80).flags, 0);
  const pooled = poolScores([s, scoreFlags([], label, 100)]);
  assert.equal(pooled.events, 6);
  assert.equal(pooled.recall, 2 / 6);
  assert.ok(Number.isNaN(scoreFlags([], new Float32Array(10), 10).precision));
});

test("series axes: labels, time, shared axes and residual pairs", () => {
  const price = Float32Array.from({ length: 50 }, (_, i) => 100 + Math.sin(i));
  const prediction = Float32Array.from({ length: 50 }, (_, i) => 100 + Math.sin(i + 0.3));
  const ret = Float32Array.from({ length: 50 }, (_, i) => 0.01 * Math.cos(i));
  const anomaly = new Float32Array(50);
  anomaly[7] = 1;
  assert.ok(isLabelSeries(anomaly));
  assert.ok(!isLabelSeries(new Float32Array(5)));
  assert.ok(!isLabelSeries(price));
  assert.deepEqual(axisGroups({ price, prediction, anomaly, ret }), [["price", "prediction"], ["ret"]]);
  assert.deepEqual(residualPairs({ price, prediction, anomaly })[0], ["prediction", "price"]);
  const time = Float32Array.from({ length: 3 }, (_, i) => 1.7e9 + 60 * i);
  assert.ok(isTimeSeries("time", Array.from(time)));
  assert.ok(!isTimeSeries("clock", Array.from(time)));
  assert.equal(formatTimestamp(1_700_000_000, 3600), "22:13");
  assert.equal(formatTimestamp(1_700_000_000, 10 * 86400), "2023-11-14");
});
