// What every view gets to draw one frame: read-only access to the store and the scene,
// the theme, the time range and the width.

import type * as api from "../api";
import type { Scene } from "../scene";
import type { Store } from "../store";
import type { Theme } from "../theme";

export interface DrawContext {
  store: Store;
  scene: Scene;
  theme: Theme;
  lut: Uint32Array;
  /** CSS pixels across the main column */
  width: number;
  /** the step on screen */
  step: number;
  t0: number;
  t1: number;
  series: api.Series | undefined;
  /** the unit under the pointer, if any */
  hoverUnit: number | null;
  layerName: string;
  /** the last error, shown in place of the heatmap while nothing is loaded */
  error: string;
}
