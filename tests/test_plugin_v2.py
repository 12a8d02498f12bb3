"""The backend on version 2 logdirs (arrays in files beside the event file), mixed with
version 1 runs: in TensorBoard's style (a real provider, a werkzeug client) and against
real `tensorboard` processes on both load paths."""

import glob
import io
import json
import os
import time
import urllib.parse

import numpy as np
import pytest
from conftest import http_get, tensorboard_server, wait_for_json
from test_plugin_support import PREFIX, copy_v1_runs, make_client, make_states, v1_expected

import tb_lstm_states as tls
from tb_lstm_states import states as states_lib
from tb_lstm_states.server import arrays
from tb_lstm_states.storage import format

WEIRD_TAGS = ["a/b", "../../escape", "..", "ünï/状态 🙂", "deep/" + "x" * 200]
LONG_TIME = 20_000


def long_states(seed):
    """A 2 x 20,000 x 8 RNN whose values wander, so bins differ from each other."""
    rs = np.random.RandomState(seed)
    states = make_states(kind="rnn", layers=1, batch=2, time=LONG_TIME, units=8, seed=seed)
    walk = np.cumsum(rs.randn(2, LONG_TIME, 8), axis=1) / 40.0
    states.layers[0].hidden = (np.sin(walk) + 0.1 * rs.randn(2, LONG_TIME, 8)).astype(np.float32)
    return states


def array_files(run_dir, step):
    return glob.glob(
        os.path.join(str(run_dir), "plugins", "lstm_states", "*.%d.*.safetensors" % step)
    )


def damage(run_dir):
    """Step 1's file torn, step 2's missing, step 3's first array corrupt."""
    (torn,) = array_files(run_dir, 1)
    with open(torn, "r+b") as f:
        f.truncate(os.path.getsize(torn) // 2)
    (missing,) = array_files(run_dir, 2)
    os.remove(missing)
    (corrupt,) = array_files(run_dir, 3)
    with open(corrupt, "r+b") as f:
        header = int.from_bytes(f.read(8), "little")
        f.seek(8 + header + 10)  # inside the first tensor: layer 0 cell, sequence 0
        byte = f.read(1)
        f.seek(8 + header + 10)
        f.write(bytes([byte[0] ^ 0xFF]))


def build_logdir(root):
    """A logdir of version 1 and version 2 runs; returns the states written, by
    `(run, tag, step)`."""
    written = {}
    copy_v1_runs(root)  # lstm_run: encoder (steps 0-2), gru_run: decoder/gru (step 5)
    with tls.StateWriter(str(root / "v2")) as writer:
        for step in range(4):
            states = make_states(seed=step, lengths=[7, 5, 0])
            writer.add_states(
                "encoder",
                states,
                step,
                tokens=[["w%d" % t for t in range(7)]] * 3,
                series={"target": np.arange(21.0).reshape(3, 7) + step},
            )
            written[("v2", "encoder", step)] = states
        writer.flush()
        time.sleep(0.05)
        again = make_states(seed=99, lengths=[7, 5, 0])  # step 3 again: the later wins
        writer.add_states("encoder", again, 3)
        written[("v2", "encoder", 3)] = again
    with tls.StateWriter(str(root / "weird")) as writer:
        for i, tag in enumerate(WEIRD_TAGS):
            states = make_states(kind="gru", layers=1, seed=10 + i)
            writer.add_states(tag, states, 0, dtype="float32")
            written[("weird", tag, 0)] = states
    with tls.StateWriter(str(root / "long")) as writer:
        for tag, dtype in (("f16", "float16"), ("f32", "float32")):
            states = long_states(seed=len(tag) + len(dtype))
            writer.add_states(tag, states, 0, dtype=dtype)
            written[("long", tag, 0)] = states
    with tls.StateWriter(str(root / "damaged")) as writer:
        for step in range(4):
            writer.add_states(
                "encoder",
                make_states(seed=step),
                step,
                series={"target": np.zeros((3, 7))},
                tokens=[["w"] * 7] * 3,
            )
    damage(root / "damaged")
    return written


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed")
    return root, build_logdir(root)


@pytest.fixture(scope="module")
def client(logdir):
    root, _ = logdir
    served, _, _ = make_client(root)
    return served


def get(client, route, **params):
    response = client.get(PREFIX + route, query_string=params)
    return response.status_code, response.headers, response.data


def get_json(client, route, **params):
    status, _, body = get(client, route, **params)
    assert status == 200, body
    return json.loads(body)


def npy(body):
    return np.load(io.BytesIO(body), allow_pickle=False)


def stored(states, layer, kind, dtype=np.float16):
    return states.layers[layer].get(kind).astype(dtype)


def reference_binned(values, start, stop, bins):
    edges = start + (np.arange(bins + 1) * (stop - start)) // bins
    values = values.astype(np.float32)
    return np.stack(
        [
            np.stack([values[a:b].min(axis=0) for a, b in zip(edges[:-1], edges[1:])]),
            np.stack([values[a:b].max(axis=0) for a, b in zip(edges[:-1], edges[1:])]),
        ]
    )


# ----------------------------------------------------------------------
# In process: MultiplexerDataProvider + TensorBoardWSGI.


def test_runs_lists_both_versions(client):
    runs = get_json(client, "runs")
    assert set(runs) == {"lstm_run", "gru_run", "v2", "weird", "long", "damaged"}
    assert set(runs["lstm_run"]) == {"encoder"} and set(runs["gru_run"]) == {"decoder/gru"}
    v1, v2 = runs["lstm_run"]["encoder"], runs["v2"]["encoder"]
    assert (v1["steps"], v1["first_step"], v1["last_step"]) == (3, 0, 2)
    assert (v2["steps"], v2["first_step"], v2["last_step"]) == (4, 0, 3)
    assert v2["kind"] == "lstm" and v2["layers"] == 2 and (v2["batch"], v2["time"]) == (3, 7)
    assert v2["units"] == {k: 4 for k in v2["kinds"]}
    assert set(runs["weird"]) == set(WEIRD_TAGS)  # verbatim
    assert runs["long"]["f16"]["time"] == LONG_TIME


def test_version_1_arrays_are_served_as_recorded(client):
    for (run, tag, step, layer, kind), expected in v1_expected().items():
        status, headers, body = get(
            client, "states", run=run, tag=tag, step=step, layer=layer, kind=kind, format="npy"
        )
        assert status == 200, body
        served = npy(body)
        assert served.dtype == expected.dtype and served.tobytes() == expected.tobytes()
    status, headers, body = get(
        client,
        "states",
        run="lstm_run",
        tag="encoder",
        step=1,
        layer=1,
        kind="forget",
        sequence=1,
        start=3,
        stop=9,
        bins=4,
    )
    assert status == 200 and headers["X-Shape"] == "2,4,5" and headers["X-Binned"] == "1"
    expected = v1_expected()[("lstm_run", "encoder", 1, 1, "forget")][1]
    np.testing.assert_array_equal(
        np.frombuffer(body, "<f4").reshape(2, 4, 5), reference_binned(expected, 3, 9, 4)
    )
    overview = get_json(client, "overview", run="lstm_run", tag="encoder")
    assert overview["steps"] == [0, 1, 2] and len(overview["values"]) == 3


def test_version_2_arrays_equal_the_input_and_read_states(client, logdir):
    root, written = logdir
    states = written[("v2", "encoder", 2)]
    (record,) = tls.read_states(str(root), run="v2", tag="encoder", steps=2)
    for layer in range(2):
        for kind in states_lib.array_kinds("lstm"):
            status, headers, body = get(
                client,
                "states",
                run="v2",
                tag="encoder",
                step=2,
                layer=layer,
                kind=kind,
                format="npy",
            )
            assert status == 200, body
            served = npy(body)
            from_reader = record.states.layers[layer].get(kind)
            assert served.dtype == np.float16 and served.tobytes() == from_reader.tobytes()
            np.testing.assert_array_equal(served, stored(states, layer, kind))
            status, headers, body = get(
                client, "states", run="v2", tag="encoder", step=2, layer=layer, kind=kind
            )
            assert headers["X-Shape"] == "3,7,4" and headers["X-Stored-Dtype"] == "float16"
            assert (headers["X-Start"], headers["X-Stop"], headers["X-Binned"]) == ("0", "7", "0")
            np.testing.assert_array_equal(
                np.frombuffer(body, "<f4").reshape(3, 7, 4), served.astype(np.float32)
            )
    series = get_json(client, "series", run="v2", tag="encoder", step=2)
    assert series["tokens"] == [["w%d" % t for t in range(7)]] * 3
    np.testing.assert_array_equal(series["series"]["target"], np.arange(21.0).reshape(3, 7) + 2)
    overview = get_json(client, "overview", run="v2", tag="encoder")
    assert overview["steps"] == [0, 1, 2, 3] and overview["rows"][0] == [0, "cell"]
    assert np.array(overview["values"], dtype=float).shape == (
        4,
        12,
        len(format.STATISTICS_COLUMNS),
    )
    for route in ("changes", "units"):
        get_json(client, route, run="v2", tag="encoder", step=1, layer=1, kind="hidden", sequence=1)
    projection = get_json(
        client,
        "projection",
        run="v2",
        tag="encoder",
        layer=0,
        kind="cell",
        method="pca",
        sequence="1",
    )
    assert projection["steps"] == [0, 1, 2, 3] and projection["lengths"] == [[5]] * 4


def test_windows_and_bins_of_a_short_sequence(client, logdir):
    _, written = logdir
    cell = stored(written[("v2", "encoder", 1)], 0, "cell")
    status, headers, body = get(
        client, "states", run="v2", tag="encoder", step=1, layer=0, kind="cell", start=2, stop=6
    )
    assert status == 200 and headers["X-Shape"] == "3,4,4"
    np.testing.assert_array_equal(np.frombuffer(body, "<f4").reshape(3, 4, 4), cell[:, 2:6])
    status, headers, body = get(
        client,
        "states",
        run="v2",
        tag="encoder",
        step=1,
        layer=0,
        kind="cell",
        sequence=2,
        start=1,
        stop=3,
        format="npy",
    )
    assert npy(body).dtype == np.float16 and npy(body).tobytes() == cell[2, 1:3].tobytes()
    # bins >= the window: full resolution.
    status, headers, body = get(
        client, "states", run="v2", tag="encoder", step=1, layer=0, kind="cell", sequence=0, bins=7
    )
    assert headers["X-Binned"] == "0" and headers["X-Shape"] == "7,4"
    status, headers, body = get(
        client,
        "states",
        run="v2",
        tag="encoder",
        step=1,
        layer=0,
        kind="cell",
        sequence=0,
        bins=3,
        format="npy",
    )
    assert npy(body).dtype == np.float32
    np.testing.assert_array_equal(npy(body), reference_binned(cell[0], 0, 7, 3))


@pytest.mark.parametrize("tag, dtype", [("f16", np.float16), ("f32", np.float32)])
@pytest.mark.parametrize(
    "start, stop, bins",
    [
        (0, LONG_TIME, 10),  # the pyramid: whole blocks inside each bin
        (123, 19_877, 7),  # edges off block boundaries
        (64, 64 * 300, 5),  # edges on them
        (1, LONG_TIME, 70),  # 19,999 >= 4 * 64 * 70: still the pyramid
        (0, LONG_TIME, 500),  # too many bins for it: read the window
        (5_000, 5_100, 3),
        (LONG_TIME - 10, LONG_TIME, 9),
    ],
)
def test_binned_views_are_exact(client, logdir, tag, dtype, start, stop, bins):
    _, written = logdir
    values = stored(written[("long", tag, 0)], 0, "hidden", dtype)
    for sequence in (0, 1):
        status, headers, body = get(
            client,
            "states",
            run="long",
            tag=tag,
            step=0,
            layer=0,
            kind="hidden",
            sequence=sequence,
            start=start,
            stop=stop,
            bins=bins,
        )
        assert status == 200, body
        assert headers["X-Shape"] == "2,%d,8" % bins and headers["X-Binned"] == "1"
        assert (headers["X-Start"], headers["X-Stop"]) == (str(start), str(stop))
        assert headers["X-Stored-Dtype"] == np.dtype(dtype).name
        np.testing.assert_array_equal(
            np.frombuffer(body, "<f4").reshape(2, bins, 8),
            reference_binned(values[sequence], start, stop, bins),
        )


def test_a_long_window_at_full_resolution(client, logdir):
    _, written = logdir
    values = stored(written[("long", "f16", 0)], 0, "hidden")
    status, headers, body = get(
        client,
        "states",
        run="long",
        tag="f16",
        step=0,
        layer=0,
        kind="hidden",
        sequence=1,
        start=12_345,
        stop=13_345,
        format="npy",
    )
    assert status == 200 and npy(body).tobytes() == values[1, 12_345:13_345].tobytes()
    status, headers, body = get(
        client,
        "states",
        run="long",
        tag="f16",
        step=0,
        layer=0,
        kind="hidden",
        start=19_000,
        stop=19_100,
    )
    assert headers["X-Shape"] == "2,100,8"
    np.testing.assert_array_equal(
        np.frombuffer(body, "<f4").reshape(2, 100, 8), values[:, 19_000:19_100].astype(np.float32)
    )


BAD_RANGES = [
    ({"start": "-1"}, "start"),
    ({"stop": "-1"}, "stop"),
    ({"start": "1.5"}, "start"),
    ({"stop": "99999999999999999999"}, "stop"),
    ({"start": "5", "stop": "5"}, "start"),
    ({"start": "6", "stop": "5"}, "start"),
    ({"stop": "TIME+1"}, "stop"),
    ({"start": "TIME"}, "start"),
    ({"sequence": "0", "bins": "0"}, "bins"),
    ({"sequence": "0", "bins": "-3"}, "bins"),
    ({"bins": "3"}, "bins"),
    ({"sequence": "0", "bins": "x"}, "bins"),
    ({"start": "0", "start ": "1"}, None),  # an unknown parameter is ignored: 200
]


@pytest.mark.parametrize(
    "run, tag, time_steps",
    [("v2", "encoder", 7), ("lstm_run", "encoder", 12), ("long", "f32", LONG_TIME)],
)
@pytest.mark.parametrize("bad, name", BAD_RANGES)
def test_bad_ranges_are_400_naming_them(client, run, tag, time_steps, bad, name):
    query = dict(run=run, tag=tag, step="0", layer="0", kind="hidden")
    query.update(
        {
            k: v.replace("TIME+1", str(time_steps + 1)).replace("TIME", str(time_steps))
            for k, v in bad.items()
        }
    )
    status, _, body = get(client, "states", **query)
    if name is None:
        assert status == 200
        return
    assert status == 400, body
    assert ("'%s'" % name).encode() in body


def test_damaged_array_files_are_404_naming_the_problem(client):
    query = dict(run="damaged", tag="encoder", layer=0, kind="cell")
    status, _, _ = get(client, "states", step=0, **query)
    assert status == 200
    for step, words in (
        (1, b"is shorter than its index says"),
        (2, b"is missing"),
        (3, b"fails its checksum"),
    ):
        for extra in ({}, {"sequence": 0}, {"sequence": 0, "bins": 2}):
            status, headers, body = get(client, "states", step=step, **query, **extra)
            assert status == 404 and words in body, (step, extra, body)
            assert b"run 'damaged' tag 'encoder' step %d" % step in body
            assert headers["Content-Type"].startswith("text/plain")
        if step != 3:
            for route in ("series", "changes", "units"):
                status, _, body = get(client, route, step=step, sequence=0, **query)
                assert status == 404 and words in body, (route, body)
    # Step 3's other arrays are whole: a checksum slice covers one tensor only.
    status, _, _ = get(
        client, "states", run="damaged", tag="encoder", step=3, layer=0, kind="hidden"
    )
    assert status == 200
    status, _, body = get(client, "projection", method="pca", **query)
    assert status == 404 and b"damaged" in body
    assert get_json(client, "steps", run="damaged", tag="encoder")[-1]["step"] == 3
    assert len(get_json(client, "overview", run="damaged", tag="encoder")["steps"]) == 4


def test_odd_tags_are_served_verbatim_and_files_stay_in_the_plugin_directory(client, logdir):
    root, written = logdir
    runs = get_json(client, "runs")
    for tag in WEIRD_TAGS:
        assert runs["weird"][tag]["kind"] == "gru"
        status, headers, body = get(
            client, "states", run="weird", tag=tag, step=0, layer=0, kind="update", format="npy"
        )
        assert status == 200, (tag, body)
        np.testing.assert_array_equal(
            npy(body), stored(written[("weird", tag, 0)], 0, "update", np.float32)
        )
        assert '"' not in headers["Content-Disposition"].split("filename=")[1].strip('"')
    files = [
        os.path.relpath(p, str(root))
        for p in glob.glob(str(root / "**"), recursive=True)
        if p.endswith(".safetensors")
    ]
    assert files and all(
        f.split(os.sep)[1:3] == ["plugins", "lstm_states"] and f.count(os.sep) == 3 for f in files
    ), files
    assert not os.path.exists(str(root.parent / "escape"))


def test_a_step_logged_twice_serves_the_later(client, logdir):
    _, written = logdir
    assert [s["step"] for s in get_json(client, "steps", run="v2", tag="encoder")] == [0, 1, 2, 3]
    _status, _, body = get(
        client, "states", run="v2", tag="encoder", step=3, layer=1, kind="output", format="npy"
    )
    np.testing.assert_array_equal(npy(body), stored(written[("v2", "encoder", 3)], 1, "output"))


def test_no_array_outlives_the_cache(tmp_path):
    with tls.StateWriter(str(tmp_path / "run")) as writer:
        for step in range(6):
            writer.add_states("t", long_states(step), step)
    budget = 2 << 20
    served, plugin, _ = make_client(tmp_path, cache_bytes=budget)
    for step in range(6):
        status, _, _ = get(served, "states", run="run", tag="t", step=step, layer=0, kind="hidden")
        assert status == 200
        status, _, _ = get(
            served,
            "states",
            run="run",
            tag="t",
            step=step,
            layer=0,
            kind="hidden",
            sequence=0,
            bins=100,
        )
        assert status == 200
    assert plugin.cache.current_bytes + plugin.headers.current_bytes <= budget


def test_run_names_never_leave_the_logdir(tmp_path):
    logdir = str(tmp_path)
    assert arrays.run_directory(logdir, ".") == os.path.normpath(logdir)
    assert arrays.run_directory(logdir, "a/b") == os.path.join(logdir, "a", "b")
    assert arrays.run_directory("s3://bucket/exp/", "a/b") == "s3://bucket/exp/a/b"
    assert arrays.run_directory("s3://bucket/exp", ".") == "s3://bucket/exp"
    for run in ["..", "../x", "a/../../x", "/etc", "s3://x/y", "a\x00b", None]:
        with pytest.raises(format.FormatError):
            arrays.run_directory(logdir, run)
    for run in ["\\x", "C:\\x", "a\\..\\..\\x"]:
        if os.sep == "\\":  # separators on Windows: absolute, or climbing out
            with pytest.raises(format.FormatError):
                arrays.run_directory(logdir, run)
        else:  # plain characters of one directory name on POSIX, as TensorBoard lists them
            assert arrays.run_directory(logdir, run) == os.path.join(logdir, run)
    assert arrays.run_directory("s3://bucket/exp", "a\\..\\b") == "s3://bucket/exp/a\\..\\b"
    with pytest.raises(format.FormatError, match="--logdir"):
        arrays.run_directory("", "run")
    index = {"file": "../secret.safetensors"}
    with pytest.raises(format.FormatError):
        arrays.array_file_path(logdir, "run", index)


# ----------------------------------------------------------------------
# Real TensorBoard processes, both load paths.


def url_of(base, route, **params):
    return base + PREFIX + route + "?" + urllib.parse.urlencode(params)


def test_a_mixed_logdir_end_to_end(tmp_path, load_fast):
    root = tmp_path / "logdir"
    root.mkdir()
    written = build_logdir(root)
    live = tls.StateWriter(str(root / "live"))
    try:
        for step in range(2):
            live.add_states("encoder", make_states(seed=step), step)
        live.flush()
        with tensorboard_server(root, load_fast=load_fast) as base:
            runs = wait_for_json(base + PREFIX + "runs", lambda body: len(body) >= 7)
            assert set(runs) == {"lstm_run", "gru_run", "v2", "weird", "long", "damaged", "live"}
            assert set(runs["weird"]) == set(WEIRD_TAGS)
            assert runs["lstm_run"]["encoder"]["steps"] == 3 and runs["v2"]["encoder"]["steps"] == 4

            # Version 1 and version 2 arrays, as recorded.
            for (run, tag, step, layer, kind), expected in list(v1_expected().items())[::7]:
                status, _, body = http_get(
                    url_of(
                        base,
                        "states",
                        run=run,
                        tag=tag,
                        step=step,
                        layer=layer,
                        kind=kind,
                        format="npy",
                    )
                )
                assert status == 200 and npy(body).tobytes() == expected.tobytes()
            for tag in WEIRD_TAGS:
                status, _, body = http_get(
                    url_of(
                        base,
                        "states",
                        run="weird",
                        tag=tag,
                        step=0,
                        layer=0,
                        kind="new",
                        format="npy",
                    )
                )
                assert status == 200, body
                np.testing.assert_array_equal(
                    npy(body), stored(written[("weird", tag, 0)], 0, "new", np.float32)
                )
            # The later of a step logged twice.
            steps = json.loads(http_get(url_of(base, "steps", run="v2", tag="encoder"))[2])
            assert [s["step"] for s in steps] == [0, 1, 2, 3]
            status, _, body = http_get(
                url_of(
                    base,
                    "states",
                    run="v2",
                    tag="encoder",
                    step=3,
                    layer=0,
                    kind="hidden",
                    format="npy",
                )
            )
            np.testing.assert_array_equal(
                npy(body), stored(written[("v2", "encoder", 3)], 0, "hidden")
            )

            # Binned and windowed views of a long sequence.
            values = stored(written[("long", "f16", 0)], 0, "hidden")
            for start, stop, bins in ((0, LONG_TIME, 10), (77, 19_999, 13), (100, 1100, 1000)):
                status, headers, body = http_get(
                    url_of(
                        base,
                        "states",
                        run="long",
                        tag="f16",
                        step=0,
                        layer=0,
                        kind="hidden",
                        sequence=1,
                        start=start,
                        stop=stop,
                        bins=bins,
                    )
                )
                assert status == 200, body
                if stop - start > bins:
                    np.testing.assert_array_equal(
                        np.frombuffer(body, "<f4").reshape(2, bins, 8),
                        reference_binned(values[1], start, stop, bins),
                    )
                else:
                    assert headers["X-Binned"] == "0"
                    np.testing.assert_array_equal(
                        np.frombuffer(body, "<f4").reshape(-1, 8),
                        values[1, start:stop].astype(np.float32),
                    )
            status, _, body = http_get(
                url_of(
                    base,
                    "states",
                    run="long",
                    tag="f16",
                    step=0,
                    layer=0,
                    kind="hidden",
                    sequence=0,
                    bins=0,
                )
            )
            assert status == 400 and b"'bins'" in body
            status, _, body = http_get(
                url_of(
                    base,
                    "states",
                    run="long",
                    tag="f16",
                    step=0,
                    layer=0,
                    kind="hidden",
                    stop=LONG_TIME + 1,
                )
            )
            assert status == 400 and b"'stop'" in body

            # Damaged files: 404 naming the problem; the whole step still served.
            for step, words in (
                (1, b"shorter than its index says"),
                (2, b"is missing"),
                (3, b"fails its checksum"),
            ):
                status, _, body = http_get(
                    url_of(
                        base,
                        "states",
                        run="damaged",
                        tag="encoder",
                        step=step,
                        layer=0,
                        kind="cell",
                    )
                )
                assert status == 404 and words in body, body
            status, _, _ = http_get(
                url_of(base, "states", run="damaged", tag="encoder", step=0, layer=0, kind="cell")
            )
            assert status == 200

            # Live: steps written while TensorBoard runs appear.
            for step in range(2, 4):
                live.add_states("encoder", make_states(seed=step), step)
            live.flush()
            steps = wait_for_json(
                url_of(base, "steps", run="live", tag="encoder"), lambda body: len(body) >= 4
            )
            assert [s["step"] for s in steps] == [0, 1, 2, 3]
            status, _, body = http_get(
                url_of(
                    base,
                    "states",
                    run="live",
                    tag="encoder",
                    step=3,
                    layer=1,
                    kind="cell",
                    format="npy",
                )
            )
            assert status == 200
            np.testing.assert_array_equal(npy(body), stored(make_states(seed=3), 1, "cell"))
    finally:
        live.close()


def read_index(run_dir):
    from tensorboard.backend.event_processing import event_file_loader

    (path,) = glob.glob(os.path.join(str(run_dir), "events.out.tfevents.*"))
    for event in event_file_loader.EventFileLoader(path).Load():
        for value in event.summary.value:
            if value.metadata.plugin_data.plugin_name == "lstm_states":
                index = json.loads(value.tensor.string_val[0])
                del index[format.INDEX_SEAL_KEY]  # edited indexes are written unsealed
                return index
    raise AssertionError("no index in " + path)


HOSTILE = {
    "huge statistic": (
        lambda i: i.update(
            statistics=[[10**400] * len(format.STATISTICS_COLUMNS)] * len(i["statistics"])
        ),
        None,
    ),
    "checksum table": (
        lambda i: i.update(crc_crc32c=(i["crc_crc32c"] + 1) % (1 << 32)),
        b"checksum table fails its checksum",
    ),
    "header": (
        lambda i: i.update(header_crc32c=(i["header_crc32c"] + 1) % (1 << 32)),
        b"header fails its checksum",
    ),
    "other file": (
        lambda i: i.update(file=format.array_file_name("t", 0, "nothere1")),
        b"is missing",
    ),
    "another step's file": (
        lambda i: i.update(file=format.array_file_name("t", 1, "x1")),
        b"holds another tag or step",
    ),
    "newer": (lambda i: i.update(version=format.FORMAT_VERSION + 1), b"upgrade tb-lstm-states"),
    "file size": (
        lambda i: i.update(
            file_bytes=i["file_bytes"] + (1 << 40), crc_offset=i["crc_offset"] + (1 << 40)
        ),
        b"arrays do not fill the file",
    ),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_an_index_that_lies_is_404_never_500(tmp_path, name):
    from test_plugin_support import write_index

    source = tmp_path / "source"
    with tls.StateWriter(str(source)) as writer:
        writer.add_states("t", make_states(lengths=[7, 5, 0]), 0, tokens=[["a"] * 7] * 3)
    index = read_index(source)
    mutate, words = HOSTILE[name]
    mutate(index)
    logdir = tmp_path / "logdir"
    os.makedirs(str(logdir / "run"))
    import shutil

    shutil.copytree(str(source / "plugins"), str(logdir / "run" / "plugins"))
    write_index(logdir / "run", "t", 0, json.dumps(index).encode())
    served, _, _ = make_client(logdir)
    answers = {}
    for route in ("states", "series", "changes", "units", "projection", "overview"):
        status, _, body = get(
            served,
            route,
            run="run",
            tag="t",
            step=0,
            layer=0,
            kind="cell",
            sequence=0,
            method="pca",
        )
        assert status in (200, 404), (route, body)
        answers[route] = (status, body)
    if words is None:
        assert answers["overview"][0] == 200
        assert json.loads(answers["overview"][1])["values"][0][0] == [None] * len(
            format.STATISTICS_COLUMNS
        )
    else:
        route = "series" if name == "header" else "states"
        assert answers[route][0] == 404 and words in answers[route][1], answers[route]


def test_a_remote_logdir_is_read_through_the_file_layer(tmp_path):
    """An fsspec URL logdir (as `s3://` is, through TensorBoard's file layer): the
    provider lists it, and array files are read in ranges from the same filesystem."""
    fsspec = pytest.importorskip("fsspec")
    local = tmp_path / "local"
    states = make_states(lengths=[7, 5, 0])
    with tls.StateWriter(str(local / "run")) as writer:
        writer.add_states("t", states, 0)
    memory = fsspec.filesystem("memory")
    prefix = "/tls-%s" % os.path.basename(str(tmp_path))
    for path in glob.glob(str(local / "**"), recursive=True):
        if os.path.isfile(path):
            with open(path, "rb") as f:
                memory.pipe(
                    prefix + "/" + os.path.relpath(path, str(local)).replace(os.sep, "/"), f.read()
                )
    try:
        served, _, _ = make_client("memory://" + prefix)
        status, _headers, body = get(
            served,
            "states",
            run="run",
            tag="t",
            step=0,
            layer=1,
            kind="forget",
            sequence=1,
            start=2,
            stop=6,
            format="npy",
        )
        assert status == 200, body
        np.testing.assert_array_equal(npy(body), stored(states, 1, "forget")[1, 2:6])
        (array_file,) = memory.glob(prefix + "/run/plugins/lstm_states/*.safetensors")
        memory.rm(array_file)
        status, _, body = get(served, "states", run="run", tag="t", step=0, layer=1, kind="cell")
        assert status == 404 and b"is missing" in body
    finally:
        memory.rm(prefix, recursive=True)


def test_version_2_steps_under_a_version_1_tag_of_the_same_run_say_why(tmp_path):
    copy_v1_runs(tmp_path)
    with tls.StateWriter(str(tmp_path / "lstm_run")) as writer:
        writer.add_states("encoder", make_states(batch=2, time=12, units=5), 3)
    served, _, _ = make_client(tmp_path)
    assert (
        get(served, "states", run="lstm_run", tag="encoder", step=0, layer=0, kind="cell")[0] == 200
    )
    status, _, body = get(
        served, "states", run="lstm_run", tag="encoder", step=3, layer=0, kind="cell"
    )
    assert status == 404 and b"another tag or run" in body
