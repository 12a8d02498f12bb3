"""End to end, issue 17: the tab as a practitioner's instrument.

Real `tensorboard`, headless Chromium. One logdir: run `a` (6 steps whose range grows with
the step, a price/prediction pair, a 0/1 `anomaly` label, a `time` series of epoch
seconds, a description longer than the backend's cap) and run `b` (steps 0 and 2 only, with
tokens).
Every test fails on any console error, page error or dialog.
"""

import re
import time

import browser_pages
import numpy as np
import pytest
from browser_pages import open_tab, wait_until
from conftest import tensorboard_server

import tb_lstm_states as tls
from tb_lstm_states.states import LayerStates, RecurrentStates

BATCH, TIME, UNITS = 3, 64, 20
ONSETS = [20, 45]  # the anomaly label's onsets; the states jump there
T0 = 1_700_000_000
TOKENS = [["abcde"[(t + b) % 5] for t in range(TIME)] for b in range(BATCH)]  # run b's tokens


def make_states(step, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(TIME)[:, None]
    freq = rng.uniform(0.05, 0.5, UNITS)
    scale = 0.5 * (1 + step)  # the range grows with the step: a per-step scale would differ
    cell = np.stack([np.sin(t * freq + b) * scale for b in range(BATCH)])
    for onset in ONSETS:
        cell[:, onset:] += 2.0 * scale  # a jump the change track flags
    cell[0, 10, 3] = 30.0 * scale  # one outlier: a per-step robust scale clips it

    def sig(x):
        return 1 / (1 + np.exp(-x))

    layer = LayerStates(
        hidden=np.tanh(cell).astype(np.float32),
        cell=cell.astype(np.float32),
        gates={
            k: np.asarray(v, np.float32)
            for k, v in {
                "input": sig(cell),
                "forget": sig(cell + 1),
                "candidate": np.tanh(cell / 2),
                "output": sig(-cell),
            }.items()
        },
    )
    return RecurrentStates(
        kind="lstm", layers=[layer], lengths=np.array([TIME] * BATCH), num_directions=1
    )


def series():
    t = np.arange(TIME)
    price = np.stack([100 + 3 * np.sin(t / 6 + b) for b in range(BATCH)])
    prediction = price + 0.4 * np.cos(t / 3)
    anomaly = np.zeros((BATCH, TIME))
    anomaly[:, ONSETS] = 1
    clock = np.stack([T0 + 60.0 * t for _ in range(BATCH)])
    return {
        "price": price.astype(np.float32),
        "prediction": prediction.astype(np.float32),
        "anomaly": anomaly.astype(np.float32),
        "time": clock,
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("issue17") / "logs"
    long_description = "A *long* description. " + "x" * 5000
    with tls.StateWriter(str(root / "a")) as writer:
        for step in range(6):
            writer.add_states(
                "lstm", make_states(step, 0), step, series=series(), description=long_description
            )
    with tls.StateWriter(str(root / "b")) as writer:
        for step in (0, 2):
            writer.add_states("lstm", make_states(step, 1), step, series=series(), tokens=TOKENS)
    with tensorboard_server(root, load_fast=True) as url:
        yield url


@pytest.fixture
def page(browser):
    """A fresh page; fails the test on any console error, page error, dialog or HTTP error."""
    with browser_pages.watched_page(browser) as page:
        yield page


def step_label(frame):
    return int(re.search(r"step (-?\d+)", frame.inner_text(".tls-steplabel")).group(1))


def pixels(frame, index=0):
    return frame.evaluate(
        "i => document.querySelectorAll('.tls-heatmap canvas.tls-base')[i].toDataURL()", index
    )


def settled(frame, index=0, quiet=0.6):
    """The heatmap's pixels once they stop changing for `quiet` seconds."""
    last, since = None, time.time()
    deadline = time.time() + 20
    while time.time() < deadline:
        now = pixels(frame, index)
        if now != last:
            last, since = now, time.time()
        elif time.time() - since >= quiet:
            return now
        time.sleep(0.1)
    raise AssertionError("the heatmap never settled")


def scale_note(frame):
    return frame.inner_text(".tls-scalenote")


def test_step_zero_after_the_last_step_is_drawn_like_step_zero_opened_directly(page, server):
    view = {"run": "a", "tag": "lstm", "step": "0"}
    frame = open_tab(page, server, view)
    wait_until(
        lambda: "fixed over 6 of 6 steps" in scale_note(frame) or "all 6 steps" in scale_note(frame)
    )
    direct = settled(frame)
    page.keyboard.press("End")
    wait_until(lambda: step_label(frame) == 5)
    settled(frame)
    page.keyboard.press("Home")
    wait_until(lambda: step_label(frame) == 0)
    assert settled(frame) == direct
    # per step is an option: then step 0 has its own, narrower scale
    frame.select_option("select[aria-label='colour scale']", "step")
    wait_until(lambda: "per step" in scale_note(frame))
    assert settled(frame) != direct


def test_header_click_gives_the_keys_to_the_tab(page, server):
    frame = open_tab(page, server, {"run": "a", "tag": "lstm"})
    assert step_label(frame) == 5
    # click only the tab's header in TensorBoard's bar (the tab is already open)
    header = page.locator("text=/LSTM States/i").first
    header.click()
    page.keyboard.press("ArrowLeft")
    wait_until(lambda: step_label(frame) == 4)
    assert re.search(r"step 4\b", frame.inner_text(".tls-steplabel"))
    # and on load, with no click at all, the keys work too
    frame = open_tab(page, server, {"run": "a", "tag": "lstm", "step": "3"})
    page.keyboard.press("ArrowLeft")
    wait_until(lambda: step_label(frame) == 2)


def plotted(frame):
    return frame.evaluate("() => decodeURIComponent(parent.location.hash)")


def test_clicking_the_top_row_never_removes_a_plotted_unit(page, server):
    frame = open_tab(page, server, {"run": "a", "tag": "lstm", "order": "variance"})
    box = frame.query_selector(".tls-heatmap canvas.tls-base").bounding_box()
    geometry_h = box["height"] - 2 - 18
    y = 2 + 0.5 * geometry_h / UNITS  # the top row
    wait_until(lambda: "units=" in plotted(frame))
    top = int(re.search(r"units=(\d+)", plotted(frame)).group(1))
    for _ in range(3):
        frame.click(".tls-heatmap canvas.tls-base", position={"x": box["width"] / 2, "y": y})
        time.sleep(0.3)
        units = re.search(r"units=([\d.]+)", plotted(frame)).group(1).split(".")
        assert str(top) in units
    # the legend removes it
    legend = frame.query_selector(".tls-lines canvas.tls-base").bounding_box()
    frame.click(".tls-lines canvas.tls-base", position={"x": 56 + 20, "y": 8})
    wait_until(
        lambda: (
            str(top)
            not in (re.search(r"units=([\d.]*)", plotted(frame)) or [None, ""])[1].split(".")
        )
    )
    assert legend


def test_colour_bar_marks_clipping_and_every_panel_has_its_own(page, server):
    frame = open_tab(page, server, {"run": "a", "tag": "lstm", "step": "5", "scale": "step"})
    text = wait_until(
        lambda: (lambda t: t if "clipped" in t else None)(
            frame.get_attribute(".tls-legend", "aria-label")
        )
    )
    assert re.search(r"data reach .*max", text)
    # compare with run b at a step it lacks: said, never substituted
    frame.select_option("select[aria-label='compare with']", "b")
    wait_until(lambda: "b has no step 5" in frame.inner_text(".tls-panels"))
    # at a step both have: two panels, a difference, three colour bars
    page.keyboard.press("Home")
    wait_until(
        lambda: (
            frame.evaluate(
                "[...document.querySelectorAll('.tls-heatmap')].filter(e => e.offsetParent).length"
            )
            == 3
        )
    )
    legends = frame.evaluate(
        "[...document.querySelectorAll('.tls-panels .tls-legend')].filter(e => e.offsetParent).map(e => e.getAttribute('aria-label'))"
    )
    assert len(legends) == 3 and legends[2].startswith("Δ")
    # a click in the second panel plots run b's unit, labelled with its run
    box = frame.query_selector_all(".tls-heatmap canvas.tls-base")[1].bounding_box()
    frame.query_selector_all(".tls-heatmap canvas.tls-base")[1].click(
        position={"x": box["width"] / 2, "y": 10}
    )
    wait_until(lambda: "cunits=" in plotted(frame))


def test_description_cut_is_said(page, server):
    frame = open_tab(page, server, {"run": "a", "tag": "lstm"})
    assert "description cut" in frame.inner_text(".tls-desc")


def test_dark_scale_keeps_extremes_bright_and_zero_neutral(page, server):
    frame = open_tab(page, server, {"run": "a", "tag": "lstm"})
    page.evaluate("document.body.classList.add('dark-mode')")
    wait_until(lambda: frame.evaluate("document.documentElement.dataset.theme") == "dark")

    def measure():
        return frame.evaluate("""() => {
            const c = document.querySelector('.tls-legend');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            const at = (x) => { const i = (4 * (5 * c.width + x)); const f = v => v / 255; return 0.2126 * f(d[i]) + 0.7152 * f(d[i + 1]) + 0.0722 * f(d[i + 2]); };
            const s = c.width / 300;
            return [at(Math.round(52 * s)), at(Math.round(125 * s)), at(Math.round(198 * s))]; }""")

    # the bar is redrawn on the next frame after the theme changes
    lum = wait_until(
        lambda: (lambda v: v if v[0] > v[1] + 0.15 and v[2] > v[1] + 0.15 else None)(measure())
    )
    low, centre, high = lum
    assert low > centre + 0.15 and high > centre + 0.15, lum


def test_series_share_an_axis_label_spans_residual_and_timestamps(page, server):
    frame = open_tab(page, server, {"run": "a", "tag": "lstm"})
    wait_until(lambda: frame.query_selector(".tls-residual") and frame.is_visible(".tls-residual"))
    assert (
        frame.eval_on_selector("select[aria-label='residual pair']", "e => e.value")
        == "prediction-price"
    )
    # the time axis reads as timestamps (the `time` series, UTC): 1700000000 is 22:13:20
    assert frame.get_attribute(".tls", "data-time-axis") == "utc 22:13:20"
    # the anomaly view scores the flags against the label, this step and across steps
    score = wait_until(
        lambda: (lambda t: t if "recall" in t and "across 6 steps" in t else None)(
            frame.inner_text(".tls-anomalies")
        ),
        timeout=30,
    )
    assert re.search(r"precision \d+%", score) and "lead time" in score
    assert "sequences" in score

    # the threshold is a control: a low one flags more
    def marked():
        """How many anomalies the change track marks, or None while it has not drawn."""
        found = re.search(r"(\d+) anomal(?:y|ies) marked", frame.inner_text(".tls-main"))
        return None if found is None else int(found.group(1))

    (before,) = wait_until(lambda: (lambda n: None if n is None else (n,))(marked()))
    frame.fill("input[aria-label='anomaly threshold']", "0.5")
    frame.press("input[aria-label='anomaly threshold']", "Tab")
    wait_until(lambda: (lambda n: n is not None and n > before)(marked()))
    wait_until(lambda: "thr%3D0.5" in page.evaluate("location.hash"))


def test_unit_table_sorts_and_plots(page, server):
    frame = open_tab(page, server, {"run": "a", "tag": "lstm"})
    frame.wait_for_selector(".tls-table tbody tr", timeout=15000)
    header = frame.query_selector(".tls-table th[data-key='variance']")
    header.click()
    first = frame.eval_on_selector_all(
        ".tls-table tbody tr",
        "rs => rs.map(r => Number(r.querySelector(\"td[data-key='variance']\").textContent))",
    )
    assert first == sorted(first) or first == sorted(first, reverse=True)
    unit = frame.get_attribute(".tls-table tbody tr:nth-child(5)", "data-unit")
    frame.click(".tls-table tbody tr:nth-child(5)")
    wait_until(lambda: re.search(r"units=[\d.]*\b%s\b" % unit, plotted(frame)))


def test_defaults_and_wheel_zoom_and_exports(page, server):
    frame = open_tab(page, server)
    # the run with the most recent data, ordered automatically
    assert frame.eval_on_selector("select[aria-label='run']", "e => e.value") == "a"
    assert frame.eval_on_selector("select[aria-label='unit order']", "e => e.value") == "auto"
    box = frame.query_selector(".tls-lines canvas.tls-base").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -300)
    wait_until(lambda: "timesteps" in frame.inner_text(".tls-card h3"))
    frame.click("button[aria-label='reset zoom']")
    wait_until(lambda: "timesteps" not in frame.inner_text(".tls-card h3"))

    def export(what):
        with page.expect_download(timeout=60000) as info:
            frame.select_option("select[aria-label='export']", what)
        d = info.value
        with open(d.path(), "rb") as f:
            return d.suggested_filename, f.read()

    names = set()
    for what in ("heatmap.png", "lines.png", "series.png"):
        name, body = export(what)
        assert body[:8] == b"\x89PNG\r\n\x1a\n"
        names.add(name)
    assert len(names) == 3
    name, body = export("webm")
    assert name.startswith("playback") and body[:4] == b"\x1a\x45\xdf\xa3"
    assert b"\x44\x89" in body[:4096]  # the Duration element is written in


def card_text(frame, selector):
    return frame.evaluate("s => document.querySelector(s).closest('.tls-card').innerText", selector)


def trajectory_labels(frame):
    return frame.evaluate(
        "[...document.querySelectorAll('.tls-trajectory canvas.tls-base')]"
        ".filter(c => c.offsetParent).map(c => c.getAttribute('aria-label'))"
    )


def orange_pixels(frame):
    """Pixels of the compared run's colour (PALETTE[1], #f28e2b) on the change track."""
    return frame.evaluate("""() => {
        const c = document.querySelector('.tls-changes canvas.tls-base');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) if (Math.abs(d[i] - 0xf2) < 24 && Math.abs(d[i + 1] - 0x8e) < 24 && d[i + 2] < 0x60) n++;
        return n; }""")


def test_compare_mode_shows_both_runs_in_changes_trajectory_overview_and_lines(page, server):
    frame = open_tab(page, server, {"run": "a", "tag": "lstm", "step": "0", "cmp": "b"})
    # the change track: both runs named, the other run's track drawn over it
    wait_until(lambda: re.search(r"b step 0: \d+ anomal", card_text(frame, ".tls-changes")))
    assert "a step 0:" in card_text(frame, ".tls-changes")
    wait_until(lambda: orange_pixels(frame) > 500)  # its line over the track
    # the trajectory: one panel per run, each named by its run and step, with a colour legend
    labels = wait_until(
        lambda: (
            lambda ls: ls if len(ls) == 2 and all("colour: timestep" in x for x in ls) else None
        )(trajectory_labels(frame))
    )
    assert labels[0].startswith("a · step 0") and labels[1].startswith("b · step 0"), labels
    wait_until(lambda: "its own axes" in frame.inner_text(".tls-trajectory"))
    # the overview: a legend naming each run, both values beside each sparkline
    wait_until(lambda: re.search(r"\d / [\d–]", frame.inner_text(".tls-overview")))
    legend = frame.inner_text(".tls-ovlegend")
    assert "a" in legend and "b" in legend
    # lines: units of both runs, each labelled with its run
    wait_until(lambda: "cunits=" in plotted(frame) and re.search(r"units=\d", plotted(frame)))
    # a step the other run lacks is said in each of them, never substituted
    page.keyboard.press("ArrowRight")
    wait_until(lambda: step_label(frame) == 1)
    wait_until(lambda: "b has no step 1" in card_text(frame, ".tls-changes"))
    wait_until(lambda: orange_pixels(frame) < 100)  # the legend swatch only
    wait_until(lambda: "b has no step 1" in frame.inner_text(".tls-trajectory"))
    assert trajectory_labels(frame)[1].startswith("b · step 1")
    wait_until(lambda: "no step 1" in frame.inner_text(".tls-overview"))
    # and at the next step both have, both are back
    page.keyboard.press("ArrowRight")
    wait_until(lambda: step_label(frame) == 2)
    wait_until(lambda: re.search(r"b step 2: \d+ anomal", card_text(frame, ".tls-changes")))
    wait_until(lambda: "b has no step" not in frame.inner_text(".tls-trajectory"))


def test_trajectory_colours_by_token_sequence_or_series_for_one_a_set_or_all(page, server):
    requests = []
    page.on("request", lambda r: requests.append(r.url) if "/projection?" in r.url else None)
    frame = open_tab(page, server, {"run": "b", "tag": "lstm", "color": "#token", "tseq": "all"})
    # the legend names the five tokens, each with its colour
    wait_until(
        lambda: (
            lambda ls: ls and re.search(r"colour: token: [a-e], [a-e], [a-e], [a-e], [a-e]$", ls[0])
        )(trajectory_labels(frame))
    )
    wait_until(lambda: "3 sequences" in frame.inner_text(".tls-trajectory"))
    assert (
        frame.eval_on_selector("select[aria-label='trajectory sequences']", "e => e.value") == "all"
    )
    # a chosen set, coloured by sequence: the route is asked for exactly those sequences
    frame.select_option("select[aria-label='colour by']", "#sequence")
    frame.select_option("select[aria-label='trajectory sequences']", "set")
    frame.fill("input[aria-label='trajectory sequence set']", "0, 2")
    frame.press("input[aria-label='trajectory sequence set']", "Tab")
    wait_until(lambda: trajectory_labels(frame)[0].endswith("colour: sequence: #0, #2"))
    wait_until(lambda: "2 sequences" in frame.inner_text(".tls-trajectory"))
    assert any("sequence=0%2C2" in u for u in requests), requests
    wait_until(lambda: "tseq%3D0.2" in page.evaluate("location.hash"))
    # by a logged series: a ramp over the chosen sequences' values
    frame.select_option("select[aria-label='colour by']", "price")
    wait_until(
        lambda: re.search(r"colour: price from [\d.]+ to [\d.]+$", trajectory_labels(frame)[0])
    )
    # one sequence again: the selected one
    frame.select_option("select[aria-label='trajectory sequences']", "")
    wait_until(lambda: "variance · sequence #0" in frame.inner_text(".tls-trajectory"))
    # the colours are drawn: more than one hue on the canvas
    hues = frame.evaluate("""() => {
        const c = document.querySelector('.tls-trajectory canvas.tls-base');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height - 40).data;
        const seen = new Set();
        for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 200 && Math.max(d[i], d[i + 1], d[i + 2]) - Math.min(d[i], d[i + 1], d[i + 2]) > 80) seen.add((d[i] >> 5) + ',' + (d[i + 1] >> 5) + ',' + (d[i + 2] >> 5));
        return seen.size; }""")
    assert hues > 3, hues
