// One run's trajectory projection: loaded once per selection (method, layer, kind,
// sequences), with progress while t-SNE or UMAP fit, and the backend's message on error.

import * as api from "./api";

export class ProjectionSlot {
  projection: api.Projection | null = null;
  error = "";
  private key = "";

  constructor(private changed: () => void) {}

  /** Loads `q` unless it is what is loaded (PCA refits when `force`: new steps). */
  load(q: api.ProjectionQuery, force: boolean, onLoaded: (p: api.Projection) => void): void {
    const key = JSON.stringify({ ...q, steps: undefined });
    // New steps refit PCA (cheap; its one basis spans the steps); t-SNE and UMAP refit on request.
    if (key === this.key && !(force && q.method === "pca")) return;
    const refresh = key === this.key;
    this.key = key;
    const accept = (p: api.Projection) => {
      if (key !== this.key) return;
      this.projection = p;
      this.error = "";
      onLoaded(p);
      this.changed();
    };
    if (refresh) {
      api.fetchProjection(q).then(accept, () => undefined);
      return;
    }
    this.projection = null;
    const name = q.method === "tsne" ? "t-SNE" : "UMAP";
    const started = performance.now();
    const progress = () => {
      if (key !== this.key || this.projection) return clearInterval(timer);
      const seconds = Math.round((performance.now() - started) / 1000);
      this.error = q.method === "pca" ? "loading…" : `fitting ${name} over ${q.steps?.length ?? ""} steps… ${seconds} s`;
      this.changed();
    };
    const timer = setInterval(progress, 1000);
    progress();
    api.fetchProjection(q).then(
      (p) => { clearInterval(timer); accept(p); },
      (e) => {
        clearInterval(timer);
        if (key !== this.key) return;
        this.error = String(e?.message ?? e).replace(/^projection: /, "");
        this.changed();
      },
    );
  }

  /** Forgets the selection (compare mode turned off). */
  clear(): void {
    this.key = "";
    this.projection = null;
    this.error = "";
  }
}
