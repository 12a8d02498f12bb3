"""Gradients (issue 14) stored, read and served: the kinds `grad_hidden` and `grad_cell`,
the memory horizon of the `units` route (from the forget means stored at write time)
and the gradient reach of the overview.

Records are built by hand (numpy) where the capture does not matter, and captured
with `log(loss=)` for the round trip through a real TensorBoard on both load paths.
"""

import glob
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
from tb_lstm_states.storage import convert, extras, format, gradients

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
    with tls.StateWriter(str(tmp_path / "gru")) as writer:
        writer.add_states("t", make_states("gru", lengths=[7, 5, 0]), 0)
    plain = read_index(tmp_path / "gru")
    assert plain["version"] == 2 and "gradient_reach" not in plain  # readable by older readers
    # An LSTM's forget gates carry their means: version 3, with or without gradients.
    states = make_states(lengths=[7, 5, 0])
    with tls.StateWriter(str(tmp_path / "plain")) as writer:
        writer.add_states("t", states, 0)
    plain = read_index(tmp_path / "plain")
    assert plain["version"] == extras.VERSION == 3 and plain["gradient_reach"] is None
    assert [sorted(e) for e in plain["arrays"] if "mean" in e] == [
        ["chunk", "dtype", "kind", "layer", "mean", "offset", "shape"]
    ] * 2
    assert all(("mean" in e) == (e["kind"] == "forget") for e in plain["arrays"])
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
    _, written = logdir
    for layer in range(2):
        # Of the float32 gates written, not of their float16 copies.
        expected = -1.0 / np.log(mean_forget(written[("lstm", 1)].layers[layer], [7, 5, 0]))
        for kind in ("hidden", "forget", "cell", "grad_cell", "grad_hidden"):
            units = get_json(client, "units", run="run", tag="lstm", step=1, layer=layer, kind=kind)
            np.testing.assert_allclose(units["memory_horizon"], expected, rtol=1e-12)
    gru = get_json(client, "units", run="run", tag="gru", step=0, layer=0, kind="hidden")
    assert gru["memory_horizon"] is None


def test_the_forget_means_are_of_the_captured_gates_over_valid_positions(tmp_path):
    states = make_states(lengths=[7, 5, 0])
    states.layers[1].gates["forget"][1, 5:] = np.nan  # past the length: not counted
    with tls.StateWriter(str(tmp_path)) as writer:
        writer.add_states("t", states, 0)
    (path,) = glob.glob(str(tmp_path / "plugins" / "lstm_states" / "*"))
    import safetensors.numpy

    tensors = safetensors.numpy.load_file(path)  # plain safetensors
    for layer in range(2):
        mean = tensors["%d/forget/mean" % layer]
        assert mean.dtype == np.float64 and mean.shape == (4,)
        np.testing.assert_allclose(mean, mean_forget(states.layers[layer], [7, 5, 0]), rtol=1e-14)


@pytest.mark.parametrize("block", [1 << 20, 20, 3])
def test_valid_mean_in_tiles_of_numpy_and_torch(monkeypatch, block):
    """Whole sequences together, rows of one sequence, one row: the same float64 sums."""
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(extras, "_BLOCK_VALUES", block)
    rs = np.random.RandomState(3)
    array = rs.rand(5, 9, 4).astype(np.float32)
    lengths = [9, 0, 4, 9, 1]
    array[2, 4:] = np.nan
    array[4, 1:] = np.inf
    valid = np.arange(9)[None, :] < np.asarray(lengths)[:, None]
    expected = np.asarray(array, np.float64)[valid].mean(axis=0)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    candidates = [array, array.astype(np.float64), torch.from_numpy(array)]
    candidates += [torch.from_numpy(array).to(device) for device in devices]
    for candidate in candidates:
        got = extras.valid_mean(candidate, lengths)
        assert got.dtype == np.dtype("<f8") and got.flags.c_contiguous
        np.testing.assert_allclose(got, expected, rtol=1e-14)
    # The accelerator path, on the host (as on a device without float64).
    total = extras._device_sum(torch.from_numpy(array), lengths)
    np.testing.assert_allclose(total / sum(lengths), expected, rtol=1e-14)
    half = torch.from_numpy(array).to(torch.bfloat16)
    np.testing.assert_allclose(
        extras.valid_mean(half, lengths),
        half.double().numpy()[valid].mean(axis=0),
        rtol=1e-14,
    )
    assert np.isnan(extras.valid_mean(array, [0] * 5)).all()


def test_a_record_without_means_falls_back_to_the_stored_gate(tmp_path, monkeypatch):
    """As a writer before the means wrote it: version 2, the horizon from the gate as
    stored (float16 here)."""
    monkeypatch.setattr(extras, "forget_means", lambda *args: {})
    states = make_states(lengths=[7, 5, 0])
    with tls.StateWriter(str(tmp_path / "run")) as writer:
        writer.add_states("t", states, 0)
    index = read_index(tmp_path / "run")
    assert index["version"] == 2 and not any("mean" in e for e in index["arrays"])
    served = make_client(tmp_path)[0]
    (record,) = records(tmp_path, "run", "t").values()
    for layer in range(2):
        stored = record.states.layers[layer]
        assert stored.gates["forget"].dtype == np.float16
        units = get_json(served, "units", run="run", tag="t", step=0, layer=layer, kind="cell")
        expected = -1.0 / np.log(mean_forget(stored, [7, 5, 0]))
        np.testing.assert_allclose(units["memory_horizon"], expected, rtol=1e-12)


@pytest.fixture(scope="module")
def long_memories(tmp_path_factory):
    """An LSTM whose forget gates average 0.5 up to 0.9998 (a large forget bias),
    captured on packed sequences and logged in float16 and float32; the captured
    states; and the root of the logdir."""
    torch = pytest.importorskip("torch")
    from torch.nn.utils.rnn import pack_padded_sequence

    torch.manual_seed(0)
    module = torch.nn.LSTM(3, 6, num_layers=2, batch_first=True, proj_size=2)
    with torch.no_grad():
        for name in ("bias_hh_l0", "bias_hh_l1"):
            getattr(module, name)[6:12] = torch.linspace(0.0, 8.5, 6)
    inputs = pack_padded_sequence(
        torch.randn(4, 40, 3), torch.tensor([40, 31, 17, 5]), batch_first=True
    )
    root = tmp_path_factory.mktemp("memories")
    with tls.StateWriter(str(root / "run")) as writer:
        for dtype in ("float16", "float32"):
            writer.log(dtype, module, inputs, 0, dtype=dtype)
    return root, tls.capture(module, inputs)


def captured_horizons(states):
    """-1/ln(mean forget gate) of each layer, from the captured float32 gates."""
    states = convert.to_numpy_states(states)
    return [-1.0 / np.log(mean_forget(layer, states.lengths)) for layer in states.layers]


def test_memory_horizon_of_a_captured_lstm_through_tensorboard(long_memories, load_fast):
    """Against the captured gates whatever the stored dtype: float16 rounds a gate by
    up to 2.4e-4, which the horizon of a mean of 0.999 amplifies to a few percent."""
    root, states = long_memories
    expected = captured_horizons(states)
    means = [np.exp(-1.0 / horizons) for horizons in expected]
    assert max(m.max() for m in means) > 0.9995 and min(m.min() for m in means) < 0.6
    (record,) = records(root, "run", "float16").values()
    from tb_lstm_states import analysis

    lengths = record.states.lengths
    off = [  # what the float16 gates as stored give: far off for long memories
        np.abs(analysis.memory_horizon(layer.gates["forget"], lengths) / horizons - 1)
        for layer, horizons in zip(record.states.layers, expected)
    ]
    assert np.nanmax(np.concatenate(off)) > 1e-2
    with tensorboard_server(root, load_fast=load_fast) as base:
        for tag in ("float16", "float32"):
            wait_for_json(url_of(base, "steps", run="run", tag=tag), lambda body: len(body) == 1)
            for layer in range(2):
                for kind in ("hidden", "forget"):
                    query = dict(run="run", tag=tag, step=0, layer=layer, kind=kind)
                    status, _, body = http_get(url_of(base, "units", **query))
                    assert status == 200, body
                    units = json.loads(body)
                    assert len(units["memory_horizon"]) == 6  # the cell's units
                    np.testing.assert_allclose(units["memory_horizon"], expected[layer], rtol=2e-3)


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


def hostile_client(tmp_path, mutate, grads=True):
    source = tmp_path / "source"
    states = make_states(lengths=[7, 5, 0])
    with tls.StateWriter(str(source)) as writer:
        writer.add_states("t", with_grads(states) if grads else states, 0)
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


def _forget_entry(index, layer=0):
    return next(e for e in index["arrays"] if e.get("kind") == "forget" and e["layer"] == layer)


def _move_mean(index, kind):
    entry = next(e for e in index["arrays"] if e.get("kind") == kind and e["layer"] == 0)
    entry["mean"] = _forget_entry(index).pop("mean")


@pytest.mark.parametrize(
    "name, mutate, words",
    [
        ("mean in version 2", lambda i: i.update(version=2), b"bad forget mean"),
        ("mean on the input gate", lambda i: _move_mean(i, "input"), b"bad forget mean"),
        ("mean on the cell", lambda i: _move_mean(i, "cell"), b"bad forget mean"),
        ("mean a list", lambda i: _forget_entry(i).update(mean=[1, 2]), b"bad forget mean"),
        ("mean dropped", lambda i: _forget_entry(i).pop("mean"), b"do not tile the file"),
        (
            "mean past the file",
            lambda i: _forget_entry(i)["mean"].update(offset=i["file_bytes"]),
            b"out of the file",
        ),
        (
            "mean offset a string",
            lambda i: _forget_entry(i)["mean"].update(offset="0"),
            b"out of the file",
        ),
        (
            "mean over the gate",
            lambda i: _forget_entry(i)["mean"].update(offset=_forget_entry(i)["offset"]),
            b"do not tile the file",
        ),
        (
            "mean on a checksum slice not its own",
            lambda i: _forget_entry(i)["mean"].update(chunk=0),
            b"do not tile the file",
        ),
        (
            "mean with a bool chunk",
            lambda i: _forget_entry(i)["mean"].update(chunk=True),
            b"bad checksum slice",
        ),
    ],
)
def test_a_hostile_forget_mean_is_refused_never_500(tmp_path, name, mutate, words):
    served = hostile_client(tmp_path, mutate, grads=False)
    for kind in ("forget", "hidden"):
        for route in ("states", "units", "changes"):
            status, _, body = get(
                served, route, run="run", tag="t", step=0, layer=0, kind=kind, sequence=0
            )
            assert status == 404, (route, body)
    status, _, body = get(served, "units", run="run", tag="t", step=0, layer=0, kind="forget")
    assert words in body, body
    assert get_json(served, "overview", run="run", tag="t")["kinds"] == [None]


def test_a_damaged_forget_mean_answers_404_for_the_units_only(tmp_path):
    with tls.StateWriter(str(tmp_path / "run")) as writer:
        writer.add_states("t", make_states(lengths=[7, 5, 0]), 0)
    mean = _forget_entry(read_index(tmp_path / "run"), layer=1)["mean"]
    (path,) = glob.glob(str(tmp_path / "run" / "plugins" / "lstm_states" / "*"))
    with open(path, "r+b") as f:
        f.seek(mean["offset"] + 3)
        byte = f.read(1)
        f.seek(mean["offset"] + 3)
        f.write(bytes([byte[0] ^ 0x10]))
    served = make_client(tmp_path)[0]
    status, _, body = get(served, "units", run="run", tag="t", step=0, layer=1, kind="hidden")
    assert status == 404 and b"fails its checksum" in body, body
    assert get_json(served, "units", run="run", tag="t", step=0, layer=0, kind="hidden")
    assert get(served, "states", run="run", tag="t", step=0, layer=1, kind="forget")[0] == 200


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


def test_a_projection_of_gradients_lays_out_the_steps_that_hold_them(client):
    status, _, body = get(
        client, "projection", run="run", tag="lstm", layer=0, kind="grad_cell", method="pca"
    )
    assert status == 200, body
    assert sorted(json.loads(body)["steps"]) == [1, 2]  # step 0 was logged without a loss
    status, _, body = get(
        client, "projection", run="run", tag="lstm", layer=0, kind="grad_cell", method="pca",
        steps="0",
    )  # fmt: skip
    assert status == 404 and b"holds no gradients" in body
