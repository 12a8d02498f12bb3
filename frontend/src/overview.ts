// Sparklines of the per-step statistics of the whole run, the current step marked. In
// compare mode the other run's line is drawn over it on the same axes (steps by value),
// and each value names its run; a step the other run lacks is said, never substituted.

import { el, HiDpiCanvas, setText } from "./dom";
import { extent } from "./downsample";
import { formatValue, linear } from "./layout";
import type { Theme } from "./theme";

/** One run's statistics: its name, its steps, its values per statistic, its line colour. */
export interface OverviewRun {
  run: string;
  steps: number[];
  stats: Record<string, Float32Array>;
  color: string;
}

const W = 130, H = 26;

export class OverviewView {
  readonly root = el("div");
  private rows = new Map<string, { canvas: HiDpiCanvas; value: HTMLSpanElement; row: HTMLDivElement }>();
  steps: number[] = [];
  private runs: OverviewRun[] = [];
  /** the step axis: [first, last] over every run drawn */
  private span: [number, number] = [0, 1];
  onPick: ((step: number) => void) | null = null;

  /** The step of the first run nearest a client x over a sparkline. */
  private stepAt(canvas: HTMLCanvasElement, clientX: number): number | undefined {
    const rect = canvas.getBoundingClientRect();
    const s = this.span[0] + ((clientX - rect.left) / rect.width) * (this.span[1] - this.span[0]);
    let best: number | undefined, bestD = Infinity;
    for (const step of this.steps) {
      if (Math.abs(step - s) < bestD) { best = step; bestD = Math.abs(step - s); }
    }
    return best;
  }

  /** What each run holds for `name` at `step`, as text (`short`: values only, in run order). */
  private valueText(name: string, step: number | null, short = false): string {
    const parts = this.runs.map((r) => {
      const i = step === null ? -1 : r.steps.indexOf(step);
      const v = i < 0 ? undefined : r.stats[name]?.[i];
      const text = i < 0 ? `no step ${step}` : v === undefined || !Number.isFinite(v) ? "–" : formatValue(v);
      return this.runs.length > 1 && !short ? `${r.run}: ${text}` : text;
    });
    return parts.join(short ? " / " : " · ");
  }

  /** Draws `runs[0]` (and `runs[1]`, the compared run, over it). */
  draw(runs: OverviewRun[], current: number | null, theme: Theme): void {
    const first = runs[0];
    if (!first) return;
    this.runs = runs;
    this.steps = first.steps;
    const all = runs.flatMap((r) => r.steps);
    this.span = all.length ? [Math.min(...all), Math.max(...all)] : [0, 1];
    if (this.span[1] === this.span[0]) this.span = [this.span[0], this.span[0] + 1];
    const names = Object.keys(first.stats);
    if (names.join() !== [...this.rows.keys()].join()) {
      this.rows.clear();
      this.root.replaceChildren();
      for (const name of names) {
        const canvas = new HiDpiCanvas("tls-sparkline");
        const value = el("span");
        const row = el("div", { class: "tls-spark", title: "click to jump to that step" }, el("span", {}, name), canvas.canvas, value);
        canvas.canvas.addEventListener("mousemove", (e) => {
          // hover: the step and each run's value under the pointer
          const step = this.stepAt(canvas.canvas, e.clientX);
          canvas.canvas.title = step === undefined ? "" : `${name} at step ${step}: ${this.valueText(name, step)} (click to jump)`;
        });
        canvas.canvas.addEventListener("click", (e) => {
          const step = this.stepAt(canvas.canvas, e.clientX);
          if (step !== undefined) this.onPick?.(step);
        });
        this.rows.set(name, { canvas, value, row });
        this.root.append(row);
      }
    }
    const x = linear(this.span, [2, W - 2]);
    for (const name of names) {
      const { canvas, value } = this.rows.get(name)!;
      canvas.resize(W, H);
      const ctx = canvas.clear();
      // one y scale for both runs: the same statistic
      const [lo, hi] = extent(runs.flatMap((r) => Array.from(r.stats[name] ?? [])));
      const y = linear([lo, hi], [H - 3, 3]);
      runs.forEach((r, k) => {
        const values = r.stats[name];
        if (!values) return;
        ctx.strokeStyle = r.color;
        ctx.lineWidth = 1.2;
        ctx.setLineDash(k ? [3, 2] : []);
        ctx.beginPath();
        let pen = false;
        values.forEach((v, i) => {
          if (!Number.isFinite(v)) { pen = false; return; }
          if (!pen) ctx.moveTo(x(r.steps[i]), y(v)); else ctx.lineTo(x(r.steps[i]), y(v));
          pen = true;
        });
        ctx.stroke();
        ctx.setLineDash([]);
      });
      if (current !== null && first.steps.includes(current)) {
        ctx.fillStyle = theme.cursor;
        ctx.fillRect(x(current) - 1, 0, 2, H);
        for (const r of runs) {
          const i = r.steps.indexOf(current);
          const v = i < 0 ? NaN : r.stats[name]?.[i];
          if (!Number.isFinite(v)) continue;
          ctx.fillStyle = r.color;
          ctx.beginPath();
          ctx.arc(x(current), y(v), 2.5, 0, 2 * Math.PI);
          ctx.fill();
        }
      }
      // beside the line: the values only (the legend names the runs), in full on hover
      setText(value, current === null ? "" : this.valueText(name, current, true));
      value.title = current === null ? "" : `step ${current}: ${this.valueText(name, current)}`;
    }
  }
}
