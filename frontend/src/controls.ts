// The controls: the selector bar (run, tag, layer, kind, sequence, order, compare) and the
// playback bar (step buttons, slider, step label, speed, loop, export). They write the
// store through its fields and tell the app what changed; `sync` shows the store.

import { el, icon, setOptions, setText } from "./dom";
import { METHODS, SPEEDS } from "./hashstate";
import type { Store } from "./store";

export interface ControlHooks {
  /** the selection changed: reload what depends on it and redraw */
  selection(): void;
  /** a setting that needs no reload changed (speed, loop) */
  setting(): void;
  goToIndex(i: number): void;
  stepBy(delta: number): void;
  togglePlay(): void;
  exportAs(what: string): void;
}

const EXPORTS: [string, string][] = [
  ["", "…"], ["heatmap.png", "Heatmap PNG"], ["lines.png", "Lines PNG"], ["series.png", "Series PNG"], ["projection.png", "Projection PNG"],
  ["npy", "Array .npy"], ["csv", "Array CSV"], ["webm", "Playback WebM"],
];

export class Controls {
  readonly sel = {
    run: el("select", { "aria-label": "run" }),
    tag: el("select", { "aria-label": "tag" }),
    layer: el("select", { "aria-label": "layer" }),
    kind: el("select", { "aria-label": "kind" }),
    sequence: el("select", { "aria-label": "probe sequence" }),
    order: el("select", { "aria-label": "unit order" }),
    compare: el("select", { "aria-label": "compare with" }),
    method: el("select", { "aria-label": "projection method" }),
    colorBy: el("select", { "aria-label": "colour by" }),
    trajectory: el("select", { "aria-label": "trajectory sequences" }),
    speed: el("select", { "aria-label": "speed" }),
    scale: el("select", { "aria-label": "colour scale" }),
    exporter: el("select", { "aria-label": "export" }),
  };
  /** the chosen set of sequences the trajectory shows, e.g. "0,3" */
  readonly trajectorySet = el("input", { type: "text", placeholder: "0,3", "aria-label": "trajectory sequence set", style: "width:70px" });
  /** whether the step's series carry tokens (then the trajectory can be coloured by token) */
  private tokens = false;
  private compareStepInput = el("input", { type: "number", placeholder: "same step", "aria-label": "compare step", style: "width:90px" });
  private slider = el("input", { type: "range", min: "0", max: "0", value: "0", "aria-label": "step" });
  private stepLabel = el("span", { class: "tls-steplabel" });
  private playButton = el("button", { title: "play or pause (Space)", "aria-label": "play", class: "tls-playbtn" }, icon("play"));
  private loopButton = el("button", { title: "loop", "aria-label": "loop" }, icon("loop"));
  readonly description = el("div", { class: "tls-desc" });
  readonly bar: HTMLElement;
  readonly play: HTMLElement;

  constructor(private store: Store, private hooks: ControlHooks) {
    const label = (text: string, control: HTMLElement) => el("label", {}, text, control);
    const sel = this.sel;
    this.bar = el("div", { class: "tls-bar" },
      label("Run", sel.run), label("Tag", sel.tag), label("Layer", sel.layer),
      label("Kind", sel.kind), label("Sequence", sel.sequence), label("Order units by", sel.order),
      label("Compare", sel.compare), label("at step", this.compareStepInput), label("Colour scale", sel.scale),
    );
    setOptions(sel.scale, [["fixed", "fixed across steps"], ["step", "per step"]], store.state.scale);
    const button = (name: string, title: string, onClick: () => void) => {
      const b = el("button", { title, "aria-label": title }, icon(name));
      b.addEventListener("click", onClick);
      return b;
    };
    setOptions(sel.speed, SPEEDS.map((s) => [String(s), s + " steps/s"]), String(store.state.speed));
    this.playButton.addEventListener("click", () => hooks.togglePlay());
    this.loopButton.addEventListener("click", () => {
      store.state.loop = !store.state.loop;
      this.sync();
      hooks.setting();
    });
    this.play = el("div", { class: "tls-play" },
      button("first", "first step (Home)", () => hooks.goToIndex(0)),
      button("prev", "previous step (Left)", () => hooks.stepBy(-1)),
      this.playButton,
      button("next", "next step (Right)", () => hooks.stepBy(1)),
      button("last", "latest step (End)", () => hooks.goToIndex(store.steps.length - 1)),
      this.slider, this.stepLabel, sel.speed, this.loopButton, el("label", { class: "tls-export" }, "Export", sel.exporter),
    );
    this.slider.addEventListener("input", () => hooks.goToIndex(Number(this.slider.value)));
    this.slider.addEventListener("keydown", (e) => {
      // one behaviour for the arrows everywhere: handled by the keyboard handler
      if (e.key === "ArrowLeft" || e.key === "ArrowRight" || e.key === " ") e.preventDefault();
    });
    const s = () => store.state;
    const change = (select: HTMLSelectElement, apply: (v: string) => void) =>
      select.addEventListener("change", () => {
        apply(select.value);
        hooks.selection();
      });
    change(sel.run, (v) => { s().run = v; s().step = null; });
    change(sel.tag, (v) => { s().tag = v; s().step = null; });
    change(sel.layer, (v) => (s().layer = Number(v)));
    change(sel.kind, (v) => (s().kind = v));
    change(sel.sequence, (v) => (s().sequence = Number(v)));
    change(sel.order, (v) => (s().order = v));
    change(sel.compare, (v) => (s().compare = v));
    change(sel.method, (v) => (s().method = v));
    change(sel.colorBy, (v) => (s().colorBy = v));
    change(sel.trajectory, (v) => {
      s().trajectory = v === "set" ? s().trajectory && s().trajectory !== "all" ? s().trajectory : String(s().sequence) : v;
    });
    this.trajectorySet.addEventListener("change", () => {
      const list = this.trajectorySet.value.split(/[\s,.;]+/).filter((x) => /^\d+$/.test(x)).map(Number);
      s().trajectory = [...new Set(list)].slice(0, 16).join(".");
      hooks.selection();
    });
    change(sel.scale, (v) => (s().scale = v === "step" ? "step" : "fixed"));
    sel.speed.addEventListener("change", () => {
      s().speed = Number(sel.speed.value);
      hooks.setting();
    });
    this.compareStepInput.addEventListener("change", () => {
      const v = this.compareStepInput.value.trim();
      s().compareStep = v === "" || !Number.isFinite(Number(v)) ? null : Math.trunc(Number(v));
      hooks.selection();
    });
    setOptions(sel.method, METHODS.map((m) => [m, m === "pca" ? "PCA" : m === "tsne" ? "t-SNE" : "UMAP"]), s().method);
    sel.exporter.addEventListener("change", () => {
      const what = sel.exporter.value;
      sel.exporter.value = "";
      if (what) hooks.exportAs(what);
    });
    setOptions(sel.exporter, EXPORTS, "");
  }

  /** The selected layer's display name. */
  layerName(): string {
    return this.sel.layer.selectedOptions[0]?.textContent ?? "";
  }

  setPlaying(playing: boolean): void {
    this.playButton.replaceChildren(icon(playing ? "pause" : "play"));
    this.playButton.setAttribute("aria-label", playing ? "pause" : "play");
    this.playButton.classList.toggle("on", playing);
  }

  /** Shows the store in every control. */
  sync(seriesNames: string[] = []): void {
    const store = this.store, state = store.state, sel = this.sel;
    setOptions(sel.run, store.runNames().map((r) => [r, r]), state.run);
    const tags = Object.keys(store.runs[state.run] ?? {}).sort();
    setOptions(sel.tag, tags.map((t) => [t, t]), state.tag);
    const info = store.info;
    if (info) {
      const layerOptions: [string, string][] = [];
      for (let l = 0; l < info.layers; l++) {
        for (let d = 0; d < info.directions; d++) {
          const name = info.directions === 2 ? `layer ${l} ${d ? "reverse" : "forward"}` : `layer ${l}`;
          layerOptions.push([String(l * info.directions + d), name]);
        }
      }
      setOptions(sel.layer, layerOptions, String(state.layer));
      setOptions(sel.kind, info.kinds.map((k) => [k, k === "cell" ? "cell c" : k === "hidden" ? "hidden h" : k + " gate"]), state.kind);
      setOptions(sel.sequence, Array.from({ length: info.batch }, (_, i) => [String(i), "#" + i]), String(state.sequence));
      this.description.replaceChildren();
      // The backend renders descriptions to safe HTML (its Markdown sanitiser); nothing else is ever set as HTML.
      this.description.innerHTML = info.description;
      if (info.description_truncated) {
        // the backend cut it to its length cap: say so (the numbers are ours, not markup)
        const whole = info.description_chars ? ` of ${info.description_chars.toLocaleString("en")} characters` : "";
        this.description.append(el("span", { class: "tls-cut", title: "the backend shows descriptions up to its length cap" },
          ` … (description cut: the first part${whole} is shown)`));
      }
      this.description.style.display = info.description ? "" : "none";
    }
    this.syncSeriesOptions(seriesNames);
    const compareRuns = Object.keys(store.runs).filter((r) => store.runs[r][state.tag]).sort();
    setOptions(sel.compare, [["", "off"], ...compareRuns.map((r) => [r, r === state.run ? r + " (another step)" : r] as [string, string])], state.compare);
    this.compareStepInput.value = state.compareStep === null ? "" : String(state.compareStep);
    sel.speed.value = String(state.speed);
    sel.scale.value = state.scale;
    this.loopButton.classList.toggle("on", state.loop);
    this.syncStep();
  }

  /** The selectors whose options name the input series (known once a step's series loads). */
  syncSeriesOptions(series: string[], tokens = this.tokens): void {
    this.tokens = tokens;
    const state = this.store.state;
    const auto = series.find((n) => n !== "time") ? "auto (|correlation| with a series)" : "auto (variance)";
    const orders: [string, string][] = [["auto", auto], ["index", "index"], ["variance", "variance"], ["cluster", "clustering"],
      ...series.map((s) => ["corr:" + s, "|correlation| with " + s] as [string, string]),
      ...series.filter((s) => s !== "time").map((s) => ["sig:" + s, "significance (q) vs " + s] as [string, string])];
    if (state.order.startsWith("corr:") && !series.includes(state.order.slice(5))) orders.push([state.order, "|correlation| with " + state.order.slice(5)]);
    if (state.order.startsWith("sig:") && !series.includes(state.order.slice(4))) orders.push([state.order, "significance (q) vs " + state.order.slice(4)]);
    setOptions(this.sel.order, orders, state.order);
    const colors: [string, string][] = [["time", "by timestep"], ["#sequence", "by sequence"],
      ...(tokens ? [["#token", "by token"] as [string, string]] : []),
      ...series.filter((s) => s !== "time").map((s) => [s, "by " + s] as [string, string])];
    if (!colors.some(([v]) => v === state.colorBy)) colors.push([state.colorBy, "by " + state.colorBy]);
    setOptions(this.sel.colorBy, colors, state.colorBy);
    const t = state.trajectory;
    setOptions(this.sel.trajectory, [["", `sequence #${state.sequence}`], ["all", "all sequences"], ["set", "a chosen set"]],
      t === "" || t === "all" ? t : "set");
    this.trajectorySet.style.display = t === "" || t === "all" ? "none" : "";
    const shown = t.split(".").join(",");
    if (document.activeElement !== this.trajectorySet && this.trajectorySet.value !== shown) this.trajectorySet.value = shown;
  }

  syncStep(): void {
    const store = this.store;
    const i = store.stepIndex();
    const max = String(Math.max(0, store.steps.length - 1));
    if (this.slider.max !== max) this.slider.max = max;
    if (this.slider.value !== String(Math.max(0, i))) this.slider.value = String(Math.max(0, i));
    if (this.slider.disabled !== store.steps.length < 2) this.slider.disabled = store.steps.length < 2;
    const step = store.currentStep();
    if (!this.stepLabel.firstChild) this.stepLabel.append("step ", el("b"), "");
    setText(this.stepLabel.childNodes[1], step === null ? "–" : String(step));
    setText(this.stepLabel.childNodes[2], ` · ${i + 1} of ${store.steps.length}`);
  }
}
