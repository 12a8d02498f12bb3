// The trajectory card: the 2-D projection of the state through the timesteps.

import type * as api from "../api";
import { el, setText } from "../dom";
import { formatValue, nearestStep } from "../layout";
import { ProjectionView } from "../projection";
import type { DrawContext } from "./context";

export class TrajectoryView {
  readonly projection = new ProjectionView();
  private note = el("div", { class: "tls-hint" });
  readonly root: HTMLElement;

  constructor(method: HTMLSelectElement, colorBy: HTMLSelectElement) {
    this.root = el("div", { class: "tls-card" },
      el("h3", {}, "Trajectory", el("span", { style: "flex:1" }), method, colorBy),
      el("div", { class: "tls-stack" }, this.projection.base.canvas, this.projection.overlay.canvas),
      el("div", { class: "tls-hint" }, "wheel to zoom · drag to pan · double-click to reset"),
      this.note);
  }

  draw(c: DrawContext, p: api.Projection | null, error: string): void {
    const view = this.projection;
    const step = c.step;
    const size = 276;
    view.base.resize(size, size);
    if (view.overlay.resize(size, size)) view.overlayShown = true;
    const projected = p ? nearestStep(p.steps, step) : null;
    const points = p && projected !== null ? p.points.get(projected) ?? null : null;
    const idx = p && projected !== null ? p.steps.indexOf(projected) : -1;
    setText(this.note, p ? (p.methodUsed === "pca" ? "PCA" : p.methodUsed === "tsne" ? "t-SNE" : "UMAP") +
      (p.explained ? ` · ${Math.round(100 * (p.explained[0] + (p.explained[1] ?? 0)))}% of variance` : "") +
      (projected !== step && projected !== null ? ` · nearest projected step ${projected}` : "") : "");
    const previous = p && idx > 0 ? p.points.get(p.steps[idx - 1]) ?? null : null;
    let color: ((t: number) => number) | null = null;
    const colorBy = c.store.state.colorBy;
    if (colorBy !== "time" && c.series?.series[colorBy]) {
      const v = c.series.series[colorBy];
      let lo = Infinity, hi = -Infinity;
      for (const x of v) if (Number.isFinite(x)) { lo = Math.min(lo, x); hi = Math.max(hi, x); }
      color = (t) => (v[t] - lo) / (hi - lo || 1);
      view.legend = [colorBy, formatValue(lo), formatValue(hi)];
    } else {
      view.legend = ["timestep", String(c.t0), String(c.t1 - 1)];
    }
    view.draw(points, previous, c.t0, c.t1, color, c.theme,
      error || (p ? `step ${step} is outside the projected window` : "loading…"));
  }
}
