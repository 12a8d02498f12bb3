// Export of what is on screen: PNG of a view, the shown array as .npy (exactly what the
// backend serves) or CSV, and a WebM of the playback (MediaRecorder; no workers needed).

import * as api from "./api";
import { NdArray, toCsv } from "./decode";
import { download, safeFileName } from "./dom";
import fixWebmDuration from "fix-webm-duration";

function canvasBlob(canvas: HTMLCanvasElement, type = "image/png"): Promise<Blob> {
  return new Promise((resolve, reject) => canvas.toBlob((b) => (b ? resolve(b) : reject(new Error("the canvas could not be encoded"))), type));
}

/** A figure: a title line, then canvases side by side (at their backing size) on the
 * theme background, then the colour bars. */
export function compose(title: string, canvases: HTMLCanvasElement[], legends: HTMLCanvasElement[], background: string, fg: string, out = document.createElement("canvas")): HTMLCanvasElement {
  const visible = canvases.filter((c) => c.width > 1 && c.height > 1);
  const gap = 16, pad = 12;
  const scale = visible[0] ? visible[0].width / Math.max(1, visible[0].clientWidth || visible[0].width) : 1;
  const titleH = Math.round(24 * scale);
  const legendH = Math.max(0, ...legends.map((c) => c.height));
  const width = Math.max(visible.reduce((w, c) => w + c.width, 0) + gap * Math.max(0, visible.length - 1), legends.reduce((w, c) => w + c.width + gap, 0)) + 2 * pad;
  const height = pad + titleH + Math.max(1, ...visible.map((c) => c.height)) + (legendH ? gap + legendH : 0) + pad;
  if (out.width !== width || out.height !== height) {
    out.width = width;
    out.height = height;
  }
  const ctx = out.getContext("2d")!;
  ctx.fillStyle = background;
  ctx.fillRect(0, 0, out.width, out.height);
  ctx.fillStyle = fg;
  ctx.font = `${Math.round(14 * scale)}px sans-serif`;
  ctx.textBaseline = "top";
  ctx.fillText(title, pad, pad);
  let x = pad;
  const top = pad + titleH;
  for (const c of visible) {
    ctx.drawImage(c, x, top);
    x += c.width + gap;
  }
  x = pad;
  const ly = top + Math.max(1, ...visible.map((c) => c.height)) + gap;
  for (const c of legends) {
    ctx.drawImage(c, x, ly);
    x += c.width + gap;
  }
  return out;
}

export type ExportView = "heatmap" | "lines" | "series" | "projection";

/** What an export needs of the tab, and nothing more. */
export interface ExportSource {
  /** run, tag, layer, kind and sequence of the selection */
  selection(): { run: string; tag: string; layer: number; kind: string; sequence: number };
  background(): string;
  foreground(): string;
  /** what the figure shows: run (and compared run), tag, layer, kind, sequence, step */
  title(): string;
  /** the canvases of a view on screen, left to right */
  canvases(view: ExportView): HTMLCanvasElement[];
  /** the colour bars of a view, left to right */
  legends(view: ExportView): HTMLCanvasElement[];
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

  /** A distinct file name per view and selection. */
  private name(ext: string, view = "states"): string {
    const s = this.app.selection();
    return safeFileName(view, s.run, s.tag, "layer" + s.layer, s.kind, "seq" + s.sequence, "step" + (this.app.currentStep() ?? "")) + "." + ext;
  }

  async run(what: string): Promise<void> {
    const app = this.app;
    const bg = app.background();
    if (what.endsWith(".png")) {
      const view = what.slice(0, -4) as ExportView;
      const figure = compose(app.title() + (view === "heatmap" ? "" : " · " + view), app.canvases(view), app.legends(view), bg, app.foreground());
      download(this.name("png", view), await canvasBlob(figure));
    } else if (what === "npy") {
      const step = app.currentStep();
      if (step === null) throw new Error("no step to export");
      const response = await fetch(api.statesUrl(app.query(step), true));
      if (!response.ok) throw new Error(`states .npy: HTTP ${response.status}`);
      download(this.name("npy", "array"), await response.blob());
    } else if (what === "csv") {
      const shown = app.shownArray();
      if (!shown) throw new Error("no array on screen to export");
      download(this.name("csv", "array"), new Blob([toCsv(shown.array, undefined, shown.start)], { type: "text/csv" }));
    } else if (what === "webm") {
      await this.recordWebm();
    }
  }

  /** Plays every step once and records the heatmaps (both runs in compare mode) with a
   * title and step counter per frame; the file gets its duration written in. */
  async recordWebm(): Promise<void> {
    const app = this.app;
    if (this.recording) return;
    if (typeof MediaRecorder === "undefined") throw new Error("this browser cannot record video (no MediaRecorder)");
    const type = ["video/webm;codecs=vp9", "video/webm;codecs=vp8", "video/webm"].find((t) => MediaRecorder.isTypeSupported(t));
    if (!type) throw new Error("this browser cannot record WebM");
    app.stopPlaying();
    this.recording = true;
    const canvas = document.createElement("canvas");
    const steps = app.steps();
    const frame = (i: number) => compose(`${app.title()} · ${i + 1} of ${steps.length}`, app.canvases("heatmap"), app.legends("heatmap"), app.background(), app.foreground(), canvas);
    const start = app.stepIndex();
    await app.loadStep(steps[0]);
    app.goToIndex(0);
    frame(0);
    const stream = canvas.captureStream(30);
    const recorder = new MediaRecorder(stream, { mimeType: type, videoBitsPerSecond: 4_000_000 });
    const chunks: Blob[] = [];
    recorder.ondataavailable = (e) => e.data.size && chunks.push(e.data);
    const stopped = new Promise<void>((resolve) => (recorder.onstop = () => resolve()));
    recorder.start(250);
    const began = performance.now();
    try {
      const frameMs = Math.max(1000 / app.speed(), 34);
      for (let i = 0; i < steps.length; i++) {
        await app.loadStep(steps[i]);
        app.goToIndex(i);
        frame(i);
        await new Promise((r) => setTimeout(r, frameMs));
      }
    } finally {
      recorder.stop();
      stream.getTracks().forEach((t) => t.stop());
      await stopped;
      this.recording = false;
      app.goToIndex(start);
    }
    const duration = performance.now() - began;
    const blob = await fixWebmDuration(new Blob(chunks, { type: "video/webm" }), duration, { logger: false });
    download(this.name("webm", "playback"), blob);
  }
}
