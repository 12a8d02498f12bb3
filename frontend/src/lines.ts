// Line plots over the time axis: the selected units, the input series, the change track.
// Drawn as min/max spans per pixel column when there are more timesteps than pixels.

import { extent, minMaxBuckets } from "./downsample";
import { formatValue, linear, ticks } from "./layout";
import { TimePlot } from "./timeplot";
import type { Theme } from "./theme";

export interface Track {
  label: string;
  color: string;
  get: (t: number) => number;
  normalise?: boolean; // drawn on its own [min, max] scale
  /** min and max per bucket of [t0, t1) when the track is not held per timestep (a binned window) */
  buckets?: (t0: number, t1: number, n: number) => { min: Float32Array; max: Float32Array; count: number };
}

export class LinePlot extends TimePlot {
  tracks: Track[] = [];
  yDomain: [number, number] = [0, 1];

  constructor(cls: string, public showLegend = true) {
    super(cls, showLegend ? 20 : 6, 18);
  }

  draw(tracks: Track[], theme: Theme, message = "", fixed?: [number, number], validLength?: number): void {
    this.tracks = tracks;
    const ctx = this.base.clear();
    const { plot } = this;
    ctx.strokeStyle = theme.grid;
    ctx.strokeRect(plot.x + 0.5, plot.y + 0.5, plot.w - 1, plot.h - 1);
    if (!tracks.length) {
      ctx.fillStyle = theme.muted;
      ctx.font = "12px sans-serif";
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText(message, plot.x + plot.w / 2, plot.y + plot.h / 2);
      this.drawTimeAxis(ctx, theme);
      return;
    }
    const dpr = this.base.dpr;
    const columns = Math.max(1, Math.floor(plot.w * dpr));
    const buckets = tracks.map((tr) => tr.buckets ? tr.buckets(this.t0, this.t1, columns) : minMaxBuckets(tr.get, this.t0, this.t1, columns));
    const shared = fixed ?? extent(buckets.filter((_, i) => !tracks[i].normalise).flatMap((b) => [...b.min, ...b.max]));
    this.yDomain = shared;
    const shownShared = tracks.some((t) => !t.normalise);
    if (shownShared) {
      const y = linear(shared, [plot.y + plot.h - 2, plot.y + 2]);
      ctx.font = "10px sans-serif";
      ctx.textAlign = "right";
      ctx.textBaseline = "middle";
      for (const v of ticks(shared[0], shared[1], Math.max(2, Math.floor(plot.h / 28)))) {
        ctx.fillStyle = theme.grid;
        ctx.fillRect(plot.x, Math.round(y(v)), plot.w, 1);
        ctx.fillStyle = theme.muted;
        ctx.fillText(formatValue(v), plot.x - 6, y(v));
      }
    }
    ctx.save();
    ctx.beginPath();
    ctx.rect(plot.x, plot.y, plot.w, plot.h);
    ctx.clip(); // a span beyond the domain (a spike) ends at the plot's edge
    tracks.forEach((track, i) => {
      const b = buckets[i];
      const dom = track.normalise ? extent([...b.min, ...b.max]) : shared;
      const y = linear(dom, [plot.y + plot.h - 2, plot.y + 2]);
      ctx.strokeStyle = track.color;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      const step = plot.w / b.count;
      let pen = false;
      for (let c = 0; c < b.count; c++) {
        const lo = b.min[c], hi = b.max[c];
        if (lo !== lo) { pen = false; continue; }
        const x = plot.x + (c + 0.5) * step;
        if (!pen) ctx.moveTo(x, y(lo)); else ctx.lineTo(x, y(lo));
        if (hi !== lo) ctx.lineTo(x, y(hi));
        pen = true;
      }
      ctx.stroke();
    });
    ctx.restore();
    if (validLength !== undefined && validLength < this.t1) {
      // past the sequence's length: padding, not states
      const x0 = Math.max(plot.x, this.x(Math.max(validLength, this.t0)));
      ctx.fillStyle = theme.dark ? "rgba(32,33,36,0.75)" : "rgba(255,255,255,0.75)";
      ctx.fillRect(x0, plot.y, plot.x + plot.w - x0, plot.h);
    }
    if (this.showLegend) {
      ctx.font = "11px sans-serif";
      ctx.textAlign = "left";
      ctx.textBaseline = "top";
      let x = plot.x;
      for (const track of tracks) {
        const w = ctx.measureText(track.label).width;
        if (x + w + 20 > plot.x + plot.w) break;
        ctx.fillStyle = track.color;
        ctx.fillRect(x, 7, 12, 3);
        ctx.fillStyle = theme.fg;
        ctx.fillText(track.label, x + 16, 2);
        x += w + 30;
      }
    }
    this.drawTimeAxis(ctx, theme);
  }
}

/** The change track: the norm of the state change per timestep, anomalies marked. */
export class ChangeTrack extends TimePlot {
  anomalies: number[] = [];

  constructor() {
    super("tls-changes", 10, 18);
  }

  draw(norm: Float32Array | null, anomalies: number[], theme: Theme, message = ""): void {
    this.anomalies = anomalies;
    const ctx = this.base.clear();
    const { plot } = this;
    if (!norm) {
      ctx.fillStyle = theme.muted;
      ctx.font = "12px sans-serif";
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText(message, plot.x + plot.w / 2, plot.y + plot.h / 2);
      return;
    }
    const columns = Math.max(1, Math.floor(plot.w * this.base.dpr));
    const b = minMaxBuckets((t) => norm[t], this.t0, Math.min(this.t1, norm.length), columns);
    const hi = Math.max(1e-12, ...Array.from(b.max).filter(Number.isFinite));
    const y = linear([0, hi], [plot.y + plot.h, plot.y]);
    const span = Math.min(this.t1, norm.length) - this.t0;
    const w = (plot.w * (span / (this.t1 - this.t0))) / Math.max(1, b.count);
    ctx.fillStyle = theme.dark ? "#8ab4f8" : "#4e79a7";
    for (let c = 0; c < b.count; c++) {
      const v = b.max[c];
      if (!(v > 0)) continue;
      ctx.fillRect(plot.x + c * w, y(v), Math.max(1, w - (w > 3 ? 1 : 0)), plot.y + plot.h - y(v));
    }
    ctx.fillStyle = theme.muted;
    ctx.font = "10px sans-serif";
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    ctx.fillText(formatValue(hi), plot.x - 6, plot.y + 2);
    ctx.fillText("0", plot.x - 6, plot.y + plot.h - 2);
    ctx.fillStyle = theme.anomaly;
    for (const t of anomalies) {
      if (t < this.t0 || t >= this.t1) continue;
      const x = this.x(t + 0.5);
      ctx.beginPath();
      ctx.moveTo(x - 5, plot.y - 9);
      ctx.lineTo(x + 5, plot.y - 9);
      ctx.lineTo(x, plot.y - 1);
      ctx.fill();
      ctx.fillRect(x - 0.5, plot.y, 1, plot.h);
    }
    this.drawTimeAxis(ctx, theme);
  }

  /** The anomaly within 6 px of a client x, else null. */
  anomalyNear(clientX: number): number | null {
    const rect = this.base.canvas.getBoundingClientRect();
    let best: number | null = null, bestD = 7;
    for (const t of this.anomalies) {
      const d = Math.abs(this.x(t + 0.5) - (clientX - rect.left));
      if (d < bestD) { best = t; bestD = d; }
    }
    return best;
  }
}
