"""End to end, issue 15 in the tab: what a unit means.

Real `tensorboard`, headless Chromium. Run `a` (6 steps, 4 sequences of 96 timesteps, 12
cell units of AR(0.9) noise): from step 2 on, unit 5 follows the logged random walk
`walk` 4 timesteps behind; units 0-3 hold one 8-timestep pattern at a query window (step 5,
sequence 0, timesteps 30-37) and at 5 other places over steps 3-5. Run `b` is `a` with
its units permuted, some negated, plus a little noise.

The unit table shows r, lag and q and sorts by q; "order by significance" puts unit 5
first; compare-runs aligns b's rows to a's matched units (the difference is near zero,
the CKA is shown); pattern search lists the 5 planted windows and jumps to one; unit 5's
identity across steps rises where it starts following the walk. Every test fails on a
console error, a page error, a dialog or an HTTP error.
"""

import functools
import os
import re

import browser_pages
import numpy as np
import pytest
from browser_pages import open_tab
from conftest import tensorboard_server

import tb_lstm_states as tls
from tb_lstm_states.states import LayerStates, RecurrentStates

BATCH, TIME, UNITS, STEPS = 4, 96, 12, 6
PLANTED, LAG = 5, 4
PATTERN_UNITS, PATTERN_LENGTH = [0, 1, 2, 3], 8
QUERY = (5, 0, 30)  # step, sequence, start
OCCURRENCES = {(3, 1, 10), (3, 2, 60), (4, 0, 70), (4, 3, 20), (5, 2, 40)}
PERM = np.random.default_rng(7).permutation(UNITS)  # b's unit j is a's unit PERM[j]
SIGNS = np.where(np.arange(UNITS) % 3 == 0, -1.0, 1.0)  # ... negated where -1
STATES_CARD = ".tls-main > .tls-col > .tls-card"


def walk():
    rng = np.random.default_rng(100)
    w = np.cumsum(rng.normal(size=(BATCH, TIME + LAG)), axis=1)
    return (w - w.mean()) / w.std()


def pattern():
    t = np.arange(PATTERN_LENGTH)[:, None]
    return 1.5 * np.sin(t * np.array([0.7, 1.3, 2.1, 2.9]) + np.array([0.0, 1.0, 2.0, 3.0]))


def cell_of(step):
    rng = np.random.default_rng(step)
    noise = np.zeros((BATCH, TIME, UNITS))
    shocks = rng.normal(scale=0.05, size=(BATCH, TIME, UNITS))
    for t in range(TIME):
        noise[:, t] = (0.9 * noise[:, t - 1] if t else 0) + shocks[:, t]
    cell = noise
    if step >= 2:  # the walk follower appears at step 2
        cell[:, :, PLANTED] = walk()[:, :TIME] + 0.05 * rng.normal(size=(BATCH, TIME))
    for s, b, start in OCCURRENCES | {QUERY}:
        if s == step:
            cell[b][start : start + PATTERN_LENGTH, PATTERN_UNITS] = pattern()
    return cell


def states_of(cell):
    def sig(x):
        return 1 / (1 + np.exp(-x))

    f32 = lambda x: np.asarray(x, np.float32)  # noqa: E731
    layer = LayerStates(
        hidden=f32(np.tanh(cell)),
        cell=f32(cell),
        gates={
            "input": f32(sig(cell)),
            "forget": f32(sig(cell + 2)),
            "candidate": f32(np.tanh(cell / 2)),
            "output": f32(sig(-cell)),
        },
    )
    return RecurrentStates(
        kind="lstm", layers=[layer], lengths=np.array([TIME] * BATCH), num_directions=1
    )


def series():
    # the unit at t follows the walk at t - LAG: the logged series leads the unit by LAG
    return {"walk": walk()[:, LAG : TIME + LAG].astype(np.float32)}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("issue15") / "logs"
    noise = np.random.default_rng(9)
    with tls.StateWriter(str(root / "a")) as writer:
        for step in range(STEPS):
            writer.add_states("lstm", states_of(cell_of(step)), step, series=series())
    with tls.StateWriter(str(root / "b")) as writer:
        for step in range(STEPS):
            cell = cell_of(step)[:, :, PERM] * SIGNS
            cell += 0.005 * noise.normal(size=cell.shape)
            writer.add_states("lstm", states_of(cell), step, series=series())
    with tls.StateWriter(str(root / "c")) as writer:  # 10 of a's units, reversed
        for step in range(STEPS):
            writer.add_states("lstm", states_of(cell_of(step)[:, :, 9::-1]), step, series=series())
    with tensorboard_server(root, load_fast=True) as url:
        yield url


@pytest.fixture
def page(browser):
    """A fresh page; fails the test on any console error, page error, dialog or HTTP error."""
    with browser_pages.watched_page(browser, 1500, 1100) as page:
        yield page


wait_until = functools.partial(browser_pages.wait_until, timeout=30.0)


def view_hash(frame):
    return frame.evaluate("() => decodeURIComponent(parent.location.hash)")


def step_label(frame):
    return int(re.search(r"step (-?\d+)", frame.inner_text(".tls-steplabel")).group(1))


def shot(page, frame, selector, name, artifacts_dir):
    path = os.path.join(artifacts_dir, name)
    frame.query_selector(selector).screenshot(path=path)
    return path


def table_rows(frame):
    return frame.eval_on_selector_all(
        ".tls-units tbody tr",
        """rs => rs.map(r => ({unit: Number(r.dataset.unit),
            ...Object.fromEntries([...r.querySelectorAll('td[data-key]')].map(
                c => [c.dataset.key, c.textContent]))}))""",
    )


def number(text):
    """A table cell's value ("<1e-15": below float64's resolution, read as 1e-15)."""
    return float(text.lstrip("<"))


def test_unit_table_shows_significance_and_sorts_by_q(page, server, artifacts_dir):
    frame = open_tab(page, server, {"run": "a", "tag": "lstm"})
    frame.wait_for_selector(".tls-units th[data-key='q']", timeout=30000)
    headers = frame.eval_on_selector_all(".tls-units th", "hs => hs.map(h => h.dataset.key)")
    for key in ("r", "lag", "q", "variance", "saturation", "period", "memory"):
        assert key in headers, headers
    assert frame.eval_on_selector("select[aria-label='significance series']", "e => e.value") == ""
    assert "auto (walk)" in frame.inner_text("select[aria-label='significance series']")
    frame.click(".tls-units th[data-key='q']")
    wait_until(lambda: frame.get_attribute(".tls-units th[data-key='q']", "aria-sort") != "none")
    if frame.get_attribute(".tls-units th[data-key='q']", "aria-sort") == "descending":
        frame.click(".tls-units th[data-key='q']")
    rows = table_rows(frame)
    qs = [number(r["q"]) for r in rows if r["q"] != "–"]
    assert qs == sorted(qs), qs
    top = rows[0]
    assert top["unit"] == PLANTED, rows[:3]
    assert int(top["lag"]) == LAG and number(top["q"]) < 0.01 and float(top["r"]) > 0.9, top
    # the null units are not significant
    assert sum(number(r["q"]) < 0.05 for r in rows[1:]) <= 1, rows
    assert "tls-mark" in frame.get_attribute(".tls-units tbody tr td[data-key='q']", "class")
    shot(page, frame, ".tls-unitcard", "issue15-unit-table.png", artifacts_dir)


def test_order_by_significance_puts_the_planted_unit_first(page, server):
    frame = open_tab(page, server, {"run": "a", "tag": "lstm", "order": "index"})
    options = frame.eval_on_selector_all(
        "select[aria-label='unit order'] option", "os => os.map(o => o.value)"
    )
    assert "sig:walk" in options, options
    frame.select_option("select[aria-label='unit order']", "sig:walk")
    # with no units picked, the top of the order is plotted: unit 5 first
    wait_until(lambda: re.search(r"units=%d\b" % PLANTED, view_hash(frame)))
    assert "order=sig%3Awalk" in view_hash(frame)
    # and the table sorts by q by default under this order
    page.reload()
    frame = page.wait_for_selector("iframe", timeout=30000).content_frame()
    frame.wait_for_selector(".tls-units th[data-key='q'][aria-sort='ascending']", timeout=30000)
    assert table_rows(frame)[0]["unit"] == PLANTED


def test_compare_runs_aligns_matched_units_and_shows_cka(page, server, artifacts_dir):
    frame = open_tab(page, server, {"run": "a", "tag": "lstm", "step": "5", "cmp": "b"})
    title_b = wait_until(
        lambda: (lambda t: t if "CKA" in t else None)(
            frame.inner_text(".tls-panels > div:nth-child(2) .tls-paneltitle")
        )
    )
    assert "matched to a's units" in title_b
    cka = float(re.search(r"CKA ([\d.]+)", title_b).group(1))
    assert cka > 0.99, title_b
    title_d = wait_until(
        lambda: (lambda t: t if "max |Δ|" in t else None)(
            frame.inner_text(".tls-panels > div:nth-child(3) .tls-paneltitle")
        )
    )
    assert "left − matched right" in title_d
    delta = float(re.search(r"max \|Δ\| ([\d.e-]+)", title_d).group(1))
    assert delta < 0.1, title_d  # the planted values reach about 2: unaligned it would be ~4
    note = frame.inner_text(".tls-matchnote")
    flipped = int(re.search(r"(\d+) of %d rows flipped" % UNITS, note).group(1))
    assert flipped == int((SIGNS < 0).sum()), note
    assert "unmatched" not in note

    # the plotted units of b are the partners of a's
    def plotted():
        h = view_hash(frame)
        a, b = re.search(r"(?<!c)units=([\d.]+)", h), re.search(r"cunits=([\d.]+)", h)
        if a and b:
            return [[int(u) for u in m.group(1).split(".")] for m in (a, b)]

    wait_until(lambda: (lambda p: p and p[1] == [PERM.tolist().index(u) for u in p[0]])(plotted()))
    shot(page, frame, STATES_CARD, "issue15-compare-matched.png", artifacts_dir)
    # a run with fewer units: the rows without a partner are left empty, and said
    frame.select_option("select[aria-label='compare with']", "c")
    note = wait_until(
        lambda: (lambda t: t if "unmatched" in t else None)(frame.inner_text(".tls-matchnote"))
    )
    assert "2 rows unmatched (c has fewer units)" in note and "0 of 12 rows flipped" in note
    shot(page, frame, STATES_CARD, "issue15-compare-fewer.png", artifacts_dir)


def test_pattern_search_lists_the_planted_windows_and_jumps(page, server, artifacts_dir):
    step, sequence, start = QUERY
    view = {
        "run": "a",
        "tag": "lstm",
        "step": str(step),
        "seq": str(sequence),
        "t0": str(start),
        "t1": str(start + PATTERN_LENGTH),
        "units": ".".join(map(str, PATTERN_UNITS)),
    }
    frame = open_tab(page, server, view)
    button = "button[aria-label='search window']"
    wait_until(lambda: frame.inner_text(button) == "Search timesteps 30–37")
    assert frame.eval_on_selector("select[aria-label='search units']", "e => e.value") == "plotted"
    frame.click(button)
    frame.wait_for_selector(".tls-search tbody tr.tls-match", timeout=60000)
    matches = frame.eval_on_selector_all(
        ".tls-search tbody tr.tls-match",
        "rs => rs.map(r => [r.dataset.step, r.dataset.sequence, r.dataset.start].map(Number))",
    )
    assert {tuple(m) for m in matches[:5]} == OCCURRENCES, matches
    caption = frame.inner_text("[data-role='search-caption']")
    assert "units 0, 1, 2, 3" in caption and "matches" in caption
    # a click shows the match: its step, its sequence and its window
    frame.click(".tls-search tbody tr[data-step='3'][data-sequence='2'][data-start='60']")
    wait_until(lambda: step_label(frame) == 3)
    wait_until(
        lambda: frame.eval_on_selector("select[aria-label='probe sequence']", "e => e.value") == "2"
    )
    wait_until(lambda: "t0=60" in view_hash(frame) and "t1=68" in view_hash(frame))
    wait_until(lambda: "sequence #2 · timesteps 60–67" in frame.inner_text(".tls-card h3"))
    wait_until(
        lambda: "on" in (frame.get_attribute(".tls-search tr[data-start='60']", "class") or "")
    )
    shot(page, frame, STATES_CARD, "issue15-search-jumped.png", artifacts_dir)
    shot(page, frame, ".tls-searchcard", "issue15-search-list.png", artifacts_dir)


def test_identity_across_steps_rises_where_the_unit_appears(page, server, artifacts_dir):
    frame = open_tab(page, server, {"run": "a", "tag": "lstm", "units": str(PLANTED)})
    frame.wait_for_selector(
        "select[aria-label='identity unit'] option", state="attached", timeout=30000
    )
    assert frame.eval_on_selector("select[aria-label='identity unit']", "e => e.value") == str(
        PLANTED
    )
    frame.click("button[aria-label='track unit']")
    wait_until(lambda: "ident=%d" % PLANTED in view_hash(frame))

    def points():
        label = frame.get_attribute(".tls-identity-chart", "aria-label") or ""
        return re.findall(r"step (\d+): (−?\d+|none) \(\|r\| ([\d.e-]+|NaN)\)", label)

    found = wait_until(lambda: (lambda p: p if len(p) == STEPS else None)(points()))
    by_step = {int(s): (u, float(r)) for s, u, r in found}
    assert by_step[5] == (str(PLANTED), 1.0)
    for s in (2, 3, 4):  # the follower is there: matched to itself, |r| near 1
        assert by_step[s][0] == str(PLANTED) and by_step[s][1] > 0.95, by_step
    for s in (0, 1):  # not yet: its partner is some noise unit, weakly
        assert by_step[s][1] < 0.7, by_step
    shot(page, frame, ".tls-identity", "issue15-identity.png", artifacts_dir)
    page.screenshot(path=os.path.join(artifacts_dir, "issue15-page.png"), full_page=True)
    # a click on a point goes to its step
    box = frame.query_selector(".tls-identity-chart").bounding_box()
    frame.click(".tls-identity-chart", position={"x": 34 + 6 + 2, "y": box["height"] / 2})
    wait_until(lambda: step_label(frame) == 0)
