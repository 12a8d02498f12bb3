"""Exact per-timestep states of PyTorch recurrent layers, computed with torch alone.

`nn.LSTM`, `nn.GRU` and `nn.RNN` return the hidden state of every timestep of the
last layer only. `capture` returns every layer's hidden state, LSTM cell state and
gate activations at every timestep, equal to what the module computes:

1. Each layer runs through the module's own fused kernel (`torch._VF.lstm` and
   friends, one layer at a time, dropout off). That gives the hidden state of every
   timestep of that layer exactly as the module computes it (`layers`).
2. Knowing h_{t-1} for every t, all gate pre-activations of a layer are one batched
   matrix product; nothing about them is sequential (`cells`).
3. An LSTM's cell state c_t = f_t * c_{t-1} + i_t * g_t is still a recurrence, but
   an elementwise linear one, solved one cheap step at a time, or on a GPU in
   chunked vectorized rounds (`scan`).

So a capture costs the module's forward plus about as much matrix work again, on
CPU and GPU alike; `benchmarks/capture.py` measures it. It changes nothing outside
the call: no thread counts, no environment, no caches.

Modules: `inputs` checks and normalizes the arguments, `layers` runs the kernel and
assembles the states, `cells` recomputes the gates, `scan` solves the cell-state
recurrence, `recorder` captures real forward calls through a hook.

This package is not called `capture`: a subpackage of that name would shadow the
function `tb_lstm_states.capture` as soon as anything imported it.
"""

from tb_lstm_states.capturing.layers import capture
from tb_lstm_states.capturing.recorder import Recorder, record

__all__ = ["Recorder", "capture", "record"]
