// The change track card: the norm of the state change per timestep, anomalies marked.

import type * as api from "../api";
import { el } from "../dom";
import { ChangeTrack } from "../lines";
import type { Theme } from "../theme";

export class ChangesView {
  readonly plot = new ChangeTrack();
  private note = el("span", { class: "tls-sub" });
  readonly root = el("div", { class: "tls-card" }, el("h3", {}, "Change per timestep", this.note), this.plot.root);

  draw(changes: api.Changes | undefined, kind: string, t0: number, t1: number, width: number, theme: Theme): void {
    this.plot.layout(width, 80);
    this.plot.setRange(t0, t1);
    this.plot.draw(changes?.norm ?? null, changes?.anomalies ?? [], theme, "loading…");
    const n = changes?.anomalies.length ?? 0;
    const note = changes ? `‖Δ${kind === "cell" ? "c" : "h"}ₜ‖ · ${n} anomal${n === 1 ? "y" : "ies"} marked (click a mark to jump)` : "";
    if (this.note.textContent !== note) this.note.textContent = note;
  }
}
