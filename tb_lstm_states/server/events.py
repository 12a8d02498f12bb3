"""Version 1 records read from the run's event files themselves, their checksums checked.

A version 1 step's arrays live in the event file, in one record. TensorBoard's Rust
data server (`--load_fast`) does not check the CRC32C of the records it loads (a
flipped bit is served as a wrong value), and its blob keys cannot name a run or tag
that holds `"` or `\\`. So the plugin lists version 1 steps through the data
provider, but reads each one from the event file:

- it finds the record by (tag, step, wall time): each event file of the run is
  scanned once, reading only each record's 12-byte frame and the first bytes of its
  payload (the wall time, step and tags come first), and the scan resumes where it
  stopped when the file grows;
- it reads the whole record, checks the CRC32C of its length and of its payload
  (in C), and decodes the blobs from it.

A record that fails its checksum answers 404 naming the file and byte, and is never
served; so does a record that the run's event files do not hold (a damaged frame
hides it, or its file was removed since TensorBoard read it). Only when the run has
no event file this process can list (a remote logdir it cannot read) is a record read
through the provider, unverified, with a warning logged once.
"""

import os
import posixpath
import struct
import threading
from typing import Dict, List, Optional, Tuple

import google_crc32c
from google.protobuf import message as message_lib
from tensorboard.compat import tf
from tensorboard.compat.proto import event_pb2
from tensorboard.util import tb_logging

from tb_lstm_states import metadata
from tb_lstm_states.server import arrays
from tb_lstm_states.storage import event_file, format

logger = tb_logging.get_logger()

_FRAME = struct.Struct("<QI")
_WALL_TIME = struct.Struct("<d")
# The scan reads this much at a time: many small records, or the start of a large one.
_SCAN_BYTES = 1 << 16
_MAX_TAG_BYTES = 1 << 16
_MAX_VALUES_PER_EVENT = 256

Key = Tuple[str, int, bytes]  # tag, step, wall time (its 8 bytes, so NaN compares)


def key_of(tag: str, step: int, wall_time: float) -> Key:
    return tag, int(step), _WALL_TIME.pack(float(wall_time))


class _File:
    __slots__ = ("broken", "entries", "scanned_to")

    def __init__(self):
        self.scanned_to = 0
        self.broken = False  # a record's length failed its checksum: nothing after it frames
        self.entries: Dict[Key, Tuple[int, int]] = {}  # key -> (offset, payload length)


class _Run:
    def __init__(self):
        self.lock = threading.Lock()
        self.files: Dict[str, _File] = {}
        self.tags = set()  # the tags indexed


class EventRecords:
    """Finds and reads version 1 records in the event files of a logdir's runs."""

    def __init__(self, logdir: str):
        self._logdir = logdir
        self._runs: Dict[str, _Run] = {}
        self._lock = threading.Lock()

    def blobs(self, run: str, tag: str, step: int, wall_time: float) -> Optional[List[bytes]]:
        """The blobs of a version 1 record, read from its event file and checked.

        Returns:
          The record's blobs, or None when the run has no event file to read.

        Raises:
          format.FormatError: naming the file and byte, when the record fails its
            checksum or is not a version 1 record of that tag; when the run's event
            files do not hold it; or for a run name out of the logdir
            (`arrays.LogdirError`).
        """
        directory = arrays.run_directory(self._logdir, run)
        with self._lock:
            state = self._runs.setdefault(run, _Run())
        key = key_of(tag, step, wall_time)
        with state.lock:
            if tag not in state.tags:  # index it from the start of every file
                state.tags.add(tag)
                state.files.clear()
            found = _lookup(state, key)
            if found is None:  # new records, or new files: list and scan what is new
                self._scan(state, directory)
                found = _lookup(state, key)
            if found is None and not state.files:
                return None
        if found is None:
            raise format.FormatError(
                "no event file of run %r holds the record of tag %r at step %d that "
                "TensorBoard listed (a damaged record frame hides it, or its file was "
                "removed); it is not served" % (run, tag[:200], step)
            )
        path, offset, length = found
        return read_record(path, offset, length, tag, step)

    def _scan(self, state: _Run, directory: str) -> None:
        try:
            names = tf.io.gfile.listdir(directory)
        except (tf.errors.OpError, OSError):
            names = []
        for name in names:
            if "tfevents" in name:
                state.files.setdefault(_join(directory, name), _File())
        for path in sorted(state.files):
            scanned = state.files[path]
            if not scanned.broken:
                try:
                    _scan_file(path, scanned, state.tags)
                except format.FormatError as e:  # removed or unreadable since listed
                    logger.warning("lstm_states: %s", e)


def _join(directory, name):
    return posixpath.join(directory, name) if "://" in directory else os.path.join(directory, name)


def _lookup(state: _Run, key: Key):
    """The last record of `key` in file order: `(path, offset, length)` or None."""
    found = None
    for path in sorted(state.files):
        entry = state.files[path].entries.get(key)
        if entry is not None:
            found = (path, *entry)
    return found


def _scan_file(path: str, scanned: _File, tags) -> None:
    """Indexes the records of `tags` in `path` from where the last scan stopped."""
    name = "event file %s" % posixpath.basename(path.replace("\\", "/"))
    with arrays.RangeReader(path, name) as reader:
        size = reader.size
        # The bytes read last, and where they begin.
        window_start, window_data = scanned.scanned_to, b""

        def view(offset, count):
            nonlocal window_start, window_data
            if offset < window_start or offset + count > window_start + len(window_data):
                window_start, window_data = offset, reader(offset, max(count, _SCAN_BYTES))
            return window_data[offset - window_start : offset - window_start + count]

        position = scanned.scanned_to
        while position + 12 <= size:
            frame = view(position, 12)
            if len(frame) < 12:
                break
            length, crc = _FRAME.unpack(frame)
            if crc != event_file.masked_crc(google_crc32c.value(frame[:8])):
                scanned.broken = True
                logger.warning(
                    "lstm_states: %s: the record at byte %d has a corrupt length "
                    "(checksum mismatch); no record after it is read",
                    name,
                    position,
                )
                break
            end = position + 12 + length + 4
            if end > size:
                break  # the last record is still being written
            payload_at = position + 12
            for tag, step, wall in _event_keys(
                lambda offset, count, at=payload_at, n=length: view(
                    at + offset, max(0, min(count, n - offset))
                ),
                length,
            ):
                if tag in tags:
                    scanned.entries[(tag, step, wall)] = (position, length)
            position = end
        scanned.scanned_to = position


class _Truncated(Exception):
    pass


def _varint(data: bytes, position: int) -> Tuple[int, int]:
    value = shift = 0
    while True:
        if position >= len(data) or shift > 63:
            raise _Truncated()
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, position


def _fields(read, begin: int, end: int):
    """`(field, wire type, value or (offset, length), next)` of a message's fields in
    `[begin, end)` of a payload read through `read(offset, count)`."""
    position = begin
    while position < end:
        head = read(position, 20)
        key, used = _varint(head, 0)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, after = _varint(head, used)
            yield field, wire, value, position + after
            position += after
        elif wire == 1:
            if used + 8 > len(head):
                raise _Truncated()
            yield field, wire, head[used : used + 8], position + used + 8
            position += used + 8
        elif wire == 2:
            count, after = _varint(head, used)
            yield field, wire, (position + after, count), position + after + count
            position += after + count
        elif wire == 5:
            yield field, wire, head[used : used + 4], position + used + 4
            position += used + 4
        else:
            raise _Truncated()


def _event_keys(read, length: int) -> List[Key]:
    """The (tag, step, wall time) of each summary value of a serialized Event, read
    from as few bytes as its structure allows; [] when it does not parse."""
    wall = _WALL_TIME.pack(0.0)
    step = 0
    summary = None
    try:
        for field, wire, value, _ in _fields(read, 0, length):
            if field == 1 and wire == 1:
                wall = value
            elif field == 2 and wire == 0:
                step = value - (1 << 64) if value >= 1 << 63 else value
            elif field == 5 and wire == 2:
                summary = value
                break  # writers put the summary last
        if summary is None:
            return []
        keys = []
        begin, count = summary
        for index, (field, wire, value, _) in enumerate(_fields(read, begin, begin + count)):
            if index >= _MAX_VALUES_PER_EVENT:
                break
            if field != 1 or wire != 2:
                continue
            value_begin, value_count = value
            for inner_field, inner_wire, inner, _ in _fields(
                read, value_begin, value_begin + value_count
            ):
                if inner_field == 1 and inner_wire == 2:
                    tag_begin, tag_count = inner
                    if tag_count <= _MAX_TAG_BYTES:
                        raw = read(tag_begin, tag_count)
                        if len(raw) == tag_count:
                            keys.append((raw.decode("utf-8", "replace"), step, wall))
                    break
        return keys
    except _Truncated:
        return []


def read_record(path: str, offset: int, length: int, tag: str, step: int) -> List[bytes]:
    """The blobs of the version 1 value `tag` of the record at `offset`, checked.

    Raises:
      format.FormatError: naming the file and byte when the record is cut short,
        fails a checksum, or holds no version 1 record of `tag` at `step`.
    """
    name = "event file %s" % posixpath.basename(path.replace("\\", "/"))
    where = "%s: the record at byte %d" % (name, offset)
    with arrays.RangeReader(path, name) as reader:
        data = reader(offset, 12 + length + 4)
    if len(data) != 12 + length + 4:
        raise format.FormatError("%s is cut short (the file changed since it was read)" % where)
    data = bytes(data)
    frame, payload, footer = data[:12], data[12 : 12 + length], data[12 + length :]
    if _FRAME.unpack(frame)[1] != event_file.masked_crc(
        google_crc32c.value(frame[:8])
    ) or struct.unpack("<I", footer)[0] != event_file.masked_crc(google_crc32c.value(payload)):
        raise format.FormatError("%s fails its checksum (corrupt); it is not served" % where)
    try:
        event = event_pb2.Event.FromString(payload)
    except (message_lib.DecodeError, RecursionError, ValueError) as e:
        raise format.FormatError("%s is not an Event (%s)" % (where, type(e).__name__)) from None
    if event.step != step:
        raise format.FormatError("%s is step %d, not %d" % (where, event.step, step))
    for value in event.summary.value:
        # (a writer may give a tag's plugin data on its first summary only)
        if value.tag == tag and value.metadata.plugin_data.plugin_name in (
            metadata.PLUGIN_NAME,
            "",
        ):
            return list(value.tensor.string_val)
    raise format.FormatError("%s holds no lstm_states record of tag %r" % (where, tag[:200]))
