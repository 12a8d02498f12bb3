// Loads the `match` route's answers behind a bounded cache: the pairing of the compared
// run's units with the first run's (one per step pair), and the batch that tracks a
// unit across steps (at most a few requests in flight, cancelled when the reference
// step changes). Knows no view; draws nothing.

import * as api from "./api";
import { ByteCache } from "./cache";
import type { Match } from "./matching";

/** Requests of one identity batch in flight at once (each pairs a whole layer). */
const IN_FLIGHT = 2;

const keyOf = (q: api.MatchQuery) =>
  JSON.stringify([q.run, q.tag, q.step, q.layer, q.kind, q.other_run, q.other_tag, q.other_step]);
const pairOf = (q: api.MatchQuery) => JSON.stringify([q.run, q.tag, q.layer, q.kind, q.other_run, q.other_tag]);

export class MatchLoader {
  private cache = new ByteCache<Match>(32 << 20, (m) => m.units.length * 9 + 64);
  private errors = new Map<string, string>();
  /** the last match loaded per pair of runs (and layer, kind): shown while another step's loads */
  private latest = new Map<string, { q: api.MatchQuery; match: Match }>();
  private batch: { key: string; controller: AbortController; queue: api.MatchQuery[]; running: number } | null = null;

  constructor(private changed: () => void) {}

  /** The match of `q`, or undefined while it loads (loads it when `load`). */
  get(q: api.MatchQuery, load = true): Match | undefined {
    const key = keyOf(q);
    const hit = this.cache.peek(key);
    if (hit || !load || this.errors.has(key) || this.cache.isPending(key)) return hit;
    this.load(q).then(() => this.changed(), () => this.changed());
    return undefined;
  }

  /** Why `q` could not be matched, if it could not. */
  error(q: api.MatchQuery): string {
    return this.errors.get(keyOf(q)) ?? "";
  }

  /** The last match loaded of the same runs, layer and kind as `q` (any steps). */
  latestOf(q: api.MatchQuery): { q: api.MatchQuery; match: Match } | undefined {
    return this.latest.get(pairOf(q));
  }

  private load(q: api.MatchQuery, signal?: AbortSignal): Promise<Match> {
    const key = keyOf(q);
    return this.cache.get(key, () => api.fetchMatch(q, signal)).then((m) => {
      this.latest.set(pairOf(q), { q, match: m });
      return m;
    }, (e) => {
      if (e?.name !== "AbortError") this.errors.set(key, String(e?.message ?? e));
      throw e;
    });
  }

  /**
   * Loads the matches of each query of a batch (one reference array against others), a
   * few at a time; a new batch (another `key`) cancels the previous one's requests. The
   * answers arrive through `get`.
   */
  track(key: string, queries: api.MatchQuery[]): void {
    if (this.batch?.key === key) return;
    this.stop();
    const todo = queries.filter((q) => !this.cache.has(keyOf(q)) && !this.errors.has(keyOf(q)));
    this.batch = { key, controller: new AbortController(), queue: todo, running: 0 };
    this.pump();
  }

  /** Cancels the identity batch in flight. */
  stop(): void {
    this.batch?.controller.abort();
    this.batch = null;
  }

  /** How many of a batch's queries are answered (loaded or failed). */
  done(queries: api.MatchQuery[]): number {
    return queries.filter((q) => this.cache.has(keyOf(q)) || this.errors.has(keyOf(q))).length;
  }

  private pump(): void {
    const batch = this.batch;
    if (!batch) return;
    while (batch.running < IN_FLIGHT && batch.queue.length) {
      const q = batch.queue.shift()!;
      batch.running++;
      const finish = () => {
        batch.running--;
        if (this.batch === batch) {
          this.changed();
          this.pump();
        }
      };
      this.load(q, batch.controller.signal).then(finish, finish);
    }
  }
}
