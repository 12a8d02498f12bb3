// The 2-D trajectory of the state through the timesteps, on axes fixed across steps
// (the backend aligns the projections) so playback shows motion, not re-layout.

import { cssColor, sequentialColor } from "./colors";
import { HiDpiCanvas } from "./dom";
import { extent } from "./downsample";
import { linear } from "./layout";
import type { Theme } from "./theme";
import { Colouring, legendText, TrajectoryLegend } from "./trajcolor";

export class ProjectionView {
  readonly base = new HiDpiCanvas("tls-base");
  readonly overlay = new HiDpiCanvas("tls-overlay");
  private bounds: { x: [number, number]; y: [number, number] } | null = null;
  private paths: Float32Array[] = [];
  private sx = linear([0, 1], [0, 1]);
  private sy = linear([0, 1], [0, 1]);
  /** the user's zoom and pan: the visible fraction of the axes and its centre (0.5: middle) */
  private zoom = { k: 1, cx: 0.5, cy: 0.5 };
  /** called after a zoom or pan: redraw */
  onView: () => void = () => undefined;
  /** what the colours mean */
  legend: TrajectoryLegend = { kind: "ramp", label: "timestep", lo: "", hi: "" };

  constructor() {
    const c = this.base.canvas;
    c.addEventListener("wheel", (e) => {
      e.preventDefault();
      const rect = c.getBoundingClientRect();
      const fx = (e.clientX - rect.left) / rect.width, fy = (e.clientY - rect.top) / rect.height;
      const k = Math.min(1, Math.max(0.01, this.zoom.k * (e.deltaY > 0 ? 1.25 : 0.8)));
      // keep the point under the pointer in place
      const px = this.zoom.cx + (fx - 0.5) * this.zoom.k, py = this.zoom.cy + (0.5 - fy) * this.zoom.k;
      this.zoom = { k, cx: px - (fx - 0.5) * k, cy: py - (0.5 - fy) * k };
      this.onView();
    }, { passive: false });
    c.addEventListener("mousedown", (e) => {
      if (e.button !== 0 || this.zoom.k >= 1) return;
      const x0 = e.clientX, y0 = e.clientY, start = { ...this.zoom };
      const rect = c.getBoundingClientRect();
      const move = (ev: MouseEvent) => {
        this.zoom = { k: start.k, cx: start.cx - ((ev.clientX - x0) / rect.width) * start.k, cy: start.cy + ((ev.clientY - y0) / rect.height) * start.k };
        this.onView();
      };
      const up = () => {
        window.removeEventListener("mousemove", move);
        window.removeEventListener("mouseup", up);
      };
      window.addEventListener("mousemove", move);
      window.addEventListener("mouseup", up);
    });
    c.addEventListener("dblclick", () => this.resetView());
  }

  resetView(): void {
    this.zoom = { k: 1, cx: 0.5, cy: 0.5 };
    this.onView();
  }

  /** Whether the view is zoomed in. */
  get zoomed(): boolean {
    return this.zoom.k < 1;
  }

  /** Fixes the axes to the extent of every step's points. */
  setAll(all: Iterable<Float32Array>, bounds: [number, number, number, number] | null = null): void {
    if (bounds && bounds[2] > bounds[0] && bounds[3] > bounds[1]) {
      const padX = (bounds[2] - bounds[0]) * 0.05, padY = (bounds[3] - bounds[1]) * 0.05;
      this.bounds = { x: [bounds[0] - padX, bounds[2] + padX], y: [bounds[1] - padY, bounds[3] + padY] };
      return;
    }
    const xs: number[] = [], ys: number[] = [];
    for (const p of all) for (let i = 0; i < p.length; i += 2) { xs.push(p[i]); ys.push(p[i + 1]); }
    const x = extent(xs), y = extent(ys);
    const padX = (x[1] - x[0]) * 0.05, padY = (y[1] - y[0]) * 0.05;
    this.bounds = { x: [x[0] - padX, x[1] + padX], y: [y[0] - padY, y[1] + padY] };
  }

  /**
   * Draws the paths (one per sequence shown) coloured by `colouring`, the previous
   * step's paths faint, the colour legend below and `title` (the run and step) on top.
   */
  draw(
    paths: Float32Array[] | null, previous: Float32Array[] | null, t0: number, t1: number,
    colouring: Colouring, theme: Theme, message: string, title = "",
  ): void {
    const size = this.base.width;
    const ctx = this.base.clear();
    this.paths = paths ?? [];
    this.legend = colouring.legend;
    this.base.canvas.setAttribute("aria-label", (title ? title + " · " : "") + legendText(colouring.legend));
    ctx.strokeStyle = theme.grid;
    ctx.strokeRect(0.5, 0.5, size - 1, size - 1);
    const drawTitle = () => {
      if (!title) return;
      ctx.fillStyle = theme.fg;
      ctx.font = "11px sans-serif";
      ctx.textAlign = "left";
      ctx.textBaseline = "top";
      ctx.fillText(title.length > 40 ? title.slice(0, 39) + "…" : title, 6, 5);
    };
    if (!paths || !this.bounds) {
      drawTitle();
      ctx.fillStyle = theme.muted;
      ctx.font = "12px sans-serif";
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      // wrapped: a backend message (a cap, say) can be long
      const lines: string[] = [];
      for (const word of message.split(/\s+/)) {
        const last = lines.length ? lines[lines.length - 1] + " " + word : word;
        if (lines.length && ctx.measureText(last).width <= size - 24) lines[lines.length - 1] = last;
        else lines.push(word);
      }
      lines.slice(0, 8).forEach((line, i) => ctx.fillText(line, size / 2, size / 2 + (i - (Math.min(lines.length, 8) - 1) / 2) * 16));
      return;
    }
    const { k, cx, cy } = this.zoom;
    const bx = this.bounds.x, by = this.bounds.y;
    const at = (b: [number, number], f: number) => b[0] + f * (b[1] - b[0]);
    this.sx = linear([at(bx, cx - k / 2), at(bx, cx + k / 2)], [8, size - 8]);
    this.sy = linear([at(by, cy - k / 2), at(by, cy + k / 2)], [size - 30, title ? 20 : 8]);
    ctx.save();
    ctx.beginPath();
    ctx.rect(1, 1, size - 2, size - 24);
    ctx.clip();
    if (previous) {
      ctx.strokeStyle = theme.dark ? "rgba(255,255,255,0.15)" : "rgba(0,0,0,0.12)";
      ctx.lineWidth = 1;
      ctx.beginPath();
      for (const prev of previous) {
        for (let t = t0; t < Math.min(t1, prev.length / 2); t++) {
          const x = this.sx(prev[2 * t]), y = this.sy(prev[2 * t + 1]);
          if (t === t0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
        }
      }
      ctx.stroke();
    }
    ctx.lineWidth = paths.length > 8 ? 1 : 1.5;
    ctx.lineCap = "round";
    // one path per colour: a few strokes instead of one per segment
    const strokes = new Map<string, Path2D>();
    paths.forEach((points, i) => {
      const hi = Math.min(t1, points.length / 2);
      for (let t = t0 + 1; t < hi; t++) {
        const colour = colouring.colorOf(i, t);
        let path = strokes.get(colour);
        if (!path) strokes.set(colour, (path = new Path2D()));
        path.moveTo(this.sx(points[2 * t - 2]), this.sy(points[2 * t - 1]));
        path.lineTo(this.sx(points[2 * t]), this.sy(points[2 * t + 1]));
      }
    });
    for (const [colour, path] of strokes) {
      ctx.strokeStyle = colour;
      ctx.stroke(path);
    }
    paths.forEach((points, i) => {
      // each path's start
      if (Math.min(t1, points.length / 2) <= t0) return;
      ctx.fillStyle = colouring.colorOf(i, t0);
      ctx.beginPath();
      ctx.arc(this.sx(points[2 * t0]), this.sy(points[2 * t0 + 1]), 3, 0, 2 * Math.PI);
      ctx.fill();
    });
    ctx.restore();
    this.drawLegend(ctx, colouring.legend, theme);
    drawTitle();
    if (this.zoom.k < 1) {
      ctx.fillStyle = theme.muted;
      ctx.font = "10px sans-serif";
      ctx.textAlign = "right";
      ctx.textBaseline = "middle";
      ctx.fillText(`zoom ${Math.round(1 / this.zoom.k * 10) / 10}x · double-click to reset`, size - 6, title ? 26 : 12);
    }
  }

  /** The colour legend along the bottom: a labelled ramp, or named swatches. */
  private drawLegend(ctx: CanvasRenderingContext2D, legend: TrajectoryLegend, theme: Theme): void {
    const size = this.base.width;
    const barY = size - 18;
    ctx.font = "10px sans-serif";
    ctx.textBaseline = "middle";
    ctx.fillStyle = theme.muted;
    ctx.textAlign = "left";
    const label = legend.label.length > 10 ? legend.label.slice(0, 9) + "…" : legend.label;
    ctx.fillText(label, 6, barY + 4);
    if (legend.kind === "ramp") {
      const barX = 70, barW = size - 140;
      for (let i = 0; i < barW; i++) {
        ctx.fillStyle = cssColor(sequentialColor(i / (barW - 1)));
        ctx.fillRect(barX + i, barY, 1, 8);
      }
      ctx.fillStyle = theme.muted;
      ctx.textAlign = "right";
      ctx.fillText(legend.lo, barX - 4, barY + 4);
      ctx.textAlign = "left";
      ctx.fillText(legend.hi, barX + barW + 4, barY + 4);
      return;
    }
    let x = Math.max(52, ctx.measureText(label).width + 12);
    let shown = 0;
    for (const [name, colour] of legend.entries) {
      const plain = /^[^\s\x00-\x1f"]+$/.test(name) ? name : JSON.stringify(name); // a space or newline token, quoted
      const text = plain.length > 8 ? plain.slice(0, 7) + "…" : plain;
      const w = ctx.measureText(text).width + 16;
      if (x + w > size - 40) break;
      ctx.fillStyle = colour;
      ctx.fillRect(x, barY, 8, 8);
      ctx.fillStyle = theme.fg;
      ctx.fillText(text, x + 11, barY + 4);
      x += w;
      shown++;
    }
    const more = legend.more + legend.entries.length - shown;
    if (more > 0) {
      ctx.fillStyle = theme.muted;
      ctx.fillText(`+${more}`, x, barY + 4);
    }
  }

  overlayShown = true;

  drawOverlay(t: number | null, theme: Theme): void {
    if (t === null && !this.overlayShown) return;
    this.overlayShown = t !== null;
    const ctx = this.overlay.clear();
    if (t === null) return;
    ctx.strokeStyle = theme.fg;
    ctx.fillStyle = theme.cursor;
    ctx.lineWidth = 2;
    for (const p of this.paths) {
      if (2 * t + 1 >= p.length) continue;
      ctx.beginPath();
      ctx.arc(this.sx(p[2 * t]), this.sy(p[2 * t + 1]), this.paths.length > 1 ? 4 : 5, 0, 2 * Math.PI);
      ctx.fill();
      ctx.stroke();
    }
  }

  /** The timestep whose point (of any path) lies nearest a client position (within 12 px). */
  nearest(clientX: number, clientY: number, t0: number, t1: number): number | null {
    const rect = this.base.canvas.getBoundingClientRect();
    const x = clientX - rect.left, y = clientY - rect.top;
    let best: number | null = null, bestD = 144;
    for (const p of this.paths) {
      for (let t = t0; t < Math.min(t1, p.length / 2); t++) {
        const dx = this.sx(p[2 * t]) - x, dy = this.sy(p[2 * t + 1]) - y;
        const d = dx * dx + dy * dy;
        if (d < bestD) { best = t; bestD = d; }
      }
    }
    return best;
  }
}
