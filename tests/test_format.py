"""The version 2 format: names, index validation, checked reads and binned views."""

import json

import numpy as np
import pytest

from tb_lstm_states.storage import format


def _bins_by_numpy(values, start, stop, bins):
    edges = [start + (i * (stop - start)) // bins for i in range(bins + 1)]
    low = np.stack([values[edges[i]:edges[i + 1]].astype(np.float32).min(0) for i in range(bins)])
    high = np.stack([values[edges[i]:edges[i + 1]].astype(np.float32).max(0) for i in range(bins)])
    return np.stack([low, high])


@pytest.mark.parametrize("seed", range(6))
def test_binned_is_exact_with_and_without_the_pyramid(seed):
    rng = np.random.default_rng(seed)
    time = int(rng.integers(format.PYRAMID_MIN_TIME, 30_000))
    array = rng.standard_normal((2, time, 5)).astype(np.float16)
    array[1, int(rng.integers(time))] = 60000  # a spike the bins must keep
    pyramid = format.compute_pyramid(array)
    used = []

    def read_blocks(b0, b1):
        used.append((b0, b1))
        return pyramid[1, b0:b1]

    for _ in range(20):
        start = int(rng.integers(0, time // 2))
        stop = int(rng.integers(start + 2, time + 1))
        wide = (stop - start) // (4 * format.PYRAMID_BLOCK)
        bins = int(rng.integers(1, max(2, wide))) if rng.random() < 0.7 else int(
            rng.integers(1, stop - start))
        got = format.binned(lambda t0, t1: array[1, t0:t1], read_blocks, start, stop, bins)
        np.testing.assert_array_equal(got, _bins_by_numpy(array[1], start, stop, bins))
        assert got.shape == (2, bins, 5) and got.dtype == np.float32
    assert used, "no request went through the pyramid"


def test_binned_whole_sequence_reads_a_fraction_through_the_pyramid():
    time = 100_000
    array = np.random.default_rng(0).standard_normal((1, time, 4)).astype(np.float32)
    pyramid = format.compute_pyramid(array)
    read = [0]

    def read_window(t0, t1):
        read[0] += t1 - t0
        return array[0, t0:t1]

    got = format.binned(read_window, lambda b0, b1: pyramid[0, b0:b1], 0, time, 300)
    np.testing.assert_array_equal(got, _bins_by_numpy(array[0], 0, time, 300))
    assert read[0] < time // 4


def test_pyramid_of_a_partial_last_block():
    array = np.arange(2 * 130 * 3, dtype=np.float32).reshape(2, 130, 3)
    pyramid = format.compute_pyramid(array)
    assert pyramid.shape == (2, 3, 2, 3)
    np.testing.assert_array_equal(pyramid[:, 2, 0], array[:, 128])
    np.testing.assert_array_equal(pyramid[:, 2, 1], array[:, 129])


@pytest.mark.parametrize("tag", ["encoder", "../../etc/passwd", "a/b/c", "..", "", "é/\u00e9\x00",
                                 "x" * 1000, "C:\\windows", "/abs"])
def test_array_file_names_are_one_safe_path_part(tag):
    name = format.array_file_name(tag, 3, "abc123")
    assert format.is_safe_file_name(name)
    assert "/" not in name and "\\" not in name and not name.startswith(".")
    assert name != format.array_file_name(tag + "x", 3, "abc123")


@pytest.mark.parametrize("name", ["../x.safetensors", "a/b.safetensors", ".hidden.safetensors",
                                  "x.safetensors/", "x.txt", "", None, 3, "..safetensors",
                                  "a\\b.safetensors", "a\x00.safetensors"])
def test_unsafe_file_names_are_refused(name):
    assert not format.is_safe_file_name(name)


def _index(**changes):
    layout = format.Layout([format.Tensor("0/hidden", "float16", [2, 3, 4])], {"format": "x"})
    table = np.zeros(layout.crc_table.shape, np.uint32)
    index = json.loads(format.build_index(
        layout, "t-0.0.a.safetensors", table, kind="rnn", num_layers=1, num_directions=1,
        batch=2, time=3, lengths=[3, 1], series=[], has_tokens=False,
        arrays=[{"layer": 0, "kind": "hidden", "tensor": "0/hidden"}],
        statistics=np.zeros((1, 5))))
    index.update(changes)
    return json.dumps(index).encode()


def test_a_valid_index_parses():
    index = format.parse_index(_index())
    assert index["arrays"][0]["shape"] == [2, 3, 4]


@pytest.mark.parametrize("changes", [
    {"version": 99}, {"file": "../evil.safetensors"}, {"file_bytes": -1},
    {"batch": 1 << 40}, {"time": 0}, {"lengths": [3]}, {"lengths": [4, 1]},
    {"num_layers": 10 ** 9}, {"kind": None}, {"kind": "transformer"},
    {"arrays": [{"layer": 0, "kind": "hidden", "dtype": "float16", "shape": [2, 3, 1 << 40],
                 "offset": 100, "chunk": 0}]},
    {"arrays": [{"layer": 0, "kind": "hidden", "dtype": "float64", "shape": [2, 3, 4],
                 "offset": 100, "chunk": 0}]},
    {"arrays": [{"layer": 0, "kind": "hidden", "dtype": "float16", "shape": [2, 3, 4],
                 "offset": 1 << 60, "chunk": 0}]},
    {"arrays": []}, {"statistics": [[1, 2]]}, {"crc_count": 1 << 40}, {"chunk_bytes": 1},
    {"series": ["a", "a"]}, {"tokens": "yes"},
])
def test_hostile_index_fields_are_refused_before_use(changes):
    with pytest.raises(format.FormatError) as info:
        format.parse_index(_index(**changes))
    assert ("newer" in str(info.value)) == ("version" in changes)


@pytest.mark.parametrize("data", [b"", b"[", b"[]", b"{}", b"\xff", b"[" * 100000, b"1e999"])
def test_garbage_indexes_are_format_errors(data):
    with pytest.raises(format.FormatError):
        format.parse_index(data)


def test_checked_reads_catch_torn_and_corrupt_files():
    data = np.arange(3 * format.CHUNK_BYTES // 4, dtype="<f4")
    raw = bytearray(b"\0" * 16 + data.tobytes())
    chunks = [format.crc32c(bytes(raw[16 + i:16 + i + format.CHUNK_BYTES]))
              for i in range(0, len(raw) - 16, format.CHUNK_BYTES)]
    index = {"file": "f.safetensors"}
    table = np.array(chunks, np.uint32)

    def read(offset, length):
        return bytes(raw[offset:offset + length])

    got = format.read_checked(read, index, table, 16, 0, data.nbytes, 4, 8 + format.CHUNK_BYTES)
    assert got == data.tobytes()[4:8 + format.CHUNK_BYTES]
    raw[16 + format.CHUNK_BYTES + 5] ^= 1
    format.read_checked(read, index, table, 16, 0, data.nbytes, 0, 100)  # slice 0 is intact
    with pytest.raises(format.FormatError, match="checksum"):
        format.read_checked(read, index, table, 16, 0, data.nbytes, 0, format.CHUNK_BYTES + 1)
    del raw[-10:]
    with pytest.raises(format.FormatError, match="shorter"):
        format.read_checked(read, index, table, 16, 0, data.nbytes, data.nbytes - 4, data.nbytes)
