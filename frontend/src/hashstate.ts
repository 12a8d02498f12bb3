// The whole view state, and its round trip through a URL hash. Pure.

export interface ViewState {
  run: string;
  tag: string;
  layer: number; // index into RecurrentStates.layers: layer * directions + direction
  kind: string; // cell, hidden or a gate name
  sequence: number;
  step: number | null; // null: the latest step
  order: string; // auto | index | variance | cluster | corr:<series>
  units: number[]; // units shown in the line plot
  unitsB: number[]; // units of the compared run shown in the line plot
  scale: string; // fixed: one colour scale across the steps | step: per step
  t0: number | null; // zoomed time range [t0, t1), null: all
  t1: number | null;
  cursor: number | null; // the pinned timestep
  compare: string; // "" off, else the run to compare with (may equal run)
  compareStep: number | null; // null: the same step
  method: string; // pca | tsne | umap
  colorBy: string; // time | #sequence | #token | <series name>
  trajectory: string; // the sequences the trajectory shows: "" the selected one, "all", or "0.3"
  speed: number; // steps per second
  loop: boolean;
  threshold: number; // robust z-score above which the change track flags a timestep
  residual: string; // "a-b" of two series names, "" automatic, "off" none
  sigSeries: string; // the series of the unit table's significance columns, "" automatic
  ident: number | null; // the unit tracked across steps (its matched unit at each step), null: none
  grad: string; // the gradient view's kind: "" the default (grad_cell for LSTM), grad_cell or grad_hidden
  gradRows: string; // the gradient view's row order: states (as the states heatmap) | horizon | index
}

export const DEFAULT_STATE: ViewState = {
  run: "", tag: "", layer: 0, kind: "cell", sequence: 0, step: null, order: "auto", units: [], unitsB: [], scale: "fixed",
  t0: null, t1: null, cursor: null, compare: "", compareStep: null, method: "pca",
  colorBy: "time", trajectory: "", speed: 8, loop: true, threshold: 3.5, residual: "",
  sigSeries: "", ident: null, grad: "", gradRows: "states",
};

export const SPEEDS = [1, 2, 4, 8, 15, 30, 60];
export const METHODS = ["pca", "tsne", "umap"];

/** The key under which the state lives in the hash, beside TensorBoard's own keys. */
export const HASH_KEY = "lstm";

const SHORT: Record<keyof ViewState, string> = {
  run: "run", tag: "tag", layer: "layer", kind: "kind", sequence: "seq", step: "step", order: "order",
  units: "units", unitsB: "cunits", scale: "scale", t0: "t0", t1: "t1", cursor: "cursor", compare: "cmp", compareStep: "cstep",
  method: "proj", colorBy: "color", trajectory: "tseq", speed: "speed", loop: "loop", threshold: "thr", residual: "resid",
  sigSeries: "sig", ident: "ident", grad: "grad", gradRows: "grows",
};

/** Serialises the fields that differ from the defaults, as URL query syntax. */
export function encodeState(state: ViewState): string {
  const params = new URLSearchParams();
  for (const key of Object.keys(SHORT) as (keyof ViewState)[]) {
    const value = state[key];
    const fallback = DEFAULT_STATE[key];
    if (JSON.stringify(value) === JSON.stringify(fallback)) continue;
    let text: string;
    if (Array.isArray(value)) text = value.join(".");
    else if (value === null) text = "";
    else if (typeof value === "boolean") text = value ? "1" : "0";
    else text = String(value);
    params.set(SHORT[key], text);
  }
  return params.toString();
}

function int(text: string | null, min: number, max = 2 ** 53): number | null {
  if (text === null || text === "" || !/^-?\d+$/.test(text)) return null;
  const n = Number(text);
  return n >= min && n <= max ? n : null;
}

/** Parses what `encodeState` wrote; anything malformed falls back to its default. */
export function decodeState(text: string): ViewState {
  const params = new URLSearchParams(text);
  const s: ViewState = { ...DEFAULT_STATE, units: [], unitsB: [] };
  const get = (k: keyof ViewState) => params.get(SHORT[k]);
  s.run = get("run") ?? "";
  s.tag = get("tag") ?? "";
  s.layer = int(get("layer"), 0, 4096) ?? 0;
  const kind = get("kind");
  if (kind && /^[A-Za-z_]{1,32}$/.test(kind)) s.kind = kind;
  s.sequence = int(get("sequence"), 0) ?? 0;
  s.step = int(get("step"), -(2 ** 53));
  const order = get("order");
  if (order && (["auto", "index", "variance", "cluster"].includes(order) || order.startsWith("corr:") || order.startsWith("sig:"))) s.order = order;
  const unitList = (text: string | null) =>
    text ? text.split(".").map((u) => int(u, 0, 1 << 24)).filter((u): u is number => u !== null).slice(0, 16) : [];
  s.units = unitList(get("units"));
  s.unitsB = unitList(get("unitsB"));
  if (get("scale") === "step") s.scale = "step";
  const threshold = Number(get("threshold"));
  if (get("threshold") && Number.isFinite(threshold) && threshold > 0 && threshold <= 100) s.threshold = threshold;
  const residual = get("residual");
  if (residual) s.residual = residual.slice(0, 200);
  s.sigSeries = (get("sigSeries") ?? "").slice(0, 200);
  s.ident = int(get("ident"), 0, 1 << 24);
  const grad = get("grad");
  if (grad === "grad_cell" || grad === "grad_hidden") s.grad = grad;
  const gradRows = get("gradRows");
  if (gradRows === "horizon" || gradRows === "index") s.gradRows = gradRows;
  s.t0 = int(get("t0"), 0);
  s.t1 = int(get("t1"), 1);
  if (s.t0 === null || s.t1 === null || s.t1 <= s.t0) s.t0 = s.t1 = null;
  s.cursor = int(get("cursor"), 0);
  s.compare = get("compare") ?? "";
  s.compareStep = int(get("compareStep"), -(2 ** 53));
  const method = get("method");
  if (method && METHODS.includes(method)) s.method = method;
  s.colorBy = (get("colorBy") || "time").slice(0, 200);
  const trajectory = get("trajectory");
  if (trajectory === "all") s.trajectory = "all";
  else if (trajectory) s.trajectory = unitList(trajectory).join(".");
  const speed = int(get("speed"), 1, 60);
  if (speed !== null && SPEEDS.includes(speed)) s.speed = speed;
  const loop = get("loop");
  if (loop === "0" || loop === "1") s.loop = loop === "1";
  return s;
}

/** Splits a hash "#tab&k=v&lstm=..." into TensorBoard's part and our encoded state. */
export function splitHash(hash: string): { rest: string[]; ours: string | null } {
  const parts = hash.replace(/^#/, "").split("&").filter((p) => p !== "");
  const rest: string[] = [];
  let ours: string | null = null;
  for (const p of parts) {
    if (p.startsWith(HASH_KEY + "=")) ours = decodeURIComponent(p.slice(HASH_KEY.length + 1));
    else rest.push(p);
  }
  return { rest, ours };
}

/** The hash with our state set (or removed when empty), TensorBoard's keys kept in place. */
export function joinHash(hash: string, encoded: string): string {
  const { rest } = splitHash(hash);
  if (encoded) rest.push(HASH_KEY + "=" + encodeURIComponent(encoded));
  return "#" + rest.join("&");
}
