// Keyboard focus inside TensorBoard's iframe: the tab takes focus when it loads and when
// its header in TensorBoard's bar is clicked, and keys pressed in TensorBoard's page
// while the tab is on screen (and no field there has focus) reach the tab too.

/** Whether this tab's iframe is on screen in TensorBoard's page. */
function onScreen(): boolean {
  const frame = window.frameElement as HTMLElement | null;
  return !frame || frame.getClientRects().length > 0;
}

function typing(target: EventTarget | null): boolean {
  const t = target as HTMLElement | null;
  const tag = t?.tagName;
  return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || !!t?.isContentEditable;
}

/** Focuses `root` (and this window) now, after a click on the tab's header, and forwards
 * the parent page's keys to `onKey` while the tab is shown. */
export function keepFocus(root: HTMLElement, onKey: (e: KeyboardEvent) => void): void {
  root.tabIndex = -1;
  const take = () => {
    if (!onScreen()) return;
    window.focus();
    const active = document.activeElement;
    if (!active || active === document.body) root.focus({ preventScroll: true });
  };
  take();
  let parent: Document | null = null;
  try {
    parent = window.parent !== window ? window.parent.document : null;
  } catch {
    parent = null; // a cross-origin parent: only the iframe's own focus
  }
  if (!parent) return;
  parent.addEventListener("click", (e) => {
    // a click in TensorBoard's bar (the tab's header among others): once the tab shows, take focus
    const t = e.target as HTMLElement | null;
    if (t && (t.closest("[role=tab], .mat-tab-label, .mat-mdc-tab, plugin-selector, .plugins") || t.closest("header, mat-toolbar"))) {
      setTimeout(take, 0);
      setTimeout(take, 150);
    }
  }, true);
  parent.addEventListener("keydown", (e) => {
    if (!onScreen() || typing(e.target)) return;
    onKey(e);
  });
}
