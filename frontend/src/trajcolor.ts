// How the trajectory is coloured: by timestep, by sequence, by token or by any logged
// series, over the paths of the sequences shown; and the legend that says so. Pure.

import { cssColor, PALETTE, sequentialColor } from "./colors";
import { formatValue } from "./layout";

/** A continuous ramp with its ends labelled, or named swatches (categories). */
export type TrajectoryLegend =
  | { kind: "ramp"; label: string; lo: string; hi: string }
  | { kind: "swatches"; label: string; entries: [string, string][]; more: number };

export interface Colouring {
  /** the CSS colour of the segment ending at timestep t of path i */
  colorOf: (i: number, t: number) => string;
  legend: TrajectoryLegend;
  /** set when the colouring asked for is not available (what is used instead is said) */
  note: string;
}

export interface ColourInput {
  colorBy: string;
  /** the probe sequence of each path */
  sequences: number[];
  t0: number;
  t1: number;
  /** every sequence's values per series name */
  series: Record<string, Float64Array[]> | null;
  tokens: string[][] | null;
}

const BINS = 32;
const RAMP = Array.from({ length: BINS }, (_, b) => cssColor(sequentialColor((b + 0.5) / BINS)));
const OTHER = "#9aa0a6";
/** at most this many categories get their own colour; the rest are "other" */
export const MAX_CATEGORIES = PALETTE.length - 1;

function ramp(f: number): string {
  return RAMP[Math.min(BINS - 1, Math.max(0, Math.floor((Number.isFinite(f) ? f : 0) * BINS)))];
}

export function colouring(input: ColourInput): Colouring {
  const { colorBy, sequences, t0, t1 } = input;
  const byTime = (note: string): Colouring => {
    const span = Math.max(1, t1 - t0 - 1);
    return { colorOf: (_i, t) => ramp((t - t0) / span), legend: { kind: "ramp", label: "timestep", lo: String(t0), hi: String(t1 - 1) }, note };
  };
  if (colorBy === "time") return byTime("");
  if (colorBy === "#sequence") {
    const entries = sequences.slice(0, MAX_CATEGORIES).map((s, i) => ["#" + s, PALETTE[i]] as [string, string]);
    return {
      colorOf: (i) => (i < MAX_CATEGORIES ? PALETTE[i] : OTHER),
      legend: { kind: "swatches", label: "sequence", entries, more: Math.max(0, sequences.length - MAX_CATEGORIES) },
      note: "",
    };
  }
  if (colorBy === "#token") {
    const tokens = input.tokens;
    if (!tokens) return byTime("no tokens are logged: coloured by timestep");
    // the most frequent tokens shown get a colour each
    const counts = new Map<string, number>();
    for (const s of sequences) {
      const row = tokens[s] ?? [];
      for (let t = t0; t < Math.min(t1, row.length); t++) counts.set(row[t], (counts.get(row[t]) ?? 0) + 1);
    }
    const top = [...counts.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, MAX_CATEGORIES).map(([k]) => k);
    const colour = new Map(top.map((k, i) => [k, PALETTE[i]]));
    const entries = top.map((k) => [k, colour.get(k)!] as [string, string]);
    return {
      colorOf: (i, t) => colour.get(tokens[sequences[i]]?.[t] ?? "") ?? OTHER,
      legend: { kind: "swatches", label: "token", entries, more: Math.max(0, counts.size - top.length) },
      note: "",
    };
  }
  const values = input.series?.[colorBy];
  if (!values) return byTime(`no series ${JSON.stringify(colorBy)} is logged: coloured by timestep`);
  let lo = Infinity, hi = -Infinity;
  for (const s of sequences) {
    const row = values[s] ?? values[0];
    if (!row) continue;
    for (let t = t0; t < Math.min(t1, row.length); t++) {
      const v = row[t];
      if (Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    }
  }
  if (!(hi >= lo)) return byTime(`the series ${JSON.stringify(colorBy)} has no values here: coloured by timestep`);
  return {
    colorOf: (i, t) => ramp(((values[sequences[i]] ?? values[0])?.[t] - lo) / (hi - lo || 1)),
    legend: { kind: "ramp", label: colorBy, lo: formatValue(lo), hi: formatValue(hi) },
    note: "",
  };
}

/** The legend as one line of text (an accessible label, and what tests read). */
export function legendText(legend: TrajectoryLegend): string {
  if (legend.kind === "ramp") return `colour: ${legend.label} from ${legend.lo} to ${legend.hi}`;
  return `colour: ${legend.label}: ${legend.entries.map(([k]) => k).join(", ")}${legend.more ? ` and ${legend.more} more` : ""}`;
}
