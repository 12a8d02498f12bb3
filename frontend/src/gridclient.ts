// The main-thread side of grid_worker: one worker for every heatmap panel, started on
// first use; null where workers are unavailable (the caller then downsamples in place).

type Grid = { grid: Float32Array; rows: number; cols: number };

let worker: Worker | null | undefined;
let nextId = 1;
let nextSlot = 1;
const waiting = new Map<number, (g: Grid | null) => void>();

function getWorker(): Worker | null {
  if (worker !== undefined) return worker;
  try {
    worker = new Worker(new URL("./grid_worker.js", import.meta.url), { type: "module" });
    worker.onmessage = (e) => {
      const done = waiting.get(e.data.id);
      waiting.delete(e.data.id);
      done?.(e.data.error ? null : e.data);
    };
    worker.onerror = () => {
      for (const done of waiting.values()) done(null);
      waiting.clear();
      worker = null; // fall back to the main thread from now on
    };
  } catch {
    worker = null;
  }
  return worker;
}

export class GridClient {
  private slot = nextSlot++;
  private sent: Float32Array | null = null;

  get available(): boolean {
    return getWorker() !== null;
  }

  /** Downsamples in the worker; resolves null when the worker failed. */
  request(data: Float32Array, units: number, order: number[], t0: number, t1: number,
    cols: number, rows: number, centre: number): Promise<Grid | null> {
    const w = getWorker();
    if (!w) return Promise.resolve(null);
    const id = nextId++;
    const message: any = { id, slot: this.slot, units, order: Int32Array.from(order), t0, t1, cols, rows, centre };
    if (data !== this.sent) {
      message.data = data; // copied once per array
      this.sent = data;
    }
    return new Promise((resolve) => {
      waiting.set(id, (g) => {
        if (!g) this.sent = null;
        resolve(g);
      });
      w.postMessage(message);
    });
  }
}
