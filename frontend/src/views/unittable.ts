// The unit table: the backend's per-unit scores of the step on screen, sortable by any
// column; a click on a row plots that unit.

import type * as api from "../api";
import { el } from "../dom";
import { formatValue } from "../layout";

export class UnitTable {
  private body = el("tbody");
  private head = el("tr");
  private note = el("span", { class: "tls-sub" });
  readonly root = el("div", { class: "tls-card" }, el("h3", {}, "Units", this.note),
    el("div", { class: "tls-tablewrap" }, el("table", { class: "tls-table", "aria-label": "unit scores" }, el("thead", {}, this.head), this.body)));
  private sortBy = "";
  private descending = true;
  private key = "";
  onPick: (unit: number) => void = () => undefined;

  draw(units: api.Units | undefined, step: number, selected: Set<number>, defaultSort: string): void {
    if (!units) {
      this.note.textContent = "loading…";
      return;
    }
    const columns: [string, string, ArrayLike<number>][] = [
      ["variance", "variance", units.variance], ["saturation", "saturated", units.saturation],
      ["activity", "active", units.activity], ["dead", "dead", units.dead], ["period", "period", units.period],
      ...Object.entries(units.correlation).map(([n, v]) => ["corr:" + n, "|r| " + n, Array.from(v, Math.abs)] as [string, string, ArrayLike<number>]),
    ].filter(([, , v]) => v.length) as [string, string, ArrayLike<number>][];
    if (!this.sortBy || !columns.some(([k]) => k === this.sortBy)) {
      this.sortBy = columns.some(([k]) => k === defaultSort) ? defaultSort : "variance";
      this.descending = true;
    }
    const n = units.variance.length;
    const key = [step, n, this.sortBy, this.descending, [...selected].join(), columns.map(([k]) => k).join()].join("|");
    this.note.textContent = `step ${step} · ${n} units · click a column to sort, a row to plot the unit`;
    if (key === this.key) return;
    this.key = key;
    const header = (k: string, label: string) => {
      const th = el("th", { "data-key": k, "aria-sort": k === this.sortBy ? (this.descending ? "descending" : "ascending") : "none" },
        label + (k === this.sortBy ? (this.descending ? " ▼" : " ▲") : ""));
      th.addEventListener("click", () => {
        if (this.sortBy === k) this.descending = !this.descending;
        else { this.sortBy = k; this.descending = k !== "unit"; }
        this.key = "";
        this.draw(units, step, selected, defaultSort);
      });
      return th;
    };
    this.head.replaceChildren(header("unit", "unit"), ...columns.map(([k, label]) => header(k, label)));
    const values = this.sortBy === "unit" ? null : columns.find(([k]) => k === this.sortBy)![2];
    const rows = Array.from({ length: n }, (_, i) => i);
    const v = (i: number) => (values ? (Number.isFinite(values[i]) ? values[i] : -Infinity) : i);
    rows.sort((a, b) => (this.descending ? v(b) - v(a) : v(a) - v(b)) || a - b);
    this.body.replaceChildren(...rows.map((u) => {
      const tr = el("tr", { class: selected.has(u) ? "on" : "", "data-unit": String(u) },
        el("td", {}, String(u)), ...columns.map(([, , vals]) => el("td", {}, Number.isFinite(vals[u]) ? formatValue(vals[u]) : "–")));
      tr.addEventListener("click", () => this.onPick(u));
      return tr;
    }));
  }
}
