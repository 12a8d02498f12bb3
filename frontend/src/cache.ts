// A cache of decoded results bounded by bytes, least recently used out first;
// concurrent requests for one key share one fetch.

export class ByteCache<V> {
  private entries = new Map<string, { value: V; bytes: number }>();
  private pending = new Map<string, Promise<V>>();
  private total = 0;

  constructor(private maxBytes: number, private sizeOf: (v: V) => number) {}

  peek(key: string): V | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    this.entries.delete(key);
    this.entries.set(key, e);
    return e.value;
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  isPending(key: string): boolean {
    return this.pending.has(key);
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  get(key: string, load: () => Promise<V>): Promise<V> {
    const hit = this.peek(key);
    if (hit !== undefined) return Promise.resolve(hit);
    let p = this.pending.get(key);
    if (!p) {
      p = load().then(
        (value) => {
          this.pending.delete(key);
          this.put(key, value);
          return value;
        },
        (error) => {
          this.pending.delete(key);
          throw error;
        },
      );
      this.pending.set(key, p);
    }
    return p;
  }

  put(key: string, value: V): void {
    const old = this.entries.get(key);
    if (old) {
      this.total -= old.bytes;
      this.entries.delete(key);
    }
    const bytes = this.sizeOf(value);
    this.entries.set(key, { value, bytes });
    this.total += bytes;
    for (const [k, e] of this.entries) {
      if (this.total <= this.maxBytes || this.entries.size <= 1) break;
      this.entries.delete(k);
      this.total -= e.bytes;
    }
  }

  clear(): void {
    this.entries.clear();
    this.total = 0;
  }

  get bytes(): number {
    return this.total;
  }
}
