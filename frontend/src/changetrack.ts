// The change track: the norm of the state change per timestep, anomalies marked. In
// compare mode the other run's track is drawn over it as a line on the same y scale,
// its anomalies as open marks, with a legend naming both runs.

import { minMaxBuckets } from "./downsample";
import { formatValue, linear } from "./layout";
import { TimePlot } from "./timeplot";
import type { Theme } from "./theme";

/** The other run's track, or what to say in its place (a missing step, loading). */
export interface OtherTrack {
  label: string;
  color: string;
  norm: Float32Array | null;
  anomalies: number[];
  /** said in the legend when there is no norm */
  message: string;
}

export class ChangeTrack extends TimePlot {
  anomalies: number[] = [];

  constructor() {
    super("tls-changes", 10, 18);
  }

  draw(norm: Float32Array | null, anomalies: number[], theme: Theme, message = "", own = "", other: OtherTrack | null = null): void {
    this.anomalies = anomalies;
    const ctx = this.base.clear();
    const { plot } = this;
    const barColour = theme.dark ? "#8ab4f8" : "#4e79a7";
    if (other) this.drawLegend(ctx, own, barColour, other, theme);
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
    const ob = other?.norm ? minMaxBuckets((t) => other.norm![t], this.t0, Math.min(this.t1, other.norm.length), columns) : null;
    // one y scale for both runs: the same quantity
    const hi = Math.max(1e-12, ...Array.from(b.max).filter(Number.isFinite), ...(ob ? Array.from(ob.max).filter(Number.isFinite) : []));
    const y = linear([0, hi], [plot.y + plot.h, plot.y]);
    const span = Math.min(this.t1, norm.length) - this.t0;
    const w = (plot.w * (span / (this.t1 - this.t0))) / Math.max(1, b.count);
    ctx.fillStyle = barColour;
    ctx.globalAlpha = ob ? 0.6 : 1; // lighter under the other run's line
    for (let c = 0; c < b.count; c++) {
      const v = b.max[c];
      if (!(v > 0)) continue;
      ctx.fillRect(plot.x + c * w, y(v), Math.max(1, w - (w > 3 ? 1 : 0)), plot.y + plot.h - y(v));
    }
    ctx.globalAlpha = 1;
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
    if (other?.norm && ob) {
      const ospan = Math.min(this.t1, other.norm.length) - this.t0;
      const ow = (plot.w * (ospan / (this.t1 - this.t0))) / Math.max(1, ob.count);
      ctx.save();
      ctx.beginPath();
      ctx.rect(plot.x, plot.y, plot.w, plot.h);
      ctx.clip();
      ctx.strokeStyle = other.color;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      let pen = false;
      for (let c = 0; c < ob.count; c++) {
        const v = ob.max[c];
        if (!Number.isFinite(v)) { pen = false; continue; }
        const x = plot.x + (c + 0.5) * ow;
        if (!pen) ctx.moveTo(x, y(v)); else ctx.lineTo(x, y(v));
        pen = true;
      }
      ctx.stroke();
      ctx.restore();
      ctx.strokeStyle = other.color;
      ctx.lineWidth = 1.5;
      for (const t of other.anomalies) {
        if (t < this.t0 || t >= this.t1) continue;
        const x = this.x(t + 0.5);
        ctx.beginPath();
        ctx.moveTo(x - 4, plot.y - 8);
        ctx.lineTo(x + 4, plot.y - 8);
        ctx.lineTo(x, plot.y - 1);
        ctx.closePath();
        ctx.stroke();
      }
    }
    this.drawTimeAxis(ctx, theme);
  }

  /** Names both runs above the track (the other's message when it has no track). */
  private drawLegend(ctx: CanvasRenderingContext2D, own: string, colour: string, other: OtherTrack, theme: Theme): void {
    ctx.font = "11px sans-serif";
    ctx.textAlign = "left";
    ctx.textBaseline = "top";
    let x = this.plot.x;
    ctx.fillStyle = colour;
    ctx.fillRect(x, 3, 10, 9);
    ctx.fillStyle = theme.fg;
    ctx.fillText(own, x + 14, 2);
    x += 14 + ctx.measureText(own).width + 18;
    ctx.fillStyle = other.color;
    ctx.fillRect(x, 7, 12, 2);
    ctx.fillStyle = other.norm ? theme.fg : theme.muted;
    ctx.fillText(other.norm ? other.label : `${other.label}: ${other.message}`, x + 16, 2);
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
