// The states card: the heatmap of the step on screen, in compare mode beside the other
// run's (or step's) heatmap and their difference, with the colour bar and the tokens.

import { el, setText } from "../dom";
import { Heatmap, HeatmapFrame, Legend } from "../heatmap";
import { formatValue } from "../layout";
import { TokenStrip } from "../tokens";
import * as win from "../window";
import type { DrawContext } from "./context";

export class StatesView {
  readonly heat = new Heatmap();
  readonly heatB = new Heatmap();
  readonly heatD = new Heatmap();
  readonly legend = new Legend();
  readonly tokens = new TokenStrip();
  readonly panels = el("div", { class: "tls-panels" });
  private title = el("span", { class: "tls-sub" });
  private titleA = el("div", { class: "tls-paneltitle" });
  private titleB = el("div", { class: "tls-paneltitle" });
  private titleD = el("div", { class: "tls-paneltitle" });
  private panelB = el("div", {}, this.titleB, this.heatB.root);
  private panelD = el("div", {}, this.titleD, this.heatD.root);
  readonly root: HTMLElement;
  /** hovering a token: its timestep, or null when the pointer leaves */
  onTokenHover: (t: number | null) => void = () => undefined;

  constructor() {
    this.panels.append(el("div", {}, this.titleA, this.heat.root), this.panelB, this.panelD);
    this.root = el("div", { class: "tls-card" },
      el("h3", {}, "States", this.title, el("span", { style: "flex:1" }), this.legend.view.canvas),
      this.panels, this.tokens.root,
      el("div", { class: "tls-hint" }, "Hover for values · click a row to plot that unit · drag to zoom into a time range · double-click to zoom out"),
    );
  }

  /** The three heatmaps, primary first. */
  get heatmaps(): Heatmap[] {
    return [this.heat, this.heatB, this.heatD];
  }

  /** Whether the difference panel is on screen. */
  get differenceShown(): boolean {
    return this.panelD.style.display !== "none";
  }

  /** Width of one panel for a main column `width` wide. */
  panelWidth(width: number): number {
    return Math.max(320, this.panels.clientWidth || width);
  }

  draw(c: DrawContext): void {
    const { store, scene, theme, t0, t1, step } = c;
    const state = store.state;
    const fullWidth = c.width;
    const shown = scene.shown;
    const compare = !!state.compare;
    const b = compare ? scene.shownCompare : null;
    const difference = scene.difference();
    const diff = !!difference;
    const nPanels = compare ? (diff ? 3 : 2) : 1;
    this.panelB.style.display = compare ? "" : "none";
    this.panelD.style.display = diff ? "" : "none";
    const gap = 10;
    const panelW = Math.floor((fullWidth - gap * (nPanels - 1)) / nPanels);
    const units = shown ? shown.view.units : 0;
    const heatH = Math.round(Math.min(440, Math.max(180, units * 3)));
    const kindLabel = state.kind === "cell" ? "cell state c" : state.kind === "hidden" ? "hidden state h" : state.kind + " gate";
    setText(this.title, `${kindLabel} · ${c.layerName} · sequence #${state.sequence}` + (t0 > 0 || t1 < (shown?.view.time ?? t1) ? ` · timesteps ${t0}–${t1 - 1}` : ""));
    this.titleA.style.display = compare ? "" : "none";
    setText(this.titleA, `${state.run} · step ${step}`);

    let frame: HeatmapFrame | null = null;
    if (shown) {
      frame = {
        data: shown.array.data, units, order: scene.order, domain: scene.domain, lut: c.lut, selected: scene.selected,
        centre: (scene.domain.lo + scene.domain.hi) / 2, length: shown.view.length, segment: shown.view.segment,
      };
    }
    this.legend.draw(scene.domain, theme, "value");
    this.heat.layout(panelW, heatH);
    this.heat.setRange(t0, t1);
    this.heat.draw(frame, theme, c.error || "loading…");
    if (compare) {
      const cq = store.compareQuery(step);
      setText(this.titleB, cq ? `${cq.run} · step ${cq.step}` : `${state.compare} · no steps`);
      this.heatB.layout(panelW, heatH);
      this.heatB.setRange(t0, Math.min(t1, b?.view.time ?? t1));
      const bUnits = b ? b.view.units : 0;
      const bOrder = b && bUnits === units ? scene.order : Array.from({ length: bUnits }, (_, i) => i);
      this.heatB.draw(b && frame ? { ...frame, data: b.array.data, units: bUnits, order: bOrder, length: b.view.length, segment: b.view.segment } : null, theme, "loading…");
      if (difference && frame) {
        const { data: d, max: m, segment } = difference;
        setText(this.titleD, `difference (left − right) · max |Δ| ${formatValue(m)}`);
        this.heatD.layout(panelW, heatH);
        this.heatD.setRange(t0, t1);
        this.heatD.draw({ ...frame, data: d, segment, domain: { lo: -m, hi: m }, centre: 0 }, theme);
      }
    }

    // tokens tinted by the first selected unit (the hovered one while hovering)
    const tintUnit = c.hoverUnit ?? state.units[0] ?? null;
    const view = shown?.view;
    const domain = scene.domain;
    const centre = (domain.lo + domain.hi) / 2;
    this.tokens.draw(c.series?.tokens ?? null, t0, t1, panelW,
      view && tintUnit !== null ? (t) => win.tintAt(view, t, tintUnit, centre) : null, domain, theme.dark,
      (t) => this.onTokenHover(t));
    this.tokens.root.style.marginLeft = "56px";
  }
}
