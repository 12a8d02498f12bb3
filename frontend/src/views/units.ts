// The selected units card: one line per plotted unit over the time axis.

import { PALETTE } from "../colors";
import { el } from "../dom";
import { LinePlot, Track } from "../lines";
import * as win from "../window";
import type { DrawContext } from "./context";

export class UnitsView {
  readonly plot = new LinePlot("tls-lines");
  readonly root = el("div", { class: "tls-card" }, el("h3", {}, "Selected units"), this.plot.root);

  draw(c: DrawContext): void {
    const view = c.scene.shown?.view;
    const domain = c.scene.domain;
    this.plot.layout(c.width, 170);
    this.plot.setRange(c.t0, c.t1);
    const tracks: Track[] = view ? c.store.state.units.map((u, i) => ({
      label: "unit " + u, color: PALETTE[i % PALETTE.length], ...win.unitTrack(view, u),
    })) : [];
    this.plot.draw(tracks, c.theme, view ? "click heatmap rows to plot units" : "", [domain.lo, domain.hi], view?.length);
  }
}
