"""Pattern search (`search`): oracle checks of the window distances and of the greedy
choice of matches, the route in-process (version 2 and version 1 steps, bad input, the
cap), and a real `tensorboard` serving it on both load paths beside a significance
check."""

import json

import numpy as np
import pytest
from conftest import http_get, tensorboard_server, wait_for_json
from test_plugin_support import PREFIX, copy_v1_runs, make_client, v1_expected

import tb_lstm_states as tls
from tb_lstm_states import states as states_lib
from tb_lstm_states.analysis import search
from tb_lstm_states.server import limits

STEPS, BATCH, TIME, UNITS = (0, 1, 2), 6, 150, 12
WINDOW = 12
PATTERN_UNITS = (2, 5, 7, 9)
# (step, sequence, start) of the six planted occurrences; the first is the query.
PLACES = [(0, 0, 20), (0, 3, 90), (1, 1, 40), (1, 4, 10), (2, 2, 100), (2, 5, 60)]


def pattern():
    t = np.arange(WINDOW)[:, None]
    phase = np.arange(len(PATTERN_UNITS))[None, :]
    return 3.0 * np.sin(2 * np.pi * t / WINDOW + phase) + 1.5 * np.cos(np.pi * t / 5 - phase)


def background(rs, batch, time, units):
    """Smooth AR(0.9) noise of unit variance."""
    x = np.zeros((batch, time, units))
    e = rs.randn(batch, time, units) * np.sqrt(1 - 0.81)
    x[:, 0] = rs.randn(batch, units)
    for t in range(1, time):
        x[:, t] = 0.9 * x[:, t - 1] + e[:, t]
    return x


def planted_steps(seed=0):
    """`{step: [batch, time, units]}` with the pattern at `PLACES`, plus small noise."""
    rs = np.random.RandomState(seed)
    arrays = {step: background(rs, BATCH, TIME, UNITS) for step in STEPS}
    for step, sequence, start in PLACES:
        window = pattern() + 0.1 * rs.randn(WINDOW, len(PATTERN_UNITS))
        arrays[step][sequence, start : start + WINDOW][:, list(PATTERN_UNITS)] = window
    return arrays


def follower(seed=0, batch=8, time=200, units=40, lag=4):
    """AR(0.97) noise units against a random walk; unit 0 follows the walk `lag`
    steps behind, with AR(0.97) noise (r about 0.8)."""
    rs = np.random.RandomState(seed)
    walk = np.cumsum(rs.randn(batch, time), axis=1)
    x = np.zeros((batch, time + 1, units + 1))
    e = rs.randn(batch, time + 1, units + 1)
    for t in range(1, time + 1):
        x[:, t] = 0.97 * x[:, t - 1] + e[:, t]
    x = x[:, 1:]
    noise = x[:, lag:, units] / x[:, :, units].std()
    x = x[:, :, :units]
    x[:, lag:, 0] = walk[:, :-lag] + 0.5 * walk.std() * noise
    return x, walk


def write_steps(run_dir, arrays, lengths=None, series=None):
    with tls.StateWriter(str(run_dir)) as writer:
        for step, values in sorted(arrays.items()):
            batch, time, _ = values.shape
            layer = states_lib.LayerStates(values.astype(np.float32), None, {})
            states = states_lib.RecurrentStates(
                kind="rnn",
                layers=[layer],
                lengths=np.full(batch, time) if lengths is None else np.asarray(lengths),
            )
            writer.add_states("enc", states, step, series=series, dtype="float32")


# --- analysis oracles -------------------------------------------------------------


def brute_distances(values, lengths, query):
    batch, time, _ = values.shape
    length = len(query)
    out = np.full((batch, time - length + 1), np.inf)
    for b in range(batch):
        for s in range(time - length + 1):
            if s + length <= lengths[b]:
                out[b, s] = np.linalg.norm(values[b, s : s + length] - query)
    return out


def test_window_distances_by_brute_force():
    rs = np.random.RandomState(0)
    values = rs.randn(4, 60, 3).astype(np.float32)
    lengths = [60, 35, 12, 0]
    query = rs.randn(12, 3)
    got = search.window_distances(values, lengths, query)
    expected = brute_distances(values.astype(np.float64), lengths, query)
    assert got.shape == (4, 49)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)
    assert np.isinf(got[2, 1:]).all() and np.isfinite(got[2, 0]) and np.isinf(got[3]).all()
    # Longer than the array: no window at all.
    assert search.window_distances(values, lengths, rs.randn(61, 3)).shape == (4, 0)
    # Non-finite values count as zero.
    values[1, 3, 0] = np.nan
    clean = values.copy()
    clean[1, 3, 0] = 0
    np.testing.assert_allclose(
        search.window_distances(values, lengths, query),
        search.window_distances(clean, lengths, query),
    )


def brute_matches(arrays, length, top, exclude):
    """Greedy over every window of every array, the query window chosen first."""
    every = []
    for key, distances in arrays.items():
        for b, s in zip(*np.nonzero(np.isfinite(distances))):
            every.append((distances[b, s], key, b, s))
    every.sort()
    chosen = {(exclude[0], exclude[1]): [exclude[2]]}
    result = []
    for distance, key, b, s in every:
        taken = chosen.setdefault((key, b), [])
        if any(abs(s - other) < length for other in taken):
            continue
        taken.append(s)
        result.append({"key": key, "sequence": b, "start": s, "distance": distance})
        if len(result) == top:
            break
    return result


@pytest.mark.parametrize("length, top", [(1, 5), (4, 10), (9, 3), (20, 50)])
def test_greedy_matches_by_brute_force(length, top):
    rs = np.random.RandomState(length)
    arrays = {
        key: search.window_distances(rs.randn(3, 70, 2), [70, 50, 30], rs.randn(length, 2))
        for key in (3, 8, 11)
    }
    exclude = (8, 1, 7)
    candidates = search.Candidates(length, top, exclude)
    for key, distances in arrays.items():
        candidates.add(key, distances)
    got = candidates.matches()
    expected = brute_matches(arrays, length, top, exclude)
    assert [(m["key"], m["sequence"], m["start"]) for m in got] == [
        (m["key"], m["sequence"], m["start"]) for m in expected
    ]
    np.testing.assert_allclose(
        [m["distance"] for m in got], [m["distance"] for m in expected], rtol=1e-12
    )


def test_planted_pattern_in_memory():
    arrays = planted_steps()
    step, sequence, start = PLACES[0]
    query = arrays[step][sequence, start : start + WINDOW][:, list(PATTERN_UNITS)]
    candidates = search.Candidates(WINDOW, 5, PLACES[0])
    for key, values in arrays.items():
        distances = search.window_distances(
            values[:, :, list(PATTERN_UNITS)], [TIME] * BATCH, query
        )
        candidates.add(key, distances)
    found = [(m["key"], m["sequence"], m["start"]) for m in candidates.matches()]
    assert sorted(found) == sorted(PLACES[1:])


# --- the route --------------------------------------------------------------------


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    arrays = planted_steps()
    write_steps(root / "pattern", arrays)
    ragged = {4: arrays[0][:, :100], 5: arrays[1][:, :100]}
    write_steps(root / "ragged", ragged, lengths=[100, 40, 11, 100, 70, 5])
    x, walk = follower()
    write_steps(root / "follower", {0: x}, series={"walk": walk})
    copy_v1_runs(root)
    return root, arrays


QUERY = dict(
    run="pattern",
    tag="enc",
    step=0,
    layer=0,
    kind="hidden",
    sequence=0,
    start=20,
    stop=20 + WINDOW,
    units=",".join(str(u) for u in PATTERN_UNITS),
)


def get(client, route, **query):
    response = client.get(PREFIX + route, query_string=query)
    body = response.get_data()
    return response.status_code, (json.loads(body) if response.status_code == 200 else body)


def places(body):
    return [(m["step"], m["sequence"], m["start"]) for m in body["matches"]]


def test_search_finds_the_planted_occurrences(logdir):
    client, _, _ = make_client(logdir[0])
    status, body = get(client, "search", **QUERY, top=5)
    assert status == 200, body
    assert sorted(places(body)) == sorted(PLACES[1:])
    distances = [m["distance"] for m in body["matches"]]
    assert distances == sorted(distances) and max(distances) < 2.0
    assert body["steps"] == list(STEPS) and body["units"] == list(PATTERN_UNITS)
    assert (body["step"], body["sequence"], body["start"], body["stop"]) == (0, 0, 20, 32)
    # The default top (20): the planted five first, then windows that overlap none.
    status, body = get(client, "search", **QUERY)
    assert status == 200 and len(body["matches"]) == 20
    assert sorted(places(body)[:5]) == sorted(PLACES[1:])
    assert get(client, "search", **QUERY)[1] == body  # cached
    for m in body["matches"]:
        assert m["start"] + WINDOW <= TIME
        assert (m["step"], m["sequence"]) != (0, 0) or abs(m["start"] - 20) >= WINDOW
    groups = {}
    for m in body["matches"]:
        groups.setdefault((m["step"], m["sequence"]), []).append(m["start"])
    for starts in groups.values():
        starts.sort()
        assert all(b - a >= WINDOW for a, b in zip(starts, starts[1:]))


def test_search_over_all_units_and_chosen_steps(logdir):
    client, _, _ = make_client(logdir[0])
    query = dict(QUERY)
    del query["units"]
    status, body = get(client, "search", **query, top=5)
    assert status == 200 and body["units"] is None
    assert sorted(places(body)) == sorted(PLACES[1:])
    status, body = get(client, "search", **QUERY, steps="2,1,2", top=4)
    assert status == 200 and body["steps"] == [1, 2]
    assert sorted(places(body)) == sorted(p for p in PLACES if p[0] > 0)


def test_search_respects_lengths(logdir):
    root, arrays = logdir
    client, _, _ = make_client(root)
    lengths = [100, 40, 11, 100, 70, 5]
    query = dict(QUERY, run="ragged", step=4, top=1000)
    status, body = get(client, "search", **query)
    assert status == 200
    for m in body["matches"]:
        assert m["start"] + WINDOW <= lengths[m["sequence"]]
    assert not any(m["sequence"] in (2, 5) for m in body["matches"])
    # Every window, by brute force: the same greedy answer.
    units = list(PATTERN_UNITS)
    window = arrays[0][0, 20:32][:, units].astype(np.float32).astype(np.float64)
    distances = {
        step: brute_distances(
            arrays[source][:, :100][:, :, units].astype(np.float32).astype(np.float64),
            lengths,
            window,
        )
        for step, source in ((4, 0), (5, 1))
    }
    expected = brute_matches(distances, WINDOW, 1000, (4, 0, 20))
    assert places(body) == [(m["key"], m["sequence"], m["start"]) for m in expected]
    np.testing.assert_allclose(
        [m["distance"] for m in body["matches"]],
        [m["distance"] for m in expected],
        rtol=1e-6,
    )
    status, body = get(client, "search", **dict(query, sequence=1, start=30, stop=40))
    assert status == 200
    status, body = get(client, "search", **dict(query, sequence=1, start=30, stop=41))
    assert status == 400 and b"40 valid timesteps" in body


def test_search_version_1_steps(logdir):
    client, _, _ = make_client(logdir[0])
    expected = v1_expected()
    query = dict(
        run="lstm_run", tag="encoder", step=0, layer=0, kind="cell", sequence=0, start=1, stop=3
    )
    status, body = get(client, "search", **query, top=3)
    assert status == 200, body
    assert body["steps"] == [0, 1, 2]
    arrays = {s: expected[("lstm_run", "encoder", s, 0, "cell")] for s in (0, 1, 2)}
    window = arrays[0][0, 1:3].astype(np.float64)
    distances = {}
    for step, values in arrays.items():
        batch, time = values.shape[:2]
        distances[step] = brute_distances(values.astype(np.float64), [time] * batch, window)
    want = brute_matches(distances, 2, 3, (0, 0, 1))
    assert places(body) == [(m["key"], m["sequence"], m["start"]) for m in want]


@pytest.mark.parametrize(
    "change, status, words",
    [
        (dict(start="5", stop="5"), 400, ["'start' (5) must be less than 'stop' (5)"]),
        (dict(start="9", stop="3"), 400, ["less than"]),
        (dict(stop="151"), 400, ["past the end", "150 valid"]),
        (dict(start="-1"), 400, ["'start'"]),
        (dict(start="x"), 400, ["'start'"]),
        (dict(sequence="6"), 404, ["sequences 0 to 5"]),
        (dict(units="2,12"), 404, ["units 0 to 11", "no unit 12"]),
        (dict(units="2,2"), 400, ["unit 2 more than once"]),
        (dict(units="a"), 400, ["'units'"]),
        (dict(units=""), 400, ["'units'"]),
        (dict(units="-1"), 400, ["'units'"]),
        (dict(top="0"), 400, ["'top'"]),
        (dict(top="1001"), 400, ["'top' must be at most 1000"]),
        (dict(steps="1,7"), 404, ["no step 7"]),
        (dict(steps=",".join(str(s) for s in range(100, 100000))), 404, ["no step 100"]),
        (dict(steps="x"), 400, ["'steps'"]),
        (dict(step="9"), 404, []),
        (dict(kind="cell"), 404, ["kind"]),
        (dict(layer="3"), 404, ["layer"]),
        (dict(run="nope"), 404, []),
    ],
)
def test_search_bad_input(logdir, change, status, words):
    client, _, _ = make_client(logdir[0])
    code, body = get(client, "search", **dict(QUERY, **change))
    assert code == status, body
    for word in words:
        assert word in body.decode()


@pytest.mark.parametrize("name", ["run", "step", "sequence", "start", "stop", "kind"])
def test_search_missing_parameter(logdir, name):
    client, _, _ = make_client(logdir[0])
    query = dict(QUERY)
    del query[name]
    code, body = get(client, "search", **query)
    assert code == 400 and name in body.decode()


def test_search_cap(logdir, monkeypatch):
    client, _, _ = make_client(logdir[0])
    per_step = BATCH * TIME * UNITS
    monkeypatch.setattr(limits, "MAX_READ_VALUES", 2 * per_step)
    code, body = get(client, "search", **QUERY)
    assert code == 400
    text = body.decode()
    assert str(3 * per_step) in text and str(2 * per_step) in text
    assert "steps=" in text and "first 2 of these fit" in text
    code, body = get(client, "search", **QUERY, steps="0,2", top=3)
    assert code == 200
    assert sorted(places(body)) == sorted(p for p in PLACES[1:] if p[0] != 1)


def test_search_refuses_too_many_kept_windows(logdir, monkeypatch):
    client, _, _ = make_client(logdir[0])
    monkeypatch.setattr(search, "MAX_KEPT", 21 * (2 * WINDOW - 1))
    assert get(client, "search", **QUERY)[0] == 200  # top 20: 21 x 23 kept, the cap
    code, body = get(client, "search", **QUERY, top=21)
    assert code == 400
    text = body.decode()
    assert "top=21" in text and str(22 * 23) in text and "shorter window" in text


def test_candidates_prune_to_what_they_keep():
    """Many arrays: what is kept never exceeds 3 x keep, and the answer is unchanged."""
    rs = np.random.RandomState(3)
    arrays = {
        key: search.window_distances(rs.randn(2, 40, 1), [40, 40], rs.randn(3, 1))
        for key in range(30)
    }
    candidates = search.Candidates(3, 2, (4, 0, 10))
    for key, distances in arrays.items():
        candidates.add(key, distances)
        assert sum(len(part[0]) for part in candidates._parts) <= 3 * candidates.keep
    got = [(m["key"], m["sequence"], m["start"]) for m in candidates.matches()]
    want = brute_matches(arrays, 3, 2, (4, 0, 10))
    assert got == [(m["key"], m["sequence"], m["start"]) for m in want]


# --- a real tensorboard -----------------------------------------------------------


@pytest.mark.parametrize("load_fast", [True, False], ids=["load_fast", "python_loader"])
def test_real_tensorboard_serves_search_and_significance(logdir, load_fast):
    root, _ = logdir
    with tensorboard_server(root, load_fast=load_fast) as url:
        base = url + PREFIX
        wait_for_json(
            base + "runs",
            lambda body: {"pattern", "follower", "lstm_run"} <= set(body),
            timeout=60,
        )
        wait_for_json(base + "steps?run=pattern&tag=enc", lambda body: len(body) == 3, timeout=60)
        query = "&".join("%s=%s" % item for item in QUERY.items())
        status, _, raw = http_get(base + "search?" + query + "&top=5")
        assert status == 200, raw
        assert sorted(places(json.loads(raw))) == sorted(PLACES[1:])
        status, _, raw = http_get(base + "search?" + query.replace("stop=32", "stop=10"))
        assert status == 400 and b"less than" in raw
        status, _, raw = http_get(
            base + "units?run=follower&tag=enc&step=0&layer=0&kind=hidden&series=walk"
        )
        assert status == 200
        significance = json.loads(raw)["significance"]
        assert significance["lag"][0] == 4 and significance["q"][0] < 0.01
        assert sum(q is not None and q < 0.05 for q in significance["q"][1:]) <= 2
