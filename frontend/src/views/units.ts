// The selected units card: one line per plotted unit over the time axis, fitted to the
// values shown. In compare mode each line names its run; the other run's are dashed.
// Clicking a legend entry removes that unit (clicking a heatmap row only ever adds).

import { el } from "../dom";
import { LinePlot, Track } from "../lines";
import * as win from "../window";
import type { DrawContext } from "./context";

export class UnitsView {
  readonly plot = new LinePlot("tls-lines", true, "value");
  readonly root = el("div", { class: "tls-card" }, el("h3", {}, "Selected units",
    el("span", { class: "tls-sub" }, "click a legend entry to remove it · wheel to zoom · shift+drag to pan")), this.plot.root);
  /** which unit each legend label stands for */
  readonly labels = new Map<string, { unit: number; compared: boolean }>();

  constructor() {
    this.plot.legendRemoves = true;
  }

  draw(c: DrawContext): void {
    const { scene, store } = c;
    const state = store.state;
    const view = scene.shown?.view;
    const other = state.compare ? scene.shownCompare : null;
    this.plot.layout(c.width, 170);
    this.plot.setRange(c.t0, c.t1);
    this.labels.clear();
    const compare = !!state.compare;
    const tracks: Track[] = [];
    if (view) {
      for (const u of state.units) {
        const label = (compare ? `${state.run} · ` : "") + "unit " + u;
        this.labels.set(label, { unit: u, compared: false });
        tracks.push({ label, color: scene.selected.get(u) ?? "#888", axis: "value", ...win.unitTrack(view, u) });
      }
    }
    if (other) {
      for (const u of state.unitsB) {
        const label = `${state.compare}${other.step !== c.step || state.compare === state.run ? ` step ${other.step}` : ""} · unit ${u}`;
        this.labels.set(label, { unit: u, compared: true });
        tracks.push({ label, color: scene.selectedB.get(u) ?? "#888", axis: "value", dashed: true, ...win.unitTrack(other.view, u) });
      }
    }
    this.plot.draw(tracks, c.theme, view ? "click heatmap rows to plot units" : "", undefined, view?.length);
  }
}
