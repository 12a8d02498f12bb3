"""Hostile or damaged logdirs and heavy requests cannot take the tab down, stall the
server, or show wrong data (issue 18).

- A hostile logdir (`hostile_logdir.py`: valid framing and checksums, crafted
  contents, one run per case) through real `tensorboard` processes on both load
  paths: no route answers 5xx, bad tags are left out of `runs`, bad steps answer
  4xx, every intact step (odd names included) is served exactly as logged, `runs`
  answers within 3 s with a 150 KB pathological description, a record of 4,000 units
  is analysed in bounded time, and after bytes are flipped in the middle of a run's
  largest file every step of it is 4xx or exact.
- `read_states` over it does not raise and yields every intact record.
- Heavy work runs on bounded pools; identical requests share one computation; work
  whose client left before it began is dropped; BLAS is limited once, not per request.
- Hypothesis mutates valid records (index JSON, array bytes, version 1 blobs): no
  route errs, `read_states` never raises, and changed bytes are never served.
"""

import io
import json
import os
import shutil
import socket
import tempfile
import threading
import time
import urllib.parse
import warnings

import hostile_logdir
import numpy as np
import pytest
from conftest import http_get, tensorboard_server, wait_for_json
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorboard import context
from tensorboard.compat.proto import summary_pb2
from test_plugin_support import PREFIX, make_client, make_states

import tb_lstm_states as tls
from tb_lstm_states import analysis, metadata
from tb_lstm_states.server import descriptions, limits, routes, work
from tb_lstm_states.storage import format, reader

INTERNAL = b"the TensorBoard log has the details"  # the 404 of an unexpected error (a bug)
CTX = context.RequestContext()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    return hostile_logdir.build(tmp_path_factory.mktemp("hostile") / "logdir")


def url_of(base, route, **params):
    return base + PREFIX + route + "?" + urllib.parse.urlencode(params)


def npy(body):
    return np.load(io.BytesIO(body), allow_pickle=False)


def timed_get(url, timeout=120):
    start = time.perf_counter()
    status, headers, body = http_get(url, timeout=timeout)
    return status, headers, body, time.perf_counter() - start


def test_hostile_logdir_end_to_end(hostile, load_fast):
    path = "rust" if load_fast else "python"
    expected = {}  # (run, tag) -> steps logged, where every one must be listed
    for run, tag, _step in list(hostile.exact) + list(hostile.refused):
        if run not in hostile.flipped:
            expected[(run, tag)] = expected.get((run, tag), 0) + 1

    def loaded(body):
        return all(
            body.get(run, {}).get(tag, {}).get("steps", 0) >= count
            for (run, tag), count in expected.items()
        )

    with tensorboard_server(hostile.root, load_fast=load_fast) as base:
        wait_for_json(base + PREFIX + "runs", loaded, timeout=180)

        # Must hold: /runs within 3 s on every call, with a 150 KB pathological description.
        figures = []
        for _ in range(4):
            status, _, body, seconds = timed_get(base + PREFIX + "runs")
            figures.append(seconds)
            assert status == 200, body
            assert seconds < 3.0, figures
        print(
            "\n[%s] /runs with a 150 KB pathological description: %s s"
            % (path, ", ".join("%.3f" % s for s in figures))
        )
        runs = json.loads(body)
        run, tag = hostile.described
        entry = runs[run][tag]
        assert entry["description_truncated"] is True
        assert entry["description_chars"] == len(hostile_logdir.PATHOLOGICAL_DESCRIPTION)
        assert len(entry["description"]) < 20 * format.MAX_DESCRIPTION_CHARS
        assert "<a " not in entry["description"]  # escaped, never live markup
        good = runs["good_v2"]["encoder"]
        assert (
            good["description_truncated"] is False
            and "<strong>good</strong>" in good["description"]
        )

        # Bad plugin data: the tag is left out; nothing beyond the caps reaches the browser.
        for run, tag in hostile.skipped:
            assert tag not in runs.get(run, {}), (run, tag)
        for tags in runs.values():
            for entry in tags.values():
                assert 1 <= entry["layers"] <= format.MAX_LAYERS
                assert 1 <= entry["batch"] <= format.MAX_BATCH
                assert all(1 <= u <= format.MAX_UNITS for u in entry["units"].values())

        # Sizes: a record of 4,000 units is analysed in bounded time (first asks, uncached).
        run, tag = hostile.wide
        for route, params in (
            ("units", dict(step=0, layer=0, kind="hidden")),
            ("projection", dict(layer=0, kind="hidden", method="pca")),
            ("projection", dict(layer=0, kind="hidden", method="tsne")),
        ):
            status, _, body, seconds = timed_get(url_of(base, route, run=run, tag=tag, **params))
            assert status == 200, body[:300]
            print(
                "[%s] %s %s, 4,000 units: %.2f s" % (path, route, params.get("method", ""), seconds)
            )

        # Every route of every step listed, and of the skipped tags: never 5xx.
        queried = (
            set(hostile.exact) | set(hostile.refused) | {(r, t, 0) for r, t in hostile.skipped}
        )
        for run, tag, step in sorted(queried):
            for route, params in hostile_logdir.routes_of(run, tag, step):
                status, _, body = http_get(url_of(base, route, **params), timeout=120)
                assert status < 500 and INTERNAL not in body, (
                    path,
                    run,
                    tag,
                    step,
                    route,
                    body[:300],
                )

        # Refused: every data route of a bad step answers 4xx naming the problem.
        for run, tag, step in sorted(hostile.refused):
            for route, params in hostile_logdir.routes_of(run, tag, step)[:7]:
                status, _, body = http_get(url_of(base, route, **params), timeout=120)
                assert status in (400, 404), (path, run, tag, step, route, status, body[:300])

        # Exact: intact steps (odd names, beside bad steps, under bad descriptions).
        for (run, tag, step), states in sorted(hostile.exact.items(), key=lambda item: item[0]):
            if run in hostile.flipped:
                continue
            for layer, kind in (
                (0, "hidden"),
                (len(states.layers) - 1, states_lib_last_kind(states)),
            ):
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
                assert status == 200, (path, run, tag, step, body[:300])
                np.testing.assert_array_equal(npy(body), hostile_logdir.stored(states, layer, kind))

        # Flipped bytes: each step refused or served exactly as logged.
        refused = 0
        for (run, tag, step), states in sorted(hostile.exact.items(), key=lambda item: item[0]):
            if run not in hostile.flipped:
                continue
            for layer in range(len(states.layers)):
                for kind in ("hidden", states_lib_last_kind(states)):
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
                    if status == 200:
                        np.testing.assert_array_equal(
                            npy(body), hostile_logdir.stored(states, layer, kind)
                        )
                    else:
                        assert status == 404, (path, run, step, body[:300])
                        refused += 1
        assert refused, "no flipped byte was noticed"


def states_lib_last_kind(states):
    from tb_lstm_states import states as states_lib

    return states_lib.array_kinds(states.kind)[-1]


def test_read_states_over_the_hostile_logdir(hostile):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = list(tls.read_states(hostile.root))
    got = {(r.run, r.tag, r.step): r for r in records}
    for key, states in hostile.exact.items():
        if key[0] in hostile.flipped:
            if key in got:  # a flipped step is skipped, or yielded exactly
                for layer, expected in zip(got[key].states.layers, states.layers):
                    np.testing.assert_array_equal(
                        layer.hidden, np.asarray(expected.hidden, np.float32)
                    )
            continue
        assert key in got, key
        for layer, expected in zip(got[key].states.layers, states.layers):
            for kind in ("hidden", states_lib_last_kind(states)):
                np.testing.assert_array_equal(
                    layer.get(kind), np.asarray(expected.get(kind), np.float32)
                )
    for key in hostile.refused:
        assert key not in got, key
    assert sum(1 for key in hostile.exact if key[0] in hostile.flipped and key not in got) >= 1
    messages = [
        str(w.message) for w in caught if issubclass(w.category, reader.CorruptRecordWarning)
    ]
    assert messages and all("byte" in m for m in messages)
    print("\nread_states: %d records, %d warnings" % (len(records), len(messages)))
    with pytest.raises(reader.CorruptRecordError, match="byte"):
        list(tls.read_states(hostile.root, strict=True))


# ----------------------------------------------------------------------
# Descriptions.


def test_runs_never_waits_on_markdown(tmp_path, monkeypatch):
    with tls.StateWriter(str(tmp_path / "a")) as writer:
        writer.add_states("t", make_states(layers=1), 0, description="*slow* " + "x" * 10000)
    client, _, _ = make_client(tmp_path)
    release = threading.Event()
    calls = []

    def slow_render(text):
        calls.append(text)
        release.wait(30)
        return "<p>rendered</p>"

    monkeypatch.setattr(descriptions, "render", slow_render)
    for _ in range(3):  # polls while the render runs: plain text, and one render only
        start = time.perf_counter()
        response = client.get(PREFIX + "runs")
        assert response.status_code == 200 and time.perf_counter() - start < 2.0
        entry = json.loads(response.data)["a"]["t"]
        assert entry["description"].startswith("<p>*slow* x")
        assert entry["description_truncated"] is True and entry["description_chars"] == 10007
        assert len(entry["description"]) <= format.MAX_DESCRIPTION_CHARS + 20
    release.set()
    deadline = time.time() + 10
    while (
        json.loads(client.get(PREFIX + "runs").data)["a"]["t"]["description"] != "<p>rendered</p>"
    ):
        assert time.time() < deadline
        time.sleep(0.05)
    assert len(calls) == 1 and len(calls[0]) == format.MAX_DESCRIPTION_CHARS


def test_a_description_is_rendered_once_by_content(tmp_path, monkeypatch):
    for run in ("a", "b"):
        with tls.StateWriter(str(tmp_path / run)) as writer:
            writer.add_states("t", make_states(layers=1), 0, description="same **text**")
    client, _, _ = make_client(tmp_path)
    calls = []
    original = descriptions.render
    monkeypatch.setattr(descriptions, "render", lambda text: calls.append(text) or original(text))
    for _ in range(5):
        body = json.loads(client.get(PREFIX + "runs").data)
        assert (
            body["a"]["t"]["description"]
            == body["b"]["t"]["description"]
            == "<p>same <strong>text</strong></p>"
        )
    assert len(calls) <= 1  # (0 when another test rendered it in this process)


# ----------------------------------------------------------------------
# Heavy work.


def _projection_logdir(root, runs=4):
    for i in range(runs):
        with tls.StateWriter(str(root / ("r%d" % i))) as writer:
            writer.add_states("t", make_states(layers=1, seed=i), 0, dtype="float32")


def _concurrently(functions):
    results = [None] * len(functions)

    def call(i):
        results[i] = functions[i]()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(functions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_projections_run_on_a_bounded_pool_and_identical_ones_are_shared(tmp_path, monkeypatch):
    _projection_logdir(tmp_path)
    _, states_plugin, _ = make_client(tmp_path)
    lock = threading.Lock()
    running, peak, calls = [0], [0], []
    original = analysis.project

    def tracked(method, points, keys):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            calls.append(method)
        time.sleep(0.3)
        try:
            return original(method, points, keys)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(analysis, "project", tracked)

    def request(run, sequence):
        return lambda: states_plugin.projection_impl(
            CTX, "", run, "t", 0, "hidden", "pca", sequences=[sequence]
        )

    # Eight different projections at once: at most `workers` computed at a time.
    bodies = _concurrently([request("r%d" % (i % 4), i // 4) for i in range(8)])
    assert all(json.loads(b)["method_used"] == "pca" for b in bodies)
    assert peak[0] <= work.DEFAULT_WORKERS and len(calls) == 8
    # Six identical ones at once: one computation.
    calls.clear()
    bodies = _concurrently([request("r0", 2)] * 6)
    assert len(set(bodies)) == 1 and len(calls) == 1


def test_work_whose_clients_left_before_it_began_is_dropped(monkeypatch):
    monkeypatch.setattr(work, "POLL_SECONDS", 0.05)
    pool = work.WorkPool(1, "test")
    try:
        busy = threading.Event()
        release = threading.Event()
        blocker = pool.submit("blocker", lambda: (busy.set(), release.wait(10)))
        assert busy.wait(10)
        ran = []
        ours, theirs = socket.socketpair()
        theirs.close()  # the browser gave up
        start = time.perf_counter()
        with pytest.raises(work.AbandonedError):
            pool.run("dropped", lambda: ran.append(1), connection=ours)
        assert time.perf_counter() - start < 5
        release.set()
        blocker.result(10)
        assert pool.run("after", lambda: 42) == 42
        assert ran == [] and pool.in_flight() == 0
        ours.close()
        # A connected client keeps its work.
        ours, theirs = socket.socketpair()
        assert pool.run("kept", lambda: (time.sleep(0.2), 7)[1], connection=ours) == 7
        ours.close()
        theirs.close()
    finally:
        pool.shutdown()


def test_work_that_began_is_kept_for_the_next_asker(tmp_path, monkeypatch):
    _projection_logdir(tmp_path, runs=1)
    _, states_plugin, _ = make_client(tmp_path)
    monkeypatch.setattr(work, "POLL_SECONDS", 0.05)
    started, release = threading.Event(), threading.Event()
    original = analysis.project
    calls = []

    def slow(method, points, keys):
        calls.append(method)
        started.set()
        release.wait(10)
        return original(method, points, keys)

    monkeypatch.setattr(analysis, "project", slow)
    ours, theirs = socket.socketpair()
    outcome = []

    def leaving_client():
        try:
            outcome.append(
                states_plugin.projection_impl(
                    CTX, "", "r0", "t", 0, "hidden", "pca", connection=ours
                )
            )
        except work.AbandonedError as e:
            outcome.append(e)

    thread = threading.Thread(target=leaving_client)
    thread.start()
    assert started.wait(10)
    theirs.close()  # the client leaves while its projection runs: it is not dropped
    time.sleep(0.3)
    release.set()
    thread.join(10)
    assert len(outcome) == 1
    deadline = time.time() + 10
    while True:  # the projection finishes and is cached: the next ask computes nothing
        body = states_plugin.projection_impl(CTX, "", "r0", "t", 0, "hidden", "pca")
        if json.loads(body)["method_used"] == "pca":
            break
        assert time.time() < deadline
    assert len(calls) == 1
    ours.close()


def test_blas_threads_are_limited_once_not_per_request(tmp_path, monkeypatch):
    import threadpoolctl

    counted = []
    monkeypatch.setattr(threadpoolctl, "threadpool_limits", lambda *a, **k: counted.append(k))
    monkeypatch.setattr(work, "_blas_limited", False)
    for _ in range(3):
        work.limit_blas_threads()
    assert len(counted) == 1
    _projection_logdir(tmp_path, runs=1)
    client, _, _ = make_client(tmp_path)
    for kind in ("hidden", "cell", "input"):
        assert (
            client.get(
                PREFIX + "units", query_string=dict(run="r0", tag="t", step=0, layer=0, kind=kind)
            ).status_code
            == 200
        )
    assert len(counted) == 1
    for module in sorted(os.listdir(os.path.dirname(routes.__file__))):
        if module.endswith(".py") and module != "work.py":
            with open(os.path.join(os.path.dirname(routes.__file__), module)) as f:
                assert "threadpool_limits" not in f.read(), module


def test_requests_beyond_the_read_cap_are_400_naming_what_to_ask(tmp_path, monkeypatch):
    with tls.StateWriter(str(tmp_path / "r")) as writer:
        writer.add_states("t", make_states(layers=1, batch=3, time=50, units=4), 0)
    client, _, _ = make_client(tmp_path)
    monkeypatch.setattr(limits, "MAX_READ_VALUES", 100)
    query = dict(run="r", tag="t", step=0, layer=0, kind="hidden")
    response = client.get(PREFIX + "states", query_string=query)
    assert response.status_code == 400 and b"ask for one sequence" in response.data
    response = client.get(PREFIX + "states", query_string=dict(query, sequence=0, stop=20))
    assert response.status_code == 200  # 80 values
    response = client.get(PREFIX + "units", query_string=query)
    assert response.status_code == 400 and b"larger than the tab analyses" in response.data
    monkeypatch.setattr(limits, "MAX_PROJECTION_VALUES", 100)
    response = client.get(
        PREFIX + "projection",
        query_string=dict(run="r", tag="t", layer=0, kind="hidden", method="pca", sequence="0"),
    )
    assert response.status_code == 400 and b"values (points x units)" in response.data


def test_the_workers_flag():
    import argparse

    from tensorboard.plugins import base_plugin

    from tb_lstm_states.server import loader as loader_lib

    parser = argparse.ArgumentParser()
    loader = loader_lib.StatesLoader()
    loader.define_flags(parser)
    flags = parser.parse_args(["--lstm_states_workers", "3"])
    loader.fix_flags(flags)
    assert flags.lstm_states_workers == 3
    for bad in ("0", "-1", "1000"):
        flags = parser.parse_args(["--lstm_states_workers", bad])
        with pytest.raises(base_plugin.FlagsError, match="lstm_states_workers"):
            loader.fix_flags(flags)


# ----------------------------------------------------------------------
# Hypothesis: mutated valid records.


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A valid version 2 step and version 1 record to mutate."""
    root = tmp_path_factory.mktemp("source")
    states = make_states(layers=1, batch=2, time=40, units=8, seed=3)
    value, array_path = hostile_logdir.v2_value(
        str(root / "v2"),
        "t",
        0,
        states,
        dtype="float32",
        series={"s": np.ones((2, 40))},
        tokens=[["w"] * 40] * 2,
    )
    blobs = hostile_logdir.v1_blobs(states)
    return dict(
        states=states,
        value=value,
        array=open(array_path, "rb").read(),
        array_name=os.path.basename(array_path),
        blobs=blobs,
    )


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False),
        st.text(max_size=20),
    ),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=8,
)

raw_mutation = st.one_of(
    st.lists(
        st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=8
    ).map(lambda flips: ("flip", flips)),
    st.floats(0, 1, exclude_max=True).map(lambda at: ("truncate", at)),
)
json_mutation = st.tuples(st.integers(0, 10**6), json_values).map(lambda edit: ("json", edit))


def _mutate_bytes(data, mutation):
    kind, how = mutation
    data = bytearray(data)
    if kind == "flip":
        for at, xor in how:
            data[int(at * len(data))] ^= xor
    else:
        del data[int(how * len(data)) :]
    return bytes(data)


def _leaves(value, path=()):
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(value, list) and value:
        for i, v in enumerate(value):
            yield from _leaves(v, (*path, i))
    yield path


def _edit_json(document, pick, new):
    paths = list(_leaves(document))
    path = paths[pick % len(paths)]
    if not path:
        return new
    target = document
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = new
    return document


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    target=st.sampled_from(["index", "array", "v1_header", "v1_array"]),
    mutation=st.one_of(raw_mutation, json_mutation),
)
def test_mutated_records_are_refused_or_served_as_logged(source, target, mutation):
    if mutation[0] == "json" and target in ("array", "v1_array"):
        mutation = ("flip", [(mutation[1][0] % 997 / 997, 1)])
    root = tempfile.mkdtemp()
    try:
        value = type(source["value"])()
        value.CopyFrom(source["value"])
        array = source["array"]
        blobs = list(source["blobs"])
        if target == "index":
            if mutation[0] == "json":
                index = json.loads(value.tensor.string_val[0])
                del index[format.INDEX_SEAL_KEY]
                index = _edit_json(index, *mutation[1])
                text = json.dumps(index, separators=(",", ":")).encode()
                if text.endswith(b"}") and text != b"{}":
                    text = format.seal_index(text)  # a hostile writer seals its lie
                value.tensor.string_val[0] = text
            else:
                value.tensor.string_val[0] = _mutate_bytes(value.tensor.string_val[0], mutation)
        elif target == "array":
            array = _mutate_bytes(array, mutation)
        elif target == "v1_header":
            if mutation[0] == "json":
                header = json.loads(blobs[0][len(b"TLSH") :])
                blobs[0] = b"TLSH" + json.dumps(_edit_json(header, *mutation[1])).encode()
            else:
                blobs[0] = _mutate_bytes(blobs[0], mutation)
        else:
            blobs[1] = _mutate_bytes(blobs[1], mutation)
        plugin_dir = os.path.join(root, "v2", *format.PLUGIN_DIRECTORY)
        os.makedirs(plugin_dir)
        with open(os.path.join(plugin_dir, source["array_name"]), "wb") as f:
            f.write(array)
        hostile_logdir.EventFile(os.path.join(root, "v2")).value(0, value)
        hostile_logdir.EventFile(os.path.join(root, "v1")).value(
            0,
            summary_pb2.Summary.Value(
                tag="t",
                metadata=metadata.create_summary_metadata(
                    metadata.ROLE_STATES, content=hostile_logdir.structure(source["states"])
                ),
                tensor=hostile_logdir.string_tensor(blobs, [len(blobs)]),
            ),
        )
        unchanged_v2 = target in ("v1_header", "v1_array") or mutation[0] != "json"
        client, _, _ = make_client(root)
        for run in ("v2", "v1"):
            for route, params in hostile_logdir.routes_of(run, "t", 0):
                response = client.get(PREFIX + route, query_string=params)
                assert response.status_code in (200, 400, 404), (route, response.data[:300])
                assert INTERNAL not in response.data, (route, response.data[:300])
                if (
                    run == "v2"
                    and unchanged_v2
                    and route == "states"
                    and response.status_code == 200
                    and params.get("format") == "npy"
                ):
                    np.testing.assert_array_equal(
                        npy(response.data), hostile_logdir.stored(source["states"], 0, "hidden")
                    )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            records = list(tls.read_states(root))
        for record in records:
            if record.run == "v2" and unchanged_v2:
                np.testing.assert_array_equal(
                    record.states.layers[0].hidden,
                    hostile_logdir.stored(source["states"], 0, "hidden"),
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)
