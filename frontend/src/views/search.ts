// Pattern search: the window of timesteps on screen (zoom to it by dragging across the
// heatmap), over the plotted units or all of them, looked for in every sequence of every
// logged step (the `search` route); the nearest windows are listed, and a click on one
// shows it: its step, its sequence and its timesteps.

import * as api from "../api";
import { el, setOptions, setText } from "../dom";
import { formatValue } from "../layout";
import type { SearchMatch } from "../matching";
import type { Store } from "../store";

/** Matches asked for. */
export const TOP = 20;

export class SearchView {
  private units = el("select", { "aria-label": "search units" });
  private steps = el("select", { "aria-label": "search steps" });
  private button = el("button", { "aria-label": "search window", class: "tls-searchbtn" }, "Search this window");
  private hint = el("div", { class: "tls-hint", "data-role": "search-hint" });
  private caption = el("div", { class: "tls-hint", "data-role": "search-caption" });
  private body = el("tbody");
  private table = el("table", { class: "tls-table tls-search", "aria-label": "search matches" },
    el("thead", {}, el("tr", {}, ...["#", "step", "seq", "timesteps", "distance"].map((h) => el("th", {}, h)))), this.body);
  readonly root = el("div", { class: "tls-card tls-searchcard" },
    el("h3", {}, "Pattern search"),
    el("div", { class: "tls-searchbar" }, el("label", {}, "units ", this.units), el("label", {}, "in ", this.steps), this.button),
    this.hint, this.caption, el("div", { class: "tls-tablewrap" }, this.table));
  private query: api.SearchQuery | null = null;
  private results: SearchMatch[] | null = null;
  private error = "";
  private controller: AbortController | null = null;
  private window: { start: number; stop: number; ok: boolean } = { start: 0, stop: 0, ok: false };
  private store: Store | null = null;
  private rendered = "";
  /** a result arrived */
  onChanged: () => void = () => undefined;
  /** a click on a match: show that step, sequence and window */
  onJump: (step: number, sequence: number, start: number, stop: number) => void = () => undefined;

  constructor() {
    setOptions(this.steps, [["all", "every step"], ["this", "this step"]], "all");
    this.button.addEventListener("click", () => this.search());
  }

  /** Asks for the windows nearest the one on screen. */
  private search(): void {
    const store = this.store, step = store?.currentStep();
    if (!store || step === null || step === undefined || !this.window.ok) return;
    const s = store.state;
    const units = this.units.value === "plotted" ? [...s.units].sort((a, b) => a - b) : undefined;
    const q: api.SearchQuery = {
      run: s.run, tag: s.tag, step, layer: s.layer, kind: s.kind, sequence: s.sequence,
      start: this.window.start, stop: this.window.stop, units, steps: this.steps.value === "this" ? [step] : undefined, top: TOP,
    };
    this.controller?.abort();
    const controller = (this.controller = new AbortController());
    this.query = q;
    this.results = null;
    this.error = "";
    this.rendered = "";
    api.fetchSearch(q, controller.signal).then((matches) => {
      if (this.query === q) this.results = matches;
    }, (e) => {
      if (this.query === q && e?.name !== "AbortError") this.error = String(e?.message ?? e);
    }).finally(() => this.onChanged());
    this.onChanged();
  }

  /** `t0`, `t1`: the time range on screen; `length`: valid timesteps of the sequence on screen. */
  draw(store: Store, t0: number, t1: number, time: number, length: number | undefined): void {
    this.store = store;
    const s = store.state;
    const q = this.query;
    if (q && (q.run !== s.run || q.tag !== s.tag || q.layer !== s.layer || q.kind !== s.kind)) {
      // another selection: its results say nothing of this one
      this.controller?.abort();
      this.query = this.results = null;
      this.error = this.rendered = "";
    }
    const plotted = s.units.length;
    setOptions(this.units, [["plotted", `plotted (${plotted})`], ["all", "all"]], this.units.value === "all" || !plotted ? "all" : "plotted");
    const zoomed = t0 > 0 || t1 < time;
    const valid = length ?? time;
    this.window = { start: t0, stop: t1, ok: zoomed && t1 <= valid && t1 - t0 >= 1 };
    this.button.textContent = zoomed ? `Search timesteps ${t0}–${t1 - 1}` : "Search the window on screen";
    this.button.toggleAttribute("disabled", !this.window.ok);
    setText(this.hint, !zoomed ? "Drag across the heatmap to zoom to a window of timesteps; then search for where else it occurs." :
      t1 > valid ? `The window reaches past this sequence's ${valid} valid timesteps: choose one within them.` :
      `The ${t1 - t0} timesteps on screen of sequence #${s.sequence}, ${this.units.value === "all" ? "all units" : "the plotted units"}, ` +
      "looked for in every sequence; nearest (Euclidean) first, a window overlapping a nearer one left out.");
    this.render(store);
  }

  private render(store: Store): void {
    const q = this.query, s = store.state;
    const step = store.currentStep();
    const key = JSON.stringify([q, this.results?.length, this.error, step, s.sequence, s.t0, s.t1]);
    if (key === this.rendered) return;
    this.rendered = key;
    this.table.style.display = q && this.results ? "" : "none";
    if (!q) { setText(this.caption, ""); this.body.replaceChildren(); return; }
    const len = q.stop - q.start;
    const what = `query: step ${q.step} · sequence #${q.sequence} · timesteps ${q.start}–${q.stop - 1} · ` +
      (q.units ? `units ${q.units.join(", ")}` : "all units") + (q.steps ? ` · in step ${q.steps.join(", ")}` : " · in every step");
    setText(this.caption, this.error ? `${what} · search failed: ${this.error.slice(0, 240)}` : !this.results ? `${what} · searching…` :
      `${what} · ${this.results.length} match${this.results.length === 1 ? "" : "es"}, nearest first · click one to show it`);
    if (!this.results) { this.body.replaceChildren(); return; }
    const row = (label: string, m: SearchMatch, cls: string) => {
      const on = step === m.step && s.sequence === m.sequence && s.t0 === m.start && s.t1 === m.start + len;
      const tr = el("tr", { class: [cls, on ? "on" : ""].join(" ").trim(), "data-step": String(m.step), "data-sequence": String(m.sequence), "data-start": String(m.start) },
        el("td", {}, label), el("td", {}, String(m.step)), el("td", {}, "#" + m.sequence),
        el("td", {}, `${m.start}–${m.start + len - 1}`), el("td", {}, Number.isFinite(m.distance) ? formatValue(m.distance) : "–"));
      tr.addEventListener("click", () => this.onJump(m.step, m.sequence, m.start, m.start + len));
      return tr;
    };
    this.body.replaceChildren(row("query", { step: q.step, sequence: q.sequence, start: q.start, distance: 0 }, "tls-query"),
      ...this.results.map((m, i) => row(String(i + 1), m, "tls-match")));
  }
}
