"""What every browser test does with a page: watch it for problems, open the tab, wait.

The `browser` fixture (conftest.py) is a real headless Chromium; these helpers are
shared by the tests/test_frontend_*.py files.
"""

import contextlib
import time
import urllib.parse


@contextlib.contextmanager
def watched_page(browser, width=1400, height=1000, *, http_errors=True):
    """Yields a fresh page; the test fails on any console error, page error or dialog
    it saw, and with `http_errors` on any HTTP answer of 400 or more.

    The problems seen so far are `page.problems`.
    """
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    problems = []
    if http_errors:
        page.on(
            "response",
            lambda r: (
                problems.append("HTTP %d: %s" % (r.status, r.url)) if r.status >= 400 else None
            ),
        )
    page.on(
        "console",
        lambda m: (
            problems.append("console %s: %s" % (m.type, m.text)) if m.type == "error" else None
        ),
    )
    page.on("pageerror", lambda e: problems.append("page error: %s" % e))

    def on_dialog(dialog):
        problems.append("dialog: %s" % dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.problems = problems
    yield page
    context.close()
    assert not problems, problems


def hash_for(view):
    """The URL hash opening the tab with the view state `view` (a dict), if any."""
    return "#lstm_states" + (
        "&lstm=" + urllib.parse.quote(urllib.parse.urlencode(view), safe="") if view else ""
    )


def open_tab(page, url, view=None):
    """Opens TensorBoard at `url` on the tab, freshly loaded; returns the tab's frame."""
    page.goto("about:blank")  # another hash of the same page would not reload the tab
    page.goto(url + "/" + hash_for(view))
    frame = page.wait_for_selector("iframe", timeout=30000).content_frame()
    frame.wait_for_selector("body[data-ready='1']", timeout=30000)
    return frame


def wait_until(predicate, timeout=15.0, interval=0.05):
    """Returns the first truthy value of `predicate()`; fails after `timeout` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met within %.1f s" % timeout)
