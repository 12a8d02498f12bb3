// A module worker that downsamples large arrays for the heatmap off the main thread.
// Each heatmap panel has a slot: its array is sent once, then only the view changes.

import { heatmapGrid } from "./downsample";

interface Request {
  id: number;
  slot: number;
  data?: Float32Array;
  units: number;
  order: Int32Array;
  t0: number;
  t1: number;
  cols: number;
  rows: number;
  centre: number;
}

const slots = new Map<number, Float32Array>();

self.onmessage = (event: MessageEvent<Request>) => {
  const r = event.data;
  if (r.data) slots.set(r.slot, r.data);
  const data = slots.get(r.slot);
  if (!data) {
    (self as any).postMessage({ id: r.id, error: "no array in slot " + r.slot });
    return;
  }
  const result = heatmapGrid(data, r.units, r.order, r.t0, r.t1, r.cols, r.rows, r.centre);
  const grid = result.grid.slice(); // its own buffer, transferred back
  (self as any).postMessage({ id: r.id, grid, rows: result.rows, cols: result.cols }, [grid.buffer]);
};
