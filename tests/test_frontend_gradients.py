"""End to end, issue 14: the gradient-through-time view in the tab.

Real `tensorboard`, headless Chromium. One logdir:
- run `a`: an LSTM whose dL/dc_t is written by hand, 4 steps. At step k the gradient
  falls by RATES[k] decades per timestep back from each sequence's end (sequence 1 is
  10 timesteps shorter), unit u scaled by 10^(-u/4) with alternating signs; the
  forget gate of unit u is constant, FORGET[u], so its memory horizon is known;
- run `b`: the same states logged without gradients;
- run `c`: a GRU with dL/dh_t;
- a run named like an XSS payload, with gradients.
Every test fails on any console error, page error, dialog or HTTP error. Screenshots go
to test-artifacts/gradients-*.png.
"""

import json
import os
import re
import time
import urllib.parse

import browser_pages
import numpy as np
import pytest
from browser_pages import open_tab, wait_until
from conftest import tensorboard_server

import tb_lstm_states as tls
from tb_lstm_states.states import LayerStates, RecurrentStates

BATCH, TIME, UNITS = 2, 60, 6
LENGTHS = [60, 50]
RATES = [0.045, 0.07, 0.11, 0.17]  # decades lost per timestep back from the end, per step
FORGET = np.array([0.5, 0.8, 0.9, 0.95, 0.99, 0.999], np.float32)
HOSTILE = "<img src=x onerror=alert(1)>"


def sig(x):
    return 1 / (1 + np.exp(-x))


def grads(step):
    """[batch, time, units]: 10^(-k * rate) at k timesteps before the end, per unit scale."""
    g = np.zeros((BATCH, TIME, UNITS))
    for b, length in enumerate(LENGTHS):
        k = length - 1 - np.arange(length)
        unit = 10.0 ** (-np.arange(UNITS) / 4) * np.where(np.arange(UNITS) % 2, -1, 1)
        g[b, :length] = (10.0 ** (-k * RATES[step]))[:, None] * unit[None, :]
    return g.astype(np.float32)


def lstm(step, with_grads=True):
    rng = np.random.default_rng(step)
    cell = rng.normal(size=(BATCH, TIME, UNITS)).astype(np.float32)
    for b, length in enumerate(LENGTHS):
        cell[b, length:] = 0
    forget = np.broadcast_to(FORGET, (BATCH, TIME, UNITS)).astype(np.float32).copy()
    g = grads(step)
    layer = LayerStates(
        hidden=np.tanh(cell),
        cell=cell,
        gates={
            "input": sig(cell),
            "forget": forget,
            "candidate": np.tanh(cell),
            "output": sig(cell),
        },
        grads={"cell": g, "hidden": 0.5 * g} if with_grads else {},
    )
    return RecurrentStates(kind="lstm", layers=[layer], lengths=np.array(LENGTHS), num_directions=1)


def gru(step):
    rng = np.random.default_rng(10 + step)
    h = np.tanh(rng.normal(size=(BATCH, TIME, UNITS))).astype(np.float32)
    layer = LayerStates(
        hidden=h, gates={"reset": sig(h), "update": sig(h), "new": h}, grads={"hidden": grads(step)}
    )
    return RecurrentStates(kind="gru", layers=[layer], lengths=np.array(LENGTHS), num_directions=1)


def sequence_reach(g, length):
    """Timesteps back from the last valid one over which ||g_t|| stays >= 1% of its max."""
    norms = np.linalg.norm(g[:length].astype(np.float64), axis=1)
    below = np.flatnonzero(norms[::-1] < 0.01 * norms.max())
    return int(below[0]) if below.size else length


def probe_reach(g):
    """The run's figure: the norm averaged over the sequences aligned at their ends."""
    longest = max(LENGTHS)
    total, count = np.zeros(longest), np.zeros(longest)
    for b, length in enumerate(LENGTHS):
        norms = np.linalg.norm(g[b, :length].astype(np.float64), axis=1)
        total[:length] += norms[::-1]
        count[:length] += 1
    mean = total / count
    below = np.flatnonzero(mean < 0.01 * mean.max())
    return int(below[0]) if below.size else longest


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("gradients") / "logs"
    with tls.StateWriter(str(root / "a")) as writer:
        for step in range(4):
            writer.add_states("lstm", lstm(step), step)
    with tls.StateWriter(str(root / "b")) as writer:
        for step in range(2):
            writer.add_states("lstm", lstm(step, with_grads=False), step)
    with tls.StateWriter(str(root / "c")) as writer:
        for step in range(4):
            writer.add_states("lstm", gru(step), step)
    with tls.StateWriter(str(root / HOSTILE)) as writer:
        writer.add_states("lstm", lstm(1), 0)
    with tensorboard_server(root, load_fast=False) as url:
        yield url


@pytest.fixture
def page(browser):
    """A fresh page; fails the test on any console error, page error, dialog or HTTP error."""
    with browser_pages.watched_page(browser, 1400, 1100) as page:
        yield page


def card(frame):
    """The gradient card's data attributes (what it draws)."""
    return frame.evaluate("() => ({...document.querySelector('.tls-grad').dataset})")


def shown(frame, step):
    """Waits until the card draws `step` with its scale fixed over every step."""
    return wait_until(
        lambda: (lambda d: d if d.get("step") == str(step) and d.get("lo") else None)(card(frame))
    )


def shot(frame, artifacts_dir, name):
    frame.query_selector(".tls-grad").screenshot(
        path=os.path.join(artifacts_dir, "gradients-%s.png" % name)
    )


def pixel(frame, selector, x, y):
    """RGB of the canvas `selector` at CSS pixel (x, y)."""
    return frame.evaluate(
        """([sel, x, y]) => {
            const c = document.querySelector(sel), r = c.width / c.clientWidth;
            return [...c.getContext('2d').getImageData(Math.floor(x * r), Math.floor(y * r), 1, 1).data].slice(0, 3);
        }""",
        [selector, x, y],
    )


HEAT = ".tls-grad .tls-heatmap canvas.tls-base"
NORM = ".tls-grad .tls-gradnorm canvas.tls-base"
BAR = ".tls-grad canvas.tls-gradbar"


def test_the_view_shows_for_a_record_with_gradients(page, server, artifacts_dir):
    frame = open_tab(page, server, {"run": "a", "tag": "lstm"})
    data = shown(frame, 3)
    assert data["has"] == "1" and data["kind"] == "grad_cell"
    assert frame.is_visible(HEAT) and frame.is_visible(NORM)
    title = frame.inner_text(".tls-grad h3")
    assert "|∂L/∂c_t|" in title and "sequence #0" in title and "step 3" in title
    # how to read it: the exact meaning of the memory horizon
    help_text = frame.inner_text(".tls-gradhelp")
    assert "Bright columns far from the end" in help_text
    assert "τ = −1/ln(f̄)" in help_text and "e^−1" in help_text
    # the memory horizons: the units route's, beside the rows (in the hover) and as a histogram
    histogram = wait_until(
        lambda: (lambda t: t if t and t.startswith("memory horizons of 6") else None)(
            frame.get_attribute(".tls-horizonhist", "aria-label")
        )
    )
    # 0.99 and 0.999 give horizons of about 100 and 1000, past the length of 60
    assert "2 at or past the length" in histogram, histogram
    assert "from 1 to 1000 timesteps" in histogram, histogram
    shot(frame, artifacts_dir, "lstm")


def test_the_colour_scale_is_logarithmic(page, server, artifacts_dir):
    frame = open_tab(page, server, {"run": "a", "tag": "lstm", "step": "3"})
    data = shown(frame, 3)
    frame.select_option("select[aria-label='gradient rows']", "index")
    wait_until(lambda: frame.get_attribute(HEAT, "data-order") == "0,1,2,3,4,5")
    lo, hi = int(data["lo"]), int(data["hi"])
    g = grads(3)[0]
    # the largest gradient is 1 (unit 0, the last timestep), the smallest about 1e-10:
    # the scale spans whole decades from at most 8 below the top
    assert hi == 0 and lo == -8
    x0, y0, w, h = map(float, frame.get_attribute(HEAT, "data-plot").split(","))
    bar_x, bar_w, bar_y = map(float, frame.get_attribute(BAR, "data-bar").split(","))
    time.sleep(0.3)

    def heat_colour(t, unit):
        return pixel(frame, HEAT, x0 + (t + 0.5) * w / TIME, y0 + (unit + 0.5) * h / UNITS)

    def bar_colour(value):
        f = (np.log10(value) - lo) / (hi - lo)
        return pixel(frame, BAR, bar_x + min(max(f, 0), 1) * (bar_w - 1), bar_y)

    seen = {}
    for t, unit in [(59, 0), (47, 0), (41, 2), (20, 1)]:
        value = abs(float(g[t, unit]))
        got, want = heat_colour(t, unit), bar_colour(value)
        # the cell has the colour the bar shows at its power of ten
        assert max(abs(a - b) for a, b in zip(got, want)) <= 12, (t, unit, value, got, want)
        seen[value] = got

    def luminance(c):
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]

    values = sorted(seen)
    # each factor of ten a step of colour: 1e-2 and 1e-3 differ as much as 1 and 1e-1 would,
    # and a larger gradient is brighter
    for small, large in zip(values, values[1:]):
        assert luminance(seen[large]) > luminance(seen[small]) + 10, seen
    # the bar says what it is, in powers of ten
    label = frame.get_attribute(BAR, "aria-label")
    assert "log scale" in label and "10⁻⁸" in label


def test_the_norm_axis_is_logarithmic(page, server):
    frame = open_tab(page, server, {"run": "a", "tag": "lstm", "step": "3"})
    shown(frame, 3)
    ticks = json.loads(frame.get_attribute(NORM, "data-ticks"))
    exponents = [k for k, _ in ticks]
    ys = [y for _, y in ticks]
    assert exponents == sorted(exponents) and len(exponents) >= 3
    steps = np.diff(exponents)
    # evenly spaced decades on the axis, equal pixels per decade: a log axis
    per_decade = np.diff(ys) / steps
    assert np.all(np.abs(per_decade - per_decade[0]) <= 1.01), ticks
    assert per_decade[0] < 0  # larger norms higher up
    # the norm falls exponentially back from the end: on a log axis, a straight line
    x0, y0, w, h = map(float, frame.get_attribute(NORM, "data-plot").split(","))
    line = frame.evaluate(
        """([sel, x0, w, h, y0, time]) => {
            const c = document.querySelector(sel), r = c.width / c.clientWidth;
            const ctx = c.getContext('2d');
            const rows = (t) => {
                const x = Math.floor((x0 + (t + 0.5) * w / time) * r);
                const d = ctx.getImageData(x, Math.floor(y0 * r), 1, Math.floor(h * r)).data;
                const hits = [];
                for (let i = 0; i < d.length / 4; i++) {
                    const [R, G, B] = [d[4 * i], d[4 * i + 1], d[4 * i + 2]];
                    if (Math.abs(R - 78) + Math.abs(G - 121) + Math.abs(B - 167) < 60) hits.push(i / r + y0);
                }
                return hits.length ? hits.reduce((a, b) => a + b) / hits.length : null;
            };
            return [30, 40, 50, 58].map(rows);
        }""",
        [NORM, x0, w, h, y0, TIME],
    )
    assert None not in line, line
    slopes = np.diff(line) / np.diff([30, 40, 50, 58])
    assert np.all(np.abs(slopes - slopes[0]) < 0.15 * abs(slopes[0])), line


def test_the_reach_shown_is_the_one_computed_from_the_data(page, server):
    for step in (3, 0):
        frame = open_tab(page, server, {"run": "a", "tag": "lstm", "step": str(step)})
        data = shown(frame, step)
        g = grads(step)
        # this sequence's reach, in the card
        want = sequence_reach(g[0], LENGTHS[0])
        assert int(data["reach"]) == want
        text = frame.inner_text(".tls-gradreach")
        assert "gradient reach of sequence #0: %d of %d timesteps" % (want, TIME) in text
        # the run's figure (the probe mean), in the card and the overview, beside each step's
        run = probe_reach(g)
        assert "run a (probe mean, last layer): %d" % run in text

        def overview_reach(frame=frame):
            rows = frame.query_selector_all(".tls-overview .tls-spark")
            for row in rows:
                if row.inner_text().startswith("grad reach"):
                    return row.inner_text().split("\n")[-1].strip()
            return None

        assert wait_until(overview_reach) == str(run)
        assert "1% of its largest" in frame.inner_text(".tls-ovnote")
    # the shorter sequence: its reach counts back from its own end, padding excluded
    frame = open_tab(page, server, {"run": "a", "tag": "lstm", "step": "1", "seq": "1"})
    data = shown(frame, 1)
    assert int(data["reach"]) == sequence_reach(grads(1)[1], LENGTHS[1])
    assert "of %d timesteps" % LENGTHS[1] in frame.inner_text(".tls-gradreach")


def test_playback_moves_the_gradients_through_the_steps(page, server, artifacts_dir):
    frame = open_tab(page, server, {"run": "a", "tag": "lstm", "step": "0", "speed": "2"})
    data = shown(frame, 0)
    before = frame.evaluate(
        "() => document.querySelector('.tls-grad .tls-heatmap canvas.tls-base').toDataURL()"
    )
    reaches = {0: int(data["reach"])}
    page.keyboard.press("ArrowRight")
    reaches[1] = int(shown(frame, 1)["reach"])
    after = frame.evaluate(
        "() => document.querySelector('.tls-grad .tls-heatmap canvas.tls-base').toDataURL()"
    )
    assert after != before
    # play: the card follows the steps the player shows
    frame.click("button[aria-label='play']")
    for step in (2, 3):
        reaches[step] = int(shown(frame, step)["reach"])
    frame.click("button[aria-label='pause']")
    assert reaches == {s: sequence_reach(grads(s)[0], LENGTHS[0]) for s in range(4)}
    # the gradient vanishes faster at later steps: the reach shrinks
    assert reaches[0] > reaches[1] > reaches[2] > reaches[3]
    shot(frame, artifacts_dir, "playback")


def test_hover_names_the_unit_its_gradient_and_its_memory_horizon(page, server):
    frame = open_tab(page, server, {"run": "a", "tag": "lstm", "step": "3"})
    shown(frame, 3)
    frame.select_option("select[aria-label='gradient rows']", "by memory horizon")
    # longest horizon first: unit 5 (0.999) on top
    wait_until(lambda: frame.get_attribute(HEAT, "data-order") == "5,4,3,2,1,0")
    x0, y0, w, h = map(float, frame.get_attribute(HEAT, "data-plot").split(","))
    frame.hover(HEAT, position={"x": x0 + 59.5 * w / TIME, "y": y0 + 1.5 * h / UNITS})
    text = wait_until(lambda: frame.inner_text(".tls-gradhover"))
    assert text.startswith("unit 4 · timestep 59"), text
    horizon = float(re.search(r"memory horizon ([\d.]+) timesteps", text).group(1))
    # -1 / ln(mean forget gate) of the gate as written (float32 0.99: 99.5 timesteps), to
    # 2e-3 (the hover shows 4 significant digits)
    assert abs(horizon - (-1 / np.log(np.float64(FORGET[4])))) < 2e-3 * horizon
    value = float(re.search(r"\|∂L/∂c_t\| ([\d.e+-]+)", text).group(1))
    assert abs(value - abs(float(grads(3)[0, 59, 4]))) < 1e-3 * value


def test_a_gru_shows_the_hidden_gradient_without_memory_horizons(page, server, artifacts_dir):
    frame = open_tab(page, server, {"run": "c", "tag": "lstm"})
    data = shown(frame, 3)
    assert data["kind"] == "grad_hidden"
    assert "|∂L/∂h_t|" in frame.inner_text(".tls-grad h3")
    assert not frame.is_visible(".tls-grad .tls-horizons")
    assert not frame.is_visible(".tls-horizonhist")
    shot(frame, artifacts_dir, "gru")


def test_the_view_is_absent_for_a_record_without_gradients(page, server, artifacts_dir):
    frame = open_tab(page, server, {"run": "b", "tag": "lstm"})
    # the overview says how to log them; the card is not there
    wait_until(lambda: frame.is_visible(".tls-gradhint"))
    assert card(frame).get("has") == "0"
    assert not frame.is_visible(".tls-grad")
    assert not frame.is_visible(HEAT) and not frame.is_visible(NORM)
    frame.click(".tls-gradhint summary")
    assert "loss=" in frame.inner_text(".tls-gradhint")
    frame.query_selector(".tls-overview").screenshot(
        path=os.path.join(artifacts_dir, "gradients-none.png")
    )
    # and a record with gradients has the card, not the hint
    frame = open_tab(page, server, {"run": "a", "tag": "lstm"})
    shown(frame, 3)
    assert not frame.is_visible(".tls-gradhint")


def test_names_from_the_logdir_stay_text(page, server, artifacts_dir):
    frame = open_tab(page, server, {"run": HOSTILE, "tag": "lstm"})
    shown(frame, 0)
    wait_until(lambda: HOSTILE in frame.inner_text(".tls-gradreach"))
    # compare with it from run a: its name is in the card as text, never as markup
    frame = open_tab(page, server, {"run": "a", "tag": "lstm", "step": "0", "cmp": HOSTILE})
    shown(frame, 0)
    wait_until(lambda: HOSTILE in frame.inner_text(".tls-gradreach"))
    assert frame.evaluate("() => document.querySelectorAll('.tls-grad img').length") == 0
    shot(frame, artifacts_dir, "compare")


def test_compare_with_a_run_without_gradients_asks_for_none(page, server):
    frame = open_tab(page, server, {"run": "a", "tag": "lstm", "step": "0", "cmp": "b"})
    shown(frame, 0)
    time.sleep(1.0)  # the other run's overview has arrived: still no request for its gradients
    assert " · b " not in frame.inner_text(".tls-gradreach")
    # (the page fixture fails the test on any HTTP error, a 404 for b's gradients included)


def test_dark_mode(page, server, artifacts_dir):
    frame = open_tab(page, server, {"run": "a", "tag": "lstm", "step": "2"})
    page.evaluate("document.body.classList.add('dark-mode')")
    wait_until(lambda: frame.evaluate("document.documentElement.dataset.theme") == "dark")
    shown(frame, 2)
    time.sleep(0.5)
    shot(frame, artifacts_dir, "dark")


def test_the_gradient_and_its_row_order_are_kept_in_the_url(page, server):
    frame = open_tab(
        page, server, {"run": "a", "tag": "lstm", "grad": "grad_hidden", "grows": "index"}
    )
    data = wait_until(lambda: (lambda d: d if d.get("kind") else None)(card(frame)))
    assert data["kind"] == "grad_hidden"
    assert frame.eval_on_selector("select[aria-label='gradient']", "s => s.value") == "grad_hidden"
    assert frame.eval_on_selector("select[aria-label='gradient rows']", "s => s.value") == "index"
    assert "|∂L/∂h_t|" in frame.inner_text(".tls-grad h3")
    frame.select_option("select[aria-label='gradient']", "grad_cell")
    frame.select_option("select[aria-label='gradient rows']", "horizon")

    def ours():
        hash_text = urllib.parse.unquote(page.evaluate("() => location.hash"))
        return hash_text if "grows=horizon" in hash_text else None

    hash_text = wait_until(ours)
    assert "grad=grad_cell" in hash_text
    frame = open_tab(page, server, dict(urllib.parse.parse_qsl(hash_text.split("lstm=", 1)[1])))
    wait_until(lambda: card(frame).get("kind") == "grad_cell")
    assert frame.eval_on_selector("select[aria-label='gradient rows']", "s => s.value") == "horizon"
