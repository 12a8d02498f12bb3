"""The binary record of one (tag, step): a header blob and one blob per array.

A record is a sequence of blobs, stored by TensorBoard as a blob sequence:

- blob 0, the header: the bytes `HEADER_MAGIC` then UTF-8 JSON (never pickle) with
  `version`, `kind`, `num_layers`, `num_directions`, `batch`, `time`, `lengths`,
  `series` (names), `tokens` (`batch` lists of strings, or null) and `arrays`, a list
  that describes blob `i + 1` for each `i`: either `{"layer": int, "kind": str}`
  (`layer` indexed like `RecurrentStates.layers`, `kind` from `states.array_kinds`) or
  `{"series": str}`, each with `dtype` (`"float16"` or `"float32"`) and `shape`.
- blob i + 1: the array's raw little-endian bytes, C order, readable with
  `numpy.frombuffer(blob, dtype="<f2").reshape(shape)`.

This module imports numpy only, so the TensorBoard backend and notebooks can read
records without torch (encoding float32 arrays as float16 imports numba on first
use). Every header field is validated before anything is allocated.
"""

import json
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from tb_lstm_states import states as states_lib

HEADER_MAGIC = b"TLSH"
HEADER_VERSION = 1

DTYPES = {"float16": np.dtype("<f2"), "float32": np.dtype("<f4")}
_FLOAT16_MAX = float(np.finfo(np.float16).max)

# Sanity bounds on header fields, so a hostile header cannot make a reader allocate.
_MAX_DIM = 1 << 31
_MAX_LAYERS = 1 << 12


class RecordError(ValueError):
    """A record is malformed, or its version is newer than this package reads."""


def fits_float16(array: np.ndarray) -> bool:
    """Whether every finite value of `array` lies within float16's range."""
    if array.dtype == np.float16 or array.size == 0:
        return True
    if array.dtype in (np.float32, np.float64):
        # One compiled pass that releases the GIL once (a writer thread is running).
        from tb_lstm_states import copy_kernel  # numba: only when encoding

        flat = array.reshape(-1)
        return copy_kernel.count_beyond(flat, array.dtype.type(_FLOAT16_MAX)) == 0
    # Two reductions over the array, no temporaries.
    with np.errstate(invalid="ignore"):
        high, low = float(array.max()), float(array.min())
    if np.isfinite(high) and np.isfinite(low):
        return max(high, -low) <= _FLOAT16_MAX
    # NaN or Inf present: they are kept as they are, only the finite values count.
    finite = array[np.isfinite(array)]
    return finite.size == 0 or float(np.abs(finite).max()) <= _FLOAT16_MAX


def _stored_dtype(array: np.ndarray, dtype: str) -> str:
    """The dtype `array` is stored as: float16 unless its finite values need more."""
    if dtype == "float16" and not fits_float16(array):
        return "float32"
    return dtype


def _check_shape(name, array, shape):
    if tuple(array.shape) != tuple(shape):
        raise ValueError(
            "%s has shape %s, expected %s (batch, time[, units]) to match the states"
            % (name, list(array.shape), list(shape))
        )


def encode_record(
    recurrent_states: states_lib.RecurrentStates,
    *,
    series: Optional[Dict[str, np.ndarray]] = None,
    tokens: Optional[Sequence[Sequence[str]]] = None,
    dtype: str = "float16",
    copy: bool = False,
) -> List[np.ndarray]:
    """Encodes states (numpy arrays) into the blobs of one record.

    Args:
      recurrent_states: a `RecurrentStates` whose arrays are numpy arrays.
      series: named `[batch, time]` numeric tracks aligned with the input.
      tokens: `batch` lists of strings, one per timestep (at most `time` each).
      dtype: `"float16"` (arrays with finite values beyond float16's range are kept as
        float32) or `"float32"`.
      copy: if True, no returned blob shares memory with the inputs, so they can be
        changed as soon as this returns (a writer copies into buffers of its own,
        see `plan_record`).

    Returns:
      The blobs: the header as a uint8 array, then each array as a contiguous array
      in its stored dtype (`memoryview(blob)` or `blob.tobytes()` gives its bytes).

    Raises:
      ValueError: on a dtype, kind or shape that does not fit, naming the fix.
    """
    header, arrays = plan_record(recurrent_states, series=series, tokens=tokens, dtype=dtype)
    blobs = [header]
    for array, stored in arrays:
        array = np.asarray(array)
        if array.dtype == np.float32 and stored == np.float16:
            # numpy's float16 cast is scalar code, 30x slower than the compiled one.
            from tb_lstm_states import copy_kernel  # numba: only when encoding

            out = np.empty(array.shape, stored)
            copy_kernel.copy_into(out, array)
        elif copy:
            out = np.array(array, dtype=stored, order="C", copy=True)
        else:
            out = np.ascontiguousarray(array, dtype=stored)
        blobs.append(out)
    return blobs


def plan_record(
    recurrent_states: states_lib.RecurrentStates,
    *,
    series: Optional[Dict[str, np.ndarray]] = None,
    tokens: Optional[Sequence[Sequence[str]]] = None,
    dtype: str = "float16",
) -> Tuple[np.ndarray, List[Tuple[np.ndarray, np.dtype]]]:
    """Validates a record and decides how each array is stored, copying none.

    Args: as for `encode_record`.

    Returns:
      `(header, arrays)`: the header blob (a uint8 array), and for each later blob
      `(array, stored_dtype)`: the given array (as a numpy array) and the numpy
      dtype its blob holds it in, in blob order.

    Raises:
      ValueError: on a dtype, kind or shape that does not fit, naming the fix.
    """
    if dtype not in DTYPES:
        raise ValueError("dtype must be one of %s, got %r" % (sorted(DTYPES), dtype))
    kind = recurrent_states.kind
    if kind not in states_lib.KINDS:
        raise ValueError("kind must be one of %s, got %r" % (states_lib.KINDS, kind))
    layers = recurrent_states.layers
    num_directions = int(recurrent_states.num_directions)
    if not layers or num_directions not in (1, 2) or len(layers) % num_directions:
        raise ValueError(
            "states need one LayerStates per (layer, direction); got %d layers for "
            "%d directions" % (len(layers), num_directions)
        )
    first = np.shape(layers[0].hidden)
    if len(first) != 3:
        raise ValueError(
            "layer 0 hidden must be [batch, time, units], got shape %s" % list(first))
    batch, time = int(first[0]), int(first[1])
    lengths = np.asarray(recurrent_states.lengths).astype(np.int64).reshape(-1)
    _check_shape("lengths", lengths, (batch,))
    length_list = lengths.tolist()
    if length_list and (min(length_list) < 0 or max(length_list) > time):
        raise ValueError("lengths must lie in [0, time=%d], got %s" % (time, length_list))

    entries, arrays = [], []
    gate_names = states_lib.GATE_NAMES[kind]
    for index, layer in enumerate(layers):
        for name in states_lib.array_kinds(kind):
            array = np.asarray(layer.get(name) if name != "cell" else layer.cell)
            if array is None or array.ndim != 3:
                raise ValueError(
                    "layer %d %s must be [batch, time, units], got shape %s"
                    % (index, name, list(np.shape(array)))
                )
            if array.shape[:2] != (batch, time):
                _check_shape("layer %d %s" % (index, name), array, (batch, time, array.shape[2]))
            if name in gate_names:
                # Gates are as wide as the cell (LSTM) or the hidden state (GRU).
                width = np.shape(layer.cell if kind == "lstm" else layer.hidden)[2]
                if array.shape[2] != width:
                    raise ValueError(
                        "layer %d %s gate has %d units, expected %d like its %s state"
                        % (index, name, array.shape[2], width,
                           "cell" if kind == "lstm" else "hidden"))
            stored_dtype = _stored_dtype(array, dtype)
            entries.append(
                {"layer": index, "kind": name, "dtype": stored_dtype, "shape": list(array.shape)}
            )
            arrays.append((array, DTYPES[stored_dtype]))

    series_names = []
    for name, values in (series or {}).items():
        if not isinstance(name, str) or not name:
            raise ValueError("series names must be non-empty strings, got %r" % (name,))
        values = np.asarray(values)
        if values.ndim == 1 and batch == 1:
            values = values[None]
        if not np.issubdtype(values.dtype, np.number) and values.dtype != np.bool_:
            raise ValueError("series %r must be numeric, got dtype %s" % (name, values.dtype))
        _check_shape("series %r" % name, values, (batch, time))
        entries.append({"series": name, "dtype": "float32", "shape": list(values.shape)})
        arrays.append((values, DTYPES["float32"]))
        series_names.append(name)

    token_lists = None
    if tokens is not None:
        if isinstance(tokens, str) or len(tokens) != batch:
            raise ValueError(
                "tokens must be %d lists (one per sequence) of strings, got %s"
                % (batch, type(tokens).__name__ if isinstance(tokens, str) else len(tokens))
            )
        token_lists = []
        for b, sequence in enumerate(tokens):
            if isinstance(sequence, str) or len(sequence) > time:
                raise ValueError(
                    "tokens[%d] must be a list of at most time=%d strings" % (b, time)
                )
            token_lists.append([str(t) for t in sequence])

    header = {
        "version": HEADER_VERSION,
        "kind": kind,
        "num_layers": len(layers) // num_directions,
        "num_directions": num_directions,
        "batch": batch,
        "time": time,
        "lengths": length_list,
        "series": series_names,
        "tokens": token_lists,
        "arrays": entries,
    }
    header_bytes = HEADER_MAGIC + json.dumps(header, separators=(",", ":")).encode("utf-8")
    return np.frombuffer(header_bytes, dtype=np.uint8), arrays


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
        header = json.loads(blob[len(HEADER_MAGIC):].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise RecordError("malformed lstm_states record: header is not JSON (%s)" % e) from None
    _require(isinstance(header, dict), "header is not an object")
    version = header.get("version")
    _require(_is_int(version), "header has no version")
    if version > HEADER_VERSION:
        raise RecordError(
            "lstm_states record version %d is newer than this package reads (%d); "
            "upgrade tb-lstm-states" % (version, HEADER_VERSION)
        )
    kind = header.get("kind")
    _require(kind in states_lib.KINDS, "unknown kind %r" % (kind,))
    _require(_is_int(header.get("num_layers"), 1, _MAX_LAYERS), "bad num_layers")
    _require(header.get("num_directions") in (1, 2), "bad num_directions")
    batch, time = header.get("batch"), header.get("time")
    _require(_is_int(batch) and _is_int(time), "bad batch or time")
    lengths = header.get("lengths")
    _require(
        isinstance(lengths, list)
        and len(lengths) == batch
        and all(_is_int(n, 0, time) for n in lengths),
        "lengths must be %d integers in [0, %d]" % (batch, time),
    )
    series = header.get("series")
    _require(isinstance(series, list) and all(isinstance(s, str) for s in series), "bad series")
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
    _require(isinstance(arrays, list), "arrays is not a list")
    num_entries = header["num_layers"] * header["num_directions"]
    for entry in arrays:
        _require(isinstance(entry, dict), "array entry is not an object")
        _require(entry.get("dtype") in DTYPES, "bad array dtype %r" % (entry.get("dtype"),))
        shape = entry.get("shape")
        if "series" in entry:
            _require(entry["series"] in series, "unknown series %r" % (entry["series"],))
            _require(shape == [batch, time], "series shape must be [batch, time]")
        else:
            _require(_is_int(entry.get("layer"), 0, num_entries - 1), "bad array layer")
            _require(entry.get("kind") in states_lib.array_kinds(kind), "bad array kind")
            _require(
                isinstance(shape, list)
                and len(shape) == 3
                and shape[:2] == [batch, time]
                and _is_int(shape[2]),
                "array shape must be [batch, time, units]",
            )
    return header


def find_array(header: dict, *, layer: Optional[int] = None, kind: Optional[str] = None,
               series: Optional[str] = None) -> int:
    """Returns the blob index (1-based) of an array described in a decoded header.

    Raises:
      KeyError: if the record has no such array.
    """
    for i, entry in enumerate(header["arrays"]):
        if series is not None:
            if entry.get("series") == series:
                return i + 1
        elif entry.get("layer") == layer and entry.get("kind") == kind:
            return i + 1
    raise KeyError(series if series is not None else (layer, kind))


def decode_array(header: dict, index: int, blob: bytes) -> np.ndarray:
    """Decodes blob `index` (1-based, as `find_array` returns) into a read-only array.

    Raises:
      RecordError: if the blob's size does not match the header.
    """
    _require(1 <= index <= len(header["arrays"]), "no array at blob %d" % index)
    entry = header["arrays"][index - 1]
    dtype = DTYPES[entry["dtype"]]
    count = int(np.prod(entry["shape"], dtype=np.int64))
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
