"""`capture(loss=)`: dL/dh_t and dL/dc_t against an unrolled autograd reference.

The reference runs every layer, direction and sequence one timestep at a time in
float64, each h_t and c_t its own autograd node, and asks autograd for the gradient
of the loss with respect to each of them: the total derivative the issue defines.
"""

import copy
import itertools
import random
import zlib

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import tb_lstm_states as tls

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _layer_weights(module, layer, direction):
    suffix = "_l%d%s" % (layer, "_reverse" if direction else "")

    def get(name):
        return getattr(module, name + suffix, None)

    bias = module.bias
    return {
        "w_ih": get("weight_ih"),
        "w_hh": get("weight_hh"),
        "b_ih": get("bias_ih") if bias else None,
        "b_hh": get("bias_hh") if bias else None,
        "w_hr": get("weight_hr") if module.proj_size else None,
    }


def _step(mode, weights, x, h, c, hidden):
    gi = weights["w_ih"] @ x + (weights["b_ih"] if weights["b_ih"] is not None else 0)
    gh = weights["w_hh"] @ h + (weights["b_hh"] if weights["b_hh"] is not None else 0)
    if mode == "LSTM":
        i, f, g, o = (gi + gh).split(hidden)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        if weights["w_hr"] is not None:
            h = weights["w_hr"] @ h
        return h, c
    if mode == "GRU":
        ir, iz, i_n = gi.split(hidden)
        hr, hz, h_n = gh.split(hidden)
        r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
        return (1 - z) * torch.tanh(i_n + r * h_n) + z * h, None
    pre = gi + gh
    return (torch.tanh(pre) if mode == "RNN_TANH" else torch.relu(pre)), None


def unrolled_reference(module, padded, lengths, hx, make_output, loss):
    """Per (layer, direction, name): `[batch, time, width]` total gradients."""
    mode, directions = module.mode, 2 if module.bidirectional else 1
    steps, batch = padded.shape[:2]
    hidden = module.hidden_size
    out = module.proj_size or hidden
    layer_input, nodes = padded, {}
    for layer in range(module.num_layers):
        outputs = []
        for d in range(directions):
            weights = _layer_weights(module, layer, d)
            h_nodes = [[None] * batch for _ in range(steps)]
            c_nodes = [[None] * batch for _ in range(steps)]
            row = layer * directions + d
            for b in range(batch):
                if hx is None:
                    h, c = padded.new_zeros(out), padded.new_zeros(hidden)
                elif mode == "LSTM":
                    h, c = hx[0][row, b], hx[1][row, b]
                else:
                    h, c = hx[row, b], None
                n = int(lengths[b])
                for t in range(n) if d == 0 else range(n - 1, -1, -1):
                    h, c = _step(mode, weights, layer_input[t, b], h, c, hidden)
                    h = h * 1.0  # its own node, distinct from a projection's output
                    h_nodes[t][b], c_nodes[t][b] = h, c
            zero = padded.new_zeros(out)
            outputs.append(
                torch.stack(
                    [
                        torch.stack([h if h is not None else zero for h in h_nodes[t]])
                        for t in range(steps)
                    ]
                )
            )
            nodes[(layer, d)] = (h_nodes, c_nodes)
        layer_input = torch.cat(outputs, dim=2)
    value = loss(make_output(layer_input))
    keys, flat = [], []
    for (layer, d), (h_nodes, c_nodes) in nodes.items():
        for t, b in itertools.product(range(steps), range(batch)):
            if h_nodes[t][b] is not None:
                keys.append((layer, d, "hidden", t, b))
                flat.append(h_nodes[t][b])
            if c_nodes[t][b] is not None:
                keys.append((layer, d, "cell", t, b))
                flat.append(c_nodes[t][b])
    grads = torch.autograd.grad(value, flat, allow_unused=True)
    result = {}
    for (layer, d, name, t, b), grad in zip(keys, grads):
        width = out if name == "hidden" else hidden
        array = result.setdefault((layer, d, name), padded.new_zeros(batch, steps, width).detach())
        if grad is not None:
            array[b, t] = grad
    return result


def _loss_for(width, generator, device):
    head = torch.randn(width, generator=generator, dtype=torch.float64).to(device)

    def loss(output):
        data = output.data if isinstance(output, PackedSequence) else output
        # Non-linear, so every position's gradient differs.
        return (torch.sin(data) @ head).sum() + (data**2).mean()

    return loss


def _config(rng):
    mode = rng.choice(["LSTM", "GRU", "RNN_TANH", "RNN_RELU"])
    config = {
        "mode": mode,
        "layers": rng.choice([1, 2, 3]),
        "bidirectional": rng.random() < 0.5,
        "bias": rng.random() < 0.7,
        "batch_first": rng.random() < 0.5,
        "proj": rng.choice([0, 2]) if mode == "LSTM" else 0,
        "packed": rng.choice([None, "sorted", "unsorted"]),
        "hx": rng.random() < 0.5,
        "steps": rng.choice([1, 2, 6, 9]),
        "batch": rng.choice([1, 3, 4]),
    }
    if config["packed"] is None and rng.random() < 0.2:
        config["unbatched"] = True
    return config


NAMED = {
    "packed-bidirectional-2-layer-lstm": {
        "mode": "LSTM", "layers": 2, "bidirectional": True, "packed": "unsorted",
    },
    "lstm-proj-size": {"mode": "LSTM", "layers": 2, "proj": 3, "hx": True, "packed": "sorted"},
    "lstm-bias-false": {"mode": "LSTM", "layers": 2, "bias": False, "bidirectional": True},
    "packed-bidirectional-gru": {
        "mode": "GRU", "layers": 2, "bidirectional": True, "packed": "unsorted", "hx": True,
    },
    "2-layer-rnn": {"mode": "RNN_TANH", "layers": 2, "hx": True},
    "relu-rnn-packed": {"mode": "RNN_RELU", "layers": 2, "bidirectional": True, "packed": "sorted"},
}  # fmt: skip
DEFAULTS = {
    "layers": 1, "bidirectional": False, "bias": True, "batch_first": False, "proj": 0,
    "packed": None, "hx": False, "steps": 7, "batch": 3,
}  # fmt: skip
RANDOM = {"random-%d" % i: _config(random.Random(7000 + i)) for i in range(24)}


def _build(config, device, seed=0):
    config = {**DEFAULTS, **config}
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    kwargs = dict(
        input_size=3,
        hidden_size=4,
        num_layers=config["layers"],
        bias=config["bias"],
        batch_first=config["batch_first"],
        bidirectional=config["bidirectional"],
    )
    mode = config["mode"]
    if mode == "LSTM":
        module = nn.LSTM(proj_size=config["proj"], **kwargs)
    elif mode == "GRU":
        module = nn.GRU(**kwargs)
    else:
        module = nn.RNN(nonlinearity="tanh" if mode == "RNN_TANH" else "relu", **kwargs)
    module = module.double().to(device)
    steps, batch = config["steps"], config["batch"]
    if config.get("unbatched"):
        batch = 1
    padded = torch.randn(steps, batch, 3, generator=generator, dtype=torch.float64).to(device)
    lengths = torch.full((batch,), steps)
    if config["packed"]:
        lengths = torch.randint(1, steps + 1, (batch,), generator=generator)
        lengths[0] = steps
        if config["packed"] == "sorted":
            lengths = lengths.sort(descending=True).values
        for b in range(batch):
            padded[int(lengths[b]) :, b] = 0
    directions = 2 if config["bidirectional"] else 1
    out = config["proj"] or 4
    hx = None
    if config["hx"]:
        h0 = torch.randn(config["layers"] * directions, batch, out, generator=generator)
        h0 = h0.double().to(device)
        hx = h0
        if mode == "LSTM":
            c0 = torch.randn(config["layers"] * directions, batch, 4, generator=generator)
            hx = (h0, c0.double().to(device))
    return config, module, padded, lengths, hx, _loss_for(directions * out, generator, device)


def _inputs_and_output_maker(config, module, padded, lengths, hx):
    if config["packed"]:
        inputs = pack_padded_sequence(padded, lengths, enforce_sorted=config["packed"] == "sorted")

        def make_output(padded_output):
            return pack_padded_sequence(
                padded_output, lengths, enforce_sorted=config["packed"] == "sorted"
            )

        return inputs, hx, make_output
    if config.get("unbatched"):
        if hx is not None:
            hx = tuple(h[:, 0] for h in hx) if isinstance(hx, tuple) else hx[:, 0]
        return padded[:, 0], hx, lambda padded_output: padded_output[:, 0]
    if config["batch_first"]:
        return padded.transpose(0, 1), hx, lambda padded_output: padded_output.transpose(0, 1)
    return padded, hx, lambda padded_output: padded_output


def _check_exact(config, module, padded, lengths, hx, loss):
    inputs, user_hx, make_output = _inputs_and_output_maker(config, module, padded, lengths, hx)
    reference = unrolled_reference(module, padded, lengths, hx, make_output, loss)
    before = copy.deepcopy(module.state_dict())
    states = tls.capture(module, inputs, user_hx, loss=loss)
    for (layer, d, name), expected in reference.items():
        actual = states.layer(layer, d).grads[name]
        assert actual.shape == expected.shape, (layer, d, name)
        scale = float(expected.abs().max()) or 1.0
        error = float((actual - expected).abs().max()) / scale
        assert error <= 1e-7, "layer %d direction %d %s: relative error %g" % (
            layer,
            d,
            name,
            error,
        )
        for b in range(actual.shape[0]):
            assert not actual[b, int(lengths[b]) :].any(), "nonzero past the length"
    expected_names = {"hidden", "cell"} if config["mode"] == "LSTM" else {"hidden"}
    assert all(set(layer.grads) == expected_names for layer in states.layers)
    assert all(p.grad is None for p in module.parameters())
    after = module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    return states


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(NAMED) + sorted(RANDOM))
def test_gradients_equal_the_unrolled_autograd_reference(name, device):
    config = NAMED.get(name) or RANDOM[name]
    _check_exact(*_build(config, device, seed=zlib.crc32(name.encode()) % 1000))


@pytest.mark.parametrize("device", DEVICES)
def test_states_with_a_loss_equal_those_without(device):
    config, module, padded, lengths, hx, loss = _build(NAMED["lstm-proj-size"], device)
    inputs, user_hx, _ = _inputs_and_output_maker(config, module, padded, lengths, hx)
    with_loss = tls.capture(module, inputs, user_hx, loss=loss)
    plain = tls.capture(module, inputs, user_hx)
    for mine, theirs in zip(with_loss.layers, plain.layers):
        assert theirs.grads == {}
        torch.testing.assert_close(mine.hidden, theirs.hidden, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(mine.cell, theirs.cell, rtol=1e-12, atol=1e-12)
        for gate in theirs.gates:
            torch.testing.assert_close(mine.gates[gate], theirs.gates[gate], rtol=1e-12, atol=1e-12)


def test_loss_sees_exactly_what_the_module_returns():
    seen = []
    for config in (NAMED["packed-bidirectional-gru"], {"mode": "LSTM", "batch_first": True}):
        config, module, padded, lengths, hx, _ = _build(config, "cpu")
        inputs, user_hx, _ = _inputs_and_output_maker(config, module, padded, lengths, hx)
        expected = module(inputs, user_hx)[0]

        def loss(output, expected=expected):
            seen.append(output)
            assert type(output) is type(expected)
            if isinstance(output, PackedSequence):
                assert torch.equal(output.batch_sizes, expected.batch_sizes)
                assert torch.equal(output.unsorted_indices, expected.unsorted_indices)
                torch.testing.assert_close(output.data, expected.data)
            else:
                torch.testing.assert_close(output, expected)
            return output.data.sum() if isinstance(output, PackedSequence) else output.sum()

        tls.capture(module, inputs, user_hx, loss=loss)
    assert len(seen) == 2


def test_a_loss_over_the_users_own_head_leaves_no_grad_anywhere():
    lstm = nn.LSTM(3, 5, batch_first=True)
    head = nn.Linear(5, 2)
    inputs, target = torch.randn(4, 6, 3), torch.randn(4, 2)

    def loss(output):
        return nn.functional.mse_loss(head(output[:, -1]), target)

    states = tls.capture(lstm, inputs, loss=loss)
    assert all(p.grad is None for p in list(lstm.parameters()) + list(head.parameters()))
    # Only the last timestep feeds the loss: dL/dh_t is the head's gradient there.
    last = states.layers[0].grads["hidden"][:, -1]
    hidden = states.layers[0].hidden[:, -1].clone().requires_grad_()
    (expected,) = torch.autograd.grad(nn.functional.mse_loss(head(hidden), target), hidden)
    torch.testing.assert_close(last, expected)


def test_low_precision_modules_get_float32_gradients():
    lstm = nn.LSTM(3, 4, batch_first=True).half()
    inputs = torch.randn(2, 5, 3).half()

    def loss(output):
        assert output.dtype == torch.float16  # what the module's forward returns
        return output.float().pow(2).sum()

    states = tls.capture(lstm, inputs, loss=loss)
    grads = states.layers[0].grads
    assert grads["cell"].dtype == torch.float32 and grads["hidden"].abs().sum() > 0
    reference = tls.capture(lstm.float(), inputs.float(), loss=lambda out: out.pow(2).sum())
    torch.testing.assert_close(
        grads["cell"], reference.layers[0].grads["cell"], rtol=2e-3, atol=2e-3
    )


@pytest.mark.parametrize(
    "loss, error, match",
    [
        (3.0, TypeError, "callable"),
        (lambda out: out, TypeError, "scalar tensor"),
        (lambda out: 1.5, TypeError, "scalar tensor"),
        (lambda out: out.sum().detach(), ValueError, "does not depend"),
        (lambda out: torch.tensor(2.0), ValueError, "does not depend"),
    ],
)
def test_bad_losses_name_the_problem(loss, error, match):
    with pytest.raises(error, match=match):
        tls.capture(nn.LSTM(3, 4), torch.randn(5, 2, 3), loss=loss)


def test_inference_mode_is_refused_and_no_grad_is_fine():
    lstm, inputs = nn.LSTM(3, 4), torch.randn(5, 2, 3)
    with torch.inference_mode(), pytest.raises(RuntimeError, match="outside that block"):
        tls.capture(lstm, inputs, loss=lambda out: out.sum())
    with torch.no_grad():
        states = tls.capture(lstm, inputs, loss=lambda out: out.sum())
    assert states.layers[0].grads["cell"].abs().sum() > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_float32_gradients_match_cpu():
    config, module, padded, lengths, hx, _ = _build(
        NAMED["packed-bidirectional-2-layer-lstm"], "cpu"
    )
    module = module.float()
    padded = padded.float()
    inputs, user_hx, _ = _inputs_and_output_maker(config, module, padded, lengths, hx)

    def loss(output):
        return torch.sin(output.data).sum()

    cpu = tls.capture(module, inputs, user_hx, loss=loss)
    cuda_inputs, _, _ = _inputs_and_output_maker(config, module.cuda(), padded.cuda(), lengths, hx)
    gpu = tls.capture(module, cuda_inputs, None, loss=loss)
    for mine, theirs in zip(gpu.layers, cpu.layers):
        for name in theirs.grads:
            torch.testing.assert_close(
                mine.grads[name].cpu(), theirs.grads[name], rtol=1e-4, atol=1e-5
            )
