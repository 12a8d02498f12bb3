// The tokens of the probe sequence as text cells on the time axis, tinted by the
// value of one unit. Tokens are data: they only ever reach the DOM as textContent.

import { Domain, divergingColor, lutIndex, cssColor } from "./colors";
import { el } from "./dom";
import { GUTTER } from "./timeplot";

export class TokenStrip {
  readonly root = el("div", { class: "tls-tokens" });
  private spans: HTMLSpanElement[] = [];
  private key = "";

  /** Shows tokens[t0..t1) when they fit (at least `minCell` px each), else a hint. */
  draw(
    tokens: string[] | null, t0: number, t1: number, width: number,
    tint: ((t: number) => number) | null, domain: Domain, dark: boolean,
    onHover: (t: number | null) => void,
  ): void {
    const plotW = Math.max(1, width - GUTTER - 10);
    this.root.style.width = plotW + "px";
    if (!tokens || !tokens.length) {
      this.root.style.display = "none";
      this.key = "";
      return;
    }
    this.root.style.display = "flex";
    const count = t1 - t0;
    const fits = plotW / count >= 7;
    const key = fits ? `${t0}:${t1}:${tokens.length}:${tokens[t0] ?? ""}` : "hint";
    if (key !== this.key) {
      this.key = key;
      if (!fits) {
        const hint = el("span", {}, `${count} tokens: drag on the heatmap to zoom in and read them`);
        hint.style.color = "var(--muted)";
        hint.style.textAlign = "left";
        this.spans = [];
        this.root.replaceChildren(hint);
        return;
      }
      this.spans = [];
      for (let t = t0; t < t1; t++) {
        const span = el("span", { "data-t": String(t) });
        span.textContent = t < tokens.length ? tokens[t] : "";
        span.title = span.textContent;
        span.addEventListener("mouseenter", () => onHover(t));
        span.addEventListener("mouseleave", () => onHover(null));
        this.spans.push(span);
      }
      this.root.replaceChildren(...this.spans);
    }
    if (!fits) return;
    this.spans.forEach((span, i) => {
      const t = t0 + i;
      if (!tint) {
        span.style.background = "var(--panel)";
        span.style.color = "var(--fg)";
        return;
      }
      const f = lutIndex(tint(t), domain);
      const rgb = f === 256 ? ([128, 128, 128] as [number, number, number]) : divergingColor(f / 255, dark);
      span.style.background = cssColor(rgb);
      const light = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] > 140;
      span.style.color = light ? "#111" : "#fff";
    });
  }
}
