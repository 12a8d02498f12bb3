// Export of what is on screen: PNG of a view, the shown array as .npy (exactly what the
// backend serves) or CSV, and a WebM of the playback (MediaRecorder; no workers needed).

import * as api from "./api";
import { NdArray, toCsv } from "./decode";
import { download, safeFileName } from "./dom";

function canvasBlob(canvas: HTMLCanvasElement, type = "image/png"): Promise<Blob> {
  return new Promise((resolve, reject) => canvas.toBlob((b) => (b ? resolve(b) : reject(new Error("the canvas could not be encoded"))), type));
}

/** Draws canvases side by side (at their backing size) on the theme background. */
function compose(canvases: HTMLCanvasElement[], background: string): HTMLCanvasElement {
  const visible = canvases.filter((c) => c.offsetParent !== null || c.isConnected);
  const gap = 16;
  const out = document.createElement("canvas");
  out.width = visible.reduce((w, c) => w + c.width, 0) + gap * Math.max(0, visible.length - 1);
  out.height = Math.max(1, ...visible.map((c) => c.height));
  const ctx = out.getContext("2d")!;
  ctx.fillStyle = background;
  ctx.fillRect(0, 0, out.width, out.height);
  let x = 0;
  for (const c of visible) {
    ctx.drawImage(c, x, 0);
    x += c.width + gap;
  }
  return out;
}

/** What an export needs of the tab, and nothing more. */
export interface ExportSource {
  /** run, tag, layer, kind and sequence of the selection */
  selection(): { run: string; tag: string; layer: number; kind: string; sequence: number };
  background(): string;
  /** the canvases of a view on screen, left to right */
  canvases(view: "heatmap" | "lines" | "projection"): HTMLCanvasElement[];
  /** the canvas playback is recorded from */
  playbackCanvas(): HTMLCanvasElement;
  steps(): number[];
  stepIndex(): number;
  currentStep(): number | null;
  /** steps per second of playback */
  speed(): number;
  query(step: number): api.StatesQuery;
  /** the [time, units] array on screen and its first timestep */
  shownArray(): { array: NdArray; start: number } | null;
  loadStep(step: number): Promise<unknown>;
  goToIndex(i: number): void;
  stopPlaying(): void;
}

export class Exporter {
  recording = false;

  constructor(private app: ExportSource) {}

  private name(ext: string): string {
    const s = this.app.selection();
    return safeFileName(s.run, s.tag, "layer" + s.layer, s.kind, "seq" + s.sequence, "step" + (this.app.currentStep() ?? "")) + "." + ext;
  }

  async run(what: string): Promise<void> {
    const app = this.app;
    const bg = app.background();
    if (what === "heatmap.png" || what === "lines.png" || what === "projection.png") {
      const view = what.slice(0, -4) as "heatmap" | "lines" | "projection";
      download(this.name("png"), await canvasBlob(compose(app.canvases(view), bg)));
    } else if (what === "npy") {
      const step = app.currentStep();
      if (step === null) throw new Error("no step to export");
      const response = await fetch(api.statesUrl(app.query(step), true));
      if (!response.ok) throw new Error(`states .npy: HTTP ${response.status}`);
      download(this.name("npy"), await response.blob());
    } else if (what === "csv") {
      const shown = app.shownArray();
      if (!shown) throw new Error("no array on screen to export");
      download(this.name("csv"), new Blob([toCsv(shown.array, undefined, shown.start)], { type: "text/csv" }));
    } else if (what === "webm") {
      await this.recordWebm();
    }
  }

  /** Plays every step once into the heatmap canvas and records it. */
  async recordWebm(): Promise<void> {
    const app = this.app;
    if (this.recording) return;
    if (typeof MediaRecorder === "undefined") throw new Error("this browser cannot record video (no MediaRecorder)");
    const canvas = app.playbackCanvas();
    const type = ["video/webm;codecs=vp9", "video/webm;codecs=vp8", "video/webm"].find((t) => MediaRecorder.isTypeSupported(t));
    if (!type) throw new Error("this browser cannot record WebM");
    app.stopPlaying();
    this.recording = true;
    const stream = canvas.captureStream(30);
    const recorder = new MediaRecorder(stream, { mimeType: type, videoBitsPerSecond: 4_000_000 });
    const chunks: Blob[] = [];
    recorder.ondataavailable = (e) => e.data.size && chunks.push(e.data);
    const stopped = new Promise<void>((resolve) => (recorder.onstop = () => resolve()));
    const start = app.stepIndex();
    recorder.start(250);
    try {
      const frameMs = Math.max(1000 / app.speed(), 34);
      const steps = app.steps();
      for (let i = 0; i < steps.length; i++) {
        await app.loadStep(steps[i]);
        app.goToIndex(i);
        await new Promise((r) => setTimeout(r, frameMs));
      }
    } finally {
      recorder.stop();
      stream.getTracks().forEach((t) => t.stop());
      await stopped;
      this.recording = false;
      app.goToIndex(start);
    }
    download(this.name("webm"), new Blob(chunks, { type: "video/webm" }));
  }
}
