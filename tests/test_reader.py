"""Tests for `read_states`: both format versions, filters, damage, hostile indexes, kills."""

import glob
import json
import os
import signal
import subprocess
import sys
import textwrap
import warnings

import google_crc32c
import numpy as np
import pytest
from tensorboard.compat.proto import event_pb2, summary_pb2

import tb_lstm_states as tls
from tb_lstm_states import metadata
from tb_lstm_states import states as states_lib
from tb_lstm_states.storage import format, reader

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
V1_LOGDIR = os.path.join(REPO, "tests", "data", "v1_logdir")
V1_EXPECTED = os.path.join(REPO, "tests", "data", "v1_expected.npz")


def make_states(seed=0, batch=3, time=7, units=4, num_layers=1, kind="lstm"):
    rng = np.random.default_rng(seed)
    layers = []
    for _ in range(num_layers):
        arrays = {
            name: rng.standard_normal((batch, time, units)).astype(np.float32)
            for name in states_lib.array_kinds(kind)
        }
        hidden = arrays.pop("hidden")
        cell = arrays.pop("cell", None)
        layers.append(states_lib.LayerStates(hidden, cell, arrays))
    lengths = np.array([time] + [max(0, time - 2)] * (batch - 1))
    for layer in layers:
        for name in states_lib.array_kinds(kind):
            for b, n in enumerate(lengths):
                layer.get(name)[b, n:] = 0
    return states_lib.RecurrentStates(kind=kind, layers=layers, lengths=lengths)


def write(directory, tag, steps, **kwargs):
    with tls.StateWriter(str(directory)) as writer:
        for step in steps:
            writer.add_states(tag, make_states(seed=step, **kwargs), step)
        return writer.path


def array_files(directory):
    return sorted(glob.glob(os.path.join(str(directory), *format.PLUGIN_DIRECTORY, "*")))


def write_event(path, value, step=1):
    """Appends one Event holding `value` to an event file, framed as TFRecord."""

    def masked(crc):
        return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF

    payload = event_pb2.Event(
        wall_time=1.0, step=step, summary=summary_pb2.Summary(value=[value])
    ).SerializeToString()
    length = len(payload).to_bytes(8, "little")
    with open(path, "ab") as f:
        f.write(
            length
            + masked(google_crc32c.value(length)).to_bytes(4, "little")
            + payload
            + masked(google_crc32c.value(payload)).to_bytes(4, "little")
        )


def index_values(path):
    """The index summaries of an event file, in order."""
    found = []
    for _, payload in reader.event_file.read_records(path):
        event = event_pb2.Event.FromString(payload)
        found += [
            v
            for v in event.summary.value
            if v.metadata.plugin_data.plugin_name == metadata.PLUGIN_NAME
        ]
    return found


def test_version_1_logdirs_still_read():
    expected = np.load(V1_EXPECTED)
    records = list(tls.read_states(V1_LOGDIR))
    assert [(r.run, r.tag, r.step) for r in records] == [
        ("gru_run", "decoder/gru", 5),
        ("lstm_run", "encoder", 0),
        ("lstm_run", "encoder", 1),
        ("lstm_run", "encoder", 2),
    ]
    compared = 0
    for record in records:
        for index, layer in enumerate(record.states.layers):
            for name in states_lib.array_kinds(record.states.kind):
                key = "%s/%s/%d/%d/%s" % (record.run, record.tag, record.step, index, name)
                np.testing.assert_array_equal(layer.get(name), expected[key])
                compared += 1
    assert compared == len(expected.files) == 4 + 3 * 4 * 6
    lstm = records[1]
    assert lstm.description == "v1 **lstm**"
    assert lstm.tokens[1] == ["a"] * 10 and list(lstm.series) == ["price"]
    assert lstm.states.num_directions == 2 and lstm.states.num_layers == 2


def test_runs_tags_and_steps(tmp_path):
    write(tmp_path, "a", [0, 1])
    write(tmp_path / "exp" / "one", "a", [0])
    write(tmp_path / "exp" / "one", "b", [5])
    write(tmp_path / "two", "a", [3, 4, 5])
    (tmp_path / "empty").mkdir()
    found = [(r.run, r.tag, r.step) for r in tls.read_states(tmp_path)]
    assert found == [
        (".", "a", 0),
        (".", "a", 1),
        ("exp/one", "a", 0),
        ("exp/one", "b", 5),
        ("two", "a", 3),
        ("two", "a", 4),
        ("two", "a", 5),
    ]
    assert [(r.run, r.step) for r in tls.read_states(tmp_path, run="two", steps=[3, 5])] == [
        ("two", 3),
        ("two", 5),
    ]
    assert [(r.run, r.tag) for r in tls.read_states(tmp_path, tag="b")] == [("exp/one", "b")]
    assert [r.run for r in tls.read_states(tmp_path, run=".", steps=1)] == ["."]
    assert list(tls.read_states(tmp_path, run="nope")) == []
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        list(tls.read_states(tmp_path / "missing"))


@pytest.mark.parametrize("kind,num_layers", [("lstm", 2), ("gru", 1), ("rnn", 3)])
def test_arrays_round_trip_and_open_without_this_package(tmp_path, kind, num_layers):
    from safetensors.numpy import load_file

    states = make_states(seed=1, kind=kind, num_layers=num_layers)
    series = {"price": np.arange(21, dtype=np.float64).reshape(3, 7)}
    tokens = [["x"] * 7, ["<b>"] * 5, []]
    with tls.StateWriter(str(tmp_path)) as writer:
        writer.add_states("t", states, 4, series=series, tokens=tokens, description="**d**")
    (record,) = tls.read_states(tmp_path)
    (path,) = array_files(tmp_path)
    plain = load_file(path)
    for index, layer in enumerate(states.layers):
        for name in states_lib.array_kinds(kind):
            stored = record.states.layers[index].get(name)
            assert stored.dtype == np.float16 and not stored.flags.writeable
            np.testing.assert_array_equal(stored, layer.get(name).astype(np.float16))
            np.testing.assert_array_equal(plain[format.array_name(index, name)], stored)
    np.testing.assert_array_equal(record.series["price"], series["price"].astype(np.float32))
    assert record.tokens == tokens and record.description == "**d**"
    np.testing.assert_array_equal(record.states.lengths, states.lengths)


def test_mixed_version_1_and_2_runs(tmp_path):
    import shutil

    shutil.copytree(V1_LOGDIR, tmp_path / "old")
    write(tmp_path / "new", "encoder", [0, 1])
    found = [(r.run, r.tag, r.step) for r in tls.read_states(tmp_path)]
    assert found == [
        ("new", "encoder", 0),
        ("new", "encoder", 1),
        ("old/gru_run", "decoder/gru", 5),
        ("old/lstm_run", "encoder", 0),
        ("old/lstm_run", "encoder", 1),
        ("old/lstm_run", "encoder", 2),
    ]


def test_other_summaries_are_ignored(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    sw = SummaryWriter(str(tmp_path))
    sw.add_scalar("loss", 0.5, 1)
    sw.add_text("note", "hello", 1)
    with tls.StateWriter(summary_writer=sw) as writer:
        writer.add_states("enc", make_states(), 1)
    sw.close()
    (record,) = tls.read_states(tmp_path)
    assert (record.run, record.tag, record.step) == (".", "enc", 1)


@pytest.mark.parametrize("damage", ["missing", "torn", "flipped", "truncated_crc_table"])
def test_a_damaged_array_file_is_skipped_with_a_warning(tmp_path, damage):
    write(tmp_path, "a", [0, 1, 2], time=600, units=64)
    path = array_files(tmp_path)[1]
    assert ".1." in os.path.basename(path)
    size = os.path.getsize(path)
    if damage == "missing":
        os.remove(path)
    elif damage == "torn":
        os.truncate(path, size // 2)
    elif damage == "truncated_crc_table":
        os.truncate(path, size - 2)
    else:
        with open(path, "r+b") as f:
            f.seek(size // 2)
            byte = f.read(1)
            f.seek(size // 2)
            f.write(bytes([byte[0] ^ 0x10]))
    with pytest.warns(reader.CorruptRecordWarning) as caught:
        steps = [r.step for r in tls.read_states(tmp_path)]
    assert steps == [0, 2]
    message = str(caught[0].message)
    assert os.path.basename(path) in message
    assert {
        "missing": "missing",
        "torn": "shorter",
        "flipped": "checksum",
        "truncated_crc_table": "shorter",
    }[damage] in message


def _edited_index(tmp_path, edit):
    """A copy of a good step's index summary, changed by `edit(index_dict)`, appended
    to a second event file of the run; returns the warnings of reading the run."""
    event_path = write(tmp_path, "a", [0])
    (value,) = index_values(event_path)
    index = json.loads(value.tensor.string_val[0])
    del index[format.INDEX_SEAL_KEY]  # written unsealed, as earlier writers did
    edit(index)
    value.tensor.string_val[0] = json.dumps(index).encode()
    write_event(str(tmp_path / "events.out.tfevents.2.edited"), value, step=7)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        steps = [r.step for r in tls.read_states(tmp_path)]
    return steps, [str(w.message) for w in caught]


@pytest.mark.parametrize(
    "name", ["../../outside.safetensors", "/etc/passwd", "..", "a/b.safetensors"]
)
def test_an_index_cannot_name_a_file_outside_the_plugin_directory(tmp_path, name):
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes(b"secret")
    steps, caught = _edited_index(tmp_path / "run", lambda index: index.update(file=name))
    assert steps == [0]
    assert len(caught) == 1 and "bad file name" in caught[0]


@pytest.mark.parametrize(
    "units, words", [(1 << 30, "at most 32768 units"), (5000, "out of the file")]
)
def test_a_huge_claimed_shape_is_refused_before_allocating(tmp_path, units, words):
    def edit(index):
        index["arrays"][0]["shape"][2] = units

    steps, caught = _edited_index(tmp_path, edit)
    assert steps == [0] and words in caught[0]


def test_a_newer_index_version_asks_for_an_upgrade(tmp_path):
    steps, caught = _edited_index(
        tmp_path, lambda index: index.update(version=format.FORMAT_VERSION + 1)
    )
    assert steps == [0] and len(caught) == 1 and "upgrade tb-lstm-states" in caught[0]
    with pytest.raises(format.NewerVersionError, match="upgrade tb-lstm-states"):
        list(tls.read_states(tmp_path, strict=True))


def test_newer_plugin_data_version_asks_for_an_upgrade(tmp_path):
    event_path = write(tmp_path, "a", [0])
    (value,) = index_values(event_path)
    content = json.loads(value.metadata.plugin_data.content)
    content["version"] += 1
    value.metadata.plugin_data.content = json.dumps(content).encode()
    write_event(str(tmp_path / "events.out.tfevents.2.x"), value)
    with pytest.warns(reader.NewerVersionWarning, match="newer than this package understands"):
        assert [r.step for r in tls.read_states(tmp_path)] == [0]
    with pytest.raises(format.NewerVersionError, match="newer than this package understands"):
        list(tls.read_states(tmp_path, strict=True))


def test_garbage_events_and_indexes_are_skipped(tmp_path):
    write(tmp_path, "a", [0])
    value = summary_pb2.Summary.Value(
        tag="junk", metadata=metadata.create_summary_metadata(metadata.ROLE_INDEX, content={})
    )
    value.tensor.string_val.append(b"[" * 100000)
    write_event(str(tmp_path / "events.out.tfevents.2.x"), value)
    with pytest.warns(reader.CorruptRecordWarning, match="nested 100000 levels deep"):
        assert [r.tag for r in tls.read_states(tmp_path)] == ["a"]


_KILLED_WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    import tb_lstm_states as tls
    from tb_lstm_states import states as S

    writer = tls.StateWriter(sys.argv[1], max_queue_bytes=16 << 20)
    for step in range(1000):
        h = np.full((64, 256, 256), step, dtype=np.float32)  # 8 MB at float16
        states = S.RecurrentStates("rnn", [S.LayerStates(h)], np.full(64, 256))
        writer.add_states("big", states, step)
        sys.stdout.write("QUEUED %d\\n" % step)
        sys.stdout.flush()
""")


@pytest.mark.parametrize("after", [0, 2, 5])
def test_a_killed_writer_leaves_every_listed_step_complete(tmp_path, after):
    process = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        for line in process.stdout:
            if line.startswith("QUEUED %d" % after):
                break
        else:
            pytest.fail("writer exited early: " + process.stderr.read())
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no listed step may be torn
        records = list(tls.read_states(tmp_path))
    assert [r.step for r in records] == list(range(len(records)))
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
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, cwd=REPO, timeout=60)
    assert [r.step for r in tls.read_states(tmp_path)] == [0, 1, 2]


@pytest.mark.parametrize("step", [0, 1, 127, 128, 2**40, -1, -(2**63), 2**63 - 1])
def test_peek_step_agrees_with_protobuf(step):
    payload = event_pb2.Event(wall_time=1.5, step=step).SerializeToString()
    # Step 0 is not serialized at all (proto3 default): the reader then parses.
    assert reader._peek_step(payload) == (step or None)
    assert reader._peek_step(event_pb2.Event(step=step).SerializeToString()) in (None, step)
