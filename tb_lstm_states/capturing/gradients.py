"""dL/dh_t and dL/dc_t of every layer, through the module's own fused kernel.

A fused kernel (cuDNN, oneDNN, or ATen's CPU loop) keeps its per-timestep gradients
to itself: autograd can give dL/d(layer output), but that leaves out the path from
h_t through the layer's own later timesteps. The total derivative needs that path,
so each layer's input is widened with a zero tensor `e` whose widened input weights
add, unchanged, a term to the gate pre-activations; autograd then gives dL/de_t
through the same kernel:

- LSTM and RNN: the weights are `[W_ih | W_hh]`, so dL/de_t = W_hh^T dL/dpre_t, the
  gradient h_{t-1} receives through step t. h_{t-1} is used only there and by the
  layer's output, so dL/dh_{t-1} = dL/dy_{t-1} + dL/de_t, with no recurrence left;
- GRU: the weights are `[W_ih | I]`, so dL/de_t = dL/dpre_t (the input side). n_t
  sees h_{t-1} through r_t * (W_hn h_{t-1} + b_hn), and h_{t-1} also enters h_t
  directly, h_t = (1 - z_t) n_t + z_t h_{t-1}, so
  dL/dh_{t-1} = dL/dy_{t-1} + W_hh^T [dpre_r, dpre_z, r_t dpre_n] + z_t dL/dh_t,
  an elementwise linear recurrence;
- LSTM cell: c_t enters h_t and c_{t+1} = f_{t+1} c_t + ..., so
  dL/dc_t = dL/dh_t o_t (1 - tanh^2 c_t) + f_{t+1} dL/dc_{t+1} (through W_hr^T first
  under `proj_size`), another one.

Both recurrences are solved by `scan.linear_scan`, as the cell states are. "Next"
is t+1 for the forward direction and t-1 for the reverse one. Every function works
time-major (`[time, batch, ...]`) in the working order of `Sequences`.
"""

from typing import Any, List, Optional, Sequence

import torch
from torch.nn.utils.rnn import PackedSequence

from tb_lstm_states.capturing import scan

GATE_COUNT = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


class LayerRun:
    """What a layer's run with autograd gives: its output and the two gradients.

    Attributes:
      output: `[time, batch, directions * out]`, detached, zero past each length.
      output_grad: dL/d(output) through the upper layers and the loss only.
      extra_grad: `[time, batch, directions * width]`, dL/de per step: W_hh^T
        dL/dpre_t (LSTM, RNN) or dL/dpre_t (GRU).
    """

    def __init__(self, output, output_grad, extra_grad):
        self.output = output
        self.output_grad = output_grad
        self.extra_grad = extra_grad


def run_layers(module, sequences, h0, c0, weights, run_layers_of, loss, output_dtype):
    """Runs every layer with autograd through the widened kernel and calls `loss`.

    Args:
      module: the recurrent module (or its float32 view).
      sequences: the normalized input (`Sequences`).
      h0, c0: initial states `[layers * directions, batch, ...]` (c0 None but LSTM).
      weights: per layer, per direction, the weights in `_flat_weights` order.
      run_layers_of: `layers._run_layers`, given how to widen each layer.
      loss: the user's callable, given what `module(inputs, hx)[0]` returns.
      output_dtype: the dtype the module's own output has.

    Returns:
      One `LayerRun` per layer.

    Raises:
      TypeError: `loss` is not callable or does not return a scalar tensor.
      ValueError: the loss does not depend on the output.
      RuntimeError: called inside `torch.inference_mode()`.
    """
    if not callable(loss):
        raise TypeError(
            "loss must be a callable taking the module's output and returning a scalar "
            "tensor, got %s." % type(loss).__name__
        )
    if torch.is_inference_mode_enabled():
        # enable_grad cannot lift inference mode: autograd would record nothing.
        raise RuntimeError(
            "capture(loss=...) needs autograd, but it was called inside "
            "torch.inference_mode(): call it outside that block (inside torch.no_grad() "
            "is fine)."
        )
    directions = 2 if module.bidirectional else 1
    identity = module.mode == "GRU"
    if identity:
        width = GATE_COUNT["GRU"] * module.hidden_size
    else:
        width = module.proj_size if module.proj_size > 0 else module.hidden_size
    extras = []

    def widen(layer, layer_input):
        steps, batch = layer_input.shape[:2]
        extra = layer_input.new_zeros(steps, batch, directions * width, requires_grad=True)
        extras.append(extra)
        widened = [_widen(weights[layer][d], d, directions, identity) for d in range(directions)]
        return torch.cat([layer_input, extra], dim=2), widened

    with torch.enable_grad():
        outputs = run_layers_of(module, sequences, h0, c0, weights, widen)
        value = loss(_module_output(sequences, module, outputs[-1], output_dtype))
        _check_loss_value(value)
        grads = torch.autograd.grad(value, extras + outputs, allow_unused=True)
    layers = module.num_layers
    runs = []
    for layer in range(layers):
        extra_grad, output_grad = grads[layer], grads[layers + layer]
        output = outputs[layer].detach()
        runs.append(
            LayerRun(
                output,
                torch.zeros_like(output) if output_grad is None else output_grad,
                torch.zeros_like(extras[layer]) if extra_grad is None else extra_grad,
            )
        )
    return runs


def _widen(weights: Sequence[Any], direction: int, directions: int, identity: bool) -> List[Any]:
    """The direction's weights with `W_ih` widened by `W_hh` (or `I`) in its own block.

    The block is what the direction's extra input is multiplied by; the other
    direction's block is zero, so each direction's extra input reaches it alone.
    """
    weight_ih, weight_hh = weights[0].detach(), weights[1].detach()
    gates = weight_hh.shape[0]
    block = (
        torch.eye(gates, dtype=weight_ih.dtype, device=weight_ih.device) if identity else weight_hh
    )
    width = block.shape[1]
    extra = weight_ih.new_zeros(gates, directions * width)
    extra[:, direction * width : (direction + 1) * width] = block
    return [torch.cat([weight_ih, extra], dim=1), weight_hh] + [w.detach() for w in weights[2:]]


def _module_output(sequences, module, output, output_dtype):
    """`output` (time-major, working order) in the form the module's forward returns."""
    if output.dtype != output_dtype:
        output = output.to(output_dtype)
    if sequences.batch_sizes is not None:
        return PackedSequence(
            sequences.pack(output),
            sequences.batch_sizes,
            sequences.sorted_indices,
            sequences.unsorted_indices,
        )
    if sequences.unbatched:
        return output.squeeze(1)
    return output.transpose(0, 1) if module.batch_first else output


def _check_loss_value(value):
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        raise TypeError(
            "loss must return a scalar tensor (one element), got %s. Reduce it, e.g. "
            "with .mean() or .sum()."
            % (
                "a tensor of shape %s" % (tuple(value.shape),)
                if isinstance(value, torch.Tensor)
                else type(value).__name__
            )
        )
    if not value.is_floating_point() or not value.requires_grad:
        raise ValueError(
            "loss returned a value that does not depend on the module's output (no "
            "gradient flows back): compute it from the output with torch operations, "
            "without .item(), .detach() or torch.no_grad()."
        )


def layer_gradients(
    mode: str,
    sequences,
    run: LayerRun,
    weights: Sequence[Any],
    cell: Optional[Any],
    gates: dict,
    direction: int,
    valid: Optional[Any],
) -> dict:
    """Returns `{"hidden": dL/dh, "cell": dL/dc}` (cell for LSTM) of one direction.

    Args:
      mode: the module's `mode`.
      sequences: the normalized input.
      run: the layer's `LayerRun`.
      weights: the direction's weights in `_flat_weights` order.
      cell: the direction's cell states `[time, batch, hidden]` (LSTM), else None.
      gates: its activated gates by name, zero past each length.
      direction: 0 forward, 1 reverse.
      valid: `[time, batch, 1]` bool mask of valid positions, or None if all are.

    Returns:
      Time-major `[time, batch, ...]` tensors, zero past each length.
    """
    weight_hh = weights[1].detach()
    width = weight_hh.shape[1]  # the hidden state's (after projection) width
    external = run.output_grad[..., direction * width : (direction + 1) * width]
    if mode == "GRU":
        gate_width = weight_hh.shape[0]
        size = gate_width // 3
        pre_grad = run.extra_grad[..., direction * gate_width : (direction + 1) * gate_width]
        # n sees the hidden side through r * (W_hn h + b_hn).
        pre_grad = torch.cat(
            [pre_grad[..., : 2 * size], pre_grad[..., 2 * size :] * gates["reset"]], dim=2
        )
        recurrent = torch.matmul(pre_grad, weight_hh)
    else:
        recurrent = run.extra_grad[..., direction * width : (direction + 1) * width]
    hidden = external.clone()
    # dL/dpre of step "next(t)" reaches h_t.
    if direction == 0:
        hidden[:-1] += recurrent[1:]
    else:
        hidden[1:] += recurrent[:-1]
    if mode == "GRU":
        _solve(hidden, gates["update"], direction)
    result = {"hidden": hidden}
    if mode == "LSTM" and cell is not None:
        raw = hidden if len(weights) % 2 == 0 else torch.matmul(hidden, weights[-1].detach())
        tanh_cell = torch.tanh(cell)
        cell_grad = raw * gates["output"] * (1 - tanh_cell * tanh_cell)
        _solve(cell_grad, gates["forget"], direction)
        result["cell"] = cell_grad
    if valid is not None:
        for value in result.values():
            value.masked_fill_(~valid, 0)
    return result


def _solve(values, factors_by_step, direction):
    """In place: values_t += factor_{next(t)} * values_{next(t)}, from the last use back.

    Past a sequence's length the factors are zero, so nothing flows back from the
    padding; what flows into it (reverse direction) is masked afterwards.
    """
    factors = torch.zeros_like(factors_by_step)
    if direction == 0:
        factors[:-1] = factors_by_step[1:]
    else:
        factors[1:] = factors_by_step[:-1]
    steps = values.shape[0]
    chunk = scan.scan_chunk(steps, values[0].numel(), values.device.type)
    scan.linear_scan(values, factors, chunk, reverse=direction == 0)
