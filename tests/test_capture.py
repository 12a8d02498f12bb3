"""Tests of `tb_lstm_states.capturing`: exactness against the modules themselves.

The core test runs a seeded random matrix of module and input configurations and
checks every captured array against what the module itself returns (its output at
every timestep, h_n, c_n) plus the LSTM identity h = o * tanh(c). The same tests run
on CUDA when it is available.
"""

import os
import pathlib
import random
import re
import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import tb_lstm_states as tls
from tb_lstm_states.capturing import cells, scan
from tb_lstm_states.states import GATE_NAMES

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}
MODULES = {
    "lstm": lambda **kw: nn.LSTM(**kw),
    "gru": lambda **kw: nn.GRU(**kw),
    "rnn_tanh": lambda **kw: nn.RNN(nonlinearity="tanh", **kw),
    "rnn_relu": lambda **kw: nn.RNN(nonlinearity="relu", **kw),
}
INPUT_MODES = ("batched", "unbatched", "packed_sorted", "packed_unsorted")
# Chunk lengths forced on the cell-state scan; None keeps the cost model's choice.
SCAN_CHUNKS = (None, 1, 2, 4, 8)
NUM_CONFIGS = 240
PACKAGE = pathlib.Path(tls.__file__).parent


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Runs these tests on one CPU thread.

    Their tensors are tiny; on a shared 2-core machine two threads only add OpenMP
    waits (the exactness checks do not depend on the thread count).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def random_configs(count, seed=20260101):
    """Seeded module/input configurations covering every option of `capture`."""
    rng = random.Random(seed)
    configs = []
    for index in range(count):
        kind = list(MODULES)[index % len(MODULES)]
        mode = INPUT_MODES[(index // len(MODULES)) % len(INPUT_MODES)]
        hidden = rng.randint(1, 6)
        configs.append(
            dict(
                kind=kind,
                mode=mode,
                num_layers=rng.randint(1, 3),
                bidirectional=rng.random() < 0.5,
                batch_first=rng.random() < 0.5,
                bias=rng.random() < 0.75,
                proj_size=rng.randint(1, hidden - 1)
                if kind == "lstm" and hidden > 1 and rng.random() < 0.4
                else 0,
                input_size=rng.randint(1, 5),
                hidden_size=hidden,
                batch=1 if mode == "unbatched" else rng.randint(1, 4),
                steps=rng.randint(1, 12),
                hx_given=rng.random() < 0.5,
                dtype=rng.choice([torch.float32, torch.float64]),
                chunk=rng.choice(SCAN_CHUNKS),
                # Once the choice of a path that is gone; still drawn, so that the
                # seeded matrix keeps the configurations it has always had.
                _=rng.randrange(3),
                seed=rng.randrange(2**31),
            )
        )
    return configs


def config_id(config):
    return "{kind}-{mode}-L{num_layers}{bi}{bf}{nobias}{proj}-{dtype}-k{chunk}-{seed}".format(
        bi="-bi" if config["bidirectional"] else "",
        bf="-bf" if config["batch_first"] else "",
        nobias="-nobias" if not config["bias"] else "",
        proj="-proj%d" % config["proj_size"] if config["proj_size"] else "",
        dtype=str(config["dtype"]).replace("torch.", ""),
        **{k: v for k, v in config.items() if k != "dtype"},
    )


def build(config, device):
    """Returns `(module, inputs, hx, lengths)` for a config; lengths is `[batch]`."""
    generator = torch.Generator().manual_seed(config["seed"])
    torch.manual_seed(config["seed"])
    options = dict(
        input_size=config["input_size"],
        hidden_size=config["hidden_size"],
        num_layers=config["num_layers"],
        bidirectional=config["bidirectional"],
        batch_first=config["batch_first"],
        bias=config["bias"],
    )
    if config["proj_size"]:
        options["proj_size"] = config["proj_size"]
    module = MODULES[config["kind"]](**options).to(device, config["dtype"]).eval()
    batch, steps = config["batch"], config["steps"]
    dtype = config["dtype"]
    padded = torch.randn(batch, steps, config["input_size"], generator=generator)
    padded = padded.to(device, dtype)
    lengths = torch.full((batch,), steps, dtype=torch.int64)
    mode = config["mode"]
    if mode.startswith("packed"):
        lengths = torch.randint(1, steps + 1, (batch,), generator=generator)
        lengths[0] = steps  # The padded length is the longest one.
        if mode == "packed_sorted":
            lengths = lengths.sort(descending=True).values
        else:
            lengths = lengths[torch.randperm(batch, generator=generator)]
        if not config["batch_first"]:
            padded = padded.transpose(0, 1)
        inputs = pack_padded_sequence(
            padded,
            lengths,
            batch_first=config["batch_first"],
            enforce_sorted=mode == "packed_sorted",
        )
    elif mode == "unbatched":
        inputs = padded[0]
    else:
        inputs = padded if config["batch_first"] else padded.transpose(0, 1).contiguous()
    hx = None
    if config["hx_given"]:
        rows = config["num_layers"] * (2 if config["bidirectional"] else 1)
        out = config["proj_size"] or config["hidden_size"]
        shape = (rows, out) if mode == "unbatched" else (rows, batch, out)
        h0 = torch.randn(*shape, generator=generator).to(device, dtype)
        hx = h0
        if config["kind"] == "lstm":
            cell_shape = (*shape[:-1], config["hidden_size"])
            hx = (h0, torch.randn(*cell_shape, generator=generator).to(device, dtype))
    return module, inputs, hx, lengths


def module_reference(module, inputs, hx, batch_first):
    """The module's own output as `[batch, time, dirs*out]` with its h_n and c_n."""
    output, final = module(inputs, hx)
    h_n, c_n = final if isinstance(final, tuple) else (final, None)
    if isinstance(output, torch.Tensor) and output.dim() == 2:  # unbatched
        return (
            output.unsqueeze(0),
            h_n.unsqueeze(1),
            (c_n.unsqueeze(1) if c_n is not None else None),
        )
    if isinstance(inputs, nn.utils.rnn.PackedSequence):
        output, _ = pad_packed_sequence(output, batch_first=True)
    elif not batch_first:
        output = output.transpose(0, 1)
    return output, h_n, c_n


def assert_close(actual, expected, tolerance, what):
    error = (actual - expected).abs().max().item() if actual.numel() else 0.0
    assert error <= tolerance, "%s: max abs error %.3g > %.3g" % (what, error, tolerance)


def assert_exact(module, inputs, hx, lengths, states):
    """Checks a capture against the module's own outputs and the gate identities."""
    tolerance = TOLERANCE[module.weight_ih_l0.dtype]
    kind = states.kind
    directions = 2 if module.bidirectional else 1
    output, h_n, c_n = module_reference(module, inputs, hx, module.batch_first)
    batch, steps = output.shape[:2]
    out_size = module.proj_size or module.hidden_size
    device = module.weight_ih_l0.device

    assert states.num_directions == directions
    assert states.num_layers == module.num_layers
    assert len(states.layers) == module.num_layers * directions
    assert torch.equal(states.lengths.cpu(), lengths)
    valid = (torch.arange(steps).unsqueeze(0) < lengths.unsqueeze(1)).to(device)
    valid = valid.unsqueeze(2)

    last = torch.cat([states.layer(module.num_layers - 1, d).hidden for d in range(directions)], 2)
    assert_close(last * valid, output * valid, tolerance, "last layer hidden vs output")

    for index, layer in enumerate(states.layers):
        direction = index % directions
        arrays = {"hidden": layer.hidden, **layer.gates}
        if kind == "lstm":
            arrays["cell"] = layer.cell
        else:
            assert layer.cell is None
        assert set(layer.gates) == set(GATE_NAMES[kind])
        for name, array in arrays.items():
            width = out_size if name == "hidden" else module.hidden_size
            assert tuple(array.shape) == (batch, steps, width), name
            assert array.device == device and not array.requires_grad, name
            assert not (array * ~valid).any(), "%s is not zero beyond the lengths" % name
        # The final state is at the last valid position going forward, at 0 in reverse.
        final_position = lengths - 1 if direction == 0 else torch.zeros_like(lengths)
        rows = torch.arange(batch)
        assert_close(layer.hidden[rows, final_position], h_n[index], tolerance, "hidden vs h_n")
        if kind == "lstm":
            assert_close(layer.cell[rows, final_position], c_n[index], tolerance, "cell vs c_n")
            if module.proj_size == 0:
                expected = layer.gates["output"] * torch.tanh(layer.cell)
                assert_close(layer.hidden, expected, tolerance, "h = o * tanh(c)")


@pytest.fixture
def force_chunk(monkeypatch):
    """Returns a function forcing the chunk length of the cell-state scan."""

    def force(chunk):
        if chunk is not None:
            monkeypatch.setattr(scan, "scan_chunk", lambda *args: chunk)

    return force


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("config", random_configs(NUM_CONFIGS), ids=config_id)
def test_capture_is_exact(config, device, force_chunk):
    force_chunk(config["chunk"])
    module, inputs, hx, lengths = build(config, device)
    states = tls.capture(module, inputs, hx)
    assert states.kind == config["kind"].split("_")[0]
    assert_exact(module, inputs, hx, lengths, states)


def test_non_finite_inputs_propagate_through_layers_and_projection():
    torch.manual_seed(9)
    for dtype in (torch.float32, torch.float64):
        module = nn.LSTM(3, 5, 2, bidirectional=True, proj_size=2).to(dtype).eval()
        inputs = torch.randn(9, 2, 3, dtype=dtype)
        inputs[4, 0, 1] = float("nan")
        inputs[2, 1, 0] = float("inf")
        states = tls.capture(module, inputs)
        expected, _ = module(inputs)
        last = torch.cat([layer.hidden for layer in states.layers[-2:]], 2)
        torch.testing.assert_close(last, expected.transpose(0, 1), equal_nan=True)


LSTM_CONFIGS = [c for c in random_configs(NUM_CONFIGS) if c["kind"] == "lstm"]


@pytest.mark.parametrize("config", LSTM_CONFIGS, ids=config_id)
def test_cell_states_of_each_layer_alone_are_exact(config, force_chunk, monkeypatch):
    """On a CPU the layers' cell states are solved together only while a step is small;
    here every layer goes alone, over every LSTM configuration of the matrix."""
    monkeypatch.setattr(cells, "_CPU_STEP_ELEMENTS", 1)
    force_chunk(config["chunk"])
    module, inputs, hx, lengths = build(config, "cpu")
    assert_exact(module, inputs, hx, lengths, tls.capture(module, inputs, hx))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_long_sequences_with_default_scan(device, bidirectional, dtype):
    torch.manual_seed(1)
    module = nn.LSTM(8, 16, 2, bidirectional=bidirectional).to(device, dtype).eval()
    padded = torch.randn(150, 5, 8, device=device, dtype=dtype)
    lengths = torch.tensor([150, 17, 129, 149, 1])
    for inputs in (padded, pack_padded_sequence(padded, lengths, enforce_sorted=False)):
        states = tls.capture(module, inputs)
        expected_lengths = lengths if inputs is not padded else torch.full((5,), 150)
        assert_exact(module, inputs, None, expected_lengths, states)


@pytest.mark.parametrize("device", DEVICES)
def test_float32_states_do_not_drift_over_long_sequences(device):
    torch.manual_seed(8)
    module = nn.LSTM(16, 64, 2, bidirectional=True).to(device).eval()
    padded = torch.randn(1000, 4, 16, device=device) * 3
    lengths = torch.tensor([1000, 999, 513, 7])
    for inputs in (padded, pack_padded_sequence(padded, lengths, enforce_sorted=False)):
        states = tls.capture(module, inputs)
        expected_lengths = lengths if inputs is not padded else torch.full((4,), 1000)
        assert_exact(module, inputs, None, expected_lengths, states)


def test_chunk_choice_follows_the_cost_model():
    # On a GPU launches dominate: long narrow scans are chunked.
    assert scan.scan_chunk(128, 8 * 64, "cuda") > 1
    # On a CPU elementwise passes cost more than the per-step operations they save.
    assert scan.scan_chunk(100, 64 * 512, "cpu") == 1


@pytest.mark.parametrize("device", DEVICES)
def test_dropout_in_training_mode_warns_once(device):
    torch.manual_seed(2)
    module = nn.LSTM(3, 4, num_layers=2, dropout=0.5).to(device).train()
    inputs = torch.randn(6, 2, 3, device=device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = tls.capture(module, inputs)
        tls.capture(module, inputs)
    messages = [str(w.message) for w in caught if "dropout" in str(w.message)]
    assert len(messages) == 1, messages
    assert "eval()" in messages[0]
    module.eval()
    assert_exact(module, inputs, None, torch.full((2,), 6), first)
    assert module.training is False  # capture does not switch modes itself.


@pytest.mark.parametrize("device", DEVICES)
def test_no_warning_without_dropout(device):
    module = nn.GRU(3, 4, num_layers=2).to(device).train()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tls.capture(module, torch.randn(5, 2, 3, device=device))


def assert_same_states(actual, expected, tolerance=None):
    """Bit for bit, or within `tolerance` (max abs error) where one is given."""

    def same(mine, theirs, what):
        if tolerance is None:
            assert torch.equal(mine, theirs), what
        else:
            assert mine.shape == theirs.shape, what
            assert_close(mine, theirs, tolerance, what)

    assert actual.kind == expected.kind
    assert torch.equal(actual.lengths, expected.lengths)
    for mine, theirs in zip(actual.layers, expected.layers):
        same(mine.hidden, theirs.hidden, "hidden")
        assert (mine.cell is None) == (theirs.cell is None)
        if mine.cell is not None:
            same(mine.cell, theirs.cell, "cell")
        assert set(mine.gates) == set(theirs.gates)
        for name in mine.gates:
            same(mine.gates[name], theirs.gates[name], name)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_record_captures_forward_calls_without_changing_them(device, kind):
    torch.manual_seed(3)
    module = MODULES[kind](input_size=3, hidden_size=4, num_layers=2, batch_first=True)
    module = module.to(device).eval()
    inputs = torch.randn(2, 7, 3, device=device, requires_grad=True)
    packed = pack_padded_sequence(
        torch.randn(2, 7, 3, device=device),
        torch.tensor([3, 7]),
        batch_first=True,
        enforce_sorted=False,
    )

    def forward_and_grads():
        module.zero_grad()
        inputs.grad = None
        output, _ = module(inputs)
        output.square().sum().backward()
        grads = [p.grad.clone() for p in module.parameters()]
        return output.detach(), grads, inputs.grad.clone()

    plain = forward_and_grads()
    with tls.record(module) as recorder:
        recorded = forward_and_grads()
        module(input=packed)  # Keyword arguments are seen too.
    module(inputs)  # Not recorded: the block is over.

    assert torch.equal(plain[0], recorded[0])
    for before, after in zip(plain[1], recorded[1]):
        assert torch.equal(before, after)
    assert torch.equal(plain[2], recorded[2])
    assert len(recorder.states) == 2
    assert_same_states(recorder.states[0], tls.capture(module, inputs))
    assert_same_states(recorder.states[1], tls.capture(module, packed))
    assert isinstance(recorder, tls.Recorder)


def test_record_passes_hx():
    torch.manual_seed(4)
    module = nn.LSTM(3, 4).eval()
    inputs = torch.randn(5, 2, 3)
    hx = (torch.randn(1, 2, 4), torch.randn(1, 2, 4))
    with tls.record(module) as recorder:
        module(inputs, hx)
        module(inputs, hx=hx)
    expected = tls.capture(module, inputs, hx)
    for states in recorder.states:
        assert_same_states(states, expected)


@pytest.mark.parametrize(
    "module, match",
    [
        (nn.LSTMCell(3, 4), r"nn\.LSTM.*LSTMCell.*sequence module"),
        (nn.GRUCell(3, 4), r"nn\.GRU.*GRUCell"),
        (nn.Linear(3, 4), r"nn\.LSTM, nn\.GRU or nn\.RNN.*Linear.*recurrent layer itself"),
        (nn.Sequential(nn.LSTM(3, 4)), r"Sequential.*model\.lstm"),
    ],
)
def test_unsupported_modules_are_refused(module, match):
    with pytest.raises(TypeError, match=match):
        tls.capture(module, torch.randn(5, 2, 3))
    with pytest.raises(TypeError, match=match):
        tls.record(module)


@pytest.mark.parametrize(
    "inputs, hx, error, match",
    [
        (torch.randn(5, 2, 7), None, ValueError, r"7 features.*input_size=3.*must be 3"),
        (torch.randn(5, 4), None, ValueError, r"4 features.*input_size=3"),  # unbatched
        (torch.randn(5, 2, 3, 1), None, ValueError, r"3-D.*2-D unbatched.*\(5, 2, 3, 1\)"),
        (torch.randn(5, 2, 3).double(), None, TypeError, r"float64.*float32.*\.to\("),
        ([1.0, 2.0], None, TypeError, r"torch\.Tensor or a PackedSequence"),
        (torch.randn(5, 2, 3), torch.randn(1, 2, 4), TypeError, r"tuple \(h_0, c_0\)"),
        (
            torch.randn(5, 2, 3),
            (torch.randn(1, 3, 4), torch.randn(1, 2, 4)),
            ValueError,
            r"h_0 has shape \(1, 3, 4\).*expects \(1, 2, 4\).*hx=None",
        ),
        (
            torch.randn(5, 2, 3),
            (torch.randn(1, 2, 4), torch.randn(2, 2, 4)),
            ValueError,
            r"c_0 has shape \(2, 2, 4\).*expects \(1, 2, 4\)",
        ),
        (
            torch.randn(5, 3),
            (torch.randn(1, 2, 4), torch.randn(1, 2, 4)),
            ValueError,
            r"expects \(1, 4\).*unbatched",
        ),
        (torch.randn(0, 2, 3), None, ValueError, r"empty"),
    ],
)
def test_bad_inputs_name_the_problem_and_the_fix(inputs, hx, error, match):
    module = nn.LSTM(3, 4).eval()
    with pytest.raises(error, match=match):
        tls.capture(module, inputs, hx)


def test_bad_gru_hx():
    module = nn.GRU(3, 4, num_layers=2).eval()
    with pytest.raises(TypeError, match=r"tensor h_0"):
        tls.capture(module, torch.randn(5, 2, 3), (torch.zeros(2, 2, 4),))
    with pytest.raises(ValueError, match=r"expects \(2, 2, 4\)"):
        tls.capture(module, torch.randn(5, 2, 3), torch.zeros(1, 2, 4))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", list(MODULES))
@pytest.mark.parametrize("bidirectional", [False, True])
def test_non_finite_inputs_give_non_finite_states(device, kind, bidirectional):
    torch.manual_seed(5)
    module = MODULES[kind](input_size=3, hidden_size=4, bidirectional=bidirectional)
    module = module.to(device).eval()
    inputs = torch.randn(6, 2, 3, device=device)
    inputs[3, 0, 1] = float("nan")
    inputs[2, 1, 0] = float("inf")
    states = tls.capture(module, inputs)
    expected, _ = module(inputs)
    last = torch.cat([layer.hidden for layer in states.layers], 2)
    torch.testing.assert_close(last, expected.transpose(0, 1), equal_nan=True)
    forward = states.layer(0, 0)
    # Forward direction: finite before the bad step, not finite from it on.
    assert torch.isfinite(forward.hidden[0, :3]).all()
    assert not torch.isfinite(forward.hidden[0, 3:]).all()
    if kind == "lstm":
        assert not torch.isfinite(forward.cell[0, 3:]).all()


@pytest.mark.parametrize("threads", [1, 2])
def test_capture_changes_nothing_outside_the_call(threads, monkeypatch):
    """No thread counts, no environment, no grad mode, no change to the module."""
    torch.set_num_threads(threads)
    calls = []
    for name in ("set_num_threads", "set_num_interop_threads"):
        monkeypatch.setattr(torch, name, lambda *args, name=name: calls.append(name))
    torch.manual_seed(11)
    module = nn.LSTM(3, 8, 2, bidirectional=True, proj_size=4).eval()
    before = {name: tensor.clone() for name, tensor in module.state_dict().items()}
    environment = dict(os.environ)
    inputs = torch.randn(20, 3, 3, requires_grad=True)
    with tls.record(module) as recorder:
        module(inputs)
    states = tls.capture(module, inputs)
    assert calls == []
    monkeypatch.undo()
    assert torch.get_num_threads() == threads
    torch.set_num_threads(1)
    assert torch.is_grad_enabled()
    assert dict(os.environ) == environment
    for name, tensor in module.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    assert_same_states(recorder.states[0], states)


def test_the_package_uses_torch_alone():
    """No compiled code, no foreign libraries, no process-wide settings, short modules."""
    sources = sorted((PACKAGE / "capturing").glob("*.py"))
    assert len(sources) >= 4
    forbidden = re.compile(
        r"^\s*(import|from)\s+(numba|llvmlite|ctypes|mmap|threadpoolctl|scipy|numpy)\b"
        r"|set_num_threads|os\.environ|getrefcount",
        re.MULTILINE,
    )
    for path in sources:
        text = path.read_text()
        assert not forbidden.search(text), "%s: %s" % (path.name, forbidden.search(text))
        assert len(text.splitlines()) <= 600, path.name
        assert text.startswith('"""'), "%s has no module docstring" % path.name
    # In a fresh process: capturing imports none of them either.
    script = (
        "import sys, torch, tb_lstm_states as tls\n"
        "tls.capture(torch.nn.LSTM(2, 3).eval(), torch.randn(4, 1, 2))\n"
        "print(sorted(m for m in ('numba', 'llvmlite', 'threadpoolctl', 'scipy') "
        "if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_public_names_are_not_shadowed_by_submodules():
    """Importing a subpackage sets it as an attribute of the package: one called like a
    public function (`capture`) would replace `tls.capture` with the subpackage."""
    modules = {path.stem for path in PACKAGE.iterdir() if path.suffix == ".py" or path.is_dir()}
    assert not modules & set(tls.__all__)
    script = (
        "import tb_lstm_states.capturing.cells\n"
        "import tb_lstm_states as tls\n"
        "assert callable(tls.capture) and tls.capture.__name__ == 'capture'\n"
        "assert tls.record.__name__ == 'record' and tls.Recorder.__name__ == 'Recorder'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
