// The change track card: the norm of the state change per timestep, anomalies marked.
// In compare mode the other run's track is drawn over it (a line, open marks) with a
// legend naming both runs; a step the other run lacks is said, never substituted.

import type * as api from "../api";
import { PALETTE } from "../colors";
import { ChangeTrack, OtherTrack } from "../changetrack";
import { el, setText } from "../dom";
import type { Store } from "../store";
import type { Theme } from "../theme";

export class ChangesView {
  readonly plot = new ChangeTrack();
  private note = el("span", { class: "tls-sub" });
  readonly root = el("div", { class: "tls-card" }, el("h3", {}, "Change per timestep", this.note), this.plot.root);

  /** `other`: the compared run's changes (undefined while they load, null when there are none to show). */
  draw(changes: api.Changes | undefined, other: api.Changes | null | undefined, store: Store, t0: number, t1: number, width: number, theme: Theme): void {
    const s = store.state;
    const step = store.currentStep();
    const target = step === null ? null : store.compareTarget(step);
    this.plot.top = target ? 24 : 10;
    this.plot.layout(width, target ? 94 : 80);
    this.plot.setRange(t0, t1);
    let track: OtherTrack | null = null;
    let said = "";
    if (target) {
      const label = `${target.run} step ${target.wanted}`;
      const missing = !target.query && !target.loading;
      const message = missing ? "no such step (nothing substituted)" : "loading…";
      track = { label, color: PALETTE[1], norm: other?.norm ?? null, anomalies: other?.anomalies ?? [], message };
      const n = other?.anomalies.length ?? 0;
      said = missing ? ` · ${target.run} has no step ${target.wanted}` : other ? ` · ${label}: ${n} anomal${n === 1 ? "y" : "ies"} (line, open marks)` : "";
    }
    const own = `${s.run} step ${step ?? "–"}`;
    this.plot.draw(changes?.norm ?? null, changes?.anomalies ?? [], theme, "loading…", own, track);
    const n = changes?.anomalies.length ?? 0;
    const note = changes ? `‖Δ${s.kind === "cell" ? "c" : "h"}ₜ‖ · ${target ? own + ": " : ""}${n} anomal${n === 1 ? "y" : "ies"} marked (click a mark to jump)${said}` : "";
    setText(this.note, note);
  }
}
