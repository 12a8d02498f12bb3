"""End to end against real `tensorboard` processes, on both load paths.

No flag is passed but `--logdir`: the entry point's `fix_flags` must keep all 300
steps (TensorBoard would keep 10), and the Python loader must keep polling an event
file that is no longer the newest of its run.
"""

import io
import urllib.parse

import numpy as np
from conftest import http_get, tensorboard_server, wait_for_json
from test_plugin_support import PREFIX, make_states

import tb_lstm_states as tls

SHAPE = dict(layers=1, batch=2, time=5, units=3)


def write_steps(writer, steps):
    for step in steps:
        writer.add_states("encoder", make_states(seed=step, **SHAPE), step)
    writer.flush()


def url_of(base, route, **params):
    return base + PREFIX + route + "?" + urllib.parse.urlencode(params)


def test_every_step_kept_served_and_live(tmp_path, load_fast):
    logdir = tmp_path / "logdir"
    run = logdir / "run"
    states_writer = tls.StateWriter(str(run), filename_suffix=".a")
    try:
        write_steps(states_writer, range(300))
        with tensorboard_server(logdir, load_fast=load_fast) as base:
            steps_url = url_of(base, "steps", run="run", tag="encoder")
            steps = wait_for_json(steps_url, lambda body: len(body) >= 300, timeout=120)
            assert [s["step"] for s in steps] == list(range(300))
            runs = wait_for_json(base + PREFIX + "runs", lambda body: "run" in body)
            assert runs["run"]["encoder"]["steps"] == 300

            status, headers, body = http_get(
                url_of(
                    base,
                    "states",
                    run="run",
                    tag="encoder",
                    step=150,
                    layer=0,
                    kind="cell",
                    format="npy",
                )
            )
            assert status == 200
            (record,) = tls.read_states(str(logdir), run="run", tag="encoder", steps=150)
            expected = record.states.layers[0].cell
            served = np.load(io.BytesIO(body), allow_pickle=False)
            assert served.dtype == expected.dtype and served.tobytes() == expected.tobytes()

            status, headers, _ = http_get(base + PREFIX + "index.js")
            if status == 200:  # the bundle is the frontend's; serve it as a module
                assert headers["Content-Type"].startswith("text/javascript")

            # A newer event file appears in the run (as a SummaryWriter's would);
            # steps then written to the older file must still show up.
            with tls.StateWriter(str(run), filename_suffix=".b") as other:
                other.add_states("other", make_states(**SHAPE), 0)
            # Once the loader has read the newer file, it polls the older one only
            # because of --reload_multifile=true.
            wait_for_json(base + PREFIX + "runs", lambda body: "other" in body.get("run", {}))
            write_steps(states_writer, range(300, 305))
            steps = wait_for_json(steps_url, lambda body: len(body) >= 305, timeout=60)
            assert steps[-1]["step"] == 304
    finally:
        states_writer.close()


def test_an_explicit_samples_per_plugin_is_respected(tmp_path, load_fast):
    logdir = tmp_path / "logdir"
    with tls.StateWriter(str(logdir / "run")) as writer:
        write_steps(writer, range(40))
    with tensorboard_server(
        logdir, load_fast=load_fast, extra_args=["--samples_per_plugin", "lstm_states=7"]
    ) as base:
        # The last step is always kept: once it is there, loading is done.
        steps = wait_for_json(
            url_of(base, "steps", run="run", tag="encoder"),
            lambda body: body and body[-1]["step"] == 39,
        )
        assert len(steps) == 7
