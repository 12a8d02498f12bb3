"""The gates (and an LSTM's cell states) of every layer, from their hidden states.

The module's kernel gives h_t of every timestep but no gates. Knowing h_{t-1} for
every t, each gate pre-activation of a layer is one matrix product over all
timesteps at once: nothing about the gates is sequential. For an LSTM the cell state
c_t = f_t * c_{t-1} + i_t * g_t then follows by an elementwise recurrence
(`tb_lstm_states.capturing.scan`), solved for all layers of a direction together:
one small operation per timestep, whatever the number of layers.

Every function here works on one direction, time-major (`[time, batch, ...]`), in
the working order of `Sequences`, on whatever device the tensors are on.
"""

import torch

from tb_lstm_states.capturing import scan

# The layers of a direction are solved together, one operation per timestep for all
# of them, where a step is small: such an operation costs mostly its launch. On a
# CPU torch runs an elementwise operation of more than 32768 elements on its thread
# pool, so layers are grouped up to that size only: beyond it, combining them saves
# nothing and would wake the pool at every step (on a busy machine each wake-up can
# wait for a time slice).
_CPU_STEP_ELEMENTS = 32768


def recompute_gates(mode, sequences, inputs, outputs, weights, h0, c0, direction):
    """Returns the cell states and the activated gates of one direction of every layer.

    Args:
      mode: the module's `mode`: `"LSTM"`, `"GRU"`, `"RNN_TANH"` or `"RNN_RELU"`.
      sequences: the normalized input (`Sequences`).
      inputs: per layer, its input `[time, batch, features]`, zero past each length.
      outputs: per layer, the kernel's output `[time, batch, directions * out]`,
        zero past each length.
      weights: per layer, the direction's weights: `weight_ih`, `weight_hh`, then
        `bias_ih` and `bias_hh` if the module has biases (an LSTM's `weight_hr` may
        follow).
      h0: `[layers, batch, out]`, the direction's initial hidden states.
      c0: `[layers, batch, hidden]`, its initial cell states (LSTM), else None.
      direction: 0 forward, 1 reverse.

    Returns:
      `(cells, gates)`, one entry per layer: `cells[layer]` is `[time, batch,
      hidden]` (None unless an LSTM), `gates[layer]` a dict of `[time, batch,
      hidden]` gates by name (empty for a plain RNN). Values past a sequence's
      length are not defined.
    """
    layers = len(outputs)
    if mode == "LSTM":
        return _lstm(sequences, inputs, outputs, weights, h0, c0, direction)
    if mode == "GRU":
        gates = [
            _gru(sequences, inputs[layer], outputs[layer], weights[layer], h0[layer], direction)
            for layer in range(layers)
        ]
        return [None] * layers, gates
    return [None] * layers, [{} for _ in range(layers)]


def _lstm(sequences, inputs, outputs, weights, h0, c0, direction):
    steps, batch = sequences.steps, sequences.batch
    columns = weights[0][0].shape[0]  # W_ih: [4 * hidden, features]
    size = columns // 4
    # The gates of all layers in one buffer, so that each elementwise pass and each
    # step of the cell-state recurrence is one operation for all of them.
    pre = outputs[0].new_empty(len(outputs), steps * batch, columns)
    for layer in range(len(outputs)):
        weight = weights[layer]
        bias = weight[2] + weight[3] if len(weight) >= 4 else None
        flat_input = inputs[layer].reshape(steps * batch, -1)
        _linear(flat_input, weight[0], bias, out=pre[layer])
        _add_recurrent_product(
            pre[layer], sequences, outputs[layer], direction, h0[layer], weight[1]
        )
    pre = pre.view(len(outputs), steps, batch, columns)
    candidate = pre[..., 2 * size : 3 * size]
    candidate.mul_(2)
    pre.sigmoid_()
    _tanh_from_sigmoid_(candidate)
    input_gate, forget, candidate, _ = pre.split(size, dim=3)
    cell = _cell_states(sequences, input_gate, forget, candidate, c0, direction)
    gates = []
    for layer in range(len(outputs)):
        input_gate, forget, candidate, output_gate = pre[layer].split(size, dim=2)
        gates.append(
            {"input": input_gate, "forget": forget, "candidate": candidate, "output": output_gate}
        )
    return list(cell.unbind(0)), gates


def _gru(sequences, layer_input, output, weights, h0, direction):
    # r and z see the sum of both products, n sees r * (W_hn h + b_hn).
    steps, batch = sequences.steps, sequences.batch
    weight_ih, weight_hh = weights[0], weights[1]
    bias_ih, bias_hh = (weights[2], weights[3]) if len(weights) >= 4 else (None, None)
    pre_input = _linear(layer_input.reshape(steps * batch, -1), weight_ih, bias_ih)
    pre_input = pre_input.view(steps, batch, -1)
    if bias_hh is None:
        pre_hidden = pre_input.new_zeros(steps * batch, pre_input.shape[-1])
    else:
        pre_hidden = bias_hh.expand(steps * batch, -1).clone()
    _add_recurrent_product(pre_hidden, sequences, output, direction, h0, weight_hh)
    pre_hidden = pre_hidden.view(steps, batch, -1)
    size = pre_input.shape[-1] // 3
    pre_input[..., : 2 * size].add_(pre_hidden[..., : 2 * size]).sigmoid_()
    reset = pre_input[..., :size]
    new = pre_input[..., 2 * size :]
    new.addcmul_(reset, pre_hidden[..., 2 * size :]).mul_(2).sigmoid_()
    _tanh_from_sigmoid_(new)
    return {"reset": reset, "update": pre_input[..., size : 2 * size], "new": new}


def _linear(inputs, weight, bias, out=None):
    if bias is None:
        return torch.mm(inputs, weight.t(), out=out)
    return torch.addmm(bias, inputs, weight.t(), out=out)


def _add_recurrent_product(pre, sequences, output, direction, h0, weight_hh):
    """Adds h_{t-1} @ W_hh^T to the `[time*batch, gates]` pre-activations `pre`.

    h_{t-1} of every position is read in place from the kernel's output (a strided
    view, no copy). For the reverse direction the previous step of position t is
    t+1, and a sequence of length n starts at position n-1 from h0.
    """
    steps, batch = sequences.steps, sequences.batch
    width = weight_hh.shape[1]
    hidden = output.view(steps * batch, -1)[:, direction * width : (direction + 1) * width]
    weight_t = weight_hh.t()
    rest = (steps - 1) * batch
    if direction == 0:
        pre[batch:].addmm_(hidden[:rest], weight_t)
        pre[:batch].addmm_(h0, weight_t)
    elif sequences.all_full:
        pre[:rest].addmm_(hidden[batch:], weight_t)
        pre[rest:].addmm_(h0, weight_t)
    else:
        # Past a sequence's end the kernel output is zero, so the big product adds
        # nothing at its first position; its h0 term goes in separately.
        pre[:rest].addmm_(hidden[batch:], weight_t)
        columns = sequences.lengths.new_tensor(range(batch))
        pre.index_add_(0, (sequences.lengths - 1) * batch + columns, h0 @ weight_t)


def _tanh_from_sigmoid_(values):
    """In place: turns sigmoid(2x) into tanh(x) = 2 sigmoid(2x) - 1.

    A CPU computes tanh at several times the cost of the sigmoid; doubling is exact,
    and the result is within a few ulp of 1 in absolute terms, as tight as the
    kernels' own activation functions agree with each other.
    """
    values.mul_(2).sub_(1)


def _cell_states(sequences, input_gate, forget, candidate, c0, direction):
    """Solves c_t = f_t * c_{t-1} + i_t * g_t for all t and all layers.

    The gates are `[layers, time, batch, hidden]`, `c0` is `[layers, batch,
    hidden]`; returns `[layers, time, batch, hidden]`.
    """
    layers, steps, batch, size = forget.shape
    # Holds i*g with c_0 folded into each sequence's first step; becomes c.
    cell = forget.new_empty(layers, steps, batch, size)
    torch.mul(input_gate, candidate, out=cell)
    if direction == 0:
        cell[:, 0].addcmul_(forget[:, 0], c0)
        factor = forget
    elif sequences.all_full:
        cell[:, steps - 1].addcmul_(forget[:, steps - 1], c0)
        factor = forget
    else:
        # Each sequence starts at its own last position: cut the chain there so the
        # padding after it does not flow in.
        first = sequences.lengths - 1
        columns = sequences.lengths.new_tensor(range(batch))
        cell[:, first, columns] += forget[:, first, columns] * c0
        factor = forget.clone()
        factor[:, first, columns] = 0
    group = layers
    if cell.device.type == "cpu":
        group = max(1, _CPU_STEP_ELEMENTS // (batch * size))
    for start in range(0, layers, group):
        part = slice(start, start + group)
        # Time first for the scan: views, no copies.
        values, factors = cell[part].transpose(0, 1), factor[part].transpose(0, 1)
        chunk = scan.scan_chunk(steps, values[0].numel(), cell.device.type)
        scan.linear_scan(values, factors, chunk, reverse=direction == 1)
    return cell
