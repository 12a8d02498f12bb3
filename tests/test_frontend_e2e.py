"""End to end: the LSTM States tab in headless Chromium against a real `tensorboard`.

One TensorBoard serves a small logdir for the whole module (two runs, one of them named
like an XSS payload, tokens too); a second, on an empty logdir, checks the how-to.
Screenshots go to test-artifacts/.
"""

import functools
import io
import os
import re
import time
import urllib.parse

import browser_pages
import numpy as np
import pytest
from browser_pages import open_tab
from conftest import http_get, tensorboard_server

import tb_lstm_states as tls
from tb_lstm_states.states import LayerStates, RecurrentStates

HOSTILE = "<img src=x onerror=alert(1)>"
BATCH, TIME, UNITS = 2, 48, 24
LENGTHS = [48, 40]
JUMP = 30
WORDS = ["the", "cat", "sat", HOSTILE, "on", "a", "mat", "&amp;", "<b>x</b>"]


def make_states(step, seed):
    """LSTM-like states whose pattern drifts with the step, so steps look different."""
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0.05, 0.6, UNITS)
    phase = rng.uniform(0, 2 * np.pi, UNITS)
    t = np.arange(TIME)[:, None]
    scale = 0.3 + 0.7 * (1 - np.exp(-step / 3))
    cell = np.stack(
        [np.sin(t * freq + phase + 0.6 * step) * scale * (1.5 + b) for b in range(BATCH)]
    )
    if step == 5:
        cell[:, JUMP:] *= -1  # a sudden change: the change track flags it
    cell[1, LENGTHS[1] :] = 0  # the second sequence is shorter; the rest is padding

    def sig(x):
        return 1 / (1 + np.exp(-x))

    layer = LayerStates(
        hidden=np.tanh(cell).astype(np.float32),
        cell=cell.astype(np.float32),
        gates={
            name: np.asarray(g, np.float32)
            for name, g in {
                "input": sig(cell),
                "forget": sig(cell + 1),
                "candidate": np.tanh(cell / 2),
                "output": sig(-cell),
            }.items()
        },
    )
    for _name, array in layer.gates.items():
        array[1, LENGTHS[1] :] = 0
    layer.hidden[1, LENGTHS[1] :] = 0
    return RecurrentStates(kind="lstm", layers=[layer], lengths=np.array(LENGTHS), num_directions=1)


def write_steps(run_dir, steps, seed):
    tokens = [[WORDS[(i + b) % len(WORDS)] for i in range(TIME)] for b in range(BATCH)]
    series = {"signal": np.stack([np.sin(np.arange(TIME) / 4 + b) for b in range(BATCH)])}
    with tls.StateWriter(str(run_dir)) as writer:
        for step in steps:
            writer.add_states(
                "lstm",
                make_states(step, seed),
                step,
                tokens=tokens,
                series=series,
                description="States of a *test* model",
            )


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("frontend") / "logs"
    write_steps(root / "run_a", range(6), seed=0)
    write_steps(root / HOSTILE, range(4), seed=1)
    return root


@pytest.fixture(scope="module")
def server(logdir):
    with tensorboard_server(logdir, load_fast=True) as url:
        yield url


@pytest.fixture
def page(browser):
    """A fresh page; fails the test on any console error, page error or dialog."""
    with browser_pages.watched_page(browser, http_errors=False) as page:
        yield page


wait_until = functools.partial(browser_pages.wait_until, timeout=10.0)


def step_label(frame):
    return int(re.search(r"step (-?\d+)", frame.inner_text(".tls-steplabel")).group(1))


def heatmap_pixels(frame, index=0):
    return frame.evaluate(
        "i => document.querySelectorAll('.tls-heatmap canvas.tls-base')[i].toDataURL()", index
    )


def shot(page, artifacts_dir, name):
    page.screenshot(path=os.path.join(artifacts_dir, "frontend-%s.png" % name), full_page=True)


def test_tab_renders_every_view(page, server, artifacts_dir):
    frame = open_tab(page, server)
    assert "LSTM STATES" in page.inner_text("body").upper()
    # the run with the most recent data (its last step is 5, the other's 3), at its latest step
    assert frame.eval_on_selector("select[aria-label='run']", "e => e.value") == "run_a"
    assert step_label(frame) == 5
    for selector in [
        ".tls-heatmap",
        ".tls-lines",
        ".tls-changes",
        ".tls-series",
        ".tls-spark",
        ".tls-tokens span",
    ]:
        assert frame.query_selector(selector) is not None, selector
    # the description is the backend's safe HTML, rendered
    assert frame.inner_text(".tls-desc").strip() == "States of a test model"
    wait_until(lambda: "of variance" in frame.inner_text(".tls-main"))  # the PCA trajectory arrived
    shot(page, artifacts_dir, "tab")


def test_keys_step_and_play_and_heatmap_changes(page, server, artifacts_dir):
    frame = open_tab(
        page, server, {"run": "run_a", "tag": "lstm", "step": "0", "loop": "0", "speed": "4"}
    )
    assert step_label(frame) == 0
    before = heatmap_pixels(frame)
    frame.click(".tls-steplabel")  # focus the iframe without touching a control
    page.keyboard.press("ArrowRight")
    wait_until(lambda: step_label(frame) == 1)
    after = wait_until(lambda: (lambda p: p if p != before else None)(heatmap_pixels(frame)))
    assert after != before
    page.keyboard.press("ArrowLeft")
    wait_until(lambda: step_label(frame) == 0)
    page.keyboard.press("Space")
    assert frame.get_attribute("button.tls-playbtn", "aria-label") == "pause"
    wait_until(lambda: step_label(frame) >= 2)  # 4 steps/s: it plays on by itself
    page.keyboard.press("Space")
    assert frame.get_attribute("button.tls-playbtn", "aria-label") == "play"
    paused_at = step_label(frame)
    time.sleep(0.6)
    assert step_label(frame) == paused_at
    # the view state is in TensorBoard's URL hash, so it can be bookmarked
    wait_until(lambda: "lstm=" in page.evaluate("location.hash"))
    state = urllib.parse.parse_qs(
        urllib.parse.unquote(page.evaluate("location.hash").split("lstm=")[1])
    )
    assert state["run"] == ["run_a"]
    shot(page, artifacts_dir, "playback")


def test_hover_shows_the_served_value(page, server, artifacts_dir):
    frame = open_tab(page, server, {"run": "run_a", "tag": "lstm", "step": "3", "seq": "1"})
    canvas = frame.query_selector(".tls-heatmap canvas.tls-base")
    box = canvas.bounding_box()
    frame.hover(
        ".tls-heatmap canvas.tls-base", position={"x": box["width"] * 0.6, "y": box["height"] * 0.4}
    )
    text = wait_until(
        lambda: frame.inner_text(".tls-tooltip") if frame.is_visible(".tls-tooltip") else None
    )
    unit, t = map(int, re.search(r"unit (\d+) · timestep (\d+)", text).groups())
    shown = float(re.search(r"value (\S+)", text).group(1))
    status, _, body = http_get(
        server
        + "/data/plugin/lstm_states/states?"
        + urllib.parse.urlencode(
            dict(run="run_a", tag="lstm", step=3, layer=0, kind="cell", format="npy")
        )
    )
    assert status == 200
    served = np.load(io.BytesIO(body))[1, t, unit]
    assert shown == pytest.approx(float(served), rel=1e-3, abs=1e-4)
    assert re.search(r"token “.*”", text)
    assert "signal" in text
    shot(page, artifacts_dir, "tooltip")


def test_compare_draws_two_panels_and_a_difference(page, server, artifacts_dir):
    frame = open_tab(page, server, {"run": "run_a", "tag": "lstm", "cmp": "run_a", "cstep": "0"})
    wait_until(
        lambda: (
            frame.evaluate(
                "[...document.querySelectorAll('.tls-heatmap')].filter(e => e.offsetParent).length"
            )
            == 3
        )
    )
    titles = frame.eval_on_selector_all(
        ".tls-paneltitle", "els => els.filter(e => e.offsetParent).map(e => e.textContent)"
    )
    assert titles[0] == "run_a · step 5" and titles[1] == "run_a · step 0"
    assert titles[2].startswith("difference")
    assert heatmap_pixels(frame, 0) != heatmap_pixels(frame, 1)
    # compare with the other run through the selector: two panels (shapes match: plus the difference)
    frame.select_option("select[aria-label='compare with']", HOSTILE)
    wait_until(lambda: HOSTILE + " · step 0" in frame.inner_text(".tls-panels"))
    wait_until(
        lambda: (
            frame.evaluate(
                "[...document.querySelectorAll('.tls-heatmap')].filter(e => e.offsetParent).length"
            )
            == 3
        )
    )
    time.sleep(0.2)
    shot(page, artifacts_dir, "compare")


def test_hostile_names_are_text(page, server, artifacts_dir):
    frame = open_tab(page, server, {"run": HOSTILE, "tag": "lstm"})
    options = frame.eval_on_selector_all(
        "select[aria-label='run'] option", "els => els.map(e => e.textContent)"
    )
    assert HOSTILE in options
    assert frame.eval_on_selector("select[aria-label='run']", "e => e.value") == HOSTILE
    tokens = frame.eval_on_selector_all(".tls-tokens span", "els => els.map(e => e.textContent)")
    assert HOSTILE in tokens and "<b>x</b>" in tokens and "&amp;" in tokens
    # no element came out of any of those strings, and nothing ran
    assert frame.evaluate("document.querySelectorAll('img, b:not(.tls-steplabel b)').length") == 0
    assert frame.evaluate("document.querySelectorAll('.tls-steplabel b').length") == 1
    frame.click("select[aria-label='compare with']")
    shot(page, artifacts_dir, "hostile")
    assert not page.problems


def test_zoom_order_and_anomaly_jump(page, server, artifacts_dir):
    frame = open_tab(page, server, {"run": "run_a", "tag": "lstm", "step": "5"})
    wait_until(lambda: "1 anomaly marked" in frame.inner_text(".tls-main"))
    # click the anomaly mark: the cursor moves there (and into the URL)
    changes = frame.query_selector(".tls-changes canvas.tls-base").bounding_box()
    plot_x, plot_w = 56, changes["width"] - 56 - 10
    frame.click(
        ".tls-changes canvas.tls-base",
        position={"x": plot_x + (JUMP + 0.5) / TIME * plot_w, "y": 30},
    )
    wait_until(lambda: "cursor%%3D%d" % JUMP in page.evaluate("location.hash"))
    # drag across the heatmap: zoom into that time range; double-click: back out
    # (the click above may have scrolled the tab: the heatmap is brought back into view)
    frame.query_selector(".tls-heatmap canvas.tls-base").scroll_into_view_if_needed()
    box = frame.query_selector(".tls-heatmap canvas.tls-base").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + plot_x + 0.25 * plot_w, y)
    page.mouse.down()
    page.mouse.move(box["x"] + plot_x + 0.4 * plot_w, y, steps=4)
    page.mouse.move(box["x"] + plot_x + 0.5 * plot_w, y, steps=4)
    page.mouse.up()
    title = wait_until(
        lambda: (lambda t: t if "timesteps" in t else None)(frame.inner_text(".tls-card h3"))
    )
    first, last = map(int, re.search(r"timesteps (\d+)–(\d+)", title).groups())
    assert 10 <= first < last <= 26
    shot(page, artifacts_dir, "zoom")
    frame.dblclick(
        ".tls-heatmap canvas.tls-base", position={"x": box["width"] / 2, "y": box["height"] / 2}
    )
    wait_until(lambda: "timesteps" not in frame.inner_text(".tls-card h3"))
    # ordering units by variance or clustering reorders the rows
    by_index = heatmap_pixels(frame)
    frame.select_option("select[aria-label='unit order']", "variance")
    wait_until(lambda: heatmap_pixels(frame) != by_index)
    frame.select_option("select[aria-label='unit order']", "cluster")
    wait_until(lambda: heatmap_pixels(frame) != by_index)


def test_exports(page, server):
    frame = open_tab(page, server, {"run": "run_a", "tag": "lstm", "step": "2", "loop": "0"})

    def export(what):
        with page.expect_download(timeout=30000) as info:
            frame.select_option("select[aria-label='export']", what)
        download = info.value
        with open(download.path(), "rb") as f:
            return download.suggested_filename, f.read()

    name, body = export("npy")
    assert name.endswith(".npy")
    _, _, served = http_get(
        server
        + "/data/plugin/lstm_states/states?"
        + urllib.parse.urlencode(
            dict(run="run_a", tag="lstm", step=2, layer=0, kind="cell", sequence=0, format="npy")
        )
    )
    np.testing.assert_array_equal(np.load(io.BytesIO(body)), np.load(io.BytesIO(served)))
    name, body = export("csv")
    rows = body.decode().splitlines()
    assert rows[0].startswith("timestep,unit_0,unit_1") and len(rows) == TIME + 1
    name, body = export("heatmap.png")
    assert body[:8] == b"\x89PNG\r\n\x1a\n"
    name, body = export("webm")
    assert name.endswith(".webm") and body[:4] == b"\x1a\x45\xdf\xa3" and len(body) > 1000


def test_dark_mode_follows_tensorboard(page, server, artifacts_dir):
    frame = open_tab(page, server)
    assert frame.evaluate("document.documentElement.dataset.theme") == "light"
    light = heatmap_pixels(frame)
    page.evaluate("document.body.classList.add('dark-mode')")
    wait_until(lambda: frame.evaluate("document.documentElement.dataset.theme") == "dark")
    wait_until(lambda: heatmap_pixels(frame) != light)
    shot(page, artifacts_dir, "dark")


def test_new_steps_and_runs_appear_without_reload(page, server, logdir):
    frame = open_tab(page, server, {"run": "run_a", "tag": "lstm"})
    assert step_label(frame) == 5
    write_steps(logdir / "run_a", [6], seed=0)
    wait_until(lambda: step_label(frame) == 6, timeout=30)  # follows the latest step
    assert "7 of 7" in frame.inner_text(".tls-steplabel")
    write_steps(logdir / "run_new", [0], seed=2)  # a new run shows in the selector
    wait_until(
        lambda: (
            "run_new"
            in frame.eval_on_selector_all(
                "select[aria-label='run'] option", "els => els.map(e => e.value)"
            )
        ),
        timeout=30,
    )


def test_long_wide_layer_is_downsampled_without_freezing(page, server, logdir, artifacts_dir):
    """10,000 timesteps x 1,024 units: min/max per pixel bucket, in a worker; a spike survives."""
    hidden = np.full((1, 10_000, 1024), 0.1, np.float32)
    hidden[0, 6_000, 700] = -0.95  # one timestep of one unit
    states = RecurrentStates(
        kind="rnn", layers=[LayerStates(hidden=hidden)], lengths=np.array([10_000])
    )
    with tls.StateWriter(str(logdir / "zz_long")) as writer:
        writer.add_states("rnn", states, 0)
    frame = open_tab(page, server, {"run": "zz_long", "tag": "rnn"})
    frame.evaluate("""() => { window.__gaps = []; let last = performance.now();
        const f = t => { window.__gaps.push(t - last); last = t; requestAnimationFrame(f); };
        requestAnimationFrame(f); }""")
    wait_until(lambda: frame.evaluate("window.__tls.paints.some(p => p.step === 0)"), timeout=60)
    # the spike's colour (deep blue) is in the downsampled image, though it is 1 of 10M values
    deep_blue = frame.evaluate("""() => {
        const c = document.querySelector('.tls-heatmap canvas.tls-base');
        const d = c.getContext('2d').getImageData(56, 0, c.width - 66, c.height - 20).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i + 2] > 80 && d[i] < 40) n++;
        return n; }""")
    assert deep_blue > 0
    time.sleep(0.5)
    assert max(frame.evaluate("window.__gaps")) < 1500  # no long freeze of the page
    shot(page, artifacts_dir, "long")


def test_empty_logdir_shows_how_to(page, browser, tmp_path, artifacts_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    with tensorboard_server(empty, load_fast=False) as url:
        page.goto(url + "/#lstm_states")
        frame = page.wait_for_selector("iframe", timeout=30000).content_frame()
        frame.wait_for_selector(".tls-empty pre", timeout=30000)
        code = frame.inner_text(".tls-empty pre")
        assert 'writer.log("lstm", model.lstm, probe_inputs, step=epoch)' in code
        assert "tls.StateWriter" in code
        shot(page, artifacts_dir, "empty")
