"""tb-lstm-states: per-timestep states of PyTorch recurrent layers, in TensorBoard.

import tb_lstm_states as tls
states = tls.capture(model.lstm, probe_inputs)
with tls.StateWriter("runs/exp1") as writer:
    writer.add_states("encoder", states, step=epoch)

One subpackage per layer, the public names above them:

- `capturing`: the per-timestep states of a module, in torch alone (`capture`);
- `storage`: the on-disk format, `StateWriter` and `read_states`;
- `server`: the TensorBoard backend of the tab (docs/http_api.md);
- `analysis`: what the tab derives from states (changes, unit statistics,
  projections).

`states` (`RecurrentStates`, `LayerStates`), `statistics` (the overview's
per-array statistics), `metadata` (the summaries' plugin data) and `cache` sit
beside them; so do the optional `lightning` callback and `distributed` helpers.
"""

import importlib

__version__ = "0.1.0"

# Public name -> module. Imported on first use, because TensorBoard imports this
# package to load the plugin and must not pay for importing torch.
_EXPORTS = {
    "capture": "capturing",
    "record": "capturing",
    "Recorder": "capturing",
    "RecurrentStates": "states",
    "LayerStates": "states",
    "StateWriter": "storage.writer",
    "read_states": "storage.reader",
    "StatesRecord": "storage.reader",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError("module 'tb_lstm_states' has no attribute %r" % name)
    value = getattr(importlib.import_module("tb_lstm_states." + module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
