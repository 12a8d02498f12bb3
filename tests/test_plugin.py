"""Routes of the plugin, in TensorBoard's style: a real provider, a werkzeug client."""

import argparse
import io
import json
import os

import numpy as np
import pytest
from tensorboard.plugins.core import core_plugin
from test_plugin_support import (
    PREFIX,
    make_client,
    make_states,
    write_index,
    write_run,
    write_v1_record,
)

import tb_lstm_states as tls
from tb_lstm_states import analysis, statistics
from tb_lstm_states.server import limits, routes
from tb_lstm_states.server import loader as plugin_loader
from tb_lstm_states.storage import format


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("logdir")
    write_run(
        root / "lstm",
        steps=range(5),
        description="**bold** <script>alert(1)</script>",
        lengths=[7, 5, 0],
    )
    write_run(
        root / "gru",
        tag="decoder",
        steps=[10, 20],
        kind="gru",
        directions=2,
        series=False,
        tokens=False,
        dtype="float32",
    )
    return root


@pytest.fixture(scope="module")
def served(logdir):
    client, states_plugin, _ = make_client(logdir)
    return client, states_plugin


def get(client, route, **params):
    response = client.get(PREFIX + route, query_string=params)
    return response.status_code, response


def get_json(client, route, **params):
    status, response = get(client, route, **params)
    assert status == 200, response.data
    return json.loads(response.data)


def parse_flags(argv):
    parser = argparse.ArgumentParser()
    core_plugin.CorePluginLoader().define_flags(parser)
    loader = plugin_loader.StatesLoader()
    loader.define_flags(parser)
    flags = parser.parse_args(["--logdir", "x", *argv])
    loader.fix_flags(flags)
    return flags


def test_fix_flags_keeps_every_step_and_polls_every_file():
    flags = parse_flags([])
    assert flags.samples_per_plugin == {"lstm_states": 0}
    assert flags.reload_multifile is True
    assert flags.lstm_states_cache_mb == plugin_loader.DEFAULT_CACHE_MB


def test_fix_flags_respects_the_user():
    flags = parse_flags(
        ["--samples_per_plugin", "lstm_states=7,images=3", "--reload_multifile", "false"]
    )
    assert flags.samples_per_plugin == {"lstm_states": 7, "images": 3}
    assert flags.reload_multifile is False
    with pytest.raises(Exception, match="lstm_states_cache_mb"):
        parse_flags(["--lstm_states_cache_mb", "-1"])


def test_frontend_metadata(served):
    _, states_plugin = served
    frontend = states_plugin.frontend_metadata()
    assert frontend.es_module_path == "/index.js"
    assert frontend.tab_name == "LSTM States"


def test_runs(served):
    client, _ = served
    runs = get_json(client, "runs")
    assert set(runs) == {"lstm", "gru"}
    entry = runs["lstm"]["encoder"]
    assert entry["kind"] == "lstm" and entry["layers"] == 2 and entry["directions"] == 1
    assert (entry["batch"], entry["time"]) == (3, 7)
    assert entry["units"]["hidden"] == 4
    assert entry["kinds"] == ["cell", "hidden", "input", "forget", "candidate", "output"]
    assert (entry["steps"], entry["first_step"], entry["last_step"]) == (5, 0, 4)
    # Rendered and sanitized: the script tag is escaped, markdown applied.
    assert "<strong>bold</strong>" in entry["description"]
    assert "<script>" not in entry["description"]
    gru = runs["gru"]["decoder"]
    assert gru["kinds"] == ["hidden", "reset", "update", "new"] and gru["directions"] == 2


def test_steps(served):
    client, _ = served
    steps = get_json(client, "steps", run="gru", tag="decoder")
    assert [s["step"] for s in steps] == [10, 20]
    assert all(isinstance(s["wall_time"], float) for s in steps)


def test_states_binary_and_npy_match_read_states(served, logdir):
    client, _ = served
    (record,) = tls.read_states(str(logdir), run="lstm", tag="encoder", steps=3)
    expected = record.states.layers[1].get("forget")
    status, response = get(
        client, "states", run="lstm", tag="encoder", step=3, layer=1, kind="forget"
    )
    assert status == 200
    assert response.headers["X-Shape"] == "3,7,4"
    assert response.headers["X-Dtype"] == "float32"
    assert response.headers["X-Stored-Dtype"] == "float16"
    assert response.headers["X-Lengths"] == "7,5,0"
    assert response.headers["X-Step"] == "3"
    values = np.frombuffer(response.data, dtype="<f4").reshape(3, 7, 4)
    np.testing.assert_array_equal(values, expected.astype(np.float32))

    status, response = get(
        client, "states", run="lstm", tag="encoder", step=3, layer=1, kind="forget", format="npy"
    )
    assert status == 200 and "attachment" in response.headers["Content-Disposition"]
    array = np.load(io.BytesIO(response.data), allow_pickle=False)
    assert array.dtype == expected.dtype and array.shape == expected.shape
    assert array.tobytes() == np.ascontiguousarray(expected).tobytes()

    status, response = get(
        client,
        "states",
        run="lstm",
        tag="encoder",
        step=3,
        layer=0,
        kind="hidden",
        sequence=1,
        format="npy",
    )
    np.testing.assert_array_equal(
        np.load(io.BytesIO(response.data)), record.states.layers[0].hidden[1]
    )


def test_states_of_a_bidirectional_gru(served, logdir):
    client, _ = served
    (record,) = tls.read_states(str(logdir), run="gru", tag="decoder", steps=20)
    status, response = get(
        client, "states", run="gru", tag="decoder", step=20, layer=3, kind="update", sequence=2
    )
    assert status == 200 and response.headers["X-Shape"] == "7,4"
    np.testing.assert_array_equal(
        np.frombuffer(response.data, "<f4").reshape(7, 4), record.states.layers[3].get("update")[2]
    )


def test_series(served, logdir):
    client, _ = served
    (record,) = tls.read_states(str(logdir), run="lstm", tag="encoder", steps=2)
    body = get_json(client, "series", run="lstm", tag="encoder", step=2)
    assert body["lengths"] == [7, 5, 0] and body["tokens"] == record.tokens
    np.testing.assert_allclose(body["series"]["target"], record.series["target"], rtol=1e-6)
    assert get_json(client, "series", run="gru", tag="decoder", step=10)["tokens"] is None


def test_overview_is_the_statistics_summary(served, logdir):
    client, _ = served
    body = get_json(client, "overview", run="lstm", tag="encoder")
    assert body["steps"] == [0, 1, 2, 3, 4]
    assert body["columns"] == list(format.STATISTICS_COLUMNS)
    assert body["rows"][0] == [0, "cell"]
    # Computed by the writer from the states it was given (before float16 storage).
    expected = statistics.record_statistics(make_states(seed=4, shift=0.04, lengths=[7, 5, 0]))
    got = np.array(body["values"][4], dtype=np.float64)
    sampled = len(statistics.COLUMNS)
    np.testing.assert_allclose(got[:, :sampled], expected, rtol=1e-5, atol=1e-6)
    # Then the extremes of each stored array, as read_states returns it.
    (record,) = tls.read_states(logdir, run="lstm", tag="encoder", steps=4)
    stored = [record.states.layers[layer].get(kind) for layer, kind in body["rows"]]
    np.testing.assert_allclose(got[:, sampled:], [[a.min(), a.max()] for a in stored], rtol=1e-6)


def test_changes_flags_a_jump(tmp_path):
    states = make_states(layers=1, batch=1, time=40, units=3)
    walk = np.cumsum(np.full((40, 3), 0.01), axis=0)
    walk[25:] += 2.0  # one sudden jump at t = 25
    states.layers[0].hidden = walk[None].astype(np.float32)
    with tls.StateWriter(str(tmp_path / "run")) as writer:
        writer.add_states("t", states, 0, dtype="float32")
    client, _, _ = make_client(tmp_path)
    body = get_json(
        client, "changes", run="run", tag="t", step=0, layer=0, kind="hidden", sequence=0
    )
    assert body["anomalies"] == [25]
    assert body["norm"][0] is None and body["cosine"][:2] == [None, None]
    assert len(body["norm"]) == body["length"] == 40
    assert body["zscore"][25] > 3.5
    strict = get_json(
        client,
        "changes",
        run="run",
        tag="t",
        step=0,
        layer=0,
        kind="hidden",
        sequence=0,
        threshold="1e9",
    )
    assert strict["anomalies"] == [] and strict["threshold"] == 1e9


def test_units_period_correlation_and_order(tmp_path):
    time = 64
    t = np.arange(time)
    states = make_states(kind="rnn", layers=1, batch=2, time=time, units=4)
    track = np.sin(2 * np.pi * t / 8.0)
    rs = np.random.RandomState(1)
    hidden = np.stack(
        [
            np.stack(
                [
                    track,
                    np.sin(2 * np.pi * t / 16.0),
                    -track + 0.01 * rs.randn(time),
                    rs.randn(time),
                ],
                axis=1,
            )
            for _ in range(2)
        ]
    ).astype(np.float32)
    states.layers[0].hidden = hidden
    with tls.StateWriter(str(tmp_path / "run")) as writer:
        writer.add_states(
            "t", states, 0, dtype="float32", series={"track": np.stack([track, track])}
        )
    client, _, _ = make_client(tmp_path)
    body = get_json(client, "units", run="run", tag="t", step=0, layer=0, kind="hidden")
    assert body["units"] == 4
    assert body["period"][0] == 8 and body["period"][1] == 16
    assert body["correlation"]["track"][0] == pytest.approx(1.0, abs=1e-6)
    assert body["correlation"]["track"][2] == pytest.approx(-1.0, abs=1e-2)
    assert sorted(body["order"]) == [0, 1, 2, 3]
    assert body["dead"] == [False] * 4
    assert len(body["saturation"]) == len(body["activity"]) == len(body["variance"]) == 4


def test_projection_pca_is_aligned(tmp_path):
    states = make_states(layers=1, batch=2, time=10, units=6)
    with tls.StateWriter(str(tmp_path / "run")) as writer:
        for step in range(3):
            writer.add_states("t", states, step, dtype="float32")  # identical steps
    client, _, _ = make_client(tmp_path)
    body = get_json(client, "projection", run="run", tag="t", layer=0, kind="cell", method="pca")
    assert body["steps"] == [0, 1, 2] and body["sequences"] == [0, 1]
    assert body["offsets"] == [0, 20, 40] and body["lengths"] == [[10, 10]] * 3
    coordinates = np.array(body["coordinates"]).reshape(3, 20, 2)
    # One basis for all steps: a state that does not change does not move.
    np.testing.assert_allclose(coordinates[0], coordinates[1], atol=1e-5)
    assert sum(body["explained_variance"]) <= 1.0 + 1e-9
    one = get_json(
        client,
        "projection",
        run="run",
        tag="t",
        layer=0,
        kind="cell",
        method="pca",
        steps="2,0",
        sequence="1",
    )
    assert one["steps"] == [0, 2] and one["sequences"] == [1] and one["offsets"] == [0, 10]


def test_projection_tsne_moves_smoothly(tmp_path):
    rs = np.random.RandomState(0)
    centers = rs.randn(3, 8) * 4
    base = centers[np.arange(60) % 3] + 0.3 * rs.randn(60, 8)
    with tls.StateWriter(str(tmp_path / "run")) as writer:
        for step in range(3):
            states = make_states(kind="rnn", layers=1, batch=2, time=30, units=8)
            states.layers[0].hidden = (
                (base + 0.01 * step * rs.randn(60, 8)).reshape(2, 30, 8).astype(np.float32)
            )
            writer.add_states("t", states, step, dtype="float32")
    client, _, _ = make_client(tmp_path)
    body = get_json(client, "projection", run="run", tag="t", layer=0, kind="hidden", method="tsne")
    assert body["method_used"] == "tsne"
    coordinates = np.array(body["coordinates"]).reshape(3, 60, 2)
    spread = coordinates[0].std()
    assert np.abs(coordinates[1] - coordinates[0]).mean() < 0.2 * spread
    # The clusters come apart: each point's nearest neighbour is in its cluster.
    distances = np.linalg.norm(coordinates[2][:, None] - coordinates[2][None], axis=2)
    np.fill_diagonal(distances, np.inf)
    assert np.mean(np.argmin(distances, axis=1) % 3 == np.arange(60) % 3) > 0.9


def test_projection_cap_says_the_cap(served, monkeypatch):
    client, _ = served
    monkeypatch.setitem(limits.PROJECTION_CAPS, "pca", (30, 30))
    status, response = get(
        client,
        "projection",
        run="lstm",
        tag="encoder",
        layer=0,
        kind="cell",
        method="pca",
        steps="0,1,2",
    )
    assert status == 400 and b"capped at 30 points per request" in response.data
    # Without steps=, the steps that fit are chosen evenly, the last always among them.
    body = get_json(
        client, "projection", run="lstm", tag="encoder", layer=0, kind="cell", method="pca"
    )
    assert body["steps"] == [0, 4] and body["lengths"] == [[7, 5, 0]] * 2
    monkeypatch.setitem(limits.PROJECTION_CAPS, "tsne", (1000, 5))
    status, response = get(
        client,
        "projection",
        run="lstm",
        tag="encoder",
        layer=0,
        kind="cell",
        method="tsne",
        steps="1",
    )
    assert status == 400 and b"capped at 5 points per step" in response.data


@pytest.mark.parametrize(
    "route, params, name",
    [
        ("steps", {"run": "lstm"}, "tag"),
        ("states", {"run": "lstm", "tag": "encoder", "layer": "0", "kind": "cell"}, "step"),
        (
            "states",
            {"run": "lstm", "tag": "encoder", "step": "1.5", "layer": "0", "kind": "cell"},
            "step",
        ),
        (
            "states",
            {"run": "lstm", "tag": "encoder", "step": "1", "layer": "-1", "kind": "cell"},
            "layer",
        ),
        (
            "states",
            {
                "run": "lstm",
                "tag": "encoder",
                "step": "1",
                "layer": "0",
                "kind": "cell",
                "format": "csv",
            },
            "format",
        ),
        (
            "states",
            {
                "run": "lstm",
                "tag": "encoder",
                "step": "99999999999999999999",
                "layer": "0",
                "kind": "cell",
            },
            "step",
        ),
        (
            "changes",
            {"run": "lstm", "tag": "encoder", "step": "1", "layer": "0", "kind": "cell"},
            "sequence",
        ),
        (
            "changes",
            {
                "run": "lstm",
                "tag": "encoder",
                "step": "1",
                "layer": "0",
                "kind": "cell",
                "sequence": "0",
                "threshold": "nan",
            },
            "threshold",
        ),
        (
            "projection",
            {"run": "lstm", "tag": "encoder", "layer": "0", "kind": "cell", "method": "mds"},
            "method",
        ),
        (
            "projection",
            {
                "run": "lstm",
                "tag": "encoder",
                "layer": "0",
                "kind": "cell",
                "method": "pca",
                "steps": "1,,2",
            },
            "steps",
        ),
    ],
)
def test_bad_parameters_are_400_naming_them(served, route, params, name):
    client, _ = served
    status, response = get(client, route, **params)
    assert status == 400, response.data
    assert ("'%s'" % name).encode() in response.data


def test_repeated_parameter_is_400(served):
    client, _ = served
    response = client.get(PREFIX + "steps?run=lstm&run=gru&tag=encoder")
    assert response.status_code == 400 and b"'run' is given 2 times" in response.data


@pytest.mark.parametrize(
    "params, words",
    [
        ({"run": "nope"}, b"no run 'nope'"),
        ({"tag": "nope"}, b"no lstm_states tag 'nope'"),
        ({"step": "7"}, b"no step 7"),
        ({"step": "-3"}, b"no step -3"),
        ({"layer": "2"}, b"no layer 2"),
        ({"kind": "reset"}, b"no kind 'reset'"),
        ({"sequence": "3"}, b"no sequence 3"),
    ],
)
def test_unknown_things_are_404(served, params, words):
    client, _ = served
    query = dict(run="lstm", tag="encoder", step="1", layer="0", kind="cell", sequence="0")
    query.update(params)
    status, response = get(client, "states", **query)
    assert status == 404 and words in response.data, response.data


def test_overview_of_unknown_tag_is_404(served):
    client, _ = served
    status, response = get(client, "overview", run="lstm", tag="nope")
    assert status == 404 and b"nope" in response.data


def test_new_steps_appear_without_restart(tmp_path):
    write_run(tmp_path / "run", steps=range(2))
    client, _, multiplexer = make_client(tmp_path)
    assert len(get_json(client, "steps", run="run", tag="encoder")) == 2
    write_run(tmp_path / "run", steps=range(2, 4))  # a second event file
    multiplexer.Reload()
    assert [s["step"] for s in get_json(client, "steps", run="run", tag="encoder")] == [0, 1, 2, 3]
    status, _ = get(client, "states", run="run", tag="encoder", step=3, layer=0, kind="cell")
    assert status == 200


def test_an_explicit_sampling_hint_is_passed_to_the_provider(tmp_path):
    write_run(tmp_path / "run", steps=range(6))
    client, _, _ = make_client(tmp_path, sampling_hints={"lstm_states": 2})
    steps = get_json(client, "steps", run="run", tag="encoder")
    assert len(steps) == 2 and steps[-1]["step"] == 5


def test_arrays_are_cached_within_budget(tmp_path):
    write_run(tmp_path / "run", steps=range(6), layers=1, batch=4, time=32, units=16)
    budget = 3 * 4 * 32 * 16 * 2 + 4096  # about three float16 arrays
    client, states_plugin, _ = make_client(tmp_path, cache_bytes=budget)
    for step in range(6):
        for kind in ("cell", "hidden"):
            status, _ = get(
                client, "states", run="run", tag="encoder", step=step, layer=0, kind=kind
            )
            assert status == 200
    assert states_plugin.cache.current_bytes > 0
    assert states_plugin.cache.current_bytes + states_plugin.headers.current_bytes <= budget


def test_static_index_js_is_javascript(served, tmp_path, monkeypatch):
    client, _ = served
    static = tmp_path / "static"
    (static / "workers").mkdir(parents=True)
    (static / "index.js").write_text("export function render() {}\n")
    (static / "workers" / "w.js").write_text("self.onmessage = () => {};\n")
    (tmp_path / "secret.js").write_text("secret")
    os.symlink(tmp_path / "secret.js", static / "link.js")
    monkeypatch.setattr(routes, "STATIC_DIR", str(static))
    response = client.get(PREFIX + "index.js")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/javascript")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert b"render" in response.data
    assert client.get(PREFIX + "workers/w.js").status_code == 200
    for path in [
        "../secret.js",
        "..%2Fsecret.js",
        "workers/../../secret.js",
        "link.js",
        ".hidden.js",
        "workers/",
        "index.py",
        "%00.js",
        "workers//w.js",
        "..\\secret.js",
    ]:
        response = client.get(PREFIX + path)
        assert response.status_code == 404, path
        assert b"secret" not in response.data or b"no static file" in response.data


@pytest.mark.parametrize(
    "version, write",
    [
        (1, lambda run: write_v1_record(run, "t", 0, [b"TLSH{not json", b"\x00" * 10])),
        (2, lambda run: write_index(run, "t", 0, b"{not json")),
        (
            2,
            lambda run: write_index(
                run, "t", 0, json.dumps({"version": 2, "file": "../x.safetensors"}).encode()
            ),
        ),
        (2, lambda run: write_index(run, "t", 0, b"{}", shape=(2,))),
    ],
)
def test_a_malformed_record_is_404_not_500(tmp_path, version, write):
    write(tmp_path / "run")
    client, _, _ = make_client(tmp_path)
    assert get_json(client, "steps", run="run", tag="t")[0]["step"] == 0
    for route in ("states", "series", "changes", "units", "projection"):
        status, response = get(
            client,
            route,
            run="run",
            tag="t",
            step=0,
            layer=0,
            kind="cell",
            sequence=0,
            method="pca",
        )
        assert status == 404 and b"malformed" in response.data, (route, response.data)
    status, response = get(client, "overview", run="run", tag="t")
    assert status in (200, 404), response.data


def test_analysis_handles_non_finite_values():
    array = np.full((2, 9, 3), np.nan, dtype=np.float32)
    result = analysis.unit_statistics(array, "hidden", [9, 4])
    assert len(result["order"]) == 3
    change = analysis.changes(array[0], 9)
    assert list(change["anomalies"]) == []
    projected = analysis.project("tsne", [array[0], array[1]], [np.arange(9), np.arange(9)])
    assert np.isfinite(np.concatenate(projected["coordinates"])).all()


def test_projection_umap_is_aligned(tmp_path):
    pytest.importorskip("umap")  # optional dependency; its first use compiles (~30 s)
    rs = np.random.RandomState(0)
    base = rs.randn(40, 6).astype(np.float32)
    with tls.StateWriter(str(tmp_path / "run")) as writer:
        for step in range(2):
            states = make_states(kind="rnn", layers=1, batch=2, time=20, units=6)
            states.layers[0].hidden = (base + 0.001 * step).reshape(2, 20, 6)
            writer.add_states("t", states, step, dtype="float32")
    client, _, _ = make_client(tmp_path)
    body = get_json(client, "projection", run="run", tag="t", layer=0, kind="hidden", method="umap")
    assert body["method_used"] == "umap" and body["offsets"] == [0, 40]
    coordinates = np.array(body["coordinates"]).reshape(2, 40, 2)
    assert np.isfinite(coordinates).all()
    # Initialised from step 0's layout, step 1 stays close to it.
    assert np.abs(coordinates[1] - coordinates[0]).mean() < 0.5 * coordinates[0].std()


def test_umap_missing_is_a_clear_400(served, monkeypatch):
    client, _ = served
    monkeypatch.setattr(analysis, "umap_available", lambda: False)
    status, response = get(
        client, "projection", run="lstm", tag="encoder", layer=0, kind="cell", method="umap"
    )
    assert status == 400 and b"pip install" in response.data
