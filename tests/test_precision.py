"""float16 and bfloat16 modules, and captures inside `autocast`: computed in float32,
stored as requested. On CUDA too when a GPU is present."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import tb_lstm_states as tls

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
# Elementwise tolerance against a module computing in that dtype: its values lie in
# [-1, 1] and round to 8 (bfloat16) or 11 (float16) significant bits at every step.
TOLERANCE = {torch.bfloat16: 3e-2, torch.float16: 4e-3}
MODULES = {
    "lstm": lambda: nn.LSTM(5, 8, num_layers=2, batch_first=True),
    "gru": lambda: nn.GRU(5, 8, num_layers=2, batch_first=True),
    "rnn": lambda: nn.RNN(5, 8, num_layers=2, batch_first=True),
}


def _model(kind, dtype, device):
    torch.manual_seed(0)
    module = MODULES[kind]().to(device=device, dtype=dtype).eval()
    return module, torch.randn(3, 40, 5, device=device).to(dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("kind", sorted(MODULES))
def test_low_precision_module_matches_its_output(kind, dtype, device):
    module, x = _model(kind, dtype, device)
    with torch.no_grad():
        output, h_n = module(x)
    states = tls.capture(module, x)
    last = states.layers[-1]
    assert last.hidden.dtype == torch.float32 and last.hidden.device == x.device
    tolerance = TOLERANCE[dtype]
    torch.testing.assert_close(last.hidden, output.float(), atol=tolerance, rtol=0)
    if kind == "lstm":
        h_n, c_n = h_n
        for layer in range(2):
            torch.testing.assert_close(
                states.layers[layer].cell[:, -1], c_n[layer].float(), atol=3 * tolerance, rtol=0
            )
    for layer in range(2):
        torch.testing.assert_close(
            states.layers[layer].hidden[:, -1], h_n[layer].float(), atol=tolerance, rtol=0
        )
    # Exactly the float32 capture of the same (exactly converted) weights and inputs.
    reference = tls.capture(module.float(), x.float())
    for got, expected in zip(states.layers, reference.layers):
        torch.testing.assert_close(got.hidden, expected.hidden, atol=0, rtol=0)
        for name, gate in expected.gates.items():
            torch.testing.assert_close(got.gates[name], gate, atol=0, rtol=0)


def test_bfloat16_lstm_last_layer_hidden_equals_module_output():
    """The must-hold: a bfloat16 2-layer LSTM, its last layer's hidden state."""
    module, x = _model("lstm", torch.bfloat16, "cpu")
    with torch.no_grad():
        output, _ = module(x)
    hidden = tls.capture(module, x).layers[1].hidden
    torch.testing.assert_close(hidden.to(torch.bfloat16), output, atol=3e-2, rtol=1.6e-2)


@pytest.mark.parametrize("device", DEVICES)
def test_low_precision_packed_and_hx(device):
    module, x = _model("lstm", torch.bfloat16, device)
    h0 = torch.randn(2, 3, 8, device=device).to(torch.bfloat16)
    c0 = torch.randn(2, 3, 8, device=device).to(torch.bfloat16)
    packed = pack_padded_sequence(
        x, torch.tensor([40, 25, 7]), batch_first=True, enforce_sorted=False
    )
    states = tls.capture(module, packed, hx=(h0, c0))
    reference = tls.capture(
        module.float(),
        pack_padded_sequence(
            x.float(), torch.tensor([40, 25, 7]), batch_first=True, enforce_sorted=False
        ),
        hx=(h0.float(), c0.float()),
    )
    torch.testing.assert_close(states.layers[1].cell, reference.layers[1].cell, atol=0, rtol=0)
    assert states.lengths.tolist() == [40, 25, 7]


@pytest.mark.parametrize("device", DEVICES)
def test_inside_autocast(device):
    autocast_dtype = torch.bfloat16 if device == "cpu" else torch.float16
    module, x = _model("lstm", torch.float32, device)
    outside = tls.capture(module, x)
    with torch.autocast(device, dtype=autocast_dtype):
        with torch.no_grad():
            output, _ = module(x)
        inside = tls.capture(module, x)
        # An earlier layer under autocast hands on low-precision activations.
        from_low = tls.capture(module, x.to(autocast_dtype))
        assert torch.is_autocast_enabled(device)  # left as it was
    torch.testing.assert_close(inside.layers[1].hidden, outside.layers[1].hidden, atol=0, rtol=0)
    torch.testing.assert_close(
        inside.layers[1].hidden, output.float(), atol=TOLERANCE[autocast_dtype] * 8, rtol=0
    )
    torch.testing.assert_close(
        from_low.layers[1].hidden,
        outside.layers[1].hidden,
        atol=TOLERANCE[autocast_dtype] * 8,
        rtol=0,
    )


def test_dtype_mismatch_outside_autocast_still_named():
    module, x = _model("lstm", torch.bfloat16, "cpu")
    with pytest.raises(TypeError, match=r"inputs has dtype torch.float32.*torch.bfloat16"):
        tls.capture(module, x.float())


@pytest.mark.parametrize("stored", ["float16", "float32"])
def test_written_as_requested(tmp_path, stored):
    module, x = _model("lstm", torch.bfloat16, "cpu")
    with tls.StateWriter(str(tmp_path)) as writer:
        writer.log("enc", module, x, 0, dtype=stored)
    (record,) = tls.read_states(str(tmp_path))
    cell = record.states.layers[1].cell
    assert cell.dtype == np.dtype(stored)
    expected = tls.capture(module, x).layers[1].cell.numpy().astype(stored)
    np.testing.assert_array_equal(cell, expected)
