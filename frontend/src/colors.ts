// Colour scales. Pure: lookup tables of packed RGBA (little-endian ImageData order).

export type Rgb = [number, number, number];

/** Diverging: blue for negative, the centre colour at the midpoint, red for positive. */
const NEGATIVE: Rgb[] = [[5, 48, 97], [33, 102, 172], [67, 147, 195], [146, 197, 222]];
const POSITIVE: Rgb[] = [[244, 165, 130], [214, 96, 77], [178, 24, 43], [103, 0, 31]];
export const LIGHT_CENTRE: Rgb = [247, 247, 247];
export const DARK_CENTRE: Rgb = [38, 38, 42];

function mix(a: Rgb, b: Rgb, f: number): Rgb {
  return [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f];
}

function ramp(stops: Rgb[], f: number): Rgb {
  const x = Math.min(Math.max(f, 0), 1) * (stops.length - 1);
  const i = Math.min(Math.floor(x), stops.length - 2);
  return mix(stops[i], stops[i + 1], x - i);
}

/** On a dark background the scale runs the other way in lightness: zero is the dark
 * neutral of the page and the extremes are the brightest, most saturated colours, so a
 * saturated value never looks like zero. */
const NEGATIVE_DARK: Rgb[] = [[125, 200, 255], [66, 146, 235], [40, 95, 175], [38, 58, 98]];
const POSITIVE_DARK: Rgb[] = [[104, 46, 46], [178, 62, 52], [236, 104, 72], [255, 178, 128]];

/** The colour at f in [0, 1] of the diverging scale (0.5 is the centre). */
export function divergingColor(f: number, dark = false): Rgb {
  const stops = dark ? [...NEGATIVE_DARK, DARK_CENTRE, ...POSITIVE_DARK] : [...NEGATIVE, LIGHT_CENTRE, ...POSITIVE];
  return ramp(stops, f);
}

/** Relative luminance (0..1) of an sRGB colour. */
export function luminance([r, g, b]: Rgb): number {
  const c = (v: number) => {
    const x = v / 255;
    return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4;
  };
  return 0.2126 * c(r) + 0.7152 * c(g) + 0.0722 * c(b);
}

/** 256 packed RGBA colours of the diverging scale, plus NaN's grey at index 256. */
export function divergingLut(dark: boolean): Uint32Array {
  const lut = new Uint32Array(257);
  for (let i = 0; i < 256; i++) lut[i] = pack(divergingColor(i / 255, dark));
  lut[256] = pack(dark ? [90, 90, 90] : [200, 200, 200]);
  return lut;
}

export function pack([r, g, b]: Rgb, a = 255): number {
  return ((a << 24) | (Math.round(b) << 16) | (Math.round(g) << 8) | Math.round(r)) >>> 0;
}

export function cssColor([r, g, b]: Rgb): string {
  return `rgb(${Math.round(r)},${Math.round(g)},${Math.round(b)})`;
}

/** A domain: values map linearly from [lo, hi] onto the lut, the centre at (lo + hi) / 2. */
export interface Domain {
  lo: number;
  hi: number;
}

/** Maps values to lut indices in place of a colour; NaN maps to 256. */
export function lutIndex(value: number, domain: Domain): number {
  if (value !== value) return 256;
  const f = (value - domain.lo) / (domain.hi - domain.lo);
  if (f <= 0) return 0;
  if (f >= 1) return 255;
  return (f * 255 + 0.5) | 0;
}

/** Kinds whose values lie in [0, 1] (sigmoid gates): their scale is centred at 0.5. */
export const SIGMOID_KINDS = new Set(["input", "forget", "output", "reset", "update"]);

/**
 * The colour domain of an array: symmetric about 0 (about 0.5 for sigmoid gates), wide
 * enough for the 99.5th percentile of |value - centre| so a single outlier does not wash
 * the map out; tanh-bounded kinds never use less than their natural range.
 */
export function domainFor(kind: string, data: Float32Array): Domain {
  if (SIGMOID_KINDS.has(kind)) return { lo: 0, hi: 1 };
  const m = robustMaxAbs(data, 0);
  const bounded = kind === "hidden" || kind === "candidate" || kind === "new";
  const half = bounded ? Math.max(Math.min(m, 1), 1e-6) : Math.max(m, 1e-6);
  return { lo: -half, hi: half };
}

/**
 * The colour domain of a known range [lo, hi] of values: symmetric about 0 (sigmoid
 * gates: [0, 1]), so that every value in the range has its own colour.
 */
export function rangeDomain(kind: string, lo: number, hi: number): Domain {
  if (SIGMOID_KINDS.has(kind)) return { lo: 0, hi: 1 };
  const half = Math.max(Math.abs(lo), Math.abs(hi));
  return Number.isFinite(half) && half > 0 ? { lo: -half, hi: half } : { lo: -1, hi: 1 };
}

/** The exact minimum and maximum of the finite values of an array. */
export function finiteExtent(data: ArrayLike<number>): [number, number] {
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return [lo, hi];
}

/** The 99.5th percentile of |v - centre| over finite values, from a strided sample of at most 8,192. */
export function robustMaxAbs(data: Float32Array, centre: number): number {
  const n = data.length;
  if (!n) return 1;
  const stride = Math.max(1, Math.ceil(n / 8192));
  const sample = new Float32Array(Math.ceil(n / stride));
  let count = 0;
  for (let i = 0; i < n; i += stride) {
    const v = data[i];
    if (v - v === 0) sample[count++] = Math.abs(v - centre); // finite
  }
  if (!count) return 1;
  const sorted = sample.subarray(0, count).sort(); // typed arrays sort numerically, natively
  return sorted[Math.min(count - 1, Math.floor(count * 0.995))];
}

/** A sequential scale for timesteps or series (viridis-like). */
const SEQUENTIAL: Rgb[] = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
export function sequentialColor(f: number): Rgb {
  return ramp(SEQUENTIAL, f);
}

/** Distinct line colours (Tableau 10). */
export const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
