// The pointer over the plots: hover (a linked cursor and a tooltip), drag to zoom into a
// time range, click to pin the cursor or plot a unit, double-click to zoom out.

import type * as api from "./api";
import { el } from "./dom";
import type { Heatmap } from "./heatmap";
import { formatValue } from "./layout";
import type { ChangeTrack, LinePlot } from "./lines";
import type { ProjectionView } from "./projection";
import type { Scene } from "./scene";
import type { Store } from "./store";
import * as win from "./window";

export interface Hover {
  t: number;
  unit: number | null;
  row: number | null;
  panel: Heatmap | null;
}

export interface Drag {
  start: number;
  end: number;
  x: number;
  moved: boolean;
}

/** What the pointer asks of the app. */
export interface PointerHost {
  setCursor(t: number | null): void;
  setZoom(t0: number | null, t1: number | null): void;
  /** a click on a heatmap row of `panel` */
  pickUnit(unit: number, panel: Heatmap): void;
  drawOverlays(): void;
  series(): api.Series | undefined;
  changes(): api.Changes | undefined;
  /** the compare panel's heatmap and the difference's */
  comparePanels(): { compare: Heatmap; difference: Heatmap };
  /** a click on a line plot's legend entry */
  legendClick(plot: LinePlot, label: string): void;
  /** timesteps of the sequence on screen */
  time(): number;
  redraw(): void;
}

export class Pointer {
  hover: Hover | null = null;
  drag: Drag | null = null;
  readonly tooltip = el("div", { class: "tls-tooltip", role: "tooltip" });

  constructor(private store: Store, private scene: Scene, private host: PointerHost) {}

  wireHeatmap(h: Heatmap): void {
    const c = h.base.canvas;
    c.addEventListener("mousemove", (e) => {
      if (this.drag) return this.onDragMove(e, h);
      const hit = h.hit(e.clientX, e.clientY);
      this.setHover(hit ? { t: hit.t, unit: hit.unit, row: hit.row, panel: h } : null, e);
    });
    c.addEventListener("mouseleave", () => { if (!this.drag) this.setHover(null); });
    c.addEventListener("wheel", (e) => this.wheel(h, e, null), { passive: false });
    c.addEventListener("mousedown", (e) => e.shiftKey ? this.pan(e, h) : this.onDragStart(e, h, (ev) => {
      const hit = h.hit(ev.clientX, ev.clientY);
      if (hit) this.host.pickUnit(hit.unit, h);
    }));
    c.addEventListener("dblclick", () => this.host.setZoom(null, null));
  }

  /** Wheel: zoom the time axis about the pointer (over a line plot's y axis: its y range). */
  private wheel(p: { timestepAtClient(x: number): number | null; clampedTimestep(x: number): number }, e: WheelEvent, line: LinePlot | null): void {
    e.preventDefault();
    const factor = e.deltaY > 0 ? 1.25 : 0.8;
    if (line && line.overYAxis(e.clientX)) {
      line.zoomY(e.clientY, factor);
      this.host.redraw();
      return;
    }
    const [t0, t1] = this.scene.range();
    const time = this.host.time();
    const at = p.clampedTimestep(e.clientX);
    const span = Math.min(time, Math.max(2, Math.round((t1 - t0) * factor)));
    if (span >= time) return this.host.setZoom(null, null);
    let a = Math.round(at - (at - t0) * (span / (t1 - t0)));
    a = Math.min(Math.max(0, a), time - span);
    this.host.setZoom(a, a + span);
  }

  /** Shift+drag: pan the zoomed time range. */
  private pan(e: MouseEvent, p: { plot: { w: number } }): void {
    const [t0, t1] = this.scene.range();
    const time = this.host.time();
    if (t1 - t0 >= time) return;
    const x0 = e.clientX;
    e.preventDefault();
    const move = (ev: MouseEvent) => {
      const dt = Math.round(((x0 - ev.clientX) / p.plot.w) * (t1 - t0));
      const a = Math.min(Math.max(0, t0 + dt), time - (t1 - t0));
      this.host.setZoom(a, a + (t1 - t0));
    };
    const up = () => {
      window.removeEventListener("mousemove", move);
      window.removeEventListener("mouseup", up);
    };
    window.addEventListener("mousemove", move);
    window.addEventListener("mouseup", up);
  }

  wireTimePlot(p: LinePlot | ChangeTrack, zoom: boolean): void {
    const c = p.base.canvas;
    const line = "legendAt" in p ? (p as LinePlot) : null;
    c.addEventListener("wheel", (e) => this.wheel(p, e, line), { passive: false });
    c.addEventListener("mousemove", (e) => {
      if (this.drag) return this.onDragMove(e, p);
      const t = p.timestepAtClient(e.clientX);
      this.setHover(t === null ? null : { t, unit: null, row: null, panel: null }, e);
    });
    c.addEventListener("mouseleave", () => { if (!this.drag) this.setHover(null); });
    c.addEventListener("mousedown", (e) => {
      const label = line?.legendAt(e.clientX, e.clientY) ?? null;
      if (line && label !== null) {
        e.preventDefault();
        this.host.legendClick(line, label);
        return;
      }
      if (e.shiftKey) return this.pan(e, p);
      if (zoom) this.onDragStart(e, p, null);
    });
    c.addEventListener("dblclick", () => {
      if (line) line.yZoom = null;
      this.host.setZoom(null, null);
    });
  }

  wireProjection(view: ProjectionView): void {
    const proj = view.base.canvas;
    proj.addEventListener("mousemove", (e) => {
      const [t0, t1] = this.scene.range();
      const t = view.nearest(e.clientX, e.clientY, t0, t1);
      this.setHover(t === null ? null : { t, unit: null, row: null, panel: null }, e);
    });
    proj.addEventListener("mouseleave", () => this.setHover(null));
    proj.addEventListener("click", (e) => {
      const [t0, t1] = this.scene.range();
      const t = view.nearest(e.clientX, e.clientY, t0, t1);
      if (t !== null) this.host.setCursor(t);
    });
  }

  private onDragStart(e: MouseEvent, p: { timestepAtClient(x: number): number | null }, onClick: ((ev: MouseEvent) => void) | null): void {
    if (e.button !== 0) return;
    const t = p.timestepAtClient(e.clientX);
    if (t === null) return;
    e.preventDefault();
    this.drag = { start: t, end: t, x: e.clientX, moved: false };
    const up = (ev: MouseEvent) => {
      window.removeEventListener("mouseup", up);
      const drag = this.drag;
      this.drag = null;
      if (!drag) return;
      if (drag.moved && drag.start !== drag.end) {
        this.host.setZoom(Math.min(drag.start, drag.end), Math.max(drag.start, drag.end) + 1);
      } else {
        onClick?.(ev);
        this.host.setCursor(t);
      }
      this.host.drawOverlays();
    };
    window.addEventListener("mouseup", up);
  }

  private onDragMove(e: MouseEvent, p: { clampedTimestep(x: number): number }): void {
    if (!this.drag) return;
    this.drag.end = p.clampedTimestep(e.clientX);
    if (Math.abs(e.clientX - this.drag.x) > 4) this.drag.moved = true;
    this.tooltip.style.display = "none";
    this.host.drawOverlays();
  }

  setHover(hover: Hover | null, e?: MouseEvent): void {
    this.hover = hover;
    this.host.drawOverlays();
    this.updateTooltip(e);
  }

  /** The zoom selection being dragged, if any. */
  selection(): [number, number] | null {
    return this.drag && this.drag.moved ? [this.drag.start, this.drag.end] : null;
  }

  private updateTooltip(e?: MouseEvent): void {
    const hover = this.hover;
    const tooltip = this.tooltip;
    if (!hover || !e || this.drag) {
      tooltip.style.display = "none";
      return;
    }
    const lines: string[] = [];
    const series = this.host.series();
    const shown = this.scene.shown?.view, other = this.scene.shownCompare?.view;
    const panels = this.host.comparePanels();
    const t = hover.t;
    if (hover.unit !== null) {
      lines.push(`unit ${hover.unit} · timestep ${t}`);
      const match = this.scene.alignment?.match;
      if (hover.panel === panels.compare) {
        const cq = this.store.compareQuery(this.store.currentStep()!);
        const u = match ? match.units[hover.unit] : hover.unit;
        if (match) lines[0] = u < 0 ? `${this.store.state.run}'s unit ${hover.unit} has no partner` : `unit ${u} · timestep ${t}`;
        lines.push(`${cq?.run ?? ""} step ${cq?.step ?? ""}`);
        if (match && u >= 0) {
          const flipped = match.sign[hover.unit] < 0;
          lines.push(`paired with ${this.store.state.run}'s unit ${hover.unit} · |r| ${formatValue(match.similarity[hover.unit])}${flipped ? " · opposite sign: drawn flipped" : ""}`);
        }
        if (u >= 0) lines.push("value " + win.describeAt(other, t, u));
      } else if (hover.panel === panels.difference) {
        const a = win.valueAt(shown, t, hover.unit), b = win.valueAt(this.scene.alignment?.view ?? other, t, hover.unit);
        lines.push(`difference ${formatValue(a - b)}  (${formatValue(a)} − ${formatValue(b)})`);
        if (match) {
          const u = match.units[hover.unit];
          lines.push(u < 0 ? "no partner in the compared run" : `right: its partner, unit ${u}${match.sign[hover.unit] < 0 ? ", flipped" : ""}`);
        }
      } else {
        lines.push("value " + win.describeAt(shown, t, hover.unit));
      }
    } else {
      lines.push(`timestep ${t}`);
      for (const u of this.store.state.units) lines.push(`unit ${u}: ${win.describeAt(shown, t, u)}`);
      const ch = this.host.changes();
      if (ch && t < ch.norm.length) lines.push(`change ${formatValue(ch.norm[t])}` + (ch.anomalies.includes(t) ? " · anomaly" : ""));
    }
    const token = series?.tokens?.[t];
    if (token !== undefined) lines.push(`token “${token.length > 40 ? token.slice(0, 40) + "…" : token}”`);
    for (const [name, values] of Object.entries(series?.series ?? {})) {
      if (t < values.length) lines.push(`${name} ${formatValue(values[t])}`);
    }
    tooltip.textContent = lines.join("\n");
    tooltip.style.display = "block";
    const w = tooltip.offsetWidth, h = tooltip.offsetHeight;
    const x = e.clientX + 14 + w > window.innerWidth ? e.clientX - w - 10 : e.clientX + 14;
    const y = e.clientY + 14 + h > window.innerHeight ? e.clientY - h - 10 : e.clientY + 14;
    tooltip.style.left = Math.max(0, x) + "px";
    tooltip.style.top = Math.max(0, y) + "px";
  }
}
