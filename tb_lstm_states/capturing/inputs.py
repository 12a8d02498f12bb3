"""Checking the arguments of `capture` and bringing them to one form.

Whatever the user passes (a time-major or batch-first tensor, an unbatched one, a
`PackedSequence` sorted or not, an `hx` or none) becomes a time-major padded
tensor, per-sequence lengths and initial states of the module's full shape. Every
mistake gets a TypeError or ValueError that names the problem and the fix.
"""

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from tb_lstm_states.distributed import check_not_wrapped

# nn.RNNBase.mode -> RecurrentStates.kind.
KIND_BY_MODE = {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "rnn", "RNN_RELU": "rnn"}


def check_module(module):
    """Returns the kind of a recurrent module.

    Args:
      module: what the user passed as the module to capture.

    Returns:
      `"lstm"`, `"gru"` or `"rnn"`.

    Raises:
      TypeError: `module` is not an `nn.LSTM`, `nn.GRU` or `nn.RNN`.
    """
    if isinstance(module, nn.RNNCellBase):
        raise TypeError(
            "capture() needs a whole-sequence module (nn.LSTM, nn.GRU or nn.RNN), got "
            "%s, which computes a single timestep. Use the sequence module instead: "
            "e.g. nn.LSTM(input_size, hidden_size) holds the same weights as an "
            "nn.LSTMCell (weight_ih_l0 = cell.weight_ih, and so on)." % type(module).__name__
        )
    if not isinstance(module, nn.RNNBase):
        check_not_wrapped(module, "capture()")  # DDP, torch.compile: names .module, ._orig_mod
    if not isinstance(module, nn.RNNBase) or module.mode not in KIND_BY_MODE:
        raise TypeError(
            "capture() needs an nn.LSTM, nn.GRU or nn.RNN module, got %s. Pass the "
            "recurrent layer itself (e.g. model.lstm), not the model around it."
            % type(module).__name__
        )
    return KIND_BY_MODE[module.mode]


def check_tensor(tensor, weight, name):
    """Checks that a tensor has the dtype and device of the module's weights.

    Args:
      tensor: the user's tensor.
      weight: one of the module's weights.
      name: how the error message calls the tensor.

    Raises:
      TypeError: the dtype or the device differ.
    """
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


class Sequences:
    """The input of a capture, normalized to time-major padded form.

    When the input is a PackedSequence, the batch is kept in its sorted order (the
    one the kernel works in) until `original_order` restores the user's order.

    Attributes:
      padded: `[time, batch, features]`, contiguous, zero beyond each length.
      lengths: `[batch]` int64 on the module's device, in working order.
      all_full: whether every sequence has the full length.
      unbatched: whether the input was an unbatched `[time, features]` tensor.
      batch_sizes: the PackedSequence's batch sizes (CPU), or None for a tensor.
      packed_data: the PackedSequence's data, or None for a tensor.
      packed_index: indices of the valid positions in `padded.view(time*batch, ...)`,
        in PackedSequence order; None for a tensor.
      sorted_indices: the PackedSequence's `sorted_indices` (None if sorted or a
        tensor).
      unsorted_indices: its inverse.
    """

    def __init__(self, module, inputs):
        """Checks and normalizes `inputs`.

        Args:
          module: the recurrent module (already checked by `check_module`).
          inputs: what the module's forward takes.

        Raises:
          TypeError: `inputs` is not a tensor or a PackedSequence, or has the wrong
            dtype or device.
          ValueError: `inputs` has a shape the module does not accept, or is empty.
        """
        weight = module.weight_ih_l0
        self.unsorted_indices = None
        self.sorted_indices = None
        self.unbatched = False
        self.batch_sizes = None
        self.packed_index = None
        self.packed_data = None
        if isinstance(inputs, PackedSequence):
            self._init_packed(module, inputs, weight)
        elif isinstance(inputs, torch.Tensor):
            self._init_tensor(module, inputs, weight)
        else:
            raise TypeError(
                "inputs must be a torch.Tensor or a PackedSequence, got %s." % type(inputs).__name__
            )
        if self.padded.shape[0] == 0 or self.padded.shape[1] == 0:
            raise ValueError(
                "inputs are empty (shape %s): capture needs at least one timestep and "
                "one sequence." % (tuple(self.padded.shape),)
            )

    def _init_packed(self, module, inputs, weight):
        data = inputs.data
        check_tensor(data, weight, "inputs.data")
        if data.dim() != 2:
            raise ValueError(
                "PackedSequence data must be 2-D [total_steps, features], got "
                "shape %s. Build it with torch.nn.utils.rnn.pack_padded_sequence "
                "or pack_sequence." % (tuple(data.shape),)
            )
        _check_features(module, data.shape[-1])
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
        self.all_full = bool((valid.sum(0) == steps).all()) if steps else True

    def _init_tensor(self, module, inputs, weight):
        check_tensor(inputs, weight, "inputs")
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
        _check_features(module, inputs.shape[-1])
        if inputs.dim() == 2:
            self.unbatched = True
            padded = inputs.unsqueeze(1)
        elif module.batch_first:
            padded = inputs.transpose(0, 1)
        else:
            padded = inputs
        self.padded = padded.contiguous()
        steps, batch = self.padded.shape[:2]
        self.lengths = torch.full((batch,), steps, dtype=torch.int64, device=inputs.device)
        self.all_full = True

    @property
    def steps(self):
        """The number of timesteps of the padded input."""
        return self.padded.shape[0]

    @property
    def batch(self):
        """The number of sequences."""
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


def initial_states(module, hx, sequences):
    """Checks `hx` and brings it to the full batched shape.

    Args:
      module: the recurrent module.
      hx: what the user passed: None, a tensor `h_0`, or `(h_0, c_0)` for an LSTM.
      sequences: the normalized input.

    Returns:
      `(h0, c0)`, each `[layers * directions, batch, size]` in the working order
      of `sequences`; zeros where `hx` is None; `c0` is None unless an LSTM.

    Raises:
      TypeError: `hx` has the wrong type, dtype or device.
      ValueError: `hx` has the wrong shape.
    """
    directions = 2 if module.bidirectional else 1
    rows = module.num_layers * directions
    batch = sequences.batch
    hidden_out = module.proj_size if module.proj_size > 0 else module.hidden_size
    weight = module.weight_ih_l0
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
        c0 = _check_state(hx[1], "c_0", (rows, batch, module.hidden_size), sequences, weight)
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
    check_tensor(state, weight, name)
    got = tuple(state.shape)
    if sequences.unbatched:
        wanted = (expected[0], expected[2])
        if got != wanted:
            raise ValueError(
                "%s has shape %s but the module expects %s [num_layers * "
                "num_directions, hidden] for unbatched input: build it with that "
                "shape (or pass hx=None for zeros)." % (name, got, wanted)
            )
        return state.unsqueeze(1)
    if got != tuple(expected):
        raise ValueError(
            "%s has shape %s but the module expects %s [num_layers * num_directions, "
            "batch, hidden] (always this layout, even with batch_first=True): build "
            "it with that shape (or pass hx=None for zeros)." % (name, got, tuple(expected))
        )
    return state
