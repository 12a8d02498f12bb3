"""Tests for `read_states` and the event-file framing: runs, filters, damage, kills."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tensorboard.compat.proto import event_pb2, summary_pb2

import tb_lstm_states as tls
from tb_lstm_states import codec, event_file, reader

from test_writer import event_files, make_states

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write(directory, tag, steps, **kwargs):
    with tls.StateWriter(directory) as writer:
        for step in steps:
            writer.add_states(tag, make_states(seed=step, **kwargs), step)
        return writer.path


def test_runs_tags_and_steps(tmp_path):
    write(tmp_path, "a", [0, 1])
    write(tmp_path / "exp" / "one", "a", [0])
    write(tmp_path / "exp" / "one", "b", [5])
    write(tmp_path / "two", "a", [3, 4, 5])
    (tmp_path / "empty").mkdir()
    found = [(r.run, r.tag, r.step) for r in tls.read_states(tmp_path)]
    assert found == [
        (".", "a", 0), (".", "a", 1),
        ("exp/one", "a", 0), ("exp/one", "b", 5),
        ("two", "a", 3), ("two", "a", 4), ("two", "a", 5),
    ]
    assert [(r.run, r.step) for r in tls.read_states(tmp_path, run="two", steps=[3, 5])] == [
        ("two", 3), ("two", 5)]
    assert [(r.run, r.tag) for r in tls.read_states(tmp_path, tag="b")] == [("exp/one", "b")]
    assert [r.run for r in tls.read_states(tmp_path, run=".", steps=1)] == ["."]
    assert list(tls.read_states(tmp_path, run="nope")) == []
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        list(tls.read_states(tmp_path / "missing"))


def test_other_summaries_are_ignored(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    sw = SummaryWriter(str(tmp_path))
    sw.add_scalar("loss", 0.5, 1)
    sw.add_text("note", "hello", 1)
    sw._get_file_writer().add_summary(tls.states_pb("enc", make_states()), 1)
    sw.close()
    (record,) = tls.read_states(tmp_path)
    assert (record.tag, record.step) == ("enc", 1)  # the statistics summary is skipped too


def test_truncated_last_record_is_skipped(tmp_path):
    path = write(tmp_path, "t", [0, 1, 2])
    size = os.path.getsize(path)
    for cut in (1, 5, 13, 500, 1000):
        with open(path, "r+b") as f:
            f.truncate(size - cut)
        assert [r.step for r in tls.read_states(tmp_path)] == [0, 1]


def _offsets(path):
    return [offset for offset, _ in event_file.read_records(path)]


def test_corrupt_payload_is_skipped_with_a_warning(tmp_path):
    path = write(tmp_path, "t", [0, 1, 2])
    offsets = _offsets(path)
    with open(path, "r+b") as f:
        f.seek(offsets[2] + 200)  # inside the payload of step 1
        byte = f.read(1)
        f.seek(offsets[2] + 200)
        f.write(bytes([byte[0] ^ 0x10]))
    with pytest.warns(reader.CorruptRecordWarning, match="byte %d is corrupt" % offsets[2]):
        assert [r.step for r in tls.read_states(tmp_path)] == [0, 2]
    with pytest.raises(event_file.CorruptRecordError, match="payload checksum mismatch"):
        list(event_file.read_records(path))


def test_corrupt_length_ends_the_file_with_a_warning(tmp_path):
    path = write(tmp_path, "t", [0, 1, 2])
    offsets = _offsets(path)
    with open(path, "r+b") as f:
        f.seek(offsets[2] + 3)
        f.write(b"\xff")
    with pytest.warns(reader.CorruptRecordWarning, match="corrupt length"):
        assert [r.step for r in tls.read_states(tmp_path)] == [0]


def test_a_crafted_huge_length_is_not_allocated(tmp_path):
    path = tmp_path / "events.out.tfevents.1.x"
    header = (1 << 60).to_bytes(8, "little")
    crc = event_file.masked_crc(event_file.crc32c([header]))
    path.write_bytes(header + crc.to_bytes(4, "little") + b"abc")
    assert list(event_file.read_records(str(path))) == []


def _write_event(path, value):
    """Appends one Event holding `value` to a new event file, framed by hand."""
    event = event_pb2.Event(step=1, wall_time=1.0, summary=summary_pb2.Summary(value=[value]))
    with open(path, "wb") as f:
        payload = event.SerializeToString()
        head, tail, _ = event_file.frame([payload])
        f.write(head + payload + tail)


def test_newer_header_version_is_a_clear_error(tmp_path):
    value = tls.states_pb("t", make_states()).value[0]
    header = json.loads(value.tensor.string_val[0][len(codec.HEADER_MAGIC):])
    header["version"] = codec.HEADER_VERSION + 1
    value.tensor.string_val[0] = codec.HEADER_MAGIC + json.dumps(header).encode()
    _write_event(tmp_path / "events.out.tfevents.1.x", value)
    with pytest.raises(codec.RecordError, match="newer than this package reads.*upgrade"):
        list(tls.read_states(tmp_path))


def test_newer_plugin_data_version_is_a_clear_error(tmp_path):
    value = tls.states_pb("t", make_states()).value[0]
    content = json.loads(value.metadata.plugin_data.content)
    content["version"] += 1
    value.metadata.plugin_data.content = json.dumps(content).encode()
    _write_event(tmp_path / "events.out.tfevents.1.x", value)
    with pytest.raises(codec.RecordError, match="newer than this package understands"):
        list(tls.read_states(tmp_path))


_KILLED_WRITER = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    from tb_lstm_states import event_file, states as S
    import tb_lstm_states as tls

    rng = np.random.default_rng(0)
    def states(step):
        h = np.full((64, 256, 256), step, dtype=np.float32)  # 8 MB at float16
        return S.RecurrentStates("rnn", [S.LayerStates(h)], np.full(64, 256))

    real = event_file.RecordFile.write_stream
    records = [0]
    def write_stream(self, stream):
        if records[0] == 3:  # the 4th record's first pieces: half of them, then wait to be killed
            ready = stream._pieces[stream.written:]
            os.writev(self._fd, ready[: len(ready) // 2])
            sys.stdout.write("HALF\\n")
            sys.stdout.flush()
            time.sleep(60)
        real(self, stream)
        records[0] += stream.complete
    event_file.RecordFile.write_stream = write_stream

    writer = tls.StateWriter(sys.argv[1], max_queue_bytes=16 << 20)
    for step in range(100):
        writer.add_states("big", states(step), step)
        if sys.argv[2] == "report":  # not while the writer thread may print HALF
            sys.stdout.write("QUEUED %d\\n" % step)
            sys.stdout.flush()
""")


def _kill_writer_when(script, mode, marker, logdir):
    """Runs a writer script and SIGKILLs it as soon as it prints a line starting with `marker`."""
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(logdir), mode],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        for line in process.stdout:
            if line.startswith(marker):
                break
        else:
            pytest.fail("writer exited early: " + process.stderr.read())
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()


def test_killed_writer_leaves_every_complete_record_readable(tmp_path):
    _kill_writer_when(_KILLED_WRITER, "quiet", "HALF", tmp_path)
    (path,) = event_files(tmp_path)
    records = list(tls.read_states(tmp_path))
    assert [r.step for r in records] == [0, 1, 2]
    for r in records:
        assert np.all(r.states.layers[0].hidden == r.step)
    # The file does end in the middle of a record.
    offset, payload = list(event_file.read_records(path))[-1]
    assert os.path.getsize(path) > offset + 12 + len(payload) + 4


def test_writer_killed_at_a_random_point(tmp_path):
    script = _KILLED_WRITER.replace("if records[0] == 3:", "if False:")
    _kill_writer_when(script, "report", "QUEUED 6", tmp_path)
    records = list(tls.read_states(tmp_path))
    assert [r.step for r in records] == list(range(len(records)))
    assert len(records) >= 1
    for r in records:
        assert np.all(r.states.layers[0].hidden == r.step)


def test_records_queued_at_exit_are_written(tmp_path):
    script = textwrap.dedent("""
        import sys
        import numpy as np
        import tb_lstm_states as tls
        from tb_lstm_states import states as S
        writer = tls.StateWriter(sys.argv[1])  # never closed: the exit hook writes
        for step in range(3):
            h = np.full((2, 5, 3), step, dtype=np.float32)
            writer.add_states("t", S.RecurrentStates("rnn", [S.LayerStates(h)], [5, 5]), step)
    """)
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, cwd=REPO,
                   timeout=60)
    assert [r.step for r in tls.read_states(tmp_path)] == [0, 1, 2]


@pytest.mark.parametrize("step", [0, 1, 127, 128, 2**40, -1, -(2**63), 2**63 - 1])
def test_peek_step_agrees_with_protobuf(step):
    payload = event_pb2.Event(wall_time=1.5, step=step).SerializeToString()
    # Step 0 is not serialized at all (proto3 default): the reader then parses.
    assert reader._peek_step(payload) == (step or None)
    assert reader._peek_step(event_pb2.Event(step=step).SerializeToString()) in (None, step)


@pytest.mark.parametrize("c_library", [True, False], ids=["ctypes", "bytes_slices"])
def test_crc_of_pieces(monkeypatch, c_library):
    import google_crc32c

    if c_library:
        assert event_file._c_extend is not None, "google_crc32c's C library was not found"
    else:
        monkeypatch.setattr(event_file, "_c_extend", None)
    data = np.random.default_rng(0).integers(0, 256, 3 * event_file.CRC_SLICE_BYTES + 5,
                                             dtype=np.uint8)
    pieces = [b"head", data[:7], memoryview(data)[7:], np.zeros(0, np.uint8), b""]
    assert event_file.crc32c(pieces) == google_crc32c.value(b"head" + data.tobytes())
