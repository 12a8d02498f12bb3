// The trajectory card: the 2-D projection of the state through the timesteps, of one
// sequence, a chosen set or all of them, coloured by timestep, sequence, token or any
// series. In compare mode the other run's trajectory is drawn beside it, each panel
// named by its run and step; a step the other run lacks is said, never substituted.

import type * as api from "../api";
import { el, setText } from "../dom";
import { nearestStep } from "../layout";
import { ProjectionView } from "../projection";
import { colouring } from "../trajcolor";
import type { DrawContext } from "./context";

const SIZE = 276;

export interface TrajectoryControls {
  method: HTMLSelectElement;
  colorBy: HTMLSelectElement;
  sequences: HTMLSelectElement;
  sequenceSet: HTMLInputElement;
}

export class TrajectoryView {
  readonly projection = new ProjectionView();
  readonly projectionB = new ProjectionView();
  private note = el("div", { class: "tls-hint" });
  private noteB = el("div", { class: "tls-hint" });
  private panelB: HTMLElement;
  readonly root: HTMLElement;

  constructor(controls: TrajectoryControls) {
    this.panelB = el("div", { class: "tls-trajb" },
      el("div", { class: "tls-stack" }, this.projectionB.base.canvas, this.projectionB.overlay.canvas), this.noteB);
    this.root = el("div", { class: "tls-card tls-trajectory" },
      el("h3", {}, "Trajectory", el("span", { style: "flex:1" }), controls.method, controls.colorBy),
      el("div", { class: "tls-sub tls-trajseq" }, "of ", controls.sequences, controls.sequenceSet),
      el("div", { class: "tls-stack" }, this.projection.base.canvas, this.projection.overlay.canvas),
      this.note,
      this.panelB,
      el("div", { class: "tls-hint" }, "wheel to zoom · drag to pan · double-click to reset"));
  }

  draw(c: DrawContext, p: api.Projection | null, error: string, compared: { projection: api.Projection | null; error: string }): void {
    const s = c.store.state;
    const compare = !!s.compare;
    const a = this.panel(this.projection, c, p, error, s.run, c.step, compare);
    setText(this.note, a);
    this.panelB.style.display = compare ? "" : "none";
    if (!compare) return;
    const target = c.store.compareTarget(c.step);
    const wanted = target?.wanted ?? c.step;
    if (target && !target.loading && !target.query) {
      // the other run lacks this step: said, never substituted
      this.projectionB.base.resize(SIZE, SIZE);
      this.projectionB.overlay.resize(SIZE, SIZE);
      this.projectionB.draw(null, null, c.t0, c.t1, this.colours(c, null), c.theme, `${s.compare} has no step ${wanted}`, `${s.compare} · step ${wanted}`);
      setText(this.noteB, `${s.compare} has no step ${wanted}`);
      return;
    }
    const b = this.panel(this.projectionB, c, compared.projection, compared.error || "loading…", s.compare, wanted, true);
    setText(this.noteB, b + (s.compare !== s.run ? " · its own axes (fitted on its run)" : " · the same axes"));
  }

  private colours(c: DrawContext, p: api.Projection | null) {
    const all = c.series;
    const colorBy = c.store.state.colorBy;
    const asked = c.store.trajectorySequences();
    const sequences = p?.sequences ?? (asked.length ? asked : Array.from({ length: c.store.info?.batch ?? 1 }, (_, i) => i));
    if (!all && colorBy !== "time" && colorBy !== "#sequence") {
      // the series (and tokens) are loading: by timestep until they arrive, said
      const byTime = colouring({ colorBy: "time", sequences, t0: c.t0, t1: c.t1, series: null, tokens: null });
      return { ...byTime, note: "the series are loading" };
    }
    return colouring({ colorBy, sequences, t0: c.t0, t1: c.t1, series: all ? all.all : null, tokens: all?.allTokens ?? null });
  }

  /** Draws one run's panel; returns the line said under it. */
  private panel(view: ProjectionView, c: DrawContext, p: api.Projection | null, error: string, run: string, step: number, named: boolean): string {
    view.base.resize(SIZE, SIZE);
    if (view.overlay.resize(SIZE, SIZE)) view.overlayShown = true;
    const projected = p ? nearestStep(p.steps, step) : null;
    const paths = p && projected !== null ? p.paths.get(projected) ?? null : null;
    const idx = p && projected !== null ? p.steps.indexOf(projected) : -1;
    const previous = p && idx > 0 ? p.paths.get(p.steps[idx - 1]) ?? null : null;
    const colours = this.colours(c, p);
    const title = named ? `${run} · step ${projected ?? step}` : "";
    view.draw(paths, previous, c.t0, c.t1, colours, c.theme,
      error || (p ? `step ${step} is outside the projected window` : "loading…"), title);
    if (!p) return "";
    const seqs = p.sequences.length === 1 ? `sequence #${p.sequences[0]}` : `${p.sequences.length} sequences`;
    return (p.methodUsed === "pca" ? "PCA" : p.methodUsed === "tsne" ? "t-SNE" : "UMAP") +
      (p.explained ? ` · ${Math.round(100 * (p.explained[0] + (p.explained[1] ?? 0)))}% of variance` : "") +
      ` · ${seqs}` +
      (projected !== step && projected !== null ? ` · nearest projected step ${projected} (step ${step} is not projected)` : "") +
      (colours.note ? " · " + colours.note : "");
  }
}
