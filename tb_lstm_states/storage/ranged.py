"""Reading an array file: its header and tokens, checked ranged reads of its tensors,
and binned views of long sequences.

Reading a (layer, kind, sequence, time window) is one ranged read of the checksum
slices (`format.CHUNK_BYTES`) that cover it, each checked against the file's
checksum table, which is itself checked against the index (`format.parse_index`).
`binned` answers a long window as per-bin minimum and maximum, taking whole blocks
from the array's min/max pyramid where it has one.
"""

import math
from typing import Callable, List, Optional

import numpy as np

from tb_lstm_states.storage import errors, extras, format, jsonsafe


def parse_file_header(data: bytes, index: dict) -> dict:
    """Parses the safetensors header of an array file (its first `header_bytes` bytes),
    checked against the index's checksum. Returns its `__metadata__`.

    Raises:
      FormatError: on a checksum mismatch or malformed header.
    """
    _require_file(len(data) == index["header_bytes"], index, "is shorter than its index says")
    _require_file(format.crc32c(data) == index["header_crc32c"], index, "header fails its checksum")
    try:
        header = jsonsafe.parse_json(
            data[8:], max_bytes=format.MAX_HEADER_BYTES, what="safetensors header"
        )
    except errors.FormatError as e:
        raise errors.FormatError(
            "array file %s has a malformed header: %s" % (index["file"], e)
        ) from None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict):
        raise errors.FormatError("array file %s header has no metadata" % index["file"])
    return metadata


def parse_tokens(metadata: dict, index: dict) -> Optional[List[List[str]]]:
    """The token lists of an array file's metadata (None if it has none), validated."""
    if not index["tokens"]:
        return None
    text = metadata.get("tokens", "null")
    try:
        tokens = (
            jsonsafe.parse_json(text, max_bytes=format.MAX_HEADER_BYTES, what="token lists")
            if isinstance(text, str)
            else None
        )
    except errors.FormatError:
        tokens = None
    _require_file(
        isinstance(tokens, list)
        and len(tokens) == index["batch"]
        and all(
            isinstance(seq, list)
            and len(seq) <= index["time"]
            and all(isinstance(t, str) for t in seq)
            for seq in tokens
        ),
        index,
        "has malformed tokens",
    )
    return tokens


def _require_file(condition, index, message) -> None:
    """Raises a `FormatError` naming the array file of `index` unless `condition`."""
    if not condition:
        raise errors.FormatError("array file %s %s" % (index["file"], message))


ReadRange = Callable[[int, int], bytes]  # (offset, length) -> exactly those bytes, or fewer at EOF


def read_crc_table(read_range: ReadRange, index: dict) -> np.ndarray:
    """The checksum table of an array file, checked against the index."""
    data = read_range(index["crc_offset"], 4 * index["crc_count"])
    _require_file(
        len(data) == 4 * index["crc_count"],
        index,
        "is shorter than its index says (torn or still being written)",
    )
    _require_file(
        format.crc32c(data) == index["crc_crc32c"], index, "checksum table fails its checksum"
    )
    return np.frombuffer(data, "<u4")


def read_checked(
    read_range: ReadRange,
    index: dict,
    crc_table: np.ndarray,
    offset: int,
    chunk: int,
    nbytes: int,
    start: int,
    stop: int,
) -> bytes:
    """Bytes `[start, stop)` of the tensor at `offset` (of `nbytes` bytes, first
    checksum slice `chunk`), reading the slices that cover them and checking each.

    Raises:
      FormatError: if the file is short (torn) or a slice fails its checksum.
    """
    first, last = start // format.CHUNK_BYTES, -(-stop // format.CHUNK_BYTES)
    begin, end = first * format.CHUNK_BYTES, min(last * format.CHUNK_BYTES, nbytes)
    data = read_range(offset + begin, end - begin)
    _require_file(
        len(data) == end - begin,
        index,
        "is shorter than its index says (torn or still being written)",
    )
    data = bytes(data)
    for i in range(first, last):
        # google_crc32c takes bytes, not memoryviews: a slice copies 64 KiB, in cache.
        piece = data[(i - first) * format.CHUNK_BYTES : (i - first + 1) * format.CHUNK_BYTES]
        if format.crc32c(piece) != int(crc_table[chunk + i]):
            raise errors.FormatError(
                "array file %s fails its checksum at byte %d (corrupt)"
                % (index["file"], offset + i * format.CHUNK_BYTES)
            )
    if start == begin and stop == end:
        return data
    return data[start - begin : stop - begin]


def entry_nbytes(entry: dict) -> int:
    """The bytes of an index entry's array."""
    return format.DTYPES[entry["dtype"]].itemsize * math.prod(entry["shape"])


def read_array(
    read_range: ReadRange,
    index: dict,
    crc_table: np.ndarray,
    entry: dict,
    sequence: Optional[int] = None,
    start: int = 0,
    stop: Optional[int] = None,
) -> np.ndarray:
    """One array of a step, or one sequence's window `[start, stop)` of it, checked.

    Returns:
      A read-only array in the stored dtype: the whole array, or with `sequence`
      the `[stop - start, units]` (series: `[stop - start]`) window of that sequence.
    """
    dtype = format.DTYPES[entry["dtype"]]
    shape = entry["shape"]
    nbytes = entry_nbytes(entry)
    if sequence is None:
        data = read_checked(
            read_range, index, crc_table, entry["offset"], entry["chunk"], nbytes, 0, nbytes
        )
        return np.frombuffer(data, dtype).reshape(shape)
    time = shape[1]
    stop = time if stop is None else stop
    row = dtype.itemsize * math.prod(shape[2:])
    first = (sequence * time + start) * row
    data = read_checked(
        read_range,
        index,
        crc_table,
        entry["offset"],
        entry["chunk"],
        nbytes,
        first,
        first + (stop - start) * row,
    )
    return np.frombuffer(data, dtype).reshape([stop - start, *shape[2:]])


def read_pyramid(
    read_range: ReadRange,
    index: dict,
    crc_table: np.ndarray,
    entry: dict,
    sequence: int,
    first_block: int,
    stop_block: int,
) -> np.ndarray:
    """Blocks `[first_block, stop_block)` of one sequence's pyramid: `[blocks, 2, units]`."""
    pyramid = entry["pyramid"]
    dtype = format.DTYPES[entry["dtype"]]
    units = entry["shape"][2]
    row = 2 * units * dtype.itemsize
    nbytes = entry["shape"][0] * pyramid["blocks"] * row
    first = (sequence * pyramid["blocks"] + first_block) * row
    data = read_checked(
        read_range,
        index,
        crc_table,
        pyramid["offset"],
        pyramid["chunk"],
        nbytes,
        first,
        first + (stop_block - first_block) * row,
    )
    return np.frombuffer(data, dtype).reshape(stop_block - first_block, 2, units)


def read_mean(read_range: ReadRange, index: dict, crc_table: np.ndarray, entry: dict) -> np.ndarray:
    """The forget mean of an entry that has one (`extras.py`): `[units]` float64, checked."""
    nbytes = extras.MEAN_DTYPE.itemsize * entry["shape"][2]
    mean = entry["mean"]
    data = read_checked(
        read_range, index, crc_table, mean["offset"], mean["chunk"], nbytes, 0, nbytes
    )
    return np.frombuffer(data, extras.MEAN_DTYPE)


def bin_edges(start: int, stop: int, bins: int) -> np.ndarray:
    """`bins + 1` edges: bin i covers `[start + floor(i (stop - start) / bins), ...)`."""
    return start + (np.arange(bins + 1, dtype=np.int64) * (stop - start)) // bins


def binned(
    read_window: Callable[[int, int], np.ndarray],
    read_blocks: Optional[Callable[[int, int], np.ndarray]],
    start: int,
    stop: int,
    bins: int,
) -> np.ndarray:
    """Exact per-bin minimum and maximum of one sequence: `[2, bins, units]` float32.

    Args:
      read_window: `(t0, t1) -> [t1 - t0, units]` values of timesteps `[t0, t1)`.
      read_blocks: `(b0, b1) -> [b1 - b0, 2, units]` pyramid blocks, or None when the
        array has no pyramid.
      start, stop, bins: the window and bin count, `stop - start > bins >= 1`.

    Bins several pyramid blocks wide take the blocks that lie wholly inside them
    from the pyramid, and only the timesteps between a bin edge and the next
    block boundary from the array itself.
    """
    edges = bin_edges(start, stop, bins)
    if read_blocks is None or (stop - start) < 4 * format.PYRAMID_BLOCK * bins:
        values = np.asarray(read_window(start, stop), np.float32)
        starts = edges[:-1] - start
        return np.stack(
            [
                np.minimum.reduceat(values, starts, axis=0),
                np.maximum.reduceat(values, starts, axis=0),
            ]
        )
    block = format.PYRAMID_BLOCK
    # Every bin holds at least three whole blocks: [ceil(a/B), floor(b/B)) is not empty.
    inner_first = -(-edges[:-1] // block)
    inner_stop = edges[1:] // block
    b0, b1 = int(inner_first[0]), int(inner_stop[-1])
    blocks = np.asarray(read_blocks(b0, b1), np.float32)
    # reduceat over [first, stop) of each bin: the odd segments (the partial block
    # between two bins) are dropped, and one spare row lets the last stop be an index.
    blocks = np.concatenate([blocks, blocks[-1:]])
    segments = np.stack([inner_first - b0, inner_stop - b0], axis=1).ravel()
    low = np.minimum.reduceat(blocks[:, 0], segments, axis=0)[::2]
    high = np.maximum.reduceat(blocks[:, 1], segments, axis=0)[::2]
    # The partial blocks at the edges, read from the array: [floor(e/B)*B, ceil(e/B)*B)
    # around each edge that is not on a block boundary.
    for i, edge in enumerate(edges.tolist()):
        if edge % block == 0:
            continue
        t0 = edge // block * block
        t1 = min(t0 + block, int(edges[-1]), stop)
        t0 = max(t0, start)
        values = np.asarray(read_window(t0, t1), np.float32)
        split = edge - t0
        if i > 0 and split > 0:  # the tail of bin i - 1
            low[i - 1] = np.minimum(low[i - 1], values[:split].min(axis=0))
            high[i - 1] = np.maximum(high[i - 1], values[:split].max(axis=0))
        if i < bins and split < len(values):  # the head of bin i
            low[i] = np.minimum(low[i], values[split:].min(axis=0))
            high[i] = np.maximum(high[i], values[split:].max(axis=0))
    return np.stack([low, high])
