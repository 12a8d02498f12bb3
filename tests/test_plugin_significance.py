"""Unit significance against a series (`units?...&series=`) and unit matching across
runs (`match`): oracle checks of the analyses, the routes in-process, and one real
`tensorboard` serving both."""

import json

import numpy as np
import pytest
from conftest import http_get, tensorboard_server, wait_for_json
from test_plugin_support import PREFIX, make_client

import tb_lstm_states as tls
from tb_lstm_states import states as states_lib
from tb_lstm_states.analysis import significance

BATCH, TIME, UNITS, LAG = 4, 200, 40, 4


def ar_noise(rs, batch, time, units, phi=0.97):
    x = np.zeros((batch, time, units))
    e = rs.randn(batch, time, units)
    for t in range(1, time):
        x[:, t] = phi * x[:, t - 1] + e[:, t]
    return x


def planted(seed=0, units=UNITS, batch=BATCH, time=TIME, noise=0.3):
    """AR(0.97) noise units against a random walk; unit 0 follows the walk `LAG`
    steps behind."""
    rs = np.random.RandomState(seed)
    walk = np.cumsum(rs.randn(batch, time), axis=1)
    x = ar_noise(rs, batch, time, units)
    x[:, LAG:, 0] = walk[:, :-LAG] + noise * walk.std() * rs.randn(batch, time - LAG)
    return x, walk


def write(run_dir, hidden, series=None, lengths=None, step=0):
    batch, time, _ = hidden.shape
    lengths = np.full(batch, time) if lengths is None else np.asarray(lengths)
    layer = states_lib.LayerStates(hidden.astype(np.float32), None, {})
    states = states_lib.RecurrentStates(kind="rnn", layers=[layer], lengths=lengths)
    with tls.StateWriter(str(run_dir)) as writer:
        writer.add_states("enc", states, step, series=series, dtype="float32")


# --- analysis oracles -------------------------------------------------------------


def test_ar_noise_against_a_random_walk_is_rarely_significant():
    x, walk = planted(seed=1, units=200)
    result = significance.lagged_significance(x, walk, [TIME] * BATCH, 20)
    null_rate = float(np.mean(result["p"][1:] < 0.05))
    assert null_rate <= 0.15, null_rate  # measured: 0.04 (Sidak over 41 lags)
    assert (result["q"][1:] < 0.05).sum() <= 2
    assert result["lag"][0] == LAG
    assert result["r"][0] > 0.9
    assert result["p"][0] < 1e-3 and result["q"][0] < 0.01


def test_negative_lag_and_sign():
    rs = np.random.RandomState(3)
    walk = np.cumsum(rs.randn(BATCH, TIME), axis=1)
    x = ar_noise(rs, BATCH, TIME, 5)
    x[:, :-3, 2] = -walk[:, 3:]  # the unit leads the series by 3 steps
    result = significance.lagged_significance(x, walk, [TIME] * BATCH, 10)
    assert result["lag"][2] == -3 and result["r"][2] < -0.99


def follower(seed, batch, time, noise, level, units=UNITS):
    """39 AR(0.97) noise units against a random walk; unit 0 is the walk `LAG` steps
    behind plus noise: white, or AR(0.97) (`noise`), `level` times the walk's std."""
    rs = np.random.RandomState(seed)
    walk = np.cumsum(rs.randn(batch, time), axis=1)
    x = ar_noise(rs, batch, time, units)
    if noise == "white":
        extra = rs.randn(batch, time - LAG)
    else:
        extra = ar_noise(rs, batch, time - LAG, 1)[..., 0]
        extra /= extra.std()
    x[:, LAG:, 0] = walk[:, :-LAG] + level * walk.std() * extra
    return x, walk


@pytest.mark.parametrize(
    "batch, time",
    [(8, 100), (8, 200), (32, 100), (16, 500), (1, 500), (1, 1000), (1, 3000)],
    ids=lambda v: str(v),
)
@pytest.mark.parametrize("noise, level", [("white", 0.3), ("ar", 0.5)])
def test_a_lagged_follower_is_found_over_seeds(batch, time, noise, level):
    """Found at lag 4 with q < 0.01 on every seed, many sequences or one long one (r
    about 0.8-0.96; measured: 10 of 10 seeds in each case)."""
    for seed in range(5):
        x, walk = follower(seed, batch, time, noise, level)
        result = significance.lagged_significance(x, walk, [time] * batch, 20)
        assert result["lag"][0] == LAG, (seed, result["lag"][0])
        assert result["q"][0] < 0.01, (seed, result["q"][0], result["r"][0])
        assert 0.7 < result["r"][0] < 1.0
        assert (result["q"][1:] < 0.05).sum() <= 2


def test_a_noisier_follower_on_many_sequences():
    """r about 0.5-0.7 (noise as large as the walk) is still found with 8 or more
    sequences."""
    for batch, time in ((8, 200), (32, 100), (16, 300)):
        for seed in range(3):
            x, walk = follower(seed, batch, time, "ar", 1.0)
            result = significance.lagged_significance(x, walk, [time] * batch, 20)
            assert result["lag"][0] == LAG and result["q"][0] < 0.01, (batch, time, seed)


def test_the_one_long_sequence_that_was_missed():
    """One sequence of 1,000 steps, r = 0.96 among 200 units: the first test (Bartlett
    on the raw values) gave q = 0.22; prewhitening finds it."""
    x, walk = follower(0, 1, 1000, "white", 0.3, units=200)
    result = significance.lagged_significance(x, walk, [1000], 20)
    assert result["r"][0] > 0.95
    assert result["lag"][0] == LAG and result["q"][0] < 1e-3


@pytest.mark.parametrize("batch, time", [(8, 200), (32, 100), (1, 1000), (1, 2000)])
@pytest.mark.parametrize("null", ["ar97", "walk"])
def test_null_units_stay_null_over_seeds(batch, time, null):
    """39 (or 40) independent autocorrelated units against a random walk, 20 seeds:
    never more than 2 with q < 0.05, and p < 0.05 at about the nominal rate
    (measured: 0-2 units with q < 0.05, mean 0-0.15; p < 0.05 for 4-8% of units)."""
    rates = []
    for seed in range(20):
        rs = np.random.RandomState(1000 + seed)
        walk = np.cumsum(rs.randn(batch, time), axis=1)
        if null == "walk":
            x = np.cumsum(rs.randn(batch, time, 40), axis=1)
        else:
            x = ar_noise(rs, batch, time, 40)
        result = significance.lagged_significance(x, walk, [time] * batch, 20)
        assert (result["q"] < 0.05).sum() <= 2, seed
        rates.append(np.mean(result["p"] < 0.05))
    assert np.mean(rates) <= 0.1, np.mean(rates)


def sine_follower(seed, batch, time, level, units=UNITS, period=50):
    """39 AR(0.97) noise units against a sine of random phase per sequence; unit 0 is
    the sine `LAG` steps behind plus AR(0.97) noise."""
    rs = np.random.RandomState(seed)
    sine = np.sin(2 * np.pi * np.arange(time)[None] / period + 2 * np.pi * rs.rand(batch, 1))
    x = ar_noise(rs, batch, time, units)
    extra = ar_noise(rs, batch, time - LAG, 1)[..., 0]
    x[:, LAG:, 0] = sine[:, :-LAG] + level * sine.std() * extra / extra.std()
    return x, sine


@pytest.mark.parametrize("batch, time", [(32, 100), (8, 200), (1, 1000)])
def test_a_follower_of_an_oscillation(batch, time):
    """A unit's own AR(2) filter can cancel the sine it follows; its AR(1) filter
    keeps it (measured: 9-10 of 10 seeds found; with the BIC filter alone, 5 of 10 on
    one sequence)."""
    found = 0
    for seed in range(5):
        x, sine = sine_follower(seed, batch, time, 0.5)
        result = significance.lagged_significance(x, sine, [time] * batch, 20)
        found += result["lag"][0] == LAG and result["q"][0] < 0.01
        assert (result["q"][1:] < 0.05).sum() <= 2
    assert found >= 4, found


@pytest.mark.parametrize("batch, time", [(32, 100), (1, 1000)])
def test_oscillating_null_units_against_a_sine(batch, time):
    """The hardest null for a sine: units that oscillate near its period (measured:
    at most 2 of 39 with q < 0.05, p < 0.05 for at most 5%)."""
    a1, a2 = 2 * 0.97 * np.cos(2 * np.pi / 50), -(0.97**2)
    rates = []
    for seed in range(10):
        rs = np.random.RandomState(2000 + seed)
        sine = np.sin(2 * np.pi * np.arange(time)[None] / 50 + 2 * np.pi * rs.rand(batch, 1))
        e = rs.randn(batch, time, 39)
        x = np.zeros((batch, time, 39))
        for t in range(2, time):
            x[:, t] = a1 * x[:, t - 1] + a2 * x[:, t - 2] + e[:, t]
        result = significance.lagged_significance(x, sine, [time] * batch, 20)
        assert (result["q"] < 0.05).sum() <= 2, seed
        rates.append(np.mean(result["p"] < 0.05))
    assert np.mean(rates) <= 0.1


def test_ragged_lengths_and_a_constant_unit():
    rs = np.random.RandomState(5)
    walk = np.cumsum(rs.randn(6, 150), axis=1)
    x = ar_noise(rs, 6, 150, 4)
    x[:, LAG:, 0] = walk[:, :-LAG] + 0.5 * rs.randn(6, 150 - LAG)
    x[:, :, 3] = 2.0
    lengths = [150, 90, 120, 60, 150, 30]
    for b, n in enumerate(lengths):  # past the length: garbage that must not count
        x[b, n:] = 1e6
        walk[b, n:] = -1e6
    result = significance.lagged_significance(x, walk, lengths, 10)
    assert result["lag"][0] == LAG and result["q"][0] < 1e-6
    assert np.isnan(result["p"][3]) and np.isnan(result["q"][3]) and np.isnan(result["lag"][3])
    assert np.isfinite(result["p"][:3]).all()


def test_lagged_within_by_brute_force():
    rs = np.random.RandomState(0)
    batch, time, start = 3, 50, 2
    lengths = np.array([50, 30, 41])
    mask = significance._valid(lengths, time, start)
    x = rs.randn(batch, time, 4) * mask[..., None]
    y = rs.randn(batch, time, 1) * mask[..., None]
    lags = np.arange(-7, 8)
    r, n = significance.lagged_within(x, y, lengths, start, lags)
    for i, lag in enumerate(lags):
        xs, ys = [], []
        for b in range(batch):
            ts = [t for t in range(start, lengths[b]) if start <= t - lag < lengths[b]]
            xs.append(x[b, ts] - x[b, ts].mean(axis=0))
            ys.append(y[b, [t - lag for t in ts], 0] - y[b, [t - lag for t in ts], 0].mean())
        xx, yy = np.concatenate(xs), np.concatenate(ys)
        expected = (xx * yy[:, None]).sum(0) / np.sqrt((xx * xx).sum(0) * (yy * yy).sum())
        np.testing.assert_allclose(r[i], expected, rtol=1e-9)
        assert n[i] == len(xx) - batch


def test_ar_filters_match_yule_walker():
    from scipy import linalg

    acov = np.array([[1.0, 0.9, 0.75, 0.6, 0.5]]).T
    for order in range(1, 5):
        coefficients = significance.ar_filters(acov, 1e12, order)  # BIC: the full order
        expected = linalg.solve_toeplitz(acov[:order, 0], acov[1 : order + 1, 0])
        np.testing.assert_allclose(coefficients[:, 0], expected, rtol=1e-9)
    # White noise: BIC keeps no coefficient.
    white = np.array([[1.0, 0.01, -0.02, 0.0, 0.01]]).T
    assert not significance.ar_filters(white, 1000, 4).any()


def test_follower_across_two_runs():
    """What the brackets demo prints: the depth unit of one run, its q, and its
    counterpart in the other run."""
    x, walk = follower(0, 8, 200, "ar", 0.5)
    rs = np.random.RandomState(7)
    permutation = rs.permutation(UNITS)
    other = -x[:, :, permutation] + 0.1 * x.std() * rs.randn(*x.shape)
    result = significance.follower_across(x, other, walk, [200] * 8)
    assert result["unit"] == 0 and result["lag"] == LAG and result["q"] < 0.01
    twin = int(np.argsort(permutation)[0])
    match = result["match"]
    assert match["unit"] == twin and match["sign"] == -1 and match["similarity"] > 0.9
    assert match["lag"] == LAG and match["q"] < 0.01 and match["r"] < -0.7
    assert result["other_best"]["unit"] == twin
    assert 0.9 < result["cka"] <= 1.0 + 1e-9


def test_benjamini_hochberg_by_hand():
    p = np.array([0.01, 0.04, 0.03, 0.2, np.nan, 0.005])
    # sorted: 0.005, 0.01, 0.03, 0.04, 0.2 (m = 5) -> p * m / rank, then running min
    # from the top: 0.025, 0.025, 0.05, 0.05, 0.2
    expected = np.array([0.025, 0.05, 0.05, 0.2, np.nan, 0.025])
    np.testing.assert_allclose(significance.benjamini_hochberg(p), expected)
    from scipy import stats

    finite = np.isfinite(p)
    np.testing.assert_allclose(
        significance.benjamini_hochberg(p)[finite], stats.false_discovery_control(p[finite])
    )


def test_matching_recovers_a_signed_permutation():
    rs = np.random.RandomState(0)
    x = rs.randn(3, 50, 12)
    permutation = rs.permutation(12)
    signs = np.where(rs.rand(12) < 0.5, -1, 1)
    y = x[:, :, permutation] * signs + 0.1 * rs.randn(3, 50, 12)
    result = significance.match_units(y, x, [50, 40, 30])
    assert result["units"] == permutation.tolist()
    assert result["sign"] == signs.tolist()
    assert min(result["similarity"]) > 0.9
    # A subset: every unit of the smaller side is paired; extra units stay null.
    subset = significance.match_units(x, y[:, :, :5], [50, 40, 30])
    paired = [i for i, j in enumerate(subset["units"]) if j is not None]
    assert sorted(paired) == sorted(permutation[:5].tolist())
    assert all(subset["units"][permutation[j]] == j for j in range(5))


def test_cka_oracle():
    rs = np.random.RandomState(1)
    x = rs.randn(200, 6)
    rotation, _ = np.linalg.qr(rs.randn(6, 6))
    assert significance.linear_cka(x, x) == pytest.approx(1.0)
    assert significance.linear_cka(x, 3.0 * x @ rotation + 2.0) == pytest.approx(1.0)
    y = rs.randn(200, 4) + x[:, :4]
    xc, yc = x - x.mean(0), y - y.mean(0)

    def hsic(a, b):
        return np.trace(a @ a.T @ b @ b.T)

    direct = hsic(xc, yc) / np.sqrt(hsic(xc, xc) * hsic(yc, yc))
    assert significance.linear_cka(x, y) == pytest.approx(direct, rel=1e-9)


# --- routes -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("significance")
    x, walk = planted(seed=2)
    write(root / "a", x, series={"walk": walk, "noise": np.random.RandomState(9).randn(4, 200)})
    rs = np.random.RandomState(4)
    permutation = rs.permutation(UNITS)
    signs = np.where(rs.rand(UNITS) < 0.5, -1.0, 1.0)
    copy = x[:, :, permutation] * signs + 0.05 * x.std() * rs.randn(*x.shape)
    write(root / "b", copy)
    write(root / "subset", x[:, :, permutation[:24]])
    write(root / "other_time", x[:, :100])
    write(root / "other_lengths", x, lengths=[200, 150, 200, 200])
    return root, permutation, signs


def get(client, route, **query):
    response = client.get(PREFIX + route, query_string=query)
    body = response.get_data()
    return response.status_code, (json.loads(body) if response.status_code == 200 else body)


UNITS_QUERY = dict(run="a", tag="enc", step=0, layer=0, kind="hidden")
MATCH_QUERY = dict(UNITS_QUERY, other_run="b", other_tag="enc", other_step=0)


def test_units_route_significance(logdir):
    client, _, _ = make_client(logdir[0])
    status, body = get(client, "units", **UNITS_QUERY, series="walk", max_lag=10)
    assert status == 200
    sig = body["significance"]
    assert sig["series"] == "walk" and sig["max_lag"] == 10
    assert sig["lag"][0] == LAG and sig["q"][0] < 0.01
    assert sum(q < 0.05 for q in sig["q"][1:]) <= 2
    assert len(sig["r"]) == len(sig["p"]) == UNITS
    status, plain = get(client, "units", **UNITS_QUERY)
    assert status == 200 and "significance" not in plain
    assert plain["variance"] == body["variance"]


@pytest.mark.parametrize(
    "extra, status, words",
    [
        (dict(series="nope"), 404, ["'nope'", "'walk'", "'noise'"]),
        (dict(series="walk", max_lag="-1"), 400, ["max_lag"]),
        (dict(series="walk", max_lag="x"), 400, ["max_lag"]),
        (dict(series="walk", max_lag="100000"), 400, ["max_lag"]),
        (dict(max_lag="3"), 400, ["series"]),
    ],
)
def test_units_route_bad_significance(logdir, extra, status, words):
    client, _, _ = make_client(logdir[0])
    code, body = get(client, "units", **UNITS_QUERY, **extra)
    assert code == status
    for word in words:
        assert word in body.decode()


def test_match_route(logdir):
    root, permutation, signs = logdir
    client, _, _ = make_client(root)
    status, body = get(client, "match", **MATCH_QUERY)
    assert status == 200
    inverse = np.argsort(permutation)  # b's unit j is a's unit permutation[j]
    assert sum(u == int(inverse[i]) for i, u in enumerate(body["units"])) >= UNITS - 2
    assert body["sign"] == [int(signs[inverse[i]]) for i in range(UNITS)]
    assert 0.9 < body["cka"] <= 1.0 + 1e-9
    assert all(0.9 < s <= 1.0 for s in body["similarity"])
    assert get(client, "match", **MATCH_QUERY)[1] == body  # cached
    status, subset = get(client, "match", **dict(MATCH_QUERY, other_run="subset"))
    assert status == 200 and subset["other_units"] == 24
    assert all(subset["units"][permutation[j]] == j for j in range(24))
    assert sum(u is None for u in subset["units"]) == UNITS - 24


@pytest.mark.parametrize(
    "extra, status, words",
    [
        (dict(other_run="other_time"), 400, ["time 200 vs 100"]),
        (dict(other_run="other_lengths"), 400, ["lengths"]),
        (dict(other_run="missing"), 404, []),
        (dict(other_kind="cell"), 404, []),
        (dict(other_step="x"), 400, ["other_step"]),
    ],
)
def test_match_route_bad(logdir, extra, status, words):
    client, _, _ = make_client(logdir[0])
    code, body = get(client, "match", **dict(MATCH_QUERY, **extra))
    assert code == status, body
    for word in words:
        assert word in body.decode()
    missing = dict(MATCH_QUERY)
    del missing["other_run"]
    assert get(client, "match", **missing)[0] == 400


def test_real_tensorboard_serves_significance_and_match(logdir):
    root, permutation, _ = logdir
    with tensorboard_server(root, load_fast=False) as url:
        base = url + PREFIX
        wait_for_json(base + "runs", lambda body: {"a", "b"} <= set(body), timeout=60)
        query = "units?run=a&tag=enc&step=0&layer=0&kind=hidden&series=walk"
        status, _, raw = http_get(base + query)
        assert status == 200
        assert json.loads(raw)["significance"]["lag"][0] == LAG
        status, _, raw = http_get(base + query.replace("walk", "nope"))
        assert status == 404 and b"walk" in raw
        status, _, raw = http_get(
            base + "match?run=a&tag=enc&step=0&layer=0&kind=hidden"
            "&other_run=b&other_tag=enc&other_step=0"
        )
        assert status == 200
        units = json.loads(raw)["units"]
        assert units[permutation[0]] == 0
