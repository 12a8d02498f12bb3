// What is on screen: the arrays of the current step (kept while the next one of the same
// selection loads), the unit order, the colour domain and the plotted units. Computed
// from the store and the loaded data once per frame; the views only read it.

import type * as api from "./api";
import { Domain, domainFor, PALETTE, SIGMOID_KINDS } from "./colors";
import type { DataLoader } from "./data";
import type { Store } from "./store";
import * as win from "./window";

export interface Shown {
  key: string;
  array: api.StatesArray;
  step: number;
  view: win.StatesView;
}

export class Scene {
  shown: Shown | null = null;
  shownCompare: Shown | null = null;
  order: number[] = [];
  domain: Domain = { lo: -1, hi: 1 };
  private domainKey = "";
  /** unit -> line colour, in the order the units were picked */
  selected = new Map<number, string>();
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
    this.updateOrderAndDomain();
  }

  private updateOrderAndDomain(): void {
    const shown = this.shown;
    if (!shown) return;
    const s = this.store.state;
    const units = shown.view.units;
    this.order = this.data.unitOrder(units);
    const domKey = `${s.run}|${s.tag}|${s.layer}|${s.kind}|${s.sequence}`;
    const d = domainFor(s.kind, shown.array.data);
    if (domKey !== this.domainKey) {
      this.domainKey = domKey;
      this.domain = d;
    } else if (!SIGMOID_KINDS.has(s.kind)) {
      // grows, never shrinks, during one selection: colours mean the same on every step
      this.domain = { lo: Math.min(this.domain.lo, d.lo), hi: Math.max(this.domain.hi, d.hi) };
    }
    // Until the user picks units, plot the top of the current order (it changes when
    // the per-unit scores arrive or the order is switched).
    if (!this.store.explicitUnits) s.units = this.order.slice(0, 3);
    s.units = s.units.filter((u) => u < units);
    this.selected = new Map(s.units.map((u, i) => [u, PALETTE[i % PALETTE.length]]));
  }

  /** Left minus right, when both panels hold the same shape. */
  difference(): ReturnType<typeof win.difference> {
    const a = this.shown, b = this.store.state.compare ? this.shownCompare : null;
    if (!a || !b) return null;
    if (this.diff?.a !== a.array || this.diff?.b !== b.array) {
      this.diff = { a: a.array, b: b.array, result: win.difference(a.view, b.view) };
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

function sameSelection(a: string, b: string): boolean {
  // another step, or another window of a long sequence
  const strip = (k: string) => k.replace(/([?&])(step|start|stop|bins)=[^&]*/g, "$1");
  return strip(a) === strip(b);
}
