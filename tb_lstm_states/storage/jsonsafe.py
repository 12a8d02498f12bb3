"""JSON read from a logdir, parsed only once its size and nesting are checked.

Every JSON document read from a logdir (indexes, safetensors headers, token lists,
version 1 headers, plugin data) is parsed by `parse_json`: its size is checked
first, then its nesting depth (`MAX_JSON_DEPTH`) by a linear scan, so that no input
reaches the recursive parser deeper than that.
"""

import json
from typing import Any

import numpy as np

from tb_lstm_states.storage.errors import FormatError

MAX_JSON_DEPTH = 32  # nesting of any JSON document read from a logdir

_JSON_SCAN_CHUNK = 1 << 20


def json_depth(data: bytes) -> int:
    """The deepest nesting of `[` and `{` outside strings in `data`, by a linear scan.

    Used before `json.loads`, whose parser recurses once per level: a document is
    refused for its depth before it reaches it, never by a `RecursionError`. The scan
    follows JSON's string and escape rules (an odd run of backslashes escapes a
    quote), so it counts exactly the brackets `json.loads` would descend into up to
    the first syntax error (after which the parser stops). numpy, 1 MiB at a time.
    """
    buffer = np.frombuffer(data, np.uint8)
    depth = deepest = 0
    in_string = 0
    run = 0  # backslashes just before the chunk
    for begin in range(0, len(buffer), _JSON_SCAN_CHUNK):
        chunk = buffer[begin : begin + _JSON_SCAN_CHUNK]
        n = len(chunk)
        quotes = chunk == 0x22
        backslashes = chunk == 0x5C
        if run or backslashes.any():
            position = np.arange(n, dtype=np.int64)
            last_other = np.maximum.accumulate(np.where(backslashes, -1, position))
            before = np.empty(n, np.int64)  # backslashes right before each position
            before[0] = run
            before[1:] = np.where(
                last_other[:-1] >= 0, position[1:] - 1 - last_other[:-1], position[1:] + run
            )
            quotes &= before % 2 == 0
            run = int(n - 1 - last_other[-1]) if last_other[-1] >= 0 else n + run
        toggles = np.cumsum(quotes, dtype=np.int64)
        outside = (toggles + in_string) % 2 == 0
        delta = ((chunk == 0x5B) | (chunk == 0x7B)).astype(np.int64)
        delta -= (chunk == 0x5D) | (chunk == 0x7D)
        delta *= outside
        levels = np.cumsum(delta) + depth
        if n:
            deepest = max(deepest, int(levels.max()))
            depth = int(levels[-1])
            in_string = int(toggles[-1] + in_string) % 2
    return deepest


def parse_json(data, *, max_bytes: int, what: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parses JSON read from a logdir, its size and nesting checked first.

    Args:
      data: UTF-8 bytes (or str).
      max_bytes: the largest document accepted.
      what: names the document in errors ("lstm_states index").
      max_depth: the deepest nesting accepted.

    Raises:
      FormatError: if it is too large, nested too deep, or not JSON.
    """
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    data = bytes(data)
    if len(data) > max_bytes:
        raise FormatError("malformed %s: %d bytes, more than %d" % (what, len(data), max_bytes))
    depth = json_depth(data)
    if depth > max_depth:
        raise FormatError(
            "malformed %s: JSON nested %d levels deep, more than %d" % (what, depth, max_depth)
        )
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise FormatError("malformed %s: not JSON (%s)" % (what, type(e).__name__)) from None
