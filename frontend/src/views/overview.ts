// The training overview card: sparklines of the per-step statistics, the step marked.

import type * as api from "../api";
import { el } from "../dom";
import { OverviewView as Sparklines } from "../overview";
import type { Theme } from "../theme";

export class OverviewCard {
  readonly sparklines = new Sparklines();
  readonly root = el("div", { class: "tls-card" }, el("h3", {}, "Training overview"), this.sparklines.root);

  draw(overview: api.Overview | null, step: number, theme: Theme): void {
    if (overview) this.sparklines.draw(overview.steps, overview.stats, step, theme);
  }
}
