"""StateWriter's files through TensorBoard's own loaders, live, on both load paths.

- the Python path: `EventMultiplexer` + `MultiplexerDataProvider`, as `--load_fast=false`
  builds them (`--reload_multifile=true` is `event_file_active_filter`);
- the Rust data server, started by TensorBoard's own `SubprocessServerDataIngester`, as
  `--load_fast=true` starts it, read through its `GrpcDataProvider`;
- a real `tensorboard` subprocess on each path, through HTTP.

The states are written with `StateWriter(summary_writer=sw)` while `sw` writes scalars:
both must show under one run, and steps written after the loader started must appear.
TensorBoard sees only each step's index (a string tensor under the logged tag); the
arrays it points at are read here from the run's plugin directory.
"""

import contextlib
import json
import time
import urllib.parse

import pytest
from conftest import http_get, tensorboard_server, wait_for_json
from tensorboard import context as tb_context
from tensorboard.backend.event_processing import data_provider as tb_data_provider
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.util import grpc_util
from test_writer import arrays, make_states

import tb_lstm_states as tls
from tb_lstm_states import metadata
from tb_lstm_states.storage import format, ranged

RUN, TAG = "exp", "enc"
STEPS_FIRST, STEPS_LATER = range(6), range(6, 9)  # at most 10: no sampling flags needed


def check_index(logdir, index_bytes, step):
    """The index a provider returned points at an array file holding the step's arrays."""
    index = format.parse_index(index_bytes)
    path = logdir / RUN / "plugins" / "lstm_states" / index["file"]
    with open(path, "rb") as f:

        def read_range(offset, length):
            f.seek(offset)
            return f.read(length)

        table = ranged.read_crc_table(read_range, index)
        expected = arrays(make_states("lstm", num_layers=2, num_directions=2, seed=step))
        for (layer, kind), array in expected.items():
            entry = format.find_array(index, layer=layer, kind=kind)
            stored = ranged.read_array(read_range, index, table, entry)
            assert (stored == array.astype(stored.dtype)).all()


class Training:
    """A torch SummaryWriter writing scalars and a StateWriter writing states into it."""

    def __init__(self, logdir):
        from torch.utils.tensorboard import SummaryWriter

        self.summary_writer = SummaryWriter(str(logdir / RUN), flush_secs=1)
        self.writer = tls.StateWriter(summary_writer=self.summary_writer)

    def steps(self, steps):
        for step in steps:
            self.summary_writer.add_scalar("loss", 1.0 / (step + 1), step)
            self.writer.add_states(
                TAG, make_states("lstm", num_layers=2, num_directions=2, seed=step), step
            )
        self.summary_writer.flush()
        self.writer.flush()

    def close(self):
        self.writer.close()
        self.summary_writer.close()


@contextlib.contextmanager
def training(logdir):
    t = Training(logdir)
    try:
        yield t
    finally:
        t.close()


def wait_until(predicate, timeout=30, interval=0.2):
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError("timed out; last value %r" % (value,))
        time.sleep(interval)


def check_provider(provider, logdir, steps, reload=lambda: None):
    """Every step's index under the logged tag, pointing at its arrays, and the
    scalars, in one run."""
    ctx = tb_context.RequestContext()

    def states_steps():
        reload()
        data = provider.read_tensors(
            ctx, experiment_id="", plugin_name=metadata.PLUGIN_NAME, downsample=1000
        )
        return {d.step: d for d in data.get(RUN, {}).get(TAG, [])}

    data = wait_until(lambda: (lambda d: d if sorted(d) == list(steps) else None)(states_steps()))
    for step in (steps[0], steps[-1]):
        check_index(logdir, data[step].numpy.item(), step)
    listing = provider.list_tensors(ctx, experiment_id="", plugin_name=metadata.PLUGIN_NAME)
    assert list(listing[RUN]) == [TAG]  # one tag: the one logged
    assert listing[RUN][TAG].max_step == steps[-1]
    content = metadata.parse_plugin_content(listing[RUN][TAG].plugin_content)
    assert content["role"] == metadata.ROLE_INDEX and content["batch"] == 3
    scalars = provider.read_scalars(ctx, experiment_id="", plugin_name="scalars", downsample=1000)
    assert [d.step for d in scalars[RUN]["loss"]] == list(steps)


def test_multiplexer_data_provider_live(tmp_path):
    with training(tmp_path) as t:
        t.steps(STEPS_FIRST)
        # What `--load_fast=false --reload_multifile=true` builds.
        multiplexer = plugin_event_multiplexer.EventMultiplexer(
            tensor_size_guidance={metadata.PLUGIN_NAME: 0},
            event_file_active_filter=lambda wall_time: wall_time + 86400 >= time.time(),
        )
        multiplexer.AddRunsFromDirectory(str(tmp_path))
        multiplexer.Reload()
        provider = tb_data_provider.MultiplexerDataProvider(multiplexer, str(tmp_path))
        check_provider(provider, tmp_path, list(STEPS_FIRST))
        t.steps(STEPS_LATER)
        check_provider(
            provider, tmp_path, list(STEPS_FIRST) + list(STEPS_LATER), multiplexer.Reload
        )


def test_rust_data_server_live(tmp_path):
    from tensorboard.data import server_ingester

    try:
        binary = server_ingester.get_server_binary()
    except server_ingester.NoDataServerError as e:
        pytest.skip("no TensorBoard data server: %s" % e)
    with training(tmp_path) as t:
        t.steps(STEPS_FIRST)
        ingester = server_ingester.SubprocessServerDataIngester(
            binary,
            str(tmp_path),
            reload_interval=1,
            channel_creds_type=grpc_util.ChannelCredsType.LOCAL,
        )
        ingester.start()
        try:
            check_provider(ingester.data_provider, tmp_path, list(STEPS_FIRST))
            t.steps(STEPS_LATER)
            check_provider(ingester.data_provider, tmp_path, list(STEPS_FIRST) + list(STEPS_LATER))
        finally:
            ingester._stdin_handle.close()  # --die-after-stdin: the server exits


def test_tensorboard_server_live(tmp_path, load_fast):
    logdir = tmp_path / "logs"
    with training(logdir) as t:
        t.steps(STEPS_FIRST)
        with tensorboard_server(logdir, load_fast=load_fast) as url:
            plugins = wait_for_json(
                url + "/data/plugins_listing",
                lambda body: body.get(metadata.PLUGIN_NAME, {}).get("enabled"),
            )
            assert plugins[metadata.PLUGIN_NAME]["enabled"]
            query = urllib.parse.urlencode({"run": RUN, "tag": TAG})
            steps_url = url + "/data/plugin/%s/steps?%s" % (metadata.PLUGIN_NAME, query)
            scalars_url = (
                url
                + "/data/plugin/scalars/scalars?"
                + urllib.parse.urlencode({"run": RUN, "tag": "loss"})
            )

            def steps_are(route, steps, key):
                return wait_for_json(
                    route, lambda body: [d[key] for d in body] == list(steps), timeout=60
                )

            steps_are(steps_url, STEPS_FIRST, "step")
            steps_are(scalars_url, STEPS_FIRST, 1)
            t.steps(STEPS_LATER)  # while TensorBoard runs
            all_steps = list(STEPS_FIRST) + list(STEPS_LATER)
            steps_are(steps_url, all_steps, "step")
            steps_are(scalars_url, all_steps, 1)
            status, _, body = http_get(url + "/data/plugin/%s/runs" % metadata.PLUGIN_NAME)
            assert status == 200 and RUN in json.loads(body)
