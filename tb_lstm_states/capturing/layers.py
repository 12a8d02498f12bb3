"""`capture`: the module's own kernel, one layer at a time, and the gates from it.

Each layer runs through the fused kernel the module's forward uses (`torch._VF.lstm`
and friends, one layer, dropout off, on the module's device). That gives the hidden
state of every timestep of that layer exactly as the module computes it, so the
last layer's hidden states are the module's output bit for bit, and each layer's
output is the next one's input as in the module. `cells.recompute_gates` then adds
the gates and cell states.
"""

import contextlib
import warnings
import weakref
from typing import Any, Callable, Dict

import torch
from torch.nn.utils.rnn import PackedSequence

from tb_lstm_states.capturing import cells, gradients
from tb_lstm_states.capturing.inputs import Sequences, check_module, check_tensor, initial_states
from tb_lstm_states.states import LayerStates, RecurrentStates

_KERNEL_BY_MODE: Dict[str, Callable[..., Any]] = {
    "LSTM": torch._VF.lstm,
    "GRU": torch._VF.gru,
    "RNN_TANH": torch._VF.rnn_tanh,
    "RNN_RELU": torch._VF.rnn_relu,
}

# Modules already warned about dropout; weak so that captured modules can be freed.
_DROPOUT_WARNED: "weakref.WeakSet[torch.nn.Module]" = weakref.WeakSet()


def capture(module, inputs, hx=None, *, loss=None):
    """Computes the per-timestep states of every layer of a recurrent module.

    The module is run without inter-layer dropout; its parameters and buffers are
    not changed, and nothing outside the call is either (no thread counts, no
    caches). Without `loss` it runs without autograd.

    Args:
      module: an `nn.LSTM`, `nn.GRU` or `nn.RNN` (tanh or relu), with any
        `num_layers`, `bidirectional`, `batch_first`, `bias` and (LSTM) `proj_size`.
      inputs: what the module's forward takes: a `[time, batch, features]` tensor
        (`[batch, time, features]` when `batch_first`), an unbatched
        `[time, features]` tensor, or a `PackedSequence`, sorted or not.
      hx: the initial state the module's forward takes, or None for zeros.
      loss: optional callable; given what `module(inputs, hx)[0]` returns (a tensor,
        or a PackedSequence for packed input), it returns a scalar tensor. With it,
        each layer's `grads` holds dL/dh_t (and dL/dc_t for LSTM) at every timestep:
        the total derivative through later timesteps, the other direction and the
        upper layers, as autograd gives it for the unrolled module
        (`gradients.py`). No `.grad` is left on any parameter.

    A float16 or bfloat16 module is computed in float32 (its weights, inputs and
    `hx` converted exactly), so its states are float32 and at least as accurate as
    its own forward. Inside an `autocast` region, autocast is off for the capture
    and inputs of any floating dtype are taken (as the module's forward takes them
    there); the states are those of the module's own weights.

    Returns:
      A `RecurrentStates`. Every array is batch-first `[batch, time, ...]`, on the
      module's device and detached (float32 for a float16/bfloat16 module); time
      index t is input position t for both directions; positions at or beyond a
      sequence's length are zero. Unbatched
      input gives batch 1. Arrays may be non-contiguous views of shared buffers.

    Raises:
      TypeError: `module` is not a supported recurrent module, or `inputs`/`hx`
        have the wrong type, dtype or device, or `loss` is not a callable
        returning a scalar tensor.
      ValueError: `inputs` or `hx` have a shape the module does not accept, or the
        loss does not depend on the output.
    """
    kind = check_module(module)
    output_dtype = module.weight_ih_l0.dtype
    _warn_about_dropout(module)
    device_type = module.weight_ih_l0.device.type
    autocast = _autocast_enabled(device_type)
    off = torch.autocast(device_type, enabled=False) if autocast else contextlib.nullcontext()
    with torch.no_grad(), off:
        module, inputs, hx = _in_compute_dtype(module, inputs, hx, autocast)
        sequences = Sequences(module, inputs)
        h0, c0 = initial_states(module, hx, sequences)
        layers = _capture_layers(module, sequences, h0, c0, loss, output_dtype)
        lengths = sequences.original_order(sequences.lengths.unsqueeze(0)).squeeze(1)
    return RecurrentStates(
        kind=kind,
        layers=layers,
        lengths=lengths,
        num_directions=2 if module.bidirectional else 1,
    )


_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _autocast_enabled(device_type):
    try:
        return bool(torch.is_autocast_enabled(device_type))
    except (RuntimeError, TypeError):  # a device type autocast does not know
        return False


class _Float32Weights:
    """A low-precision module's attributes, its floating tensors as float32 copies."""

    def __init__(self, module):
        self._module = module
        self._copies = {}

    def __getattr__(self, name):
        value = getattr(self._module, name)
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            if name not in self._copies:
                self._copies[name] = value.detach().float()
            return self._copies[name]
        return value


def _in_compute_dtype(module, inputs, hx, autocast):
    """`(module, inputs, hx)` to compute with: float32 for a float16/bfloat16 module;
    under autocast, floating inputs and `hx` of any dtype in the module's."""
    weight = module.weight_ih_l0
    compute = torch.float32 if weight.dtype in _LOW_PRECISION else weight.dtype
    if compute == weight.dtype and not autocast:
        return module, inputs, hx  # as before: checked in Sequences

    def convert(tensor, name):
        if not isinstance(tensor, torch.Tensor):
            return tensor  # Sequences and initial_states name the problem
        if not (autocast and tensor.is_floating_point()):
            check_tensor(tensor, weight, name)
        return tensor.to(compute)

    if isinstance(inputs, PackedSequence):
        inputs = PackedSequence(
            convert(inputs.data, "inputs.data"),
            inputs.batch_sizes,
            inputs.sorted_indices,
            inputs.unsorted_indices,
        )
    else:
        inputs = convert(inputs, "inputs")
    if isinstance(hx, (tuple, list)) and len(hx) == 2:
        sequence_type: Any = type(hx)  # tuple or list, as given
        hx = sequence_type(convert(h, name) for h, name in zip(hx, ("h_0", "c_0")))
    elif hx is not None:
        hx = convert(hx, "h_0")
    if compute != weight.dtype:
        module = _Float32Weights(module)
    return module, inputs, hx


def _warn_about_dropout(module):
    if module.training and module.dropout > 0 and module not in _DROPOUT_WARNED:
        _DROPOUT_WARNED.add(module)
        warnings.warn(
            "capture(): the module is in training mode with dropout=%g; the captured "
            "states are the dropout-free ones (as in eval mode). Call module.eval() "
            "before capturing to silence this warning." % module.dropout,
            stacklevel=3,
        )


def _layer_weights(module, layer, direction):
    """Returns the weights of one layer and direction, in `_flat_weights` order."""
    suffix = "_l%d%s" % (layer, "_reverse" if direction else "")
    names = ["weight_ih", "weight_hh"]
    if module.bias:
        names += ["bias_ih", "bias_hh"]
    if module.proj_size > 0:
        names.append("weight_hr")
    return [getattr(module, name + suffix) for name in names]


def _capture_layers(module, sequences, h0, c0, loss=None, output_dtype=None):
    """Returns the `LayerStates` of every layer and direction, in `h_n` order."""
    directions = 2 if module.bidirectional else 1
    layers = module.num_layers
    hidden_out = module.proj_size if module.proj_size > 0 else module.hidden_size
    weights = [
        [_layer_weights(module, layer, d) for d in range(directions)] for layer in range(layers)
    ]
    runs = None
    if loss is not None:
        runs = gradients.run_layers(
            module, sequences, h0, c0, weights, _run_layers, loss, output_dtype
        )
        outputs = [run.output for run in runs]
    else:
        outputs = _run_layers(module, sequences, h0, c0, weights)
    inputs = [sequences.padded, *outputs[:-1]]
    valid = _valid_positions(sequences)
    # [layers * directions, ...] -> [layers, directions, ...]
    h0 = h0.view(layers, directions, *h0.shape[1:])
    c0 = c0.view(layers, directions, *c0.shape[1:]) if c0 is not None else None
    states = [[None] * directions for _ in range(layers)]
    for d in range(directions):
        cells_d, gates_d = cells.recompute_gates(
            module.mode,
            sequences,
            inputs,
            outputs,
            [weights[layer][d] for layer in range(layers)],
            h0[:, d],
            c0[:, d] if c0 is not None else None,
            d,
        )
        for layer in range(layers):
            hidden = outputs[layer][..., d * hidden_out : (d + 1) * hidden_out]
            _zero_past_lengths(valid, cells_d[layer], gates_d[layer])
            grads = {}
            if runs is not None:
                grads = gradients.layer_gradients(
                    module.mode,
                    sequences,
                    runs[layer],
                    weights[layer][d],
                    cells_d[layer],
                    gates_d[layer],
                    d,
                    valid,
                )
            states[layer][d] = _finish_layer(
                sequences, hidden, cells_d[layer], gates_d[layer], grads
            )
    return [state for layer_states in states for state in layer_states]


def _run_layers(module, sequences, h0, c0, weights, widen=None):
    """Runs the module's own kernel layer by layer, each on the output of the one below.

    Args:
      weights: per layer, per direction, the weights in `_flat_weights` order.
      widen: optional `(layer, layer_input) -> (kernel_input, layer_weights)`, what the
        kernel runs on instead (`gradients.py` widens both); the kernel then runs in
        training mode, the only one in which cuDNN has a backward (dropout is 0).

    Returns:
      Per layer, its output `[time, batch, directions * out]`, zero past each length.
    """
    directions = 2 if module.bidirectional else 1
    outputs = []
    layer_input = sequences.padded
    for layer in range(module.num_layers):
        rows = slice(layer * directions, (layer + 1) * directions)
        kernel_input, layer_weights = layer_input, weights[layer]
        packed_data = sequences.packed_data if layer == 0 else None
        if widen is not None:
            kernel_input, layer_weights = widen(layer, layer_input)
            packed_data = None
        layer_input = _run_kernel(
            module,
            sequences,
            kernel_input,
            h0[rows],
            c0[rows] if c0 is not None else None,
            layer_weights,
            packed_data=packed_data,
            train=widen is not None,
        )
        outputs.append(layer_input)
    return outputs


def _run_kernel(module, sequences, layer_input, h0, c0, weights, packed_data=None, train=False):
    """Runs the module's own kernel on one layer.

    Args:
      packed_data: the PackedSequence data of `layer_input` when already at hand.
      train: the kernel's training flag (dropout is 0 either way).

    Returns:
      `[time, batch, directions * out]`, time-major, zero past each length.
    """
    kernel = _KERNEL_BY_MODE[module.mode]
    hx = (h0, c0) if c0 is not None else h0
    flat = [w for direction in weights for w in direction]
    # (hx, weights, has_biases, num_layers, dropout, train, bidirectional)
    args = (hx, flat, module.bias, 1, 0.0, train, module.bidirectional)
    if sequences.batch_sizes is None:
        return kernel(layer_input, *args, False)[0]  # batch_first=False
    data = packed_data if packed_data is not None else sequences.pack(layer_input)
    return sequences.unpack(kernel(data, sequences.batch_sizes, *args)[0])


def _valid_positions(sequences):
    """`[time, batch, 1]`, True at positions within each length; None if all are."""
    if sequences.all_full:
        return None
    steps = torch.arange(sequences.steps, device=sequences.lengths.device)
    return (steps.unsqueeze(1) < sequences.lengths.unsqueeze(0)).unsqueeze(2)


def _zero_past_lengths(valid, cell, gates):
    if valid is None:
        return
    # In place: these are capture's own buffers, not the user's.
    if cell is not None:
        cell.masked_fill_(~valid, 0)
    for gate in gates.values():
        gate.masked_fill_(~valid, 0)


def _finish_layer(sequences, hidden, cell, gates, grads):
    """Returns batch-first `LayerStates` in the user's order."""
    order = sequences.original_order
    return LayerStates(
        hidden=order(hidden),
        cell=order(cell) if cell is not None else None,
        gates={name: order(gate) for name, gate in gates.items()},
        grads={name: order(grad) for name, grad in grads.items()},
    )
