"""Tests of `tb_lstm_states.capturing`: exactness against the modules themselves.

The core test runs a seeded random matrix of module and input configurations and
checks every captured array against what the module itself returns (its output at
every timestep, h_n, c_n) plus the LSTM identity h = o * tanh(c). The same tests run
on CUDA when it is available.
"""

import functools
import gc
import platform
import random
import sys
import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import tb_lstm_states as tls
from tb_lstm_states import capturing as capture_module
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
# LSTM path forced: "native" the compiled loop, False kernel + gates, None the rule.
# (test_native_loop_is_exact forces the compiled loop over every LSTM of the matrix.)
LOOP_CHOICES = (None, "native", False)
NUM_CONFIGS = 240


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
                proj_size=rng.randint(1, hidden - 1) if kind == "lstm" and hidden > 1
                and rng.random() < 0.4 else 0,
                input_size=rng.randint(1, 5),
                hidden_size=hidden,
                batch=1 if mode == "unbatched" else rng.randint(1, 4),
                steps=rng.randint(1, 12),
                hx_given=rng.random() < 0.5,
                dtype=rng.choice([torch.float32, torch.float64]),
                chunk=rng.choice(SCAN_CHUNKS),
                loop=rng.choice(LOOP_CHOICES),
                seed=rng.randrange(2**31),
            )
        )
    return configs


def config_id(config):
    return "{kind}-{mode}-L{num_layers}{bi}{bf}{nobias}{proj}-{dtype}-k{chunk}{loop_id}-{seed}".format(
        bi="-bi" if config["bidirectional"] else "",
        bf="-bf" if config["batch_first"] else "",
        nobias="-nobias" if not config["bias"] else "",
        proj="-proj%d" % config["proj_size"] if config["proj_size"] else "",
        loop_id={None: "", "native": "-native", False: "-kernel"}[config["loop"]],
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
            cell_shape = shape[:-1] + (config["hidden_size"],)
            hx = (h0, torch.randn(*cell_shape, generator=generator).to(device, dtype))
    return module, inputs, hx, lengths


def module_reference(module, inputs, hx, batch_first):
    """The module's own output as `[batch, time, dirs*out]` with its h_n and c_n."""
    output, final = module(inputs, hx)
    h_n, c_n = final if isinstance(final, tuple) else (final, None)
    if isinstance(output, torch.Tensor) and output.dim() == 2:  # unbatched
        return output.unsqueeze(0), h_n.unsqueeze(1), (
            c_n.unsqueeze(1) if c_n is not None else None
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

    last = torch.cat(
        [states.layer(module.num_layers - 1, d).hidden for d in range(directions)], 2
    )
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
        assert_close(
            layer.hidden[rows, final_position], h_n[index], tolerance, "hidden vs h_n"
        )
        if kind == "lstm":
            assert_close(
                layer.cell[rows, final_position], c_n[index], tolerance, "cell vs c_n"
            )
            if module.proj_size == 0:
                expected = layer.gates["output"] * torch.tanh(layer.cell)
                assert_close(layer.hidden, expected, tolerance, "h = o * tanh(c)")


@pytest.fixture
def force_paths(monkeypatch):
    """Returns a function forcing the scan chunk and the LSTM path (None: default)."""

    def force(chunk=None, loop=None):
        if chunk is not None:
            monkeypatch.setattr(capture_module, "_scan_chunk", lambda *args: chunk)
        monkeypatch.setattr(capture_module, "_LOOP_CHOICE", loop)

    return force


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("config", random_configs(NUM_CONFIGS), ids=config_id)
def test_capture_is_exact(config, device, force_paths):
    force_paths(config["chunk"], config["loop"])
    module, inputs, hx, lengths = build(config, device)
    states = tls.capture(module, inputs, hx)
    assert states.kind == config["kind"].split("_")[0]
    assert_exact(module, inputs, hx, lengths, states)


NATIVE_CONFIGS = [c for c in random_configs(NUM_CONFIGS) if c["kind"] == "lstm"]


@pytest.mark.parametrize("config", NATIVE_CONFIGS, ids=config_id)
def test_native_loop_is_exact(config, force_paths):
    """The compiled loop (CPU only) over every LSTM configuration of the matrix."""
    if not capture_module._native_kernel():
        pytest.skip("numba is not available")
    force_paths(config["chunk"], "native")
    module, inputs, hx, lengths = build(config, "cpu")
    plans = capture_module._candidate_plans(module, capture_module._Sequences(module, inputs))
    assert plans == [capture_module._Plan("native", None)]
    states = tls.capture(module, inputs, hx)
    assert_exact(module, inputs, hx, lengths, states)


def test_native_loop_propagates_non_finite_inputs(force_paths):
    if not capture_module._native_kernel():
        pytest.skip("numba is not available")
    force_paths(loop="native")
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


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("loop", [None, False, "native"])
def test_long_sequences_with_default_scan(device, bidirectional, dtype, loop, force_paths):
    force_paths(loop=loop)
    torch.manual_seed(1)
    module = nn.LSTM(8, 16, 2, bidirectional=bidirectional).to(device, dtype).eval()
    padded = torch.randn(150, 5, 8, device=device, dtype=dtype)
    lengths = torch.tensor([150, 17, 129, 149, 1])
    for inputs in (padded, pack_padded_sequence(padded, lengths, enforce_sorted=False)):
        states = tls.capture(module, inputs)
        expected_lengths = lengths if inputs is not padded else torch.full((5,), 150)
        assert_exact(module, inputs, None, expected_lengths, states)


def test_chunk_choice_follows_the_cost_model():
    # On a GPU launches dominate: long narrow scans are chunked.
    assert capture_module._scan_chunk(128, 8 * 64, "cuda") > 1
    # On a CPU elementwise passes cost more than the per-step operations they save.
    assert capture_module._scan_chunk(100, 64 * 512, "cpu") == 1


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
def test_record_captures_forward_calls_without_changing_them(device, kind, force_paths):
    # One path throughout, so that the recorded and direct captures are bit-equal
    # (the tuner may otherwise pick plans that differ in float rounding).
    force_paths(loop=False)
    torch.manual_seed(3)
    module = MODULES[kind](input_size=3, hidden_size=4, num_layers=2, batch_first=True)
    module = module.to(device).eval()
    inputs = torch.randn(2, 7, 3, device=device, requires_grad=True)
    packed = pack_padded_sequence(
        torch.randn(2, 7, 3, device=device), torch.tensor([3, 7]),
        batch_first=True, enforce_sorted=False,
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


def test_path_tuner_times_both_thread_counts_then_keeps_the_faster(monkeypatch):
    tuner = capture_module._PathTuner()
    monkeypatch.setattr(capture_module, "_PATH_TUNER", tuner)
    chosen = []
    real_layers = capture_module._capture_layers

    def spy(module, sequences, h0, c0, loop):
        chosen.append(torch.get_num_threads())
        return real_layers(module, sequences, h0, c0, loop)

    monkeypatch.setattr(capture_module, "_capture_layers", spy)
    torch.manual_seed(6)
    module = nn.GRU(3, 64, num_layers=2).eval()
    inputs = torch.randn(4, 64, 3)
    torch.set_num_threads(2)
    try:
        results = [tls.capture(module, inputs) for _ in range(8)]
        assert torch.get_num_threads() == 2  # Restored after the one-thread trials.
    finally:
        torch.set_num_threads(1)
    assert chosen[:6] == [2, 1] * 3
    assert len(set(chosen[6:])) == 1  # Settled.
    for states in results:
        assert_exact(module, inputs, None, torch.full((64,), 4), states)
    # One thread only: nothing to choose, nothing timed.
    chosen.clear()
    tls.capture(module, inputs[:, :2])
    assert chosen == [1]


def test_plans_by_module_and_device(monkeypatch):
    torch.set_num_threads(2)
    try:
        gru = nn.GRU(3, 8).eval()
        lstm = nn.LSTM(3, 8).eval()
        inputs = torch.randn(4, 5, 3)

        def plans(module, inputs):
            sequences = capture_module._Sequences(module, inputs)
            return {(p.loop, p.threads) for p in capture_module._candidate_plans(module, sequences)}

        assert plans(gru, inputs) == {(False, None), (False, 1)}
        if capture_module._native_kernel():
            assert plans(lstm, inputs) == {("native", None), ("native", 1)}
        monkeypatch.setattr(capture_module, "_NATIVE_KERNEL", False)  # No numba.
        assert plans(lstm, inputs) == {(False, None), (False, 1)}
    finally:
        torch.set_num_threads(1)


def test_path_tuner_tries_the_native_loop_on_every_cpu_lstm(monkeypatch):
    if not capture_module._native_kernel():
        pytest.skip("numba is not available")
    monkeypatch.setattr(capture_module, "_PATH_TUNER", capture_module._PathTuner())
    chosen = []
    real_layers = capture_module._capture_layers

    def spy(module, sequences, h0, c0, loop):
        chosen.append((loop, torch.get_num_threads()))
        return real_layers(module, sequences, h0, c0, loop)

    monkeypatch.setattr(capture_module, "_capture_layers", spy)
    torch.manual_seed(7)
    module = nn.LSTM(3, 4, num_layers=2).eval()  # Small, padded: native is the path.
    inputs = torch.randn(5, 3, 3)
    lengths = torch.tensor([5, 2, 4])
    packed = pack_padded_sequence(inputs, lengths, enforce_sorted=False)
    torch.set_num_threads(2)
    try:
        for _ in range(5):
            states = tls.capture(module, packed)
            assert_exact(module, packed, None, lengths, states)
        # Two threads (MKL spreads each product over them) and one: both compiled.
        assert chosen == [("native", 2), ("native", 1)] * 2 + [chosen[-1]]
        monkeypatch.setattr(capture_module, "_LOOP_CHOICE", "native")
        wide = nn.LSTM(3, 37, 2).eval()
        long_inputs = torch.randn(50, 7, 3)
        split = tls.capture(wide, long_inputs)
        assert_same_states(tls.capture(wide, long_inputs), split)  # Repeatable.
        torch.set_num_threads(1)
        serial = tls.capture(wide, long_inputs)
        assert_same_states(tls.capture(wide, long_inputs), serial)
        # MKL may sum a product in another order on two threads than on one (it
        # does on AMD EPYC, by about 5e-8): the plans agree to float rounding.
        assert_same_states(split, serial, tolerance=1e-6)
        monkeypatch.setattr(capture_module, "_LOOP_CHOICE", None)
    finally:
        torch.set_num_threads(1)
    chosen.clear()
    tls.capture(nn.GRU(3, 4).eval(), inputs)
    tls.capture(module.double(), inputs.double())
    assert [loop for loop, _ in chosen] == [False, "native"]


def test_native_loop_is_exact_over_long_sequences(force_paths):
    """The compiled float32 activations do not drift over 1000 steps."""
    if not capture_module._native_kernel():
        pytest.skip("numba is not available")
    force_paths(loop="native")
    torch.manual_seed(8)
    module = nn.LSTM(16, 64, 2, bidirectional=True).eval()
    padded = torch.randn(1000, 4, 16) * 3
    lengths = torch.tensor([1000, 999, 513, 7])
    for inputs in (padded, pack_padded_sequence(padded, lengths, enforce_sorted=False)):
        states = tls.capture(module, inputs)
        expected_lengths = lengths if inputs is not padded else torch.full((4,), 1000)
        assert_exact(module, inputs, None, expected_lengths, states)


def test_packed_gemm_multiplies_like_torch():
    """MKL's packed sgemm, as the compiled loop calls it (x86-64 Linux torch has it)."""
    gemm = capture_module._mkl()
    if gemm is None:
        assert not (sys.platform == "linux" and platform.machine() == "x86_64"), (
            "torch's CPU library on x86-64 Linux links MKL: the packed GEMM should load")
        pytest.skip("this torch build has no MKL")
    import ctypes

    compute = ctypes.CFUNCTYPE(
        None, *([ctypes.c_int] * 6), ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
        ctypes.c_int, ctypes.c_float, ctypes.c_void_p, ctypes.c_int)(gemm.address)
    torch.manual_seed(10)
    for rows, columns, depth in ((1, 8, 3), (3, 40, 17), (17, 256, 129)):
        weight = torch.randn(columns, depth)
        inputs = torch.randn(rows, depth)
        out = torch.full((rows, columns), float("nan"))
        packed = gemm.pack(weight, rows)
        compute(101, 111, 151, rows, columns, depth, inputs.data_ptr(), depth,
                packed.data_ptr(), columns, 0.0, out.data_ptr(), columns)
        torch.testing.assert_close(out, inputs @ weight.t(), rtol=1e-5, atol=1e-5)


def test_large_state_buffers_are_zeroed_and_outlive_their_views(monkeypatch):
    monkeypatch.setattr(capture_module, "_MAPPINGS", capture_module._Mappings(64 << 20))
    new_zeros = functools.partial(capture_module._new_buffer, zero=True)
    small = new_zeros(3, 4, dtype=torch.float32)
    # 16 MB: a mapping of its own, zero when new even if zeros are not asked for.
    large = capture_module._new_buffer(64, 64, 1024, dtype=torch.float32, zero=False)
    for tensor, shape in ((small, (3, 4)), (large, (64, 64, 1024))):
        assert tensor.shape == shape and tensor.dtype == torch.float32
        assert not tensor.any()
    view = large[5, :, 7:9]
    large.fill_(3)
    del large
    gc.collect()
    assert (view == 3).all()  # The mapping lives as long as any view of it.
    assert new_zeros(4, 1024, 1024, dtype=torch.float64).dtype == torch.float64


def test_state_buffer_mappings_are_reused_only_once_unreferenced(monkeypatch):
    pool = capture_module._Mappings(max_bytes=40 << 20)
    monkeypatch.setattr(capture_module, "_MAPPINGS", pool)
    new = functools.partial(capture_module._new_buffer, 1024, 4096, dtype=torch.float32)
    first = new(zero=False)  # 16 MB
    first.fill_(7)
    second = new(zero=False)
    assert first.data_ptr() != second.data_ptr()  # `first` is alive: not reused
    states = first.numpy()[3:]  # a numpy view keeps it alive too
    address = first.data_ptr()
    del first
    assert new(zero=False).data_ptr() != address
    del states
    gc.collect()
    reused = new(zero=False)
    assert reused.data_ptr() == address and (reused == 7).all()  # stale, as asked
    zeroed = new(zero=True)  # the one freed by the assert above
    assert zeroed.data_ptr() != address and not zeroed.any()
    del reused
    zeroed = new(zero=True)
    assert zeroed.data_ptr() == address and not zeroed.any()
    # Free mappings beyond max_bytes are unmapped: three 16 MB ones in use, then
    # none in use; a fourth request keeps at most 40 MB of unused ones around.
    held = [new(zero=False) for _ in range(3)]
    del held, zeroed, second
    gc.collect()
    new(zero=False)
    unused = [m for i, m in enumerate(pool._mappings) if pool._unused(i)]
    assert sum(len(m) for m in unused) <= 40 << 20
