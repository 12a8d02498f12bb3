// The tab, composed: the store, the data loader, the controls, the views and the
// pointer, linked to one step and one time cursor. It wires them and schedules frames.

import * as api from "./api";
import { divergingLut } from "./colors";
import { Controls } from "./controls";
import { DataLoader } from "./data";
import { el } from "./dom";
import { Exporter, ExportSource } from "./exporter";
import type { Heatmap } from "./heatmap";
import { Player } from "./playback";
import { Pointer } from "./pointer";
import { Scene } from "./scene";
import { Store } from "./store";
import type { ViewState } from "./hashstate";
import { STYLE, themeFor, watchTheme } from "./theme";
import { GUTTER, RIGHT, TimeView } from "./timeplot";
import { ChangesView } from "./views/changes";
import { GradientsView } from "./views/gradients";
import type { DrawContext } from "./views/context";
import { OverviewCard } from "./views/overview";
import { SeriesView } from "./views/series";
import { StatesView } from "./views/states";
import { TrajectoryView } from "./views/trajectory";
import { UnitsView } from "./views/units";
import { howTo } from "./howto";
import { keepFocus } from "./focus";
import type { LinePlot } from "./lines";
import { formatTimestamp, isTimeSeries } from "./seriesaxes";
import { AnomalyView } from "./views/anomalies";
import { UnitTable } from "./views/unittable";
import { IdentityView } from "./views/identity";
import { SearchView } from "./views/search";

const POLL_MS = 5000;

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
  private readonly store = new Store();
  private readonly data = new DataLoader(this.store, {
    changed: () => this.invalidate(),
    changesArrived: () => this.drawChanges(),
    error: (m) => this.showError(m),
  });
  private readonly scene = new Scene(this.store, this.data);
  private readonly controls = new Controls(this.store, {
    selection: () => this.onSelection(),
    setting: () => this.store.saveHash(),
    goToIndex: (i) => this.player.goToIndex(i),
    stepBy: (d) => this.player.stepBy(d),
    togglePlay: () => this.player.togglePlay(),
    exportAs: (what) => this.exporter.run(what).catch((e) => this.showError(String(e?.message ?? e))),
  });
  private readonly player = new Player(this.store, this.data, this.controls, () => this.drawNow());
  private readonly states = new StatesView();
  private readonly seriesView = new SeriesView();
  private readonly unitsView = new UnitsView();
  private readonly changesView = new ChangesView();
  private readonly trajectory = new TrajectoryView({
    method: this.controls.sel.method, colorBy: this.controls.sel.colorBy,
    sequences: this.controls.sel.trajectory, sequenceSet: this.controls.trajectorySet,
  });
  private readonly overview = new OverviewCard();
  private readonly anomalies = new AnomalyView();
  private readonly unitTable = new UnitTable();
  private readonly identity = new IdentityView();
  private readonly search = new SearchView();
  private readonly gradients = new GradientsView({
    data: this.data,
    changed: () => this.invalidate(),
    hover: (t) => this.pointer.setHover(t === null ? null : { t, unit: null, row: null, panel: null }),
    setCursor: (t) => this.setCursor(t),
    choice: () => this.store.state,
    choose: (patch) => this.setState(patch),
  });
  private readonly pointer = new Pointer(this.store, this.scene, {
    setCursor: (t) => this.setCursor(t),
    setZoom: (t0, t1) => this.setZoom(t0, t1),
    pickUnit: (unit, panel) => {
      // the compare panel's rows may be aligned to this run's units: plot the partner
      const u = panel === this.states.heatB ? this.scene.comparedUnit(unit) : unit;
      if (u !== null) this.pickUnit(u, panel === this.states.heatB);
    },
    legendClick: (plot, label) => this.legendClick(plot, label),
    time: () => this.scene.shown?.view.time ?? this.store.info?.time ?? 1,
    redraw: () => this.invalidate(),
    drawOverlays: () => this.drawOverlays(),
    series: () => this.data.currentSeries(),
    changes: () => this.data.currentChanges(),
    comparePanels: () => ({ compare: this.states.heatB, difference: this.states.heatD }),
  });
  private readonly exporter = new Exporter(this.exportSource());
  private readonly stats: Stats = { ready: null, draws: [], paints: [], errors: [] };

  private theme = themeFor(false);
  private lut = divergingLut(false);
  private error = "";
  private frameRequested = false;
  private lastWidth = 800;
  private listing = "";
  private mode: "empty" | "main" | "" = "";

  private readonly root = el("div", { class: "tls" });
  private readonly content = el("div");
  private readonly status = el("div", { class: "tls-msg" });
  private mainNodes: HTMLElement[] = [];

  constructor() {
    window.__tls = this.stats;
  }

  mount(): void {
    const style = document.createElement("style");
    style.textContent = STYLE;
    document.head.append(style);
    document.body.append(this.root, this.pointer.tooltip);
    this.root.append(this.content);
    watchTheme((dark) => {
      this.theme = themeFor(dark);
      this.lut = divergingLut(dark);
      document.documentElement.dataset.theme = dark ? "dark" : "light";
      this.invalidate();
    });
    this.store.load();
    this.layout();
    window.addEventListener("resize", () => this.invalidate());
    document.addEventListener("keydown", (e) => this.player.onKey(e));
    keepFocus(this.root, (e) => this.player.onKey(e));
    this.states.heat.onPaint = () => {
      const step = this.scene.shown?.step ?? null; // the step whose data is on screen
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

  private layout(): void {
    const main = el("div", { class: "tls-main" },
      el("div", { class: "tls-col" }, this.states.root, this.gradients.root, this.seriesView.root, this.unitsView.root, this.changesView.root, this.anomalies.root),
      el("div", { class: "tls-col" }, this.trajectory.root, this.overview.root, this.unitTable.root, this.search.root, this.identity.root),
    );
    this.overview.root.append(this.gradients.hint); // a record without gradients: how to log them
    this.mainNodes = [this.controls.bar, this.controls.description, this.controls.play, this.status, main];
    for (const h of this.states.heatmaps) {
      this.pointer.wireHeatmap(h);
      h.onGridReady = () => this.invalidate();
    }
    this.pointer.wireTimePlot(this.unitsView.plot, true);
    this.pointer.wireTimePlot(this.seriesView.plot, true);
    this.pointer.wireTimePlot(this.changesView.plot, false);
    const changes = this.changesView.plot;
    changes.base.canvas.addEventListener("click", (e) => {
      const t = changes.anomalyNear(e.clientX) ?? changes.timestepAtClient(e.clientX);
      if (t !== null) this.setCursor(t);
    });
    for (const view of [this.trajectory.projection, this.trajectory.projectionB]) {
      this.pointer.wireProjection(view);
      view.onView = () => this.invalidate();
    }
    this.states.onTokenHover = (t) => this.pointer.setHover(t === null ? null : { t, unit: null, row: null, panel: null });
    this.overview.sparklines.onPick = (step) => this.player.goToStep(step);
    this.unitTable.onPick = (unit) => this.pickUnit(unit, false);
    this.unitTable.onSeries = (name) => this.setState({ sigSeries: name });
    this.identity.onTrack = (unit) => this.setState({ ident: unit });
    this.identity.onStep = (step) => this.player.goToStep(step);
    this.search.onChanged = () => this.invalidate();
    this.search.onJump = (step, sequence, start, stop) => {
      Object.assign(this.store.state, { sequence, t0: start, t1: stop, cursor: null });
      this.player.goToStep(step);
      this.onSelection();
    };
    this.anomalies.onThreshold = (v) => {
      this.store.state.threshold = v;
      this.store.saveHash();
      this.invalidate();
    };
    this.seriesView.onPair = (v) => {
      this.store.state.residual = v;
      this.store.saveHash();
      this.invalidate();
    };
    this.states.reset.addEventListener("click", () => {
      for (const p of [this.unitsView.plot, this.seriesView.plot, this.seriesView.residual]) p.yZoom = null;
      this.trajectory.projection.resetView();
      this.trajectory.projectionB.resetView();
      this.setZoom(null, null);
    });
  }

  private showMode(mode: "empty" | "main"): void {
    if (mode === this.mode) return;
    this.mode = mode;
    this.content.replaceChildren(...(mode === "main" ? this.mainNodes : [howTo(this.status)]));
  }

  // ---------------------------------------------------------------- state changes

  private onSelection(): void {
    this.store.resolve();
    this.controls.sync(this.data.seriesNames());
    this.store.saveHash();
    this.data.loadOverview();
    this.loadProjection(false);
    this.data.loadCompareSteps(() => this.loadProjection(false));
    this.invalidate();
  }

  private loadProjection(force: boolean): void {
    this.data.loadProjection(force, (p, compared) =>
      (compared ? this.trajectory.projectionB : this.trajectory.projection).setAll([...p.paths.values()].flat(), p.bounds));
  }

  /** Plots a unit (of the compared run's panel with `compared`): a click only ever adds;
   * units are removed from the line plot's legend. */
  private pickUnit(unit: number, compared: boolean): void {
    const s = this.store.state;
    this.store.explicitUnits = true;
    const list = compared ? s.unitsB : s.units;
    if (!list.includes(unit)) {
      const next = [...list, unit].slice(-10);
      if (compared) s.unitsB = next;
      else s.units = next;
    }
    this.store.saveHash();
    this.invalidate();
  }

  private legendClick(plot: LinePlot, label: string): void {
    if (plot === this.unitsView.plot) {
      const entry = this.unitsView.labels.get(label);
      if (!entry) return;
      const s = this.store.state;
      this.store.explicitUnits = true;
      if (entry.compared) s.unitsB = s.unitsB.filter((u) => u !== entry.unit);
      else s.units = s.units.filter((u) => u !== entry.unit);
      this.store.saveHash();
    } else if (plot.hidden.has(label)) plot.hidden.delete(label);
    else plot.hidden.add(label);
    this.invalidate();
  }

  /** Sets view state that needs no reload. */
  private setState(patch: Partial<ViewState>): void {
    Object.assign(this.store.state, patch);
    this.store.saveHash();
    this.invalidate();
  }

  private setCursor(t: number | null): void {
    this.store.state.cursor = t;
    this.store.saveHash();
    this.invalidate();
  }

  private setZoom(t0: number | null, t1: number | null): void {
    this.store.state.t0 = t0;
    this.store.state.t1 = t1;
    this.store.saveHash();
    this.invalidate();
  }

  // ---------------------------------------------------------------- data

  /** Fetches runs and steps; on the first call also everything the first frame needs. */
  private async refresh(first: boolean): Promise<void> {
    const store = this.store;
    try {
      const runs = await api.fetchRuns();
      store.runs = runs;
      const hasData = Object.values(runs).some((tags) => Object.keys(tags).length > 0);
      if (!hasData) {
        this.showMode("empty");
        this.setStatus("");
        return;
      }
      this.showMode("main");
      const before = `${store.state.run}|${store.state.tag}`;
      const listing = JSON.stringify(Object.keys(runs).sort().map((r) => [r, Object.keys(runs[r]).sort()]));
      const newRuns = listing !== this.listing;
      this.listing = listing;
      store.resolve();
      const steps = await api.fetchSteps(store.state.run, store.state.tag);
      const list = steps.map((s) => s.step);
      const changed = list.join() !== store.steps.join();
      if (changed || before !== `${store.state.run}|${store.state.tag}`) {
        store.steps = list;
        store.wallTimes = steps.map((s) => s.wall_time);
        this.controls.sync(this.data.seriesNames());
        this.data.loadOverview(changed && !first);
        this.loadProjection(!first);
      }
      if (first || newRuns) this.controls.sync(this.data.seriesNames());
      this.data.loadCompareSteps(() => this.loadProjection(false));
      this.setStatus(store.steps.length ? "" : "This tag has no steps yet.");
      this.invalidate();
      if (first) store.saveHash();
    } catch (e: any) {
      this.showError("Could not load the runs: " + (e?.message ?? e));
    }
  }

  private setStatus(text: string): void {
    this.error = "";
    this.status.textContent = text;
    this.status.className = "tls-msg";
  }

  private showError(text: string): void {
    if (text.includes("AbortError")) return;
    this.error = text;
    this.stats.errors.push(text);
    this.status.textContent = text;
    this.status.className = "tls-msg tls-error";
  }

  // ---------------------------------------------------------------- drawing

  /** Schedules a redraw on the next animation frame. */
  private invalidate(): void {
    if (this.frameRequested) return;
    this.frameRequested = true;
    requestAnimationFrame(() => {
      this.frameRequested = false;
      this.drawNow();
    });
  }

  private drawContext(width: number, step: number): DrawContext {
    const [t0, t1] = this.scene.range();
    return {
      store: this.store, scene: this.scene, theme: this.theme, lut: this.lut, width, step, t0, t1,
      series: this.data.currentSeries(), hoverUnit: this.pointer.hover?.unit ?? null,
      layerName: this.controls.layerName(), error: this.error,
    };
  }

  private drawNow(): void {
    if (this.mode !== "main") return;
    const store = this.store;
    const step = store.currentStep();
    const width = Math.max(320, this.states.panels.clientWidth || this.root.clientWidth - 360);
    this.data.binPixels = (width - GUTTER - RIGHT) * (window.devicePixelRatio || 1);
    if (step === null || !store.info) {
      this.states.heat.layout(width, 240);
      this.states.heat.draw(null, this.theme, store.steps.length ? "loading…" : "no steps");
      return;
    }
    this.scene.update(step);
    this.data.prefetch();
    const started = performance.now();
    this.lastWidth = width;
    const c = this.drawContext(width, step);
    if (c.series && c.series !== this.data.lastSeries) {
      this.data.lastSeries = c.series;
      this.controls.syncSeriesOptions(Object.keys(c.series.series), !!c.series.allTokens?.length);
    }
    this.setTimeLabels(c.series);
    this.states.draw(c);
    this.seriesView.draw(c);
    this.unitsView.draw(c);
    this.drawChanges();
    this.trajectory.draw(c, this.data.projection, this.data.projectionError, this.data.compareProjection());
    const other = store.state.compare;
    const otherOverview = other ? (other === store.state.run ? undefined : this.data.overviewOf(other)) : null;
    this.gradients.draw(c, this.data.overview, other === store.state.run ? this.data.overview : otherOverview);
    this.overview.draw(store.state.run, this.overviewWithReach(c), step, this.theme,
      other ? { run: other, overview: otherOverview ?? undefined } : null, this.reachNote());
    this.anomalies.draw(store, this.data, step);
    this.unitTable.draw(store, this.data);
    const shown = this.scene.shown?.view;
    this.identity.draw(store, this.data, step, shown?.units ?? 0, this.identity.root.clientWidth - 22, this.theme);
    this.search.draw(store, c.t0, c.t1, shown?.time ?? store.info.time, shown?.length);
    this.controls.syncStep();
    this.drawOverlays();
    if (!store.explicitUnits && store.state.units.length) store.saveHash();
    this.stats.draws.push(performance.now() - started);
    if (this.stats.draws.length > 5000) this.stats.draws.splice(0, 1000);
  }

  /** The overview, with each step's gradient reach of the selected sequence computed
   * here from the gradients loaded when the backend sends no reach. */
  private overviewWithReach(c: DrawContext): api.Overview | null {
    const o = this.data.overview;
    if (!o || o.reach) return o;
    const reach = this.gradients.reachSeries(c, o.steps);
    return reach ? { ...o, stats: { ...o.stats, "grad reach": reach } } : o;
  }

  /** What the overview's "grad reach" is of. */
  private reachNote(): string {
    const o = this.data.overview;
    if (!o?.stats["grad reach"] && !this.gradients.root.dataset.reach) return "";
    const g = this.store.info?.kind === "lstm" ? "‖∂L/∂c_t‖" : "‖∂L/∂h_t‖";
    return `grad reach: timesteps back from the end over which ${g} stays at or above 1% of its largest · ` +
      (o?.reach ? "the last layer's forward direction, the norm averaged over the probe" : `sequence #${this.store.state.sequence} of this layer, from the steps loaded here`);
  }

  /** A `time` series (epoch seconds) labels every time axis with timestamps. */
  private setTimeLabels(series: api.Series | undefined): void {
    const time = series?.series["time"];
    const label = time && isTimeSeries("time", time) ? (t: number) => {
      const [t0, t1] = this.scene.range();
      const span = Math.abs((time[Math.min(t1 - 1, time.length - 1)] ?? 0) - (time[t0] ?? 0));
      return t < time.length ? formatTimestamp(time[t], span) : String(t);
    } : null;
    for (const p of [...this.states.heatmaps, this.gradients.heat, this.gradients.norm, this.unitsView.plot, this.seriesView.plot, this.seriesView.residual, this.changesView.plot]) p.timeLabel = label;
    const axis = label && time ? "utc " + formatTimestamp(time[0], 0) : "timestep";
    if (this.root.dataset.timeAxis !== axis) this.root.dataset.timeAxis = axis; // what the time axes show, for tests
  }

  private drawChanges(): void {
    const [t0, t1] = this.scene.range();
    this.changesView.draw(this.data.currentChanges(), this.data.compareChanges(), this.store, t0, t1, this.lastWidth, this.theme);
    this.drawOverlays();
  }

  private drawOverlays(): void {
    const [t0, t1] = this.scene.range();
    const hover = this.pointer.hover;
    const view: TimeView = { t0, t1, cursor: this.store.state.cursor, hover: hover?.t ?? null, selection: this.pointer.selection() };
    for (const h of this.states.heatmaps) {
      const row = hover?.panel === h ? hover.row : null;
      h.drawOverlay(view, this.theme, (ctx) => h.drawRow(ctx, row, this.theme), String(row) + ":" + h.rows);
    }
    this.unitsView.plot.drawOverlay(view, this.theme);
    this.seriesView.plot.drawOverlay(view, this.theme);
    this.changesView.plot.drawOverlay(view, this.theme);
    this.gradients.drawOverlays(view, this.theme);
    this.trajectory.projection.drawOverlay(hover?.t ?? this.store.state.cursor, this.theme);
    this.trajectory.projectionB.drawOverlay(this.store.state.compare ? hover?.t ?? this.store.state.cursor : null, this.theme);
  }

  private exportSource(): ExportSource {
    const store = this.store;
    return {
      selection: () => store.state,
      background: () => this.theme.bg,
      foreground: () => this.theme.fg,
      title: () => {
        const s = store.state, step = store.currentStep();
        const cq = step === null ? null : store.compareQuery(step);
        return `${s.run} · ${s.tag} · ${this.controls.layerName()} · ${s.kind} · sequence #${s.sequence} · step ${step ?? "–"}` +
          (cq ? `  vs  ${cq.run} · step ${cq.step}` : "");
      },
      legends: (view) => {
        if (view !== "heatmap") return [];
        if (!store.state.compare) return [this.states.legend.view.canvas];
        return [this.states.legendA, this.states.legendB, ...(this.states.differenceShown ? [this.states.legendD] : [])].map((l) => l.view.canvas);
      },
      canvases: (view) => {
        if (view === "lines") return [this.unitsView.plot.base.canvas];
        if (view === "series") return [this.seriesView.plot.base.canvas];
        if (view === "projection") return [this.trajectory.projection, ...(store.state.compare ? [this.trajectory.projectionB] : [])].map((p) => p.base.canvas);
        const list: Heatmap[] = [this.states.heat];
        if (store.state.compare) list.push(this.states.heatB);
        if (store.state.compare && this.states.differenceShown) list.push(this.states.heatD);
        return list.map((h) => h.base.canvas);
      },
      playbackCanvas: () => this.states.heat.base.canvas,
      steps: () => store.steps,
      stepIndex: () => store.stepIndex(),
      currentStep: () => store.currentStep(),
      speed: () => store.state.speed,
      query: (step) => store.query(step),
      shownArray: () => this.scene.shownArray(),
      loadStep: (step) => this.data.loadArray(store.query(step)),
      goToIndex: (i) => this.player.goToIndex(i),
      stopPlaying: () => { if (store.playing) this.player.togglePlay(); },
    };
  }
}
