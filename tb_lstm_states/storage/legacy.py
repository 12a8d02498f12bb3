"""Reading version 1 records: the arrays inside the event file, as a blob sequence.

Version 1 of this package wrote each (tag, step) as one blob sequence:

- blob 0, the header: the bytes `HEADER_MAGIC` then UTF-8 JSON (never pickle) with
  `version`, `kind`, `num_layers`, `num_directions`, `batch`, `time`, `lengths`,
  `series` (names), `tokens` (`batch` lists of strings, or null) and `arrays`, a list
  that describes blob `i + 1` for each `i`: either `{"layer": int, "kind": str}` or
  `{"series": str}`, each with `dtype` (`"float16"` or `"float32"`) and `shape`;
- blob i + 1: the array's raw little-endian bytes, C order.

and its statistics as a tensor under `tag + metadata.STATISTICS_SUFFIX`. This package
writes version 2 (`format.py`) and reads both. Every header field is validated before
anything is allocated, against the same caps as version 2 (`format.MAX_LAYERS`,
`MAX_BATCH`, `MAX_UNITS`, `MAX_SERIES`), and the header's JSON is parsed with
`jsonsafe.parse_json` (size and depth bounded).

Version 1 arrays carry no checksum of their own: only the event file's record
checksum covers them. `read_states` checks it on every record; the plugin reads
version 1 records from the event file itself and checks it too (`server/events.py`).
"""

import math
from typing import Dict, List, Optional, Sequence

import numpy as np

from tb_lstm_states import states as states_lib
from tb_lstm_states.storage import format, jsonsafe

HEADER_MAGIC = b"TLSH"
HEADER_VERSION = 1

DTYPES: Dict[str, np.dtype] = {"float16": np.dtype("<f2"), "float32": np.dtype("<f4")}

# Bounds on header fields (as version 2's), so a hostile header cannot make a reader allocate.
_MAX_DIM = format.MAX_DIM


class RecordError(ValueError):
    """A record is malformed, or its version is newer than this package reads."""


def _require(condition, message):
    if not condition:
        raise RecordError("malformed lstm_states record: " + message)


def _is_int(value, low=0, high=_MAX_DIM):
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def decode_header(blob: bytes) -> dict:
    """Parses and validates a header blob.

    Raises:
      RecordError: if it is malformed, or written by a newer version of this package.
    """
    blob = bytes(blob)
    _require(blob.startswith(HEADER_MAGIC), "header does not start with %r" % HEADER_MAGIC)
    try:
        header = jsonsafe.parse_json(
            blob[len(HEADER_MAGIC) :], max_bytes=format.MAX_HEADER_BYTES, what="header"
        )
    except format.FormatError as e:
        raise RecordError("malformed lstm_states record: %s" % e) from None
    _require(isinstance(header, dict), "header is not an object")
    version = header.get("version")
    _require(_is_int(version), "header has no version")
    if version > HEADER_VERSION:
        raise format.NewerVersionError(
            "lstm_states record version %d is newer than this package reads (%d); "
            "upgrade tb-lstm-states" % (version, HEADER_VERSION)
        )
    kind, batch, time = format.check_layout(header, _require)
    series = header.get("series")
    _require(
        isinstance(series, list)
        and len(series) <= format.MAX_SERIES
        and all(isinstance(s, str) and len(s) <= format.MAX_NAME_CHARS for s in series)
        and len(set(series)) == len(series),
        "series must be at most %d distinct names of at most %d characters"
        % (format.MAX_SERIES, format.MAX_NAME_CHARS),
    )
    tokens = header.get("tokens")
    _require(
        tokens is None
        or (
            isinstance(tokens, list)
            and len(tokens) == batch
            and all(
                isinstance(seq, list) and len(seq) <= time and all(isinstance(t, str) for t in seq)
                for seq in tokens
            )
        ),
        "bad tokens",
    )
    arrays = header.get("arrays")
    num_entries = header["num_layers"] * header["num_directions"]
    kinds = states_lib.array_kinds(kind)
    _require(
        isinstance(arrays, list) and len(arrays) <= num_entries * len(kinds) + len(series),
        "arrays is not a list of at most one entry per array",
    )
    seen = set()
    for entry in arrays:
        _require(isinstance(entry, dict), "array entry is not an object")
        _require(
            isinstance(entry.get("dtype"), str) and entry["dtype"] in DTYPES,
            "bad array dtype %r" % (str(entry.get("dtype"))[:40],),
        )
        shape = entry.get("shape")
        if "series" in entry:
            key = ("series", entry["series"])
            _require(
                isinstance(entry["series"], str) and entry["series"] in series,
                "unknown series %r" % (str(entry["series"])[:100],),
            )
            _require(shape == [batch, time], "series shape must be [batch, time]")
        else:
            key = (entry.get("layer"), entry.get("kind"))
            _require(_is_int(entry.get("layer"), 0, num_entries - 1), "bad array layer")
            _require(
                isinstance(entry.get("kind"), str) and entry["kind"] in kinds, "bad array kind"
            )
            _require(
                isinstance(shape, list)
                and len(shape) == 3
                and shape[:2] == [batch, time]
                and _is_int(shape[2], 1, format.MAX_UNITS),
                "array shape must be [batch, time, units] with at most %d units" % format.MAX_UNITS,
            )
        _require(key not in seen, "array listed twice")
        seen.add(key)
    return header


def find_array(
    header: dict,
    *,
    layer: Optional[int] = None,
    kind: Optional[str] = None,
    series: Optional[str] = None,
) -> int:
    """Returns the blob index (1-based) of an array described in a decoded header.

    Raises:
      KeyError: if the record has no such array.
    """
    return 1 + format.array_position(header["arrays"], layer=layer, kind=kind, series=series)


def decode_array(header: dict, index: int, blob: bytes) -> np.ndarray:
    """Decodes blob `index` (1-based, as `find_array` returns) into a read-only array.

    Raises:
      RecordError: if the blob's size does not match the header.
    """
    _require(1 <= index <= len(header["arrays"]), "no array at blob %d" % index)
    entry = header["arrays"][index - 1]
    dtype = DTYPES[entry["dtype"]]
    count = math.prod(entry["shape"])  # Python ints: no wrap-around
    _require(
        len(blob) == count * dtype.itemsize,
        "blob %d holds %d bytes, its header says %d" % (index, len(blob), count * dtype.itemsize),
    )
    return np.frombuffer(blob, dtype=dtype).reshape(entry["shape"])


def decode_record(blobs: Sequence[bytes]):
    """Decodes every blob of a record.

    Returns:
      `(recurrent_states, series, tokens, header)`: `RecurrentStates` of numpy
      arrays (in their stored dtype), a dict of `[batch, time]` float32 series,
      the token lists or None, and the validated header.

    Raises:
      RecordError: if the record is malformed.
    """
    _require(len(blobs) >= 1, "record has no header blob")
    header = decode_header(blobs[0])
    _require(
        len(blobs) == len(header["arrays"]) + 1,
        "record has %d blobs, its header describes %d" % (len(blobs), len(header["arrays"]) + 1),
    )
    num_entries = header["num_layers"] * header["num_directions"]
    found: List[Dict[str, np.ndarray]] = [{} for _ in range(num_entries)]
    series = {}
    for i, entry in enumerate(header["arrays"]):
        array = decode_array(header, i + 1, blobs[i + 1])
        if "series" in entry:
            series[entry["series"]] = array
        else:
            found[entry["layer"]][entry["kind"]] = array
    layers = []
    for index, arrays in enumerate(found):
        _require("hidden" in arrays, "layer %d has no hidden array" % index)
        gates = {g: arrays[g] for g in states_lib.GATE_NAMES[header["kind"]] if g in arrays}
        layers.append(states_lib.LayerStates(arrays["hidden"], arrays.get("cell"), gates))
    recurrent_states = states_lib.RecurrentStates(
        kind=header["kind"],
        layers=layers,
        lengths=np.asarray(header["lengths"], dtype=np.int64),
        num_directions=header["num_directions"],
    )
    return recurrent_states, series, header["tokens"], header
