"""Shared helpers of the plugin tests: small logdirs and a werkzeug client over them.

The plugin is served the way TensorBoard serves it in its own plugin tests: a real
`MultiplexerDataProvider` over real event files, wrapped in `TensorBoardWSGI`.
"""

import numpy as np
from werkzeug import test as werkzeug_test

from tensorboard.backend import application
from tensorboard.backend.event_processing import data_provider as data_provider_lib
from tensorboard.backend.event_processing import plugin_event_multiplexer as multiplexer_lib
from tensorboard.plugins import base_plugin

import tb_lstm_states as tls
from tb_lstm_states import metadata, plugin
from tb_lstm_states import states as states_lib

PREFIX = "/data/plugin/lstm_states/"


def make_states(kind="lstm", *, layers=2, directions=1, batch=3, time=7, units=4,
                lengths=None, seed=0, shift=0.0):
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
    return states_lib.RecurrentStates(kind=kind, layers=entries, lengths=lengths,
                                      num_directions=directions)


def write_run(run_dir, tag="encoder", steps=range(3), *, description=None, dtype="float16",
              series=True, tokens=True, **shape):
    """Writes `len(steps)` records of `make_states(**shape)` (seeded by step)."""
    with tls.StateWriter(str(run_dir)) as writer:
        for step in steps:
            states = make_states(seed=step, shift=0.01 * step, **shape)
            batch, time = states.batch_size, states.time_steps
            writer.add_states(
                tag, states, step,
                series={"target": np.sin(np.arange(batch * time).reshape(batch, time) + step)} if series else None,
                tokens=[["t%d" % t for t in range(time)] for _ in range(batch)] if tokens else None,
                description=description,
                dtype=dtype,
            )


def make_provider(logdir, samples=0):
    """A real `MultiplexerDataProvider` over `logdir`, loaded once."""
    multiplexer = multiplexer_lib.EventMultiplexer(
        tensor_size_guidance={metadata.PLUGIN_NAME: samples})
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
    states_plugin = plugin.StatesPlugin(context, cache_bytes=cache_bytes)
    app = application.TensorBoardWSGI([states_plugin], data_provider=provider)
    return werkzeug_test.Client(app), states_plugin, multiplexer
