// The input series card: the series logged beside the states, over the time axis.

import { PALETTE } from "../colors";
import { el } from "../dom";
import { LinePlot } from "../lines";
import type { DrawContext } from "./context";

export class SeriesView {
  readonly plot = new LinePlot("tls-series");
  readonly root = el("div", { class: "tls-card" }, el("h3", {}, "Input series"), this.plot.root);

  draw(c: DrawContext): void {
    const series = c.series;
    const names = series ? Object.keys(series.series) : [];
    this.root.style.display = names.length ? "" : "none";
    if (!names.length || !series) return;
    this.plot.layout(c.width, 100);
    this.plot.setRange(c.t0, c.t1);
    this.plot.draw(names.map((n, i) => {
      const v = series.series[n];
      return { label: n, color: PALETTE[(i + 5) % PALETTE.length], get: (t: number) => v[t], normalise: true };
    }), c.theme);
  }
}
