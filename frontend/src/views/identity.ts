// A unit's identity across steps: for a unit of the step on screen, its matched unit at
// each logged step (the `match` route of this step against that one, at most
// IDENTITY_STEPS of them evenly spaced), drawn as |r| with its partner over the steps
// and labelled with the partner's index: when a unit's role appears, the curve rises.

import type * as api from "../api";
import type { DataLoader } from "../data";
import { el, HiDpiCanvas, setOptions, setText } from "../dom";
import { formatValue, linear, ticks } from "../layout";
import { IdentityPoint, identityPoints, identitySteps, Match } from "../matching";
import type { Store } from "../store";
import type { Theme } from "../theme";

/** At most this many steps are matched (one `match` request each). */
export const IDENTITY_STEPS = 40;

const H = 150, LEFT = 34, RIGHT = 10, TOP = 16, BOTTOM = 20;

export class IdentityView {
  readonly unit = el("select", { "aria-label": "identity unit" });
  private button = el("button", { class: "tls-identbtn", "aria-label": "track unit" }, "Track");
  private chart = new HiDpiCanvas("tls-identity-chart");
  private readout = el("div", { class: "tls-hint", "data-role": "identity-readout" });
  private note = el("div", { class: "tls-hint" });
  readonly root = el("div", { class: "tls-card tls-identity" },
    el("h3", {}, "Unit across steps", el("span", { style: "flex:1" }), el("label", { class: "tls-sub" }, "unit ", this.unit), this.button),
    this.chart.canvas, this.readout, this.note);
  private points: IdentityPoint[] = [];
  private x = linear([0, 1], [0, 1]);
  /** the unit to track, or null to stop */
  onTrack: (unit: number | null) => void = () => undefined;
  /** a click on a point: go to its step */
  onStep: (step: number) => void = () => undefined;

  constructor() {
    this.button.addEventListener("click", () => this.onTrack(this.button.dataset.on ? null : Number(this.unit.value)));
    this.unit.addEventListener("change", () => { if (this.button.dataset.on) this.onTrack(Number(this.unit.value)); });
    const c = this.chart.canvas;
    c.addEventListener("mousemove", (e) => this.hover(this.nearest(e.clientX)));
    c.addEventListener("mouseleave", () => this.hover(null));
    c.addEventListener("click", (e) => {
      const p = this.nearest(e.clientX);
      if (p) this.onStep(p.step);
    });
  }

  private nearest(clientX: number): IdentityPoint | null {
    const rect = this.chart.canvas.getBoundingClientRect();
    let best: IdentityPoint | null = null, bestD = 12;
    for (const p of this.points) {
      const d = Math.abs(this.x(p.step) - (clientX - rect.left));
      if (d < bestD) { best = p; bestD = d; }
    }
    return best;
  }

  private hover(p: IdentityPoint | null): void {
    setText(this.readout, p ? describe(p) + " · click to go to this step" : this.points.length ? "hover a point for its partner; click to go to its step" : "");
  }

  draw(store: Store, data: DataLoader, step: number, units: number, width: number, theme: Theme): void {
    const s = store.state;
    const tracked = s.ident !== null && s.ident < units ? s.ident : null;
    const choices = [...new Set([...(tracked === null ? [] : [tracked]), ...s.units])].filter((u) => u < units);
    setOptions(this.unit, choices.map((u) => [String(u), String(u)]), String(tracked ?? choices[0] ?? ""));
    this.button.textContent = tracked === null ? "Track" : "Stop";
    this.button.classList.toggle("on", tracked !== null);
    if (tracked === null) delete this.button.dataset.on;
    else this.button.dataset.on = "1";
    this.button.toggleAttribute("disabled", !choices.length);
    if (tracked === null) {
      data.matches.stop();
      this.points = [];
      this.chart.canvas.style.display = "none";
      setText(this.readout, "");
      setText(this.note, `Pick a plotted unit and press Track: its matched unit at up to ${IDENTITY_STEPS} logged steps ` +
        "(this step's layer paired one-to-one with each step's by |r|), to see when its role appears.");
      return;
    }
    this.chart.canvas.style.display = "";
    const steps = identitySteps(store.steps, step, IDENTITY_STEPS);
    const queries: api.MatchQuery[] = steps.filter((x) => x !== step).map((other) => ({
      run: s.run, tag: s.tag, step, layer: s.layer, kind: s.kind, other_run: s.run, other_tag: s.tag, other_step: other,
    }));
    // a new reference step cancels the previous batch; none is started while playing
    if (!store.playing) data.matches.track(JSON.stringify([s.run, s.tag, s.layer, s.kind, step, steps]), queries);
    const matches = new Map<number, Match>();
    const failed: string[] = [];
    for (const q of queries) {
      const m = data.matches.get(q, false);
      if (m) matches.set(q.other_step, m);
      else if (data.matches.error(q)) failed.push(`${q.other_step}: ${data.matches.error(q)}`);
    }
    this.points = identityPoints(tracked, step, steps, matches);
    const loading = queries.length - matches.size - failed.length;
    setText(this.note, `unit ${tracked} of step ${step} (${s.kind}), matched to ${queries.length} other step${queries.length === 1 ? "" : "s"}` +
      (steps.length < store.steps.length ? ` (${steps.length} of ${store.steps.length} evenly spaced)` : "") +
      (loading ? ` · ${loading} loading${store.playing ? " after playback" : ""}` : "") +
      ` · y: |r| with its partner · label: the partner's index (− opposite sign, open circle)` +
      (failed.length ? ` · not matched: ${failed.slice(0, 2).join("; ").slice(0, 200)}` : ""));
    this.plot(steps, step, width, theme);
    if (!this.readout.textContent) this.hover(null);
  }

  private plot(steps: number[], current: number, width: number, theme: Theme): void {
    const w = Math.max(200, width);
    this.chart.resize(w, H);
    const ctx = this.chart.clear();
    const x0 = steps[0] ?? 0, x1 = steps[steps.length - 1] ?? 1;
    const pad = x1 === x0 ? 1 : 0;
    const x = (this.x = linear([x0 - pad, x1 + pad], [LEFT + 6, w - RIGHT - 6]));
    const y = linear([0, 1], [H - BOTTOM, TOP]);
    ctx.font = "10px sans-serif";
    ctx.fillStyle = theme.muted;
    ctx.strokeStyle = theme.grid;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const v of [0, 0.5, 1]) {
      ctx.fillRect(LEFT, Math.round(y(v)), w - LEFT - RIGHT, 1);
      ctx.fillText(String(v), LEFT - 4, y(v));
    }
    ctx.textAlign = "left";
    ctx.fillText("|r|", 2, TOP - 8);
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (const t of ticks(x0, x1, Math.max(2, Math.floor((w - LEFT) / 50)))) {
      if (!Number.isInteger(t)) continue;
      ctx.fillRect(Math.round(x(t)), H - BOTTOM, 1, 3);
      ctx.fillText(String(t), x(t), H - BOTTOM + 4);
    }
    ctx.textAlign = "left";
    ctx.fillText("step", 2, H - BOTTOM + 4);
    // the step on screen
    ctx.fillStyle = theme.cursor;
    ctx.fillRect(Math.round(x(current)) - 1, TOP - 4, 2, H - BOTTOM - TOP + 4);
    const pts = this.points;
    ctx.strokeStyle = theme.accent;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    let drawing = false;
    for (const p of pts) {
      if (!Number.isFinite(p.similarity)) { drawing = false; continue; }
      if (drawing) ctx.lineTo(x(p.step), y(p.similarity));
      else ctx.moveTo(x(p.step), y(p.similarity));
      drawing = true;
    }
    ctx.stroke();
    ctx.textBaseline = "bottom";
    const dense = pts.length > 12;
    pts.forEach((p, i) => {
      const px = x(p.step), py = y(Number.isFinite(p.similarity) ? p.similarity : 0);
      ctx.beginPath();
      ctx.arc(px, py, 3.5, 0, 2 * Math.PI);
      ctx.fillStyle = theme.accent;
      if (p.unit < 0) {
        ctx.strokeStyle = theme.muted;
        ctx.stroke();
      } else if (p.sign < 0) {
        ctx.fillStyle = theme.panel;
        ctx.fill();
        ctx.strokeStyle = theme.accent;
        ctx.stroke();
      } else ctx.fill();
      // the partner's index: every point when few, else where it changes
      const prev = pts[i - 1];
      if (!dense || !prev || prev.unit !== p.unit || prev.sign !== p.sign || p.step === current) {
        ctx.fillStyle = theme.fg;
        ctx.fillText(label(p), px, py - 5);
      }
    });
    this.chart.canvas.setAttribute("aria-label", pts.map((p) => `step ${p.step}: ${label(p)} (|r| ${formatValue(p.similarity)})`).join(" · "));
  }
}

function label(p: IdentityPoint): string {
  return p.unit < 0 ? "none" : (p.sign < 0 ? "−" : "") + p.unit;
}

function describe(p: IdentityPoint): string {
  if (p.unit < 0) return `step ${p.step}: no partner`;
  return `step ${p.step}: unit ${p.unit} · |r| ${formatValue(p.similarity)}${p.sign < 0 ? " · opposite sign" : ""}`;
}
