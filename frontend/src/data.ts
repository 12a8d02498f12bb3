// Data loading: the typed client's answers behind bounded caches, prefetch ahead of the
// step on screen (cancelled when the view jumps away), and the per-selection loads
// (overview, projection, the other run's steps). Knows the store; draws nothing.

import * as api from "./api";
import { ByteCache } from "./cache";
import { isLabelSeries } from "./seriesaxes";
import { evenlySpaced, isPermutation, orderByScore } from "./layout";
import { orderBySignificance } from "./matching";
import { MatchLoader } from "./matchload";
import { ProjectionSlot } from "./projload";
import { extentOf } from "./scene";
import type { Store } from "./store";
import * as win from "./window";

/** At most this many bytes of arrays are loaded to find a fixed colour scale when the
 * backend sends no stored extremes. */
const SCALE_BUDGET = 96 << 20;

const PREFETCH = 4; // steps ahead of a paused view
const PREFETCH_PLAYING = 24; // steps ahead during playback
const MAX_PARALLEL = 6;

export interface DataHooks {
  /** something the views draw arrived */
  changed(): void;
  /** the changes of the step on screen arrived (the change track alone redraws) */
  changesArrived(): void;
  error(message: string): void;
}

export type UnitsQuery = Omit<api.StatesQuery, "sequence">;

export class DataLoader {
  readonly arrays = new ByteCache<api.StatesArray>(384 << 20, (a) => a.data.byteLength + 64);
  private json = new ByteCache<any>(64 << 20, () => 64 << 10);
  /** device pixels across the time axis: long sequences are fetched in about this many bins */
  binPixels = 1024;
  overview: api.Overview | null = null;
  private overviewKey = "";
  private readonly projA = new ProjectionSlot(() => this.hooks.changed());
  private readonly projB = new ProjectionSlot(() => this.hooks.changed());
  /** Prefetches in flight, by key: cancelled when the view jumps away from them. */
  private prefetching = new Map<string, AbortController>();
  private orderCache = new Map<string, number[]>();
  private lastOrder: number[] = [];
  private identityOrder: number[] = [];
  /** the last series seen: shown while the next step's loads */
  lastSeries: api.Series | null = null;
  /** the `match` route's answers (compare-runs alignment, a unit's identity across steps) */
  readonly matches = new MatchLoader(() => this.hooks.changed());

  constructor(private store: Store, private hooks: DataHooks) {}

  // ------------------------------------------------------------ arrays

  /** The query of the array on screen: a long sequence's window in bins, else the whole sequence. */
  arrayQuery(q: api.StatesQuery): api.StatesQuery {
    const s = this.store.state;
    return win.windowed(q, win.windowFor(this.store.timeOf(q.run), s.t0, s.t1, this.binPixels));
  }

  arrayKey(q: api.StatesQuery): string {
    return api.statesUrl(this.arrayQuery(q));
  }

  peekArray(q: api.StatesQuery): { key: string; array: api.StatesArray | undefined } {
    const key = this.arrayKey(q);
    return { key, array: this.arrays.peek(key) };
  }

  loadArray(q: api.StatesQuery, signal?: AbortSignal): Promise<api.StatesArray> {
    const wq = this.arrayQuery(q);
    return this.arrays.get(api.statesUrl(wq), () => api.fetchStates(wq, signal));
  }

  private prefetchArray(q: api.StatesQuery): void {
    const key = this.arrayKey(q);
    if (this.arrays.has(key) || this.arrays.isPending(key)) return;
    const controller = new AbortController();
    this.prefetching.set(key, controller);
    this.loadArray(q, controller.signal).catch(() => undefined).finally(() => this.prefetching.delete(key));
  }

  frameReady(step: number): boolean {
    if (!this.arrays.has(this.arrayKey(this.store.query(step)))) return false;
    const cq = this.store.compareQuery(step);
    return !cq || this.arrays.has(this.arrayKey(cq));
  }

  /** Loads the arrays of a step (the primary and the compared one); redraws when they arrive. */
  ensureFrame(step: number): void {
    const q = this.store.query(step);
    const done = () => { if (this.store.currentStep() === step) this.hooks.changed(); };
    const fail = (e: any) => {
      // a cancelled prefetch of this very step: ask again
      if (e?.name === "AbortError") setTimeout(() => this.hooks.changed(), 0);
      else this.hooks.error(String(e?.message ?? e));
    };
    if (!this.arrays.has(this.arrayKey(q))) this.loadArray(q).then(done, fail);
    const cq = this.store.compareQuery(step);
    if (cq && !this.arrays.has(this.arrayKey(cq))) this.loadArray(cq).then(done, fail);
  }

  /** Loads the next steps ahead of playback (or of the current step) a few at a time. */
  prefetch(): void {
    const store = this.store;
    const i = store.stepIndex();
    if (i < 0) return;
    const steps = store.steps;
    const ahead = store.playing ? PREFETCH_PLAYING : PREFETCH;
    const wanted = new Set<string>();
    for (let k = 0; k <= ahead && k < steps.length; k++) {
      const step = steps[(i + k) % steps.length];
      wanted.add(this.arrayKey(store.query(step)));
      const cq = store.compareQuery(step);
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
    if (!this.frameReady(steps[i])) return;
    if (!store.playing) this.loadScaleSteps();
    for (let k = 1; k <= ahead && this.arrays.pendingCount < MAX_PARALLEL; k++) {
      const j = i + k;
      if (j >= steps.length && !store.state.loop) break;
      const step = steps[j % steps.length];
      const q = store.query(step);
      this.prefetchArray(q);
      const cq = store.compareQuery(step);
      if (cq) this.prefetchArray(cq);
      if (store.playing && k <= 3) {
        const cp = this.changesParams(step);
        this.loadJson("changes", cp, () => api.fetchChanges(cp)).catch(() => undefined);
        const sp = this.seriesParams(step);
        this.loadJson("series", sp, () => api.fetchSeries(sp.run, sp.tag, sp.step, sp.sequence)).catch(() => undefined);
      }
    }
  }

  // ------------------------------------------------------------ JSON routes

  private loadJson<T>(route: string, params: object, load: () => Promise<T>): Promise<T> {
    return this.json.get(route + JSON.stringify(params), load);
  }

  private peekJson<T>(route: string, params: object): T | undefined {
    return this.json.peek(route + JSON.stringify(params));
  }

  private seriesParams(step: number) {
    const s = this.store.state;
    return { run: s.run, tag: s.tag, step, sequence: s.sequence };
  }

  /** The input series of the current step; while it loads, the last one seen. */
  currentSeries(): api.Series | undefined {
    const step = this.store.currentStep();
    if (step === null) return undefined;
    const p = this.seriesParams(step);
    const hit = this.peekJson<api.Series>("series", p);
    if (hit) return hit;
    this.loadJson("series", p, () => api.fetchSeries(p.run, p.tag, p.step, p.sequence)).then(
      (s) => { if (this.store.currentStep() === step && !sameSeries(s, this.lastSeries)) this.hooks.changed(); }, () => undefined);
    // while it loads, the previous step's series (the probe inputs rarely change)
    return this.lastSeries ?? undefined;
  }

  seriesNames(): string[] {
    const s = this.currentSeries();
    return s ? Object.keys(s.series) : [];
  }

  /** The change track of the current step, or undefined while it loads. */
  currentChanges(): api.Changes | undefined {
    const step = this.store.currentStep();
    if (step === null) return undefined;
    const q = this.changesParams(step);
    const hit = this.peekJson<api.Changes>("changes", q);
    if (hit) return hit;
    this.loadJson("changes", q, () => api.fetchChanges(q)).then(() => {
      if (this.store.currentStep() === step) this.hooks.changesArrived();
    }, () => undefined);
    return undefined;
  }

  /** The change track of the compared run at its step in compare mode, or undefined
   * while it loads (null: compare mode is off or the other run lacks the step). */
  compareChanges(): api.Changes | null | undefined {
    const step = this.store.currentStep();
    const cq = step === null ? null : this.store.compareQuery(step);
    if (!cq) return null;
    const q = { ...cq, threshold: this.store.state.threshold };
    const hit = this.peekJson<api.Changes>("changes", q);
    if (hit) return hit;
    this.loadJson("changes", q, () => api.fetchChanges(q)).then(() => this.hooks.changesArrived(), () => undefined);
    return undefined;
  }

  /** The order the selector's "auto" stands for: by |correlation| with the first input
   * series that is neither a 0/1 label nor `time`, else by variance. */
  effectiveOrder(): string {
    const order = this.store.state.order;
    if (order !== "auto") return order;
    const series = this.lastSeries ?? this.currentSeries();
    const name = series ? Object.keys(series.series).find((n) => n !== "time" && !isLabelSeries(series.series[n])) : undefined;
    return name ? "corr:" + name : "variance";
  }

  /** The step whose per-unit scores order a run's rows: its latest, so that the rows
   * stay in place while the steps play. */
  orderStep(run: string): number | null {
    const steps = run === this.store.state.run ? this.store.steps : this.store.compareRunSteps();
    return steps.length ? steps[steps.length - 1] : null;
  }

  /** The per-unit scores of a run at a step (with each unit's significance against
   * `series`, when given), or undefined while they load. */
  units(run: string, step: number, series?: string): api.Units | undefined {
    const s = this.store.state;
    const q: UnitsQuery & { series?: string } = { run, tag: s.tag, step, layer: s.layer, kind: s.kind, ...(series ? { series } : {}) };
    const hit = this.peekJson<api.Units>("units", q);
    if (hit) return hit;
    const key = JSON.stringify(q);
    if (series && this.unitErrors.has(key)) return undefined; // asked once: a series the step lacks stays unknown
    this.loadJson("units", q, () => api.fetchUnits(q)).then(() => this.hooks.changed(), (e) => {
      if (series && e?.name !== "AbortError") this.unitErrors.set(key, String(e?.message ?? e));
      this.hooks.error(String(e?.message ?? e));
    });
    return undefined;
  }

  private unitErrors = new Map<string, string>();

  /** Why the scores with significance against `series` could not be loaded, if they could not. */
  unitsError(run: string, step: number, series: string): string {
    const s = this.store.state;
    return this.unitErrors.get(JSON.stringify({ run, tag: s.tag, step, layer: s.layer, kind: s.kind, series })) ?? "";
  }

  /** The order of a run's `units` rows (the last known one while the scores load). */
  unitOrder(run: string, units: number): number[] {
    const identity = () => {
      if (this.identityOrder.length !== units) this.identityOrder = Array.from({ length: units }, (_, i) => i);
      return this.identityOrder;
    };
    const s = this.store.state;
    const order = this.effectiveOrder();
    if (order === "index") return identity();
    const step = this.orderStep(run);
    if (step === null) return identity();
    const cacheKey = JSON.stringify([run, s.tag, step, s.layer, s.kind, units]) + order;
    const cached = this.orderCache.get(cacheKey);
    if (cached) return run === s.run ? (this.lastOrder = cached) : cached;
    const hit = this.units(run, step, order.startsWith("sig:") ? order.slice(4) : undefined);
    if (hit) {
      let result: number[] | null = null;
      if (order === "variance") result = orderByScore(hit.variance);
      else if (order === "cluster") result = hit.cluster_order;
      else if (order.startsWith("corr:")) {
        const c = hit.correlation[order.slice(5)];
        // Strongest first whatever the sign: a counter unit may run either way.
        result = c ? orderByScore(Array.from(c, Math.abs)) : null;
      } else if (order.startsWith("sig:")) result = hit.significance ? orderBySignificance(hit.significance, units) : null;
      if (!isPermutation(result, units)) result = identity();
      this.orderCache.set(cacheKey, result);
      if (run === s.run) this.lastOrder = result;
      return result;
    }
    return run === s.run && isPermutation(this.lastOrder, units) ? this.lastOrder : identity();
  }

  // ------------------------------------------------------------ colour scale

  /** The overview of a run for the selected layer and kind, or undefined while it loads. */
  overviewOf(run: string): api.Overview | undefined {
    const s = this.store.state;
    const p = { run, tag: s.tag, layer: s.layer, kind: s.kind, steps: run === s.run ? this.store.steps.length : this.store.compareRunSteps().length };
    const hit = this.peekJson<api.Overview>("overview", p);
    if (hit) return hit;
    this.loadJson("overview", p, () => api.fetchOverview(run, s.tag, s.layer, s.kind)).then(() => this.hooks.changed(), () => undefined);
    return undefined;
  }

  /**
   * One range for every step of (run, tag, layer, kind): the stored exact extremes of
   * every step when the overview has them (`stored`), else the extremes of this
   * sequence's arrays over the steps loaded here (all of them when they fit the budget).
   * Null until something is known.
   */
  fixedRange(run: string): { lo: number; hi: number; steps: number; of: number; stored: boolean } | null {
    const steps = run === this.store.state.run ? this.store.steps : this.store.compareRunSteps();
    const o = this.overviewOf(run);
    if (o?.min && o.max && o.steps.length) {
      let lo = Infinity, hi = -Infinity, n = 0;
      for (let i = 0; i < o.steps.length; i++) {
        if (Number.isFinite(o.min[i]) && Number.isFinite(o.max[i])) {
          lo = Math.min(lo, o.min[i]);
          hi = Math.max(hi, o.max[i]);
          n++;
        }
      }
      if (n === o.steps.length) return { lo, hi, steps: n, of: o.steps.length, stored: true };
    }
    if (o === undefined) return null; // wait for the overview: it may have the extremes
    let lo = Infinity, hi = -Infinity, n = 0;
    for (const step of steps) {
      const a = this.arrays.peek(this.arrayKey(this.store.query(step, run)));
      if (!a) continue;
      const [l, h] = extentOf(a);
      lo = Math.min(lo, l);
      hi = Math.max(hi, h);
      n++;
    }
    this.wantScale(run, steps);
    return n ? { lo, hi, steps: n, of: steps.length, stored: false } : null;
  }

  private scaleWanted = new Map<string, number[]>();

  private wantScale(run: string, steps: number[]): void {
    this.scaleWanted.set(run, steps);
  }

  /** Loads, a few at a time, the arrays a fixed colour scale without stored extremes needs. */
  private loadScaleSteps(): void {
    for (const [run, steps] of this.scaleWanted) {
      const first = steps.map((st) => this.arrays.peek(this.arrayKey(this.store.query(st, run)))).find((a) => a);
      if (!first || first.data.byteLength * steps.length > SCALE_BUDGET) continue;
      for (const step of steps) {
        if (this.arrays.pendingCount >= MAX_PARALLEL) return;
        const q = this.store.query(step, run);
        const key = this.arrayKey(q);
        if (this.arrays.has(key) || this.arrays.isPending(key)) continue;
        this.loadArray(q).then(() => this.hooks.changed(), () => undefined);
      }
    }
    this.scaleWanted.clear();
  }

  // ------------------------------------------------------------ anomalies

  private changesParams(step: number, sequence = this.store.state.sequence) {
    return { ...this.store.query(step), sequence, threshold: this.store.state.threshold };
  }

  /** The changes of a step and sequence at the current threshold, or undefined while they load. */
  changesAt(step: number, sequence: number, notify = true): api.Changes | undefined {
    const q = this.changesParams(step, sequence);
    const hit = this.peekJson<api.Changes>("changes", q);
    if (hit) return hit;
    if (this.json.pendingCount < MAX_PARALLEL * 2 || notify) {
      this.loadJson("changes", q, () => api.fetchChanges(q)).then(() => { if (notify) this.hooks.changed(); }, () => undefined);
    }
    return undefined;
  }

  /** The series of a step (every sequence), or undefined while it loads. */
  seriesAt(step: number): api.Series | undefined {
    const p = this.seriesParams(step);
    const hit = this.peekJson<api.Series>("series", p);
    if (hit) return hit;
    this.loadJson("series", p, () => api.fetchSeries(p.run, p.tag, p.step, p.sequence)).then(() => this.hooks.changed(), () => undefined);
    return undefined;
  }

  // ------------------------------------------------------------ per selection

  loadOverview(force = false): void {
    const s = this.store.state;
    const key = `${s.run}|${s.tag}|${s.layer}|${s.kind}`;
    if (!force && key === this.overviewKey) return;
    this.overviewKey = key;
    api.fetchOverview(s.run, s.tag, s.layer, s.kind).then(
      (o) => { if (key === this.overviewKey) { this.overview = o; this.hooks.changed(); } },
      () => { if (key === this.overviewKey) this.overview = null; },
    );
  }

  /** Loads the projection of the selection (and of the compared run's, in compare
   * mode); `onLoaded` receives each (to fix its axes). */
  loadProjection(force: boolean, onLoaded: (p: api.Projection, compared: boolean) => void): void {
    const store = this.store;
    const info = store.info;
    if (!info || !store.steps.length) return;
    const s = store.state;
    const method = s.method;
    const sequences = store.trajectorySequences();
    const points = info.time * (sequences.length || info.batch);
    // t-SNE and UMAP take seconds per step: at most 20 steps, evenly spaced (the backend's
    // point caps still apply); PCA takes every step the backend allows.
    const spaced = (steps: number[]) => method === "pca" ? undefined : evenlySpaced(steps, Math.max(1, Math.min(20, Math.floor(25_000 / Math.max(1, points)))));
    const q = (run: string, steps: number[]): api.ProjectionQuery => ({ run, tag: s.tag, layer: s.layer, kind: s.kind, method, sequences, steps: spaced(steps) });
    this.projA.load(q(s.run, store.steps), force, (p) => onLoaded(p, false));
    const other = s.compare && s.compare !== s.run ? s.compare : "";
    if (!other) this.projB.clear();
    else if (store.compareStepsRun === other && store.compareSteps.length) this.projB.load(q(other, store.compareSteps), force, (p) => onLoaded(p, true));
  }

  get projection(): api.Projection | null {
    return this.projA.projection;
  }

  get projectionError(): string {
    return this.projA.error;
  }

  /** The compared run's projection: the primary's own when it compares another step of one run. */
  compareProjection(): { projection: api.Projection | null; error: string } {
    const s = this.store.state;
    if (!s.compare) return { projection: null, error: "" };
    if (s.compare === s.run) return { projection: this.projA.projection, error: this.projA.error };
    return { projection: this.projB.projection, error: this.projB.error || (this.store.compareStepsRun === s.compare ? "" : "loading…") };
  }

  /** Lists the compared run's steps; `onNew` runs when they changed. */
  loadCompareSteps(onNew: () => void = () => undefined): void {
    const s = this.store.state;
    const run = s.compare;
    if (!run || run === s.run) return;
    api.fetchSteps(run, s.tag).then((list) => {
      const steps = list.map((x) => x.step);
      if (steps.join() !== this.store.compareSteps.join() || this.store.compareStepsRun !== run) {
        this.store.compareSteps = steps;
        this.store.compareStepsRun = run;
        onNew();
        this.hooks.changed();
      }
    }, (e) => this.hooks.error(String(e?.message ?? e)));
  }
}

export function sameSeries(a: api.Series | null, b: api.Series | null): boolean {
  if (!a || !b) return a === b;
  if ((a.tokens ?? []).join("\u0000") !== (b.tokens ?? []).join("\u0000")) return false;
  const names = Object.keys(a.series);
  if (names.join() !== Object.keys(b.series).join()) return false;
  return names.every((n) => a.series[n].length === b.series[n].length && a.series[n].every((v, i) => Object.is(v, b.series[n][i])));
}
