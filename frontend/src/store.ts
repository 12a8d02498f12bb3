// The one place the tab's state lives: the view state (bookmarked in the URL hash), the
// runs and steps the backend listed, and what follows from them (the current step, the
// queries of the arrays on screen). Views and controls read it; they change it only
// through its methods, which notify the app.

import type * as api from "./api";
import { readHash, writeHash } from "./hash";
import { DEFAULT_STATE, ViewState } from "./hashstate";
import { nearestStep } from "./layout";

export interface CompareTarget {
  /** the query of the compared array, or null when the other run has no such step */
  query: api.StatesQuery | null;
  /** the step asked for */
  wanted: number;
  run: string;
  /** the other run's steps are not listed yet */
  loading: boolean;
}

export class Store {
  state: ViewState = { ...DEFAULT_STATE };
  runs: api.Runs = {};
  steps: number[] = [];
  /** wall time of each step of `steps`, when the backend gave them */
  wallTimes: number[] = [];
  compareSteps: number[] = [];
  /** the run `compareSteps` lists */
  compareStepsRun = "";
  info: api.TagInfo | null = null;
  /** units the user picked (else the top of the order is plotted) */
  explicitUnits = false;
  playing = false;
  private hashTimer = 0;

  /** Reads the state from the URL hash. */
  load(): void {
    const { state, present } = readHash();
    this.state = state;
    this.explicitUnits = present && state.units.length > 0;
  }

  /** Writes the state to the URL hash, debounced (more while playing). */
  saveHash(): void {
    clearTimeout(this.hashTimer);
    const state = this.state;
    this.hashTimer = window.setTimeout(() => writeHash(state), this.playing ? 1000 : 150);
  }

  /** Runs with at least one tag, sorted. */
  runNames(): string[] {
    return Object.keys(this.runs).filter((r) => Object.keys(this.runs[r]).length).sort();
  }

  /** The run with the most recent data: the latest last step (`runs` lists no wall
   * times), then the most steps, then the first name. */
  defaultRun(): string {
    let best = "", bestKey: number[] | null = null;
    for (const run of this.runNames()) {
      const tags = Object.values(this.runs[run]);
      const key = [Math.max(...tags.map((t) => t.last_step ?? -Infinity)), Math.max(...tags.map((t) => t.steps))];
      if (!bestKey || key[0] > bestKey[0] || (key[0] === bestKey[0] && key[1] > bestKey[1])) {
        best = run;
        bestKey = key;
      }
    }
    return best;
  }

  /** Makes the state consistent with the runs: unknown names fall back to defaults. */
  resolve(): void {
    const runNames = this.runNames();
    if (!runNames.includes(this.state.run)) this.state.run = this.defaultRun();
    const tags = Object.keys(this.runs[this.state.run] ?? {}).sort();
    if (!tags.includes(this.state.tag)) this.state.tag = tags[0] ?? "";
    const info = this.runs[this.state.run]?.[this.state.tag] ?? null;
    this.info = info;
    if (!info) return;
    const entries = info.layers * info.directions;
    if (this.state.layer >= entries) this.state.layer = 0;
    if (!info.kinds.includes(this.state.kind)) this.state.kind = info.kinds.includes("cell") ? "cell" : info.kinds[0] ?? "hidden";
    if (this.state.sequence >= info.batch) this.state.sequence = 0;
    if (this.state.t1 !== null && info.time && this.state.t1 > info.time) this.state.t0 = this.state.t1 = null;
    if (this.state.compare && !this.runs[this.state.compare]?.[this.state.tag]) this.state.compare = "";
  }

  stepIndex(): number {
    if (!this.steps.length) return -1;
    if (this.state.step === null) return this.steps.length - 1;
    const i = this.steps.indexOf(this.state.step);
    if (i >= 0) return i;
    const near = nearestStep(this.steps, this.state.step);
    return near === null ? this.steps.length - 1 : this.steps.indexOf(near);
  }

  currentStep(): number | null {
    const i = this.stepIndex();
    return i < 0 ? null : this.steps[i];
  }

  /** Sets the step by index into `steps` (the last one means "follow the latest"). */
  setIndex(i: number): void {
    if (!this.steps.length) return;
    i = Math.min(Math.max(Math.round(i), 0), this.steps.length - 1);
    this.state.step = i === this.steps.length - 1 ? null : this.steps[i];
  }

  query(step: number, run = this.state.run): api.StatesQuery {
    return { run, tag: this.state.tag, step, layer: this.state.layer, kind: this.state.kind, sequence: this.state.sequence };
  }

  timeOf(run: string): number {
    return this.runs[run]?.[this.state.tag]?.time ?? 0;
  }

  compareRunSteps(): number[] {
    return this.state.compare === this.state.run ? this.steps : this.compareSteps;
  }

  /** What the compare panel shows at `step`: the same step of the other run (or the
   * pinned compare step), never a substitute. */
  compareTarget(step: number): CompareTarget | null {
    if (!this.state.compare) return null;
    const wanted = this.state.compareStep ?? step;
    const steps = this.compareRunSteps();
    const run = this.state.compare;
    const loading = run !== this.state.run && this.compareStepsRun !== run;
    const ok = !loading && steps.includes(wanted);
    return { run, wanted, loading, query: ok ? this.query(wanted, run) : null };
  }

  compareQuery(step: number): api.StatesQuery | null {
    return this.compareTarget(step)?.query ?? null;
  }

  /** The probe sequences the trajectory shows: the selected one, a chosen set, or all
   * (an empty list: the backend's default, every sequence). */
  trajectorySequences(): number[] {
    const t = this.state.trajectory, batch = this.info?.batch ?? 1;
    if (t === "all") return [];
    const list = t ? [...new Set(t.split(".").map(Number).filter((n) => Number.isInteger(n) && n >= 0 && n < batch))].sort((a, b) => a - b) : [];
    return list.length ? list : [this.state.sequence];
  }

  /** The zoomed time range, or the whole sequence of `time` timesteps. */
  range(time: number): [number, number] {
    const { t0, t1 } = this.state;
    if (t0 === null || t1 === null || t1 > time) return [0, Math.max(1, time)];
    return [t0, t1];
  }
}
