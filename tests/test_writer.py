"""Tests for `StateWriter`: round trips, the event bytes, bad input, errors, threads."""

import errno
import glob
import os
import threading
import time

import google_crc32c
import numpy as np
import pytest
import torch

from tensorboard.compat.proto import event_pb2, summary_pb2

import tb_lstm_states as tls
from conftest import fake_writev, run_without_half_conversion
from tb_lstm_states import codec, copy_kernel, event_file, metadata, statistics
from tb_lstm_states import writer as writer_lib
from tb_lstm_states import states as states_lib


def make_states(kind="lstm", *, num_layers=1, num_directions=1, batch=3, time=6, hidden=4,
                lengths=None, seed=0, dtype=np.float32):
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


CASES = {
    "lstm": dict(kind="lstm", num_layers=2),
    "gru": dict(kind="gru"),
    "rnn": dict(kind="rnn", num_layers=3),
    "bidirectional_lstm": dict(kind="lstm", num_layers=2, num_directions=2),
    "bidirectional_gru": dict(kind="gru", num_directions=2),
    "packed": dict(kind="lstm", num_directions=2, batch=4, lengths=[6, 4, 1, 0]),
}


@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_round_trip(tmp_path, case, dtype):
    states = make_states(**CASES[case])
    series = {"price": np.random.default_rng(1).standard_normal((states.batch_size, 6))}
    tokens = [["t%d" % t for t in range(n)] for n in states.lengths]
    with tls.StateWriter(tmp_path / "run") as writer:
        writer.add_states("enc", states, 7, series=series, tokens=tokens, dtype=dtype,
                          description="**probe**")
        writer.add_states("enc", states, 8, dtype=dtype)

    records = list(tls.read_states(tmp_path))
    assert [(r.run, r.tag, r.step) for r in records] == [("run", "enc", 7), ("run", "enc", 8)]
    record = records[0]
    assert record.states.kind == states.kind
    assert record.states.num_directions == states.num_directions
    assert len(record.states.layers) == len(states.layers)
    np.testing.assert_array_equal(record.states.lengths, states.lengths)
    for key, original in arrays(states).items():
        got = arrays(record.states)[key]
        assert got.dtype == np.dtype(dtype), key
        # Bitwise: float32 as written, float16 exactly numpy's rounding of it.
        np.testing.assert_array_equal(got.view(np.uint8), original.astype(dtype).view(np.uint8))
    np.testing.assert_array_equal(record.series["price"], series["price"].astype(np.float32))
    assert record.tokens == tokens
    assert record.description == "**probe**"
    assert records[1].series == {} and records[1].tokens is None


def test_torch_tensors_round_trip(tmp_path):
    numpy_states = make_states("gru", num_layers=2)
    torch_states = states_lib.RecurrentStates(
        "gru",
        [states_lib.LayerStates(torch.from_numpy(layer.hidden), None,
                                {k: torch.from_numpy(v) for k, v in layer.gates.items()})
         for layer in numpy_states.layers],
        torch.from_numpy(numpy_states.lengths),
    )
    with tls.StateWriter(tmp_path) as writer:
        writer.add_states("g", torch_states, 0, dtype="float32",
                          series={"x": torch.ones(3, 6)})
    (record,) = tls.read_states(tmp_path)
    assert record.run == "."
    for key, original in arrays(numpy_states).items():
        np.testing.assert_array_equal(arrays(record.states)[key], original)
    np.testing.assert_array_equal(record.series["x"], np.ones((3, 6), np.float32))


def test_log_captures_real_module(tmp_path):
    capture = pytest.importorskip("tb_lstm_states.capturing").capture
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(5, 8, num_layers=2, batch_first=True, bidirectional=True)
    inputs = torch.randn(3, 7, 5)
    with tls.StateWriter(tmp_path) as writer:
        writer.log("lstm", lstm, inputs, step=np.int64(2), dtype="float32")
    (record,) = tls.read_states(tmp_path)
    assert record.step == 2 and record.states.kind == "lstm"
    assert record.states.num_layers == 2 and record.states.num_directions == 2
    expected = capture(lstm, inputs)
    np.testing.assert_array_equal(
        record.states.layer(1, 1).cell, expected.layer(1, 1).cell.numpy())
    # The last layer's hidden states are nn.LSTM's own output.
    output, _ = lstm(inputs)
    np.testing.assert_allclose(record.states.layer(1, 0).hidden, output[..., :8].detach(),
                               atol=1e-5)


def test_event_bytes_are_what_protobuf_would_serialize(tmp_path):
    states = make_states("lstm", num_layers=2, lengths=[6, 2, 0])
    series = {"y": np.arange(18.0).reshape(3, 6)}
    with tls.StateWriter(tmp_path) as writer:
        writer.add_states("enc", states, -3, series=series, tokens=[["a"], [], ["b", "c"]],
                          description="d", dtype="float32")
        path = writer.path
    assert "tfevents" in os.path.basename(path)
    first, event = events(path)
    assert first.file_version == "brain.Event:2"
    assert event.step == -3 and event.wall_time > 0
    expected = tls.states_pb("enc", states, series=series, tokens=[["a"], [], ["b", "c"]],
                             description="d", dtype="float32")
    # The record, field by field: hand encoding and protobuf agree.
    assert event.summary.value[0] == expected.value[0]
    assert event.summary.value[0].SerializeToString() == expected.value[0].SerializeToString()
    got, want = event.summary.value[1], expected.value[1]
    assert got.tag == "enc" + metadata.STATISTICS_SUFFIX
    assert got.metadata == want.metadata
    assert event.summary.value[0].metadata.data_class == summary_pb2.DATA_CLASS_BLOB_SEQUENCE
    assert got.metadata.data_class == summary_pb2.DATA_CLASS_TENSOR
    np.testing.assert_array_equal(
        np.frombuffer(got.tensor.tensor_content, "<f4"),
        np.frombuffer(want.tensor.tensor_content, "<f4"))


def test_statistics_are_those_of_states_pb(tmp_path):
    states = make_states("gru", num_layers=2, lengths=[6, 3, 1])
    with tls.StateWriter(tmp_path) as writer:
        writer.add_states("g", states, 1)  # float16 record; statistics of the originals
        path = writer.path
    value = events(path)[1].summary.value[1]
    assert value == tls.states_pb("g", states).value[1]


def test_float16_range_nan_and_inf(tmp_path):
    states = make_states("rnn", num_layers=2)
    big = states.layers[0].hidden
    big[0, 0, 0] = 1e5  # finite, beyond float16: this array is kept as float32
    special = states.layers[1].hidden
    special[0, 0, :3] = [np.nan, np.inf, -np.inf]
    special[1, 0, 0] = 60000.0  # within float16's range
    with tls.StateWriter(tmp_path) as writer:
        writer.add_states("r", states, 0)
    (record,) = tls.read_states(tmp_path)
    assert record.states.layers[0].hidden.dtype == np.float32
    np.testing.assert_array_equal(record.states.layers[0].hidden, big)
    kept = record.states.layers[1].hidden
    assert kept.dtype == np.float16
    assert np.isnan(kept[0, 0, 0]) and kept[0, 0, 1] == np.inf and kept[0, 0, 2] == -np.inf
    np.testing.assert_array_equal(kept.view(np.uint16), special.astype(np.float16).view(np.uint16))


@pytest.mark.parametrize("step", [1.0, 2.5, "3", True, None, np.float32(1)])
def test_step_must_be_an_int(tmp_path, step):
    with tls.StateWriter(tmp_path) as writer:
        with pytest.raises(TypeError, match="step must be an int"):
            writer.add_states("t", make_states(), step)


def test_numpy_integer_steps(tmp_path):
    with tls.StateWriter(tmp_path) as writer:
        for step in (np.int32(1), np.int64(2), np.uint8(3), 2**40):
            writer.add_states("t", make_states(), step)
    assert [r.step for r in tls.read_states(tmp_path)] == [1, 2, 3, 2**40]


def _bad_series(states):
    return dict(series={"price": np.zeros((states.batch_size, states.time_steps + 1))})


def _bad_tokens_count(states):
    return dict(tokens=[["a"]] * (states.batch_size + 1))


def _bad_tokens_length(states):
    return dict(tokens=[["a"] * (states.time_steps + 1)] * states.batch_size)


@pytest.mark.parametrize("bad, message", [
    (_bad_series, "series 'price' has shape"),
    (_bad_tokens_count, "tokens must be 3 lists"),
    (_bad_tokens_length, r"tokens\[0\] must be a list of at most time=6"),
])
def test_mismatched_series_and_tokens(tmp_path, bad, message):
    states = make_states()
    with tls.StateWriter(tmp_path) as writer:
        writer.add_states("t", states, 0)
        with pytest.raises(ValueError, match=message):
            writer.add_states("t", states, 1, **bad(states))
    assert [r.step for r in tls.read_states(tmp_path)] == [0]


def test_mismatched_state_shapes(tmp_path):
    with tls.StateWriter(tmp_path) as writer:
        states = make_states("lstm", num_layers=2)
        states.layers[1].cell = states.layers[1].cell[:2]
        with pytest.raises(ValueError, match=r"layer 1 cell has shape \[2, 6, 4\]"):
            writer.add_states("t", states, 0)
        states = make_states("lstm")
        states.layers[0].gates["forget"] = states.layers[0].gates["forget"][:, :, :3]
        with pytest.raises(ValueError, match="forget gate has 3 units, expected 4"):
            writer.add_states("t", states, 0)
        states = make_states("gru")
        states.lengths = np.array([6, 7, 1])
        with pytest.raises(ValueError, match="lengths must lie in"):
            writer.add_states("t", states, 0)
        with pytest.raises(ValueError, match="tag must be a non-empty string"):
            writer.add_states("", make_states(), 0)
        with pytest.raises(ValueError, match="dtype must be one of"):
            writer.add_states("t", make_states(), 0, dtype="bfloat16")
        with pytest.raises(TypeError, match="states must be a RecurrentStates"):
            writer.add_states("t", {"hidden": np.zeros((1, 2, 3))}, 0)
    assert list(tls.read_states(tmp_path)) == []
    # Only the file_version event: nothing of the refused records reached the file.
    assert len(events(event_files(tmp_path)[0])) == 1


def test_record_over_two_gib_is_refused_before_anything_is_written(tmp_path):
    with tls.StateWriter(tmp_path) as writer:
        writer.add_states("t", make_states(), 0)
        writer.flush()
        huge = make_states("rnn", batch=1, time=1, hidden=1)
        # 2**31 float16 values (4 GiB) that take no memory: refused from the shapes.
        huge.layers[0].hidden = np.broadcast_to(np.float32(0), (1, 1 << 16, 1 << 15))
        huge.lengths = np.array([1 << 16])
        with pytest.raises(ValueError, match="over the 2 GiB limit"):
            writer.add_states("t", huge, 1)
        writer.add_states("t", make_states(), 2)
    assert [r.step for r in tls.read_states(tmp_path)] == [0, 2]


def test_record_limit_is_checked_on_the_stored_size(tmp_path, monkeypatch):
    # float16 asked, float32 needed: only known after the conversion.
    states = make_states("rnn", hidden=4000)
    size16 = states.layers[0].hidden.size * 2  # 144 kB; 288 kB at float32
    monkeypatch.setattr(writer_lib, "MAX_EVENT_BYTES", size16 + 60000)
    with tls.StateWriter(tmp_path) as writer:
        writer.add_states("t", states, 0)
        states.layers[0].hidden[0, 0, 0] = 1e6
        with pytest.raises(ValueError, match="over the 2 GiB limit"):
            writer.add_states("t", states, 1)
    assert [r.step for r in tls.read_states(tmp_path)] == [0]


def test_size_on_disk(tmp_path):
    states = make_states("lstm", num_layers=2, num_directions=2, batch=16, time=64, hidden=32)
    raw16 = sum(a.size for a in arrays(states).values()) * 2
    with tls.StateWriter(tmp_path) as writer:
        writer.flush()
        empty = os.path.getsize(writer.path)
        for step in range(3):
            writer.add_states("t", states, step)
        writer.flush()
        per_step = (os.path.getsize(writer.path) - empty) / 3
    assert per_step <= 1.05 * raw16 + 4096, (per_step, raw16)


def test_arrays_can_change_after_add_states_returns(tmp_path):
    states = make_states("rnn")
    original = states.layers[0].hidden.copy()
    with tls.StateWriter(tmp_path, max_queue_bytes=1 << 30) as writer:
        writer.add_states("t", states, 0, dtype="float32")
        states.layers[0].hidden[:] = 42  # the caller reuses its buffer at once
    (record,) = tls.read_states(tmp_path)
    np.testing.assert_array_equal(record.states.layers[0].hidden, original)


def test_many_threads(tmp_path):
    errors = []
    with tls.StateWriter(tmp_path, max_queue_bytes=4096) as writer:
        def work(thread):
            try:
                for i in range(5):
                    writer.add_states("thread%d" % thread, make_states(seed=i), i)
                writer.flush()
            except Exception as e:  # noqa: BLE001
                errors.append(e)
        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    records = list(tls.read_states(tmp_path))
    assert sorted((r.tag, r.step) for r in records) == [
        ("thread%d" % t, i) for t in range(4) for i in range(5)]
    for r in records:  # per tag, in the order each thread wrote them
        np.testing.assert_array_equal(
            r.states.layers[0].hidden, make_states(seed=r.step).layers[0].hidden.astype(np.float16))


def test_an_error_after_queueing_cuts_the_record(tmp_path, monkeypatch):
    # The writer thread starts writing a record before add_states has computed its
    # statistics; if those fail, the record is cut and the error raised.
    real_prepare = statistics.RecordStatistics.prepare
    failing = {"step": 1}

    def prepare(self, states):
        compute = real_prepare(self, states)

        def maybe_fail():
            if failing["step"] is not None:
                failing["step"] = None
                time.sleep(0.05)  # the writer thread is writing the arrays meanwhile
                raise KeyboardInterrupt
            return compute()
        return maybe_fail

    with tls.StateWriter(tmp_path) as writer:
        writer.add_states("t", make_states(), 0)
        writer.flush()
        monkeypatch.setattr(statistics.RecordStatistics, "prepare", prepare)
        with pytest.raises(KeyboardInterrupt):
            writer.add_states("t", make_states(), 1)
        writer.add_states("t", make_states(), 2)  # no error left over for this one
        writer.flush()
    assert [r.step for r in tls.read_states(tmp_path)] == [0, 2]


def test_a_record_whose_pieces_miss_its_length_is_cut(tmp_path, monkeypatch):
    """A guard against bugs in the event's layout: a record whose pieces do not add up
    to the length in its frame is refused and cut, though its first parts are
    already in the file."""
    real_init = writer_lib._Job.__init__

    def init(self, *args):
        real_init(self, *args)
        if self.step == 1:
            self.stream = event_file.RecordStream(self.stream.length + 3,
                                                  len(self.stream._rows) - 2)

    monkeypatch.setattr(writer_lib._Job, "__init__", init)
    with tls.StateWriter(tmp_path) as writer:
        writer.add_states("t", make_states(), 0)
        with pytest.raises(ValueError, match="not the [0-9]+ announced"):
            writer.add_states("t", make_states(), 1)
        writer.add_states("t", make_states(), 2)
    assert [r.step for r in tls.read_states(tmp_path)] == [0, 2]


def test_writer_thread_error_surfaces_and_earlier_records_survive(tmp_path):
    full = threading.Event()

    def write(fd, buffers):
        data = b"".join(buffers)
        if full.is_set():  # the first write of the next record: half of it, then a full disk
            full.clear()
            os.write(fd, data[: len(data) // 2])
            return -errno.ENOSPC
        return os.write(fd, data)

    writer = tls.StateWriter(tmp_path)
    writer.add_states("t", make_states(), 0)
    writer.flush()
    with fake_writev(write):
        full.set()
        writer.add_states("t", make_states(), 1)  # fails
        with pytest.raises(RuntimeError, match="could not write step 1 of tag 't'") as info:
            writer.flush()
        assert isinstance(info.value.__cause__, OSError)
        assert info.value.__cause__.errno == errno.ENOSPC
        writer.add_states("t", make_states(), 2)  # the writer goes on
        writer.close()
    # The half-written record was cut away: every record reads, none is corrupt.
    assert [r.step for r in tls.read_states(tmp_path)] == [0, 2]


def test_short_writes_go_on_where_they_stopped(tmp_path):
    """A short `writev` (a signal, a nearly full disk) goes on mid-piece."""
    calls = []

    def write(fd, buffers):
        calls.append(len(buffers))
        data = b"".join(buffers)
        return os.write(fd, data[: max(1, min(len(buffers[0]) // 2, 4096))])

    with fake_writev(write), tls.StateWriter(tmp_path) as writer:
        for step in range(3):
            writer.add_states("t", make_states(seed=step), step)
        writer.flush()
    assert len(calls) > 30
    records = list(tls.read_states(tmp_path))
    assert [r.step for r in records] == [0, 1, 2]
    for r in records:
        np.testing.assert_array_equal(
            r.states.layers[0].hidden, make_states(seed=r.step).layers[0].hidden.astype(np.float16))


def test_interrupted_writes_are_tried_again(tmp_path):
    """A `writev` a signal interrupts before it wrote anything (EINTR) is not an error."""
    calls = []

    def write(fd, buffers):
        calls.append(len(buffers))
        if len(calls) % 2:
            return -errno.EINTR
        return os.write(fd, b"".join(buffers))

    with fake_writev(write), tls.StateWriter(tmp_path) as writer:
        writer.add_states("t", make_states(), 0)
        writer.flush()
    assert len(calls) >= 2
    assert [r.step for r in tls.read_states(tmp_path)] == [0]


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
    assert [r.step for r in tls.read_states(tmp_path)] == [0]


def test_summary_writer_run(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    sw = SummaryWriter(str(tmp_path / "exp1"))
    with tls.StateWriter(summary_writer=sw) as writer:
        sw.add_scalar("loss", 1.0, 0)
        writer.add_states("enc", make_states(), 0)
        assert os.path.dirname(writer.path) == sw.log_dir
    sw.close()
    assert [(r.run, r.step) for r in tls.read_states(tmp_path)] == [("exp1", 0)]
    assert len(event_files(tmp_path / "exp1")) == 2


def test_queue_is_bounded(tmp_path, monkeypatch):
    seen, writers = [], []
    real_write_stream = event_file.RecordFile.write_stream

    def slow_write_stream(self, stream):
        real_write_stream(self, stream)
        if writers and stream.complete:  # a slow disk: the queue fills up behind this write
            seen.append(writers[0]._queued_bytes)
            time.sleep(0.02)

    monkeypatch.setattr(event_file.RecordFile, "write_stream", slow_write_stream)
    states = make_states(batch=4, time=8, hidden=8)
    record_bytes = sum(a.size for a in arrays(states).values()) * 2
    writer = tls.StateWriter(tmp_path, max_queue_bytes=2 * record_bytes + 1000)
    writers.append(writer)
    for step in range(10):
        writer.add_states("t", states, step)
    writer.close()
    assert len(seen) == 10
    assert max(seen) <= 2 * record_bytes + 1000  # add_states waited for room
    assert max(seen) > record_bytes  # and the queue did hold more than one record
    assert len(list(tls.read_states(tmp_path))) == 10


def test_summary_writer_file_sorts_first(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    sw = SummaryWriter(str(tmp_path))
    with tls.StateWriter(summary_writer=sw) as writer:
        ours = os.path.basename(writer.path)
    sw.close()
    # A Python loader without --reload_multifile follows only the last file: the
    # user's scalars, not these states.
    assert [os.path.basename(p) for p in event_files(tmp_path)][0] == ours


def test_statistics_of_large_batches_are_sampled_sequences():
    assert list(statistics.sample_sequences(4, 10, max_values=100)) == [0, 1, 2, 3]
    assert list(statistics.sample_sequences(100, 10, max_values=50)) == [0, 25, 50, 74, 99]
    assert list(statistics.sample_sequences(3, 1000, max_values=10)) == [0]
    states = make_states("lstm", batch=64, time=32, hidden=64, lengths=np.arange(64) % 33)
    sampled = statistics.record_statistics(states, max_values=16 * 32 * 64)
    exact = statistics.record_statistics(states, max_values=1 << 40)
    rows = statistics.sample_sequences(64, 32 * 64, max_values=16 * 32 * 64)
    subset = states_lib.RecurrentStates(
        "lstm", [states_lib.LayerStates(
            states.layers[0].hidden[rows], states.layers[0].cell[rows],
            {k: v[rows] for k, v in states.layers[0].gates.items()})], states.lengths[rows])
    np.testing.assert_array_equal(sampled, statistics.record_statistics(subset))
    # An estimate: means and fractions stay close to the exact ones.
    np.testing.assert_allclose(sampled[:, :3], exact[:, :3], rtol=0.1, atol=0.02)


def test_buffers_are_reused_and_bounded(tmp_path):
    states = make_states("lstm", batch=4, time=8, hidden=8)
    record_bytes = sum(a.size for a in arrays(states).values()) * 2
    with tls.StateWriter(tmp_path, max_queue_bytes=record_bytes) as writer:
        writer.add_states("t", make_states("lstm", batch=4, time=8, hidden=8, seed=1), 0)
        writer.flush()
        assert writer._pool._bytes == record_bytes  # one record's buffers, kept

        def pooled():
            return {id(a) for arrays in writer._pool._free.values() for a in arrays}
        kept = pooled()
        writer.add_states("t", make_states("lstm", batch=4, time=8, hidden=8, seed=2), 1)
        writer.flush()
        assert pooled() == kept  # the same buffers, taken and given back
        assert writer._pool._bytes == record_bytes
        writer.add_states("t", make_states("gru", batch=4, time=8, hidden=16), 2)
        writer.flush()
        assert writer._pool._bytes <= record_bytes  # other shapes evict, within the bound
    assert writer._pool._bytes == 0
    records = list(tls.read_states(tmp_path))
    for record, seed in zip(records[:2], (1, 2)):
        expected = make_states("lstm", batch=4, time=8, hidden=8, seed=seed)
        np.testing.assert_array_equal(
            record.states.layers[0].cell, expected.layers[0].cell.astype(np.float16))


def test_buffers_of_the_records_in_flight_at_once_are_kept(tmp_path):
    """Records queued together (every tag of a step) get their buffers back from the
    pool next time, rather than fresh memory."""
    states = make_states("lstm", batch=4, time=8, hidden=8)
    record_bytes = sum(a.size for a in arrays(states).values()) * 2
    with tls.StateWriter(tmp_path, max_queue_bytes=100 * record_bytes) as writer:
        with writer._lock:
            writer._writing = True  # a slow disk: no part is written until flush
        for step in range(4):
            writer.add_states("t", states, step)
        with writer._lock:
            writer._writing = False
        writer.flush()
        assert writer._pool._bytes == 4 * record_bytes
        kept = {id(a) for arrays in writer._pool._free.values() for a in arrays}
        for step in range(4, 8):
            writer.add_states("t", states, step)
        writer.flush()
        assert {id(a) for arrays in writer._pool._free.values() for a in arrays} == kept
    assert [r.step for r in tls.read_states(tmp_path)] == list(range(8))


def test_float16_cast_matches_numpy():
    rng = np.random.default_rng(0)
    base = np.concatenate([
        rng.standard_normal(3000).astype(np.float32) * scale
        for scale in (1e-7, 1e-3, 1, 1e3, 6e4)]).reshape(5, 150, 20)
    base[0, 0, :6] = [0.0, -0.0, np.inf, -np.inf, np.nan, 65519.99]
    readonly = base.copy()
    readonly.flags.writeable = False
    large = rng.standard_normal((1, 1 << 11, 1 << 11)).astype(np.float32)
    for array in (base, base[:, ::-1], base.transpose(1, 0, 2), readonly,
                  np.broadcast_to(base[:1], base.shape), large,
                  base.astype(np.float64)):  # numpy's cast: no double rounding
        out = np.empty(array.shape, np.float16)
        with np.errstate(over="ignore"):  # 6e4 * N(0, 1) overflows to inf, as it should
            crc = copy_kernel.copy_into(out, array, 12345)
            expected = array.astype(np.float16)
        np.testing.assert_array_equal(out.view(np.uint16), expected.view(np.uint16))
        assert crc == google_crc32c.extend(12345, out.tobytes())
        unchecked = np.empty(array.shape, np.float16)  # as `states_pb` casts
        with np.errstate(over="ignore"):
            assert copy_kernel.copy_into(unchecked, array) is None
        np.testing.assert_array_equal(unchecked.view(np.uint16), out.view(np.uint16))


@pytest.mark.parametrize("compiled", [True, False])
def test_records_written_while_published_and_cut(tmp_path, monkeypatch, compiled):
    """A record written while its pieces are published reads back as one; a record
    cut after its first pieces leaves no trace, and the next record is framed where
    it began. With the compiled loop, and without it (where there is no `writev`)."""
    from tb_lstm_states import stream_kernel

    if not compiled:
        monkeypatch.setattr(stream_kernel, "available", lambda: False)
    path = str(tmp_path / "events.out.tfevents.1.test")
    record_file = event_file.RecordFile(path)
    large = np.arange(300_000, dtype=np.uint8)
    payload = [b"first", large.tobytes(), b"", b"small", memoryview(large[:1000])]
    stream = event_file.RecordStream(event_file.piece_bytes(payload), len(payload))
    stream.publish(payload[:1])
    record_file.write_stream(stream)
    stream.publish(payload[1:4])
    stream.publish(payload[4:], crc=event_file.crc32c(payload))
    assert stream.ready
    record_file.write_stream(stream)
    assert stream.complete
    with pytest.raises(ValueError, match="at most 1 pieces"):
        event_file.RecordStream(10, 1).publish([b"a", b"b"])
    with pytest.raises(ValueError, match="3 bytes, not the 10 announced"):
        event_file.RecordStream(10, 2).publish([b"abc"], crc=0)
    cut = event_file.RecordStream(event_file.piece_bytes(payload), len(payload))
    cut.publish(payload[:2])
    record_file.write_stream(cut)
    record_file.cut()
    record_file.write([b"last"])
    record_file.close()
    payloads = [payload for _, payload in event_file.read_records(path)]
    assert payloads[1:] == [b"".join(bytes(p) for p in payload), b"last"]


def test_records_of_one_layout_share_a_plan_but_not_their_content(tmp_path):
    """Plans are reused across records of the same layout; whatever differs between
    records (lengths, arrays that must stay float32, series names, tokens, tags,
    descriptions) still comes out as `states_pb` encodes it."""
    big = make_states("lstm", num_layers=2)
    big.layers[1].cell = big.layers[1].cell * 1e5  # beyond float16: kept as float32
    series = {"y": np.arange(18.0).reshape(3, 6)}
    calls = [
        ("a", make_states("lstm", num_layers=2), {}),
        ("a", make_states("lstm", num_layers=2, seed=1), {}),  # the plan of the first
        ("a", make_states("lstm", num_layers=2, lengths=[6, 2, 0]), {}),
        ("a", big, {}),
        ("a", make_states("lstm", num_layers=2), dict(series=series)),
        ("a", make_states("lstm", num_layers=2), dict(series={"z": series["y"]})),
        ("a", make_states("lstm", num_layers=2), dict(tokens=[["x"], [], ["y"]])),
        ("a", make_states("lstm", num_layers=2), dict(description="other")),
        ("a", make_states("lstm", num_layers=2), dict(dtype="float32")),
        ("b", make_states("lstm", num_layers=2), {}),
        ("a", make_states("lstm", num_layers=2, seed=2), {}),
    ]
    with tls.StateWriter(tmp_path) as writer:
        for step, (tag, states, kwargs) in enumerate(calls):
            writer.add_states(tag, states, step, **kwargs)
        assert len(writer._plans) == 8  # one per distinct layout; tokens are never kept
        path = writer.path
    written = events(path)[1:]
    assert len(written) == len(calls)
    for event, (tag, states, kwargs) in zip(written, calls):
        expected = tls.states_pb(tag, states, **kwargs)
        assert event.summary.value[0].SerializeToString() == \
            expected.value[0].SerializeToString()
        assert event.summary.value[1] == expected.value[1]


def test_partial_writes_go_on_where_they_stopped(tmp_path, monkeypatch):
    """A short `writev` (a signal, a nearly full disk) resumes mid-piece."""
    real_writev = os.writev
    calls = []

    def short_writev(fd, buffers):
        calls.append(len(buffers))
        first = bytes(buffers[0])
        # Half of the first piece, or all of it and a byte of the next.
        if len(first) > 1:
            return real_writev(fd, [first[:len(first) // 2]])
        return real_writev(fd, [first, bytes(buffers[1])[:1]] if len(buffers) > 1 else [first])

    path = str(tmp_path / "events.out.tfevents.1.test")
    record_file = event_file.RecordFile(path)
    pieces = [b"a", np.arange(1000, dtype=np.uint8), b"", b"bc", memoryview(b"defgh")]
    monkeypatch.setattr(os, "writev", short_writev)
    record_file.write(pieces)
    monkeypatch.undo()
    record_file.close()
    assert len(calls) > len(pieces)
    payloads = [payload for _, payload in event_file.read_records(path)]
    assert payloads[-1] == b"".join(bytes(memoryview(p).cast("B")) for p in pieces)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_large_arrays_are_written_in_slices(tmp_path, monkeypatch, dtype):
    """Arrays over `_SLICE_BYTES` are copied and queued slice by slice (along the
    batch, the last slice shorter); the record is the same."""
    monkeypatch.setattr(writer_lib, "_SLICE_BYTES", 3 * 6 * 4 * 2)  # 3 sequences at float16
    states = make_states("lstm", batch=7, lengths=[6, 5, 4, 3, 2, 1, 0])
    states.layers[0].hidden = np.asfortranarray(states.layers[0].hidden)  # a strided source
    assert len(writer_lib._slices(states.layers[0].cell, np.empty((7, 6, 4), np.float16))) == 3
    with tls.StateWriter(tmp_path) as writer:
        writer.add_states("s", states, 0, dtype=dtype)
        path = writer.path
    (event,) = events(path)[1:]
    expected = tls.states_pb("s", states, dtype=dtype)
    assert event.summary.value[0].SerializeToString() == expected.value[0].SerializeToString()


# Every float32 next to a float16 boundary (each float16 value's float32, the ties
# above it, and the values either side of them), the edges of the range, and random
# bit patterns: cast by the compiled kernel, compared with numpy.
EVERY_FLOAT16_BOUNDARY = """
import numpy as np
from tb_lstm_states import copy_kernel

halves = np.arange(1 << 16, dtype=np.uint32) << 13
bits = np.concatenate([
    halves, halves + 0x1000, halves + 0x0FFF, halves + 0x1001, halves + 1, halves - 1,
    np.array([0x33000000, 0x33000001, 0x32FFFFFF, 0x477FEFFF, 0x477FF000, 0x47800000,
              0x7F800000, 0x7F800001, 0x7FC00000, 0x7FBFFFFF], np.uint32),
    np.random.default_rng(0).integers(0, 1 << 32, 1 << 20, dtype=np.uint64).astype(np.uint32),
])
bits = np.concatenate([bits, bits | 0x80000000])
values = bits.view(np.float32).reshape(1, 1, -1)
out = np.empty(values.shape, np.float16)
copy_kernel.copy_into(out, values)
with np.errstate(all="ignore"):
    expected = values.astype(np.float16)
nan = np.isnan(values)
assert np.isnan(out[nan]).all()
mismatch = (out.view(np.uint16) != expected.view(np.uint16)) & ~nan
assert not mismatch.any(), bits.reshape(values.shape)[mismatch][:10]
print("ok")
"""


def test_float16_cast_is_exact_at_every_boundary():
    exec(EVERY_FLOAT16_BOUNDARY, {})


def test_float16_cast_without_hardware_conversion(tmp_path):
    # Without F16C the kernel rounds with integer operations.
    run_without_half_conversion(EVERY_FLOAT16_BOUNDARY, tmp_path)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float16_range_check(dtype):
    limit = np.finfo(np.float16).max
    for values, fits in (([1.0, -limit, limit], True), ([np.nan, np.inf, -np.inf, 0.0], True),
                         ([1.0, np.nextafter(dtype(limit), dtype(np.inf))], False),
                         ([-1e5, np.nan], False), ([], True)):
        array = np.array(values, dtype=dtype)
        assert codec.fits_float16(array) == fits, values
        assert codec.fits_float16(array[None, :, None].repeat(2, axis=2)[:, :, 1]) == fits


@pytest.mark.parametrize("crc_library", [True, False])
def test_copies_are_checksummed_as_copied(monkeypatch, crc_library):
    """Same-dtype copies (float16 bits, float32) from any strides, and the checksum
    of the copy, with google-crc32c's C library called from the kernel or without."""
    if not crc_library:
        monkeypatch.setattr(event_file, "CRC32C_EXTEND_ADDRESS", 0)
    rng = np.random.default_rng(1)
    for dtype in (np.float16, np.float32):
        base = rng.standard_normal((4, 30, 50)).astype(dtype)
        for array in (base, base[:, ::-1], base.transpose(1, 0, 2)[:4], base[:, :, ::2]):
            out = np.empty(array.shape, dtype)
            crc = copy_kernel.copy_into(out, array, 7)
            np.testing.assert_array_equal(out.view(np.uint8),
                                          np.ascontiguousarray(array).view(np.uint8))
            assert crc == google_crc32c.extend(7, out.tobytes())
