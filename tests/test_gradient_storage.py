"""Gradients (issue 14) stored, read and served: the kinds `grad_hidden` and `grad_cell`,
the memory horizon of the `units` route and the gradient reach of the overview.

Records are built by hand (numpy) where the capture does not matter, and captured
with `log(loss=)` for the round trip through a real TensorBoard on both load paths.
"""

import json
import math
import os
import shutil

import numpy as np
import pytest
from conftest import http_get, tensorboard_server, wait_for_json
from test_plugin_support import PREFIX, copy_v1_runs, make_client, make_states, write_index
from test_plugin_v2 import get, get_json, npy, read_index, reference_binned, url_of

import tb_lstm_states as tls
from tb_lstm_states import statistics
from tb_lstm_states.storage import format, gradients

LONG_TIME = 3000  # past format.PYRAMID_MIN_TIME: the gradients get pyramids too


def with_grads(states, seed=0, scale=1.0):
    """`states` with random gradients on every layer, zero past each sequence's length."""
    rs = np.random.RandomState(seed)
    lengths = np.asarray(states.lengths)
    mask = (np.arange(states.time_steps)[None, :] < lengths[:, None])[..., None]
    for layer in states.layers:
        names = ("cell", "hidden") if states.kind == "lstm" else ("hidden",)
        layer.grads = {
            name: (scale * rs.randn(*layer.get(name).shape) * mask).astype(np.float32)
            for name in names
        }
    return states


def decaying_grads(states, rate=0.9):
    """Gradients whose norm is `rate ** k`, k timesteps back from each sequence's last
    valid timestep: the reach is the first k with rate ** k < 1%."""
    for layer in states.layers:
        layer.grads = {}
        for name in ("cell", "hidden") if states.kind == "lstm" else ("hidden",):
            array = np.zeros(layer.get(name).shape, np.float32)
            for b, length in enumerate(np.asarray(states.lengths)):
                k = length - 1 - np.arange(length)
                array[b, :length, 0] = rate**k
            layer.grads[name] = array
    return states


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    """Run `run`, tag `lstm`: step 0 without gradients, steps 1 and 2 with; tag `gru`:
    a bidirectional GRU with gradients; run `long`: an RNN of LONG_TIME timesteps."""
    root = tmp_path_factory.mktemp("gradients")
    written = {}
    with tls.StateWriter(str(root / "run")) as writer:
        for step in range(3):
            states = make_states(seed=step, lengths=[7, 5, 0])
            if step:
                states = with_grads(states, seed=step, scale=10.0**-step)
            writer.add_states("lstm", states, step, series={"target": np.ones((3, 7))})
            written[("lstm", step)] = states
        gru = with_grads(make_states("gru", directions=2, lengths=[7, 3, 6], seed=5), seed=5)
        writer.add_states("gru", gru, 0)
        written[("gru", 0)] = gru
    with tls.StateWriter(str(root / "long")) as writer:
        states = with_grads(make_states("rnn", layers=1, batch=2, time=LONG_TIME, seed=7), seed=7)
        writer.add_states("rnn", states, 0)
        written[("rnn", 0)] = states
    return root, written


@pytest.fixture(scope="module")
def client(logdir):
    return make_client(logdir[0])[0]


def records(root, run, tag):
    return {r.step: r for r in tls.read_states(str(root), run=run, tag=tag, strict=True)}


# ----------------------------------------------------------------------
# Storage.


def test_read_states_returns_the_gradients_in_float32(logdir):
    root, written = logdir
    found = records(root, "run", "lstm")
    assert found[0].states.layers[0].grads == {} and found[0].states.layers[1].grads == {}
    for step in (1, 2):
        for layer, expected in zip(found[step].states.layers, written[("lstm", step)].layers):
            assert set(layer.grads) == {"cell", "hidden"}
            for name, array in layer.grads.items():
                assert array.dtype == np.float32  # float16 would flush them to zero
                assert array.tobytes() == expected.grads[name].tobytes()
            assert layer.hidden.dtype == np.float16  # the states keep the record's dtype
    (gru,) = records(root, "run", "gru").values()
    assert [set(layer.grads) for layer in gru.states.layers] == [{"hidden"}] * 4
    np.testing.assert_array_equal(
        gru.states.layers[3].grads["hidden"], written[("gru", 0)].layers[3].grads["hidden"]
    )


def test_an_index_holds_the_kinds_its_record_has(tmp_path):
    states = make_states(lengths=[7, 5, 0])
    with tls.StateWriter(str(tmp_path / "plain")) as writer:
        writer.add_states("t", states, 0)
    plain = read_index(tmp_path / "plain")
    assert plain["version"] == 2 and "gradient_reach" not in plain  # readable by older readers
    with tls.StateWriter(str(tmp_path / "grads")) as writer:
        writer.add_states("t", with_grads(states), 0)
    index = read_index(tmp_path / "grads")
    assert index["version"] == gradients.VERSION == 3
    kinds = [(e["layer"], e["kind"]) for e in index["arrays"] if "series" not in e]
    assert kinds == statistics.rows("lstm", 2) + [
        (layer, kind) for layer in range(2) for kind in ("grad_cell", "grad_hidden")
    ]
    assert {e["dtype"] for e in index["arrays"] if e["kind"].startswith("grad_")} == {"float32"}
    table = np.array(index["statistics"], dtype=float)
    expected = statistics.record_statistics(with_grads(make_states(lengths=[7, 5, 0])))
    np.testing.assert_allclose(table[:, :5], expected, rtol=1e-6)
    grad_rows = table[len(statistics.rows("lstm", 2)) :]
    assert np.isnan(grad_rows[:, 2:4]).all()  # saturated and dead mean nothing for a gradient
    assert np.isfinite(grad_rows[:, [0, 1, 4, 5, 6]]).all()


def test_gradients_on_some_layers_only_or_misshapen_are_refused(tmp_path):
    with tls.StateWriter(str(tmp_path)) as writer:
        states = with_grads(make_states())
        states.layers[1].grads = {}
        with pytest.raises(ValueError, match=r"every layer or none.*loss="):
            writer.add_states("t", states, 0)
        states = with_grads(make_states())
        del states.layers[0].grads["cell"]
        with pytest.raises(ValueError, match="layer 0 grads has keys"):
            writer.add_states("t", states, 0)
        states = with_grads(make_states("gru"))
        states.layers[0].grads["cell"] = states.layers[0].grads["hidden"]
        with pytest.raises(ValueError, match=r"gradients of a gru record are \['hidden'\]"):
            writer.add_states("t", states, 0)
        states = with_grads(make_states())
        states.layers[1].grads["hidden"] = states.layers[1].grads["hidden"][:, :3]
        with pytest.raises(ValueError, match=r"layer 1 grads\['hidden'\] has shape \[3, 3, 4\]"):
            writer.add_states("t", states, 0)
    assert list(tls.read_states(str(tmp_path))) == []  # nothing was written


def test_gradient_reach_counts_back_from_each_last_valid_timestep():
    states = decaying_grads(make_states(lengths=[60, 50, 0], time=60, layers=1))
    # 0.9 ** k < 0.01 first at k = 44
    assert gradients.reach(states.layers[0].grads["cell"], states.lengths) == 44
    short = decaying_grads(make_states(lengths=[30, 20], batch=2, time=30, layers=1))
    assert gradients.reach(short.layers[0].grads["cell"], short.lengths) == 30  # never falls
    grown = np.ones((1, 4, 2))
    grown[0, 0] = 1000.0  # largest at the start: the last timestep is below 1% of it
    assert gradients.reach(grown, [4]) == 0
    zeros = np.zeros((2, 5, 3))
    assert gradients.reach(zeros, [5, 5]) is None and gradients.reach(zeros + 1, [0, 0]) is None
    assert gradients.reach(np.full((1, 4, 2), np.nan), [4]) is None
    # In blocks (many timesteps of a wide array) as in one.
    rs = np.random.RandomState(0)
    wide = rs.randn(2, 300, 512) * np.exp(-np.arange(300) / 40.0)[None, ::-1, None]
    wide[1, 220:] = 0
    norms = np.linalg.norm(wide, axis=2)
    lengths = [300, 220]
    by_k = np.zeros(300)
    count = np.zeros(300)
    for b, length in enumerate(lengths):
        by_k[:length] += norms[b, :length][::-1]
        count[:length] += 1
    mean = by_k / count
    expected = int(np.flatnonzero(mean < 0.01 * mean.max())[0])
    assert 100 < expected < 220
    assert gradients.reach(wide.astype(np.float32), lengths) == expected


def test_the_index_holds_the_reach_of_the_last_layer_forward(tmp_path):
    states = decaying_grads(make_states(lengths=[60, 50, 0], time=60, layers=2, directions=2))
    for layer in states.layers[:-2]:  # only the last layer's forward direction counts
        layer.grads = {name: np.ones_like(grad) for name, grad in layer.grads.items()}
    states.layers[3].grads = {name: np.ones_like(g) for name, g in states.layers[3].grads.items()}
    with tls.StateWriter(str(tmp_path)) as writer:
        writer.add_states("t", states, 0)
    assert read_index(tmp_path)["gradient_reach"] == 44


# ----------------------------------------------------------------------
# Served (werkzeug client over a real provider).


def test_every_kind_route_serves_the_gradients(client, logdir):
    root, _ = logdir
    stored = records(root, "run", "lstm")[2].states
    for layer in range(2):
        for kind in ("grad_cell", "grad_hidden"):
            status, headers, body = get(
                client,
                "states",
                run="run",
                tag="lstm",
                step=2,
                layer=layer,
                kind=kind,
                format="npy",
            )
            assert status == 200, body
            expected = stored.layers[layer].grads[gradients.state_of(kind)]
            assert npy(body).dtype == np.float32 and npy(body).tobytes() == expected.tobytes()
    status, headers, body = get(
        client, "states", run="run", tag="lstm", step=1, layer=0, kind="grad_cell", sequence=1
    )
    assert status == 200 and headers["X-Stored-Dtype"] == "float32" and headers["X-Shape"] == "7,4"
    for route, extra in (
        ("changes", {"sequence": 0}),
        ("units", {}),
        ("projection", {"method": "pca", "steps": "1,2"}),
        ("match", {"other_run": "run", "other_tag": "lstm", "other_step": 1}),
    ):
        answer = get_json(
            client, route, run="run", tag="lstm", step=2, layer=1, kind="grad_hidden", **extra
        )
        assert answer, route
    units = get_json(client, "units", run="run", tag="lstm", step=2, layer=0, kind="grad_cell")
    assert units["kind"] == "grad_cell" and units["saturation"] == [None] * 4
    assert units["dead"] == [False] * 4


def test_binned_views_of_long_gradients_are_exact(client, logdir):
    _, written = logdir
    values = written[("rnn", 0)].layers[0].grads["hidden"]
    for start, stop, bins in ((0, LONG_TIME, 7), (5, 2900, 300), (0, LONG_TIME, 2)):
        status, headers, body = get(
            client,
            "states",
            run="long",
            tag="rnn",
            step=0,
            layer=0,
            kind="grad_hidden",
            sequence=1,
            start=start,
            stop=stop,
            bins=bins,
        )
        assert status == 200 and headers["X-Binned"] == "1", body
        np.testing.assert_array_equal(
            np.frombuffer(body, "<f4").reshape(2, bins, 4),
            reference_binned(values[1], start, stop, bins),
        )


def test_a_step_without_gradients_answers_404_saying_so(client):
    for route, extra in (("states", {}), ("changes", {"sequence": 0}), ("units", {})):
        status, _, body = get(
            client, route, run="run", tag="lstm", step=0, layer=0, kind="grad_cell", **extra
        )
        assert status == 404 and b"holds no gradients" in body and b"loss=" in body, body
    status, _, body = get(
        client,
        "match",
        run="run",
        tag="lstm",
        step=2,
        layer=0,
        kind="grad_cell",
        other_run="run",
        other_tag="lstm",
        other_step=0,
    )
    assert status == 404 and b"holds no gradients" in body
    status, _, body = get(client, "states", run="run", tag="gru", step=0, layer=0, kind="grad_cell")
    assert status == 404 and b"no kind 'grad_cell'" in body  # a GRU has no cell
    status, _, body = get(client, "states", run="run", tag="lstm", step=2, layer=0, kind="grad_x")
    assert status == 404 and b"no kind 'grad_x'" in body


def test_the_listings_say_which_kinds_each_step_holds(client):
    runs = get_json(client, "runs")
    assert runs["run"]["lstm"]["gradient_kinds"] == ["grad_cell", "grad_hidden"]
    assert runs["run"]["gru"]["gradient_kinds"] == ["grad_hidden"]
    assert runs["run"]["lstm"]["kinds"] == [
        "cell",
        "hidden",
        "input",
        "forget",
        "candidate",
        "output",
    ]
    overview = get_json(client, "overview", run="run", tag="lstm")
    states = ["cell", "hidden", "input", "forget", "candidate", "output"]
    both = [*states, "grad_cell", "grad_hidden"]
    assert overview["kinds"] == [states, both, both]
    # Step 0 has no gradient rows: its values there are null, the others' are not.
    assert overview["rows"][-4:] == [
        [0, "grad_cell"],
        [0, "grad_hidden"],
        [1, "grad_cell"],
        [1, "grad_hidden"],
    ]
    values = overview["values"]
    assert values[0][-1] == [None] * len(format.STATISTICS_COLUMNS)
    assert values[0][0][0] is not None and values[2][-1][0] is not None
    assert overview["gradient_reach"][0] is None
    assert all(isinstance(r, int) for r in overview["gradient_reach"][1:])
    long = get_json(client, "overview", run="long", tag="rnn")
    assert long["kinds"] == [["hidden", "grad_hidden"]]


def test_version_1_steps_hold_no_gradients(tmp_path):
    copy_v1_runs(tmp_path)
    served = make_client(tmp_path)[0]
    overview = get_json(served, "overview", run="lstm_run", tag="encoder")
    states = ["cell", "hidden", "input", "forget", "candidate", "output"]
    assert overview["kinds"] == [states] * 3 and overview["gradient_reach"] == [None] * 3
    status, _, body = get(
        served, "states", run="lstm_run", tag="encoder", step=0, layer=0, kind="grad_cell"
    )
    assert status == 404 and b"holds no gradients" in body, body
    units = get_json(served, "units", run="lstm_run", tag="encoder", step=0, layer=0, kind="cell")
    assert len(units["memory_horizon"]) == units["units"]


# ----------------------------------------------------------------------
# The memory horizon.


def mean_forget(layer, lengths):
    forget = np.asarray(layer.gates["forget"], np.float64)
    mask = np.arange(forget.shape[1])[None, :] < np.asarray(lengths)[:, None]
    return forget[mask].mean(axis=0)


def test_memory_horizon_is_minus_one_over_log_of_the_mean_forget_gate(client, logdir):
    root, _ = logdir
    record = records(root, "run", "lstm")[1]
    for layer in range(2):
        expected = -1.0 / np.log(mean_forget(record.states.layers[layer], [7, 5, 0]))
        for kind in ("hidden", "forget", "cell", "grad_cell", "grad_hidden"):
            units = get_json(client, "units", run="run", tag="lstm", step=1, layer=layer, kind=kind)
            np.testing.assert_allclose(units["memory_horizon"], expected, rtol=2e-3)
    gru = get_json(client, "units", run="run", tag="gru", step=0, layer=0, kind="hidden")
    assert gru["memory_horizon"] is None


@pytest.mark.parametrize("dtype, bias", [("float16", 2.0), ("float32", 4.6)])
def test_memory_horizon_of_a_captured_lstm(tmp_path, dtype, bias):
    """Against the captured forget gates: float16 storage rounds them (relative 2.4e-4,
    amplified 1 / (1 - mean) in the horizon), so long horizons are logged in float32."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module = torch.nn.LSTM(3, 6, num_layers=2, batch_first=True, proj_size=2)
    with torch.no_grad():  # forget gates of mean 0.5 up to sigmoid(bias)
        for name in ("bias_ih_l0", "bias_ih_l1"):
            getattr(module, name)[6:12] = torch.linspace(0.0, bias, 6)
    inputs = torch.randn(4, 30, 3)
    states = tls.capture(module, inputs)
    with tls.StateWriter(str(tmp_path / "run")) as writer:
        writer.log("t", module, inputs, 0, dtype=dtype)
    served = make_client(tmp_path)[0]
    for layer in range(2):
        forget = states.layers[layer].gates["forget"].double()  # every position is valid
        expected = (-1.0 / torch.log(forget.reshape(-1, 6).mean(0))).numpy()
        units = get_json(served, "units", run="run", tag="t", step=0, layer=layer, kind="hidden")
        assert units["units"] == 2 and len(units["memory_horizon"]) == 6  # the cell's units
        np.testing.assert_allclose(units["memory_horizon"], expected, rtol=2e-3)


def test_memory_horizon_is_null_where_the_mean_is_zero_or_nearly_one():
    from tb_lstm_states import analysis

    forget = np.zeros((2, 5, 4))
    forget[:, :, 1] = 1.0
    forget[:, :, 2] = 1 - 1e-8
    forget[:, :, 3] = 0.5
    forget[1, 3:, 3] = 0.99  # past sequence 1's length: not counted
    horizon = analysis.memory_horizon(forget.astype(np.float32), [5, 3])
    assert np.isnan(horizon[:3]).all()
    assert math.isclose(horizon[3], -1 / math.log(0.5), rel_tol=1e-12)
    assert np.isnan(analysis.memory_horizon(forget, [0, 0])).all()


# ----------------------------------------------------------------------
# Hostile indexes.


def hostile_client(tmp_path, mutate):
    source = tmp_path / "source"
    with tls.StateWriter(str(source)) as writer:
        writer.add_states("t", with_grads(make_states(lengths=[7, 5, 0])), 0)
    index = read_index(source)
    mutate(index)
    os.makedirs(str(tmp_path / "logdir" / "run"))
    shutil.copytree(str(source / "plugins"), str(tmp_path / "logdir" / "run" / "plugins"))
    write_index(tmp_path / "logdir" / "run", "t", 0, json.dumps(index).encode())
    return make_client(tmp_path / "logdir")[0]


def _rename_kind(index, old, new):
    for entry in index["arrays"]:
        if entry.get("kind") == old:
            entry["kind"] = new


@pytest.mark.parametrize(
    "name, mutate, words",
    [
        ("unknown kind", lambda i: _rename_kind(i, "grad_cell", "grad_forget"), b"bad array kind"),
        ("gradients in version 2", lambda i: i.update(version=2), b"malformed lstm_states index"),
        ("reach a string", lambda i: i.update(gradient_reach="7"), b"gradient_reach"),
        ("reach negative", lambda i: i.update(gradient_reach=-1), b"gradient_reach"),
        ("reach past time", lambda i: i.update(gradient_reach=8), b"gradient_reach"),
        ("reach a bool", lambda i: i.update(gradient_reach=True), b"gradient_reach"),
    ],
)
def test_a_hostile_gradient_index_is_refused_never_500(tmp_path, name, mutate, words):
    served = hostile_client(tmp_path, mutate)
    for kind in ("grad_cell", "cell", "grad_forget"):
        for route in ("states", "units", "changes"):
            status, _, body = get(
                served, route, run="run", tag="t", step=0, layer=0, kind=kind, sequence=0
            )
            assert status == 404, (route, body)
    status, _, body = get(served, "states", run="run", tag="t", step=0, layer=0, kind="cell")
    assert words in body, body
    overview = get_json(served, "overview", run="run", tag="t")
    assert overview["kinds"] == [None] and overview["gradient_reach"] == [None]


def test_a_null_or_missing_reach_is_read(tmp_path):
    served = hostile_client(tmp_path, lambda i: i.pop("gradient_reach"))
    overview = get_json(served, "overview", run="run", tag="t")
    assert overview["gradient_reach"] == [None] and "grad_cell" in overview["kinds"][0]
    status, _, _ = get(served, "states", run="run", tag="t", step=0, layer=1, kind="grad_cell")
    assert status == 200


# ----------------------------------------------------------------------
# Captured with a loss, through a real TensorBoard on both load paths.


def test_log_with_a_loss_round_trips_through_tensorboard(tmp_path, load_fast):
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    module = torch.nn.LSTM(3, 5, num_layers=2, batch_first=True)
    inputs = torch.randn(3, 9, 3)
    root = tmp_path / "logdir"
    with tls.StateWriter(str(root / "run")) as writer:
        writer.log("enc", module, inputs, 0)
        writer.log("enc", module, inputs, 1, loss=lambda output: output[:, -1].pow(2).sum())
    assert not any(p.grad is not None for p in module.parameters())
    found = records(root, "run", "enc")
    assert found[0].states.layers[0].grads == {}
    grads = found[1].states.layers
    assert set(grads[1].grads) == {"cell", "hidden"} and np.abs(grads[0].grads["cell"]).max() > 0
    with tensorboard_server(root, load_fast=load_fast) as base:
        wait_for_json(url_of(base, "steps", run="run", tag="enc"), lambda body: len(body) == 2)
        for layer in range(2):
            for kind in ("grad_cell", "grad_hidden"):
                query = dict(run="run", tag="enc", step=1, layer=layer, kind=kind, format="npy")
                status, _, body = http_get(url_of(base, "states", **query))
                assert status == 200, body
                expected = grads[layer].grads[gradients.state_of(kind)]
                assert npy(body).tobytes() == expected.tobytes()
        status, _, body = http_get(
            url_of(base, "states", run="run", tag="enc", step=0, layer=0, kind="grad_cell")
        )
        assert status == 404 and b"holds no gradients" in body
        overview = json.loads(http_get(base + PREFIX + "overview?run=run&tag=enc")[2])
        assert [("grad_cell" in kinds) for kinds in overview["kinds"]] == [False, True]
        assert overview["gradient_reach"][0] is None and overview["gradient_reach"][1] >= 1
