"""Exact per-timestep states of PyTorch recurrent layers.

`nn.LSTM`, `nn.GRU` and `nn.RNN` return the hidden state of every timestep of the
last layer only. `capture` returns every layer's hidden state, LSTM cell state and
gate activations at every timestep, equal to what the module computes.

How, and why it is fast:

1. Each layer runs through the module's own fused kernel (`torch._VF.lstm` and
   friends, one layer at a time, dropout off). That gives the hidden state of every
   timestep of that layer exactly as the module computes it, so the last layer's
   hidden states are the module's output bit for bit.
2. Knowing h_{t-1} for every t, all gate pre-activations of a layer are one batched
   matrix product; nothing about them is sequential.
3. For an LSTM the cell state c_t = f_t * c_{t-1} + i_t * g_t is still a recurrence,
   but an elementwise linear one: `_linear_scan` solves it sequentially on [batch,
   hidden] slices (cheap on a CPU) or, where launches dominate (GPU), with a chunked
   Hillis-Steele scan in log2(chunk) vectorized rounds.
4. An LSTM on CPU (float32/float64) takes neither: a compiled single-pass loop
   (`_native_lstm_layer`, built with numba on first use and cached on disk) does
   each timestep as one matrix product of [x_t, h_{t-1}, 1] with the stacked
   weights and bias, then the activations, written straight into the output
   tensors (plus a second product for the projection when proj_size > 0). So
   every matrix product is done once, where kernel + gates does the recurrent
   ones twice. In float32 both go through the MKL that torch's CPU library links
   (`_Mkl`): its packed-weight sgemm, as fast as the module's own oneDNN kernel,
   and its vector tanh for every activation of a step at once; float64 (or torch
   without MKL) takes np.dot and the loop's own vectorized sigmoid. Either agrees
   with the module to ~1e-7, not bit for bit. Lengths and the reverse direction
   are handled per sequence inside the loop. MKL spreads each call over torch's
   threads; the state buffers are huge-page mappings, reused (`_new_buffer`).
   GRU and RNN layers, GPUs, and machines without numba take kernel + gates.
5. Whether two CPU threads beat one depends on how busy the machine is as much
   as on the shape, so `_PATH_TUNER` times both on the first calls of each shape
   and keeps the faster (like cuDNN's benchmark mode). Every plan gives the same
   states up to float rounding.

`capture` may change torch's intra-op thread count while it runs (see
`_candidate_plans`); it always restores it. The first compiled capture without
MKL (float64) sets scipy's OpenBLAS (numba's np.dot) to one thread for the process
(see `_single_threaded_blas`).
"""

import collections
import contextlib
import functools
import math
import mmap
import statistics
import sys
import threading
import time
import warnings
import weakref

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from tb_lstm_states.states import LayerStates, RecurrentStates

__all__ = ["capture", "record", "Recorder"]

# nn.RNNBase.mode -> RecurrentStates.kind.
_KIND_BY_MODE = {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "rnn", "RNN_RELU": "rnn"}
_KERNEL_BY_MODE = {
    "LSTM": torch._VF.lstm,
    "GRU": torch._VF.gru,
    "RNN_TANH": torch._VF.rnn_tanh,
    "RNN_RELU": torch._VF.rnn_relu,
}

# Modules already warned about dropout; weak so that captured modules can be freed.
_DROPOUT_WARNED = weakref.WeakSet()

# Rough costs used to choose the scan's chunk length, by device type: seconds per
# launched tensor operation, and per element touched by an elementwise operation.
# (Measured on a 2-core CPU: a strided elementwise pass costs about 1 ns/element, so
# there the sequential scan nearly always wins; on a GPU launches dominate.)
_SCAN_COSTS = {"cpu": (4e-6, 1e-9), "cuda": (8e-6, 2e-12)}


def capture(module, inputs, hx=None):
    """Computes the per-timestep states of every layer of a recurrent module.

    The module is run without autograd and without inter-layer dropout; its
    parameters and buffers are not changed.

    Args:
      module: an `nn.LSTM`, `nn.GRU` or `nn.RNN` (tanh or relu), with any
        `num_layers`, `bidirectional`, `batch_first`, `bias` and (LSTM) `proj_size`.
      inputs: what the module's forward takes: a `[time, batch, features]` tensor
        (`[batch, time, features]` when `batch_first`), an unbatched
        `[time, features]` tensor, or a `PackedSequence`, sorted or not.
      hx: the initial state the module's forward takes, or None for zeros.

    Returns:
      A `RecurrentStates`. Every array is batch-first `[batch, time, ...]`, on the
      module's device and detached; time index t is input position t for both
      directions; positions at or beyond a sequence's length are zero. Unbatched
      input gives batch 1. Arrays may be non-contiguous views of shared buffers.

    Raises:
      TypeError: `module` is not a supported recurrent module, or `inputs`/`hx`
        have the wrong type, dtype or device.
      ValueError: `inputs` or `hx` have a shape the module does not accept.
    """
    kind = _check_module(module)
    _warn_about_dropout(module)
    with torch.no_grad():
        sequences = _Sequences(module, inputs)
        h0, c0 = _initial_states(module, hx, sequences)
        plans = _candidate_plans(module, sequences)
        plan = _PATH_TUNER.choose(module, sequences, plans)
        start = time.perf_counter()
        with _thread_count(plan.threads):
            layers = _capture_layers(module, sequences, h0, c0, plan.loop)
        if len(plans) > 1:
            _PATH_TUNER.record(module, sequences, plan, time.perf_counter() - start)
        lengths = sequences.original_order(sequences.lengths.unsqueeze(0)).squeeze(1)
    return RecurrentStates(
        kind=kind,
        layers=layers,
        lengths=lengths,
        num_directions=2 if module.bidirectional else 1,
    )


class Recorder:
    """Collects the states of the forward calls of one module; see `record`.

    Attributes:
      module: the recorded module.
      states: one `RecurrentStates` per forward call made while recording.
    """

    def __init__(self, module):
        _check_module(module)
        self.module = module
        self.states = []
        self._handle = None

    def start(self):
        """Starts recording (`record` does this on entering its block)."""
        if self._handle is None:
            self._handle = self.module.register_forward_hook(
                self._on_forward, with_kwargs=True
            )
        return self

    def stop(self):
        """Stops recording; `states` keeps what was captured."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def clear(self):
        """Forgets the captured states, e.g. between training steps."""
        self.states = []

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
        return False

    def _on_forward(self, module, args, kwargs, output):
        inputs = args[0] if args else kwargs["input"]
        hx = args[1] if len(args) > 1 else kwargs.get("hx")
        # Returning None leaves the module's output, and so its gradients, untouched.
        self.states.append(capture(module, inputs, hx))


def record(module):
    """Captures the states of a module's real forward calls while in a `with` block.

    Example:

        with tls.record(model.lstm) as recorder:
            loss = loss_fn(model(batch), target)
        states = recorder.states[-1]

    The module's outputs and gradients are unchanged; each forward call costs one
    extra `capture` of the same inputs.

    Args:
      module: an `nn.LSTM`, `nn.GRU` or `nn.RNN`.

    Returns:
      A `Recorder`, recording between entering and leaving the block.
    """
    return Recorder(module)


# ----------------------------------------------------------------------------
# Checking and normalizing the arguments.


def _check_module(module):
    """Returns the kind of `module`, or raises TypeError for unsupported modules."""
    if isinstance(module, nn.RNNCellBase):
        raise TypeError(
            "capture() needs a whole-sequence module (nn.LSTM, nn.GRU or nn.RNN), got "
            "%s, which computes a single timestep. Use the sequence module instead: "
            "e.g. nn.LSTM(input_size, hidden_size) holds the same weights as an "
            "nn.LSTMCell (weight_ih_l0 = cell.weight_ih, and so on)."
            % type(module).__name__
        )
    if not isinstance(module, nn.RNNBase) or module.mode not in _KIND_BY_MODE:
        raise TypeError(
            "capture() needs an nn.LSTM, nn.GRU or nn.RNN module, got %s. Pass the "
            "recurrent layer itself (e.g. model.lstm), not the model around it."
            % type(module).__name__
        )
    return _KIND_BY_MODE[module.mode]


def _warn_about_dropout(module):
    if module.training and module.dropout > 0 and module not in _DROPOUT_WARNED:
        _DROPOUT_WARNED.add(module)
        warnings.warn(
            "capture(): the module is in training mode with dropout=%g; the captured "
            "states are the dropout-free ones (as in eval mode). Call module.eval() "
            "before capturing to silence this warning." % module.dropout,
            stacklevel=3,
        )


def _reference_weight(module):
    return module.weight_ih_l0


class _Sequences:
    """The input of a capture, normalized to time-major padded form.

    When the input is a PackedSequence, the batch is kept in its sorted order (the
    one the kernel works in) until `original_order` restores the user's order.

    Attributes:
      padded: `[time, batch, features]`, contiguous, zero beyond each length.
      lengths: `[batch]` int64 on the module's device, in working order.
      batch_sizes: the PackedSequence's batch sizes (CPU), or None for a tensor.
      packed_index: indices of the valid positions in `padded.view(time*batch, ...)`,
        in PackedSequence order; None for a tensor.
    """

    def __init__(self, module, inputs):
        weight = _reference_weight(module)
        self.unsorted_indices = None
        self.sorted_indices = None
        self.unbatched = False
        if isinstance(inputs, PackedSequence):
            data = inputs.data
            self._check_tensor(module, data, weight, "inputs.data")
            if data.dim() != 2:
                raise ValueError(
                    "PackedSequence data must be 2-D [total_steps, features], got "
                    "shape %s. Build it with torch.nn.utils.rnn.pack_padded_sequence "
                    "or pack_sequence." % (tuple(data.shape),)
                )
            self._check_features(module, data.shape[-1])
            batch_sizes = inputs.batch_sizes.cpu()
            steps, batch = len(batch_sizes), int(batch_sizes[0])
            valid = torch.arange(batch).unsqueeze(0) < batch_sizes.unsqueeze(1)
            self.batch_sizes = batch_sizes
            self.packed_index = valid.flatten().nonzero().squeeze(1).to(data.device)
            self.lengths = valid.sum(0).to(data.device)
            self.padded = data.new_zeros(steps * batch, data.shape[-1])
            self.padded.index_copy_(0, self.packed_index, data)
            self.padded = self.padded.view(steps, batch, -1)
            self.packed_data = data
            self.sorted_indices = inputs.sorted_indices
            self.unsorted_indices = inputs.unsorted_indices
            self.all_full = bool((self.lengths == steps).all()) if steps else True
        elif isinstance(inputs, torch.Tensor):
            self._check_tensor(module, inputs, weight, "inputs")
            if inputs.dim() not in (2, 3):
                raise ValueError(
                    "inputs must be 3-D (%s) or 2-D unbatched [time, features], got "
                    "shape %s."
                    % (
                        "[batch, time, features] since batch_first=True"
                        if module.batch_first
                        else "[time, batch, features]",
                        tuple(inputs.shape),
                    )
                )
            self._check_features(module, inputs.shape[-1])
            if inputs.dim() == 2:
                self.unbatched = True
                padded = inputs.unsqueeze(1)
            elif module.batch_first:
                padded = inputs.transpose(0, 1)
            else:
                padded = inputs
            self.padded = padded.contiguous()
            self.batch_sizes = None
            self.packed_index = None
            self.packed_data = None
            steps, batch = self.padded.shape[:2]
            self.lengths = torch.full(
                (batch,), steps, dtype=torch.int64, device=inputs.device
            )
            self.all_full = True
        else:
            raise TypeError(
                "inputs must be a torch.Tensor or a PackedSequence, got %s."
                % type(inputs).__name__
            )
        if self.padded.shape[0] == 0 or self.padded.shape[1] == 0:
            raise ValueError(
                "inputs are empty (shape %s): capture needs at least one timestep and "
                "one sequence." % (tuple(self.padded.shape),)
            )

    @staticmethod
    def _check_tensor(module, tensor, weight, name):
        if tensor.dtype != weight.dtype:
            raise TypeError(
                "%s has dtype %s but the module's weights are %s: convert one of them, "
                "e.g. %s.to(%s)." % (name, tensor.dtype, weight.dtype, name, weight.dtype)
            )
        if tensor.device != weight.device:
            raise TypeError(
                "%s is on %s but the module is on %s: move them together, e.g. "
                "%s.to(%r)." % (name, tensor.device, weight.device, name, str(weight.device))
            )

    @staticmethod
    def _check_features(module, features):
        if features != module.input_size:
            raise ValueError(
                "inputs have %d features per timestep but the module expects "
                "input_size=%d: the last dimension of the inputs must be %d%s."
                % (
                    features,
                    module.input_size,
                    module.input_size,
                    " (the module is batch_first=False: is the input [batch, time, "
                    "features]? then set batch_first=True or transpose it)"
                    if not module.batch_first
                    else "",
                )
            )

    @property
    def steps(self):
        return self.padded.shape[0]

    @property
    def batch(self):
        return self.padded.shape[1]

    def pack(self, padded):
        """Returns the PackedSequence data of a time-major padded tensor."""
        steps, batch = padded.shape[:2]
        return padded.reshape(steps * batch, -1).index_select(0, self.packed_index)

    def unpack(self, data):
        """Returns the time-major zero-padded tensor of PackedSequence data."""
        padded = data.new_zeros(self.steps * self.batch, data.shape[-1])
        padded.index_copy_(0, self.packed_index, data)
        return padded.view(self.steps, self.batch, -1)

    def original_order(self, time_major):
        """Returns a `[time, batch, ...]` array batch-first, in the user's order."""
        if self.unsorted_indices is not None:
            return time_major.transpose(0, 1).index_select(0, self.unsorted_indices)
        return time_major.transpose(0, 1)


def _initial_states(module, hx, sequences):
    """Returns `(h0, c0)` as `[layers*directions, batch, size]` (c0 None if not LSTM).

    The batch is in the working order of `sequences`.
    """
    directions = 2 if module.bidirectional else 1
    rows = module.num_layers * directions
    batch = sequences.batch
    hidden_out = module.proj_size if module.proj_size > 0 else module.hidden_size
    weight = _reference_weight(module)
    is_lstm = module.mode == "LSTM"
    if hx is None:
        h0 = weight.new_zeros(rows, batch, hidden_out)
        c0 = weight.new_zeros(rows, batch, module.hidden_size) if is_lstm else None
        return h0, c0
    if is_lstm:
        if not (isinstance(hx, (tuple, list)) and len(hx) == 2):
            raise TypeError(
                "hx of an LSTM must be a tuple (h_0, c_0) of tensors, or None for "
                "zeros; got %s." % type(hx).__name__
            )
        h0 = _check_state(hx[0], "h_0", (rows, batch, hidden_out), sequences, weight)
        c0 = _check_state(
            hx[1], "c_0", (rows, batch, module.hidden_size), sequences, weight
        )
    else:
        if not isinstance(hx, torch.Tensor):
            raise TypeError(
                "hx of a %s must be a tensor h_0, or None for zeros; got %s."
                % (type(module).__name__, type(hx).__name__)
            )
        h0 = _check_state(hx, "h_0", (rows, batch, hidden_out), sequences, weight)
        c0 = None
    if sequences.sorted_indices is not None:
        # As the module does: hx is given in the user's order, the kernel wants sorted.
        h0 = h0.index_select(1, sequences.sorted_indices)
        c0 = c0.index_select(1, sequences.sorted_indices) if c0 is not None else None
    return h0, c0


def _check_state(state, name, expected, sequences, weight):
    if not isinstance(state, torch.Tensor):
        raise TypeError("%s must be a tensor, got %s." % (name, type(state).__name__))
    _Sequences._check_tensor(None, state, weight, name)
    if sequences.unbatched:
        wanted = (expected[0], expected[2])
        layout = "[num_layers * num_directions, hidden] for unbatched input"
        got = tuple(state.shape)
        if got != wanted:
            raise ValueError(
                "%s has shape %s but the module expects %s %s: build it with that "
                "shape (or pass hx=None for zeros)." % (name, got, wanted, layout)
            )
        return state.unsqueeze(1)
    layout = "[num_layers * num_directions, batch, hidden]"
    got = tuple(state.shape)
    if got != tuple(expected):
        raise ValueError(
            "%s has shape %s but the module expects %s %s (always this layout, even "
            "with batch_first=True): build it with that shape (or pass hx=None for "
            "zeros)." % (name, got, tuple(expected), layout)
        )
    return state


# ----------------------------------------------------------------------------
# The computation.


def _layer_weights(module, layer, direction):
    """Returns the weights of one layer and direction, in `_flat_weights` order."""
    suffix = "_l%d%s" % (layer, "_reverse" if direction else "")
    names = ["weight_ih", "weight_hh"]
    if module.bias:
        names += ["bias_ih", "bias_hh"]
    if module.proj_size > 0:
        names.append("weight_hr")
    return [getattr(module, name + suffix) for name in names]


def _capture_layers(module, sequences, h0, c0, loop):
    directions = 2 if module.bidirectional else 1
    kernel = _KERNEL_BY_MODE[module.mode]
    is_lstm = module.mode == "LSTM"
    hidden_out = module.proj_size if module.proj_size > 0 else module.hidden_size
    layers = []
    layer_input = sequences.padded
    for layer in range(module.num_layers):
        weights = [_layer_weights(module, layer, d) for d in range(directions)]
        rows = slice(layer * directions, (layer + 1) * directions)
        layer_h0 = h0[rows]
        layer_c0 = c0[rows] if is_lstm else None
        if loop == "native":
            output, outputs = _native_lstm_layer(
                layer_input, weights, layer_h0, layer_c0, sequences, hidden_out
            )
        else:
            output = _run_kernel(
                kernel, module, sequences, layer, layer_input, layer_h0, layer_c0,
                [w for ws in weights for w in ws],
            )
        for d in range(directions):
            if loop:
                hidden, cell, gates = outputs[d]
            else:
                hidden = output[..., d * hidden_out : (d + 1) * hidden_out]
                cell, gates = _recompute_gates(
                    module.mode, sequences, layer_input, output, weights[d],
                    layer_h0[d], layer_c0[d] if is_lstm else None, d,
                )
            layers.append(_finish_layer(sequences, hidden, cell, gates))
        layer_input = output
    return layers


@contextlib.contextmanager
def _thread_count(threads):
    """Runs a block with `threads` intra-op CPU threads (None: unchanged)."""
    if threads is None or threads == torch.get_num_threads():
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _run_kernel(kernel, module, sequences, layer, layer_input, h0, c0, weights):
    """Runs the module's own kernel on one layer; returns `[time, batch, dirs*out]`."""
    hx = (h0, c0) if c0 is not None else h0
    args = (hx, weights, module.bias, 1, 0.0, False, module.bidirectional)
    if sequences.batch_sizes is None:
        return kernel(layer_input, *args, False)[0]
    data = sequences.packed_data if layer == 0 else sequences.pack(layer_input)
    return sequences.unpack(kernel(data, sequences.batch_sizes, *args)[0])


def _add_recurrent_product(pre, sequences, output, direction, width, h0, weight_hh):
    """Adds h_{t-1} @ W_hh^T to the `[time*batch, gates]` pre-activations `pre`.

    `output` is the kernel's `[time, batch, directions*width]` output; h_{t-1} of every
    position is read from it in place (a strided view, no copy). For the reverse
    direction the previous step of position t is t+1, and a sequence of length n
    starts at position n-1 from h0.
    """
    steps, batch = sequences.steps, sequences.batch
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
        columns = torch.arange(batch, device=h0.device)
        pre.index_add_(0, (sequences.lengths - 1) * batch + columns, h0 @ weight_t)


def _recompute_gates(mode, sequences, layer_input, output, weights, h0, c0, direction):
    """Returns `(cell, gates)` of one layer and direction, time-major.

    Every gate pre-activation is one matrix product over all timesteps, since the
    kernel already gave h_{t-1} for every t.
    """
    if mode in ("RNN_TANH", "RNN_RELU"):
        return None, {}
    steps, batch, features = layer_input.shape
    weight_ih, weight_hh = weights[0], weights[1]
    width = weight_hh.shape[1]
    inputs = layer_input.reshape(steps * batch, features)
    if len(weights) >= 4:
        bias_ih, bias_hh = weights[2], weights[3]
    else:
        bias_ih = bias_hh = None
    if mode == "LSTM":
        bias = bias_ih + bias_hh if bias_ih is not None else None
        pre = _linear(inputs, weight_ih, bias)
        _add_recurrent_product(pre, sequences, output, direction, width, h0, weight_hh)
        pre = pre.view(steps, batch, -1)
        size = pre.shape[-1] // 4
        candidate = pre[..., 2 * size : 3 * size]
        candidate.mul_(2)
        pre.sigmoid_()
        _tanh_from_sigmoid_(candidate)
        input_gate, forget, candidate, output_gate = pre.split(size, dim=2)
        cell = _cell_states(sequences, input_gate, forget, candidate, c0, direction)
        gates = {
            "input": input_gate,
            "forget": forget,
            "candidate": candidate,
            "output": output_gate,
        }
        return cell, gates
    # GRU: r and z see the sum of both products, n sees r * (W_hn h + b_hn).
    pre_input = _linear(inputs, weight_ih, bias_ih).view(steps, batch, -1)
    if bias_hh is None:
        pre_hidden = pre_input.new_zeros(steps * batch, pre_input.shape[-1])
    else:
        pre_hidden = bias_hh.expand(steps * batch, -1).clone()
    _add_recurrent_product(pre_hidden, sequences, output, direction, width, h0, weight_hh)
    pre_hidden = pre_hidden.view(steps, batch, -1)
    size = pre_input.shape[-1] // 3
    reset_update = pre_input[..., : 2 * size]
    reset_update.add_(pre_hidden[..., : 2 * size]).sigmoid_()
    reset = pre_input[..., :size]
    new = pre_input[..., 2 * size :]
    new.addcmul_(reset, pre_hidden[..., 2 * size :]).mul_(2).sigmoid_()
    _tanh_from_sigmoid_(new)
    gates = {"reset": reset, "update": pre_input[..., size : 2 * size], "new": new}
    return None, gates


def _tanh_from_sigmoid_(values):
    """In place: turns sigmoid(2x) into tanh(x) = 2 sigmoid(2x) - 1.

    On CPU torch's tanh costs several times its sigmoid; doubling is exact, and the
    result is within a few ulp of 1 in absolute terms, as tight as the kernels'
    own activation functions agree with each other.
    """
    values.mul_(2).sub_(1)


def _linear(inputs, weight, bias):
    if bias is None:
        return torch.mm(inputs, weight.t())
    return torch.addmm(bias, inputs, weight.t())


def _cell_states(sequences, input_gate, forget, candidate, c0, direction):
    """Solves c_t = f_t * c_{t-1} + i_t * g_t for all t (time-major, processing order)."""
    steps, batch, size = forget.shape
    chunk = _scan_chunk(steps, batch * size, forget.device.type)
    padded_steps = -(-steps // chunk) * chunk
    # u holds i*g with c_0 folded into each sequence's first step; it becomes c.
    cell = forget.new_empty(padded_steps, batch, size)
    torch.mul(input_gate, candidate, out=cell[:steps])
    cell[steps:] = 0
    if direction == 0:
        cell[0].addcmul_(forget[0], c0)
        factor = forget
    elif sequences.all_full:
        cell[steps - 1].addcmul_(forget[steps - 1], c0)
        factor = forget
    else:
        # Each sequence starts at its own last position: cut the chain there so the
        # padding after it does not flow in.
        first = sequences.lengths - 1
        columns = torch.arange(batch, device=c0.device)
        cell[first, columns] += forget[first, columns] * c0
        factor = forget.clone()
        factor[first, columns] = 0
    _linear_scan(cell, factor, steps, chunk, reverse=direction == 1)
    return cell[:steps]


def _scan_chunk(steps, width, device_type="cpu"):
    """Chooses the chunk length of `_linear_scan` by a simple cost model.

    A chunk of K steps costs about 4*log2(K) full-size elementwise operations, then
    steps/K small sequential ones; K=1 is the plain sequential loop.
    """
    op_seconds, element_seconds = _SCAN_COSTS.get(device_type, _SCAN_COSTS["cuda"])
    best, best_cost = 1, steps * (op_seconds + width * element_seconds)
    chunk = 2
    while chunk <= max(steps, 2) and chunk <= 256:
        levels = math.ceil(math.log2(chunk))
        padded = -(-steps // chunk) * chunk
        full = op_seconds + padded * width * element_seconds
        cost = (4 * levels + 3) * full + (padded // chunk) * (
            op_seconds + width * element_seconds
        )
        if cost < best_cost:
            best, best_cost = chunk, cost
        chunk *= 2
    return best


def _linear_scan(values, factors, steps, chunk, reverse):
    """In place: values[t] += factors[t] * values[t-1] (t+1 when reverse), in order.

    `values` is `[padded_steps, ...]` with padded_steps a multiple of `chunk`;
    `factors` covers the first `steps`. Within chunks a Hillis-Steele scan does the
    work in log2(chunk) vectorized rounds (products of factors only: no division, no
    logarithms, so as exact as the sequential loop); chunk ends are then carried
    across chunks sequentially.
    """
    if chunk == 1:
        _sequential_scan(values, factors, steps, reverse)
        return
    padded_steps = values.shape[0]
    trailing = values.shape[1:]
    products = values.new_zeros(values.shape)
    products[:steps] = factors
    values = values.view(padded_steps // chunk, chunk, *trailing)
    products = products.view(padded_steps // chunk, chunk, *trailing)
    shift = 1
    while shift < chunk:
        if reverse:
            head, tail = slice(None, -shift), slice(shift, None)
        else:
            head, tail = slice(shift, None), slice(None, -shift)
        carried = products[:, head] * values[:, tail]
        values[:, head] += carried
        products[:, head] = products[:, head] * products[:, tail]
        shift *= 2
    chunks = values.shape[0]
    if chunks == 1:
        return
    # Carry the boundary value of each chunk into the next one.
    if reverse:
        for index in range(chunks - 2, -1, -1):
            values[index, 0].addcmul_(products[index, 0], values[index + 1, 0])
        carried = products[:-1, 1:] * values[1:, :1]
        values[:-1, 1:] += carried
    else:
        for index in range(1, chunks):
            values[index, -1].addcmul_(products[index, -1], values[index - 1, -1])
        carried = products[1:, :-1] * values[:-1, -1:]
        values[1:, :-1] += carried


def _sequential_scan(values, factors, steps, reverse):
    value_steps = values.unbind(0)
    factor_steps = factors.unbind(0)
    if reverse:
        for t in range(steps - 2, -1, -1):
            value_steps[t].addcmul_(factor_steps[t], value_steps[t + 1])
    else:
        for t in range(1, steps):
            value_steps[t].addcmul_(factor_steps[t], value_steps[t - 1])


# Tests force one path or the other through this (None: the rules decide).
_LOOP_CHOICE = None

# How one capture runs: the compiled LSTM loop ("native") or kernel + gates (False),
# and the number of CPU threads (None: the caller's).
_Plan = collections.namedtuple("_Plan", ["loop", "threads"])


def _candidate_plans(module, sequences):
    """The plans worth timing for this module and input; the first is the default.

    On a CPU with several threads, one thread is a candidate too: on a busy
    machine every parallel region can stall for a scheduler time slice waiting for
    its second thread (measured here: the same 2-thread forward taking 2 ms or 4 s
    depending on the load).
    """
    native = _native_is_possible(module, sequences)
    if _LOOP_CHOICE is not None:
        return [_Plan("native" if _LOOP_CHOICE and native else False, None)]
    loop = "native" if native else False
    plans = [_Plan(loop, None)]
    if sequences.padded.device.type == "cpu" and torch.get_num_threads() > 1:
        plans.append(_Plan(loop, 1))
    return plans


class _PathTuner:
    """Times the candidate plans on the first calls of each shape, keeps the fastest.

    The first calls try each plan in turn, `trials_per_plan` times; from then on
    the plan with the smallest median time is used, as cuDNN's benchmark mode does.
    The median, because on a busy machine a multi-threaded plan can be fast in one
    call and stall for a scheduler time slice in the next. All plans give the same
    states up to float rounding.
    """

    trials_per_plan = 3
    max_shapes = 256

    def __init__(self):
        self._times = collections.OrderedDict()

    @staticmethod
    def _key(module, sequences):
        return (
            module.mode,
            module.weight_ih_l0.dtype,
            sequences.steps,
            sequences.batch,
            sequences.all_full,
            module.input_size,
            module.hidden_size,
            module.proj_size,
            module.num_layers,
            module.bidirectional,
            module.bias,
            torch.get_num_threads(),
        )

    def choose(self, module, sequences, plans):
        if len(plans) == 1:
            return plans[0]
        times = self._times.get(self._key(module, sequences), {})
        for _ in range(self.trials_per_plan):
            for plan in plans:
                if len(times.get(plan, ())) <= _:
                    return plan
        return min(plans, key=lambda plan: statistics.median(times[plan]))

    def record(self, module, sequences, plan, seconds):
        key = self._key(module, sequences)
        times = self._times.setdefault(key, {})
        self._times.move_to_end(key)
        samples = times.setdefault(plan, [])
        if len(samples) < self.trials_per_plan:
            samples.append(seconds)
        while len(self._times) > self.max_shapes:
            self._times.popitem(last=False)


_PATH_TUNER = _PathTuner()


def _finish_layer(sequences, hidden, cell, gates):
    """Zeros positions beyond each length and returns batch-first `LayerStates`."""
    if not sequences.all_full:
        invalid = (
            torch.arange(sequences.steps, device=sequences.lengths.device).unsqueeze(1)
            >= sequences.lengths.unsqueeze(0)
        ).unsqueeze(2)
        # In place: these are capture's own buffers, not the user's.
        if cell is not None:
            cell.masked_fill_(invalid, 0)
        for gate in gates.values():
            gate.masked_fill_(invalid, 0)
    order = sequences.original_order
    return LayerStates(
        hidden=order(hidden),
        cell=order(cell) if cell is not None else None,
        gates={name: order(gate) for name, gate in gates.items()},
    )


# ----------------------------------------------------------------------------
# The compiled single-pass LSTM (CPU, float32/float64), built with numba on first use.

_NATIVE_DTYPES = (torch.float32, torch.float64)
# CBLAS enums (mkl_cblas.h).
_CBLAS_ROW_MAJOR, _CBLAS_NO_TRANS, _CBLAS_TRANS, _CBLAS_PACKED, _CBLAS_B_MATRIX = (
    101, 111, 112, 151, 162)


class _Mkl:
    """MKL's packed-weight sgemm and vector tanh, as linked into torch's CPU library.

    A recurrent step multiplies a few rows by the same weights T times; MKL's
    `cblas_sgemm_pack` lays the weights out once for its kernels, and
    `cblas_sgemm_compute` then runs at the speed of the module's own oneDNN kernel
    (measured: 11 ms for 256 steps of [32, 256] x [256, 1024] on 2 cores, vs 16 ms
    for torch's addmm and more for numba's np.dot). Builds of torch without MKL
    (other platforms) lack the symbols: `load` gives None and the loop uses np.dot
    and its own sigmoid.
    """

    def __init__(self, library):
        import ctypes

        self._get_size = library.cblas_sgemm_pack_get_size
        self._get_size.restype = ctypes.c_size_t
        self._get_size.argtypes = [ctypes.c_int] * 4
        self._pack = library.cblas_sgemm_pack
        self._pack.restype = None
        self._pack.argtypes = [ctypes.c_int] * 6 + [
            ctypes.c_float, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
        self.address = ctypes.cast(library.cblas_sgemm_compute, ctypes.c_void_p).value
        # MKL's vector tanh (VML), for every activation of a step in one call: it
        # uses AVX-512 and torch's threads, where the loop's own sigmoid ran at half
        # the speed on one thread (0.25 against 0.55 ns a value).
        self.tanh_address = ctypes.cast(library.vsTanh, ctypes.c_void_p).value

    @classmethod
    def load(cls):
        import ctypes
        import os

        path = os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so")
        try:
            return cls(ctypes.CDLL(path))
        except (OSError, AttributeError):
            return None

    def pack(self, weight, rows):
        """`weight.t()` ([depth, columns] for `weight` [columns, depth]) packed for
        products with `rows` rows, as a uint8 tensor that must outlive its use."""
        columns, depth = weight.shape
        weight = weight.contiguous()
        size = self._get_size(_CBLAS_B_MATRIX, rows, columns, depth)
        packed = torch.empty(size, dtype=torch.uint8)
        self._pack(_CBLAS_ROW_MAJOR, _CBLAS_B_MATRIX, _CBLAS_TRANS, rows, columns, depth,
                   1.0, weight.data_ptr(), depth, packed.data_ptr())
        return packed


_MKL = None


def _mkl():
    global _MKL
    if _MKL is None:
        _MKL = _Mkl.load() or False
    return _MKL or None


# None: not tried yet; False: numba (or its BLAS) unavailable; else the kernel.
_NATIVE_KERNEL = None


def _native_is_possible(module, sequences):
    """Whether the compiled loop handles this module and input."""
    weight = module.weight_ih_l0
    return (
        module.mode == "LSTM"
        and weight.device.type == "cpu"
        and weight.dtype in _NATIVE_DTYPES
        and _native_kernel() is not None
    )


def _native_kernel():
    global _NATIVE_KERNEL
    if _NATIVE_KERNEL is None:
        try:
            with warnings.catch_warnings():
                # numba warns (and compiles anyway) where its cache dir is read-only.
                warnings.simplefilter("ignore")
                _NATIVE_KERNEL = _build_native_kernel()
        except Exception:  # numba (or scipy, for its BLAS) missing or broken.
            _NATIVE_KERNEL = False
    return _NATIVE_KERNEL or None


def _build_native_kernel():
    """Compiles (or loads from numba's cache) the single-pass LSTM direction loop."""
    import math

    import numba
    import numpy as np
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic, overload

    @intrinsic
    def bits_to_float32(typingctx, bits):
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.FloatType())

        return types.float32(types.int32), codegen

    @intrinsic
    def packed_sgemm(typingctx, address, rows, columns, depth, a, lda, packed, c, ldc):
        """C[rows, columns] = A[rows, depth] @ B, B packed by `cblas_sgemm_pack`.

        A call through the address of MKL's `cblas_sgemm_compute`, passed at run
        time, so that numba can cache the compiled loop across processes.
        """
        def codegen(context, builder, signature, args):
            args = [context.cast(builder, value, type_, types.intp)
                    for value, type_ in zip(args, signature.args)]
            address, rows, columns, depth, a, lda, packed, c, ldc = args
            i32, pointer = ir.IntType(32), ir.IntType(8).as_pointer()
            function_type = ir.FunctionType(
                ir.VoidType(),
                [i32] * 6 + [pointer, i32, pointer, i32, ir.FloatType(), pointer, i32],
            )
            function = builder.inttoptr(address, function_type.as_pointer())
            enum = lambda value: ir.Constant(i32, value)
            size = lambda value: builder.trunc(value, i32)
            builder.call(function, [
                enum(_CBLAS_ROW_MAJOR), enum(_CBLAS_NO_TRANS), enum(_CBLAS_PACKED),
                size(rows), size(columns), size(depth),
                builder.inttoptr(a, pointer), size(lda),
                builder.inttoptr(packed, pointer), size(columns),
                ir.Constant(ir.FloatType(), 0.0),
                builder.inttoptr(c, pointer), size(ldc),
            ])
            return context.get_dummy_value()

        return types.void(address, rows, columns, depth, a, lda, packed, c, ldc), codegen

    @intrinsic
    def vector_tanh(typingctx, address, count, a, r):
        """r[:count] = tanh(a[:count]) through the address of MKL's `vsTanh`."""
        def codegen(context, builder, signature, args):
            args = [context.cast(builder, value, type_, types.intp)
                    for value, type_ in zip(args, signature.args)]
            address, count, a, r = args
            pointer = ir.IntType(8).as_pointer()
            function_type = ir.FunctionType(
                ir.VoidType(), [ir.IntType(32), pointer, pointer])
            function = builder.inttoptr(address, function_type.as_pointer())
            builder.call(function, [builder.trunc(count, ir.IntType(32)),
                                    builder.inttoptr(a, pointer), builder.inttoptr(r, pointer)])
            return context.get_dummy_value()

        return types.void(address, count, a, r), codegen

    # The loop calls these stubs, never the intrinsics themselves: numba keys its
    # disk cache on the loop's closure, and an intrinsic pickles with a fresh uuid
    # in every process (a cache miss and a 4 s compile per process, measured).
    def matmul(address, rows, columns, depth, a, lda, packed, c, ldc):
        raise NotImplementedError

    def tanh_all(address, count, a, r):
        raise NotImplementedError

    @overload(tanh_all, inline="always")
    def tanh_all_overload(address, count, a, r):
        def call(address, count, a, r):
            vector_tanh(address, count, a, r)

        return call

    @overload(matmul, inline="always")
    def matmul_overload(address, rows, columns, depth, a, lda, packed, c, ldc):
        def call(address, rows, columns, depth, a, lda, packed, c, ldc):
            packed_sgemm(address, rows, columns, depth, a, lda, packed, c, ldc)

        return call

    def sigmoid(x):  # Typed per dtype below; never called from Python.
        raise NotImplementedError

    @overload(sigmoid, inline="always")
    def sigmoid_overload(x):
        if x == types.float32:
            # exp by Cody-Waite reduction and a degree-6 polynomial (Cephes expf,
            # within 2 ulp): unlike libm's expf, LLVM vectorizes it. NaN stays NaN
            # (min and max keep their first argument when a comparison fails, as
            # in Python); +-inf saturate. np.floor, not math.floor: the latter goes
            # through int64 and made the whole sigmoid 1.8x slower.
            def sigmoid32(x):
                z = -x
                z = max(min(z, np.float32(88.0)), np.float32(-87.0))
                n = np.floor(z * np.float32(1.44269504) + np.float32(0.5))
                r = z - n * np.float32(0.693359375)
                r = r - n * np.float32(-2.12194440e-4)
                p = np.float32(1.9875691500e-4)
                p = p * r + np.float32(1.3981999507e-3)
                p = p * r + np.float32(8.3334519073e-3)
                p = p * r + np.float32(4.1665795894e-2)
                p = p * r + np.float32(1.6666665459e-1)
                p = p * r + np.float32(5.0000001201e-1)
                p = p * r * r + r + np.float32(1.0)
                scale = bits_to_float32((np.int32(n) + np.int32(127)) << np.int32(23))
                return np.float32(1.0) / (np.float32(1.0) + p * scale)

            return sigmoid32

        def sigmoid64(x):
            return 1.0 / (1.0 + math.exp(-x))

        return sigmoid64

    @numba.njit(cache=True, nogil=True, error_model="numpy")
    def lstm_direction(
        inputs, weight_t, projection_t, h0, c0, lengths, reverse,
        gates, hidden, cell, gemm, tanh, packed, packed_projection,
    ):
        """One LSTM direction over `inputs` [T, B, I].

        Each step is one matrix product of [x_t, h_{t-1}, 1] with `weight_t`
        ([I + out + 1, 4H]: W_ih, W_hh and the bias stacked, transposed), then the
        activations; the gates go to `gates` [T, B, 4H], and the states to
        `hidden` [T, B, out] and `cell` [T, B, H], at the valid positions only.

        With MKL (`gemm` and `tanh` its function addresses; float32) the product is
        its packed sgemm and every activation of a step is one call of its vector
        tanh: the i, f and o rows of the weights and bias come halved (exact), and
        sigmoid(x) = (1 + tanh(x / 2)) / 2. Without (float64), np.dot and the
        loop's own sigmoid: the g rows come doubled, tanh(x) = 2 sigmoid(2x) - 1.
        """
        features = inputs.shape[2]
        width = h0.shape[1]
        depth = features + width + 1
        columns = gates.shape[2]
        size = columns // 4
        rows = h0.shape[0]
        projected = projection_t.shape[0] > 0
        one = np.ones(1, gates.dtype)[0]
        two = one + one
        half = one / two
        # [x_t, h_{t-1}, 1] of every row: h_{t-1} is written in place for the next
        # step; the 1 brings in the bias.
        joined = np.empty((rows, depth), gates.dtype)
        joined[:, depth - 1] = one
        state = joined[:, features : features + width]
        cbuf = np.empty((rows, size), gates.dtype)
        tanh_c = np.empty((rows, size), gates.dtype)
        product = np.empty((rows, columns), gates.dtype)
        for b in range(rows):
            for j in range(width):
                state[b, j] = h0[b, j]
            for j in range(size):
                cbuf[b, j] = c0[b, j]
        longest = 0
        for b in range(rows):
            longest = max(longest, lengths[b])
        # The input position of each row at this step; -1 past its sequence's end.
        position = np.empty(rows, np.int64)
        for k in range(longest):
            for b in range(rows):
                if k >= lengths[b]:
                    position[b] = -1
                else:
                    position[b] = lengths[b] - 1 - k if reverse else k
                    x = inputs[position[b], b]
                    for j in range(features):
                        joined[b, j] = x[j]
            # Rows past their sequence's end are computed too, never stored.
            if gemm:
                matmul(gemm, rows, columns, depth, joined.ctypes.data, depth,
                       packed.ctypes.data, product.ctypes.data, columns)
                tanh_all(tanh, rows * columns, product.ctypes.data, product.ctypes.data)
            else:
                np.dot(joined, weight_t, product)
            for b in range(rows):
                t = position[b]
                if t < 0:
                    continue
                p = gates[t, b]
                r = product[b]
                # Simple loops over contiguous rows, so that LLVM vectorizes them.
                if gemm:
                    for j in range(columns):
                        p[j] = half * r[j] + half
                    for j in range(2 * size, 3 * size):
                        p[j] = r[j]
                else:
                    for j in range(columns):
                        p[j] = sigmoid(r[j])
                    for j in range(2 * size, 3 * size):
                        p[j] = two * p[j] - one
                c_prev = cbuf[b]
                for j in range(size):
                    c_prev[j] = p[size + j] * c_prev[j] + p[j] * p[2 * size + j]
                c_out = cell[t, b]
                for j in range(size):
                    c_out[j] = c_prev[j]
            if gemm:
                tanh_all(tanh, rows * size, cbuf.ctypes.data, tanh_c.ctypes.data)
            else:
                for b in range(rows):
                    c_prev = cbuf[b]
                    tc = tanh_c[b]
                    for j in range(size):
                        tc[j] = two * sigmoid(two * c_prev[j]) - one
            for b in range(rows):
                t = position[b]
                if t < 0:
                    continue
                o_gate = gates[t, b][3 * size :]
                h_new = tanh_c[b] if projected else state[b]
                tc = tanh_c[b]
                for j in range(size):
                    h_new[j] = o_gate[j] * tc[j]
            if projected:
                # Rows past their sequence's end get garbage, never read again.
                if gemm:
                    matmul(gemm, rows, width, size, tanh_c.ctypes.data, size,
                           packed_projection.ctypes.data, state.ctypes.data, depth)
                else:
                    state[:, :] = np.dot(tanh_c, projection_t)
            for b in range(rows):
                t = position[b]
                if t >= 0:
                    h_out = hidden[t, b]
                    for j in range(width):
                        h_out[j] = state[b, j]

    return lstm_direction


def _native_lstm_layer(layer_input, weights, h0, c0, sequences, hidden_out):
    """One LSTM layer (all directions) through the compiled loop.

    Returns the layer output `[time, batch, directions*out]` (zero beyond each
    length) and, per direction, `(hidden, cell, gates)` time-major.

    One thread runs the loop; MKL spreads each step's product over torch's
    threads. Threads of our own (batch halves, directions) gained nothing: MKL's
    packed products from two threads ran one after the other (measured: 22 ms
    alone, 46 ms for two at once), and a thread that has called MKL slows torch's
    OpenMP for as long as it lives (the module's forward ran 20x slower).
    """
    kernel = _native_kernel()
    steps, batch, _ = layer_input.shape
    # Zeros where some positions are past a sequence's end (the loop skips them).
    new = functools.partial(_new_buffer, dtype=layer_input.dtype, zero=not sequences.all_full)
    output = new(steps, batch, len(weights) * hidden_out)
    lengths = sequences.lengths.numpy()
    inputs = layer_input.contiguous().numpy()
    results = []
    # MKL's int arguments are 32-bit: a step's rows x gate columns must fit.
    fits = batch * weights[0][0].shape[0] < 2**31  # W_ih: [4H, features]
    mkl = _mkl() if layer_input.dtype == torch.float32 and fits else None
    if mkl is None:
        _single_threaded_blas()  # np.dot's BLAS does the products
    for direction, weight in enumerate(weights):
        size = weight[0].shape[0] // 4
        # Exact scalings of the gate rows, for activations from one function (see
        # `lstm_direction`): halved sigmoid rows with MKL's tanh, else doubled g rows.
        scale = weight[0].new_full((4 * size, 1), 0.5 if mkl else 1.0)
        scale[2 * size : 3 * size] = 1 if mkl else 2
        if len(weight) >= 4:
            bias = (weight[2] + weight[3]).unsqueeze(1)
        else:
            bias = weight[0].new_zeros(4 * size, 1)
        joined_weight = torch.cat([weight[0], weight[1], bias], dim=1) * scale
        # W_hr [out, H]; without one, an empty [out, 0] (its transpose has no rows).
        projection = weight[-1] if len(weight) in (3, 5) else joined_weight.new_empty(hidden_out, 0)
        hidden = output[..., direction * hidden_out : (direction + 1) * hidden_out]
        gates = new(steps, batch, 4 * size)
        cell = new(steps, batch, size)
        kernel(
            inputs,
            joined_weight.t().contiguous().numpy(),
            projection.t().contiguous().numpy(),
            h0[direction].contiguous().numpy(),
            c0[direction].contiguous().numpy(),
            lengths,
            direction == 1,
            gates.numpy(),
            hidden.numpy(),
            cell.numpy(),
            *_mkl_arguments(mkl, joined_weight, projection, batch),
        )
        gates = {
            "input": gates[..., :size],
            "forget": gates[..., size : 2 * size],
            "candidate": gates[..., 2 * size : 3 * size],
            "output": gates[..., 3 * size :],
        }
        results.append((hidden, cell, gates))
    return output, results


def _new_buffer(*shape, dtype, zero):
    """A CPU tensor for the compiled loop to write (zero-filled if `zero`); large
    ones on huge pages, reused once nothing refers to them any more.

    A capture writes its states into fresh memory (about 100 MB for 32 x 256 steps
    of 256 units, 2 layers), which the OS zeroes page by page on first touch. On
    4 KB pages that took 30-40 ms, a third of the capture; on transparent huge
    pages (2 MB, asked for with madvise where the OS leaves them to the program)
    about 11 ms; in a mapping of an earlier capture whose states are gone (the
    usual case: capture, write, drop), nothing.
    """
    count = math.prod(shape)
    nbytes = count * torch.empty(0, dtype=dtype).element_size()
    if nbytes < _HUGE_PAGE_MIN_BYTES or not hasattr(mmap, "MAP_ANONYMOUS"):  # Windows
        return (torch.zeros if zero else torch.empty)(shape, dtype=dtype)
    memory, fresh = _MAPPINGS.take(nbytes)
    # frombuffer keeps `memory` alive as long as the tensor (and its views) live.
    tensor = torch.frombuffer(memory, dtype=dtype, count=count).view(shape)
    if zero and not fresh:
        tensor.zero_()
    return tensor


class _Mappings:
    """Anonymous huge-page mappings for state buffers, kept for reuse.

    A mapping is handed out again once no tensor refers to it (its reference count
    is back to this pool's own), so a capture whose states were dropped costs the
    next one no page faults. Free mappings beyond `max_bytes` are unmapped, oldest
    first, so the pool never holds more than that of memory nobody uses.
    """

    def __init__(self, max_bytes):
        self.max_bytes = max_bytes
        self._mappings = []  # oldest first
        self._lock = threading.Lock()

    def _unused(self, index):
        # References: this list's, and getrefcount's argument.
        return sys.getrefcount(self._mappings[index]) <= 2

    def take(self, nbytes):
        """Returns `(mapping, fresh)`: a mapping of `nbytes` bytes, and whether it is
        new (zero-filled) rather than reused (holding an earlier capture's states)."""
        with self._lock:
            for index in range(len(self._mappings)):
                if len(self._mappings[index]) == nbytes and self._unused(index):
                    memory = self._mappings.pop(index)
                    self._mappings.append(memory)
                    return memory, False
            unused = sum(len(m) for i, m in enumerate(self._mappings) if self._unused(i))
            index = 0
            while unused + nbytes > self.max_bytes and index < len(self._mappings):
                if self._unused(index):
                    unused -= len(self._mappings.pop(index))
                else:
                    index += 1
            memory = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            with contextlib.suppress(AttributeError, OSError):  # No madvise or no THP.
                memory.madvise(mmap.MADV_HUGEPAGE)
            self._mappings.append(memory)
            return memory, True


# Below a few huge pages, the allocator's recycled memory is cheaper than a mapping.
_HUGE_PAGE_MIN_BYTES = 8 << 20
_MAPPINGS = _Mappings(max_bytes=512 << 20)


def _mkl_arguments(mkl, weight, projection, rows):
    """The compiled loop's MKL arguments: the addresses of its sgemm and tanh and
    the packed transposed weights, or (0, 0, empty, empty) for np.dot."""
    empty = _EMPTY_BYTES.numpy()
    if mkl is None:
        return 0, 0, empty, empty
    packed_projection = mkl.pack(projection, rows).numpy() if projection.shape[1] else empty
    return mkl.address, mkl.tanh_address, mkl.pack(weight, rows).numpy(), packed_projection


_EMPTY_BYTES = torch.empty(0, dtype=torch.uint8)


_BLAS_PINNED = False


def _single_threaded_blas():
    """Sets scipy's OpenBLAS (the one numba's np.dot calls) to one thread, once.

    Only float64 captures (and torch builds without MKL) use it. OpenBLAS's own
    threads spin between calls and fight torch's OpenMP threads for the cores;
    changing their count back and forth wakes them to spin again. Measured on 2
    cores, either made the module's forward and everything else in the process
    erratic and up to 1.5x slower. So scipy's BLAS stays single-threaded in this
    process from the first compiled capture on (numpy's BLAS is left alone).
    """
    global _BLAS_PINNED
    if _BLAS_PINNED:
        return
    _BLAS_PINNED = True
    try:
        import threadpoolctl

        for lib in threadpoolctl.ThreadpoolController().lib_controllers:
            if lib.internal_api == "openblas" and "numpy" not in lib.filepath:
                lib.set_num_threads(1)
    except Exception:  # threadpoolctl missing: leave BLAS threads alone.
        pass
