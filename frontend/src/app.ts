// The tab: selectors, playback, and every view linked to one step and one time cursor.

import * as api from "./api";
import { ByteCache } from "./cache";
import { Domain, divergingLut, domainFor, PALETTE, SIGMOID_KINDS } from "./colors";
import { NdArray } from "./decode";
import { el, icon, setOptions, setText } from "./dom";
import { Exporter } from "./exporter";
import { readHash, writeHash } from "./hash";
import { DEFAULT_STATE, METHODS, SPEEDS, ViewState } from "./hashstate";
import { Heatmap, HeatmapFrame, Legend } from "./heatmap";
import { evenlySpaced, formatValue, isPermutation, nearestStep, orderByScore } from "./layout";
import { ChangeTrack, LinePlot, Track } from "./lines";
import { OverviewView } from "./overview";
import { ProjectionView } from "./projection";
import { STYLE, Theme, themeFor, watchTheme } from "./theme";
import { GUTTER, RIGHT, TimeView } from "./timeplot";
import { TokenStrip } from "./tokens";
import * as win from "./window";

const POLL_MS = 5000;
const PREFETCH = 4; // steps ahead of a paused view
const PREFETCH_PLAYING = 24; // steps ahead during playback
const MAX_PARALLEL = 6;
const PROJECTION_POINTS = 50_000;

interface Stats {
  ready: number | null;
  draws: number[];
  paints: { step: number; t: number }[];
  errors: string[];
}

declare global {
  interface Window {
    __tls?: Stats;
  }
}

export class App {
  state: ViewState = { ...DEFAULT_STATE };
  runs: api.Runs = {};
  steps: number[] = [];
  compareSteps: number[] = [];
  info: api.TagInfo | null = null;
  theme: Theme = themeFor(false);
  lut = divergingLut(false);
  playing = false;
  hover: { t: number; unit: number | null; row: number | null; panel: Heatmap | null } | null = null;
  drag: { start: number; end: number; plot: "heat" | "lines"; x: number; moved: boolean } | null = null;
  readonly stats: Stats = { ready: null, draws: [], paints: [], errors: [] };

  readonly arrays = new ByteCache<api.StatesArray>(384 << 20, (a) => a.data.byteLength + 64);
  readonly json = new ByteCache<any>(64 << 20, () => 64 << 10);
  private overview: api.Overview | null = null;
  private overviewKey = "";
  private projection: api.Projection | null = null;
  private projectionKey = "";
  private projectionError = "";
  private shown: { key: string; array: api.StatesArray; step: number; view: win.StatesView } | null = null;
  private shownCompare: { key: string; array: api.StatesArray; view: win.StatesView } | null = null;
  private orderCache = new Map<string, number[]>();
  private lastOrder: number[] = [];
  private identityOrder: number[] = [];
  private difference: { a: NdArray; b: NdArray; result: ReturnType<typeof win.difference> } | null = null;
  /** device pixels across the time axis: long sequences are fetched in about this many bins */
  private binPixels = 1024;
  private domain: Domain = { lo: -1, hi: 1 };
  private domainKey = "";
  private error = "";
  private frameRequested = false;
  private hashTimer = 0;
  private lastAdvance = 0;
  private explicitUnits = false;

  // DOM
  readonly root = el("div", { class: "tls" });
  private content = el("div");
  private sel = {
    run: el("select", { "aria-label": "run" }),
    tag: el("select", { "aria-label": "tag" }),
    layer: el("select", { "aria-label": "layer" }),
    kind: el("select", { "aria-label": "kind" }),
    sequence: el("select", { "aria-label": "probe sequence" }),
    order: el("select", { "aria-label": "unit order" }),
    compare: el("select", { "aria-label": "compare with" }),
    method: el("select", { "aria-label": "projection method" }),
    colorBy: el("select", { "aria-label": "colour by" }),
    speed: el("select", { "aria-label": "speed" }),
    exporter: el("select", { "aria-label": "export" }),
  };
  private compareStepInput = el("input", { type: "number", placeholder: "same step", "aria-label": "compare step", style: "width:90px" });
  private slider = el("input", { type: "range", min: "0", max: "0", value: "0", "aria-label": "step" });
  private stepLabel = el("span", { class: "tls-steplabel" });
  private playButton = el("button", { title: "play or pause (Space)", "aria-label": "play", class: "tls-playbtn" }, icon("play"));
  private loopButton = el("button", { title: "loop", "aria-label": "loop" }, icon("loop"));
  private description = el("div", { class: "tls-desc" });
  private status = el("div", { class: "tls-msg" });
  private heatTitle = el("span", { class: "tls-sub" });
  private legend = new Legend();
  private panels = el("div", { class: "tls-panels" });
  readonly heat = new Heatmap();
  readonly heatB = new Heatmap();
  readonly heatD = new Heatmap();
  private titleA = el("div", { class: "tls-paneltitle" });
  private titleB = el("div", { class: "tls-paneltitle" });
  private titleD = el("div", { class: "tls-paneltitle" });
  private panelB = el("div", {}, this.titleB, this.heatB.root);
  private panelD = el("div", {}, this.titleD, this.heatD.root);
  private tokens = new TokenStrip();
  private seriesCard = el("div", { class: "tls-card" });
  readonly series = new LinePlot("tls-series");
  readonly lines = new LinePlot("tls-lines");
  readonly changes = new ChangeTrack();
  private changesNote = el("span", { class: "tls-sub" });
  private projectionNote = el("div", { class: "tls-hint" });
  readonly projectionView = new ProjectionView();
  private overviewView = new OverviewView();
  private tooltip = el("div", { class: "tls-tooltip", role: "tooltip" });
  private exporterImpl = new Exporter(this);

  constructor() {
    window.__tls = this.stats;
  }

  mount(): void {
    const style = document.createElement("style");
    style.textContent = STYLE;
    document.head.append(style);
    document.body.append(this.root, this.tooltip);
    this.root.append(this.content);
    watchTheme((dark) => {
      this.theme = themeFor(dark);
      this.lut = divergingLut(dark);
      document.documentElement.dataset.theme = dark ? "dark" : "light";
      this.invalidate();
    });
    const { state, present } = readHash();
    this.state = state;
    this.explicitUnits = present && state.units.length > 0;
    this.buildControls();
    window.addEventListener("resize", () => this.invalidate());
    document.addEventListener("keydown", (e) => this.onKey(e));
    this.heat.onPaint = () => {
      const step = this.shown?.step ?? null; // the step whose data is on screen
      if (step !== null) {
        this.stats.paints.push({ step, t: performance.now() });
        if (this.stats.paints.length > 5000) this.stats.paints.splice(0, 1000);
      }
      if (this.stats.ready === null) {
        this.stats.ready = performance.now();
        document.body.dataset.ready = "1";
      }
    };
    this.refresh(true);
    setInterval(() => {
      if (document.visibilityState !== "hidden") this.refresh(false);
    }, POLL_MS);
  }

  // ---------------------------------------------------------------- layout

  private buildControls(): void {
    const label = (text: string, control: HTMLElement) => el("label", {}, text, control);
    const bar = el("div", { class: "tls-bar" },
      label("Run", this.sel.run), label("Tag", this.sel.tag), label("Layer", this.sel.layer),
      label("Kind", this.sel.kind), label("Sequence", this.sel.sequence), label("Order units by", this.sel.order),
      label("Compare", this.sel.compare), label("at step", this.compareStepInput),
    );
    const button = (name: string, title: string, onClick: () => void) => {
      const b = el("button", { title, "aria-label": title }, icon(name));
      b.addEventListener("click", onClick);
      return b;
    };
    setOptions(this.sel.speed, SPEEDS.map((s) => [String(s), s + " steps/s"]), String(this.state.speed));
    this.playButton.addEventListener("click", () => this.togglePlay());
    this.loopButton.addEventListener("click", () => {
      this.state.loop = !this.state.loop;
      this.syncControls();
      this.saveHash();
    });
    const play = el("div", { class: "tls-play" },
      button("first", "first step (Home)", () => this.goToIndex(0)),
      button("prev", "previous step (Left)", () => this.stepBy(-1)),
      this.playButton,
      button("next", "next step (Right)", () => this.stepBy(1)),
      button("last", "latest step (End)", () => this.goToIndex(this.steps.length - 1)),
      this.slider, this.stepLabel, this.sel.speed, this.loopButton, el("label", { class: "tls-export" }, "Export", this.sel.exporter),
    );
    this.slider.addEventListener("input", () => this.goToIndex(Number(this.slider.value)));
    this.slider.addEventListener("keydown", (e) => {
      // one behaviour for the arrows everywhere: handled by onKey
      if (e.key === "ArrowLeft" || e.key === "ArrowRight" || e.key === " ") e.preventDefault();
    });
    const change = (select: HTMLSelectElement, apply: (v: string) => void) =>
      select.addEventListener("change", () => {
        apply(select.value);
        this.onSelection();
      });
    change(this.sel.run, (v) => { this.state.run = v; this.state.step = null; });
    change(this.sel.tag, (v) => { this.state.tag = v; this.state.step = null; });
    change(this.sel.layer, (v) => (this.state.layer = Number(v)));
    change(this.sel.kind, (v) => (this.state.kind = v));
    change(this.sel.sequence, (v) => (this.state.sequence = Number(v)));
    change(this.sel.order, (v) => (this.state.order = v));
    change(this.sel.compare, (v) => (this.state.compare = v));
    change(this.sel.method, (v) => (this.state.method = v));
    change(this.sel.colorBy, (v) => (this.state.colorBy = v));
    this.sel.speed.addEventListener("change", () => {
      this.state.speed = Number(this.sel.speed.value);
      this.saveHash();
    });
    this.compareStepInput.addEventListener("change", () => {
      const v = this.compareStepInput.value.trim();
      this.state.compareStep = v === "" || !Number.isFinite(Number(v)) ? null : Math.trunc(Number(v));
      this.onSelection();
    });
    setOptions(this.sel.method, METHODS.map((m) => [m, m === "pca" ? "PCA" : m === "tsne" ? "t-SNE" : "UMAP"]), this.state.method);
    this.sel.exporter.addEventListener("change", () => {
      const what = this.sel.exporter.value;
      this.sel.exporter.value = "";
      if (what) this.exporterImpl.run(what).catch((e) => this.showError(String(e?.message ?? e)));
    });
    setOptions(this.sel.exporter, [
      ["", "…"], ["heatmap.png", "Heatmap PNG"], ["lines.png", "Lines PNG"], ["projection.png", "Projection PNG"],
      ["npy", "Array .npy"], ["csv", "Array CSV"], ["webm", "Playback WebM"],
    ], "");

    // heatmap card
    this.panels.append(el("div", {}, this.titleA, this.heat.root), this.panelB, this.panelD);
    const heatCard = el("div", { class: "tls-card" },
      el("h3", {}, "States", this.heatTitle, el("span", { style: "flex:1" }), this.legend.view.canvas),
      this.panels, this.tokens.root,
      el("div", { class: "tls-hint" }, "Hover for values · click a row to plot that unit · drag to zoom into a time range · double-click to zoom out"),
    );
    this.seriesCard.append(el("h3", {}, "Input series"), this.series.root);
    const linesCard = el("div", { class: "tls-card" }, el("h3", {}, "Selected units"), this.lines.root);
    const changesCard = el("div", { class: "tls-card" },
      el("h3", {}, "Change per timestep", this.changesNote), this.changes.root);
    const projCard = el("div", { class: "tls-card" },
      el("h3", {}, "Trajectory", el("span", { style: "flex:1" }), this.sel.method, this.sel.colorBy),
      el("div", { class: "tls-stack" }, this.projectionView.base.canvas, this.projectionView.overlay.canvas),
      this.projectionNote);
    const overviewCard = el("div", { class: "tls-card" }, el("h3", {}, "Training overview"), this.overviewView.root);
    this.overviewView.onPick = (step) => this.goToStep(step);
    const main = el("div", { class: "tls-main" },
      el("div", { class: "tls-col" }, heatCard, this.seriesCard, linesCard, changesCard),
      el("div", { class: "tls-col" }, projCard, overviewCard),
    );
    this.mainNodes = [bar, this.description, play, this.status, main];
    this.wireHeatmap(this.heat);
    this.wireHeatmap(this.heatB);
    this.wireHeatmap(this.heatD);
    for (const h of [this.heat, this.heatB, this.heatD]) h.onGridReady = () => this.invalidate();
    this.wireTimePlot(this.lines, "lines");
    this.wireTimePlot(this.series, "lines");
    this.wireTimePlot(this.changes, null);
    this.changes.base.canvas.addEventListener("click", (e) => {
      const t = this.changes.anomalyNear(e.clientX) ?? this.changes.timestepAtClient(e.clientX);
      if (t !== null) this.setCursor(t);
    });
    const proj = this.projectionView.base.canvas;
    proj.addEventListener("mousemove", (e) => {
      const [t0, t1] = this.range();
      const t = this.projectionView.nearest(e.clientX, e.clientY, t0, t1);
      this.setHover(t === null ? null : { t, unit: null, row: null, panel: null }, e);
    });
    proj.addEventListener("mouseleave", () => this.setHover(null));
    proj.addEventListener("click", (e) => {
      const [t0, t1] = this.range();
      const t = this.projectionView.nearest(e.clientX, e.clientY, t0, t1);
      if (t !== null) this.setCursor(t);
    });
  }

  private mainNodes: HTMLElement[] = [];
  private listing = "";
  private mode: "empty" | "main" | "" = "";

  private showMode(mode: "empty" | "main"): void {
    if (mode === this.mode) return;
    this.mode = mode;
    if (mode === "main") {
      this.content.replaceChildren(...this.mainNodes);
      return;
    }
    const code = [
      "import tb_lstm_states as tls",
      'writer = tls.StateWriter("runs/exp1")',
      'writer.log("lstm", model.lstm, probe_inputs, step=epoch)',
    ].join("\n");
    this.content.replaceChildren(el("div", { class: "tls-empty" },
      el("h2", {}, "No recurrent states logged yet"),
      el("p", {}, "Log the per-timestep states of a recurrent layer on a fixed probe batch during training, for example once per epoch:"),
      el("pre", {}, code),
      el("p", {}, "Then point TensorBoard at the log directory (tensorboard --logdir runs). This tab checks for new data every few seconds."),
      this.status,
    ));
  }

  private wireHeatmap(h: Heatmap): void {
    const c = h.base.canvas;
    c.addEventListener("mousemove", (e) => {
      if (this.drag) return this.onDragMove(e, h);
      const hit = h.hit(e.clientX, e.clientY);
      this.setHover(hit ? { t: hit.t, unit: hit.unit, row: hit.row, panel: h } : null, e);
    });
    c.addEventListener("mouseleave", () => { if (!this.drag) this.setHover(null); });
    c.addEventListener("mousedown", (e) => this.onDragStart(e, h, "heat"));
    c.addEventListener("dblclick", () => this.setZoom(null, null));
  }

  private wireTimePlot(p: LinePlot | ChangeTrack, zoom: "lines" | null): void {
    const c = p.base.canvas;
    c.addEventListener("mousemove", (e) => {
      if (this.drag) return this.onDragMove(e, p);
      const t = p.timestepAtClient(e.clientX);
      this.setHover(t === null ? null : { t, unit: null, row: null, panel: null }, e);
    });
    c.addEventListener("mouseleave", () => { if (!this.drag) this.setHover(null); });
    if (zoom) {
      c.addEventListener("mousedown", (e) => this.onDragStart(e, p, zoom));
      c.addEventListener("dblclick", () => this.setZoom(null, null));
    }
  }

  private onDragStart(e: MouseEvent, p: { timestepAtClient(x: number): number | null }, plot: "heat" | "lines"): void {
    if (e.button !== 0) return;
    const t = p.timestepAtClient(e.clientX);
    if (t === null) return;
    e.preventDefault();
    this.drag = { start: t, end: t, plot, x: e.clientX, moved: false };
    const up = (ev: MouseEvent) => {
      window.removeEventListener("mouseup", up);
      const drag = this.drag;
      this.drag = null;
      if (!drag) return;
      if (drag.moved && drag.start !== drag.end) {
        this.setZoom(Math.min(drag.start, drag.end), Math.max(drag.start, drag.end) + 1);
      } else if (plot === "heat") {
        const hit = (p as Heatmap).hit(ev.clientX, ev.clientY);
        if (hit) this.toggleUnit(hit.unit);
        this.setCursor(t);
      } else {
        this.setCursor(t);
      }
      this.drawOverlays();
    };
    window.addEventListener("mouseup", up);
  }

  private onDragMove(e: MouseEvent, p: { clampedTimestep(x: number): number }): void {
    if (!this.drag) return;
    this.drag.end = p.clampedTimestep(e.clientX);
    if (Math.abs(e.clientX - this.drag.x) > 4) this.drag.moved = true;
    this.tooltip.style.display = "none";
    this.drawOverlays();
  }

  // ---------------------------------------------------------------- state changes

  private onSelection(): void {
    this.resolve();
    this.syncControls();
    this.saveHash();
    this.loadOverview();
    this.loadProjection();
    this.loadCompareSteps();
    this.invalidate();
  }

  private toggleUnit(unit: number): void {
    this.explicitUnits = true;
    const i = this.state.units.indexOf(unit);
    if (i >= 0) this.state.units.splice(i, 1);
    else this.state.units = [...this.state.units, unit].slice(-10);
    this.saveHash();
    this.invalidate();
  }

  setCursor(t: number | null): void {
    this.state.cursor = t;
    this.saveHash();
    this.invalidate();
  }

  private setZoom(t0: number | null, t1: number | null): void {
    this.state.t0 = t0;
    this.state.t1 = t1;
    this.saveHash();
    this.invalidate();
  }

  private setHover(hover: App["hover"], e?: MouseEvent): void {
    this.hover = hover;
    this.drawOverlays();
    this.updateTooltip(e);
  }

  private saveHash(): void {
    clearTimeout(this.hashTimer);
    this.hashTimer = window.setTimeout(() => writeHash(this.state), this.playing ? 1000 : 150);
  }

  stepIndex(): number {
    if (!this.steps.length) return -1;
    if (this.state.step === null) return this.steps.length - 1;
    const i = this.steps.indexOf(this.state.step);
    if (i >= 0) return i;
    const near = nearestStep(this.steps, this.state.step);
    return near === null ? this.steps.length - 1 : this.steps.indexOf(near);
  }

  currentStep(): number | null {
    const i = this.stepIndex();
    return i < 0 ? null : this.steps[i];
  }

  goToIndex(i: number): void {
    if (!this.steps.length) return;
    i = Math.min(Math.max(Math.round(i), 0), this.steps.length - 1);
    this.state.step = i === this.steps.length - 1 ? null : this.steps[i];
    this.syncStep();
    this.saveHash();
    this.drawNow();
    this.prefetch();
  }

  goToStep(step: number): void {
    const i = this.steps.indexOf(step);
    if (i >= 0) this.goToIndex(i);
  }

  stepBy(delta: number): void {
    const i = this.stepIndex();
    if (i < 0) return;
    let next = i + delta;
    if (this.state.loop) next = (next + this.steps.length) % this.steps.length;
    this.goToIndex(next);
  }

  togglePlay(): void {
    this.playing = !this.playing;
    this.playButton.replaceChildren(icon(this.playing ? "pause" : "play"));
    this.playButton.setAttribute("aria-label", this.playing ? "pause" : "play");
    this.playButton.classList.toggle("on", this.playing);
    if (this.playing) {
      if (!this.state.loop && this.stepIndex() === this.steps.length - 1) this.goToIndex(0);
      this.lastAdvance = performance.now();
      requestAnimationFrame((t) => this.tick(t));
    } else {
      this.saveHash();
    }
  }

  private tick(now: number): void {
    if (!this.playing) return;
    const interval = 1000 / this.state.speed;
    if (now - this.lastAdvance >= interval - 4) {
      const i = this.stepIndex();
      let next = i + 1;
      if (next >= this.steps.length) {
        if (this.state.loop) next = 0;
        else {
          this.togglePlay();
          return;
        }
      }
      if (this.frameReady(this.steps[next])) {
        this.lastAdvance = now - Math.min(interval, Math.max(0, now - this.lastAdvance - interval));
        this.goToIndex(next);
      } else {
        this.ensureFrame(this.steps[next]);
      }
    }
    this.prefetch();
    requestAnimationFrame((t) => this.tick(t));
  }

  private onKey(e: KeyboardEvent): void {
    const target = e.target as HTMLElement | null;
    const tag = target?.tagName;
    if ((tag === "SELECT" || tag === "TEXTAREA" || (tag === "INPUT" && (target as HTMLInputElement).type !== "range")) && e.key !== "Escape") return;
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    if (e.key === " " || e.code === "Space") {
      e.preventDefault();
      this.togglePlay();
    } else if (e.key === "ArrowRight") {
      e.preventDefault();
      this.stepBy(1);
    } else if (e.key === "ArrowLeft") {
      e.preventDefault();
      this.stepBy(-1);
    } else if (e.key === "Home") {
      e.preventDefault();
      this.goToIndex(0);
    } else if (e.key === "End") {
      e.preventDefault();
      this.goToIndex(this.steps.length - 1);
    }
  }

  // ---------------------------------------------------------------- data

  /** Fetches runs and steps; on the first call also everything the first frame needs. */
  async refresh(first: boolean): Promise<void> {
    try {
      const runs = await api.fetchRuns();
      this.runs = runs;
      const hasData = Object.values(runs).some((tags) => Object.keys(tags).length > 0);
      if (!hasData) {
        this.showMode("empty");
        this.setStatus("");
        return;
      }
      this.showMode("main");
      const before = `${this.state.run}|${this.state.tag}`;
      const listing = JSON.stringify(Object.keys(runs).sort().map((r) => [r, Object.keys(runs[r]).sort()]));
      const newRuns = listing !== this.listing;
      this.listing = listing;
      this.resolve();
      const steps = await api.fetchSteps(this.state.run, this.state.tag);
      const list = steps.map((s) => s.step);
      const changed = list.join() !== this.steps.join();
      if (changed || before !== `${this.state.run}|${this.state.tag}`) {
        this.steps = list;
        this.syncControls();
        this.loadOverview(changed && !first);
        this.loadProjection(!first);
      }
      if (first || newRuns) this.syncControls();
      this.loadCompareSteps();
      this.setStatus(this.steps.length ? "" : "This tag has no steps yet.");
      this.invalidate();
      if (first) this.saveHash();
    } catch (e: any) {
      this.showError("Could not load the runs: " + (e?.message ?? e));
    }
  }

  /** Makes the state consistent with the runs: unknown names fall back to the first. */
  private resolve(): void {
    const runNames = Object.keys(this.runs).filter((r) => Object.keys(this.runs[r]).length).sort();
    if (!runNames.includes(this.state.run)) this.state.run = runNames[0] ?? "";
    const tags = Object.keys(this.runs[this.state.run] ?? {}).sort();
    if (!tags.includes(this.state.tag)) this.state.tag = tags[0] ?? "";
    const info = this.runs[this.state.run]?.[this.state.tag] ?? null;
    this.info = info;
    if (!info) return;
    const entries = info.layers * info.directions;
    if (this.state.layer >= entries) this.state.layer = 0;
    if (!info.kinds.includes(this.state.kind)) this.state.kind = info.kinds.includes("cell") ? "cell" : info.kinds[0] ?? "hidden";
    if (this.state.sequence >= info.batch) this.state.sequence = 0;
    if (this.state.t1 !== null && info.time && this.state.t1 > info.time) this.state.t0 = this.state.t1 = null;
    if (this.state.compare && !this.runs[this.state.compare]?.[this.state.tag]) this.state.compare = "";
    if (this.state.order.startsWith("corr:") && !this.seriesNames().includes(this.state.order.slice(5))) {
      // kept: the series names come with the series route; checked again when they load
    }
  }

  private seriesNames(): string[] {
    const s = this.currentSeries();
    return s ? Object.keys(s.series) : [];
  }

  query(step: number, run = this.state.run): api.StatesQuery {
    return { run, tag: this.state.tag, step, layer: this.state.layer, kind: this.state.kind, sequence: this.state.sequence };
  }

  private timeOf(run: string): number {
    return this.runs[run]?.[this.state.tag]?.time ?? 0;
  }

  /** The query of the array on screen: a long sequence's window in bins, else the whole sequence. */
  private arrayQuery(q: api.StatesQuery): api.StatesQuery {
    return win.windowed(q, win.windowFor(this.timeOf(q.run), this.state.t0, this.state.t1, this.binPixels));
  }

  private arrayKey(q: api.StatesQuery): string {
    return api.statesUrl(this.arrayQuery(q));
  }

  private loadArray(q: api.StatesQuery, signal?: AbortSignal): Promise<api.StatesArray> {
    const wq = this.arrayQuery(q);
    return this.arrays.get(api.statesUrl(wq), () => api.fetchStates(wq, signal));
  }

  /** Loads what the views draw of a step (for the WebM export). */
  loadStep(step: number): Promise<api.StatesArray> {
    return this.loadArray(this.query(step));
  }

  /** Prefetches in flight, by key: cancelled when the view jumps away from them. */
  private prefetching = new Map<string, AbortController>();

  private prefetchArray(q: api.StatesQuery): void {
    const key = this.arrayKey(q);
    if (this.arrays.has(key) || this.arrays.isPending(key)) return;
    const controller = new AbortController();
    this.prefetching.set(key, controller);
    this.loadArray(q, controller.signal).catch(() => undefined).finally(() => this.prefetching.delete(key));
  }

  private compareQuery(step: number): api.StatesQuery | null {
    if (!this.state.compare) return null;
    const sameRun = this.state.compare === this.state.run;
    const steps = sameRun ? this.steps : this.compareSteps;
    const target = this.state.compareStep ?? step;
    const s = nearestStep(steps, target);
    return s === null ? null : this.query(s, this.state.compare);
  }

  private frameReady(step: number): boolean {
    if (!this.arrays.has(this.arrayKey(this.query(step)))) return false;
    const cq = this.compareQuery(step);
    return !cq || this.arrays.has(this.arrayKey(cq));
  }

  private ensureFrame(step: number): void {
    const q = this.query(step);
    const done = () => { if (this.currentStep() === step) this.invalidate(); };
    const fail = (e: any) => {
      // a cancelled prefetch of this very step: ask again
      if (e?.name === "AbortError") setTimeout(() => this.invalidate(), 0);
      else this.showError(String(e?.message ?? e));
    };
    if (!this.arrays.has(this.arrayKey(q))) this.loadArray(q).then(done, fail);
    const cq = this.compareQuery(step);
    if (cq && !this.arrays.has(this.arrayKey(cq))) this.loadArray(cq).then(done, fail);
  }

  /** Loads the next steps ahead of playback (or of the current step) a few at a time. */
  private prefetch(): void {
    const i = this.stepIndex();
    if (i < 0) return;
    const ahead = this.playing ? PREFETCH_PLAYING : PREFETCH;
    const wanted = new Set<string>();
    for (let k = 0; k <= ahead && k < this.steps.length; k++) {
      const step = this.steps[(i + k) % this.steps.length];
      wanted.add(this.arrayKey(this.query(step)));
      const cq = this.compareQuery(step);
      if (cq) wanted.add(this.arrayKey(cq));
    }
    // after a jump, the old window's requests would only delay the step on screen
    for (const [key, controller] of this.prefetching) {
      if (!wanted.has(key)) {
        controller.abort();
        this.prefetching.delete(key);
      }
    }
    // the step on screen first: nothing else competes with it on the backend
    if (!this.frameReady(this.steps[i])) return;
    for (let k = 1; k <= ahead && this.arrays.pendingCount < MAX_PARALLEL; k++) {
      const j = i + k;
      if (j >= this.steps.length && !this.state.loop) break;
      const step = this.steps[j % this.steps.length];
      const q = this.query(step);
      this.prefetchArray(q);
      const cq = this.compareQuery(step);
      if (cq) this.prefetchArray(cq);
      if (this.playing && k <= 3) {
        this.loadJson("changes", q, () => api.fetchChanges(q)).catch(() => undefined);
        const sp = this.seriesParams(step);
        this.loadJson("series", sp, () => api.fetchSeries(sp.run, sp.tag, sp.step, sp.sequence)).catch(() => undefined);
      }
    }
  }

  private loadJson<T>(route: string, params: object, load: () => Promise<T>): Promise<T> {
    return this.json.get(route + JSON.stringify(params), load);
  }

  private peekJson<T>(route: string, params: object): T | undefined {
    return this.json.peek(route + JSON.stringify(params));
  }

  private currentSeries(): api.Series | undefined {
    const step = this.currentStep();
    if (step === null) return undefined;
    const p = this.seriesParams(step);
    const hit = this.peekJson<api.Series>("series", p);
    if (hit) return hit;
    this.loadJson("series", p, () => api.fetchSeries(p.run, p.tag, p.step, p.sequence)).then(
      (s) => { if (this.currentStep() === step && !sameSeries(s, this.lastSeries)) this.invalidate(); }, () => undefined);
    // while it loads, the previous step's series (the probe inputs rarely change)
    return this.lastSeries ?? undefined;
  }
  private lastSeries: api.Series | null = null;

  private seriesParams(step: number) {
    return { run: this.state.run, tag: this.state.tag, step, sequence: this.state.sequence };
  }

  private currentChanges(): api.Changes | undefined {
    const step = this.currentStep();
    if (step === null) return undefined;
    const q = this.query(step);
    const hit = this.peekJson<api.Changes>("changes", q);
    if (hit) return hit;
    this.loadJson("changes", q, () => api.fetchChanges(q)).then(() => {
      if (this.currentStep() === step) {
        const [t0, t1] = this.range();
        this.drawChangeTrack(t0, t1, this.lastWidth);
        this.drawOverlays();
      }
    }, () => undefined);
    return undefined;
  }

  private unitOrder(units: number): number[] {
    const identity = () => {
      if (this.identityOrder.length !== units) this.identityOrder = Array.from({ length: units }, (_, i) => i);
      return this.identityOrder;
    };
    const order = this.state.order;
    if (order === "index") return identity();
    const step = this.currentStep();
    if (step === null) return identity();
    const q = { run: this.state.run, tag: this.state.tag, step, layer: this.state.layer, kind: this.state.kind };
    const cacheKey = JSON.stringify(q) + order;
    const cached = this.orderCache.get(cacheKey);
    if (cached) return (this.lastOrder = cached);
    const hit = this.peekJson<api.Units>("units", q);
    if (hit) {
      let result: number[] | null = null;
      if (order === "variance") result = orderByScore(hit.variance);
      else if (order === "cluster") result = hit.cluster_order;
      else if (order.startsWith("corr:")) {
        const c = hit.correlation[order.slice(5)];
        // Strongest first whatever the sign: a counter unit may run either way.
        result = c ? orderByScore(Array.from(c, Math.abs)) : null;
      }
      if (!isPermutation(result, units)) result = identity();
      this.orderCache.set(cacheKey, result);
      return (this.lastOrder = result);
    }
    this.loadJson("units", q, () => api.fetchUnits(q)).then(() => this.invalidate(), (e) => this.showError(String(e?.message ?? e)));
    return isPermutation(this.lastOrder, units) ? this.lastOrder : identity();
  }

  private loadOverview(force = false): void {
    const key = `${this.state.run}|${this.state.tag}|${this.state.layer}|${this.state.kind}`;
    if (!force && key === this.overviewKey) return;
    this.overviewKey = key;
    api.fetchOverview(this.state.run, this.state.tag, this.state.layer, this.state.kind).then(
      (o) => { if (key === this.overviewKey) { this.overview = o; this.invalidate(); } },
      () => { if (key === this.overviewKey) this.overview = null; },
    );
  }

  private loadProjection(force = false): void {
    const info = this.info;
    if (!info || !this.steps.length) return;
    const method = this.state.method;
    // t-SNE and UMAP take seconds per step: at most 20 steps, evenly spaced (the backend's
    // point caps still apply); PCA takes every step the backend allows.
    const steps = method === "pca" ? undefined : evenlySpaced(this.steps, Math.max(1, Math.min(20, Math.floor(25_000 / Math.max(1, info.time)))));
    const q = { run: this.state.run, tag: this.state.tag, layer: this.state.layer, kind: this.state.kind, method, sequence: this.state.sequence, steps };
    const key = JSON.stringify({ ...q, steps: undefined });
    // New steps refit PCA (cheap; its one basis spans the steps); t-SNE and UMAP refit on request.
    if (key === this.projectionKey && !(force && q.method === "pca")) return;
    const refresh = key === this.projectionKey;
    this.projectionKey = key;
    if (refresh) {
      api.fetchProjection(q).then((p) => {
        if (key !== this.projectionKey) return;
        this.projection = p;
        this.projectionView.setAll(p.points.values(), p.bounds);
        this.invalidate();
      }, () => undefined);
      return;
    }
    this.projection = null;
    const name = method === "tsne" ? "t-SNE" : "UMAP";
    const started = performance.now();
    const progress = () => {
      if (key !== this.projectionKey || this.projection) return clearInterval(timer);
      const seconds = Math.round((performance.now() - started) / 1000);
      this.projectionError = method === "pca" ? "loading…" : `fitting ${name} over ${steps?.length ?? ""} steps… ${seconds} s`;
      this.invalidate();
    };
    const timer = setInterval(progress, 1000);
    progress();
    api.fetchProjection(q).then(
      (p) => {
        clearInterval(timer);
        if (key !== this.projectionKey) return;
        this.projection = p;
        this.projectionError = "";
        this.projectionView.setAll(p.points.values(), p.bounds);
        this.invalidate();
      },
      (e) => {
        clearInterval(timer);
        if (key !== this.projectionKey) return;
        this.projectionError = String(e?.message ?? e).replace(/^projection: /, "");
        this.invalidate();
      },
    );
  }

  private loadCompareSteps(): void {
    const run = this.state.compare;
    if (!run || run === this.state.run) return;
    api.fetchSteps(run, this.state.tag).then((s) => {
      const list = s.map((x) => x.step);
      if (list.join() !== this.compareSteps.join()) {
        this.compareSteps = list;
        this.invalidate();
      }
    }, (e) => this.showError(String(e?.message ?? e)));
  }

  // ---------------------------------------------------------------- drawing

  private setStatus(text: string): void {
    this.error = "";
    this.status.textContent = text;
    this.status.className = "tls-msg";
  }

  showError(text: string): void {
    if (text.includes("AbortError")) return;
    this.error = text;
    this.stats.errors.push(text);
    this.status.textContent = text;
    this.status.className = "tls-msg tls-error";
  }

  private syncControls(): void {
    const runNames = Object.keys(this.runs).filter((r) => Object.keys(this.runs[r]).length).sort();
    setOptions(this.sel.run, runNames.map((r) => [r, r]), this.state.run);
    const tags = Object.keys(this.runs[this.state.run] ?? {}).sort();
    setOptions(this.sel.tag, tags.map((t) => [t, t]), this.state.tag);
    const info = this.info;
    if (info) {
      const layerOptions: [string, string][] = [];
      for (let l = 0; l < info.layers; l++) {
        for (let d = 0; d < info.directions; d++) {
          const name = info.directions === 2 ? `layer ${l} ${d ? "reverse" : "forward"}` : `layer ${l}`;
          layerOptions.push([String(l * info.directions + d), name]);
        }
      }
      setOptions(this.sel.layer, layerOptions, String(this.state.layer));
      setOptions(this.sel.kind, info.kinds.map((k) => [k, k === "cell" ? "cell c" : k === "hidden" ? "hidden h" : k + " gate"]), this.state.kind);
      setOptions(this.sel.sequence, Array.from({ length: info.batch }, (_, i) => [String(i), "#" + i]), String(this.state.sequence));
      this.description.replaceChildren();
      // The backend renders descriptions to safe HTML (its Markdown sanitiser); nothing else is ever set as HTML.
      this.description.innerHTML = info.description;
      this.description.style.display = info.description ? "" : "none";
    }
    this.syncSeriesOptions();
    const compareRuns = Object.keys(this.runs).filter((r) => this.runs[r][this.state.tag]).sort();
    setOptions(this.sel.compare, [["", "off"], ...compareRuns.map((r) => [r, r === this.state.run ? r + " (another step)" : r] as [string, string])], this.state.compare);
    this.compareStepInput.value = this.state.compareStep === null ? "" : String(this.state.compareStep);
    this.sel.speed.value = String(this.state.speed);
    this.loopButton.classList.toggle("on", this.state.loop);
    this.syncStep();
  }

  /** The selectors whose options name the input series (known once a step's series loads). */
  private syncSeriesOptions(): void {
    const series = this.seriesNames();
    const orders: [string, string][] = [["index", "index"], ["variance", "variance"], ["cluster", "clustering"],
      ...series.map((s) => ["corr:" + s, "|correlation| with " + s] as [string, string])];
    if (this.state.order.startsWith("corr:") && !series.includes(this.state.order.slice(5))) orders.push([this.state.order, "|correlation| with " + this.state.order.slice(5)]);
    setOptions(this.sel.order, orders, this.state.order);
    const colors: [string, string][] = [["time", "by timestep"], ...series.map((s) => [s, "by " + s] as [string, string])];
    if (!series.includes(this.state.colorBy) && this.state.colorBy !== "time") colors.push([this.state.colorBy, "by " + this.state.colorBy]);
    setOptions(this.sel.colorBy, colors, this.state.colorBy);
  }

  private syncStep(): void {
    const i = this.stepIndex();
    const max = String(Math.max(0, this.steps.length - 1));
    if (this.slider.max !== max) this.slider.max = max;
    if (this.slider.value !== String(Math.max(0, i))) this.slider.value = String(Math.max(0, i));
    if (this.slider.disabled !== this.steps.length < 2) this.slider.disabled = this.steps.length < 2;
    const step = this.currentStep();
    if (!this.stepLabel.firstChild) this.stepLabel.append("step ", el("b"), "");
    setText(this.stepLabel.childNodes[1], step === null ? "–" : String(step));
    setText(this.stepLabel.childNodes[2], ` · ${i + 1} of ${this.steps.length}`);
  }

  /** Schedules a redraw on the next animation frame. */
  invalidate(): void {
    if (this.frameRequested) return;
    this.frameRequested = true;
    requestAnimationFrame(() => {
      this.frameRequested = false;
      this.drawNow();
    });
  }

  range(): [number, number] {
    const time = this.shown?.view.time ?? this.info?.time ?? 1;
    let { t0, t1 } = this.state;
    if (t0 === null || t1 === null || t1 > time) return [0, Math.max(1, time)];
    return [t0, t1];
  }

  private drawNow(): void {
    if (this.mode !== "main") return;
    const step = this.currentStep();
    const width = Math.max(320, this.panels.clientWidth || this.root.clientWidth - 360);
    const info = this.info;
    this.binPixels = (width - GUTTER - RIGHT) * (window.devicePixelRatio || 1);
    if (step === null || !info) {
      this.heat.layout(width, 240);
      this.heat.draw(null, this.theme, this.steps.length ? "loading…" : "no steps");
      return;
    }
    const q = this.query(step);
    const key = this.arrayKey(q);
    const array = this.arrays.peek(key);
    if (!this.frameReady(step)) this.ensureFrame(step); // the primary, the compared or both
    if (array) this.shown = { key, array, step, view: win.viewOf(array, this.timeOf(q.run)) };
    else {
      // keep the previous frame of the same selection on screen while this one loads
      if (this.shown && !this.sameSelection(this.shown.key, key)) this.shown = null;
    }
    const cq = this.compareQuery(step);
    if (cq) {
      const ck = this.arrayKey(cq);
      const b = this.arrays.peek(ck);
      if (b) this.shownCompare = { key: ck, array: b, view: win.viewOf(b, this.timeOf(cq.run)) };
      else if (this.shownCompare && !this.sameSelection(this.shownCompare.key, ck)) this.shownCompare = null;
    } else this.shownCompare = null;
    this.prefetch();
    const started = performance.now();
    this.drawViews(width);
    this.stats.draws.push(performance.now() - started);
    if (this.stats.draws.length > 5000) this.stats.draws.splice(0, 1000);
  }

  private sameSelection(a: string, b: string): boolean {
    // another step, or another window of a long sequence
    const strip = (k: string) => k.replace(/([?&])(step|start|stop|bins)=[^&]*/g, "$1");
    return strip(a) === strip(b);
  }

  private drawViews(fullWidth: number): void {
    this.lastWidth = fullWidth;
    const theme = this.theme;
    const shown = this.shown;
    const compare = !!this.state.compare;
    const b = compare ? this.shownCompare : null;
    if (shown && b && (this.difference?.a !== shown.array || this.difference?.b !== b.array)) {
      this.difference = { a: shown.array, b: b.array, result: win.difference(shown.view, b.view) };
    }
    const difference = shown && b ? this.difference!.result : null;
    const diff = !!difference;
    const nPanels = compare ? (diff ? 3 : 2) : 1;
    this.panelB.style.display = compare ? "" : "none";
    this.panelD.style.display = diff ? "" : "none";
    const gap = 10;
    const panelW = Math.floor((fullWidth - gap * (nPanels - 1)) / nPanels);
    const units = shown ? shown.view.units : 0;
    const heatH = Math.round(Math.min(440, Math.max(180, units * 3)));
    const [t0, t1] = this.range();
    const step = this.currentStep()!;
    const kindLabel = this.state.kind === "cell" ? "cell state c" : this.state.kind === "hidden" ? "hidden state h" : this.state.kind + " gate";
    setText(this.heatTitle, `${kindLabel} · ${this.sel.layer.selectedOptions[0]?.textContent ?? ""} · sequence #${this.state.sequence}` + (t0 > 0 || t1 < (shown?.view.time ?? t1) ? ` · timesteps ${t0}–${t1 - 1}` : ""));
    this.titleA.style.display = compare ? "" : "none";
    setText(this.titleA, `${this.state.run} · step ${step}`);

    let order: number[] = [];
    let frame: HeatmapFrame | null = null;
    if (shown) {
      order = this.unitOrder(units);
      const domKey = `${this.state.run}|${this.state.tag}|${this.state.layer}|${this.state.kind}|${this.state.sequence}`;
      const d = domainFor(this.state.kind, shown.array.data);
      if (domKey !== this.domainKey) {
        this.domainKey = domKey;
        this.domain = d;
      } else if (!SIGMOID_KINDS.has(this.state.kind)) {
        // grows, never shrinks, during one selection: colours mean the same on every step
        this.domain = { lo: Math.min(this.domain.lo, d.lo), hi: Math.max(this.domain.hi, d.hi) };
      }
      // Until the user picks units, plot the top of the current order (it changes when
      // the per-unit scores arrive or the order is switched).
      if (!this.explicitUnits) this.state.units = order.slice(0, 3);
      this.state.units = this.state.units.filter((u) => u < units);
      const selected = new Map(this.state.units.map((u, i) => [u, PALETTE[i % PALETTE.length]]));
      frame = {
        data: shown.array.data, units, order, domain: this.domain, lut: this.lut, selected,
        centre: (this.domain.lo + this.domain.hi) / 2, length: shown.view.length, segment: shown.view.segment,
      };
    }
    this.legend.draw(this.domain, theme, "value");
    this.heat.layout(panelW, heatH);
    this.heat.setRange(t0, t1);
    this.heat.draw(frame, theme, this.error || "loading…");
    if (compare) {
      const cq = this.compareQuery(step);
      setText(this.titleB, cq ? `${cq.run} · step ${cq.step}` : `${this.state.compare} · no steps`);
      this.heatB.layout(panelW, heatH);
      this.heatB.setRange(t0, Math.min(t1, b?.view.time ?? t1));
      const bUnits = b ? b.view.units : 0;
      const bOrder = b && bUnits === units ? order : Array.from({ length: bUnits }, (_, i) => i);
      this.heatB.draw(b && frame ? { ...frame, data: b.array.data, units: bUnits, order: bOrder, length: b.view.length, segment: b.view.segment } : null, theme, "loading…");
      if (difference && frame) {
        const { data: d, max: m, segment } = difference;
        setText(this.titleD, `difference (left − right) · max |Δ| ${formatValue(m)}`);
        this.heatD.layout(panelW, heatH);
        this.heatD.setRange(t0, t1);
        this.heatD.draw({ ...frame, data: d, segment, domain: { lo: -m, hi: m }, centre: 0 }, theme);
      }
    }

    // tokens tinted by the first selected unit (the hovered one while hovering)
    const series = this.currentSeries();
    if (series && series !== this.lastSeries) {
      this.lastSeries = series;
      this.syncSeriesOptions();
    }
    const tintUnit = this.hover?.unit ?? this.state.units[0] ?? null;
    const view = shown?.view;
    const centre = (this.domain.lo + this.domain.hi) / 2;
    this.tokens.draw(series?.tokens ?? null, t0, t1, panelW,
      view && tintUnit !== null ? (t) => win.tintAt(view, t, tintUnit, centre) : null, this.domain, theme.dark,
      (t) => this.setHover(t === null ? null : { t, unit: null, row: null, panel: null }));
    this.tokens.root.style.marginLeft = "56px";

    // input series
    const names = series ? Object.keys(series.series) : [];
    this.seriesCard.style.display = names.length ? "" : "none";
    if (names.length && series) {
      this.series.layout(fullWidth, 100);
      this.series.setRange(t0, t1);
      this.series.draw(names.map((n, i) => {
        const v = series.series[n];
        return { label: n, color: PALETTE[(i + 5) % PALETTE.length], get: (t: number) => v[t], normalise: true };
      }), theme);
    }

    // selected units
    this.lines.layout(fullWidth, 170);
    this.lines.setRange(t0, t1);
    const tracks: Track[] = view ? this.state.units.map((u, i) => ({
      label: "unit " + u, color: PALETTE[i % PALETTE.length], ...win.unitTrack(view, u),
    })) : [];
    this.lines.draw(tracks, theme, view ? "click heatmap rows to plot units" : "", [this.domain.lo, this.domain.hi], view?.length);

    this.drawChangeTrack(t0, t1, fullWidth);

    // projection
    const size = 276;
    this.projectionView.base.resize(size, size);
    if (this.projectionView.overlay.resize(size, size)) this.projectionView.overlayShown = true;
    const p = this.projection;
    const projected = p ? nearestStep(p.steps, step) : null;
    const points = p && projected !== null ? p.points.get(projected) ?? null : null;
    const idx = p && projected !== null ? p.steps.indexOf(projected) : -1;
    setText(this.projectionNote, p ? (p.methodUsed === "pca" ? "PCA" : p.methodUsed === "tsne" ? "t-SNE" : "UMAP") +
      (p.explained ? ` · ${Math.round(100 * (p.explained[0] + (p.explained[1] ?? 0)))}% of variance` : "") +
      (projected !== step && projected !== null ? ` · nearest projected step ${projected}` : "") : "");
    const previous = p && idx > 0 ? p.points.get(p.steps[idx - 1]) ?? null : null;
    let color: ((t: number) => number) | null = null;
    if (this.state.colorBy !== "time" && series?.series[this.state.colorBy]) {
      const v = series.series[this.state.colorBy];
      let lo = Infinity, hi = -Infinity;
      for (const x of v) if (Number.isFinite(x)) { lo = Math.min(lo, x); hi = Math.max(hi, x); }
      color = (t) => (v[t] - lo) / (hi - lo || 1);
    }
    this.projectionView.draw(points, previous, t0, t1, color, theme,
      this.projectionError || (p ? `step ${step} is outside the projected window` : "loading…"));

    // overview
    if (this.overview) this.overviewView.draw(this.overview.steps, this.overview.stats, step, theme);
    this.syncStep();
    this.drawOverlays();
    if (!this.explicitUnits && this.state.units.length) this.saveHash();
  }

  private lastWidth = 800;

  private drawChangeTrack(t0: number, t1: number, fullWidth: number): void {
    const changes = this.currentChanges();
    this.changes.layout(fullWidth, 80);
    this.changes.setRange(t0, t1);
    this.changes.draw(changes?.norm ?? null, changes?.anomalies ?? [], this.theme, "loading…");
    const note = changes ? `‖Δ${this.state.kind === "cell" ? "c" : "h"}ₜ‖ · ${changes.anomalies.length} anomal${changes.anomalies.length === 1 ? "y" : "ies"} marked (click a mark to jump)` : "";
    if (this.changesNote.textContent !== note) this.changesNote.textContent = note;
  }

  drawOverlays(): void {
    const [t0, t1] = this.range();
    const view: TimeView = {
      t0, t1, cursor: this.state.cursor, hover: this.hover?.t ?? null,
      selection: this.drag && this.drag.moved ? [this.drag.start, this.drag.end] : null,
    };
    for (const h of [this.heat, this.heatB, this.heatD]) {
      const row = this.hover?.panel === h ? this.hover.row : null;
      h.drawOverlay(view, this.theme, (ctx) => h.drawRow(ctx, row, this.theme), String(row) + ":" + h.rows);
    }
    this.lines.drawOverlay(view, this.theme);
    this.series.drawOverlay(view, this.theme);
    this.changes.drawOverlay(view, this.theme);
    this.projectionView.drawOverlay(this.hover?.t ?? this.state.cursor, this.theme);
  }

  private updateTooltip(e?: MouseEvent): void {
    const hover = this.hover;
    if (!hover || !e || this.drag) {
      this.tooltip.style.display = "none";
      return;
    }
    const lines: string[] = [];
    const series = this.currentSeries();
    const shown = this.shown?.view, other = this.shownCompare?.view;
    const t = hover.t;
    if (hover.unit !== null) {
      lines.push(`unit ${hover.unit} · timestep ${t}`);
      if (hover.panel === this.heatB) {
        const cq = this.compareQuery(this.currentStep()!);
        lines.push(`${cq?.run ?? ""} step ${cq?.step ?? ""}`);
        lines.push("value " + win.describeAt(other, t, hover.unit));
      } else if (hover.panel === this.heatD) {
        const a = win.valueAt(shown, t, hover.unit), b = win.valueAt(other, t, hover.unit);
        lines.push(`difference ${formatValue(a - b)}  (${formatValue(a)} − ${formatValue(b)})`);
      } else {
        lines.push("value " + win.describeAt(shown, t, hover.unit));
      }
    } else {
      lines.push(`timestep ${t}`);
      for (const u of this.state.units) lines.push(`unit ${u}: ${win.describeAt(shown, t, u)}`);
      const ch = this.currentChanges();
      if (ch && t < ch.norm.length) lines.push(`change ${formatValue(ch.norm[t])}` + (ch.anomalies.includes(t) ? " · anomaly" : ""));
    }
    const token = series?.tokens?.[t];
    if (token !== undefined) lines.push(`token “${token.length > 40 ? token.slice(0, 40) + "…" : token}”`);
    for (const [name, values] of Object.entries(series?.series ?? {})) {
      if (t < values.length) lines.push(`${name} ${formatValue(values[t])}`);
    }
    this.tooltip.textContent = lines.join("\n");
    this.tooltip.style.display = "block";
    const w = this.tooltip.offsetWidth, h = this.tooltip.offsetHeight;
    const x = e.clientX + 14 + w > window.innerWidth ? e.clientX - w - 10 : e.clientX + 14;
    const y = e.clientY + 14 + h > window.innerHeight ? e.clientY - h - 10 : e.clientY + 14;
    this.tooltip.style.left = Math.max(0, x) + "px";
    this.tooltip.style.top = Math.max(0, y) + "px";
  }

  /** The [time, units] array on screen and its first timestep, for export. */
  shownArray(): { array: NdArray; start: number } | null {
    const shown = this.shown;
    if (!shown) return null;
    const s = shown.view.segment;
    if (!s) return { array: shown.array, start: 0 };
    if (s.binned) throw new Error("the heatmap shows min/max bins of this long sequence: zoom in to full resolution to export CSV, or export the whole array as .npy");
    return { array: shown.array, start: s.start };
  }
}

function sameSeries(a: api.Series | null, b: api.Series | null): boolean {
  if (!a || !b) return a === b;
  if ((a.tokens ?? []).join("\u0000") !== (b.tokens ?? []).join("\u0000")) return false;
  const names = Object.keys(a.series);
  if (names.join() !== Object.keys(b.series).join()) return false;
  return names.every((n) => a.series[n].length === b.series[n].length && a.series[n].every((v, i) => Object.is(v, b.series[n][i])));
}
