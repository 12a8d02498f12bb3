"""The on-disk format of version 2: a safetensors file per step, an index in the event file.

For each (tag, step) a writer leaves two things in the run directory:

1. **An array file**, `<run>/plugins/lstm_states/<file>`, in the safetensors format
   (https://github.com/huggingface/safetensors): an 8-byte little-endian header
   length, a JSON header naming each tensor's dtype, shape and byte range, then the
   raw little-endian C-order bytes. Anyone can open it without this package:
   `safetensors.numpy.load_file(path)`. Tensors:

   - `"<layer>/<kind>"`: `[batch, time, units]` states, `layer` indexed like
     `RecurrentStates.layers`, `kind` from `states.array_kinds` (`F16` or `F32`),
     or a gradient, `grad_hidden` and `grad_cell` (`F32`; `gradients.py`);
   - `"series/<name>"`: `[batch, time]` float32 tracks;
   - `"<layer>/<kind>/minmax"`: for sequences of `PYRAMID_MIN_TIME` timesteps or more,
     `[batch, ceil(time / PYRAMID_BLOCK), 2, units]`, the minimum and maximum of each
     block of `PYRAMID_BLOCK` timesteps, in the array's dtype (so binned views of a
     long sequence never read all of it);
   - `"<layer>/forget/mean"` (LSTM, from version 3): `F64` `[units]`, each unit's mean
     forget gate over the valid positions, from the gate as captured (`extras.py`);
   - `"crc32c"`: `U32`, the CRC32C of every `CHUNK_BYTES` slice of each tensor above,
     tensor after tensor (each tensor's slices start at its own first byte).

   The header's `__metadata__` holds `format` (`"tb_lstm_states"`), `version` and
   `tokens` (JSON: `batch` lists of strings, or `null`).

2. **An index summary** in the event file, under the tag the user logged, written
   only once the array file is complete: a `DT_STRING` scalar tensor holding the JSON
   of `build_index` (file name and size, each tensor's offset and first checksum
   slice, the checksums of the safetensors header and of the checksum table, the
   layout, lengths, series names, and the per-array statistics of the overview),
   sealed by its own CRC32C (`"index_crc32c"`, the last member: TensorBoard's Rust
   data server does not check the event file's record checksums, so the index
   carries one of its own). TensorBoard keeps these few kilobytes per step; it
   never sees the arrays.

Reading a (layer, kind, sequence, time window) is one ranged read of the slices that cover
it, each checked against the checksum table, which is itself checked against the index
(`ranged.py`). Every field read from a logdir is validated (`parse_index`) before it is used
to size anything, and a file name read from it can only name a file directly inside
`<run>/plugins/lstm_states/`.

Limits. A record may hold at most `MAX_LAYERS` layers (`num_layers`; two directions each at
most), `MAX_BATCH` sequences, `MAX_UNITS` units per array, `MAX_SERIES` series (names of at
most `MAX_NAME_CHARS` characters) and so at most `MAX_STATISTICS_ROWS` statistics rows;
timesteps are bounded only by the bytes present (`MAX_DIM`). Writers refuse more at write
time; readers refuse a record that claims more (the plugin answers 404). Every JSON document
read from a logdir is parsed by `jsonsafe.parse_json`, its size and nesting depth
(`MAX_JSON_DEPTH`) checked first. The tab shows the first `MAX_DESCRIPTION_CHARS` characters
of a description and says that it was cut.

This module holds the names, constants and layout of the format, builds the index and
parses it (the gradient arrays' own rules: `gradients.py`; the pyramids and forget means:
`extras.py`); numpy and google-crc32c only.
"""

import hashlib
import json
import math
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

import google_crc32c
import numpy as np

from tb_lstm_states import states as states_lib
from tb_lstm_states.storage import extras, gradients, jsonsafe
from tb_lstm_states.storage.errors import FormatError, NewerVersionError
from tb_lstm_states.storage.extras import PYRAMID_BLOCK as PYRAMID_BLOCK
from tb_lstm_states.storage.extras import PYRAMID_MIN_TIME as PYRAMID_MIN_TIME
from tb_lstm_states.storage.extras import compute_pyramid as compute_pyramid
from tb_lstm_states.storage.extras import pyramid_blocks as pyramid_blocks
from tb_lstm_states.storage.extras import pyramid_name as pyramid_name

FORMAT_NAME = "tb_lstm_states"
# The newest index version this package reads. It writes version 2, or version 3
# (`gradients.VERSION`) for a record holding gradient arrays or forget means (LSTM).
FORMAT_VERSION = 3

# Array files live in <run>/PLUGIN_DIRECTORY..., as TensorBoard's own plugins' assets.
PLUGIN_DIRECTORY = ("plugins", "lstm_states")
FILE_SUFFIX = ".safetensors"

CHUNK_BYTES = 1 << 16
CRC_TENSOR = "crc32c"

DTYPES: Dict[str, np.dtype] = {"float16": np.dtype("<f2"), "float32": np.dtype("<f4")}
_SAFETENSORS_DTYPES = {"float16": "F16", "float32": "F32", "float64": "F64", "uint32": "U32"}

# The overview's per-array statistics: the first five of sampled sequences
# (`statistics.COLUMNS`), the extremes over every position of the stored array
# (padding past a sequence's length is zero), for one colour scale across steps.
STATISTICS_COLUMNS = ("mean_abs", "std", "saturated", "dead", "change", "min", "max")

# Bounds on what a record may hold (writers refuse more, readers refuse records that
# claim more), checked in Python integers before anything is allocated.
MAX_DIM = 1 << 31  # timesteps (and any other dimension not capped below)
MAX_LAYERS = 64  # num_layers; each layer has one or two directions
MAX_BATCH = 1 << 12  # sequences of the probe batch
MAX_UNITS = 1 << 15  # units (the last dimension) of a state array
MAX_SERIES = 64  # series per record
MAX_NAME_CHARS = 1024  # characters of a series name
# One statistics row per array: layers x directions x array kinds (gradients too).
MAX_STATISTICS_ROWS = MAX_LAYERS * 2 * max(len(gradients.stored_kinds(k)) for k in states_lib.KINDS)
MAX_FILE_BYTES = 1 << 50
MAX_INDEX_BYTES = 1 << 20  # an index within the caps above is a few hundred KiB at most
MAX_HEADER_BYTES = 256 << 20  # a safetensors header: mostly the tokens
MAX_PLUGIN_DATA_BYTES = 1 << 16  # a summary's plugin data (the layout of its tag)
MAX_JSON_DEPTH = jsonsafe.MAX_JSON_DEPTH  # nesting of any JSON document read from a logdir
# Descriptions are shown up to this many characters; the tab says when one was cut.
MAX_DESCRIPTION_CHARS = 4096

INDEX_SEAL_KEY = "index_crc32c"
_INDEX_SEAL = re.compile(rb',"index_crc32c":([0-9]{1,10})\}\Z')

_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,239}\.safetensors")


def crc32c(data, crc: int = 0) -> int:
    """The CRC32C of `data` (`bytes`, not a memoryview), continuing from `crc`, in C."""
    return google_crc32c.extend(crc, data)


# ----------------------------------------------------------------------
# Names.


def array_name(layer: int, kind: str) -> str:
    """The tensor name of a state array."""
    return "%d/%s" % (layer, kind)


def series_name(name: str) -> str:
    """The tensor name of a series."""
    return "series/" + name


def array_file_name(tag: str, step: int, unique: str) -> str:
    """The name of a step's array file: readable, unique, and a single safe path part.

    Args:
      tag: the tag, any string (only letters, digits, `_` and `-` of it are kept,
        with a hash of the whole tag, so distinct tags never share a name).
      step: the step.
      unique: a string of `[A-Za-z0-9]` that makes the name unique to this write.
    """
    name = "%s%s%s" % (_file_stem(tag, step), unique, FILE_SUFFIX)
    if not is_safe_file_name(name):
        raise ValueError("unique must be letters and digits, got %r" % (unique,))
    return name


def _file_stem(tag: str, step: int) -> str:
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", tag).strip("_")[:64] or "tag"
    digest = hashlib.sha1(tag.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    step_text = ("m%d" % -step) if step < 0 else str(step)
    return "%s-%s.%s." % (slug, digest, step_text)


def check_file_name(index: dict, tag: str, step: int) -> None:
    """Checks that a parsed index names the array file of this (tag, step).

    The file name holds a hash of the tag and the step (`array_file_name`), so an
    index listed under another tag or step than it was written for (its event
    damaged outside the index's own checksum, on a loader that checks none) is
    refused instead of serving another step's arrays.

    Raises:
      FormatError: if the name belongs to another tag or step.
    """
    if not index["file"].startswith(_file_stem(tag, step)):
        raise FormatError(
            "lstm_states index names array file %s, which holds another tag or step than "
            "%r step %d (the event holding the index is damaged)" % (index["file"], tag[:200], step)
        )


def is_safe_file_name(name) -> bool:
    """Whether `name` (read from a logdir) may name an array file: one plain path part."""
    return isinstance(name, str) and _FILE_NAME.fullmatch(name) is not None


# ----------------------------------------------------------------------
# Layout of an array file.


class Tensor:
    """One tensor of an array file: name, dtype name, shape, absolute byte offset, and
    the index of its first checksum slice."""

    __slots__ = ("chunk", "chunks", "dtype", "name", "nbytes", "offset", "shape")

    def __init__(self, name: str, dtype: str, shape: Sequence[int]):
        self.name = name
        self.dtype = dtype
        self.shape = [int(d) for d in shape]
        self.nbytes = np.dtype(dtype).itemsize * math.prod(self.shape)
        self.chunks = -(-self.nbytes // CHUNK_BYTES)
        self.offset = 0
        self.chunk = 0


class Layout:
    """Where each tensor of an array file goes, and the file's safetensors header.

    Attributes:
      tensors: the data tensors, in file order, then the checksum table (`crc_table`).
      header: the bytes before the first tensor (length, JSON, padding).
      file_bytes: the size of the whole file.
    """

    def __init__(self, tensors: Sequence[Tensor], metadata: Dict[str, str]):
        self.tensors = list(tensors)
        total_chunks = sum(t.chunks for t in self.tensors)
        self.crc_table = Tensor(CRC_TENSOR, "uint32", [total_chunks])
        header: Dict[str, Any] = {"__metadata__": metadata}
        position = chunk = 0
        for tensor in [*self.tensors, self.crc_table]:
            header[tensor.name] = {
                "dtype": _SAFETENSORS_DTYPES[tensor.dtype],
                "shape": tensor.shape,
                "data_offsets": [position, position + tensor.nbytes],
            }
            tensor.offset = position
            tensor.chunk = chunk
            position += tensor.nbytes
            chunk += tensor.chunks
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode("ascii")
        text += b" " * (-(len(text) + 8) % 8)  # safetensors aligns the data to 8 bytes
        self.header = len(text).to_bytes(8, "little") + text
        for tensor in [*self.tensors, self.crc_table]:
            tensor.offset += len(self.header)
        self.file_bytes = len(self.header) + position


def build_index(
    layout: Layout,
    file_name: str,
    crc_table: np.ndarray,
    *,
    kind: str,
    num_layers: int,
    num_directions: int,
    batch: int,
    time: int,
    lengths: Sequence[int],
    series: Sequence[str],
    has_tokens: bool,
    arrays: Sequence[dict],
    statistics: Optional[np.ndarray],
    gradient_reach: Optional[int] = None,
) -> bytes:
    """The JSON index of a complete array file, as the index summary holds it.

    Args:
      layout: the file's layout.
      file_name: its name (`array_file_name`).
      crc_table: the checksums of its slices (uint32), as written.
      kind, num_layers, num_directions, batch, time, lengths, series: the record.
      has_tokens: whether the file's metadata holds tokens.
      arrays: for each data tensor that is a state array or series, in layout order,
        `{"layer", "kind"}` or `{"series"}`, with `"tensor"` its name and, for a state
        array with a pyramid, `"pyramid"` the pyramid tensor's name (a forget gate
        with a mean: `"mean"` the mean tensor's name).
      statistics: `[state arrays, len(STATISTICS_COLUMNS)]` float32, or None.
      gradient_reach: with gradient arrays, their `gradients.reach`.
    """
    by_name = {t.name: t for t in layout.tensors}
    entries = []
    for array in arrays:
        tensor = by_name[array["tensor"]]
        entry = {k: v for k, v in array.items() if k not in ("tensor", "pyramid", "mean")}
        entry.update(
            dtype=tensor.dtype, shape=tensor.shape, offset=tensor.offset, chunk=tensor.chunk
        )
        if array.get("pyramid"):
            pyramid = by_name[array["pyramid"]]
            entry["pyramid"] = {
                "offset": pyramid.offset,
                "chunk": pyramid.chunk,
                "blocks": pyramid.shape[1],
            }
        if array.get("mean"):
            mean = by_name[array["mean"]]
            entry["mean"] = {"offset": mean.offset, "chunk": mean.chunk}
        entries.append(entry)
    index: Dict[str, Any] = {
        "version": extras.index_version(arrays),
        "file": file_name,
        "file_bytes": layout.file_bytes,
        "header_bytes": len(layout.header),
        "header_crc32c": crc32c(layout.header),
        "chunk_bytes": CHUNK_BYTES,
        "crc_offset": layout.crc_table.offset,
        "crc_count": layout.crc_table.shape[0],
        "crc_crc32c": crc32c(np.ascontiguousarray(crc_table, "<u4").tobytes()),
        "kind": kind,
        "num_layers": num_layers,
        "num_directions": num_directions,
        "batch": batch,
        "time": time,
        "lengths": [int(n) for n in lengths],
        "series": list(series),
        "tokens": bool(has_tokens),
        "arrays": entries,
        "statistics": None
        if statistics is None
        else [[_json_float(v) for v in row] for row in np.asarray(statistics, np.float64)],
    }
    if index["version"] >= gradients.VERSION:
        index["gradient_reach"] = gradient_reach
    return seal_index(json.dumps(index, separators=(",", ":"), allow_nan=False).encode("utf-8"))


def seal_index(body: bytes) -> bytes:
    """Appends the index's own CRC32C as its last member, `"index_crc32c"`.

    `body` is a compact JSON object; the seal is the CRC32C of exactly those bytes,
    and `parse_index` recomputes it from the sealed text (no re-serialization).
    """
    if not body.endswith(b"}") or body == b"{}":
        raise ValueError("an index is a non-empty JSON object")
    return body[:-1] + b',"%s":%d}' % (INDEX_SEAL_KEY.encode("ascii"), crc32c(body))


def _check_seal(data: bytes) -> None:
    """Checks the seal of an index, if it has one (indexes before it have none)."""
    match = _INDEX_SEAL.search(data)
    if match is None:
        _require(
            b'"' + INDEX_SEAL_KEY.encode("ascii") + b'"' not in data,
            "its checksum is not where it belongs (damaged)",
        )
        return
    body = data[: match.start()] + b"}"
    if crc32c(body) != int(match.group(1)):
        raise FormatError("lstm_states index fails its checksum (damaged in the event file)")


def _json_float(value):
    return float(value) if math.isfinite(value) else None


# ----------------------------------------------------------------------
# Reading: validation.


def _require(condition, message):
    if not condition:
        raise FormatError("malformed lstm_states index: " + message)


def _is_int(value, low=0, high=MAX_DIM):
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def check_layout(record: dict, require) -> Tuple[str, int, int]:
    """Checks the layout fields a version 2 index and a version 1 header share.

    Args:
      record: the parsed JSON object.
      require: `require(condition, message)`, raising the reader's own error.

    Returns:
      `(kind, batch, time)`, checked: `num_layers`, `num_directions` and `lengths`
      are checked too.
    """
    kind: Any = record.get("kind")
    require(
        isinstance(kind, str) and kind in states_lib.KINDS, "unknown kind %r" % (str(kind)[:40],)
    )
    require(
        _is_int(record.get("num_layers"), 1, MAX_LAYERS),
        "num_layers must be an integer in [1, %d]" % MAX_LAYERS,
    )
    require(
        record.get("num_directions") in (1, 2) and _is_int(record["num_directions"]),
        "bad num_directions",
    )
    batch: Any = record.get("batch")
    time: Any = record.get("time")
    require(_is_int(batch, 1, MAX_BATCH), "batch must be an integer in [1, %d]" % MAX_BATCH)
    require(_is_int(time, 1), "time must be an integer in [1, %d]" % MAX_DIM)
    lengths = record.get("lengths")
    require(
        isinstance(lengths, list)
        and len(lengths) == batch
        and all(_is_int(n, 0, time) for n in lengths),
        "lengths must be %d integers in [0, %d]" % (batch, time),
    )
    return kind, batch, time


def parse_index(data) -> dict:
    """Parses and validates the JSON index of one step.

    Every size and offset is checked against the file size it claims and every
    other field, in Python integers (no wrap-around), before anything is allocated.

    Raises:
      FormatError: if it is malformed, or written by a newer version of this package.
    """
    data = bytes(data)
    _require(len(data) <= MAX_INDEX_BYTES, "index of %d bytes" % len(data))
    _check_seal(data)
    index = jsonsafe.parse_json(data, max_bytes=MAX_INDEX_BYTES, what="lstm_states index")
    _require(isinstance(index, dict), "not an object")
    index.pop(INDEX_SEAL_KEY, None)
    version = index.get("version")
    _require(_is_int(version), "no version")
    if version > FORMAT_VERSION:
        raise NewerVersionError(
            "lstm_states index version %d is newer than this package reads (%d); "
            "upgrade tb-lstm-states" % (version, FORMAT_VERSION)
        )
    _require(is_safe_file_name(index.get("file")), "bad file name")
    file_bytes = index.get("file_bytes")
    _require(_is_int(file_bytes, 8, MAX_FILE_BYTES), "bad file_bytes")
    header_bytes = index.get("header_bytes")
    _require(_is_int(header_bytes, 8, min(file_bytes, MAX_HEADER_BYTES)), "bad header_bytes")
    _require(_is_int(index.get("header_crc32c"), 0, 0xFFFFFFFF), "bad header_crc32c")
    _require(index.get("chunk_bytes") == CHUNK_BYTES, "chunk_bytes must be %d" % CHUNK_BYTES)
    crc_count = index.get("crc_count")
    crc_offset = index.get("crc_offset")
    _require(
        _is_int(crc_count, 0, MAX_FILE_BYTES)
        and _is_int(crc_offset, 0, MAX_FILE_BYTES)
        and crc_offset + 4 * crc_count <= file_bytes,
        "bad checksum table",
    )
    _require(_is_int(index.get("crc_crc32c"), 0, 0xFFFFFFFF), "bad crc_crc32c")
    _require(
        file_bytes == crc_offset + 4 * crc_count,
        "the checksum table must end the file (file_bytes %d)" % file_bytes,
    )
    kind, batch, time = check_layout(index, _require)
    series = index.get("series")
    _require(
        isinstance(series, list)
        and len(series) <= MAX_SERIES
        and all(isinstance(s, str) and 0 < len(s) <= MAX_NAME_CHARS for s in series)
        and len(set(series)) == len(series),
        "series must be at most %d distinct names of 1 to %d characters"
        % (MAX_SERIES, MAX_NAME_CHARS),
    )
    _require(isinstance(index.get("tokens"), bool), "bad tokens")
    arrays = index.get("arrays")
    entries = index["num_layers"] * index["num_directions"]
    kinds = gradients.stored_kinds(kind, version)
    _require(
        isinstance(arrays, list) and len(arrays) <= entries * len(kinds) + len(series),
        "arrays is not a list of at most one entry per array",
    )
    seen = set()
    spans = []  # (offset, bytes, first slice, slices) of every tensor the index names
    for entry in arrays:
        _require(isinstance(entry, dict), "array entry is not an object")
        _require(
            isinstance(entry.get("dtype"), str) and entry["dtype"] in DTYPES, "bad array dtype"
        )
        shape = entry.get("shape")
        if "series" in entry:
            key = ("series", entry["series"])
            _require(
                isinstance(entry["series"], str) and entry["series"] in series, "unknown series"
            )
            _require(
                shape == [batch, time] and entry["dtype"] == "float32",
                "series must be float32 [batch, time]",
            )
        else:
            key = (entry.get("layer"), entry.get("kind"))
            _require(_is_int(entry.get("layer"), 0, entries - 1), "bad array layer")
            _require(
                isinstance(entry.get("kind"), str) and entry["kind"] in kinds, "bad array kind"
            )
            _require(
                isinstance(shape, list)
                and len(shape) == 3
                and shape[:2] == [batch, time]
                and _is_int(shape[2], 1, MAX_UNITS),
                "array shape must be [batch, time, units] with at most %d units" % MAX_UNITS,
            )
        _require(key not in seen, "array listed twice")
        seen.add(key)
        nbytes = DTYPES[entry["dtype"]].itemsize * math.prod(shape)  # Python ints
        spans.append(_check_span(entry, nbytes, index))
        pyramid = entry.get("pyramid")
        if pyramid is not None:
            _require(
                "series" not in entry
                and isinstance(pyramid, dict)
                and pyramid.get("blocks") == -(-time // PYRAMID_BLOCK)
                and _is_int(pyramid["blocks"]),
                "bad pyramid",
            )
            spans.append(_check_span(pyramid, nbytes // time * 2 * pyramid["blocks"], index))
        if entry.get("mean") is not None:
            spans.append(extras.check_mean(index, entry, _check_span, _require))
    # The tensors tile the file between the header and the checksum table, and their
    # slices the table: the sizes declared are exactly the bytes present.
    position, chunk = index["header_bytes"], 0
    for offset, nbytes, first, count in sorted(spans):
        _require(
            offset == position and first == chunk,
            "arrays do not tile the file (a gap or overlap at byte %d)" % offset,
        )
        position, chunk = offset + nbytes, first + count
    _require(
        position == crc_offset and chunk == crc_count,
        "arrays do not fill the file (%d bytes, %d slices declared)" % (position, chunk),
    )
    for entry_index in range(entries):
        _require((entry_index, "hidden") in seen, "layer %d has no hidden array" % entry_index)
    gradients.check_index(index, _require)
    statistics = index.get("statistics")
    state_arrays = sum(1 for e in arrays if "series" not in e)
    _require(
        statistics is None
        or (
            isinstance(statistics, list)
            and len(statistics) == state_arrays
            and all(
                isinstance(row, list)
                and len(row) == len(STATISTICS_COLUMNS)
                and all(
                    v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
                    for v in row
                )
                for row in statistics
            )
        ),
        "bad statistics",
    )
    return index


def _check_span(entry, nbytes, index):
    offset, chunk = entry.get("offset"), entry.get("chunk")
    _require(
        _is_int(offset, index["header_bytes"], MAX_FILE_BYTES)
        and offset + nbytes <= index["crc_offset"],
        "array bytes out of the file",
    )
    count = -(-nbytes // CHUNK_BYTES)
    _require(
        _is_int(chunk, 0, MAX_FILE_BYTES) and chunk + count <= index["crc_count"],
        "bad checksum slice",
    )
    return offset, nbytes, chunk, count


def find_array(index: dict, *, layer=None, kind=None, series=None) -> dict:
    """The entry of one array in a parsed index.

    Raises:
      KeyError: if the step has no such array.
    """
    return index["arrays"][array_position(index["arrays"], layer=layer, kind=kind, series=series)]


def array_position(arrays: List[dict], *, layer=None, kind=None, series=None) -> int:
    """The position in `arrays` (an index's or a version 1 header's) of one array.

    Raises:
      KeyError: if there is no such array.
    """
    for position, entry in enumerate(arrays):
        if series is not None:
            if entry.get("series") == series:
                return position
        elif "series" not in entry and entry.get("layer") == layer and entry.get("kind") == kind:
            return position
    raise KeyError(series if series is not None else (layer, kind))


def statistics_rows(index: dict) -> List[Tuple[int, str]]:
    """The `(layer, kind)` of each statistics row of a parsed index."""
    return [(e["layer"], e["kind"]) for e in index["arrays"] if "series" not in e]
