// Scoring the change track's flags against a 0/1 label series (pure): an event is a run
// of 1s; a flag detects it when it falls within `tolerance` timesteps of the run. Lead
// time: the event's onset minus its earliest detecting flag (positive: flagged early).

import { labelSpans } from "./seriesaxes";

export interface Score {
  flags: number;
  events: number;
  /** flags within the tolerance of some event */
  truePositives: number;
  /** events with at least one flag */
  detected: number;
  precision: number; // NaN without flags
  recall: number; // NaN without events
  /** mean lead time in timesteps over detected events, NaN when none */
  lead: number;
}

export function scoreFlags(flags: number[], label: ArrayLike<number>, length: number, tolerance = 5): Score {
  const events = labelSpans(label, Math.min(length, label.length));
  let tp = 0;
  const firstFlag = new Array<number>(events.length).fill(Infinity);
  for (const f of flags) {
    if (f >= length) continue;
    let hit = false;
    events.forEach(([a, b], i) => {
      if (f >= a - tolerance && f < b + tolerance) {
        hit = true;
        firstFlag[i] = Math.min(firstFlag[i], f);
      }
    });
    if (hit) tp++;
  }
  const n = flags.filter((f) => f < length).length;
  const leads = events.map(([a], i) => a - firstFlag[i]).filter(Number.isFinite);
  const detected = leads.length;
  return {
    flags: n, events: events.length, truePositives: tp, detected,
    precision: n ? tp / n : NaN,
    recall: events.length ? detected / events.length : NaN,
    lead: detected ? leads.reduce((x, y) => x + y, 0) / detected : NaN,
  };
}

/** Scores pooled over several sequences (sums of counts; lead time over all detected events). */
export function poolScores(scores: Score[]): Score {
  const sum = (f: (s: Score) => number) => scores.reduce((x, s) => x + f(s), 0);
  const flags = sum((s) => s.flags), events = sum((s) => s.events), tp = sum((s) => s.truePositives), detected = sum((s) => s.detected);
  const leadSum = sum((s) => (s.detected ? s.lead * s.detected : 0));
  return {
    flags, events, truePositives: tp, detected,
    precision: flags ? tp / flags : NaN, recall: events ? detected / events : NaN, lead: detected ? leadSum / detected : NaN,
  };
}
