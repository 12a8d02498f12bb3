"""Shared helpers of the plugin tests: small logdirs and a werkzeug client over them.

The plugin is served the way TensorBoard serves it in its own plugin tests: a real
`MultiplexerDataProvider` over real event files, wrapped in `TensorBoardWSGI`.
"""

import os
import secrets
import shutil

import numpy as np
from tensorboard.backend import application
from tensorboard.backend.event_processing import data_provider as data_provider_lib
from tensorboard.backend.event_processing import plugin_event_multiplexer as multiplexer_lib
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
from tensorboard.plugins import base_plugin
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from werkzeug import test as werkzeug_test

import tb_lstm_states as tls
from tb_lstm_states import metadata
from tb_lstm_states import states as states_lib
from tb_lstm_states.server import routes

PREFIX = "/data/plugin/lstm_states/"


def make_states(
    kind="lstm",
    *,
    layers=2,
    directions=1,
    batch=3,
    time=7,
    units=4,
    lengths=None,
    seed=0,
    shift=0.0,
):
    """Deterministic `RecurrentStates` of numpy arrays, values in (-1, 1)."""
    rs = np.random.RandomState(seed)
    lengths = np.full(batch, time) if lengths is None else np.asarray(lengths)
    mask = (np.arange(time)[None, :] < lengths[:, None])[..., None]
    entries = []
    for _ in range(layers * directions):
        arrays = {}
        for name in states_lib.array_kinds(kind):
            values = np.tanh(rs.randn(batch, time, units) + shift).astype(np.float32)
            if name in ("input", "forget", "output", "reset", "update"):
                values = (values + 1) / 2
            arrays[name] = values * mask
        gates = {g: arrays[g] for g in states_lib.GATE_NAMES[kind]}
        entries.append(states_lib.LayerStates(arrays["hidden"], arrays.get("cell"), gates))
    return states_lib.RecurrentStates(
        kind=kind, layers=entries, lengths=lengths, num_directions=directions
    )


def write_run(
    run_dir,
    tag="encoder",
    steps=range(3),
    *,
    description=None,
    dtype="float16",
    series=True,
    tokens=True,
    **shape,
):
    """Writes `len(steps)` records of `make_states(**shape)` (seeded by step)."""
    with tls.StateWriter(str(run_dir)) as writer:
        for step in steps:
            states = make_states(seed=step, shift=0.01 * step, **shape)
            batch, time = states.batch_size, states.time_steps
            writer.add_states(
                tag,
                states,
                step,
                series={"target": np.sin(np.arange(batch * time).reshape(batch, time) + step)}
                if series
                else None,
                tokens=[["t%d" % t for t in range(time)] for _ in range(batch)] if tokens else None,
                description=description,
                dtype=dtype,
            )


def make_provider(logdir, samples=0):
    """A real `MultiplexerDataProvider` over `logdir`, loaded once."""
    multiplexer = multiplexer_lib.EventMultiplexer(
        tensor_size_guidance={metadata.PLUGIN_NAME: samples}
    )
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    return multiplexer, data_provider_lib.MultiplexerDataProvider(multiplexer, str(logdir))


def make_client(logdir, *, samples=0, sampling_hints=None, cache_bytes=None):
    """Returns `(client, plugin, multiplexer)` serving `logdir` through the plugin."""
    multiplexer, provider = make_provider(logdir, samples)
    context = base_plugin.TBContext(
        logdir=str(logdir),
        data_provider=provider,
        sampling_hints=sampling_hints if sampling_hints is not None else {metadata.PLUGIN_NAME: 0},
    )
    states_plugin = routes.StatesPlugin(context, cache_bytes=cache_bytes)
    app = application.TensorBoardWSGI([states_plugin], data_provider=provider)
    return werkzeug_test.Client(app), states_plugin, multiplexer


DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
V1_LOGDIR = os.path.join(DATA, "v1_logdir")


def copy_v1_runs(root, prefix=""):
    """Copies the committed version 1 logdir's runs (`lstm_run`: tag `encoder`, steps
    0-2; `gru_run`: tag `decoder/gru`, step 5) into `root`, under `prefix`."""
    for run in os.listdir(V1_LOGDIR):
        shutil.copytree(os.path.join(V1_LOGDIR, run), os.path.join(str(root), prefix + run))


def v1_expected():
    """`{(run, tag, step, layer, kind): array}` of the version 1 logdir."""
    with np.load(os.path.join(DATA, "v1_expected.npz")) as data:
        result = {}
        for key in data.files:
            run, rest = key.split("/", 1)
            tag, step, layer, kind = rest.rsplit("/", 3)
            result[(run, tag, int(step), int(layer), kind)] = data[key]
        return result


def write_summary(run_dir, tag, step, summary_metadata, tensor, wall_time=1.0):
    """Writes one event holding one summary value, as any writer could."""
    writer = EventFileWriter(str(run_dir), filename_suffix=".%s" % secrets.token_hex(4))
    value = summary_pb2.Summary.Value(tag=tag, metadata=summary_metadata, tensor=tensor)
    writer.add_event(
        event_pb2.Event(step=step, wall_time=wall_time, summary=summary_pb2.Summary(value=[value]))
    )
    writer.close()


def string_tensor(strings, shape):
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=n) for n in shape]
        ),
        string_val=list(strings),
    )


STRUCTURE = dict(
    kind="lstm",
    num_layers=1,
    num_directions=1,
    batch=3,
    time=7,
    units={k: 4 for k in states_lib.array_kinds("lstm")},
)


def write_index(run_dir, tag, step, index_bytes, wall_time=1.0, shape=()):
    """Writes a version 2 index summary holding `index_bytes` (valid or not)."""
    summary_metadata = metadata.create_summary_metadata(metadata.ROLE_INDEX, content=STRUCTURE)
    write_summary(
        run_dir,
        tag,
        step,
        summary_metadata,
        string_tensor([index_bytes] * max(1, int(np.prod(shape))), shape),
        wall_time,
    )


def write_v1_record(run_dir, tag, step, blobs, wall_time=1.0):
    """Writes a version 1 blob sequence record of `blobs` (valid or not)."""
    summary_metadata = metadata.create_summary_metadata(metadata.ROLE_STATES, content=STRUCTURE)
    write_summary(
        run_dir, tag, step, summary_metadata, string_tensor(blobs, [len(blobs)]), wall_time
    )
