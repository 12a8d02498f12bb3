// The anomaly card: the change track's threshold, its flags scored against a logged 0/1
// label series (precision, recall, lead time; this step and across the steps), and a
// summary of the flags over every sequence of the probe.

import type * as api from "../api";
import { poolScores, Score, scoreFlags } from "../anomaly";
import { el, setText } from "../dom";
import { evenlySpaced, formatValue } from "../layout";
import { isLabelSeries } from "../seriesaxes";
import type { DataLoader } from "../data";
import type { Store } from "../store";

/** Flags this close to a labelled event count as detecting it. */
export const TOLERANCE = 5;
/** At most this many steps are scored for the across-steps line. */
const EPOCHS = 40;

const pct = (v: number) => (Number.isFinite(v) ? Math.round(100 * v) + "%" : "–");
const lead = (v: number) => (Number.isFinite(v) ? `${formatValue(v)} timesteps` : "–");

export class AnomalyView {
  readonly threshold = el("input", { type: "number", min: "0.5", max: "100", step: "0.5", "aria-label": "anomaly threshold", style: "width:64px" });
  private stepLine = el("div", { class: "tls-score", "data-role": "step-score" });
  private epochLine = el("div", { class: "tls-score", "data-role": "epoch-score" });
  private summary = el("div", { class: "tls-score", "data-role": "sequence-summary" });
  readonly root = el("div", { class: "tls-card tls-anomalies" },
    el("h3", {}, "Anomalies", el("span", { style: "flex:1" }), el("label", { class: "tls-sub" }, "flag when robust z > ", this.threshold)),
    this.stepLine, this.epochLine, this.summary);
  onThreshold: (v: number) => void = () => undefined;

  constructor() {
    this.threshold.addEventListener("change", () => {
      const v = Number(this.threshold.value);
      if (Number.isFinite(v) && v > 0) this.onThreshold(v);
    });
  }

  draw(store: Store, data: DataLoader, step: number): void {
    const state = store.state;
    if (document.activeElement !== this.threshold) this.threshold.value = String(state.threshold);
    const series = data.seriesAt(step);
    const labelName = series ? Object.keys(series.series).find((n) => isLabelSeries(series.series[n])) : undefined;
    const batch = store.info?.batch ?? 1;
    // this step, every sequence
    const perSequence: (api.Changes | undefined)[] = [];
    for (let b = 0; b < Math.min(batch, 64); b++) perSequence.push(data.changesAt(step, b, b === state.sequence));
    const loaded = perSequence.filter((c): c is api.Changes => !!c);
    const flags = loaded.map((c) => c.anomalies.length);
    const total = flags.reduce((x, y) => x + y, 0);
    const most = flags.length ? flags.indexOf(Math.max(...flags)) : -1;
    setText(this.summary, loaded.length < perSequence.length
      ? `flags over the probe's ${perSequence.length} sequences: ${loaded.length} loaded…`
      : `flags over the probe's ${perSequence.length} sequences at step ${step}: ${total} in all, ` +
        `${flags.filter((f) => f > 0).length} sequences flagged, most in #${most} (${flags[most] ?? 0})`);
    if (!labelName || !series) {
      setText(this.stepLine, series ? "No 0/1 label series is logged: log one (e.g. `anomaly`) to score the flags." : "");
      setText(this.epochLine, "");
      return;
    }
    const lengths = series.lengths;
    const scoreOf = (c: api.Changes | undefined, b: number, s: api.Series): Score | null =>
      c ? scoreFlags(c.anomalies, s.all[labelName]?.[b] ?? new Float64Array(0), lengths[b] ?? s.all[labelName]?.[b]?.length ?? 0, TOLERANCE) : null;
    const mine = scoreOf(perSequence[state.sequence], state.sequence, series);
    const all = perSequence.map((c, b) => scoreOf(c, b, series));
    const pooled = all.every((x) => x) ? poolScores(all as Score[]) : null;
    setText(this.stepLine, mine
      ? `vs “${labelName}” (±${TOLERANCE} timesteps) at step ${step}, sequence #${state.sequence}: precision ${pct(mine.precision)}, ` +
        `recall ${pct(mine.recall)} (${mine.detected}/${mine.events}), lead time ${lead(mine.lead)}` +
        (pooled ? ` · all sequences: precision ${pct(pooled.precision)}, recall ${pct(pooled.recall)}, lead ${lead(pooled.lead)}` : "")
      : "scoring…");
    // across the steps (evenly spaced when there are many), this sequence
    const steps = evenlySpaced(store.steps, EPOCHS);
    const scores: { step: number; s: Score }[] = [];
    for (const st of steps) {
      const c = data.changesAt(st, state.sequence, false);
      const s = data.seriesAt(st);
      const sc = c && s ? scoreOf(c, state.sequence, s) : null;
      if (sc) scores.push({ step: st, s: sc });
    }
    if (scores.length < steps.length) {
      setText(this.epochLine, `across steps: ${scores.length} of ${steps.length} scored…`);
      return;
    }
    const best = scores.reduce((x, y) => (y.s.recall > x.s.recall || (y.s.recall === x.s.recall && y.s.precision > x.s.precision) ? y : x));
    const first = scores[0], last = scores[scores.length - 1];
    setText(this.epochLine, `across ${scores.length} steps: recall ${pct(first.s.recall)} at step ${first.step} → ${pct(last.s.recall)} at step ${last.step}; ` +
      `precision ${pct(first.s.precision)} → ${pct(last.s.precision)}; best recall ${pct(best.s.recall)} at step ${best.step}`);
  }
}
