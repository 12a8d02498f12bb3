// Moving through the steps: step buttons, playback at a fixed rate (a step is shown once
// its arrays are loaded, never half-drawn) and the keyboard (Space, arrows, Home, End).

import type { Controls } from "./controls";
import type { DataLoader } from "./data";
import type { Store } from "./store";

export class Player {
  private lastAdvance = 0;

  constructor(
    private store: Store, private data: DataLoader, private controls: Controls,
    /** draws the step now (not on the next frame: playback paces itself) */
    private drawNow: () => void,
  ) {}

  goToIndex(i: number): void {
    const store = this.store;
    if (!store.steps.length) return;
    store.setIndex(i);
    this.controls.syncStep();
    store.saveHash();
    this.drawNow();
    this.data.prefetch();
  }

  goToStep(step: number): void {
    const i = this.store.steps.indexOf(step);
    if (i >= 0) this.goToIndex(i);
  }

  stepBy(delta: number): void {
    const store = this.store;
    const i = store.stepIndex();
    if (i < 0) return;
    let next = i + delta;
    if (store.state.loop) next = (next + store.steps.length) % store.steps.length;
    this.goToIndex(next);
  }

  togglePlay(): void {
    const store = this.store;
    store.playing = !store.playing;
    this.controls.setPlaying(store.playing);
    if (store.playing) {
      if (!store.state.loop && store.stepIndex() === store.steps.length - 1) this.goToIndex(0);
      this.lastAdvance = performance.now();
      requestAnimationFrame((t) => this.tick(t));
    } else {
      store.saveHash();
    }
  }

  private tick(now: number): void {
    const store = this.store;
    if (!store.playing) return;
    const interval = 1000 / store.state.speed;
    if (now - this.lastAdvance >= interval - 4) {
      let next = store.stepIndex() + 1;
      if (next >= store.steps.length) {
        if (store.state.loop) next = 0;
        else {
          this.togglePlay();
          return;
        }
      }
      if (this.data.frameReady(store.steps[next])) {
        this.lastAdvance = now - Math.min(interval, Math.max(0, now - this.lastAdvance - interval));
        this.goToIndex(next);
      } else {
        this.data.ensureFrame(store.steps[next]);
      }
    }
    this.data.prefetch();
    requestAnimationFrame((t) => this.tick(t));
  }

  /** Handles a key; returns whether it was one of ours. */
  onKey(e: KeyboardEvent): boolean {
    const target = e.target as HTMLElement | null;
    const tag = target?.tagName;
    if ((tag === "SELECT" || tag === "TEXTAREA" || (tag === "INPUT" && (target as HTMLInputElement).type !== "range")) && e.key !== "Escape") return false;
    if (target?.isContentEditable) return false;
    if (e.altKey || e.ctrlKey || e.metaKey) return false;
    const last = this.store.steps.length - 1;
    const actions: Record<string, () => void> = {
      " ": () => this.togglePlay(),
      ArrowRight: () => this.stepBy(1),
      ArrowLeft: () => this.stepBy(-1),
      Home: () => this.goToIndex(0),
      End: () => this.goToIndex(last),
    };
    const action = actions[e.key] ?? (e.code === "Space" ? actions[" "] : undefined);
    if (!action) return false;
    e.preventDefault();
    action();
    return true;
  }
}
