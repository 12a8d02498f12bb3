// The input series card: the series logged beside the states over the time axis. Series
// of one quantity share a labelled axis (a price and its prediction), 0/1 labels are
// shaded spans, and a prediction/target pair gets a residual track below.

import { PALETTE } from "../colors";
import { el, setOptions } from "../dom";
import { formatValue } from "../layout";
import { LinePlot, Track } from "../lines";
import { axisGroups, isLabelSeries, isTimeSeries, labelSpans, residualPairs } from "../seriesaxes";
import type { DrawContext } from "./context";

export class SeriesView {
  readonly plot = new LinePlot("tls-series");
  readonly residual = new LinePlot("tls-residual", true, "residual");
  readonly pair = el("select", { "aria-label": "residual pair" });
  private residualRow = el("div", {}, this.residual.root);
  readonly root = el("div", { class: "tls-card" },
    el("h3", {}, "Input series", el("span", { style: "flex:1" }), el("label", { class: "tls-sub" }, "residual ", this.pair)),
    this.plot.root, this.residualRow);
  /** the pair the user picked changed */
  onPair: (value: string) => void = () => undefined;

  constructor() {
    this.pair.addEventListener("change", () => this.onPair(this.pair.value));
  }

  draw(c: DrawContext): void {
    const series = c.series;
    const names = series ? Object.keys(series.series) : [];
    this.root.style.display = names.length ? "" : "none";
    if (!names.length || !series) return;
    const values = series.series;
    const length = c.scene.shown?.view.length ?? Infinity;
    const groups = axisGroups(values);
    const axisOf = new Map<string, string>();
    for (const g of groups) for (const n of g) axisOf.set(n, g.join(", "));
    const tracks: Track[] = names.filter((n) => !isTimeSeries(n, values[n])).map((n, i) => {
      const v = values[n];
      const label = isLabelSeries(v);
      return {
        label: n, color: PALETTE[(i + 5) % PALETTE.length], get: (t: number) => v[t],
        axis: axisOf.get(n), spans: label ? labelSpans(v, Math.min(v.length, length)) : undefined,
      };
    });
    this.plot.layout(c.width, 120);
    this.plot.setRange(c.t0, c.t1);
    this.plot.draw(tracks, c.theme);

    // the residual of a prediction/target pair, when there is one
    const pairs = residualPairs(values);
    const wanted = c.store.state.residual;
    const options: [string, string][] = [["off", "off"], ...pairs.map(([a, b]) => [a + "-" + b, `${a} − ${b}`] as [string, string])];
    const value = wanted === "off" ? "off" : options.some(([v]) => v === wanted) ? wanted : pairs.length ? pairs[0].join("-") : "off";
    setOptions(this.pair, options, value);
    this.pair.parentElement!.style.display = pairs.length ? "" : "none";
    const pair = pairs.find(([a, b]) => a + "-" + b === value);
    this.residualRow.style.display = pair ? "" : "none";
    if (pair) {
      const a = values[pair[0]], b = values[pair[1]];
      let sum = 0, n = 0;
      for (let t = 0; t < Math.min(a.length, b.length, length); t++) {
        const r = a[t] - b[t];
        if (r === r) { sum += r * r; n++; }
      }
      this.residual.layout(c.width, 80);
      this.residual.setRange(c.t0, c.t1);
      this.residual.draw([{
        label: `${pair[0]} − ${pair[1]} (RMS ${formatValue(Math.sqrt(sum / Math.max(1, n)))})`, color: c.theme.anomaly,
        get: (t: number) => (t < length ? a[t] - b[t] : NaN), axis: "residual",
      }], c.theme);
    }
  }
}
