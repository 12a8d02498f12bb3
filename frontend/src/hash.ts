// Reads and writes the view state in the URL hash: TensorBoard's own (the parent page,
// so a bookmark of the tab restores the view) when reachable, else the iframe's.

import { decodeState, encodeState, joinHash, splitHash, ViewState } from "./hashstate";

function target(): Window {
  try {
    if (window.parent !== window && window.parent.location.hash !== undefined) return window.parent;
  } catch {
    // a cross-origin parent
  }
  return window;
}

export function readHash(): { state: ViewState; present: boolean } {
  const { ours } = splitHash(target().location.hash);
  return { state: decodeState(ours ?? ""), present: ours !== null };
}

export function writeHash(state: ViewState): void {
  const w = target();
  const next = joinHash(w.location.hash, encodeState(state));
  if (next === w.location.hash || (next === "#" && !w.location.hash)) return;
  try {
    w.history.replaceState(w.history.state, "", next);
  } catch {
    // e.g. a sandboxed document: the view still works, it is just not bookmarkable
  }
}
