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
  /** the axis the track is drawn on: tracks with one axis name share a y scale; the
   * first axis is labelled on the left, the second on the right, any more are scaled
   * on their own */
  axis?: string;
  /** drawn as shaded spans where it is 1 (a 0/1 label), not as a line */
  spans?: [number, number][];
  dashed?: boolean;
  /** min and max per bucket of [t0, t1) when the track is not held per timestep (a binned window) */
  buckets?: (t0: number, t1: number, n: number) => { min: Float32Array; max: Float32Array; count: number };
}

export class LinePlot extends TimePlot {
  tracks: Track[] = [];
  yDomain: [number, number] = [0, 1];
  /** a y range the user zoomed to (wheel over the y axis), else null: fit to the data */
  yZoom: [number, number] | null = null;
  /** tracks hidden from the plot by a legend click (by label) */
  hidden = new Set<string>();
  private legendHits: { x0: number; x1: number; label: string }[] = [];

  constructor(cls: string, public showLegend = true, public yTitle = "") {
    super(cls, showLegend ? 20 : 6, 18);
  }

  /** The legend entry under a client position, or null. */
  legendAt(clientX: number, clientY: number): string | null {
    const rect = this.base.canvas.getBoundingClientRect();
    const x = clientX - rect.left, y = clientY - rect.top;
    if (!this.showLegend || y > this.top) return null;
    return this.legendHits.find((h) => x >= h.x0 && x <= h.x1)?.label ?? null;
  }

  /** Whether a client position is over the y axis (the left gutter). */
  overYAxis(clientX: number): boolean {
    const rect = this.base.canvas.getBoundingClientRect();
    return clientX - rect.left < this.plot.x;
  }

  /** Zooms the y range by `factor` about the value at client y. */
  zoomY(clientY: number, factor: number): void {
    const rect = this.base.canvas.getBoundingClientRect();
    const [lo, hi] = this.yZoom ?? this.yDomain;
    const { plot } = this;
    const f = 1 - (clientY - rect.top - plot.y) / plot.h;
    const v = lo + f * (hi - lo);
    this.yZoom = [v - (v - lo) * factor, v + (hi - v) * factor];
  }

  draw(tracks: Track[], theme: Theme, message = "", fixed?: [number, number], validLength?: number): void {
    this.tracks = tracks;
    const ctx = this.base.clear();
    const { plot } = this;
    ctx.strokeStyle = theme.grid;
    ctx.strokeRect(plot.x + 0.5, plot.y + 0.5, plot.w - 1, plot.h - 1);
    const visible = tracks.filter((t) => !this.hidden.has(t.label));
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
    const lines = visible.filter((t) => !t.spans);
    const buckets = new Map(lines.map((tr) => [tr, tr.buckets ? tr.buckets(this.t0, this.t1, columns) : minMaxBuckets(tr.get, this.t0, this.t1, columns)]));
    // one y domain per axis, fitted to what is shown (or the user's y zoom on the first)
    const axes: string[] = [];
    for (const t of lines) if (!axes.includes(t.axis ?? "")) axes.push(t.axis ?? "");
    const domains = new Map<string, [number, number]>();
    for (const axis of axes) {
      const own = lines.filter((t) => (t.axis ?? "") === axis).flatMap((t) => [...buckets.get(t)!.min, ...buckets.get(t)!.max]);
      domains.set(axis, pad(extent(own)));
    }
    if (fixed && axes.length) domains.set(axes[0], fixed);
    if (this.yZoom && axes.length) domains.set(axes[0], this.yZoom);
    this.yDomain = axes.length ? domains.get(axes[0])! : [0, 1];
    // shaded spans of 0/1 labels, under the lines
    for (const track of visible) {
      if (!track.spans) continue;
      ctx.fillStyle = track.color + "40";
      for (const [a, b] of track.spans) {
        if (b <= this.t0 || a >= this.t1) continue;
        const x0 = Math.max(plot.x, this.x(a)), x1 = Math.min(plot.x + plot.w, this.x(b));
        ctx.fillRect(x0, plot.y, Math.max(1.5, x1 - x0), plot.h);
      }
    }
    ctx.font = "10px sans-serif";
    ctx.textBaseline = "middle";
    axes.slice(0, 2).forEach((axis, i) => {
      const dom = domains.get(axis)!;
      const y = linear(dom, [plot.y + plot.h - 2, plot.y + 2]);
      ctx.textAlign = i === 0 ? "right" : "left";
      for (const v of ticks(dom[0], dom[1], Math.max(2, Math.floor(plot.h / 28)))) {
        if (i === 0) {
          ctx.fillStyle = theme.grid;
          ctx.fillRect(plot.x, Math.round(y(v)), plot.w, 1);
        }
        ctx.fillStyle = theme.muted;
        ctx.fillText(formatValue(v), i === 0 ? plot.x - 6 : plot.x + plot.w - 4, y(v));
      }
    });
    const title = axes.length > 0 ? (axes[0] || this.yTitle) : this.yTitle;
    if (title) {
      ctx.save();
      ctx.fillStyle = theme.muted;
      ctx.translate(9, plot.y + plot.h / 2);
      ctx.rotate(-Math.PI / 2);
      ctx.textAlign = "center";
      ctx.fillText(title.length > 24 ? title.slice(0, 23) + "…" : title, 0, 0);
      ctx.restore();
    }
    ctx.save();
    ctx.beginPath();
    ctx.rect(plot.x, plot.y, plot.w, plot.h);
    ctx.clip(); // a span beyond the domain (a spike, a y zoom) ends at the plot's edge
    for (const track of lines) {
      const b = buckets.get(track)!;
      const axis = track.axis ?? "";
      const dom = axes.indexOf(axis) < 2 ? domains.get(axis)! : pad(extent([...b.min, ...b.max]));
      const y = linear(dom, [plot.y + plot.h - 2, plot.y + 2]);
      ctx.strokeStyle = track.color;
      ctx.lineWidth = 1.5;
      ctx.setLineDash(track.dashed ? [5, 3] : []);
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
    }
    ctx.setLineDash([]);
    ctx.restore();
    if (validLength !== undefined && validLength < this.t1) {
      // past the sequence's length: padding, not states
      const x0 = Math.max(plot.x, this.x(Math.max(validLength, this.t0)));
      ctx.fillStyle = theme.dark ? "rgba(32,33,36,0.75)" : "rgba(255,255,255,0.75)";
      ctx.fillRect(x0, plot.y, plot.x + plot.w - x0, plot.h);
    }
    this.legendHits = [];
    if (this.showLegend) {
      ctx.font = "11px sans-serif";
      ctx.textAlign = "left";
      ctx.textBaseline = "top";
      let x = plot.x;
      for (const track of tracks) {
        const label = track.label + (this.legendRemoves ? " ×" : "");
        const w = ctx.measureText(label).width;
        if (x + w + 20 > plot.x + plot.w) break;
        const off = this.hidden.has(track.label);
        ctx.globalAlpha = off ? 0.35 : 1;
        ctx.fillStyle = track.color;
        if (track.spans) ctx.fillRect(x, 3, 12, 10);
        else ctx.fillRect(x, 7, 12, 3);
        ctx.fillStyle = theme.fg;
        ctx.fillText(label, x + 16, 2);
        ctx.globalAlpha = 1;
        this.legendHits.push({ x0: x, x1: x + 16 + w, label: track.label });
        x += w + 30;
      }
    }
    this.drawTimeAxis(ctx, theme);
  }

  /** whether a legend click removes the track (units) rather than hiding it (series) */
  legendRemoves = false;
}

/** A y domain with a little room above and below, so lines do not touch the frame. */
function pad([lo, hi]: [number, number]): [number, number] {
  const m = (hi - lo) * 0.04 || Math.abs(hi) * 0.04 || 1;
  return [lo - m, hi + m];
}

export { ChangeTrack } from "./changetrack";
