// Follows TensorBoard's dark mode (the parent page's body.dark-mode), else the OS preference.

export interface Theme {
  dark: boolean;
  fg: string;
  muted: string;
  grid: string;
  bg: string;
  panel: string;
  accent: string;
  cursor: string;
  anomaly: string;
}

export function themeFor(dark: boolean): Theme {
  return dark
    ? { dark, fg: "#e8eaed", muted: "#9aa0a6", grid: "#3c4043", bg: "#202124", panel: "#292a2d", accent: "#ff9800", cursor: "#fdd663", anomaly: "#f28b82" }
    : { dark, fg: "#202124", muted: "#5f6368", grid: "#e0e0e0", bg: "#ffffff", panel: "#f8f9fa", accent: "#f57c00", cursor: "#1a73e8", anomaly: "#d93025" };
}

function parentDark(): boolean | null {
  try {
    const body = window.parent !== window ? window.parent.document.body : null;
    if (body) return body.classList.contains("dark-mode");
  } catch {
    // a cross-origin parent: fall back to the media query
  }
  return null;
}

/** Calls `onChange(dark)` now and whenever TensorBoard's (or the OS's) theme changes. */
export function watchTheme(onChange: (dark: boolean) => void): void {
  const media = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;
  let last: boolean | null = null;
  const update = () => {
    const fromParent = parentDark();
    const dark = fromParent ?? (media ? media.matches : false);
    if (dark !== last) {
      last = dark;
      onChange(dark);
    }
  };
  update();
  media?.addEventListener?.("change", update);
  try {
    if (window.parent !== window) {
      new ((window.parent as any).MutationObserver as typeof MutationObserver)(update).observe(window.parent.document.body, { attributes: true, attributeFilter: ["class"] });
    }
  } catch {
    // cross-origin parent
  }
}

export const STYLE = `
:root { --fg:#202124; --muted:#5f6368; --bg:#fff; --panel:#f8f9fa; --border:#dadce0; --accent:#f57c00; --input:#fff; }
:root[data-theme=dark] { --fg:#e8eaed; --muted:#9aa0a6; --bg:#202124; --panel:#292a2d; --border:#3c4043; --accent:#ff9800; --input:#303134; }
html, body { margin:0; background:var(--bg); color:var(--fg); }
.tls { font:13px/1.4 Roboto, "Helvetica Neue", Arial, sans-serif; color:var(--fg); background:var(--bg); padding:12px 16px; box-sizing:border-box; min-height:100vh; }
.tls * { box-sizing:border-box; }
.tls-bar { display:flex; flex-wrap:wrap; gap:8px 14px; align-items:center; margin-bottom:8px; }
.tls-bar label { display:flex; gap:6px; align-items:center; color:var(--muted); font-size:12px; }
.tls select, .tls input[type=number], .tls button { font:inherit; color:var(--fg); background:var(--input); border:1px solid var(--border); border-radius:4px; padding:3px 6px; }
.tls select { max-width:220px; }
.tls button { cursor:pointer; min-width:30px; display:inline-flex; align-items:center; justify-content:center; height:28px; }
.tls-export { display:flex; gap:6px; align-items:center; color:var(--muted); font-size:12px; margin-left:8px; }
.tls button:hover { border-color:var(--accent); }
.tls button.on { background:var(--accent); color:#fff; border-color:var(--accent); }
.tls-play { display:flex; align-items:center; gap:8px; padding:8px 10px; background:var(--panel); border:1px solid var(--border); border-radius:6px; margin-bottom:10px; }
.tls-play input[type=range] { flex:1; accent-color:var(--accent); min-width:120px; }
.tls-steplabel { font-variant-numeric:tabular-nums; width:170px; white-space:nowrap; overflow:hidden; text-align:right; color:var(--muted); contain:strict; height:18px; }
.tls-card { contain:layout paint; }
.tls-steplabel b { color:var(--fg); }
.tls-main { display:grid; grid-template-columns:minmax(0,1fr) 300px; gap:14px; align-items:start; }
.tls-col { min-width:0; }
.tls-card { background:var(--panel); border:1px solid var(--border); border-radius:6px; padding:8px 10px; margin-bottom:10px; position:relative; }
.tls-card h3 { margin:0 0 6px; font-size:12px; font-weight:500; color:var(--muted); text-transform:uppercase; letter-spacing:.04em; display:flex; gap:8px; align-items:center; }
.tls-card h3 .tls-sub { text-transform:none; letter-spacing:0; font-weight:400; }
.tls-stack { position:relative; }
.tls-stack canvas { display:block; }
.tls-stack canvas.tls-overlay { position:absolute; left:0; top:0; pointer-events:none; }
.tls-panels { display:flex; gap:10px; }
.tls-panels > div { flex:1; min-width:0; }
.tls-paneltop { display:flex; flex-wrap:wrap; align-items:center; gap:0 8px; margin-left:56px; min-height:26px; }
.tls-paneltop .tls-paneltitle { margin:0; flex:1 1 100%; }
.tls-heatscroll { max-height:75vh; overflow-y:auto; overflow-x:hidden; }
.tls-scalenote { margin:2px 0 0 56px; }
.tls-table { width:100%; border-collapse:collapse; font-size:12px; font-variant-numeric:tabular-nums; }
.tls-table th { text-align:right; color:var(--muted); font-weight:500; cursor:pointer; user-select:none; padding:2px 6px; border-bottom:1px solid var(--border); position:sticky; top:0; background:var(--panel); }
.tls-table td { text-align:right; padding:1px 6px; }
.tls-table tbody tr { cursor:pointer; }
.tls-table tbody tr:hover { background:var(--bg); }
.tls-table tr.on td:first-child { font-weight:700; color:var(--accent); }
.tls-tablewrap { max-height:320px; overflow:auto; }
.tls-score { font-variant-numeric:tabular-nums; }
.tls-reset { font-size:12px; }
.tls-paneltitle { font-size:12px; color:var(--muted); margin:0 0 4px 56px; white-space:nowrap; overflow:hidden; text-overflow:ellipsis; }
.tls-tokens { display:flex; margin-left:56px; overflow:hidden; height:22px; }
.tls-tokens span { flex:1 1 0; min-width:0; overflow:hidden; white-space:pre; text-overflow:clip; font:11px/22px ui-monospace, Menlo, monospace; text-align:center; border-right:1px solid var(--bg); color:#111; }
.tls-tooltip { position:fixed; z-index:10; pointer-events:none; background:rgba(32,33,36,.94); color:#fff; border-radius:4px; padding:6px 8px; font-size:12px; line-height:1.45; white-space:pre; display:none; max-width:360px; overflow:hidden; box-shadow:0 2px 6px rgba(0,0,0,.3); }
.tls-spark { display:grid; grid-template-columns:64px 130px 1fr; align-items:center; gap:6px; font-size:12px; color:var(--muted); cursor:pointer; }
.tls-ovkey { margin-right:12px; }
.tls-ovkey i { display:inline-block; width:16px; margin:0 4px 3px 0; vertical-align:middle; }
.tls-trajseq { margin:0 0 4px; }
.tls-trajb { margin-top:6px; }
.tls-spark span:last-child { text-align:right; font-size:11px; color:var(--fg); font-variant-numeric:tabular-nums; }
.tls-desc { color:var(--muted); margin:0 0 8px; }
.tls-desc p { margin:0; }
.tls-cut { color:var(--accent); font-size:12px; }
.tls-msg { color:var(--muted); padding:4px 0; }
.tls-error { color:#d93025; }
.tls-empty { max-width:640px; margin:48px auto; }
.tls-empty pre { background:var(--panel); border:1px solid var(--border); border-radius:6px; padding:12px; overflow:auto; font:12px/1.5 ui-monospace, Menlo, monospace; }
.tls-hint { color:var(--muted); font-size:12px; }
.tls-matchnote { margin:2px 0 0 56px; }
.tls-units { font-size:11px; }
.tls-units th, .tls-units td { padding:1px 3px; }
.tls-table td.tls-mark { font-weight:700; color:var(--accent); }
.tls-sigpick { display:flex; gap:6px; align-items:center; margin:0 0 4px; font-size:12px; color:var(--muted); }
.tls-identity canvas { display:block; cursor:pointer; margin:4px 0; }
.tls-searchbar { display:flex; flex-wrap:wrap; gap:4px 10px; align-items:center; margin-bottom:4px; font-size:12px; color:var(--muted); }
.tls-searchbar label { display:flex; gap:4px; align-items:center; }
.tls-searchcard .tls-tablewrap { max-height:260px; }
.tls-table tr.tls-query td { color:var(--muted); }
.tls button[disabled] { opacity:.55; cursor:default; }
@media (max-width: 900px) { .tls-main { grid-template-columns:1fr; } }
`;
