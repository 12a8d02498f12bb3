// The units x timesteps heatmap: an ImageData per frame through a colour lookup table,
// downsampled by min/max per pixel bucket when the array is larger than the canvas.

import { Domain, divergingColor, cssColor, lutIndex } from "./colors";
import { HiDpiCanvas } from "./dom";
import { heatmapGrid } from "./downsample";
import { GridClient } from "./gridclient";

/** Arrays of at least this many values are downsampled in a worker. */
export const WORKER_THRESHOLD = 2_000_000;
import { rowAt } from "./layout";
import { TimePlot } from "./timeplot";
import type { Theme } from "./theme";
import { Segment, segmentGrid } from "./window";

export interface HeatmapFrame {
  data: Float32Array; // [time, units]
  units: number;
  order: number[]; // units top to bottom
  domain: Domain;
  lut: Uint32Array;
  selected: Map<number, string>; // unit -> line colour
  centre: number;
  length?: number; // valid timesteps; later ones are padding
  /** a window of a long sequence (binned or not): drawn from it instead of `data` */
  segment?: Segment | null;
  /** the label of a unit's row (default: its index) */
  labels?: (unit: number) => string;
}

export class Heatmap extends TimePlot {
  private image: HTMLCanvasElement = document.createElement("canvas");
  private imageCtx = this.image.getContext("2d")!;
  private imageData: ImageData | null = null;
  frame: HeatmapFrame | null = null;
  private gridBuffer: Float32Array<ArrayBufferLike> = new Float32Array(0);
  private grid: { grid: Float32Array; rows: number; cols: number } | null = null;
  private gridInputs: unknown[] = [];
  private pendingInputs: unknown[] = [];
  private client = new GridClient();
  /** Called when a grid computed in the worker arrived: redraw. */
  onGridReady: (() => void) | null = null;
  rows = 0;
  onPaint: (() => void) | null = null;

  constructor() {
    super("tls-heatmap", 2, 18);
  }

  draw(frame: HeatmapFrame | null, theme: Theme, message = ""): void {
    this.frame = frame;
    const ctx = this.base.clear();
    const { plot } = this;
    if (!frame) {
      ctx.fillStyle = theme.muted;
      ctx.font = "12px sans-serif";
      ctx.textAlign = "center";
      ctx.fillText(message, plot.x + plot.w / 2, plot.y + plot.h / 2);
      return;
    }
    const dpr = this.base.dpr;
    // The grid only depends on the data, the order, the range and the size: a redraw for
    // anything else (theme, domain, selected units) reuses it.
    const inputs = [frame.segment ?? frame.data, frame.order, this.t0, this.t1, plot.w * dpr, plot.h * dpr, frame.centre];
    const same = (a: unknown[]) => a.length === inputs.length && inputs.every((v, i) => v === a[i]);
    if (frame.segment && (!this.grid || !same(this.gridInputs))) {
      // a window: at most a few thousand bins, small enough for the main thread
      this.grid = segmentGrid(frame.segment, frame.order, this.t0, this.t1, plot.w * dpr, plot.h * dpr, frame.centre);
      this.gridInputs = inputs;
      this.pendingInputs = [];
    }
    if (!this.grid || !same(this.gridInputs)) {
      const big = frame.data.length >= WORKER_THRESHOLD && this.client.available;
      if (big) {
        // Large arrays (10,000 x 1,024) are downsampled in a worker: the page stays
        // responsive, and this panel shows its previous image until the grid arrives.
        if (!same(this.pendingInputs)) {
          this.pendingInputs = inputs;
          this.client.request(frame.data, frame.units, frame.order, this.t0, this.t1, plot.w * dpr, plot.h * dpr, frame.centre)
            .then((g) => {
              if (!same(this.pendingInputs) && this.pendingInputs !== inputs) return; // superseded
              this.pendingInputs = [];
              if (g) {
                this.grid = g;
                this.gridInputs = inputs;
              } else {
                this.grid = heatmapGrid(frame.data, frame.units, frame.order, inputs[2] as number, inputs[3] as number,
                  inputs[4] as number, inputs[5] as number, frame.centre);
                this.gridInputs = inputs;
              }
              this.onGridReady?.();
            });
        }
        if (this.imageData) {
          ctx.imageSmoothingEnabled = false;
          ctx.drawImage(this.image, plot.x, plot.y, plot.w, plot.h);
        }
        this.drawUnitAxis(ctx, theme, frame);
        this.drawTimeAxis(ctx, theme);
        return;
      }
      this.grid = heatmapGrid(
        frame.data, frame.units, frame.order, this.t0, this.t1, plot.w * dpr, plot.h * dpr, frame.centre, this.gridBuffer,
      );
      this.gridInputs = inputs;
      if (this.grid.grid.length > this.gridBuffer.length) this.gridBuffer = this.grid.grid;
    }
    const { grid, rows, cols } = this.grid;
    this.rows = frame.order.length;
    if (!this.imageData || this.imageData.width !== cols || this.imageData.height !== rows) {
      this.image.width = cols;
      this.image.height = rows;
      this.imageData = this.imageCtx.createImageData(cols, rows);
    }
    const pixels = new Uint32Array(this.imageData.data.buffer);
    const { lut, domain } = frame;
    for (let i = 0; i < grid.length; i++) pixels[i] = lut[lutIndex(grid[i], domain)];
    this.imageCtx.putImageData(this.imageData, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(this.image, plot.x, plot.y, plot.w, plot.h);
    if (frame.length !== undefined && frame.length < this.t1) {
      const x0 = Math.max(plot.x, this.x(Math.max(frame.length, this.t0)));
      ctx.fillStyle = theme.dark ? "rgba(32,33,36,0.8)" : "rgba(255,255,255,0.8)";
      ctx.fillRect(x0, plot.y, plot.x + plot.w - x0, plot.h);
      if (plot.x + plot.w - x0 > 60) {
        ctx.fillStyle = theme.muted;
        ctx.font = "11px sans-serif";
        ctx.textAlign = "center";
        ctx.textBaseline = "middle";
        ctx.fillText("padding (past the sequence length)", (x0 + plot.x + plot.w) / 2, plot.y + plot.h / 2);
      }
    }
    this.drawUnitAxis(ctx, theme, frame);
    this.drawTimeAxis(ctx, theme);
    this.onPaint?.();
  }

  private drawUnitAxis(ctx: CanvasRenderingContext2D, theme: Theme, frame: HeatmapFrame): void {
    const { plot } = this;
    const n = frame.order.length;
    const rowH = plot.h / n;
    ctx.font = "10px sans-serif";
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    ctx.fillStyle = theme.muted;
    const every = Math.max(1, Math.ceil(14 / rowH));
    // labels stay inside the canvas: the first and last rows' are moved in, never cut
    const top = 6, bottom = this.base.height - 6;
    for (let r = 0; r < n; r += every) {
      ctx.fillText(frame.labels ? frame.labels(frame.order[r]) : String(frame.order[r]), plot.x - 8, Math.min(bottom, Math.max(top, plot.y + (r + 0.5) * rowH)));
    }
    frame.order.forEach((u, r) => {
      const color = frame.selected.get(u);
      if (!color) return;
      ctx.fillStyle = color;
      ctx.fillRect(plot.x - 5, plot.y + r * rowH, 4, Math.max(2, rowH));
    });
    ctx.save();
    ctx.fillStyle = theme.muted;
    ctx.translate(10, plot.y + plot.h / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center";
    ctx.fillText("unit", 0, 0);
    ctx.restore();
  }

  /** The unit and timestep under a client position, or null. */
  hit(clientX: number, clientY: number): { t: number; row: number; unit: number } | null {
    if (!this.frame) return null;
    const t = this.timestepAtClient(clientX);
    const rect = this.base.canvas.getBoundingClientRect();
    const row = rowAt(clientY - rect.top, this.plot.y, this.plot.h, this.rows);
    if (t === null || row === null) return null;
    return { t, row, unit: this.frame.order[row] };
  }

  /** Outlines the hovered row on the overlay. */
  drawRow(ctx: CanvasRenderingContext2D, row: number | null, theme: Theme): void {
    if (row === null || !this.rows) return;
    const { plot } = this;
    const h = plot.h / this.rows;
    ctx.strokeStyle = theme.dark ? "rgba(255,255,255,0.7)" : "rgba(0,0,0,0.55)";
    ctx.strokeRect(plot.x + 0.5, Math.round(plot.y + row * h) + 0.5, plot.w - 1, Math.max(1, Math.round(h) - 1));
  }
}

/** A colour bar for a domain, with its ends and centre labelled; when the data on screen
 * reach beyond the domain, an arrow at that end says so and how far they reach. */
export class Legend {
  readonly view = new HiDpiCanvas("tls-legend");
  /** what the bar says, for tests and screen readers */
  text = "";

  draw(domain: Domain, theme: Theme, label: string, data: [number, number] | null = null): void {
    this.view.resize(300, 26);
    const ctx = this.view.clear();
    const labelW = 40, barX = labelW + 10, barW = 150;
    for (let i = 0; i < barW; i++) {
      ctx.fillStyle = cssColor(divergingColor(i / (barW - 1), theme.dark));
      ctx.fillRect(barX + i, 2, 1, 10);
    }
    ctx.strokeStyle = theme.muted;
    ctx.strokeRect(barX - 0.5, 1.5, barW + 1, 11);
    const low = !!data && data[0] < domain.lo - 1e-6 * Math.abs(domain.lo);
    const high = !!data && data[1] > domain.hi + 1e-6 * Math.abs(domain.hi);
    const arrow = (x: number, dir: number, f: number) => {
      ctx.fillStyle = cssColor(divergingColor(f, theme.dark));
      ctx.beginPath();
      ctx.moveTo(x, 1);
      ctx.lineTo(x + dir * 8, 7);
      ctx.lineTo(x, 13);
      ctx.closePath();
      ctx.fill();
      ctx.strokeStyle = theme.fg;
      ctx.stroke();
    };
    if (low) arrow(barX - 2, -1, 0);
    if (high) arrow(barX + barW + 2, 1, 1);
    ctx.fillStyle = theme.muted;
    ctx.font = "10px sans-serif";
    ctx.textBaseline = "top";
    const fmt = (v: number) => String(Number(v.toPrecision(3)));
    ctx.textAlign = "left";
    ctx.fillText(fmt(domain.lo), barX, 14);
    ctx.textAlign = "center";
    ctx.fillText(fmt((domain.lo + domain.hi) / 2), barX + barW / 2, 14);
    ctx.textAlign = "right";
    ctx.fillText(fmt(domain.hi), barX + barW, 14);
    ctx.textAlign = "left";
    ctx.textBaseline = "middle";
    ctx.fillText(label, 0, 7);
    const clipped: string[] = [];
    if (low && data) clipped.push("min " + fmt(data[0]));
    if (high && data) clipped.push("max " + fmt(data[1]));
    if (clipped.length) {
      ctx.fillStyle = theme.anomaly;
      ctx.textBaseline = "top";
      ctx.fillText("clipped", barX + barW + 14, 0);
      ctx.fillText(clipped.join(" "), barX + barW + 14, 13);
    }
    this.text = `${label} ${fmt(domain.lo)} to ${fmt(domain.hi)}` + (clipped.length ? ` · clipped: data reach ${clipped.join(", ")}` : "");
    this.view.canvas.setAttribute("aria-label", this.text);
    this.view.canvas.title = this.text;
  }
}
