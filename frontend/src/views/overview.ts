// The training overview card: sparklines of the per-step statistics, the step marked.
// In compare mode both runs are drawn, a legend names each.

import type * as api from "../api";
import { PALETTE } from "../colors";
import { el, setText } from "../dom";
import { OverviewRun, OverviewView as Sparklines } from "../overview";
import type { Theme } from "../theme";

export class OverviewCard {
  readonly sparklines = new Sparklines();
  private legend = el("div", { class: "tls-sub tls-ovlegend" });
  private note = el("div", { class: "tls-hint tls-ovnote", style: "margin-top:4px" });
  readonly root = el("div", { class: "tls-card tls-overview" }, el("h3", {}, "Training overview"), this.legend, this.sparklines.root, this.note);

  /** `other`: the compared run's overview (undefined while it loads), in compare mode;
   * `note`: what a statistic of the run is of (the gradient reach), said under them. */
  draw(run: string, overview: api.Overview | null, step: number, theme: Theme, other: { run: string; overview: api.Overview | undefined } | null = null, note = ""): void {
    if (!overview) return;
    setText(this.note, note);
    this.note.style.display = note ? "" : "none";
    const own = theme.dark ? "#8ab4f8" : "#4e79a7";
    const runs: OverviewRun[] = [{ run, steps: overview.steps, stats: overview.stats, color: own }];
    if (other?.overview && other.run !== run) runs.push({ run: other.run, steps: other.overview.steps, stats: other.overview.stats, color: PALETTE[1] });
    this.legend.style.display = other && other.run !== run ? "" : "none";
    if (other && other.run !== run) {
      const entry = (name: string, colour: string, dashed: boolean) =>
        el("span", { class: "tls-ovkey" }, el("i", { style: `border-top:2px ${dashed ? "dashed" : "solid"} ${colour}` }), name);
      const key = `${run}|${other.run}|${!!other.overview}|${own}`;
      if (this.legend.dataset.key !== key) {
        this.legend.dataset.key = key;
        this.legend.replaceChildren(entry(run, own, false), entry(other.run, PALETTE[1], true),
          ...(other.overview ? [] : [el("span", {}, `${other.run}: loading…`)]));
      }
    }
    this.sparklines.draw(runs, step, theme);
  }
}
