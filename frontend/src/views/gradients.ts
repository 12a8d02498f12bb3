// The gradient-through-time card: |∂L/∂c_t| (|∂L/∂h_t| for a GRU or RNN) of the selected
// layer and sequence as a units x timesteps heatmap on a logarithmic colour scale, each
// unit's memory horizon beside its row, the norm over units per timestep on a log axis
// with the gradient reach, and the horizons' histogram; the step on screen, so playback
// plays them across epochs. A record without gradients hides the card; `hint` (placed
// by the app) says how to log them.

import type * as api from "../api";
import { PALETTE } from "../colors";
import type { DataLoader } from "../data";
import { el, setOptions, setText } from "../dom";
import {
  binStart, defaultGradKind, GRAD_CELL, LogDomain, logDomain, logHistogram, Magnitudes, magnitudeLut, magnitudeRange,
  magnitudes, powerOfTen, reachedBins, reachOf, REACH_FRACTION, timestepNorms, validBins,
} from "../gradmath";
import { HorizonHistogram, HorizonStrip, LogColorBar, NormPlot } from "../gradplots";
import { Heatmap } from "../heatmap";
import { formatValue, isPermutation, orderByScore } from "../layout";
import type { Theme } from "../theme";
import type { TimeView } from "../timeplot";
import type { DrawContext } from "./context";

/** Steps loaded ahead of the one on screen (paused, playing). */
const PREFETCH = 2, PREFETCH_PLAYING = 16;
/** At most this many gradient loads in flight. */
const MAX_PENDING = 6;
/** Every step's gradients are loaded in the background (the fixed colour scale, the
 * reach of each step) while they take at most this many bytes. */
const BACKGROUND_BUDGET = 64 << 20;
/** The norm axis spans at most this many decades below its top. */
const NORM_DECADES = 10;

/** What the card asks of the app. */
export interface GradientHost {
  data: DataLoader;
  /** something the card draws arrived: redraw */
  changed(): void;
  /** the pointer is over timestep t of the card's plots (null: it left) */
  hover(t: number | null): void;
  /** a click pins the time cursor */
  setCursor(t: number): void;
  /** the gradient and row order chosen (kept in the URL): "" picks the default */
  choice(): { grad: string; gradRows: string };
  /** the user picked a gradient or a row order */
  choose(patch: { grad?: string; gradRows?: string }): void;
}

interface Shown {
  /** the selection (run, tag, layer, kind, sequence), without the step */
  selection: string;
  step: number;
  array: api.StatesArray;
}

/** What is drawn, for the hover readout. */
interface Drawn {
  m: Magnitudes;
  order: number[];
  horizons: Float32Array | null;
  symbol: string;
}

const logOf = new WeakMap<Magnitudes, Float32Array>();

/** log10 of each magnitude (zero: -Infinity, the bottom of the scale), made once. */
function logMagnitudes(m: Magnitudes): Float32Array {
  let out = logOf.get(m);
  if (!out) {
    out = m.mag.map((v) => Math.log10(v));
    logOf.set(m, out);
  }
  return out;
}

const normsOf = new WeakMap<Magnitudes, { norms: Float64Array; min: number; max: number }>();

/** The norms of a sequence and their smallest positive and largest values, made once. */
function normsWithRange(m: Magnitudes): { norms: Float64Array; min: number; max: number } {
  let hit = normsOf.get(m);
  if (!hit) {
    const norms = timestepNorms(m);
    let min = Infinity, max = 0;
    for (const v of norms) {
      if (v > 0 && v < min) min = v;
      if (v > max && v !== Infinity) max = v;
    }
    hit = { norms, min, max };
    normsOf.set(m, hit);
  }
  return hit;
}

export class GradientsView {
  readonly heat = new Heatmap();
  readonly norm = new NormPlot();
  readonly bar = new LogColorBar();
  readonly strip = new HorizonStrip();
  readonly histogram = new HorizonHistogram();
  private readonly kindSelect = el("select", { "aria-label": "gradient" });
  private readonly orderSelect = el("select", { "aria-label": "gradient rows" });
  private readonly title = el("span", { class: "tls-sub" });
  private readonly reachText = el("div", { class: "tls-gradreach", style: "font-size:12px;flex:1;min-width:220px" });
  private readonly hoverText = el("div", { class: "tls-hint tls-gradhover", style: "min-height:18px;margin-left:56px" });
  private readonly note = el("div", { class: "tls-hint tls-gradnote", style: "margin-left:56px" });
  private readonly help = el("div", { class: "tls-hint tls-gradhelp", style: "flex:1;min-width:240px" });
  /** For a record without gradients, in place of the card (the app places it): how to
   * log them. */
  readonly hint = el("details", { class: "tls-gradhint", style: "margin-top:6px;display:none" },
    el("summary", { class: "tls-hint", style: "cursor:pointer" }, "No gradients logged: how to log them (loss=)"),
    el("p", { class: "tls-hint", style: "margin:4px 0" },
      "Logged with a loss, the tab shows |∂L/∂c_t| per unit and timestep, how far back in time the gradient reaches, and each unit's memory horizon:"),
    el("pre", { style: "margin:0;padding:6px 8px;background:var(--bg);border:1px solid var(--border);border-radius:4px;font:11px/1.5 ui-monospace, Menlo, monospace;overflow:auto" },
      'writer.log("lstm", model.lstm,\n           probe_inputs, step=epoch,\n           loss=loss_fn)\n# loss_fn(output) -> a scalar loss of\n# what the module returns'));
  private readonly stripTitle = el("div", { class: "tls-hint", style: `width:${HorizonStrip.WIDTH}px;flex:none;font-size:10px;text-align:center;align-self:flex-end`,
    title: "each unit's memory horizon τ = −1/ln(mean forget gate), in timesteps, on a log axis; T marks the sequence length" }, "memory horizon τ");
  private readonly body: HTMLElement;
  readonly root: HTMLElement;
  private readonly failed = new Map<string, string>();
  private shown: Shown | null = null;
  private horizons: { key: string; step: number; values: Float32Array | null } | null = null;
  private drawn: Drawn | null = null;
  private lut = magnitudeLut(false);
  private lutDark = false;
  private helpKey = "";
  private get rowOrder(): "states" | "horizon" | "index" {
    const v = this.host.choice().gradRows;
    return v === "horizon" || v === "index" ? v : "states";
  }

  constructor(private host: GradientHost) {
    this.body = el("div", {},
      el("div", { style: "display:flex;gap:12px;align-items:center;margin:0 0 4px 56px" }, this.bar.view.canvas, this.reachText, this.stripTitle),
      el("div", { style: "display:flex;align-items:flex-start" }, el("div", { class: "tls-heatscroll", style: "flex:1;min-width:0" },
        el("div", { style: "display:flex" }, this.heat.root, this.strip.view.canvas))),
      this.hoverText, this.norm.root,
      el("div", { style: "display:flex;gap:14px;align-items:flex-start;flex-wrap:wrap;margin-top:6px" }, this.histogram.view.canvas, this.help),
      this.note,
    );
    this.root = el("div", { class: "tls-card tls-grad", "data-has": "0" },
      el("h3", {}, "Gradient through time", this.title, el("span", { style: "flex:1" }),
        el("label", { class: "tls-sub" }, "gradient ", this.kindSelect), el("label", { class: "tls-sub" }, "rows ", this.orderSelect)),
      this.body);
    this.strip.view.canvas.style.marginLeft = "4px";
    this.kindSelect.addEventListener("change", () => host.choose({ grad: this.kindSelect.value }));
    this.orderSelect.addEventListener("change", () => host.choose({ gradRows: this.orderSelect.value }));
    const heatCanvas = this.heat.base.canvas;
    heatCanvas.addEventListener("mousemove", (e) => this.hoverHeat(e.clientX, e.clientY));
    heatCanvas.addEventListener("mouseleave", () => this.leave());
    heatCanvas.addEventListener("click", (e) => {
      const t = this.heat.timestepAtClient(e.clientX);
      if (t !== null) host.setCursor(t);
    });
    const normCanvas = this.norm.base.canvas;
    normCanvas.addEventListener("mousemove", (e) => {
      const t = this.norm.timestepAtClient(e.clientX);
      if (t === null) return this.leave();
      setText(this.hoverText, `timestep ${t} · ‖∂L/∂${this.drawn?.symbol ?? "x"}_t‖ ${this.norm.describe(t)}`);
      host.hover(t);
    });
    normCanvas.addEventListener("mouseleave", () => this.leave());
    normCanvas.addEventListener("click", (e) => {
      const t = this.norm.timestepAtClient(e.clientX);
      if (t !== null) host.setCursor(t);
    });
  }

  private leave(): void {
    setText(this.hoverText, "");
    this.host.hover(null);
  }

  private hoverHeat(clientX: number, clientY: number): void {
    const hit = this.heat.hit(clientX, clientY), d = this.drawn;
    if (!hit || !d) return this.leave();
    const { m } = d;
    let text = `unit ${hit.unit} · timestep ${hit.t}`;
    for (let i = 0; i < m.count; i++) {
      const a = binStart(m, i), b = binStart(m, i + 1);
      if (hit.t < a || hit.t >= b) continue;
      const v = m.mag[i * m.units + hit.unit];
      text += m.length !== undefined && hit.t >= m.length ? " · padding" :
        ` · |∂L/∂${d.symbol}_t| ${m.binned ? "≤ " : ""}${formatValue(v)}` + (v > 0 ? ` (10^${Math.log10(v).toFixed(1)})` : "") +
        (m.binned ? ` (largest of timesteps ${a}–${b - 1})` : "");
    }
    const h = d.horizons?.[hit.unit];
    if (h !== undefined) text += ` · memory horizon ${Number.isFinite(h) ? formatValue(h) + " timesteps" : "undefined"}`;
    setText(this.hoverText, text);
    this.host.hover(hit.t);
  }

  /** The cursor and hover lines over the card's plots. */
  drawOverlays(view: TimeView, theme: Theme): void {
    if (this.root.style.display === "none") return;
    this.heat.drawOverlay(view, theme);
    this.norm.drawOverlay(view, theme);
  }

  private query(c: DrawContext, step: number, run: string, kind: string): api.StatesQuery {
    return { ...c.store.query(step, run), kind };
  }

  /** The array of a query when loaded; else asks for it (once: a failure is kept). */
  private array(q: api.StatesQuery, notify = true): api.StatesArray | undefined {
    const data = this.host.data;
    const { key, array } = data.peekArray(q);
    if (array || this.failed.has(key) || data.arrays.isPending(key)) return array;
    if (data.arrays.pendingCount >= MAX_PENDING && !notify) return undefined;
    data.loadArray(q).then(() => { if (notify) this.host.changed(); }, (e: any) => {
      if (e?.name === "AbortError") return;
      if (this.failed.size > 1000) this.failed.clear();
      this.failed.set(key, String(e?.message ?? e));
      this.host.changed();
    });
    return undefined;
  }

  /** The steps of a run that hold gradients of `kind`, per its overview (all listed
   * steps while the overview does not say). */
  private gradientSteps(steps: number[], overview: api.Overview | null | undefined, kind: string): number[] {
    if (!overview?.kinds) return steps;
    const holds = new Set(overview.steps.filter((_, i) => overview.kinds![i]?.includes(kind)));
    return steps.filter((s) => holds.has(s));
  }

  /** Draws the card; `other`: the compared run's overview in compare mode. */
  draw(c: DrawContext, overview: api.Overview | null, other: api.Overview | undefined | null): void {
    const { store, theme } = c;
    const info = store.info;
    const s = store.state;
    const present = new Set((overview?.kinds ?? []).flatMap((k) => k ?? []));
    const available = (info?.gradient_kinds ?? []).filter((k) => present.has(k));
    this.root.dataset.has = available.length ? "1" : "0";
    this.hint.style.display = info && overview && !available.length ? "" : "none";
    if (!info || !overview || !available.length) {
      this.root.style.display = "none";
      return;
    }
    this.root.style.display = "";
    setOptions(this.kindSelect, available.map((k) => [k, k === GRAD_CELL ? "∂L/∂c_t (cell)" : "∂L/∂h_t (hidden)"] as [string, string]),
      available.includes(this.host.choice().grad) ? this.host.choice().grad : defaultGradKind(available) ?? available[0]);
    this.kindSelect.parentElement!.style.display = available.length > 1 ? "" : "none";
    const kind = this.kindSelect.value;
    const symbol = kind === GRAD_CELL ? "c" : "h";
    const lstm = info.kind === "lstm";
    setOptions(this.orderSelect, [["states", "as the states heatmap"], ...(lstm ? [["horizon", "by memory horizon"] as [string, string]] : []),
      ["index", "by index"]], this.rowOrder === "horizon" && !lstm ? "states" : this.rowOrder);
    if (this.lutDark !== theme.dark) {
      this.lut = magnitudeLut(theme.dark);
      this.lutDark = theme.dark;
    }
    this.setHelp(symbol, lstm);

    const step = c.step;
    const steps = this.gradientSteps(store.steps, overview, kind);
    const selection = JSON.stringify([s.run, s.tag, s.layer, kind, s.sequence]);
    const q = this.query(c, step, s.run, kind);
    const holds = steps.includes(step);
    const array = holds ? this.array(q) : undefined;
    if (array) this.shown = { selection, step, array };
    else if (this.shown?.selection !== selection || !holds) this.shown = null;
    this.load(c, steps, s.run, kind);
    const error = holds ? this.failed.get(this.host.data.arrayKey(q)) : undefined;
    const shown = this.shown;
    this.root.dataset.step = shown ? String(shown.step) : "";
    this.root.dataset.kind = kind;
    setText(this.title, `|∂L/∂${symbol}_t| · ${c.layerName} · sequence #${s.sequence}` +
      (shown ? ` · step ${shown.step}` + (shown.step !== step ? ` (step ${step} loading…)` : "") : ""));

    // memory horizons of the layer (LSTM), of the step on screen; kept while playing
    const horizons = lstm ? this.horizonsOf(c, step) : null;
    const width = Math.max(320, c.width);
    const stripW = lstm ? HorizonStrip.WIDTH + 4 : 0;
    const m = shown ? magnitudes(shown.array) : null;
    const units = m?.units ?? info.units[kind.slice(5)] ?? 0;
    const heatH = Math.round(Math.min(900, Math.max(140, units * 5)) + 20);
    this.heat.layout(width - stripW, heatH);
    this.heat.setRange(c.t0, c.t1);
    this.norm.layout(width - stripW, 150);
    this.norm.setRange(c.t0, c.t1);
    this.strip.view.canvas.style.display = lstm ? "" : "none";
    this.stripTitle.style.display = lstm ? "" : "none";
    if (!m || !shown) {
      const message = !holds ? `step ${step} holds no gradients (logged without a loss)` + (steps.length ? `; steps with gradients: ${rangeText(steps)}` : "")
        : error ?? "loading…";
      this.heat.draw(null, theme, message);
      this.norm.draw(null, theme, !holds || error ? "" : "loading…");
      this.bar.draw(null, theme, `|∂L/∂${symbol}_t|`);
      setText(this.reachText, "");
      setText(this.note, "");
      this.drawn = null;
      this.root.dataset.reach = "";
      if (lstm) this.strip.draw([], null, 0, 0, 1, heatH, theme, "");
      this.histogram.draw(null, 0, null, 0, theme, 300, lstm ? "loading…" : "");
      return;
    }

    // the colour scale: whole decades, fixed across the steps (or per step)
    const perStep = s.scale === "step";
    const scale = perStep ? { ...magnitudeRange(m), steps: 1, stored: false } : this.fixedScale(c, steps, kind, m);
    const domain = logDomain(scale.max, scale.minPositive);
    this.root.dataset.lo = domain ? String(domain.lo) : "";
    this.root.dataset.hi = domain ? String(domain.hi) : "";
    this.bar.draw(domain, theme, `|∂L/∂${symbol}_t|`);
    const order = this.rowsOrder(c, m.units, horizons);
    const log = logMagnitudes(m);
    const whole = !m.binned && m.start === 0 && m.count === shown.array.shape[0];
    this.heat.draw({
      data: log, units: m.units, order, domain: domain ?? { lo: -1, hi: 0 }, lut: this.lut, selected: this.rowOrder === "states" ? c.scene.selected : new Map(),
      centre: -1e30, length: m.length,
      segment: whole ? null : { start: m.start, stop: m.stop, count: m.count, units: m.units, lo: log, hi: log, binned: m.binned },
    }, theme);
    this.drawn = { m, order, horizons, symbol };
    const hp = this.heat.plot;
    this.heat.base.canvas.dataset.plot = [hp.x, hp.y, hp.w, hp.h].join(); // for tests
    this.heat.base.canvas.dataset.order = order.join();
    const time = m.length ?? info.time;
    if (lstm) {
      this.strip.draw(order, horizons, time, this.heat.plot.y, this.heat.plot.h, heatH, theme,
        this.horizons ? "no memory horizons" : "memory horizons loading…");
    }

    // the norm per timestep and the reach of this sequence
    const { norms, min, max } = normsWithRange(m);
    const reached = reachedBins(norms.subarray(0, validBins(m)));
    const reach = reachOf(m);
    const from = reached ? binStart(m, reached.first) : 0;
    const to = reached ? Math.min(binStart(m, reached.last + 1), time) : 0;
    this.root.dataset.reach = reach === null ? "" : String(reach);
    const compared = this.compared(c, kind, other);
    const normScale = perStep ? { min, max } : this.fixedNorms(c, steps, kind, min, max);
    if (compared) {
      normScale.min = Math.min(normScale.min, compared.range.min);
      normScale.max = Math.max(normScale.max, compared.range.max);
    }
    const normDomain: LogDomain = logDomain(normScale.max, normScale.min, NORM_DECADES) ?? { lo: -1, hi: 0 };
    this.norm.draw({
      norms, binStart: (i) => binStart(m, i), count: m.count, domain: normDomain, reached: reached ? [from, to] : null,
      floor: reached ? REACH_FRACTION * max : null, length: m.length, color: theme.dark ? "#8ab4f8" : "#4e79a7", upperBound: m.binned,
    }, theme);
    if (compared) this.norm.drawExtra(compared.norms, (i) => binStart(compared.m, i), compared.m.count, PALETTE[1],
      [`${s.run} · step ${shown.step}`, `${compared.run} · step ${compared.step}`], theme);
    this.root.dataset.normLo = String(normDomain.lo);
    this.root.dataset.normHi = String(normDomain.hi);

    // the reach: of this sequence (here), of the run (the backend's, per step)
    const i = overview.steps.indexOf(step);
    const runReach = overview.reach && i >= 0 && Number.isFinite(overview.reach[i]) ? overview.reach[i] : null;
    const window = m.start > 0 || m.stop < info.time ? ` (over timesteps ${m.start}–${m.stop - 1})` : "";
    const reachLine = reach === null ? "no gradient reaches this sequence (all zero)" :
      `gradient reach of sequence #${s.sequence}: ${reach} of ${time} timesteps${window}` + (m.binned ? " (counted in whole bins)" : "");
    const runLine = runReach === null ? "" : ` · run ${s.run} (probe mean, last layer): ${runReach}`;
    const otherLine = compared ? ` · ${compared.run} (step ${compared.step}, dashed): ${compared.reach ?? "–"}` : "";
    setText(this.reachText, reachLine + runLine + otherLine);
    this.reachText.title = "timesteps back from the end over which the norm stays at or above 1% of its largest" +
      (runReach === null ? "" : "; the run's figure: its last layer's forward direction, the norm averaged over the probe's sequences");
    const bottomNote = domain ? `log colour scale ${powerOfTen(domain.lo)} to ${powerOfTen(domain.hi)}, ` +
      (perStep ? "this step" : `fixed over ${scale.steps} of ${steps.length} steps` + (scale.stored ? " (top: stored extremes of every step)" : "")) : "";
    setText(this.note, bottomNote + (m.binned ? " · a long sequence in bins: each cell and norm is the bin's largest (an upper bound)" : "") +
      (this.norm.clipped ? ` · norms below ${powerOfTen(normDomain.lo)} leave the norm plot at its bottom` : "") +
      (horizons && this.horizons && this.horizons.step !== shown.step ? ` · memory horizons of step ${this.horizons.step}` : ""));

    // the histogram of memory horizons
    if (lstm) {
      const w = Math.min(420, Math.max(240, Math.floor(width * 0.45)));
      this.histogram.view.canvas.style.display = "";
      const past = horizons ? horizons.reduce((n, v) => n + (v >= time ? 1 : 0), 0) : 0;
      this.histogram.draw(horizons ? logHistogram(horizons) : null, time, reach, past, theme, w,
        horizons ? "no unit has a memory horizon" : this.horizons ? "no memory horizons from the backend" : "memory horizons loading…");
    } else {
      this.histogram.view.canvas.style.display = "none";
    }
  }

  private setHelp(symbol: string, lstm: boolean): void {
    const key = symbol + lstm;
    if (key === this.helpKey) return;
    this.helpKey = key;
    const g = `|∂L/∂${symbol}_t|`;
    const parts = [
      el("b", {}, "How to read it. "),
      `Each row is a unit, each column a timestep; the colour is ${g}, how much the loss changes with that unit's ` +
      `${symbol === "c" ? "cell" : "hidden"} state at that timestep, on a log scale (each power of ten an equal step of colour). ` +
      "Bright columns far from the end mean the loss still reaches those timesteps; a norm that falls by orders of magnitude within a few " +
      "steps back from the end means vanishing gradients (rising ones, exploding gradients). The gradient reach is how many timesteps back " +
      "from the end the norm stays at or above 1% of its largest value.",
    ];
    if (lstm) {
      parts.push(" A unit's memory horizon is τ = −1/ln(f̄), f̄ its mean forget gate: with its forget gate at f̄, its cell keeps " +
        "f̄^τ = e^−1 ≈ 37% of what it held τ timesteps earlier (half after τ·ln 2 ≈ 0.69 τ). The histogram marks the sequence length " +
        "and the reach: units whose horizon passes the length can carry information, and gradient, across the whole sequence.");
    }
    this.help.replaceChildren(...parts);
  }

  /** Loads ahead of the step on screen (playing: further), and when paused every step's
   * gradients within the budget (the fixed scale and each step's reach). */
  private load(c: DrawContext, steps: number[], run: string, kind: string): void {
    const store = c.store;
    const i = steps.indexOf(c.step);
    const ahead = store.playing ? PREFETCH_PLAYING : PREFETCH;
    const list: number[] = [];
    for (let k = 1; k <= ahead && k < steps.length; k++) list.push(steps[((i < 0 ? 0 : i) + k) % steps.length]);
    const first = this.shown?.array;
    if (!store.playing && first && first.data.byteLength * steps.length <= BACKGROUND_BUDGET) list.push(...steps);
    for (const st of list) {
      if (this.host.data.arrays.pendingCount >= MAX_PENDING) break;
      this.array(this.query(c, st, run, kind), !store.playing);
    }
  }

  /** The magnitudes of the loaded steps of this selection. */
  private loaded(c: DrawContext, steps: number[], run: string, kind: string): Magnitudes[] {
    const out: Magnitudes[] = [];
    for (const st of steps) {
      const a = this.host.data.peekArray(this.query(c, st, run, kind)).array;
      if (a) out.push(magnitudes(a));
    }
    return out;
  }

  /** One colour scale for every step: the top from the stored extremes of every step
   * when the overview has them (else the loaded steps'), the bottom from the smallest
   * positive magnitude of the loaded steps. */
  private fixedScale(c: DrawContext, steps: number[], kind: string, m: Magnitudes): { max: number; minPositive: number; steps: number; stored: boolean } {
    const all = this.loaded(c, steps, c.store.state.run, kind);
    let { max, minPositive } = magnitudeRange(m);
    for (const x of all) {
      const r = magnitudeRange(x);
      max = Math.max(max, r.max);
      minPositive = Math.min(minPositive, r.minPositive);
    }
    const stored = this.host.data.overview?.gradMax[`${c.store.state.layer}|${kind}`];
    let storedMax = 0, n = 0;
    if (stored) for (const v of stored) if (Number.isFinite(v)) { storedMax = Math.max(storedMax, v); n++; }
    const useStored = !!stored && n === stored.length && n > 0;
    return { max: useStored ? Math.max(storedMax, max) : max, minPositive, steps: Math.max(1, all.length), stored: useStored };
  }

  private fixedNorms(c: DrawContext, steps: number[], kind: string, min: number, max: number): { min: number; max: number } {
    for (const x of this.loaded(c, steps, c.store.state.run, kind)) {
      const r = normsWithRange(x);
      min = Math.min(min, r.min);
      max = Math.max(max, r.max);
    }
    return { min, max };
  }

  /** The compared run's gradients at its step (compare mode), when loaded. */
  private compared(c: DrawContext, kind: string, other: api.Overview | undefined | null) {
    const cq = c.store.compareQuery(c.step);
    // only a step its overview says holds this gradient (none while the overview loads)
    const i = cq && other?.kinds ? other.steps.indexOf(cq.step) : -1;
    if (!cq || !other?.kinds || i < 0 || !other.kinds[i]?.includes(kind)) return null;
    const a = this.array({ ...cq, kind });
    if (!a) return null;
    const m = magnitudes(a);
    const r = normsWithRange(m);
    return { run: cq.run, step: cq.step, m, norms: r.norms, range: { min: r.min, max: r.max }, reach: reachOf(m) };
  }

  /** The memory horizons of the layer at `step` (the last ones loaded while playing). */
  private horizonsOf(c: DrawContext, step: number): Float32Array | null {
    const s = c.store.state;
    const key = JSON.stringify([s.run, s.tag, s.layer]);
    if (!c.store.playing || this.horizons?.key !== key) {
      const units = this.host.data.units(s.run, step);
      if (units) this.horizons = { key, step, values: units.memory_horizon };
    }
    return this.horizons?.key === key ? this.horizons.values : null;
  }

  /** Rows top to bottom: the states heatmap's order (when it has as many units), by
   * memory horizon (longest first), or by index. */
  private rowsOrder(c: DrawContext, units: number, horizons: Float32Array | null): number[] {
    if (this.rowOrder === "horizon" && horizons && horizons.length === units) return orderByScore(horizons);
    if (this.rowOrder === "states" && isPermutation(c.scene.order, units)) return c.scene.order;
    return Array.from({ length: units }, (_, i) => i);
  }

  /** Each step's reach of the selected sequence from the gradients loaded here (NaN
   * where not loaded): the overview's figure when the backend sends none. */
  reachSeries(c: DrawContext, steps: number[]): Float32Array | null {
    const kind = this.kindSelect.value;
    if (!kind) return null;
    let any = false;
    const out = Float32Array.from(steps, (st) => {
      const a = this.host.data.peekArray(this.query(c, st, c.store.state.run, kind)).array;
      const r = a ? reachOf(magnitudes(a)) : null;
      if (r !== null) any = true;
      return r ?? NaN;
    });
    return any ? out : null;
  }
}

/** Sorted steps as short text: "0–9" for a run of consecutive ones, else a list. */
function rangeText(steps: number[]): string {
  if (steps.length > 2 && steps[steps.length - 1] - steps[0] === steps.length - 1) return `${steps[0]}–${steps[steps.length - 1]}`;
  return steps.length > 6 ? `${steps.slice(0, 3).join(", ")}, …, ${steps[steps.length - 1]}` : steps.join(", ");
}
