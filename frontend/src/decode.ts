// Decoding of the binary arrays the backend serves. Pure: no DOM, no fetch.

export type Dtype = "float16" | "float32";

export interface NdArray {
  shape: number[];
  data: Float32Array;
  /** valid timesteps of each sequence, when known; later positions are padding */
  lengths?: number[];
}

let halfTable: Float32Array | null = null;

/** A lookup table from every IEEE 754 half-precision bit pattern to its float32 value. */
export function halfToFloatTable(): Float32Array {
  if (halfTable) return halfTable;
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exponent = (h >> 10) & 0x1f;
    const mantissa = h & 0x3ff;
    let value: number;
    if (exponent === 0) value = mantissa * 2 ** -24;
    else if (exponent === 31) value = mantissa ? NaN : Infinity;
    else value = (1 + mantissa / 1024) * 2 ** (exponent - 15);
    table[h] = sign * value;
  }
  halfTable = table;
  return table;
}

/** Parses a shape header such as "4,128,64", "[4, 128, 64]" or "4x128x64". */
export function parseShape(text: string | null | undefined): number[] {
  if (text == null) throw new Error("the response has no shape header");
  const parts = String(text).replace(/[\[\]()\s]/g, "").split(/[,x]/).filter((p) => p !== "");
  const shape = parts.map((p) => Number(p));
  if (!shape.length || shape.some((d) => !Number.isInteger(d) || d < 0 || d > 2 ** 31)) {
    throw new Error("bad shape header: " + JSON.stringify(text));
  }
  return shape;
}

/** Normalises a dtype header ("float16", "<f2", "f16", "float32", "<f4", "f32"). */
export function parseDtype(text: string | null | undefined): Dtype {
  const t = String(text ?? "").trim().toLowerCase();
  if (t === "float16" || t === "<f2" || t === "f2" || t === "f16" || t === "half") return "float16";
  if (t === "float32" || t === "<f4" || t === "f4" || t === "f32" || t === "float") return "float32";
  throw new Error("unsupported dtype: " + JSON.stringify(text));
}

/** Decodes little-endian raw bytes into float32 values, validating the size against the shape. */
export function decodeArray(buffer: ArrayBuffer, shape: number[], dtype: Dtype): NdArray {
  const count = shape.reduce((a, b) => a * b, 1);
  const itemsize = dtype === "float16" ? 2 : 4;
  if (buffer.byteLength !== count * itemsize) {
    throw new Error(`array holds ${buffer.byteLength} bytes, its shape [${shape}] of ${dtype} needs ${count * itemsize}`);
  }
  if (dtype === "float32" && littleEndianHost) return { shape, data: new Float32Array(buffer, 0, count) }; // no copy
  const data = new Float32Array(count);
  const view = new DataView(buffer);
  if (dtype === "float16") {
    const table = halfToFloatTable();
    if (littleEndianHost) {
      const halves = new Uint16Array(buffer, 0, count);
      for (let i = 0; i < count; i++) data[i] = table[halves[i]];
    } else {
      for (let i = 0; i < count; i++) data[i] = table[view.getUint16(2 * i, true)];
    }
  } else if (littleEndianHost) {
    return { shape, data: new Float32Array(buffer, 0, count) }; // no copy
  } else {
    for (let i = 0; i < count; i++) data[i] = view.getFloat32(4 * i, true);
  }
  return { shape, data };
}

const littleEndianHost = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Selects `sequence` of a [batch, time, units] array, or returns a [time, units] one as is. */
export function selectSequence(array: NdArray, sequence: number): NdArray {
  if (array.shape.length === 2) return array;
  if (array.shape.length !== 3) throw new Error(`expected [batch, time, units], got [${array.shape}]`);
  const [batch, time, units] = array.shape;
  if (sequence < 0 || sequence >= batch) throw new Error(`sequence ${sequence} is not in [0, ${batch})`);
  const size = time * units;
  return { shape: [time, units], data: array.data.subarray(sequence * size, (sequence + 1) * size) };
}

/** Encodes a [time, units] array as a NumPy .npy (version 1.0, little-endian float32). */
export function encodeNpy(array: NdArray): Uint8Array {
  const shape = array.shape.length === 1 ? `(${array.shape[0]},)` : `(${array.shape.join(", ")})`;
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': ${shape}, }`;
  const unpadded = 10 + header.length + 1;
  header += " ".repeat((64 - (unpadded % 64)) % 64) + "\n";
  const bytes = new Uint8Array(10 + header.length + array.data.length * 4);
  bytes.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0], 0);
  bytes[8] = header.length & 0xff;
  bytes[9] = header.length >> 8;
  for (let i = 0; i < header.length; i++) bytes[10 + i] = header.charCodeAt(i);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < array.data.length; i++) view.setFloat32(10 + header.length + 4 * i, array.data[i], true);
  return bytes;
}

/** CSV of a [time, units] array whose first row is timestep `start`: a header row of unit indices, one row per timestep. */
export function toCsv(array: NdArray, units?: number[], start = 0): string {
  const [time, width] = array.shape;
  const cols = units ?? Array.from({ length: width }, (_, i) => i);
  const lines = ["timestep," + cols.map((u) => "unit_" + u).join(",")];
  for (let t = 0; t < time; t++) {
    const row = [String(start + t)];
    for (const u of cols) row.push(formatCsvNumber(array.data[t * width + u]));
    lines.push(row.join(","));
  }
  return lines.join("\n") + "\n";
}

function formatCsvNumber(v: number): string {
  if (Number.isNaN(v)) return "nan";
  if (!Number.isFinite(v)) return v > 0 ? "inf" : "-inf";
  return String(Math.fround(v));
}
