import { test } from "node:test";
import assert from "node:assert/strict";
import { divergingColor, divergingLut, domainFor, lutIndex, pack, robustMaxAbs, LIGHT_CENTRE } from "../src/colors";

test("the diverging scale is centred: 0.5 is the centre colour, ends are blue and red", () => {
  assert.deepEqual(divergingColor(0.5).map(Math.round), LIGHT_CENTRE);
  const [r0, , b0] = divergingColor(0);
  const [r1, , b1] = divergingColor(1);
  assert.ok(b0 > r0, "negative end is blue");
  assert.ok(r1 > b1, "positive end is red");
});

test("the lut packs RGBA little-endian and reserves 256 for NaN", () => {
  assert.equal(pack([1, 2, 3]), 0xff030201);
  const lut = divergingLut(false);
  assert.equal(lut.length, 257);
  assert.notEqual(lut[0], lut[255]);
  assert.notEqual(divergingLut(true)[128], lut[128]);
});

test("lutIndex maps the domain onto 0..255 and clamps", () => {
  const d = { lo: -2, hi: 2 };
  assert.equal(lutIndex(-2, d), 0);
  assert.equal(lutIndex(2, d), 255);
  assert.equal(lutIndex(0, d), 128);
  assert.equal(lutIndex(-100, d), 0);
  assert.equal(lutIndex(100, d), 255);
  assert.equal(lutIndex(NaN, d), 256);
});

test("domains: symmetric about 0, sigmoid gates on [0, 1], robust to one outlier", () => {
  const data = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i) * 3);
  data[7] = 1000;
  const d = domainFor("cell", data);
  assert.equal(d.lo, -d.hi);
  assert.ok(d.hi < 10 && d.hi > 2.5);
  assert.deepEqual(domainFor("forget", data), { lo: 0, hi: 1 });
  assert.equal(domainFor("hidden", data).hi, 1);
  assert.equal(robustMaxAbs(new Float32Array(0), 0), 1);
  assert.equal(robustMaxAbs(Float32Array.from([NaN, NaN]), 0), 1);
});
