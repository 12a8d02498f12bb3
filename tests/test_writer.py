"""Tests for `StateWriter`: array files and their indexes, bad input, errors, threads."""

import errno
import glob
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import safetensors.numpy
import torch
from tensorboard.compat.proto import event_pb2, summary_pb2, types_pb2

import tb_lstm_states as tls
from tb_lstm_states import metadata, statistics
from tb_lstm_states import states as states_lib
from tb_lstm_states.storage import convert, event_file, extras, format, plan, ranged
from tb_lstm_states.storage import writer as writer_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_states(
    kind="lstm",
    *,
    num_layers=1,
    num_directions=1,
    batch=3,
    time=6,
    hidden=4,
    lengths=None,
    seed=0,
    dtype=np.float32,
):
    """A `RecurrentStates` of random numpy arrays, zero past each sequence's length."""
    rng = np.random.default_rng(seed)
    lengths = np.full(batch, time) if lengths is None else np.asarray(lengths)
    valid = (np.arange(time)[None, :] < lengths[:, None])[:, :, None]

    def array(units=hidden):
        return (rng.standard_normal((batch, time, units)) * valid).astype(dtype)

    layers = [
        states_lib.LayerStates(
            hidden=array(),
            cell=array() if kind == "lstm" else None,
            gates={name: array() for name in states_lib.GATE_NAMES[kind]},
        )
        for _ in range(num_layers * num_directions)
    ]
    return states_lib.RecurrentStates(kind, layers, lengths, num_directions)


def arrays(states):
    """`{(layer, kind): array}` of every array of `states`."""
    return {
        (index, name): np.asarray(layer.get(name))
        for index, layer in enumerate(states.layers)
        for name in states_lib.array_kinds(states.kind)
    }


def event_files(directory):
    return sorted(glob.glob(os.path.join(str(directory), "*tfevents*")))


def events(path):
    return [event_pb2.Event.FromString(payload) for _, payload in event_file.read_records(path)]


def array_files(directory):
    return sorted(glob.glob(os.path.join(str(directory), "plugins", "lstm_states", "*")))


class Step:
    """One written step, read back two ways: with the safetensors library, and
    through its index (checked ranged reads)."""

    def __init__(self, run_dir, event, value):
        self.event, self.value = event, value
        self.tag, self.step = value.tag, event.step
        self.index = format.parse_index(value.tensor.string_val[0])
        self.path = os.path.join(run_dir, *format.PLUGIN_DIRECTORY, self.index["file"])
        with open(self.path, "rb") as f:
            self.data = f.read()
        self.tensors = safetensors.numpy.load_file(self.path)
        self.crc_table = ranged.read_crc_table(self.read_range, self.index)
        header = self.read_range(0, self.index["header_bytes"])
        self.file_metadata = ranged.parse_file_header(header, self.index)
        self.tokens = ranged.parse_tokens(self.file_metadata, self.index)
        self.content = json.loads(value.metadata.plugin_data.content)

    def read_range(self, offset, length):
        return self.data[offset : offset + length]

    def array(self, layer, kind):
        """`(through the index, through safetensors)`."""
        entry = format.find_array(self.index, layer=layer, kind=kind)
        return (
            ranged.read_array(self.read_range, self.index, self.crc_table, entry),
            self.tensors[format.array_name(layer, kind)],
        )

    def series(self, name):
        entry = format.find_array(self.index, series=name)
        return (
            ranged.read_array(self.read_range, self.index, self.crc_table, entry),
            self.tensors[format.series_name(name)],
        )

    def check_every_slice(self):
        """Reads every array (pyramid, mean) through the index: each slice checked."""
        for entry in self.index["arrays"]:
            ranged.read_array(self.read_range, self.index, self.crc_table, entry)
            if "pyramid" in entry:
                for sequence in range(self.index["batch"]):
                    ranged.read_pyramid(
                        self.read_range,
                        self.index,
                        self.crc_table,
                        entry,
                        sequence,
                        0,
                        entry["pyramid"]["blocks"],
                    )
            if "mean" in entry:
                ranged.read_mean(self.read_range, self.index, self.crc_table, entry)
        assert len(self.data) == self.index["file_bytes"]


def read_steps(directory):
    """Every step of every event file directly in `directory`, in file order (the
    first event of each is its file_version)."""
    steps = []
    for path in event_files(directory):
        written = events(path)
        assert written[0].file_version == "brain.Event:2"
        for event in written[1:]:
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == metadata.PLUGIN_NAME:
                    steps.append(Step(os.path.dirname(path), event, value))
    return steps


def stored(array, dtype):
    """What the writer should store for `array` at `dtype` (numpy's cast)."""
    with np.errstate(over="ignore"):
        return np.asarray(array).astype(dtype)


def assert_bitwise(got, want):
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got.view(np.uint8), np.ascontiguousarray(want).view(np.uint8))


CASES = {
    "lstm": dict(kind="lstm", num_layers=2),
    "gru": dict(kind="gru"),
    "rnn": dict(kind="rnn", num_layers=3),
    "bidirectional_lstm": dict(kind="lstm", num_layers=2, num_directions=2),
    "bidirectional_gru": dict(kind="gru", num_directions=2),
    "packed": dict(kind="lstm", num_directions=2, batch=4, lengths=[6, 4, 1, 0]),
    "one_sequence": dict(kind="rnn", batch=1, time=1, hidden=1),
    "long_with_pyramids": dict(
        kind="gru",
        batch=2,
        time=format.PYRAMID_MIN_TIME + 37,
        hidden=3,
        lengths=[format.PYRAMID_MIN_TIME + 37, 100],
    ),
}


@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_round_trip(tmp_path, case, dtype):
    states = make_states(**CASES[case])
    batch, time_steps = states.batch_size, states.time_steps
    series = {
        "price": np.random.default_rng(1).standard_normal((batch, time_steps)),
        "flag/x": np.ones((batch, time_steps), bool),
    }
    tokens = [["t%d" % t for t in range(n)] for n in states.lengths]
    tokens[0][:1] = ['é"\n'] if tokens[0] else []
    with tls.StateWriter(tmp_path / "run") as writer:
        writer.add_states(
            "enc/oder",
            states,
            7,
            series=series,
            tokens=tokens,
            dtype=dtype,
            description="**probe**",
        )
        writer.add_states("enc/oder", states, 8, dtype=dtype)

    first, second = read_steps(tmp_path / "run")
    assert [(s.tag, s.step) for s in (first, second)] == [("enc/oder", 7), ("enc/oder", 8)]
    assert len(array_files(tmp_path / "run")) == 2
    for step in (first, second):
        index = step.index
        assert (index["kind"], index["num_directions"], index["batch"], index["time"]) == (
            states.kind,
            states.num_directions,
            batch,
            time_steps,
        )
        assert index["num_layers"] == len(states.layers) // states.num_directions
        assert index["lengths"] == [int(n) for n in states.lengths]
        for (layer, kind), original in arrays(states).items():
            via_index, via_safetensors = step.array(layer, kind)
            # Bitwise: float32 as written, float16 exactly numpy's rounding of it.
            assert_bitwise(via_index, stored(original, dtype))
            assert_bitwise(via_safetensors, stored(original, dtype))
            entry = format.find_array(index, layer=layer, kind=kind)
            if time_steps >= format.PYRAMID_MIN_TIME:
                pyramid = step.tensors[format.pyramid_name(layer, kind)]
                assert pyramid.dtype == np.dtype(dtype)
                np.testing.assert_array_equal(  # but maybe the sign of a zero
                    pyramid, format.compute_pyramid(stored(original, dtype))
                )
                assert entry["pyramid"]["blocks"] == pyramid.shape[1]
            else:
                assert "pyramid" not in entry
            if kind == "forget":  # its mean over valid positions, of the caller's float32
                valid = np.arange(time_steps)[None, :] < np.asarray(states.lengths)[:, None]
                mean = step.tensors[extras.mean_name(layer)]
                assert mean.dtype == np.float64 and "mean" in entry
                np.testing.assert_allclose(
                    mean, np.asarray(original, np.float64)[valid].mean(0), rtol=1e-13
                )
                via_index = ranged.read_mean(step.read_range, index, step.crc_table, entry)
                assert via_index.tobytes() == mean.tobytes()
            else:
                assert "mean" not in entry
        step.check_every_slice()
        assert step.file_metadata["format"] == "tb_lstm_states"
        # An LSTM's forget means are version 3, as the index.
        version = 3 if states.kind == "lstm" else 2
        assert step.file_metadata["version"] == str(version) and index["version"] == version
        # Every tensor of the file, and nothing else.
        expected = {format.array_name(*key) for key in arrays(states)} | {format.CRC_TENSOR}
        if time_steps >= format.PYRAMID_MIN_TIME:
            expected |= {format.pyramid_name(*key) for key in arrays(states)}
        if states.kind == "lstm":
            expected |= {extras.mean_name(layer) for layer in range(len(states.layers))}
        if step is first:
            expected |= {format.series_name(name) for name in series}
        assert set(step.tensors) == expected
        np.testing.assert_array_equal(step.tensors[format.CRC_TENSOR], step.crc_table)
        table = np.asarray(index["statistics"], dtype=np.float64)
        np.testing.assert_array_equal(
            table[:, : len(statistics.COLUMNS)],
            statistics.record_statistics(states).astype(np.float64),
        )
        # The extremes of each whole stored array, for one colour scale across steps.
        assert format.STATISTICS_COLUMNS[len(statistics.COLUMNS) :] == ("min", "max")
        np.testing.assert_array_equal(
            table[:, len(statistics.COLUMNS) :],
            [
                [stored(original, dtype).min(), stored(original, dtype).max()]
                for original in arrays(states).values()
            ],
        )
        assert step.content["role"] == metadata.ROLE_INDEX
        assert step.content["units"] == {
            name: int(np.shape(states.layers[0].get(name))[2])
            for name in states_lib.array_kinds(states.kind)
        }
    for name, values in series.items():
        via_index, via_safetensors = first.series(name)
        assert_bitwise(via_index, values.astype(np.float32))
        assert_bitwise(via_safetensors, values.astype(np.float32))
    assert first.index["series"] == list(series)
    assert first.tokens == tokens
    assert first.value.metadata.summary_description == "**probe**"
    assert second.index["series"] == [] and second.tokens is None
    assert second.file_metadata["tokens"] == "null"


def test_index_event_is_a_tensorboard_summary(tmp_path):
    states = make_states("lstm", num_layers=2, lengths=[6, 2, 0])
    with tls.StateWriter(tmp_path) as writer:
        writer.add_states("enc", states, -3, description="d", dtype="float32")
        path = writer.path
    assert "tfevents" in os.path.basename(path)
    first, event = events(path)
    assert first.file_version == "brain.Event:2"
    assert event.step == -3 and 0 < event.wall_time <= time.time()
    (value,) = event.summary.value
    assert value.tag == "enc"
    assert value.metadata.plugin_data.plugin_name == metadata.PLUGIN_NAME
    assert value.metadata.data_class == summary_pb2.DATA_CLASS_TENSOR
    assert value.metadata.summary_description == "d"
    content = metadata.parse_plugin_content(value.metadata.plugin_data.content)
    assert content == {
        "version": metadata.PLUGIN_DATA_VERSION,
        "role": "index",
        "kind": "lstm",
        "num_layers": 2,
        "num_directions": 1,
        "batch": 3,
        "time": 6,
        "units": {name: 4 for name in states_lib.array_kinds("lstm")},
    }
    assert value.tensor.dtype == types_pb2.DT_STRING
    assert list(value.tensor.tensor_shape.dim) == []  # a scalar
    (index,) = value.tensor.string_val
    assert format.parse_index(index)["file"] == os.path.basename(array_files(tmp_path)[0])


def test_torch_tensors_round_trip(tmp_path, cast_path):
    numpy_states = make_states("gru", num_layers=2)
    # Time-major storage seen batch-first (as capture returns them): not contiguous.
    torch_states = states_lib.RecurrentStates(
        "gru",
        [
            states_lib.LayerStates(
                torch.from_numpy(layer.hidden.transpose(1, 0, 2).copy()).transpose(0, 1),
                None,
                {k: torch.from_numpy(v).requires_grad_() for k, v in layer.gates.items()},
            )
            for layer in numpy_states.layers
        ],
        torch.from_numpy(numpy_states.lengths),
    )
    bf16 = torch.randn(3, 6, 4).bfloat16()
    torch_states.layers[0].gates["new"] = bf16
    for dtype in ("float32", "float16"):
        with tls.StateWriter(tmp_path / dtype) as writer:
            writer.add_states("g", torch_states, 0, dtype=dtype, series={"x": torch.ones(3, 6)})
        (step,) = read_steps(tmp_path / dtype)
        for key, original in arrays(numpy_states).items():
            if key == (0, "new"):
                original = bf16.float().numpy()
            for got in step.array(*key):
                assert_bitwise(got, stored(original, dtype))
        for got in step.series("x"):
            assert_bitwise(got, np.ones((3, 6), np.float32))


def test_log_captures_real_module(tmp_path):
    capture = pytest.importorskip("tb_lstm_states.capturing").capture
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(5, 8, num_layers=2, batch_first=True, bidirectional=True)
    inputs = torch.randn(3, 7, 5)
    with tls.StateWriter(tmp_path) as writer:
        writer.log("lstm", lstm, inputs, step=np.int64(2), dtype="float32")
    (step,) = read_steps(tmp_path)
    assert step.step == 2 and step.index["kind"] == "lstm"
    assert step.index["num_layers"] == 2 and step.index["num_directions"] == 2
    expected = capture(lstm, inputs)
    for got in step.array(3, "cell"):
        np.testing.assert_array_equal(got, expected.layer(1, 1).cell.numpy())
    # The last layer's hidden states are nn.LSTM's own output.
    output, _ = lstm(inputs)
    np.testing.assert_allclose(step.array(2, "hidden")[0], output[..., :8].detach(), atol=1e-5)


def test_statistics_are_those_of_the_callers_arrays(tmp_path):
    states = make_states("gru", num_layers=2, lengths=[6, 3, 1])
    big = make_states("lstm", batch=64, time=32, hidden=64, lengths=np.arange(64) % 33)
    with tls.StateWriter(tmp_path) as writer:
        writer.add_states("g", states, 1)  # float16 record; statistics of the originals
        writer.add_states("big", big, 1)  # sampled sequences
        torch_big = states_lib.RecurrentStates(
            "lstm",
            [
                states_lib.LayerStates(
                    torch.from_numpy(big.layers[0].hidden),
                    torch.from_numpy(big.layers[0].cell),
                    {k: torch.from_numpy(v) for k, v in big.layers[0].gates.items()},
                )
            ],
            torch.from_numpy(big.lengths),
        )
        writer.add_states("torch", torch_big, 1)
    small, large, from_torch = read_steps(tmp_path)
    sampled = len(statistics.COLUMNS)
    np.testing.assert_array_equal(
        np.asarray(small.index["statistics"], np.float32)[:, :sampled],
        statistics.record_statistics(states),
    )
    np.testing.assert_array_equal(
        np.asarray(large.index["statistics"], np.float32)[:, :sampled],
        statistics.record_statistics(big),
    )
    assert large.index["statistics"] == from_torch.index["statistics"]
    assert len(statistics.sample_sequences(64, 32 * 64)) < 64  # it was sampled


def test_nan_statistics_are_null_in_the_index(tmp_path):
    states = make_states("rnn", lengths=[0, 0, 0])
    with tls.StateWriter(tmp_path) as writer:
        writer.add_states("r", states, 0)
    (step,) = read_steps(tmp_path)
    # Nothing valid to sample; every stored value is padding, which is zero.
    assert step.index["statistics"] == [[None] * len(statistics.COLUMNS) + [0.0, 0.0]]


@pytest.fixture(params=["serial", "pool"])
def cast_path(request, monkeypatch):
    """Casts every host tensor on the calling thread in slices, or every one with
    torch's thread pool (by default: the small ones, the large ones)."""
    monkeypatch.setattr(convert, "_SERIAL_VALUES", 1 << 40 if request.param == "serial" else 0)
    return request.param


def test_float16_range_nan_and_inf(tmp_path, cast_path):
    states = make_states("rnn", num_layers=3)
    big = states.layers[0].hidden
    big[0, 0, 0] = 1e5  # finite, beyond float16: this array is kept as float32
    special = states.layers[1].hidden
    special[0, 0, :3] = [np.nan, np.inf, -np.inf]
    special[1, 0, 0] = 60000.0  # within float16's range
    special[1, 0, 1] = 65519.0  # rounds to float16's largest
    mixed = states.layers[2].hidden
    mixed[0, 0, :2] = [np.inf, 70000.0]  # an infinity, and a finite value that overflows
    with tls.StateWriter(tmp_path) as writer:
        writer.add_states("r", states, 0)
        torch_states = states_lib.RecurrentStates(
            "rnn",
            [states_lib.LayerStates(torch.from_numpy(layer.hidden)) for layer in states.layers],
            states.lengths,
        )
        writer.add_states("r", torch_states, 1)
    for step in read_steps(tmp_path):
        for got in step.array(0, "hidden"):
            assert_bitwise(got, big)
        for got in step.array(1, "hidden"):
            assert got.dtype == np.float16
            assert np.isnan(got[0, 0, 0]) and got[0, 0, 1] == np.inf and got[0, 0, 2] == -np.inf
            assert got[1, 0, 1] == np.finfo(np.float16).max
            assert_bitwise(got[1:], special[1:].astype(np.float16))
        for got in step.array(2, "hidden"):
            assert_bitwise(got, mixed)


# Every float32 next to a float16 boundary (each float16 value's float32, the ties
# above it, and the values either side of them), the edges of the range, and random
# bit patterns.
def _boundary_values():
    halves = np.arange(1 << 16, dtype=np.uint32) << 13
    bits = np.concatenate(
        [
            halves,
            halves + 0x1000,
            halves + 0x0FFF,
            halves + 0x1001,
            halves + 1,
            halves - 1,
            np.array(
                [0x33000000, 0x33000001, 0x32FFFFFF, 0x477FEFFF, 0x477FF000, 0x47800000], np.uint32
            ),
            np.random.default_rng(0)
            .integers(0, 1 << 32, 1 << 18, dtype=np.uint64)
            .astype(np.uint32),
        ]
    )
    bits = np.concatenate([bits, bits | 0x80000000])
    values = bits.view(np.float32)
    values = values[np.isfinite(values) & (np.abs(values) <= 65519.0)]  # stays float16
    return values[: len(values) // 64 * 64].reshape(-1, 8, 8)


def test_float16_cast_is_numpys_at_every_boundary(cast_path):
    values = _boundary_values()
    want = values.astype(np.float16)
    for source in (values, torch.from_numpy(values)):
        assert_bitwise(convert.stored_copy(source, "float16"), want)
    wide = values.astype(np.float64)  # one rounding, as numpy does it
    for source in (wide, torch.from_numpy(wide)):
        assert_bitwise(convert.stored_copy(source, "float16"), wide.astype(np.float16))


def test_stored_copies_of_any_layout_share_no_memory(cast_path):
    base = np.random.default_rng(0).standard_normal((5, 150, 20)).astype(np.float32)
    readonly = base.copy()
    readonly.flags.writeable = False
    sources = [
        base,
        base[:, ::-1],
        base.transpose(1, 0, 2),
        readonly,
        base[:, :, ::2],
        np.broadcast_to(base[:1], base.shape),
        base.astype(np.float16),
        base.astype(">f4"),
        np.arange(30).reshape(2, 3, 5),
    ]
    for source in sources:
        for dtype in ("float16", "float32"):
            got = convert.stored_copy(source, dtype)
            assert got.flags.c_contiguous
            assert not np.shares_memory(got, source)
            assert_bitwise(got, stored(source, convert.DTYPES[dtype]))
        for rows in (None, np.array([0, 1])):
            native = np.array(source, dtype=source.dtype.newbyteorder("="))
            for value in (source, torch.from_numpy(native)):
                sample = convert.sampled_copy(value, rows)
                assert not np.shares_memory(sample, source)
                want = np.asarray(source)[rows] if rows is not None else np.asarray(source)
                np.testing.assert_array_equal(sample, want)
                assert sample.dtype.kind == "f"


@pytest.mark.parametrize("step", [1.0, 2.5, "3", True, None, np.float32(1)])
def test_step_must_be_an_int(tmp_path, step):
    with tls.StateWriter(tmp_path) as writer:
        with pytest.raises(TypeError, match="step must be an int"):
            writer.add_states("t", make_states(), step)
        with pytest.raises(TypeError, match="step must be an int"):
            writer.log("t", None, None, step)
    with pytest.raises(ValueError, match="signed 64-bit"), tls.StateWriter(tmp_path) as writer:
        writer.add_states("t", make_states(), 1 << 63)


def test_numpy_integer_steps(tmp_path):
    with tls.StateWriter(tmp_path) as writer:
        for step in (np.int32(1), np.int64(2), np.uint8(3), 2**40, -5):
            writer.add_states("t", make_states(), step)
    steps = read_steps(tmp_path)
    assert [s.step for s in steps] == [1, 2, 3, 2**40, -5]
    assert ".m5." in steps[-1].index["file"]


def _bad_series(states):
    return dict(series={"price": np.zeros((states.batch_size, states.time_steps + 1))})


def _text_series(states):
    return dict(series={"word": np.full((states.batch_size, states.time_steps), "a")})


def _bad_tokens_count(states):
    return dict(tokens=[["a"]] * (states.batch_size + 1))


def _bad_tokens_length(states):
    return dict(tokens=[["a"] * (states.time_steps + 1)] * states.batch_size)


@pytest.mark.parametrize(
    "bad, message",
    [
        (_bad_series, "series 'price' has shape"),
        (_text_series, "series 'word' must be numeric"),
        (_bad_tokens_count, "tokens must be 3 lists"),
        (_bad_tokens_length, r"tokens\[0\] must be a list of at most time=6"),
    ],
)
def test_mismatched_series_and_tokens(tmp_path, bad, message):
    states = make_states()
    with tls.StateWriter(tmp_path) as writer:
        writer.add_states("t", states, 0)
        with pytest.raises(ValueError, match=message):
            writer.add_states("t", states, 1, **bad(states))
    assert [s.step for s in read_steps(tmp_path)] == [0]
    assert len(array_files(tmp_path)) == 1


def test_mismatched_state_shapes(tmp_path):
    with tls.StateWriter(tmp_path) as writer:
        states = make_states("lstm", num_layers=2)
        states.layers[1].cell = states.layers[1].cell[:2]
        with pytest.raises(ValueError, match=r"layer 1 cell has shape \[2, 6, 4\]"):
            writer.add_states("t", states, 0)
        states = make_states("lstm")
        states.layers[0].cell = None
        with pytest.raises(ValueError, match=r"layer 0 cell must be \[batch, time, units\]"):
            writer.add_states("t", states, 0)
        states = make_states("lstm")
        states.layers[0].gates["forget"] = states.layers[0].gates["forget"][:, :, :3]
        with pytest.raises(ValueError, match="forget gate has 3 units, expected 4"):
            writer.add_states("t", states, 0)
        states = make_states("gru")
        states.lengths = np.array([6, 7, 1])
        with pytest.raises(ValueError, match="lengths must lie in"):
            writer.add_states("t", states, 0)
        states.lengths = np.array([6, 6])
        with pytest.raises(ValueError, match=r"lengths has shape \[2\], expected \[3\]"):
            writer.add_states("t", states, 0)
        with pytest.raises(ValueError, match="at least one sequence and one timestep"):
            writer.add_states("t", make_states("rnn", time=0, lengths=[0, 0, 0]), 0)
        with pytest.raises(ValueError, match="at least one sequence and one timestep"):
            writer.add_states("t", make_states("rnn", batch=0), 0)
        with pytest.raises(ValueError, match=r"layer 0 hidden has shape \[3, 6, 0\]"):
            writer.add_states("t", make_states("rnn", hidden=0), 0)
        complex_states = make_states("rnn")
        complex_states.layers[0].hidden = complex_states.layers[0].hidden * 1j
        with pytest.raises(ValueError, match="must hold real numbers"):
            writer.add_states("t", complex_states, 0)
        with pytest.raises(ValueError, match="one LayerStates per"):
            writer.add_states(
                "t",
                states_lib.RecurrentStates("rnn", make_states("rnn").layers * 3, np.full(3, 6), 2),
                0,
            )
        with pytest.raises(ValueError, match="tag must be a non-empty string"):
            writer.add_states("", make_states(), 0)
        with pytest.raises(ValueError, match="dtype must be one of"):
            writer.add_states("t", make_states(), 0, dtype="bfloat16")
        with pytest.raises(TypeError, match="states must be a RecurrentStates"):
            writer.add_states("t", {"hidden": np.zeros((1, 2, 3))}, 0)
    assert read_steps(tmp_path) == []
    assert array_files(tmp_path) == []
    # Only the file_version event: nothing of the refused records reached the file.
    assert len(events(event_files(tmp_path)[0])) == 1


def test_no_two_gib_limit_is_checked(tmp_path, monkeypatch):
    """Version 1 refused records over 2 GiB (one protobuf); an array file has no
    such limit. A 4 GiB record is planned (its size is counted) without a refusal;
    the copy is stubbed out so the test takes no memory."""
    huge = make_states("rnn", batch=1, time=1, hidden=1)
    huge.layers[0].hidden = np.broadcast_to(np.float32(0), (1, 1 << 16, 1 << 15))
    huge.lengths = np.array([1 << 16])
    job = plan.plan("t", 0, huge, None, None, None, "float32")
    assert job.nbytes == 1 << 33


def test_size_on_disk(tmp_path):
    states = make_states("lstm", num_layers=2, num_directions=2, batch=16, time=64, hidden=32)
    raw16 = sum(a.size for a in arrays(states).values()) * 2
    with tls.StateWriter(tmp_path) as writer:
        writer.flush()
        empty = os.path.getsize(writer.path)
        for step in range(3):
            writer.add_states("t", states, step)
        writer.flush()
        index_bytes = (os.path.getsize(writer.path) - empty) / 3
    file_bytes = sum(os.path.getsize(p) for p in array_files(tmp_path)) / 3
    assert file_bytes + index_bytes <= 1.05 * raw16, (file_bytes, index_bytes, raw16)


def test_arrays_can_change_after_add_states_returns(tmp_path, cast_path):
    states = make_states("rnn")
    original = states.layers[0].hidden.copy()
    tensor = torch.from_numpy(original.copy())
    with tls.StateWriter(tmp_path, max_queue_bytes=1 << 30) as writer:
        writer.add_states("t", states, 0, dtype="float32")
        states.layers[0].hidden[:] = 42  # the caller reuses its buffer at once
        for dtype in ("float32", "float16"):
            writer.add_states(
                "torch",
                states_lib.RecurrentStates("rnn", [states_lib.LayerStates(tensor)], states.lengths),
                1,
                dtype=dtype,
            )
            tensor.fill_(42)
            tensor.copy_(torch.from_numpy(original))
    numpy_step, torch32, torch16 = read_steps(tmp_path)
    assert_bitwise(numpy_step.array(0, "hidden")[0], original)
    assert_bitwise(torch32.array(0, "hidden")[0], original)
    assert_bitwise(torch16.array(0, "hidden")[0], original.astype(np.float16))


def test_many_threads(tmp_path):
    errors = []
    with tls.StateWriter(tmp_path, max_queue_bytes=4096) as writer:

        def work(thread):
            try:
                for i in range(5):
                    writer.add_states("thread%d" % thread, make_states(seed=i), i)
                writer.flush()
            except Exception as e:
                errors.append(e)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    steps = read_steps(tmp_path)
    assert sorted((s.tag, s.step) for s in steps) == [
        ("thread%d" % t, i) for t in range(4) for i in range(5)
    ]
    for tag in ("thread%d" % t for t in range(4)):  # per tag, in the order written
        assert [s.step for s in steps if s.tag == tag] == list(range(5))
    for s in steps:
        assert_bitwise(
            s.array(0, "hidden")[0], make_states(seed=s.step).layers[0].hidden.astype(np.float16)
        )
    assert len(array_files(tmp_path)) == 20


class FullDisk:
    """Replaces the writes of `event_file.write_all` (array files and event records):
    `fail(fd, data)` decides, per write, to write part of it and fail with ENOSPC."""

    def __init__(self, monkeypatch, fail):
        self.fail = fail
        real_write = event_file._write

        def write(fd, data):
            data = bytes(data)
            part = self.fail(fd, data)
            if part is not None:
                real_write(fd, data[:part])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_write(fd, data)

        def writev(fd, buffers):
            return write(fd, b"".join(bytes(b) for b in buffers))

        monkeypatch.setattr(event_file, "_write", write)
        monkeypatch.setattr(event_file, "_writev", writev)


def is_event_file(fd):
    return "tfevents" in os.readlink("/proc/self/fd/%d" % fd)


needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")


@needs_proc
@pytest.mark.parametrize("where", ["array file", "index"])
def test_full_disk_names_the_failing_record_and_keeps_the_others(tmp_path, monkeypatch, where):
    """A full disk while step 1 is written: the next call raises, naming step 1 (not
    the record before or after it); step 1 leaves nothing behind (no partial array
    file, no partial record), and the writer goes on."""
    states = {step: make_states(seed=step, batch=40, time=50, hidden=64) for step in range(4)}
    failing = {"step": None, "calls": 0}

    def fail(fd, data):
        if failing["step"] is None or is_event_file(fd) != (where == "index"):
            return None
        if where == "array file":
            failing["calls"] += 1
            if failing["calls"] < 2:  # a few blocks in: a partial file on disk
                return None
        failing["step"] = None
        return len(data) // 2

    writer = tls.StateWriter(tmp_path)
    FullDisk(monkeypatch, fail)
    writer.add_states("t", states[0], 0)
    writer.flush()
    gate = threading.Event()
    real_write = writer_lib.StateWriter._write

    def write(self, job):
        if job.step == 1:
            failing["step"] = 1
        gate.wait()  # steps 1 and 2 are both queued before step 1 is written
        real_write(self, job)

    monkeypatch.setattr(writer_lib.StateWriter, "_write", write)
    writer.add_states("t", states[1], 1)
    writer.add_states("t", states[2], 2)
    gate.set()
    with pytest.raises(RuntimeError, match="could not write step 1 of tag 't'") as info:
        writer.flush()
    assert "step 2" not in str(info.value) and "step 0" not in str(info.value)
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.ENOSPC
    writer.add_states("t", states[3], 3)  # no error left over for this one
    writer.close()
    steps = read_steps(tmp_path)  # every record reads, none is corrupt
    assert [s.step for s in steps] == [0, 2, 3]
    for s in steps:
        s.check_every_slice()
        assert_bitwise(s.array(0, "hidden")[0], states[s.step].layers[0].hidden.astype(np.float16))
    assert len(array_files(tmp_path)) == 3  # the failed one was removed


@needs_proc
def test_an_error_is_raised_by_the_next_add_states_or_close(tmp_path, monkeypatch):
    def fail(fd, data):
        return 0 if not is_event_file(fd) else None

    writer = tls.StateWriter(tmp_path)
    FullDisk(monkeypatch, fail)
    gate = threading.Event()
    real_write = writer_lib.StateWriter._write

    def write(self, job):
        gate.wait()  # both are queued before either fails
        real_write(self, job)

    monkeypatch.setattr(writer_lib.StateWriter, "_write", write)
    writer.add_states("a", make_states(), 5)
    writer.add_states("b", make_states(), 6)
    gate.set()
    while True:  # wait until both failed, without flush (which would raise)
        with writer._lock:
            if writer._done == 2:
                break
        time.sleep(0.01)
    with pytest.raises(
        RuntimeError,
        match=r"step 5 of tag 'a'.*and 1 later record: step 6 "
        r"of tag 'b'",
    ) as info:
        writer.add_states("c", make_states(), 7)
    monkeypatch.undo()
    writer.add_states("c", make_states(), 8)  # the call that raised queued nothing
    writer.close()
    assert [s.step for s in read_steps(tmp_path)] == [8]
    assert info.value.__cause__.errno == errno.ENOSPC


def test_short_writes_go_on_where_they_stopped(tmp_path, monkeypatch):
    """A short write (a signal, a nearly full disk) goes on mid-buffer."""
    calls = []
    real_write = os.write

    def write(fd, data):
        calls.append(len(data))
        return real_write(fd, bytes(data)[: max(1, min(len(data) // 2, 100_000))])

    def writev(fd, buffers):
        return write(fd, bytes(buffers[0]))

    monkeypatch.setattr(event_file, "_write", write)
    monkeypatch.setattr(event_file, "_writev", writev)
    big = {step: make_states(seed=step, batch=30, time=100, hidden=64) for step in range(3)}
    with tls.StateWriter(tmp_path) as writer:
        for step in range(3):
            writer.add_states("t", big[step], step)
    assert len(calls) > 30
    steps = read_steps(tmp_path)
    assert [s.step for s in steps] == [0, 1, 2]
    for s in steps:
        s.check_every_slice()
        assert_bitwise(s.array(0, "cell")[1], big[s.step].layers[0].cell.astype(np.float16))


def test_close_and_context_manager(tmp_path):
    writer = tls.StateWriter(tmp_path)
    writer.add_states("t", make_states(), 0)
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        writer.add_states("t", make_states(), 1)
    with pytest.raises(ValueError, match="exactly one of"):
        tls.StateWriter()
    with pytest.raises(ValueError, match="exactly one of"):
        tls.StateWriter(tmp_path, summary_writer=object())
    with pytest.raises(ValueError, match="summary_writer must be"):
        tls.StateWriter(summary_writer=object())
    assert [s.step for s in read_steps(tmp_path)] == [0]
    assert writer.logdir == str(tmp_path)


def test_summary_writer_run(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    sw = SummaryWriter(str(tmp_path / "exp1"))
    sw.add_scalar("loss", 1.0, 0)
    sw.flush()
    with tls.StateWriter(summary_writer=sw) as writer:
        writer.add_states("enc", make_states(), 0)
        ours = os.path.basename(writer.path)
        assert writer.logdir == str(tmp_path / "exp1")
    sw.close()
    # A Python loader without --reload_multifile follows only the last file: the
    # user's scalars, not these states.
    assert next(os.path.basename(p) for p in event_files(tmp_path / "exp1")) == ours
    assert [(s.tag, s.step) for s in read_steps(tmp_path / "exp1")] == [("enc", 0)]
    assert len(array_files(tmp_path / "exp1")) == 1


def test_queue_is_bounded(tmp_path, monkeypatch):
    seen, writers = [], []
    real_write = writer_lib.StateWriter._write

    def slow_write(self, job):
        with self._lock:
            seen.append(self._queued_bytes)
        time.sleep(0.02)  # a slow disk: the queue fills up behind this write
        real_write(self, job)

    monkeypatch.setattr(writer_lib.StateWriter, "_write", slow_write)
    states = make_states(batch=4, time=8, hidden=8)
    record_bytes = sum(a.size for a in arrays(states).values()) * 2
    writer = tls.StateWriter(tmp_path, max_queue_bytes=2 * record_bytes + 1000)
    writers.append(writer)
    started = time.perf_counter()
    for step in range(10):
        writer.add_states("t", states, step)
    waited = time.perf_counter() - started
    writer.close()
    assert len(seen) == 10
    assert max(seen) <= 2 * record_bytes + 1000  # add_states waited for room
    assert max(seen) > record_bytes  # and the queue did hold more than one record
    assert waited > 0.1  # it waited for about 8 of the 10 writes
    assert len(read_steps(tmp_path)) == 10
    # A record larger than the bound is still written, alone.
    with tls.StateWriter(tmp_path / "small", max_queue_bytes=10) as writer:
        writer.add_states("t", states, 0)
        writer.add_states("t", states, 1)
    assert len(read_steps(tmp_path / "small")) == 2


def test_close_while_add_states_waits_for_room(tmp_path, monkeypatch):
    gate = threading.Event()
    real_write = writer_lib.StateWriter._write

    def write(self, job):
        gate.wait()
        real_write(self, job)

    monkeypatch.setattr(writer_lib.StateWriter, "_write", write)
    writer = tls.StateWriter(tmp_path, max_queue_bytes=10)
    writer.add_states("t", make_states(), 0)
    errors = []

    def second():
        try:
            writer.add_states("t", make_states(), 1)
        except ValueError as e:
            errors.append(e)

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.1)
    closer = threading.Thread(target=writer.close)
    closer.start()
    thread.join(10)
    gate.set()
    closer.join(10)
    assert errors and "closed while add_states waited" in str(errors[0])
    assert [s.step for s in read_steps(tmp_path)] == [0]


def test_records_left_queued_are_written_at_exit(tmp_path):
    script = (
        "import sys, numpy as np\n"
        "import tb_lstm_states as tls\n"
        "from tb_lstm_states import states as S\n"
        "writer = tls.StateWriter(sys.argv[1])  # never closed: the exit hook writes\n"
        "h = np.ones((2, 5, 3), np.float32)\n"
        "for step in range(5):\n"
        "    writer.add_states('t', S.RecurrentStates('rnn', [S.LayerStates(h)], [5, 5]), step)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, cwd=REPO, timeout=120)
    assert [s.step for s in read_steps(tmp_path)] == list(range(5))


KILLED_WRITER = """
import sys, numpy as np
import tb_lstm_states as tls
from tb_lstm_states import states as S
rng = np.random.default_rng(int(sys.argv[2]))
writer = tls.StateWriter(sys.argv[1], max_queue_bytes=8 << 20)
step = 0
while True:
    if step == 1:
        writer.flush()
        print("ready", flush=True)
    batch, time = int(rng.integers(1, 9)), int(rng.integers(1, 3000))
    h = rng.standard_normal((batch, time, 64)).astype(np.float32)
    writer.add_states("t%d" % (step % 2), S.RecurrentStates("rnn", [S.LayerStates(h)],
                      rng.integers(0, time + 1, batch)), step)
    step += 1
"""


def test_killed_writer_leaves_only_indexes_of_complete_files(tmp_path):
    """A writer killed at random points (SIGKILL): every index in its event file
    points to a complete array file, every slice of which passes its checksum."""
    rng = np.random.default_rng(0)
    total = 0
    for attempt in range(6):
        run = tmp_path / str(attempt)
        process = subprocess.Popen(
            [sys.executable, "-c", KILLED_WRITER, str(run), str(attempt)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout.readline().strip() == "ready"
            time.sleep(float(rng.uniform(0.05, 0.8)))
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        steps = read_steps(run)
        for s in steps:
            s.check_every_slice()
            assert s.index["file_bytes"] == os.path.getsize(s.path)
        assert [s.step for s in steps] == list(range(len(steps)))
        total += len(steps)
    assert total > 6  # the writers got somewhere


def test_tensorboard_loads_the_index_summaries(tmp_path):
    """TensorBoard's own (Python) loader keeps every index, as a tensor of this plugin."""
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    with tls.StateWriter(tmp_path) as writer:
        for step in range(3):
            writer.add_states("enc", make_states(seed=step), step)
    accumulator = event_accumulator.EventAccumulator(
        str(tmp_path), size_guidance={event_accumulator.TENSORS: 0}
    )
    accumulator.Reload()
    assert list(accumulator.PluginTagToContent(metadata.PLUGIN_NAME)) == ["enc"]
    tensors = accumulator.Tensors("enc")
    assert [t.step for t in tensors] == [0, 1, 2]
    for event, step in zip(tensors, read_steps(tmp_path)):
        index = tensor_util.make_ndarray(event.tensor_proto).item()
        assert format.parse_index(index) == step.index


@pytest.mark.parametrize("shape", [(2, 64, 3), (3, 4000, 40), (1, 130, 5000), (2, 65, 1)])
def test_pyramid_is_each_blocks_minimum_and_maximum(shape):
    rng = np.random.default_rng(1)
    array = (rng.standard_normal(shape) * rng.choice([1e-6, 1, 1e4], shape)).astype(np.float16)
    array[0, 1, 0], array[-1, 0, -1] = np.inf, -np.inf
    every = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    flat = array.reshape(-1)  # a view
    flat[::7] = np.resize(every[np.isfinite(every)], len(flat[::7]))  # every finite value
    array[-1, -1, 0] = np.nan
    for values in (array, array.astype(np.float32)):
        got = format.compute_pyramid(values)
        assert got.dtype == values.dtype and got.shape[:2] == (shape[0], -(-shape[1] // 64))
        for block in range(got.shape[1]):
            part = values[:, block * 64 : (block + 1) * 64].astype(np.float64)
            np.testing.assert_array_equal(got[:, block, 0], part.min(axis=1))
            np.testing.assert_array_equal(got[:, block, 1], part.max(axis=1))


def test_files_are_opened_in_binary_mode_where_the_os_has_one(tmp_path):
    # Windows' os.open is text mode unless O_BINARY is given (every 0x0A would be
    # written as 0x0D 0x0A). Here the flag is faked before the package is imported,
    # and every file the writer creates must be opened with it.
    script = textwrap.dedent("""
        import json, os, sys
        import numpy as np
        os.O_BINARY = 1 << 28
        opened = []
        real_open = os.open
        def recording_open(path, flags, *args, **kwargs):
            if flags & os.O_CREAT:
                opened.append((os.path.basename(path), bool(flags & os.O_BINARY)))
            return real_open(path, flags & ~os.O_BINARY, *args, **kwargs)
        os.open = recording_open
        import tb_lstm_states as tls
        from tb_lstm_states import states as S
        with tls.StateWriter(sys.argv[1]) as writer:
            h = np.full((2, 5, 3), 10.0, dtype=np.float32)  # 0x0A bytes aplenty
            writer.add_states("t", S.RecurrentStates("rnn", [S.LayerStates(h)], [5, 5]), 0)
        print(json.dumps(opened))
    """)
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    opened = json.loads(result.stdout)
    assert {name.endswith(".safetensors") for name, _ in opened} == {True, False}
    assert all(binary for _, binary in opened), opened


def test_a_full_disk_at_open_leaves_no_file_and_no_descriptor(tmp_path, monkeypatch):
    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(event_file, "_write", full)
    monkeypatch.setattr(event_file, "_writev", full)
    descriptors = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        with pytest.raises(OSError, match="No space left"):
            tls.StateWriter(str(tmp_path))
    assert len(os.listdir("/proc/self/fd")) == descriptors
    assert os.listdir(str(tmp_path)) == []


@pytest.mark.parametrize(
    "too_many,message",
    [
        (dict(num_layers=format.MAX_LAYERS + 1, hidden=1, time=1, batch=1), "MAX_LAYERS"),
        (dict(batch=format.MAX_BATCH + 1, time=1, hidden=1), "MAX_BATCH"),
        (dict(hidden=format.MAX_UNITS + 1, time=1, batch=1), "MAX_UNITS"),
    ],
)
def test_records_over_the_caps_are_refused_at_write_time(tmp_path, too_many, message):
    states = make_states("rnn", **too_many)
    with tls.StateWriter(str(tmp_path)) as writer:
        with pytest.raises(ValueError, match=message):
            writer.add_states("t", states, 0)
        at_cap = make_states("rnn", batch=1, time=1, hidden=1)
        with pytest.raises(ValueError, match="MAX_SERIES"):
            writer.add_states(
                "t", at_cap, 0, series={"s%d" % i: [[0.0]] for i in range(format.MAX_SERIES + 1)}
            )
        with pytest.raises(ValueError, match="at most %d characters" % format.MAX_NAME_CHARS):
            writer.add_states("t", at_cap, 0, series={"x" * (format.MAX_NAME_CHARS + 1): [[0.0]]})
        writer.add_states("t", at_cap, 1, series={"x" * format.MAX_NAME_CHARS: [[0.0]]})
    assert [r.step for r in tls.read_states(tmp_path)] == [1]


def test_the_call_that_raises_a_writer_error_says_its_own_record_was_not_queued(
    tmp_path, monkeypatch
):
    def fail(fd, data):
        return len(data) // 2 if not is_event_file(fd) else None

    writer = tls.StateWriter(tmp_path)
    FullDisk(monkeypatch, fail)
    writer.add_states("t", make_states(seed=1), 1)
    deadline = time.time() + 30
    while not writer._errors and time.time() < deadline:  # the writer thread failed step 1
        time.sleep(0.01)
    with pytest.raises(RuntimeError) as info:
        writer.add_states("t", make_states(seed=2), 2)
    message = str(info.value)
    assert "could not write step 1 of tag 't'" in message
    assert "step 2 of tag 't', given to this call, was not queued either" in message
    monkeypatch.undo()
    writer.add_states("t", make_states(seed=2), 2)  # given again, it is written
    writer.close()
    assert [s.step for s in read_steps(tmp_path)] == [2]


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_states_on_any_device_are_written_exactly(tmp_path, device, dtype):
    """Captured on the device it runs on (a GPU when present), written as stored."""
    module = torch.nn.LSTM(5, 7, num_layers=2, batch_first=True).to(device)
    inputs = torch.randn(3, 11, 5, device=device)
    inputs[0, 3, 0] = 1e5  # a value beyond float16 in a gate's pre-activation is fine
    with tls.StateWriter(tmp_path) as writer:
        writer.log("enc", module, inputs, 0, dtype=dtype, series={"x": inputs[:, :, 1]})
    states = tls.capture(module, inputs)
    (record,) = tls.read_states(tmp_path)
    for index, layer in enumerate(states.layers):
        for name in states_lib.array_kinds("lstm"):
            expected = layer.get(name).detach().cpu().float().numpy().astype(dtype)
            np.testing.assert_array_equal(record.states.layers[index].get(name), expected)
    np.testing.assert_array_equal(record.series["x"], inputs[:, :, 1].cpu().numpy())
