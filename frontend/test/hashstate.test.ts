import { test } from "node:test";
import assert from "node:assert/strict";
import { DEFAULT_STATE, decodeState, encodeState, joinHash, splitHash } from "../src/hashstate";

test("the default state encodes to nothing", () => {
  assert.equal(encodeState(DEFAULT_STATE), "");
  assert.deepEqual(decodeState(""), DEFAULT_STATE);
});

test("a state survives the round trip, including hostile run names", () => {
  const state = {
    ...DEFAULT_STATE, run: "<img src=x onerror=alert(1)>&x=#y", tag: "enc/lstm", layer: 3, kind: "forget",
    sequence: 2, step: 40, order: "corr:price", units: [4, 9, 1], t0: 10, t1: 90, cursor: 33,
    compare: "run b", compareStep: 7, method: "tsne", colorBy: "price", speed: 30, loop: false,
    unitsB: [3], scale: "step", threshold: 2.5, residual: "prediction-price",
  };
  assert.deepEqual(decodeState(encodeState(state)), state);
});

test("malformed values fall back to defaults", () => {
  const s = decodeState("layer=-4&kind=%3Cscript%3E&step=x&order=evil&units=1.a.2&t0=9&t1=3&proj=pca2&speed=7&loop=maybe");
  assert.equal(s.layer, 0);
  assert.equal(s.kind, "cell");
  assert.equal(s.step, null);
  assert.equal(s.order, "auto");
  assert.deepEqual(s.units, [1, 2]);
  assert.equal(s.t0, null);
  assert.equal(s.method, "pca");
  assert.equal(s.speed, DEFAULT_STATE.speed);
  assert.equal(s.loop, true);
});

test("a bad threshold or scale falls back", () => {
  const s = decodeState("thr=-1&scale=weird");
  assert.equal(s.threshold, 3.5);
  assert.equal(s.scale, "fixed");
});

test("our key lives beside TensorBoard's hash keys", () => {
  const hash = joinHash("#lstm_states&tagFilter=a", "run=x&step=3");
  assert.equal(hash, "#lstm_states&tagFilter=a&lstm=run%3Dx%26step%3D3");
  const { rest, ours } = splitHash(hash);
  assert.deepEqual(rest, ["lstm_states", "tagFilter=a"]);
  assert.equal(ours, "run=x&step=3");
  assert.equal(joinHash(hash, ""), "#lstm_states&tagFilter=a");
});

test("significance orders, the significance series and the tracked unit round-trip", () => {
  const state = { ...DEFAULT_STATE, order: "sig:price", sigSeries: "depth", ident: 7 };
  assert.deepEqual(decodeState(encodeState(state)), state);
  assert.equal(decodeState("ident=-3").ident, null);
});

test("the gradient view's kind and row order round-trip, and odd values fall back", () => {
  const state = { ...DEFAULT_STATE, grad: "grad_hidden", gradRows: "horizon" };
  assert.deepEqual(decodeState(encodeState(state)), state);
  assert.equal(encodeState(DEFAULT_STATE), "");
  const odd = decodeState("grad=%3Cb%3E&grows=sideways");
  assert.equal(odd.grad, "");
  assert.equal(odd.gradRows, "states");
});
