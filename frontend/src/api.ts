// A small typed client for the backend routes under /data/plugin/lstm_states/.
// The iframe's <base href="plugin/lstm_states/"> makes "./runs" reach them.

import { decodeArray, NdArray, parseDtype, parseShape } from "./decode";
import { Match, parseMatch, parseSearch, parseSignificance, SearchMatch, Significance } from "./matching";

export interface TagInfo {
  kind: string; // lstm | gru | rnn
  layers: number;
  directions: number;
  batch: number;
  time: number;
  units: Record<string, number>;
  kinds: string[];
  /** the gradient kinds (`grad_cell`, `grad_hidden`) a step of this tag holds when logged
   * with a loss; which steps do: the overview's `kinds` */
  gradient_kinds: string[];
  steps: number;
  first_step: number | null;
  last_step: number | null;
  description: string; // safe HTML rendered by the backend
  /** the backend cut the description (to its length cap) */
  description_truncated: boolean;
  /** characters of the whole description, when known */
  description_chars: number | null;
}

export type Runs = Record<string, Record<string, TagInfo>>;

export interface StepInfo {
  step: number;
  wall_time: number;
}

export interface Series {
  series: Record<string, Float64Array>; // [time] of the requested sequence (float64: `time` holds epoch seconds)
  tokens: string[] | null; // of the requested sequence
  /** every sequence's tokens, when logged */
  allTokens: string[][] | null;
  /** every sequence's values: name -> [sequence] -> [time] */
  all: Record<string, Float64Array[]>;
  /** valid timesteps of each sequence, when given */
  lengths: number[];
}

export interface Overview {
  steps: number[];
  /** statistic name -> values per step, for the requested layer and kind */
  stats: Record<string, Float32Array>;
  /** exact minimum and maximum per step over every valid position (version 2 records of
   * a backend that sends the `min` and `max` columns), else null */
  min: Float32Array | null;
  max: Float32Array | null;
  /** the array kinds each step holds (null for a step, or all, when the backend does not say) */
  kinds: (string[] | null)[] | null;
  /** each step's gradient reach (timesteps, the last layer, over the probe), NaN where
   * none; null when the backend sends none */
  reach: Float32Array | null;
  /** per gradient row ("layer|kind"): each step's largest |value| (its stored extremes),
   * NaN where unknown */
  gradMax: Record<string, Float32Array>;
}

export interface Changes {
  norm: Float32Array;
  cosine: Float32Array;
  zscore: Float32Array;
  anomalies: number[];
}

export interface Units {
  variance: Float32Array;
  dead: Float32Array;
  saturation: Float32Array;
  activity: Float32Array;
  period: Float32Array;
  correlation: Record<string, Float32Array>;
  cluster_order: number[] | null;
  /** per unit, -1/ln(mean forget gate) in timesteps (NaN where undefined); null for a
   * GRU or RNN, or a backend that sends none */
  memory_horizon: Float32Array | null;
  /** each unit's significance against the series asked for (null without one) */
  significance: Significance | null;
}

export interface Projection {
  steps: number[];
  /** the probe sequences projected, in the order of `paths` */
  sequences: number[];
  /** per step: [length, 2] coordinates of the first requested sequence, flat */
  points: Map<number, Float32Array>;
  /** per step: one flat [length, 2] path per sequence of `sequences` */
  paths: Map<number, Float32Array[]>;
  bounds: [number, number, number, number] | null;
  methodUsed: string;
  explained: number[] | null;
}

export class HttpError extends Error {
  constructor(public status: number, message: string) {
    super(message);
  }
}

type Params = Record<string, string | number | null | undefined>;

export function routeUrl(route: string, params: Params = {}): string {
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined) search.set(k, String(v));
  const q = search.toString();
  return "./" + route + (q ? "?" + q : "");
}

async function get(route: string, params: Params, signal?: AbortSignal): Promise<Response> {
  const response = await fetch(routeUrl(route, params), { signal, credentials: "same-origin" });
  if (!response.ok) {
    let message = `${route}: HTTP ${response.status}`;
    try {
      const text = (await response.text()).trim();
      if (text) message += ": " + text.slice(0, 300);
    } catch {
      // keep the status line
    }
    throw new HttpError(response.status, message);
  }
  return response;
}

async function getJson(route: string, params: Params = {}, signal?: AbortSignal): Promise<any> {
  return (await get(route, params, signal)).json();
}

const num = (v: any, fallback = 0): number => (typeof v === "number" && Number.isFinite(v) ? v : fallback);
const floats = (v: any): Float32Array =>
  Float32Array.from(Array.isArray(v) ? v.map((x: any) => (x === null ? NaN : Number(x))) : []);

export function normaliseTag(raw: any): TagInfo {
  const kinds: string[] = Array.isArray(raw?.kinds) ? raw.kinds.map(String) : ["hidden"];
  let units: Record<string, number> = {};
  if (raw && typeof raw.units === "object" && raw.units !== null) {
    for (const [k, v] of Object.entries(raw.units)) units[k] = num(v);
  } else {
    for (const k of kinds) units[k] = num(raw?.units);
  }
  return {
    kind: String(raw?.kind ?? "lstm"),
    layers: Math.max(1, num(raw?.layers ?? raw?.num_layers, 1)),
    directions: Math.max(1, num(raw?.directions ?? raw?.num_directions, 1)),
    batch: Math.max(1, num(raw?.batch, 1)),
    time: num(raw?.time),
    units,
    kinds,
    gradient_kinds: Array.isArray(raw?.gradient_kinds) ? raw.gradient_kinds.map(String) : [],
    steps: num(raw?.steps),
    first_step: typeof raw?.first_step === "number" ? raw.first_step : null,
    last_step: typeof raw?.last_step === "number" ? raw.last_step : null,
    description: typeof raw?.description === "string" ? raw.description : "",
    description_truncated: raw?.description_truncated === true,
    description_chars: typeof raw?.description_chars === "number" ? raw.description_chars : null,
  };
}

export async function fetchRuns(signal?: AbortSignal): Promise<Runs> {
  const raw = await getJson("runs", {}, signal);
  const runs: Runs = {};
  for (const [run, tags] of Object.entries(raw ?? {})) {
    runs[run] = {};
    for (const [tag, info] of Object.entries(tags as any)) runs[run][tag] = normaliseTag(info);
  }
  return runs;
}

export async function fetchSteps(run: string, tag: string, signal?: AbortSignal): Promise<StepInfo[]> {
  const raw = await getJson("steps", { run, tag }, signal);
  const list = Array.isArray(raw) ? raw : Array.isArray(raw?.steps) ? raw.steps : [];
  return list
    .map((s: any) => (typeof s === "number" ? { step: s, wall_time: 0 } : { step: num(s?.step), wall_time: num(s?.wall_time) }))
    .sort((a: StepInfo, b: StepInfo) => a.step - b.step);
}


export interface StatesQuery {
  run: string;
  tag: string;
  step: number;
  layer: number;
  kind: string;
  sequence: number;
  /** the timesteps [start, stop); default the whole sequence */
  start?: number;
  stop?: number;
  /** at most this many bins (min and max each) when stop - start is larger */
  bins?: number;
}

/** One array of the `states` route, decoded to float32, with what its headers say it holds. */
export interface StatesArray extends NdArray {
  /** [2, bins, units]: row 0 each bin's minimum, row 1 its maximum (only with a sequence) */
  binned: boolean;
  /** the timesteps it covers, [start, stop) */
  start: number;
  stop: number;
}

export function statesUrl(q: StatesQuery, npy = false): string {
  return routeUrl("states", { ...q, format: npy ? "npy" : null });
}

/**
 * One [time, units] array of one sequence (or [batch, time, units] without one), of the
 * timesteps [start, stop); or, when the range holds more timesteps than `bins`, its
 * [2, bins, units] minima and maxima per bin. A server that predates ranges answers
 * the whole sequence without X-Start: that is read as [0, time).
 */
export async function fetchStates(q: StatesQuery, signal?: AbortSignal): Promise<StatesArray> {
  const response = await get("states", { ...q }, signal);
  const h = (name: string) => response.headers.get(name);
  const shape = parseShape(h("X-Shape"));
  const dtype = parseDtype(h("X-Dtype") ?? "float32");
  const array = decodeArray(await response.arrayBuffer(), shape, dtype);
  const lengths = (h("X-Lengths") ?? "").split(",").map(Number).filter(Number.isInteger);
  return { ...array, lengths, ...statesRange(shape, q.sequence !== undefined, h("X-Start"), h("X-Stop"), h("X-Binned")) };
}

/** The range and binning of a `states` answer from its headers, checked against its shape. */
export function statesRange(
  shape: number[], sequence: boolean, startText: string | null, stopText: string | null, binnedText: string | null,
): { binned: boolean; start: number; stop: number } {
  const binned = binnedText !== null ? binnedText.trim() === "1" : sequence && shape.length === 3;
  if (binned && (!sequence || shape.length !== 3 || shape[0] !== 2)) {
    throw new Error(`a binned array must be [2, bins, units], got [${shape}]`);
  }
  const time = shape.length >= 2 ? shape[shape.length - 2] : 0;
  const integer = (text: string | null, name: string): number | null => {
    if (text === null) return null;
    const n = Number(text.trim());
    if (!Number.isInteger(n) || n < 0) throw new Error(`bad ${name} header: ${JSON.stringify(text.slice(0, 40))}`);
    return n;
  };
  if (binned && (startText === null || stopText === null)) throw new Error("a binned array came without X-Start and X-Stop");
  const start = integer(startText, "X-Start") ?? 0;
  const stop = integer(stopText, "X-Stop") ?? start + time;
  if (binned ? stop - start <= time : stop - start !== time) {
    throw new Error(`the range [${start}, ${stop}) does not match the array's shape [${shape}]`);
  }
  return { binned, start, stop };
}

export async function fetchSeries(run: string, tag: string, step: number, sequence: number, signal?: AbortSignal): Promise<Series> {
  const raw = await getJson("series", { run, tag, step }, signal);
  const series: Record<string, Float64Array> = {};
  const all: Record<string, Float64Array[]> = {};
  const doubles = (v: any) => Float64Array.from(Array.isArray(v) ? v.map((x: any) => (x === null ? NaN : Number(x))) : []);
  for (const [name, values] of Object.entries(raw?.series ?? {})) {
    const rows = values as any;
    all[name] = Array.isArray(rows?.[0]) ? rows.map(doubles) : [doubles(rows)];
    series[name] = doubles(Array.isArray(rows?.[0]) ? rows[sequence] : rows);
  }
  const lengths: number[] = Array.isArray(raw?.lengths) ? raw.lengths.map((v: any) => num(v)) : [];
  let tokens: string[] | null = null;
  let allTokens: string[][] | null = null;
  const t = raw?.tokens;
  if (Array.isArray(t)) {
    const nested = Array.isArray(t[0]) || t.length === 0;
    const row = nested ? t[sequence] : t;
    if (Array.isArray(row)) tokens = row.map((x: any) => String(x));
    allTokens = nested ? t.map((r: any) => (Array.isArray(r) ? r.map((x: any) => String(x)) : [])) : tokens ? [tokens] : null;
  }
  return { series, tokens, allTokens, all, lengths };
}

export async function fetchOverview(run: string, tag: string, layer: number, kind: string, signal?: AbortSignal): Promise<Overview> {
  return parseOverview(await getJson("overview", { run, tag }, signal), layer, kind);
}

/** The `overview` answer for one layer and kind: its statistics per step, what each step
 * holds and (as the statistic "grad reach" too) each step's gradient reach. */
export function parseOverview(raw: any, layer: number, kind: string): Overview {
  const steps: number[] = (raw?.steps ?? []).map((s: any) => num(typeof s === "object" ? s?.step : s));
  const columns: string[] = raw?.columns ?? [];
  const rows: any[] = raw?.rows ?? [];
  const values: any[] = raw?.values ?? [];
  const stats: Record<string, Float32Array> = {};
  const rowIndex = (l: number, k: string) => rows.findIndex((r) => Number(r?.[0] ?? r?.layer) === l && String(r?.[1] ?? r?.kind) === k);
  const pick = (l: number, k: string, col: string) => {
    const r = rowIndex(l, k), c = columns.indexOf(col);
    return Float32Array.from(steps.map((_, i) => (r < 0 || c < 0 ? NaN : num(values?.[i]?.[r]?.[c], NaN))));
  };
  stats["saturated"] = pick(layer, kind, "saturated");
  stats["dead"] = pick(layer, kind, "dead");
  stats["mean |c|"] = pick(layer, rowIndex(layer, "cell") >= 0 ? "cell" : "hidden", "mean_abs");
  stats["change"] = pick(layer, kind, "change");
  const has = (col: string) => columns.includes(col) && rowIndex(layer, kind) >= 0;
  const kinds = Array.isArray(raw?.kinds) ? steps.map((_, i) => (Array.isArray(raw.kinds[i]) ? raw.kinds[i].map(String) : null)) : null;
  const reachRaw = raw?.gradient_reach;
  const reach = Array.isArray(reachRaw) && reachRaw.some((v: any) => typeof v === "number")
    ? Float32Array.from(steps.map((_, i) => num(reachRaw[i], NaN))) : null;
  if (reach) stats["grad reach"] = reach;
  const gradMax: Record<string, Float32Array> = {};
  if (columns.includes("min") && columns.includes("max")) {
    for (const r of rows) {
      const l = Number(r?.[0] ?? r?.layer), k = String(r?.[1] ?? r?.kind);
      if (!k.startsWith("grad_")) continue;
      const lo = pick(l, k, "min"), hi = pick(l, k, "max");
      gradMax[`${l}|${k}`] = lo.map((v, i) => Math.max(Math.abs(v), Math.abs(hi[i])));
    }
  }
  return {
    steps, stats, min: has("min") ? pick(layer, kind, "min") : null, max: has("max") ? pick(layer, kind, "max") : null, kinds, reach, gradMax,
  };
}

export async function fetchChanges(q: StatesQuery & { threshold?: number }, signal?: AbortSignal): Promise<Changes> {
  const raw = await getJson("changes", { ...q }, signal);
  return {
    norm: floats(raw?.norm),
    cosine: floats(raw?.cosine),
    zscore: floats(raw?.zscore ?? raw?.z),
    anomalies: (raw?.anomalies ?? []).map(Number).filter(Number.isInteger),
  };
}

/** The per-unit scores of an array; with `series`, each unit's significance against it too. */
export async function fetchUnits(q: Omit<StatesQuery, "sequence"> & { series?: string }, signal?: AbortSignal): Promise<Units> {
  const raw = await getJson("units", { run: q.run, tag: q.tag, step: q.step, layer: q.layer, kind: q.kind, series: q.series }, signal);
  const correlation: Record<string, Float32Array> = {};
  for (const [k, v] of Object.entries(raw?.correlation ?? {})) correlation[k] = floats(v);
  const order = raw?.cluster_order ?? raw?.order ?? null;
  return {
    variance: floats(raw?.variance),
    dead: floats(Array.isArray(raw?.dead) ? raw.dead.map((v: any) => (v === true ? 1 : v === false ? 0 : v)) : []),
    saturation: floats(raw?.saturation),
    activity: floats(raw?.activity),
    period: floats(raw?.period),
    correlation,
    cluster_order: Array.isArray(order) ? order.map(Number) : null,
    memory_horizon: Array.isArray(raw?.memory_horizon) ? floats(raw.memory_horizon) : null,
    significance: parseSignificance(raw?.significance),
  };
}

export interface ProjectionQuery {
  run: string; tag: string; layer: number; kind: string; method: string;
  /** the probe sequences to project (empty: all of them) */
  sequences: number[];
  steps?: number[];
}

/**
 * The aligned 2-D layout of some sequences (or all) at every step the backend picks (all
 * steps, or evenly spaced ones within its cap, always with the last).
 */
export async function fetchProjection(q: ProjectionQuery, signal?: AbortSignal): Promise<Projection> {
  const raw = await getJson("projection", {
    run: q.run, tag: q.tag, layer: q.layer, kind: q.kind, method: q.method,
    sequence: q.sequences.length ? q.sequences.join(",") : null,
    steps: q.steps ? q.steps.join(",") : null,
  }, signal);
  return parseProjection(raw);
}

export function parseProjection(raw: any): Projection {
  const steps: number[] = (raw?.steps ?? []).map(Number);
  const offsets: number[] = (raw?.offsets ?? []).map(Number);
  const lengths: any[] = raw?.lengths ?? [];
  const coords: any[] = raw?.coordinates ?? [];
  const sequences: number[] = Array.isArray(raw?.sequences) ? raw.sequences.map((v: any) => num(v)) : [0];
  const points = new Map<number, Float32Array>();
  const paths = new Map<number, Float32Array[]>();
  steps.forEach((s, k) => {
    const ns: number[] = (Array.isArray(lengths[k]) ? lengths[k] : [lengths[k]]).map((v: any) => Math.max(0, Math.floor(num(v))));
    let start = 2 * num(offsets[k]);
    const list: Float32Array[] = [];
    for (const n of ns) {
      const flat = new Float32Array(2 * n);
      for (let i = 0; i < 2 * n; i++) flat[i] = num(coords[start + i], NaN);
      list.push(flat);
      start += 2 * n;
    }
    paths.set(s, list);
    points.set(s, list[0] ?? new Float32Array(0));
  });
  const b = raw?.bounds;
  const bounds = Array.isArray(b) && b.length === 4 && b.every((v: any) => typeof v === "number") ? (b as [number, number, number, number]) : null;
  return {
    steps, sequences, points, paths, bounds, methodUsed: String(raw?.method_used ?? raw?.method ?? ""),
    explained: Array.isArray(raw?.explained_variance) ? raw.explained_variance.map(Number) : null,
  };
}

/** The arrays the `match` route pairs: one array's units with another's of the same probe. */
export interface MatchQuery {
  run: string; tag: string; step: number; layer: number; kind: string;
  other_run: string; other_tag: string; other_step: number;
}

/** Pairs each unit of one array with the other's (one-to-one by |r|), with the CKA. */
export async function fetchMatch(q: MatchQuery, signal?: AbortSignal): Promise<Match> {
  return parseMatch(await getJson("match", { ...q }, signal));
}

/** A window of states to look for: units (all when absent) of timesteps [start, stop). */
export interface SearchQuery {
  run: string; tag: string; step: number; layer: number; kind: string;
  sequence: number; start: number; stop: number;
  units?: number[];
  /** the steps searched (every logged step when absent) */
  steps?: number[];
  top?: number;
}

/** The windows nearest the query window (the query and overlaps of better ones left out). */
export async function fetchSearch(q: SearchQuery, signal?: AbortSignal): Promise<SearchMatch[]> {
  const raw = await getJson("search", {
    run: q.run, tag: q.tag, step: q.step, layer: q.layer, kind: q.kind, sequence: q.sequence, start: q.start, stop: q.stop,
    units: q.units?.length ? q.units.join(",") : null, steps: q.steps?.length ? q.steps.join(",") : null, top: q.top,
  }, signal);
  return parseSearch(raw);
}
