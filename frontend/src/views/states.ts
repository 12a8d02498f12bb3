// The states card: the heatmap of the step on screen, in compare mode beside the other
// run's (or step's) heatmap and their difference, with the colour bar and the tokens.

import { SIGMOID_KINDS } from "../colors";
import { el, setText } from "../dom";
import { Heatmap, HeatmapFrame, Legend } from "../heatmap";
import { formatValue } from "../layout";
import { alignmentSummary, matchLabel } from "../matching";
import type { Alignment } from "../scene";
import { TokenStrip } from "../tokens";
import * as win from "../window";
import type { DrawContext } from "./context";

/** The least height of a heatmap row, in CSS pixels. */
export const MIN_ROW = 6;
/** Past this height (256 units) rows get thinner instead: the canvas stays a sane size. */
const MAX_HEIGHT = 1536;

export class StatesView {
  readonly heat = new Heatmap();
  readonly heatB = new Heatmap();
  readonly heatD = new Heatmap();
  readonly legend = new Legend();
  readonly legendA = new Legend();
  readonly legendB = new Legend();
  readonly legendD = new Legend();
  private scaleNote = el("div", { class: "tls-hint tls-scalenote" });
  /** how the compared run's rows were matched, when they were */
  private matchNote = el("div", { class: "tls-hint tls-matchnote" });
  /** resets every zoom (time and y) */
  readonly reset = el("button", { class: "tls-reset", title: "reset zoom (double-click a plot)", "aria-label": "reset zoom" }, "Reset zoom");
  readonly tokens = new TokenStrip();
  readonly panels = el("div", { class: "tls-panels" });
  private title = el("span", { class: "tls-sub" });
  private titleA = el("div", { class: "tls-paneltitle" });
  private titleB = el("div", { class: "tls-paneltitle" });
  private titleD = el("div", { class: "tls-paneltitle" });
  private panelB = el("div", {}, el("div", { class: "tls-paneltop" }, this.titleB, this.legendB.view.canvas), el("div", { class: "tls-heatscroll" }, this.heatB.root));
  private panelD = el("div", {}, el("div", { class: "tls-paneltop" }, this.titleD, this.legendD.view.canvas), el("div", { class: "tls-heatscroll" }, this.heatD.root));
  private topA = el("div", { class: "tls-paneltop" }, this.titleA, this.legendA.view.canvas);
  readonly root: HTMLElement;
  /** hovering a token: its timestep, or null when the pointer leaves */
  onTokenHover: (t: number | null) => void = () => undefined;

  constructor() {
    this.panels.append(el("div", {}, this.topA, el("div", { class: "tls-heatscroll" }, this.heat.root)), this.panelB, this.panelD);
    this.root = el("div", { class: "tls-card" },
      el("h3", {}, "States", this.title, el("span", { style: "flex:1" }), this.legend.view.canvas, this.reset),
      this.panels, this.tokens.root, this.scaleNote, this.matchNote,
      el("div", { class: "tls-hint" }, "Hover for values · click a row to plot that unit · drag to zoom into a time range · wheel to zoom · shift+drag to pan · double-click to zoom out"),
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
    const target = compare ? store.compareTarget(step) : null;
    const difference = target?.query ? scene.difference() : null;
    const diff = !!difference;
    const nPanels = compare ? (diff ? 3 : 2) : 1;
    this.panelB.style.display = compare ? "" : "none";
    this.panelD.style.display = diff ? "" : "none";
    const gap = 10;
    const panelW = Math.floor((fullWidth - gap * (nPanels - 1)) / nPanels);
    const units = shown ? shown.view.units : 0;
    // rows at least MIN_ROW px high: a tall layer scrolls inside its panel (labels stay readable)
    const heatH = Math.round(Math.min(MAX_HEIGHT, Math.max(180, units * MIN_ROW)) + 20);
    const kindLabel = state.kind === "cell" ? "cell state c" : state.kind === "hidden" ? "hidden state h" : state.kind + " gate";
    setText(this.title, `${kindLabel} · ${c.layerName} · sequence #${state.sequence}` + (t0 > 0 || t1 < (shown?.view.time ?? t1) ? ` · timesteps ${t0}–${t1 - 1}` : ""));
    this.topA.style.display = compare ? "" : "none";
    this.legend.view.canvas.style.display = compare ? "none" : "";
    setText(this.titleA, `${state.run} · step ${step}`);

    let frame: HeatmapFrame | null = null;
    if (shown) {
      frame = {
        data: shown.array.data, units, order: scene.order, domain: scene.domain, lut: c.lut, selected: scene.selected,
        centre: (scene.domain.lo + scene.domain.hi) / 2, length: shown.view.length, segment: shown.view.segment,
      };
    }
    const extentA = scene.dataExtent();
    this.legend.draw(scene.domain, theme, "value", extentA);
    this.legendA.draw(scene.domain, theme, "value", extentA);
    setText(this.scaleNote, scene.scaleNote + (compare && scene.scaleNoteB ? ` · right: ${scene.scaleNoteB}` : ""));
    this.heat.layout(panelW, heatH);
    this.heat.setRange(t0, t1);
    this.heat.draw(frame, theme, c.error || "loading…");
    if (compare) {
      const target = store.compareTarget(step);
      const missing = !!target && !target.query && !target.loading;
      setText(this.titleB, target?.query ? `${target.run} · step ${target.query.step}` :
        missing ? `${state.compare} has no step ${target?.wanted ?? step}` : `${state.compare} · loading…`);
      this.titleB.classList.toggle("tls-error", !!missing);
      this.heatB.layout(panelW, heatH);
      this.heatB.setRange(t0, Math.min(t1, b?.view.time ?? t1));
      const bUnits = b ? b.view.units : 0;
      const bOrder = b && scene.orderB.length === bUnits ? scene.orderB : Array.from({ length: bUnits }, (_, i) => i);
      this.legendB.draw(scene.domainB, theme, "value", scene.dataExtent(true));
      const al = scene.alignment;
      const centreB = (scene.domainB.lo + scene.domainB.hi) / 2;
      if (al?.match && al.view && b && !missing && !al.error) {
        const m = al.match;
        // rows of the first run's order, each showing its partner (row labels: the partner's index)
        const selected = new Map<number, string>();
        for (let u = 0; u < m.units.length; u++) {
          const color = scene.selectedB.get(m.units[u]);
          if (color) selected.set(u, color);
        }
        setText(this.titleB, `${target!.run} · step ${b.step} · matched to ${state.run}'s units` +
          (Number.isFinite(m.cka) ? ` · CKA ${m.cka.toFixed(3)}` : ""));
        this.heatB.draw({
          data: al.view.array.data, units: al.view.units, order: scene.order, domain: scene.domainB, lut: c.lut, selected,
          centre: centreB, length: b.view.length, segment: al.view.segment, labels: (u) => matchLabel(m, u),
        }, theme);
      } else {
        // unmatched (another run not yet matched, or not matchable): its own order, never subtracted
        this.heatB.draw(b && !missing && (!al || !!al.error) ? {
          data: b.array.data, units: bUnits, order: bOrder, domain: scene.domainB, lut: c.lut, selected: scene.selectedB,
          centre: centreB, length: b.view.length, segment: b.view.segment,
        } : null, theme, missing ? `${state.compare} has no step ${target!.wanted}: nothing to compare` :
          al?.error ? "could not match the units: " + al.error.slice(0, 160) : al && b ? "matching the units…" : "loading…");
      }
      if (difference && frame && !missing) {
        const { data: d, max: m, segment } = difference;
        // on the panels' own scale unless the difference is wider: a near-zero difference looks near zero
        const half = Math.max(m, (scene.domain.hi - scene.domain.lo) / 2);
        setText(this.titleD, (al ? "difference (left − matched right)" : "difference (left − right)") +
          ` · max |Δ| ${formatValue(m)}` + (half > m ? " · left's scale" : ""));
        this.heatD.layout(panelW, heatH);
        this.heatD.setRange(t0, t1);
        const domainD = { lo: -half || -1, hi: half || 1 };
        this.legendD.draw(domainD, theme, "Δ");
        this.heatD.draw({ ...frame, data: d, segment, domain: domainD, centre: 0 }, theme);
      }
    }

    // a title cut by a narrow panel is whole on hover
    for (const t of [this.titleB, this.titleD]) if (t.title !== t.textContent) t.title = t.textContent ?? "";
    setText(this.matchNote, compare ? alignmentNote(scene.alignment, state.run, state.compare, state.kind) : "");
    this.matchNote.style.display = this.matchNote.textContent ? "" : "none";

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

/** The legend of an aligned compare panel: how its rows were matched, flipped, left out. */
export function alignmentNote(al: Alignment | null, run: string, other: string, kind: string): string {
  if (!al) return "";
  if (!al.match) return al.error ? `${other}'s units could not be matched to ${run}'s (${al.error.slice(0, 200)}): its rows are in its own order and nothing is subtracted` : "";
  const m = al.match, n = m.units.length;
  const { flipped, unmatched, meanSimilarity } = alignmentSummary(m);
  const flip = SIGMOID_KINDS.has(kind) ? "as 1 − value" : "sign-flipped";
  const parts = [
    `Right panel: ${other}'s units paired one-to-one with ${run}'s rows (largest total |r|); row label: ${other}'s unit, “−”: ` +
      `opposite sign, drawn ${flip} so matched rows look alike`,
    `${flipped} of ${n} rows flipped · mean |r| ${Number.isFinite(meanSimilarity) ? meanSimilarity.toFixed(2) : "–"}` +
      ` · CKA ${Number.isFinite(m.cka) ? m.cka.toFixed(3) : "–"} (linear; 1: the same up to a rotation and a scale)`,
  ];
  if (unmatched) parts.push(`${unmatched} row${unmatched === 1 ? "" : "s"} unmatched (${other} has fewer units): left empty (grey)`);
  if (m.otherUnits !== null && m.otherUnits > n) parts.push(`${m.otherUnits - n} of ${other}'s ${m.otherUnits} units have no partner and are not shown`);
  const [sa, sb] = al.matchedAt ?? [al.query.step, al.query.other_step];
  if (sa !== al.query.step || sb !== al.query.other_step) parts.push(`rows matched at steps ${sa} / ${sb} (this step's matching loads once playback stops)`);
  return parts.join(" · ");
}
