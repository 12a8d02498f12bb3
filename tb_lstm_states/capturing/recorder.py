"""`record`: capturing the states of a module's real forward calls.

A forward hook sees every call of the module with its inputs and `hx`, and captures
the same call again with `capture`. The hook returns nothing, so the module's
outputs, and their gradients, are left as they are.
"""

from tb_lstm_states.capturing.inputs import check_module
from tb_lstm_states.capturing.layers import capture


class Recorder:
    """Collects the states of the forward calls of one module; see `record`.

    Attributes:
      module: the recorded module.
      states: one `RecurrentStates` per forward call made while recording.
    """

    def __init__(self, module):
        """Prepares to record `module` (an `nn.LSTM`, `nn.GRU` or `nn.RNN`).

        Raises:
          TypeError: `module` is not a supported recurrent module.
        """
        check_module(module)
        self.module = module
        self.states = []
        self._handle = None

    def start(self):
        """Starts recording (`record` does this on entering its block).

        Returns:
          This recorder.
        """
        if self._handle is None:
            self._handle = self.module.register_forward_hook(self._on_forward, with_kwargs=True)
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

    Raises:
      TypeError: `module` is not a supported recurrent module.
    """
    return Recorder(module)
