"""The version 2 format: names, index validation, checked reads and binned views."""

import json

import numpy as np
import pytest

from tb_lstm_states.storage import format, jsonsafe, ranged


def _bins_by_numpy(values, start, stop, bins):
    edges = [start + (i * (stop - start)) // bins for i in range(bins + 1)]
    low = np.stack([values[edges[i] : edges[i + 1]].astype(np.float32).min(0) for i in range(bins)])
    high = np.stack(
        [values[edges[i] : edges[i + 1]].astype(np.float32).max(0) for i in range(bins)]
    )
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
        bins = (
            int(rng.integers(1, max(2, wide)))
            if rng.random() < 0.7
            else int(rng.integers(1, stop - start))
        )
        got = ranged.binned(lambda t0, t1: array[1, t0:t1], read_blocks, start, stop, bins)
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

    got = ranged.binned(read_window, lambda b0, b1: pyramid[0, b0:b1], 0, time, 300)
    np.testing.assert_array_equal(got, _bins_by_numpy(array[0], 0, time, 300))
    assert read[0] < time // 4


def test_pyramid_of_a_partial_last_block():
    array = np.arange(2 * 130 * 3, dtype=np.float32).reshape(2, 130, 3)
    pyramid = format.compute_pyramid(array)
    assert pyramid.shape == (2, 3, 2, 3)
    np.testing.assert_array_equal(pyramid[:, 2, 0], array[:, 128])
    np.testing.assert_array_equal(pyramid[:, 2, 1], array[:, 129])


@pytest.mark.parametrize(
    "tag",
    [
        "encoder",
        "../../etc/passwd",
        "a/b/c",
        "..",
        "",
        "é/\u00e9\x00",
        "x" * 1000,
        "C:\\windows",
        "/abs",
    ],
)
def test_array_file_names_are_one_safe_path_part(tag):
    name = format.array_file_name(tag, 3, "abc123")
    assert format.is_safe_file_name(name)
    assert "/" not in name and "\\" not in name and not name.startswith(".")
    assert name != format.array_file_name(tag + "x", 3, "abc123")


@pytest.mark.parametrize(
    "name",
    [
        "../x.safetensors",
        "a/b.safetensors",
        ".hidden.safetensors",
        "x.safetensors/",
        "x.txt",
        "",
        None,
        3,
        "..safetensors",
        "a\\b.safetensors",
        "a\x00.safetensors",
    ],
)
def test_unsafe_file_names_are_refused(name):
    assert not format.is_safe_file_name(name)


def _index(**changes):
    """A valid index with `changes`, sealed again (as a writer would seal a lie)."""
    layout = format.Layout([format.Tensor("0/hidden", "float16", [2, 3, 4])], {"format": "x"})
    table = np.zeros(layout.crc_table.shape, np.uint32)
    index = json.loads(
        format.build_index(
            layout,
            "t-0.0.a.safetensors",
            table,
            kind="rnn",
            num_layers=1,
            num_directions=1,
            batch=2,
            time=3,
            lengths=[3, 1],
            series=[],
            has_tokens=False,
            arrays=[{"layer": 0, "kind": "hidden", "tensor": "0/hidden"}],
            statistics=np.zeros((1, len(format.STATISTICS_COLUMNS))),
        )
    )
    del index[format.INDEX_SEAL_KEY]
    index.update(changes)
    return format.seal_index(json.dumps(index, separators=(",", ":")).encode())


def test_a_valid_index_parses():
    index = format.parse_index(_index())
    assert index["arrays"][0]["shape"] == [2, 3, 4]


@pytest.mark.parametrize(
    "changes",
    [
        {"version": 99},
        {"file": "../evil.safetensors"},
        {"file_bytes": -1},
        {"batch": 1 << 40},
        {"time": 0},
        {"lengths": [3]},
        {"lengths": [4, 1]},
        {"num_layers": 10**9},
        {"kind": None},
        {"kind": "transformer"},
        {
            "arrays": [
                {
                    "layer": 0,
                    "kind": "hidden",
                    "dtype": "float16",
                    "shape": [2, 3, 1 << 40],
                    "offset": 100,
                    "chunk": 0,
                }
            ]
        },
        {
            "arrays": [
                {
                    "layer": 0,
                    "kind": "hidden",
                    "dtype": "float64",
                    "shape": [2, 3, 4],
                    "offset": 100,
                    "chunk": 0,
                }
            ]
        },
        {
            "arrays": [
                {
                    "layer": 0,
                    "kind": "hidden",
                    "dtype": "float16",
                    "shape": [2, 3, 4],
                    "offset": 1 << 60,
                    "chunk": 0,
                }
            ]
        },
        {"arrays": []},
        {"statistics": [[1, 2]]},
        {"crc_count": 1 << 40},
        {"chunk_bytes": 1},
        {"series": ["a", "a"]},
        {"tokens": "yes"},
    ],
)
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
    chunks = [
        format.crc32c(bytes(raw[16 + i : 16 + i + format.CHUNK_BYTES]))
        for i in range(0, len(raw) - 16, format.CHUNK_BYTES)
    ]
    index = {"file": "f.safetensors"}
    table = np.array(chunks, np.uint32)

    def read(offset, length):
        return bytes(raw[offset : offset + length])

    got = ranged.read_checked(read, index, table, 16, 0, data.nbytes, 4, 8 + format.CHUNK_BYTES)
    assert got == data.tobytes()[4 : 8 + format.CHUNK_BYTES]
    raw[16 + format.CHUNK_BYTES + 5] ^= 1
    ranged.read_checked(read, index, table, 16, 0, data.nbytes, 0, 100)  # slice 0 is intact
    with pytest.raises(format.FormatError, match="checksum"):
        ranged.read_checked(read, index, table, 16, 0, data.nbytes, 0, format.CHUNK_BYTES + 1)
    del raw[-10:]
    with pytest.raises(format.FormatError, match="shorter"):
        ranged.read_checked(read, index, table, 16, 0, data.nbytes, data.nbytes - 4, data.nbytes)


# ----------------------------------------------------------------------
# Bounded JSON, caps, and the index's own checksum.


def _reference_depth(text: bytes, whole=False) -> int:
    """The nesting depth outside strings, one character at a time, up to the first
    backslash outside a string (a syntax error: `json.loads` descends no further)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in text:
        char = chr(byte)
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == "\\" and not whole:
            return deepest
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"[]",
        b"{}",
        b"[[[]]]",
        b'["[[[["]',
        b'["\\\\"]',
        b'["\\"[[["]',
        b'["\\\\\\"[["]',
        b'{"a":[{"b":[1,2,{"c":"]]]{{{"}]}]}',
        b"[" * 100,
        b'"' + b"[" * 10,
    ],
)
def test_json_depth_counts_brackets_outside_strings(text):
    assert jsonsafe.json_depth(text) == _reference_depth(text)


def test_json_depth_across_scan_chunks(monkeypatch):
    monkeypatch.setattr(jsonsafe, "_JSON_SCAN_CHUNK", 7)
    rng = np.random.default_rng(0)
    alphabet = np.frombuffer(b'[]{}"\\a,', np.uint8)
    for _ in range(300):
        text = alphabet[rng.integers(0, len(alphabet), rng.integers(0, 60))].tobytes()
        # At least as deep as the parser can go; exact where the text has no syntax error
        # of that kind.
        assert jsonsafe.json_depth(text) >= _reference_depth(text), text
        inside = text.replace(b"\\", b"")
        assert jsonsafe.json_depth(inside) == _reference_depth(inside), inside


@pytest.mark.parametrize(
    "text", [b"[" * 100000, b"[" * 33 + b"]" * 33, b'{"a":' * 40 + b"1" + b"}" * 40, b"[" * 10**6]
)
def test_deep_json_is_refused_before_parsing(text):
    with pytest.raises(format.FormatError, match="nested"):
        jsonsafe.parse_json(text, max_bytes=len(text), what="x")


def test_json_at_the_depth_limit_parses():
    depth = format.MAX_JSON_DEPTH
    assert jsonsafe.parse_json(b"[" * depth + b"]" * depth, max_bytes=1 << 10, what="x") is not None


def test_json_over_its_size_is_refused():
    with pytest.raises(format.FormatError, match="bytes"):
        jsonsafe.parse_json(b" " * 11 + b"1", max_bytes=10, what="x")


def _valid_file_index(units=4, layers=1, batch=2, series=()):
    tensors = [format.Tensor("%d/hidden" % i, "float16", [batch, 3, units]) for i in range(layers)]
    tensors += [format.Tensor(format.series_name(s), "float32", [batch, 3]) for s in series]
    layout = format.Layout(tensors, {"format": "x"})
    table = np.zeros(layout.crc_table.shape, np.uint32)
    arrays = [{"layer": i, "kind": "hidden", "tensor": "%d/hidden" % i} for i in range(layers)]
    arrays += [{"series": s, "tensor": format.series_name(s)} for s in series]
    return format.build_index(
        layout,
        "t-0.0.a.safetensors",
        table,
        kind="rnn",
        num_layers=layers,
        num_directions=1,
        batch=batch,
        time=3,
        lengths=[3] * batch,
        series=list(series),
        has_tokens=False,
        arrays=arrays,
        statistics=None,
    )


@pytest.mark.parametrize(
    "what, sizes, ok",
    [
        ("units", dict(units=format.MAX_UNITS), True),
        ("units", dict(units=format.MAX_UNITS + 1), False),
        ("layers", dict(layers=format.MAX_LAYERS), True),
        ("layers", dict(layers=format.MAX_LAYERS + 1), False),
        ("batch", dict(batch=format.MAX_BATCH), True),
        ("batch", dict(batch=format.MAX_BATCH + 1), False),
        ("series", dict(series=["s%d" % i for i in range(format.MAX_SERIES)]), True),
        ("series", dict(series=["s%d" % i for i in range(format.MAX_SERIES + 1)]), False),
        ("series", dict(series=["x" * (format.MAX_NAME_CHARS + 1)]), False),
    ],
)
def test_caps_on_what_a_record_holds(what, sizes, ok):
    data = _valid_file_index(**sizes)
    if ok:
        format.parse_index(data)
    else:
        with pytest.raises(format.FormatError, match=what if what != "layers" else "num_layers"):
            format.parse_index(data)


@pytest.mark.parametrize(
    "change",
    [
        lambda i: i.update(file_bytes=i["file_bytes"] + 1),  # bytes past the checksum table
        lambda i: i["arrays"][0].update(offset=i["arrays"][0]["offset"] + 2),  # a gap
        lambda i: i.update(crc_count=i["crc_count"] + 1, crc_offset=i["crc_offset"] - 4),
        lambda i: i.update(num_directions=True),
        lambda i: i["arrays"].append(dict(i["arrays"][0], layer=0)),
    ],
)
def test_declared_sizes_must_be_the_bytes_present(change):
    index = json.loads(_valid_file_index(units=40000 // 8, batch=4))
    del index[format.INDEX_SEAL_KEY]
    change(index)
    with pytest.raises(format.FormatError):
        format.parse_index(format.seal_index(json.dumps(index, separators=(",", ":")).encode()))


def test_every_flipped_bit_of_a_sealed_index_is_refused_or_harmless():
    data = _index()
    original = format.parse_index(data)
    accepted = 0
    for position in range(len(data)):
        for bit in range(8):
            damaged = bytearray(data)
            damaged[position] ^= 1 << bit
            try:
                parsed = format.parse_index(bytes(damaged))
            except format.FormatError:
                continue
            accepted += 1
            # (the seal's name, flipped, is an unknown member, which readers ignore)
            assert {k: v for k, v in parsed.items() if k in original} == original, (position, bit)
    # Only flips inside the seal's own name leave an index that parses (unsealed, intact).
    assert accepted <= 8 * len(format.INDEX_SEAL_KEY)


def test_an_unsealed_index_of_earlier_writers_still_parses():
    index = json.loads(_index())
    del index[format.INDEX_SEAL_KEY]
    assert format.parse_index(json.dumps(index).encode())["batch"] == 2
