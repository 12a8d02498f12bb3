// The unit table: the backend's per-unit scores of the step that orders the rows, with
// each unit's significance against a series (r and lag at the best lag, q after the
// Benjamini-Hochberg adjustment), sortable by any column; a click on a row plots that unit.

import type * as api from "../api";
import type { DataLoader } from "../data";
import { el, setOptions, setText } from "../dom";
import { isLabelSeries } from "../seriesaxes";
import type { Store } from "../store";

interface Column {
  key: string;
  label: string;
  title: string;
  values: ArrayLike<number>;
  /** what the column sorts by (default: the values) */
  sortBy?: (v: number) => number;
  /** first click sorts ascending */
  ascending?: boolean;
  format?: (v: number) => string;
  /** a cell worth marking */
  mark?: (v: number) => boolean;
}

/** A short display: `digits` significant digits, a one-digit exponent below 0.001. */
export function short(v: number, digits = 2): string {
  if (!Number.isFinite(v)) return "–";
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a < 1e-3 || a >= 1e5) return v.toExponential(0).replace("e+", "e");
  return String(Number(v.toPrecision(digits)));
}

/** A q value: below float64's resolution of 1 it is said as such, not as 0. */
export function shortQ(q: number): string {
  return q < 1e-15 ? "<1e-15" : short(q);
}

/** The series the significance columns are of: the chosen one, else the order's, else
 * the first that is neither `time` nor a 0/1 label; "" when there is none. */
export function significanceSeries(chosen: string, order: string, series: api.Series | undefined): string {
  const names = series ? Object.keys(series.series).filter((n) => n !== "time") : [];
  if (chosen && names.includes(chosen)) return chosen;
  const fromOrder = order.startsWith("sig:") ? order.slice(4) : order.startsWith("corr:") ? order.slice(5) : "";
  if (fromOrder && names.includes(fromOrder)) return fromOrder;
  return names.find((n) => !isLabelSeries(series!.series[n])) ?? names[0] ?? "";
}

export class UnitTable {
  private body = el("tbody");
  private head = el("tr");
  private note = el("span", { class: "tls-sub" });
  readonly series = el("select", { "aria-label": "significance series" });
  private sigNote = el("div", { class: "tls-hint" });
  readonly root = el("div", { class: "tls-card tls-unitcard" },
    el("h3", {}, "Units", this.note),
    el("label", { class: "tls-sub tls-sigpick" }, "significance against ", this.series), this.sigNote,
    el("div", { class: "tls-tablewrap" }, el("table", { class: "tls-table tls-units", "aria-label": "unit scores" }, el("thead", {}, this.head), this.body)));
  private sortBy = "";
  private descending = true;
  /** a header was clicked: the sort no longer follows the unit order */
  private userSorted = false;
  private key = "";
  onPick: (unit: number) => void = () => undefined;
  /** the series picked for the significance columns ("" automatic) */
  onSeries: (name: string) => void = () => undefined;

  constructor() {
    this.series.addEventListener("change", () => this.onSeries(this.series.value));
  }

  draw(store: Store, data: DataLoader): void {
    const s = store.state;
    const step = data.orderStep(s.run) ?? store.currentStep();
    if (step === null) return;
    const order = data.effectiveOrder();
    const seriesData = data.lastSeries ?? data.currentSeries();
    const names = seriesData ? Object.keys(seriesData.series).filter((n) => n !== "time") : [];
    const name = significanceSeries(s.sigSeries, order, seriesData);
    const auto = significanceSeries("", order, seriesData);
    setOptions(this.series, [["", `auto (${auto || "none"})`], ...names.map((n) => [n, n] as [string, string])],
      names.includes(s.sigSeries) ? s.sigSeries : "");
    this.series.parentElement!.style.display = names.length ? "" : "none";
    const withSig = name ? data.units(s.run, step, name) : undefined;
    const error = name && !withSig ? data.unitsError(s.run, step, name) : "";
    // the plain scores while the significance loads (unless nothing else asks for them)
    const plain = !name || error || !(order.startsWith("sig:") || order === "index") ? data.units(s.run, step) : undefined;
    const units = withSig ?? plain;
    const sig = withSig?.significance ?? null;
    setText(this.sigNote, !names.length ? "no input series logged: no significance" : error ? "significance: " + error.slice(0, 200) :
      !sig ? `significance against ${name}: loading…` : `r, lag: the best lag within ±${sig.maxLag} · q: Benjamini–Hochberg over the units`);
    this.sigNote.title = sig ? "The test stays valid for autocorrelated units and series and accounts for the search over lags (see the HTTP API's units route)." : "";
    if (!units) {
      setText(this.note, "loading…");
      return;
    }
    const columns = this.columns(units, sig, name);
    const defaultSort = order.startsWith("sig:") && sig ? "q" : order.startsWith("corr:") && sig ? "r" : "variance";
    if (!this.userSorted || !columns.some((c) => c.key === this.sortBy)) {
      this.sortBy = columns.some((c) => c.key === defaultSort) ? defaultSort : "variance";
      this.descending = !columns.find((c) => c.key === this.sortBy)?.ascending;
    }
    const n = units.variance.length;
    const selected = new Set(s.units);
    setText(this.note, `step ${step} · ${n} units · click a column to sort, a row to plot the unit`);
    const key = [step, n, this.sortBy, this.descending, [...selected].join(), columns.map((c) => c.key).join(), name, !!sig].join("|");
    if (key === this.key) return;
    this.key = key;
    this.render(columns, n, selected);
  }

  private columns(units: api.Units, sig: api.Units["significance"], name: string): Column[] {
    const list: Column[] = [];
    if (sig) {
      list.push(
        { key: "r", label: "r", title: `Pearson r with ${name} at the best lag (sorted by |r|)`, values: sig.r, sortBy: Math.abs, format: (v) => v.toFixed(2) },
        { key: "lag", label: "lag", title: "the lag in timesteps with the largest |r|; positive: the unit follows the series", values: sig.lag, format: (v) => String(v) },
        { key: "q", label: "q", title: `q against ${name}: Benjamini–Hochberg over the units (bold below 0.05)`, values: sig.q, ascending: true, mark: (v) => v < 0.05, format: shortQ },
      );
    }
    list.push(
      { key: "variance", label: "var", title: "variance over all valid positions", values: units.variance },
      { key: "saturation", label: "sat", title: "fraction of positions saturated", values: units.saturation },
      { key: "period", label: "period", title: "lag of the strongest autocorrelation peak (timesteps)", values: units.period, format: (v) => short(v, 3) },
    );
    if (units.memory_horizon) {
      list.push({ key: "memory", label: "mem", title: "memory horizon: −1/ln(mean forget gate), in timesteps", values: units.memory_horizon, format: (v) => short(v, 3) });
    }
    return list.filter((c) => c.values.length);
  }

  private render(columns: Column[], n: number, selected: Set<number>): void {
    const header = (key: string, label: string, title: string, ascending = false) => {
      const on = key === this.sortBy;
      const th = el("th", { "data-key": key, title, "aria-sort": on ? (this.descending ? "descending" : "ascending") : "none" },
        label + (on ? (this.descending ? " ▼" : " ▲") : ""));
      th.addEventListener("click", () => {
        if (this.sortBy === key) this.descending = !this.descending;
        else { this.sortBy = key; this.descending = !ascending; }
        this.userSorted = true;
        this.key = "";
        this.render(columns, n, selected);
      });
      return th;
    };
    this.head.replaceChildren(header("unit", "unit", "unit index", true),
      ...columns.map((c) => header(c.key, c.label, c.title, c.ascending)));
    const column = columns.find((c) => c.key === this.sortBy);
    const rows = Array.from({ length: n }, (_, i) => i);
    if (column) {
      const by = column.sortBy ?? ((v: number) => v);
      const v = (i: number) => (Number.isFinite(column.values[i]) ? by(column.values[i]) : NaN);
      // units without a value last, whichever the direction
      rows.sort((a, b) => {
        const x = v(a), y = v(b);
        if (x !== x || y !== y) return (x !== x ? 1 : 0) - (y !== y ? 1 : 0) || a - b;
        return (this.descending ? y - x : x - y) || a - b;
      });
    } else if (this.descending) rows.reverse();
    this.body.replaceChildren(...rows.map((u) => {
      const tr = el("tr", { class: selected.has(u) ? "on" : "", "data-unit": String(u) }, el("td", {}, String(u)),
        ...columns.map((c) => {
          const v = c.values[u];
          return el("td", { "data-key": c.key, class: c.mark?.(v) ? "tls-mark" : "" }, Number.isFinite(v) ? (c.format ?? short)(v) : "–");
        }));
      tr.addEventListener("click", () => this.onPick(u));
      return tr;
    }));
  }
}
