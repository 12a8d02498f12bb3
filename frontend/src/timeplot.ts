// The frame shared by every view drawn over the time axis: one base canvas, one
// overlay canvas for the cursor and hover, the same left gutter and time mapping.

import { el, HiDpiCanvas } from "./dom";
import { ticks, timestepAt, timestepX } from "./layout";
import type { Theme } from "./theme";

export const GUTTER = 56;
export const RIGHT = 10;

export interface Rect {
  x: number;
  y: number;
  w: number;
  h: number;
}

export interface TimeView {
  t0: number;
  t1: number;
  cursor: number | null;
  hover: number | null;
  selection: [number, number] | null; // a zoom drag in progress
}

export class TimePlot {
  readonly root: HTMLDivElement;
  readonly base = new HiDpiCanvas("tls-base");
  readonly overlay = new HiDpiCanvas("tls-overlay");
  plot: Rect = { x: GUTTER, y: 0, w: 1, h: 1 };
  t0 = 0;
  t1 = 1;
  /** labels of the time axis: timestamps when a `time` series is logged, else the timestep */
  timeLabel: ((t: number) => string) | null = null;
  private overlayKey = "";

  constructor(cls: string, public top = 4, public bottom = 18) {
    this.root = el("div", { class: "tls-stack " + cls });
    this.root.append(this.base.canvas, this.overlay.canvas);
  }

  /** Sizes both canvases and the plot rectangle; returns true when the size changed. */
  layout(width: number, height: number): boolean {
    const changed = this.base.resize(width, height);
    this.overlay.resize(width, height);
    this.plot = { x: GUTTER, y: this.top, w: Math.max(1, width - GUTTER - RIGHT), h: Math.max(1, height - this.top - this.bottom) };
    return changed;
  }

  setRange(t0: number, t1: number): void {
    this.t0 = t0;
    this.t1 = Math.max(t0 + 1, t1);
  }

  /** The timestep under a client x coordinate, or null outside the plot. */
  timestepAtClient(clientX: number): number | null {
    const rect = this.base.canvas.getBoundingClientRect();
    return timestepAt(clientX - rect.left, this.plot.x, this.plot.w, this.t0, this.t1);
  }

  /** Client x clamped into the plot, as a timestep (for drags that leave the plot). */
  clampedTimestep(clientX: number): number {
    const rect = this.base.canvas.getBoundingClientRect();
    const x = Math.min(Math.max(clientX - rect.left, this.plot.x), this.plot.x + this.plot.w - 0.01);
    return timestepAt(x, this.plot.x, this.plot.w, this.t0, this.t1) ?? this.t0;
  }

  x(t: number): number {
    return timestepX(t, this.plot.x, this.plot.w, this.t0, this.t1);
  }

  drawTimeAxis(ctx: CanvasRenderingContext2D, theme: Theme): void {
    const { plot } = this;
    ctx.fillStyle = theme.muted;
    ctx.font = "10px sans-serif";
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const label = this.timeLabel;
    const n = Math.max(2, Math.floor(plot.w / (label ? 130 : 80)));
    for (const t of ticks(this.t0, this.t1 - 1, n)) {
      if (!Number.isInteger(t)) continue;
      const x = this.x(t + 0.5);
      ctx.fillRect(x, plot.y + plot.h, 1, 3);
      ctx.fillText(label ? label(t) : String(t), x, plot.y + plot.h + 4);
    }
    // the axis title, in the gutter's corner
    ctx.textAlign = "left";
    ctx.fillText(label ? "time (UTC)" : "timestep", 2, plot.y + plot.h + 4);
  }

  /** Draws the cursor, the hover line and the zoom selection on the overlay. */
  drawOverlay(view: TimeView, theme: Theme, extra?: (ctx: CanvasRenderingContext2D) => void, extraKey = ""): void {
    // skipped when nothing it shows changed: playback then repaints no overlay at all
    const key = [this.t0, this.t1, view.t0, view.t1, view.cursor, view.hover, view.selection, theme.dark, this.overlay.width, this.overlay.height, this.plot.w, this.plot.h, extraKey].join();
    if (key === this.overlayKey) return;
    this.overlayKey = key;
    const ctx = this.overlay.clear();
    const { plot } = this;
    const column = (t: number) => [this.x(t), Math.max(1, this.x(t + 1) - this.x(t))];
    if (view.selection) {
      const [a, b] = view.selection;
      const lo = Math.min(a, b), hi = Math.max(a, b) + 1;
      ctx.fillStyle = theme.dark ? "rgba(255,255,255,0.15)" : "rgba(26,115,232,0.15)";
      ctx.fillRect(this.x(lo), plot.y, this.x(hi) - this.x(lo), plot.h);
    }
    if (view.cursor !== null && view.cursor >= this.t0 && view.cursor < this.t1) {
      const [x, w] = column(view.cursor);
      ctx.fillStyle = theme.cursor;
      ctx.fillRect(x + w / 2 - 1, plot.y, 2, plot.h);
    }
    if (view.hover !== null && view.hover >= this.t0 && view.hover < this.t1) {
      const [x, w] = column(view.hover);
      ctx.strokeStyle = theme.dark ? "rgba(255,255,255,0.7)" : "rgba(0,0,0,0.55)";
      ctx.lineWidth = 1;
      ctx.strokeRect(Math.round(x) + 0.5, plot.y + 0.5, Math.max(1, Math.round(w) - 1), plot.h - 1);
    }
    extra?.(ctx);
  }
}
