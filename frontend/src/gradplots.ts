// The drawing widgets of the gradient-through-time view: the logarithmic colour bar
// (labelled in powers of ten), the per-timestep norm on a logarithmic y axis, the strip
// of memory horizons beside the heatmap rows and their histogram on log-spaced bins.

import { cssColor } from "./colors";
import { HiDpiCanvas } from "./dom";
import { decadeTicks, LogDomain, LogHistogram, logFraction, magnitudeColor, powerOfTen } from "./gradmath";
import { formatValue, linear } from "./layout";
import { TimePlot } from "./timeplot";
import type { Theme } from "./theme";

/** A colour bar of the magnitude scale over whole decades, a tick and a power of ten at
 * each (or every few) decade. */
export class LogColorBar {
  readonly view = new HiDpiCanvas("tls-gradbar");
  /** what the bar says, for tests and screen readers */
  text = "";

  draw(domain: LogDomain | null, theme: Theme, label: string): void {
    const width = 330, height = 28;
    this.view.resize(width, height);
    const ctx = this.view.clear();
    const labelW = 58, barX = labelW + 8, barW = width - barX - 14;
    this.view.canvas.dataset.bar = `${barX},${barW},6`; // for tests: left edge, width, middle row
    ctx.font = "10px sans-serif";
    ctx.fillStyle = theme.muted;
    ctx.textAlign = "left";
    ctx.textBaseline = "middle";
    ctx.fillText(label, 0, 6);
    if (!domain) {
      ctx.fillText("no gradient (all zero)", barX, 6);
      this.text = `${label}: no gradient (all zero)`;
      this.view.canvas.setAttribute("aria-label", this.text);
      return;
    }
    for (let i = 0; i < barW; i++) {
      ctx.fillStyle = cssColor(magnitudeColor(i / (barW - 1)));
      ctx.fillRect(barX + i, 1, 1, 10);
    }
    ctx.strokeStyle = theme.muted;
    ctx.strokeRect(barX - 0.5, 0.5, barW + 1, 11);
    ctx.textBaseline = "top";
    ctx.textAlign = "center";
    const ticks = decadeTicks(domain, Math.max(2, Math.floor(barW / 34)));
    for (const k of ticks) {
      const x = barX + logFraction(10 ** k, domain) * (barW - 1);
      ctx.fillStyle = theme.muted;
      ctx.fillRect(Math.round(x), 11, 1, 3);
      ctx.fillText((k === domain.lo ? "≤" : "") + powerOfTen(k), x, 15);
    }
    this.text = `${label} on a log scale: ${powerOfTen(domain.lo)} (and less, zero included) to ${powerOfTen(domain.hi)}, ` +
      `a factor of 10 every ${(100 / (domain.hi - domain.lo)).toPrecision(3)}% of the bar`;
    this.view.canvas.setAttribute("aria-label", this.text);
    this.view.canvas.title = this.text;
  }
}

/** The norm per timestep (per bin of a long sequence) over the time axis, on a log y
 * axis; the 1% floor of the reach dashed, the timesteps reached shaded. */
export interface NormFrame {
  /** norms of bins (timesteps at full resolution), NaN past the length */
  norms: ArrayLike<number>;
  /** the first timestep of bin i (i = count: the stop) */
  binStart: (i: number) => number;
  count: number;
  domain: LogDomain;
  /** the timesteps reached, [from, to), or null */
  reached: [number, number] | null;
  /** the floor a reached norm stays at or above (1% of the largest), or null */
  floor: number | null;
  length?: number;
  color: string;
  /** the norms are per-bin upper bounds (a binned long sequence) */
  upperBound: boolean;
}

export class NormPlot extends TimePlot {
  /** the y ticks drawn: exponent and pixel row (CSS), for tests */
  ticksDrawn: { exponent: number; y: number }[] = [];
  frame: NormFrame | null = null;
  /** some norm lies under the bottom decade (its line leaves the plot) */
  clipped = false;

  constructor() {
    super("tls-gradnorm", 8, 18);
  }

  /** The pixel row of a norm; below the plot for one under its bottom decade (Infinity
   * for zero: never drawn). */
  y(v: number): number {
    const { plot } = this;
    const d = this.frame?.domain ?? { lo: 0, hi: 1 };
    if (!(v > 0)) return Infinity;
    return plot.y + plot.h - 2 - ((Math.log10(v) - d.lo) / (d.hi - d.lo)) * (plot.h - 4);
  }

  /** Draws a norm line, one point per bin (its middle); a norm of zero breaks it, one
   * under the bottom decade leaves the plot (clipped). */
  private line(norms: ArrayLike<number>, binStartOf: (i: number) => number, count: number): boolean {
    const ctx = this.base.ctx;
    let pen = false, below = false;
    ctx.beginPath();
    for (let i = 0; i < count; i++) {
      const v = norms[i], a = binStartOf(i), b = binStartOf(i + 1);
      const y = this.y(v);
      if (!(v === v) || y === Infinity || b <= this.t0 || a >= this.t1) { pen = false; continue; }
      if (y > this.plot.y + this.plot.h) below = true;
      const x = (this.x(a) + this.x(b)) / 2;
      if (!pen) ctx.moveTo(x, y); else ctx.lineTo(x, y);
      pen = true;
    }
    ctx.stroke();
    return below;
  }

  draw(frame: NormFrame | null, theme: Theme, message = ""): void {
    this.frame = frame;
    const ctx = this.base.clear();
    const { plot } = this;
    ctx.strokeStyle = theme.grid;
    ctx.strokeRect(plot.x + 0.5, plot.y + 0.5, plot.w - 1, plot.h - 1);
    this.ticksDrawn = [];
    this.clipped = false;
    if (!frame) {
      ctx.fillStyle = theme.muted;
      ctx.font = "12px sans-serif";
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText(message, plot.x + plot.w / 2, plot.y + plot.h / 2);
      this.drawTimeAxis(ctx, theme);
      return;
    }
    const { domain } = frame;
    if (frame.reached) {
      const [a, b] = frame.reached;
      const x0 = Math.max(plot.x, this.x(Math.max(a, this.t0))), x1 = Math.min(plot.x + plot.w, this.x(Math.min(b, this.t1)));
      if (x1 > x0) {
        ctx.fillStyle = theme.dark ? "rgba(253,214,99,0.13)" : "rgba(26,115,232,0.09)";
        ctx.fillRect(x0, plot.y, x1 - x0, plot.h);
      }
    }
    // decade grid lines, labelled in powers of ten
    ctx.font = "10px sans-serif";
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const k of decadeTicks(domain, Math.max(2, Math.floor(plot.h / 16)))) {
      const y = Math.round(this.y(10 ** k));
      ctx.fillStyle = theme.grid;
      ctx.fillRect(plot.x, y, plot.w, 1);
      ctx.fillStyle = theme.muted;
      ctx.fillText(powerOfTen(k), plot.x - 5, y);
      this.ticksDrawn.push({ exponent: k, y });
    }
    this.base.canvas.dataset.ticks = JSON.stringify(this.ticksDrawn.map((t) => [t.exponent, t.y])); // for tests
    this.base.canvas.dataset.plot = [plot.x, plot.y, plot.w, plot.h].join();
    ctx.save();
    ctx.translate(9, plot.y + plot.h / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center";
    ctx.fillStyle = theme.muted;
    ctx.fillText("norm (log)", 0, 0);
    ctx.restore();
    ctx.save();
    ctx.beginPath();
    ctx.rect(plot.x, plot.y, plot.w, plot.h);
    ctx.clip();
    if (frame.floor !== null && frame.floor > 0) {
      const y = Math.round(this.y(frame.floor)) + 0.5;
      ctx.strokeStyle = theme.anomaly;
      ctx.setLineDash([4, 3]);
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(plot.x, y);
      ctx.lineTo(plot.x + plot.w, y);
      ctx.stroke();
      ctx.setLineDash([]);
    }
    ctx.strokeStyle = frame.color;
    ctx.lineWidth = 1.5;
    const below = this.line(frame.norms, frame.binStart, frame.count);
    ctx.restore();
    if (frame.length !== undefined && frame.length < this.t1) {
      const x0 = Math.max(plot.x, this.x(Math.max(frame.length, this.t0)));
      ctx.fillStyle = theme.dark ? "rgba(32,33,36,0.75)" : "rgba(255,255,255,0.75)";
      ctx.fillRect(x0, plot.y, plot.x + plot.w - x0, plot.h);
    }
    if (frame.floor !== null && frame.floor > 0) {
      ctx.fillStyle = theme.anomaly;
      ctx.textAlign = "left";
      ctx.textBaseline = "bottom";
      ctx.font = "10px sans-serif";
      ctx.fillText("1% of the largest", plot.x + 4, Math.max(plot.y + 10, this.y(frame.floor) - 1));
    }
    this.clipped = below;
    this.drawTimeAxis(ctx, theme);
  }

  /** Another norm line over the same axes, dashed (the compared run's), after `draw`;
   * a key in the plot's top right names both. */
  drawExtra(norms: ArrayLike<number>, binStartOf: (i: number) => number, count: number, color: string, labels: [string, string], theme: Theme): void {
    if (!this.frame) return;
    const ctx = this.base.ctx;
    const { plot } = this;
    ctx.save();
    ctx.beginPath();
    ctx.rect(plot.x, plot.y, plot.w, plot.h);
    ctx.clip();
    ctx.strokeStyle = color;
    ctx.lineWidth = 1.5;
    ctx.setLineDash([5, 3]);
    if (this.line(norms, binStartOf, count)) this.clipped = true;
    ctx.setLineDash([]);
    ctx.font = "11px sans-serif";
    ctx.textBaseline = "middle";
    ctx.textAlign = "left";
    const cut = (t: string) => (t.length > 40 ? t.slice(0, 39) + "…" : t);
    const texts = labels.map(cut);
    const w = Math.max(...texts.map((t) => ctx.measureText(t).width)) + 34;
    // bottom right: the end of a sequence is where the norm is largest, at the top
    const x = plot.x + plot.w - w - 6, top = plot.y + plot.h - 38;
    ctx.fillStyle = theme.bg;
    ctx.globalAlpha = 0.85;
    ctx.fillRect(x, top, w, 32);
    ctx.globalAlpha = 1;
    texts.forEach((t, i) => {
      const y = top + 8 + i * 15;
      ctx.strokeStyle = i ? color : this.frame!.color;
      ctx.setLineDash(i ? [5, 3] : []);
      ctx.beginPath();
      ctx.moveTo(x + 5, y);
      ctx.lineTo(x + 27, y);
      ctx.stroke();
      ctx.fillStyle = theme.fg;
      ctx.fillText(t, x + 31, y);
    });
    ctx.restore();
  }

  /** The norm at timestep t as text, or "" outside the data. */
  describe(t: number): string {
    const f = this.frame;
    if (!f) return "";
    for (let i = 0; i < f.count; i++) {
      if (t >= f.binStart(i) && t < f.binStart(i + 1)) {
        const v = f.norms[i];
        if (!(v === v)) return "padding";
        const a = f.binStart(i), b = f.binStart(i + 1);
        return (f.upperBound ? `≤ ${formatValue(v)} (timesteps ${a}–${b - 1})` : formatValue(v));
      }
    }
    return "";
  }
}

/** Pixel x of a positive value on a log axis of decades [lo, hi] over [x0, x1]. */
function logX(v: number, lo: number, hi: number, x0: number, x1: number): number {
  return linear([lo, hi], [x0, x1])(Math.log10(v));
}

/** The memory horizon of each heatmap row, beside it: a bar on a log axis of timesteps
 * from 1 to the decade above the longest (the sequence length marked), and the number
 * when the rows are tall enough. */
export class HorizonStrip {
  readonly view = new HiDpiCanvas("tls-horizons");
  static readonly WIDTH = 92;

  /** `top`, `height`: the heatmap's plot rows (CSS pixels) inside a canvas `total` high. */
  draw(order: number[], horizons: ArrayLike<number> | null, time: number, top: number, height: number, total: number, theme: Theme, note: string): void {
    const W = HorizonStrip.WIDTH;
    this.view.resize(W, total);
    const ctx = this.view.clear();
    ctx.font = "10px sans-serif";
    ctx.fillStyle = theme.muted;
    if (!horizons) {
      ctx.save();
      ctx.translate(W / 2, top + height / 2);
      ctx.rotate(-Math.PI / 2);
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText(note, 0, 0);
      ctx.restore();
      return;
    }
    let max = Math.max(1, time);
    for (let i = 0; i < horizons.length; i++) if (horizons[i] > max && Number.isFinite(horizons[i])) max = horizons[i];
    const hi = Math.max(1, Math.ceil(Math.log10(max) - 1e-9));
    const x0 = 4, x1 = W - 34;
    const n = order.length, rowH = height / Math.max(1, n);
    const color = theme.dark ? "#8ab4f8" : "#4e79a7";
    // the sequence length: a unit whose bar passes it keeps 1/e of its cell over the whole sequence
    const xt = logX(Math.max(1, time), 0, hi, x0, x1);
    ctx.fillStyle = theme.grid;
    ctx.fillRect(x0, top, x1 - x0, height);
    ctx.fillStyle = theme.bg;
    for (let k = 1; k < hi; k++) ctx.fillRect(Math.round(logX(10 ** k, 0, hi, x0, x1)), top, 1, height);
    const every = Math.max(1, Math.ceil(11 / Math.max(rowH, 0.001)));
    ctx.textAlign = "left";
    ctx.textBaseline = "middle";
    for (let r = 0; r < n; r++) {
      const v = horizons[order[r]];
      const y = top + r * rowH;
      if (Number.isFinite(v) && v > 0) {
        ctx.fillStyle = color;
        const w = Math.max(1, logX(Math.max(1, v), 0, hi, x0, x1) - x0);
        ctx.fillRect(x0, y + Math.min(1, rowH * 0.15), w, Math.max(1, rowH - Math.min(2, rowH * 0.3)));
      }
      if (r % every === 0 && rowH * every >= 10) {
        ctx.fillStyle = theme.fg;
        ctx.fillText(Number.isFinite(v) ? (v >= 100 ? String(Math.round(v)) : v.toPrecision(2)) : "–", x1 + 3, y + rowH / 2);
      }
    }
    ctx.fillStyle = theme.anomaly;
    ctx.fillRect(Math.round(xt), top - 2, 1, height + 4);
    // the axis: decades and the length
    ctx.fillStyle = theme.muted;
    ctx.textBaseline = "top";
    ctx.textAlign = "center";
    ctx.fillText("1", x0 + 2, top + height + 4);
    ctx.fillText(powerOfTen(hi), x1 - 4, top + height + 4);
    ctx.fillStyle = theme.anomaly;
    if (xt > x0 + 14 && xt < x1 - 14) ctx.fillText("T", xt, top + height + 4);
  }
}

/** The histogram of memory horizons on log-spaced bins; the sequence length and the
 * gradient reach marked. */
export class HorizonHistogram {
  readonly view = new HiDpiCanvas("tls-horizonhist");
  /** what it shows, for tests and screen readers */
  text = "";

  /** `past`: how many units have a horizon at or past the sequence length `time`. */
  draw(h: LogHistogram | null, time: number, reach: number | null, past: number, theme: Theme, width: number, message = ""): void {
    const W = Math.max(200, width), H = 130;
    this.view.resize(W, H);
    const ctx = this.view.clear();
    const left = 34, right = W - 10, top = 14, bottom = H - 30;
    ctx.font = "10px sans-serif";
    ctx.fillStyle = theme.muted;
    if (!h || !h.counts.some((c) => c > 0)) {
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText(message || "no memory horizons", W / 2, H / 2);
      this.text = message || "no memory horizons";
      this.view.canvas.setAttribute("aria-label", this.text);
      return;
    }
    // the axis spans the bins and the sequence length
    const lo = Math.min(h.lo, 0), hi = Math.max(h.hi, Math.ceil(Math.log10(Math.max(1, time)) - 1e-9), lo + 1);
    const x = (v: number) => logX(v, lo, hi, left, right);
    const maxCount = Math.max(...h.counts);
    const y = linear([0, maxCount], [bottom, top]);
    ctx.strokeStyle = theme.grid;
    ctx.strokeRect(left + 0.5, top + 0.5, right - left - 1, bottom - top);
    ctx.fillStyle = theme.dark ? "#8ab4f8" : "#4e79a7";
    h.counts.forEach((c, i) => {
      if (!c) return;
      const a = x(h.edges[i]), b = x(h.edges[i + 1]);
      ctx.fillRect(a + 0.5, y(c), Math.max(1, b - a - 1), bottom - y(c));
    });
    ctx.fillStyle = theme.muted;
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (let k = lo; k <= hi; k++) {
      ctx.fillRect(Math.round(x(10 ** k)), bottom, 1, 3);
      ctx.fillText(powerOfTen(k), x(10 ** k), bottom + 4);
    }
    ctx.fillText("memory horizon τ (timesteps, log)", (left + right) / 2, bottom + 16);
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    ctx.fillText(String(maxCount), left - 4, top + 2);
    ctx.fillText("0", left - 4, bottom);
    ctx.save();
    ctx.translate(9, (top + bottom) / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center";
    ctx.fillText("units", 0, 0);
    ctx.restore();
    const mark = (v: number, label: string, color: string, dash: number[]) => {
      if (!(v >= 1)) return;
      const xv = Math.round(x(v)) + 0.5;
      ctx.strokeStyle = color;
      ctx.setLineDash(dash);
      ctx.beginPath();
      ctx.moveTo(xv, top);
      ctx.lineTo(xv, bottom);
      ctx.stroke();
      ctx.setLineDash([]);
      const flip = xv > right - 70;
      const ty = top + (dash.length ? 13 : 1), tw = ctx.measureText(label).width;
      ctx.fillStyle = theme.panel;
      ctx.fillRect(flip ? xv - 4 - tw : xv + 2, ty - 1, tw + 2, 12);
      ctx.fillStyle = color;
      ctx.textAlign = flip ? "right" : "left";
      ctx.textBaseline = "top";
      ctx.fillText(label, xv + (flip ? -3 : 3), ty);
    };
    mark(time, `length ${time}`, theme.anomaly, []);
    if (reach !== null) mark(reach, `reach ${reach}`, theme.fg, [3, 2]);
    const total = h.counts.reduce((a, b) => a + b, 0);
    this.text = `memory horizons of ${total} units from ${formatValue(h.edges[0])} to ${formatValue(h.edges[h.edges.length - 1])} timesteps` +
      (h.missing ? `, ${h.missing} without one` : "") + (past ? `, ${past} at or past the length` : "");
    this.view.canvas.setAttribute("aria-label", this.text);
  }
}
