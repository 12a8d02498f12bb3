import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeArray, encodeNpy, halfToFloatTable, parseDtype, parseShape, selectSequence, toCsv } from "../src/decode";

test("half table decodes the special values", () => {
  const t = halfToFloatTable();
  assert.equal(t[0x3c00], 1);
  assert.equal(t[0xc000], -2);
  assert.equal(t[0x7bff], 65504);
  assert.equal(t[0x0001], 2 ** -24);
  assert.equal(t[0x7c00], Infinity);
  assert.equal(t[0xfc00], -Infinity);
  assert.ok(Number.isNaN(t[0x7e00]));
  assert.ok(Object.is(t[0x8000], -0));
});

test("decodeArray reads float16 and float32 little-endian and checks the size", () => {
  const halves = new Uint8Array([0x00, 0x3c, 0x00, 0xc0, 0x00, 0x38]);
  const a = decodeArray(halves.buffer, [1, 3], "float16");
  assert.deepEqual(Array.from(a.data), [1, -2, 0.5]);
  const f = new Float32Array([1.5, -3.25]);
  assert.deepEqual(Array.from(decodeArray(f.buffer, [2], "float32").data), [1.5, -3.25]);
  assert.throws(() => decodeArray(new ArrayBuffer(5), [2], "float16"), /needs 4/);
});

test("shape and dtype headers in several spellings", () => {
  assert.deepEqual(parseShape("4,128,64"), [4, 128, 64]);
  assert.deepEqual(parseShape("[4, 128, 64]"), [4, 128, 64]);
  assert.deepEqual(parseShape("2x3"), [2, 3]);
  assert.throws(() => parseShape("a,b"));
  assert.throws(() => parseShape(null));
  assert.throws(() => parseShape("-1,2"));
  assert.equal(parseDtype("<f2"), "float16");
  assert.equal(parseDtype("float32"), "float32");
  assert.throws(() => parseDtype("int64"));
});

test("selectSequence slices one sequence out of a batch", () => {
  const data = Float32Array.from({ length: 2 * 3 * 2 }, (_, i) => i);
  const s = selectSequence({ shape: [2, 3, 2], data }, 1);
  assert.deepEqual(s.shape, [3, 2]);
  assert.deepEqual(Array.from(s.data), [6, 7, 8, 9, 10, 11]);
  assert.throws(() => selectSequence({ shape: [2, 3, 2], data }, 2));
});

test("encodeNpy writes a 64-byte aligned v1.0 header and float32 data", () => {
  const bytes = encodeNpy({ shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) });
  assert.deepEqual(Array.from(bytes.slice(0, 8)), [0x93, 78, 85, 77, 80, 89, 1, 0]);
  const headerLength = bytes[8] | (bytes[9] << 8);
  assert.equal((10 + headerLength) % 64, 0);
  const header = new TextDecoder().decode(bytes.slice(10, 10 + headerLength));
  assert.match(header, /'shape': \(2, 3\)/);
  assert.ok(header.endsWith("\n"));
  const values = new Float32Array(bytes.slice(10 + headerLength).buffer);
  assert.deepEqual(Array.from(values), [1, 2, 3, 4, 5, 6]);
});

test("toCsv writes one row per timestep", () => {
  const csv = toCsv({ shape: [2, 2], data: Float32Array.from([0.5, NaN, -1, Infinity]) });
  assert.equal(csv, "timestep,unit_0,unit_1\n0,0.5,nan\n1,-1,inf\n");
  assert.equal(toCsv({ shape: [1, 3], data: Float32Array.from([1, 2, 3]) }, [2]), "timestep,unit_2\n0,3\n");
});
