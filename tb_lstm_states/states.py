"""The containers for captured recurrent states.

`RecurrentStates` is what `capture` returns and what `read_states` yields. It holds
torch tensors when it comes from a model and numpy arrays when it comes from a logdir;
nothing in this module imports torch.
"""

import dataclasses
from typing import Any, Dict, List, Optional, Tuple

KINDS = ("lstm", "gru", "rnn")

# Activated gates, in the order they are stored.
GATE_NAMES: Dict[str, Tuple[str, ...]] = {
    "lstm": ("input", "forget", "candidate", "output"),
    "gru": ("reset", "update", "new"),
    "rnn": (),
}


def array_kinds(kind: str) -> Tuple[str, ...]:
    """Names of the arrays each layer of a `kind` network carries, in stored order."""
    state = ("cell", "hidden") if kind == "lstm" else ("hidden",)
    return state + GATE_NAMES[kind]


@dataclasses.dataclass
class LayerStates:
    """The states of one direction of one layer, batch-first.

    Attributes:
      hidden: `[batch, time, hidden_out]`, after the projection when `proj_size > 0`.
      cell: `[batch, time, hidden]` for LSTM, else None.
      gates: activated gates by name (see `GATE_NAMES`), each `[batch, time, hidden]`.
      grads: empty unless captured with a loss: `"hidden"`, dL/dh_t `[batch, time,
        hidden_out]`, and for LSTM `"cell"`, dL/dc_t `[batch, time, hidden]`; each the
        total derivative through later timesteps, the other direction and the upper
        layers, zero past each sequence's length.
    """

    hidden: Any
    cell: Optional[Any] = None
    gates: Dict[str, Any] = dataclasses.field(default_factory=dict)
    grads: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def get(self, name: str) -> Any:
        """Returns the array called `name`: `hidden`, `cell` or a gate name."""
        if name == "hidden":
            return self.hidden
        if name == "cell" and self.cell is not None:
            return self.cell
        if name in self.gates:
            return self.gates[name]
        raise KeyError(name)


@dataclasses.dataclass
class RecurrentStates:
    """Per-timestep states of every layer and direction of a recurrent module.

    Attributes:
      kind: `"lstm"`, `"gru"` or `"rnn"`.
      layers: one `LayerStates` per (layer, direction), indexed
        `layer * num_directions + direction`, the order of the module's `h_n`.
      lengths: `[batch]` valid timesteps per sequence; positions at or beyond a
        sequence's length are zero in every array.
      num_directions: 2 for a bidirectional module, else 1.
    """

    kind: str
    layers: List[LayerStates]
    lengths: Any
    num_directions: int = 1

    @property
    def num_layers(self) -> int:
        return len(self.layers) // self.num_directions

    @property
    def batch_size(self) -> int:
        return int(self.layers[0].hidden.shape[0])

    @property
    def time_steps(self) -> int:
        return int(self.layers[0].hidden.shape[1])

    def layer(self, layer: int, direction: int = 0) -> LayerStates:
        """Returns the states of `layer` in `direction` (0 forward, 1 reverse)."""
        return self.layers[layer * self.num_directions + direction]
