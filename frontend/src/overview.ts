// Sparklines of the per-step statistics of the whole run, the current step marked.

import { el, HiDpiCanvas, setText } from "./dom";
import { extent } from "./downsample";
import { formatValue, linear } from "./layout";
import type { Theme } from "./theme";

export class OverviewView {
  readonly root = el("div");
  private rows = new Map<string, { canvas: HiDpiCanvas; value: HTMLSpanElement; row: HTMLDivElement }>();
  steps: number[] = [];
  private values = new Map<string, Float32Array>();
  onPick: ((step: number) => void) | null = null;

  draw(steps: number[], stats: Record<string, Float32Array>, current: number | null, theme: Theme): void {
    this.steps = steps;
    const names = Object.keys(stats);
    if (names.join() !== [...this.rows.keys()].join()) {
      this.rows.clear();
      this.root.replaceChildren();
      for (const name of names) {
        const canvas = new HiDpiCanvas("tls-sparkline");
        const value = el("span");
        const row = el("div", { class: "tls-spark", title: "click to jump to that step" }, el("span", {}, name), canvas.canvas, value);
        canvas.canvas.addEventListener("mousemove", (e) => {
          // hover: the step and value under the pointer
          const rect = canvas.canvas.getBoundingClientRect();
          const i = Math.min(Math.max(Math.round(((e.clientX - rect.left) / rect.width) * (this.steps.length - 1)), 0), this.steps.length - 1);
          const v = this.values.get(name)?.[i];
          canvas.canvas.title = this.steps[i] === undefined ? "" : `${name} at step ${this.steps[i]}: ${v === undefined ? "–" : formatValue(v)} (click to jump)`;
        });
        canvas.canvas.addEventListener("click", (e) => {
          const rect = canvas.canvas.getBoundingClientRect();
          const i = Math.round(((e.clientX - rect.left) / rect.width) * (this.steps.length - 1));
          const step = this.steps[Math.min(Math.max(i, 0), this.steps.length - 1)];
          if (step !== undefined) this.onPick?.(step);
        });
        this.rows.set(name, { canvas, value, row });
        this.root.append(row);
      }
    }
    const index = current === null ? -1 : steps.indexOf(current);
    this.values = new Map(Object.entries(stats));
    for (const name of names) {
      const { canvas, value } = this.rows.get(name)!;
      const values = stats[name];
      canvas.resize(130, 26);
      const ctx = canvas.clear();
      const [lo, hi] = extent(values);
      const x = linear([0, Math.max(1, steps.length - 1)], [2, 128]);
      const y = linear([lo, hi], [23, 3]);
      ctx.strokeStyle = theme.dark ? "#8ab4f8" : "#4e79a7";
      ctx.lineWidth = 1.2;
      ctx.beginPath();
      let pen = false;
      values.forEach((v, i) => {
        if (!Number.isFinite(v)) { pen = false; return; }
        if (!pen) ctx.moveTo(x(i), y(v)); else ctx.lineTo(x(i), y(v));
        pen = true;
      });
      ctx.stroke();
      if (index >= 0) {
        ctx.fillStyle = theme.cursor;
        ctx.fillRect(x(index) - 1, 0, 2, 26);
        const v = values[index];
        if (Number.isFinite(v)) {
          ctx.beginPath();
          ctx.arc(x(index), y(v), 2.5, 0, 2 * Math.PI);
          ctx.fill();
        }
      }
      setText(value, index >= 0 ? formatValue(values[index]) : "");
    }
  }
}
