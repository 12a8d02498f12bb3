// What is on screen: the arrays of the current step (kept while the next one of the same
// selection loads), the unit order, the colour domain and the plotted units. Computed
// from the store and the loaded data once per frame; the views only read it.

import type * as api from "./api";
import { Domain, domainFor, finiteExtent, PALETTE, rangeDomain, SIGMOID_KINDS } from "./colors";
import type { DataLoader } from "./data";
import { alignArray, Match } from "./matching";
import type { Store } from "./store";
import * as win from "./window";

export interface Shown {
  key: string;
  array: api.StatesArray;
  step: number;
  view: win.StatesView;
}

/** The compared run's array laid on the first run's units by matching (compare-runs of
 * two different runs). */
export interface Alignment {
  /** the match this frame asks for (the steps on screen) */
  query: api.MatchQuery;
  /** the match drawn, null while none is loaded */
  match: Match | null;
  /** the steps of the match drawn: another pair's while this one loads (playback) */
  matchedAt: [number, number] | null;
  /** the compared array on the first run's units, null while no match is loaded */
  view: win.StatesView | null;
  error: string;
}

export class Scene {
  shown: Shown | null = null;
  shownCompare: Shown | null = null;
  order: number[] = [];
  orderB: number[] = [];
  domain: Domain = { lo: -1, hi: 1 };
  domainB: Domain = { lo: -1, hi: 1 };
  /** how the colour scale was chosen, said under the heatmap */
  scaleNote = "";
  scaleNoteB = "";
  /** unit -> line colour, in the order the units were picked */
  selected = new Map<number, string>();
  selectedB = new Map<number, string>();
  /** compare-runs of another run: its rows aligned to this run's matched units */
  alignment: Alignment | null = null;
  private aligned: { b: api.StatesArray; match: Match; view: win.StatesView } | null = null;
  private diff: { a: api.StatesArray; b: api.StatesArray; result: ReturnType<typeof win.difference> } | null = null;

  constructor(private store: Store, private data: DataLoader) {}

  /** Takes the arrays of `step` when loaded (asks for them otherwise). */
  update(step: number): void {
    const store = this.store, data = this.data;
    const q = store.query(step);
    const { key, array } = data.peekArray(q);
    if (!data.frameReady(step)) data.ensureFrame(step); // the primary, the compared or both
    if (array) this.shown = { key, array, step, view: win.viewOf(array, store.timeOf(q.run)) };
    else if (this.shown && !sameSelection(this.shown.key, key)) this.shown = null; // keep the previous frame of the same selection
    const cq = store.compareQuery(step);
    if (cq) {
      const c = data.peekArray(cq);
      if (c.array) this.shownCompare = { key: c.key, array: c.array, step: cq.step, view: win.viewOf(c.array, store.timeOf(cq.run)) };
      else if (this.shownCompare && !sameSelection(this.shownCompare.key, c.key)) this.shownCompare = null;
    } else this.shownCompare = null;
    this.alignment = this.align();
    this.updateOrderAndDomain();
  }

  /** The compared run's array aligned to this run's units, when another run is compared. */
  private align(): Alignment | null {
    const s = this.store.state, a = this.shown, b = this.shownCompare;
    if (!s.compare || s.compare === s.run || !a || !b) return null;
    const query: api.MatchQuery = {
      run: s.run, tag: s.tag, step: a.step, layer: s.layer, kind: s.kind, other_run: s.compare, other_tag: s.tag, other_step: b.step,
    };
    const ia = this.store.runs[s.run]?.[s.tag], ib = this.store.runs[s.compare]?.[s.tag];
    if (ia && ib && (ia.batch !== ib.batch || ia.time !== ib.time)) {
      // the backend would refuse: said here without asking
      const error = `the probes differ: ${ia.batch} x ${ia.time} and ${ib.batch} x ${ib.time} (sequences x timesteps)`;
      return { query, match: null, matchedAt: null, view: null, error };
    }
    const matches = this.data.matches;
    // while playing, no new matching is asked for: the last one loaded is shown (and said)
    const exact = matches.get(query, !this.store.playing);
    const drawn = exact ? { q: query, match: exact } : matches.latestOf(query);
    const error = exact ? "" : matches.error(query);
    // not matchable: b is drawn in its own order and nothing is subtracted
    if (error || !drawn || drawn.match.units.length !== a.view.units) return { query, match: null, matchedAt: null, view: null, error };
    if (this.aligned?.b !== b.array || this.aligned.match !== drawn.match) {
      const centre = SIGMOID_KINDS.has(s.kind) ? 0.5 : 0;
      const array = alignArray(b.array, drawn.match, centre);
      this.aligned = { b: b.array, match: drawn.match, view: win.viewOf(array, this.store.timeOf(s.compare)) };
    }
    return { query, match: drawn.match, matchedAt: [drawn.q.step, drawn.q.other_step], view: this.aligned.view, error };
  }

  /** The compared run's unit drawn in row `unit` of the compare panel (null: unpaired). */
  comparedUnit(unit: number): number | null {
    const m = this.alignment?.match;
    if (!m) return unit; // rows in the compared run's own order
    return m.units[unit] >= 0 ? m.units[unit] : null;
  }

  private updateOrderAndDomain(): void {
    const shown = this.shown;
    if (!shown) return;
    const s = this.store.state;
    const units = shown.view.units;
    this.order = this.data.unitOrder(s.run, units);
    [this.domain, this.scaleNote] = this.domainOf(s.run, shown);
    // Until the user picks units, plot the top of the order (it changes when the
    // per-unit scores arrive or the order is switched).
    // In compare mode the top two of each run's own order.
    const b = this.shownCompare;
    const top = b && s.compare ? 2 : 3;
    if (!this.store.explicitUnits) s.units = this.order.slice(0, top);
    s.units = s.units.filter((u) => u < units);
    this.selected = new Map(s.units.map((u, i) => [u, PALETTE[i % PALETTE.length]]));
    if (b && s.compare) {
      this.orderB = this.data.unitOrder(s.compare, b.view.units);
      [this.domainB, this.scaleNoteB] = this.domainOf(s.compare, b);
      const m = this.alignment?.match;
      // aligned: the partners of this run's plotted units, so that the lines compare like with like
      if (!this.store.explicitUnits) s.unitsB = m ? s.units.map((u) => m.units[u]).filter((u) => u >= 0) : this.orderB.slice(0, top);
      s.unitsB = s.unitsB.filter((u) => u < b.view.units);
      this.selectedB = new Map(s.unitsB.map((u, i) => [u, PALETTE[(s.units.length + i) % PALETTE.length]]));
    } else this.selectedB = new Map();
  }

  /** The colour domain of a run's array on screen, and how it was chosen. By default one
   * scale for every step of (run, tag, layer, kind): the stored exact extremes of every
   * step when the backend sends them, else the extremes of the steps loaded here. */
  private domainOf(run: string, shown: Shown): [Domain, string] {
    const kind = this.store.state.kind;
    if (this.store.state.scale === "step") {
      return [domainFor(kind, shown.array.data), "colour scale per step (99.5th percentile of |value|)"];
    }
    const range = this.data.fixedRange(run);
    if (!range) return [rangeDomain(kind, ...finiteExtent(shown.array.data)), "colour scale: this step (the others are loading)"];
    const note = range.stored
      ? `colour scale fixed over all ${range.steps} steps (stored extremes)`
      : `colour scale fixed over ${range.steps} of ${range.of} steps, from the arrays loaded here` +
        (range.steps < range.of ? " (the backend sends no stored extremes)" : " (computed here: the backend sends no stored extremes)");
    return [rangeDomain(kind, range.lo, range.hi), note];
  }

  /** The finite extremes of the array on screen (of the compared run's with `b`). */
  dataExtent(b = false): [number, number] | null {
    const shown = b ? this.shownCompare : this.shown;
    return shown ? extentOf(shown.array) : null;
  }

  /** Left minus right, when both panels hold the same shape: another run's rows only
   * once aligned to this run's matched units (unrelated units are never subtracted). */
  difference(): ReturnType<typeof win.difference> {
    const a = this.shown, b = this.store.state.compare ? this.alignment ? this.alignment.view : this.shownCompare?.view : null;
    if (!a || !b) return null;
    if (this.diff?.a !== a.array || this.diff?.b !== b.array) {
      this.diff = { a: a.array, b: b.array, result: win.difference(a.view, b) };
    }
    return this.diff.result;
  }

  /** The zoomed time range over the array on screen. */
  range(): [number, number] {
    return this.store.range(this.shown?.view.time ?? this.store.info?.time ?? 1);
  }

  /** The [time, units] array on screen and its first timestep, for export. */
  shownArray(): { array: api.StatesArray; start: number } | null {
    const shown = this.shown;
    if (!shown) return null;
    const s = shown.view.segment;
    if (!s) return { array: shown.array, start: 0 };
    if (s.binned) throw new Error("the heatmap shows min/max bins of this long sequence: zoom in to full resolution to export CSV, or export the whole array as .npy");
    return { array: shown.array, start: s.start };
  }
}

const extents = new WeakMap<api.StatesArray, [number, number]>();

/** The finite extremes of an array (made once per array). */
export function extentOf(a: api.StatesArray): [number, number] {
  let e = extents.get(a);
  if (!e) {
    e = finiteExtent(a.data);
    extents.set(a, e);
  }
  return e;
}

function sameSelection(a: string, b: string): boolean {
  // another step, or another window of a long sequence
  const strip = (k: string) => k.replace(/([?&])(step|start|stop|bins)=[^&]*/g, "$1");
  return strip(a) === strip(b);
}
