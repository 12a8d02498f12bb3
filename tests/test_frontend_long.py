"""End to end: a long sequence (2 x 100,000 x 64 LSTM, one step) in the LSTM States tab.

Real `tensorboard`, real headless Chromium. The tab must not fetch the whole sequence:
the heatmap and the line plots ask `states` for the visible window in about one bin per
pixel (`bins`), draw each bin's min and max so a one-timestep spike stays visible, and
fetch full resolution once a zoom holds no more timesteps than bins. Timings are
measured and printed (and saved in test-artifacts/), never asserted.
"""

import functools
import json
import os
import re
import time
import urllib.parse

import browser_pages
import numpy as np
import pytest
from conftest import tensorboard_server

import tb_lstm_states as tls

BATCH, TIME, UNITS = 2, 100_000, 64
SPIKE_T, SPIKE_UNIT, SPIKE = 61_234, 5, -40.0  # one timestep of one unit of sequence 0
GUTTER, RIGHT = 56, 10  # the time plots' margins (frontend/src/timeplot.ts)
UNIT_COLOUR = (0x4E, 0x79, 0xA7)  # PALETTE[0]: the first selected unit's line


def make_states():
    """Slow waves of amplitude 1.5 on every unit but the spike's, which stays within
    ±0.2 except for one timestep at -40 (exact in float16)."""
    rng = np.random.default_rng(0)
    t = np.arange(TIME, dtype=np.float32)[None, :, None]
    freq = rng.uniform(2e-5, 3e-4, UNITS).astype(np.float32)[None, None, :]
    amplitude = np.full(UNITS, 1.5, np.float32)
    amplitude[SPIKE_UNIT] = 0.2
    cell = np.sin(t * freq + np.arange(BATCH, dtype=np.float32)[:, None, None]) * amplitude
    cell[0, SPIKE_T, SPIKE_UNIT] = SPIKE

    def sig(x):
        return (1 / (1 + np.exp(-x))).astype(np.float32)

    layer = tls.LayerStates(
        hidden=np.tanh(cell),
        cell=cell,
        gates={
            "input": sig(cell),
            "forget": sig(cell + 1),
            "candidate": np.tanh(cell / 2),
            "output": sig(-cell),
        },
    )
    return tls.RecurrentStates(
        kind="lstm", layers=[layer], lengths=np.array([TIME, TIME - 5_000]), num_directions=1
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("long") / "logs"
    with tls.StateWriter(str(root / "market")) as writer:
        writer.add_states("lstm", make_states(), 0)
    with tensorboard_server(root, load_fast=True) as url:
        yield url


@pytest.fixture
def page(browser):
    """A fresh page that records the `states` requests and their answers' headers;
    fails the test on any console error, page error or dialog."""
    states, requested = [], []
    with browser_pages.watched_page(browser, http_errors=False) as page:

        def on_response(response):
            if "/data/plugin/lstm_states/states?" in response.url:
                query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(response.url).query))
                states.append(
                    {
                        "query": query,
                        "status": response.status,
                        "headers": response.headers,
                        "t": time.time(),
                    }
                )

        page.on("response", on_response)
        page.on(
            "request",
            lambda r: (
                requested.append(r.url.split("?")[-1]) if "/lstm_states/states?" in r.url else None
            ),
        )
        page.states, page.requested = states, requested
        yield page


wait_until = functools.partial(browser_pages.wait_until, timeout=20.0)


def answered(page, start, stop, timeout=20.0):
    """The recorded answers to `states` requests for the window [start, stop), once there
    is one. (Waits with Playwright's own timer: the sync API delivers events only inside
    its calls, and time.sleep would starve them.)"""
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = [
            s
            for s in page.states
            if (s["query"].get("start"), s["query"].get("stop")) == (str(start), str(stop))
        ]
        if found:
            return found
        page.wait_for_timeout(50)
    raise AssertionError(
        "no states answer for [%d, %d); requested: %r; answered: %r"
        % (start, stop, page.requested, [s["query"] for s in page.states])
    )


def canvas_rgb(frame, selector, x0, y0, w, h):
    """The RGB pixels of a canvas's rectangle (canvas pixels), as an [h, w, 3] array."""
    flat = frame.evaluate(
        """([sel, x, y, w, h]) => {
        const c = document.querySelector(sel);
        return Array.from(c.getContext('2d').getImageData(x, y, w, h).data); }""",
        [selector, int(x0), int(y0), int(w), int(h)],
    )
    return np.array(flat, np.uint8).reshape(int(h), int(w), 4)[..., :3].astype(int)


def deep_blue(rgb):
    """Where the diverging scale's far negative end is (the spike is far below the domain)."""
    return (rgb[..., 2] > 80) & (rgb[..., 0] < 40)


def heat_geometry(frame):
    """The heatmap's plot rectangle in canvas pixels (timeplot.ts / heatmap.ts: top 2, bottom 18)."""
    width, height, dpr = (
        frame.evaluate("""() => { const c = document.querySelector('.tls-heatmap canvas.tls-base');
        return [c.clientWidth, c.clientHeight, window.devicePixelRatio]; }""")
    )
    assert dpr == 1
    return {"x": GUTTER, "w": width - GUTTER - RIGHT, "y": 2, "h": height - 2 - 18}


def window_of(frame):
    """The zoomed timesteps [first, last + 1) from the heatmap's title, or None."""
    m = re.search(r"timesteps (\d+)–(\d+)", frame.inner_text(".tls-card h3"))
    return (int(m.group(1)), int(m.group(2)) + 1) if m else None


def drag(page, box, x0, x1, y):
    page.mouse.move(box["x"] + x0, box["y"] + y)
    page.mouse.down()
    page.mouse.move(box["x"] + (x0 + x1) / 2, box["y"] + y, steps=4)
    page.mouse.move(box["x"] + x1, box["y"] + y, steps=4)
    page.mouse.up()


def spike_in_heatmap(frame, geometry, t0, t1):
    """Columns around the spike's, in the spike unit's row, hold the deep blue; the rest of
    that row does not."""
    row_h = geometry["h"] / UNITS
    y = geometry["y"] + (SPIKE_UNIT + 0.5) * row_h
    x = geometry["x"] + (SPIKE_T - t0 + 0.5) / (t1 - t0) * geometry["w"]
    row = canvas_rgb(frame, ".tls-heatmap canvas.tls-base", geometry["x"], y, geometry["w"], 1)[0]
    blue = np.flatnonzero(deep_blue(row)) + geometry["x"]
    return blue.size > 0 and np.all(np.abs(blue - x) <= 3), blue.tolist(), x


def test_long_sequence_is_fetched_binned_and_zooms_to_full_resolution(page, server, artifacts_dir):
    # rows in index order (the default orders them by variance): the checks find a unit's row by its index
    view = urllib.parse.quote(
        urllib.parse.urlencode(
            {"run": "market", "tag": "lstm", "units": str(SPIKE_UNIT), "order": "index"}
        ),
        safe="",
    )
    started = time.time()
    page.goto(server + "/#lstm_states&lstm=" + view)
    frame = page.wait_for_selector("iframe", timeout=30000).content_frame()
    frame.wait_for_selector("body[data-ready='1']", timeout=30000)
    seen = time.time()
    timing = frame.evaluate("""() => ({ready: window.__tls.ready, origin: performance.timeOrigin,
        states: performance.getEntriesByType('resource').filter(e => e.name.includes('/states?'))
          .map(e => ({url: e.name.split('?')[1], start: e.startTime, end: e.responseEnd, bytes: e.encodedBodySize}))})""")
    geometry = heat_geometry(frame)

    # the first paint came from one binned request for the whole sequence: about one bin per pixel
    first = page.states[0]
    q, h = first["query"], first["headers"]
    assert (q["kind"], q["sequence"], q["start"], q["stop"]) == ("cell", "0", "0", str(TIME))
    bins = int(q["bins"])
    assert geometry["w"] <= bins < geometry["w"] + 256
    assert (
        first["status"] == 200
        and h["x-binned"] == "1"
        and h["x-shape"] == "2,%d,%d" % (bins, UNITS)
    )
    assert (h["x-start"], h["x-stop"]) == ("0", str(TIME))
    assert window_of(frame) is None

    # a spike 1 timestep wide in 100,000 is in the heatmap, in its unit's row at its column
    _, _, x = wait_until(
        lambda: (lambda r: r if r[0] else None)(spike_in_heatmap(frame, geometry, 0, TIME))
    )
    # ... and in the line plot of that unit: a span from its ±0.2 down past the plot's bottom
    lines = frame.evaluate("""() => { const c = document.querySelector('.tls-lines canvas.tls-base');
        return [c.clientWidth, c.clientHeight]; }""")
    plot_top, plot_h = 20, lines[1] - 20 - 18
    band = canvas_rgb(
        frame,
        ".tls-lines canvas.tls-base",
        GUTTER,
        plot_top + 0.8 * plot_h,
        lines[0] - GUTTER - RIGHT,
        0.2 * plot_h,
    )
    coloured = np.abs(band - np.array(UNIT_COLOUR)).sum(axis=-1) < 60
    columns = np.flatnonzero(coloured.any(axis=0)) + GUTTER
    line_x = GUTTER + (SPIKE_T + 0.5) / TIME * (lines[0] - GUTTER - RIGHT)
    assert columns.size and np.all(np.abs(columns - line_x) <= 3), (columns.tolist(), line_x)
    page.screenshot(path=os.path.join(artifacts_dir, "frontend-long-100k.png"), full_page=True)

    # zoom to about 20,000 timesteps around the spike: still more than bins, binned
    box = frame.query_selector(".tls-heatmap canvas.tls-base").bounding_box()
    drag(
        page,
        box,
        x - 0.1 * geometry["w"],
        x + 0.1 * geometry["w"],
        geometry["y"] + geometry["h"] / 2,
    )
    t0, t1 = wait_until(lambda: window_of(frame))
    assert 10_000 < t1 - t0 < 30_000 and t0 < SPIKE_T < t1
    zoomed = answered(page, t0, t1)
    assert zoomed[0]["headers"]["x-binned"] == "1"
    assert zoomed[0]["headers"]["x-shape"] == "2,%d,%d" % (bins, UNITS)
    _ok, _blue, x = wait_until(
        lambda: (lambda r: r if r[0] else None)(spike_in_heatmap(frame, geometry, t0, t1))
    )

    # zoom to fewer timesteps than bins: one full-resolution request for that window
    px_per_t = geometry["w"] / (t1 - t0)
    drag(page, box, x - 300 * px_per_t, x + 300 * px_per_t, geometry["y"] + geometry["h"] / 2)
    t0, t1 = wait_until(
        lambda: (lambda w: w if w and w[1] - w[0] < 1000 else None)(window_of(frame))
    )
    assert t0 < SPIKE_T < t1
    exact = answered(page, t0, t1)
    assert exact[0]["query"]["bins"] == str(bins)
    assert exact[0]["headers"]["x-binned"] == "0"
    assert exact[0]["headers"]["x-shape"] == "%d,%d" % (t1 - t0, UNITS)
    wait_until(lambda: spike_in_heatmap(frame, geometry, t0, t1)[0])
    # at full resolution the tooltip shows the stored value itself
    x = geometry["x"] + (SPIKE_T - t0 + 0.5) / (t1 - t0) * geometry["w"]
    y = geometry["y"] + (SPIKE_UNIT + 0.5) * geometry["h"] / UNITS
    # (the column is about 1.6 px wide: look for it within a few pixels of where it should be)
    target = "unit %d · timestep %d" % (SPIKE_UNIT, SPIKE_T)

    def hover(dx):
        page.mouse.move(box["x"] + x + dx, box["y"] + y)
        text = wait_until(
            lambda: frame.inner_text(".tls-tooltip") if frame.is_visible(".tls-tooltip") else None
        )
        return text if target in text else None

    tip = next((t for t in map(hover, (0, 1, -1, 2, -2, 3, -3)) if t), None)
    assert tip, "no column within 3 px of x=%.1f shows timestep %d" % (x, SPIKE_T)
    assert "unit %d · timestep %d" % (SPIKE_UNIT, SPIKE_T) in tip
    assert re.search(r"value -40(\.0+)?\b", tip), tip
    page.screenshot(path=os.path.join(artifacts_dir, "frontend-long-100k-zoom.png"), full_page=True)

    # zoom out: the whole sequence's bins again, from the cache (no second request)
    frame.dblclick(
        ".tls-heatmap canvas.tls-base", position={"x": box["width"] / 2, "y": geometry["y"] + 10}
    )
    wait_until(lambda: window_of(frame) is None)
    wait_until(lambda: spike_in_heatmap(frame, geometry, 0, TIME)[0])
    whole = [
        s
        for s in page.states
        if s["query"].get("start") == "0" and s["query"].get("stop") == str(TIME)
    ]
    assert len(whole) == 1
    # the whole sequence was never asked for: every request had a window and bins
    assert all("bins" in s["query"] and "start" in s["query"] for s in page.states)

    record = {
        "sequence": [BATCH, TIME, UNITS],
        "heatmap_first_paint_ms_after_iframe_start": round(timing["ready"], 1),
        "states_requests_before_first_paint": timing["states"],
        "seconds_from_goto_to_ready_seen": round(seen - started, 3),
        "bins": bins,
    }
    with open(os.path.join(artifacts_dir, "frontend-long-100k-timing.json"), "w") as f:
        json.dump(record, f, indent=1)
    print("\nlong sequence timing:", json.dumps(record))
