"""TFRecord framing of TensorBoard event files, written and read with a C CRC32C.

An event file is a sequence of records, each framed as

    u64 length (little-endian) | u32 masked CRC32C of those 8 bytes |
    payload (a serialized `Event`)  | u32 masked CRC32C of the payload

Since version 2 the payloads are small (an index summary of a few kilobytes; the
arrays are in files of their own), so a record is built as one `bytes` and written
with one system call. TensorBoard's own writer computes the CRC in pure Python;
here it is `google_crc32c`'s C implementation.
"""

import contextlib
import os
import socket
import struct
import threading
import time
from typing import Iterator, Optional, Sequence, Tuple

import google_crc32c
from tensorboard.compat.proto import event_pb2

# How new event and array files are opened: never over an existing file, and in
# binary mode on Windows (where text mode would turn every 0x0A into 0x0D 0x0A).
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)

_HEADER = struct.Struct("<Q")
_CRC = struct.Struct("<I")
_MASK_DELTA = 0xA282EAD8

_uid_lock = threading.Lock()
_uid = 0


class CorruptRecordError(IOError):
    """A record of an event file fails its checksum."""


class CorruptPayloadError(CorruptRecordError):
    """A record's payload fails its checksum; the next record starts at `next_offset`."""

    def __init__(self, path: str, offset: int, next_offset: int):
        super().__init__(
            "%s: the record at byte %d is corrupt (payload checksum mismatch)" % (path, offset)
        )
        self.path = path
        self.offset = offset
        self.next_offset = next_offset


def masked_crc(crc: int) -> int:
    """Masks a CRC32C the way TFRecord does, so data holding CRCs checksums well."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def frame(payload: bytes) -> bytes:
    """The whole record of `payload`: its framing around it."""
    header = _HEADER.pack(len(payload))
    return b"".join(
        [
            header,
            _CRC.pack(masked_crc(google_crc32c.value(header))),
            payload,
            _CRC.pack(masked_crc(google_crc32c.value(payload))),
        ]
    )


def event_file_name(logdir: str, suffix: str = "", timestamp: Optional[float] = None) -> str:
    """A new event file path in `logdir`, named like TensorBoard's own writers name them.

    The name holds `tfevents`, which is how both TensorBoard loaders recognise event
    files, then the creation time (or `timestamp`), which orders a run's files, the
    host and process, and a per-process counter so two writers never share a file.
    """
    global _uid
    with _uid_lock:
        uid = _uid
        _uid += 1
    name = "events.out.tfevents.%010d.%s.%d.%d%s" % (
        time.time() if timestamp is None else timestamp,
        socket.gethostname(),
        os.getpid(),
        uid,
        suffix,
    )
    return os.path.join(logdir, name)


def oldest_event_file_time(logdir: str) -> Optional[int]:
    """The smallest creation time in the names of the event files in `logdir`, or None."""
    times = []
    for name in os.listdir(logdir):
        if "tfevents" in name:
            field = name.split("tfevents.", 1)[-1].split(".", 1)[0]
            if field.isdigit():
                times.append(int(field))
    return min(times) if times else None


# ----------------------------------------------------------------------
# Writing.

# Through these names, so tests can make them fail (a full disk) or write short.
_write = os.write
_writev = getattr(os, "writev", None)


def _max_iovecs() -> int:
    """How many buffers one `os.writev` takes: IOV_MAX (1024 on Linux; POSIX promises
    at least 16)."""
    try:
        limit = os.sysconf("SC_IOV_MAX")
    except (ValueError, OSError, AttributeError):
        limit = -1
    return limit if limit > 0 else 16


_MAX_IOVECS = _max_iovecs()


def write_all(fd: int, buffers: Sequence) -> None:
    """Writes the bytes-like `buffers` (C-contiguous) in order, straight from their
    memory: one `os.writev` (one `os.write` a buffer where there is none), going on
    after a partial write. `os.write`/`os.writev` retry on EINTR themselves.

    Raises:
      OSError: as `os.write` (a full disk), with part of the bytes maybe written.
    """
    views = [memoryview(b).cast("B") for b in buffers]
    views = [view for view in views if len(view)]
    while views:
        if _writev is not None and len(views) > 1:
            written = _writev(fd, views[:_MAX_IOVECS])
        else:
            written = _write(fd, views[0])
        if written <= 0:  # no progress, and no error: never loop forever
            raise OSError("write returned %d" % written)
        while views and written >= len(views[0]):
            written -= len(views.pop(0))
        if written:
            views[0] = views[0][written:]


class RecordFile:
    """Appends framed records to a new event file. Not thread-safe: one writer at a time."""

    def __init__(self, path: str):
        """Creates the file and writes the `file_version` event TensorBoard expects first.

        Raises:
          OSError: if the file cannot be created.
        """
        self.path = path
        # Unbuffered: each record is in the OS when `write` returns, and no record
        # waits in a user-space buffer for a reader (or is lost to a kill).
        self._fd: Optional[int] = os.open(path, CREATE_FLAGS, 0o666)
        self._size = 0  # where the next record begins
        first = event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2")
        first.source_metadata.writer = "tb_lstm_states"
        try:
            self.write(first.SerializeToString())
        except BaseException:
            self.close()  # no descriptor leaks, and no empty event file is left behind
            with contextlib.suppress(OSError):
                os.remove(path)
            raise

    def write(self, payload: bytes) -> None:
        """Appends one record.

        Raises:
          OSError: if it cannot be written (a full disk). What was written of it is
            first cut off, so every record before it stays readable and the next
            one is framed where this one began.
        """
        if self._fd is None:
            raise ValueError("%s is closed" % self.path)
        record = frame(payload)
        try:
            write_all(self._fd, [record])
        except BaseException:
            self._cut(self._fd)
            raise
        self._size += len(record)

    def _cut(self, fd: int) -> None:
        try:
            os.ftruncate(fd, self._size)
            os.lseek(fd, self._size, os.SEEK_SET)
        except OSError:
            pass  # the error that stopped the record says more than this one would

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# ----------------------------------------------------------------------
# Reading.


def read_records(path: str, on_corrupt=None, opener=None) -> Iterator[Tuple[int, bytes]]:
    """Yields `(offset, payload)` of each complete, checksummed record of an event file.

    A truncated last record (a writer still writing, or killed mid-record) ends the
    iteration quietly, as it does in TensorBoard's loaders.

    Args:
      path: the event file.
      on_corrupt: None to raise on a corrupt record; else a function called with the
        `CorruptRecordError`, after which a record with a bad payload is skipped and
        a record with a bad length ends the file (nothing after it is framed).
      opener: opens `path` for binary reading (fsspec's `fs.open` for a URL);
        default the built-in `open`.

    Raises:
      CorruptRecordError: on a corrupt record when `on_corrupt` is None, naming the
        file and the byte offset.
    """
    position = 0
    while True:
        try:
            yield from _read_from(path, position, opener or open)
            return
        except CorruptRecordError as e:
            if on_corrupt is None:
                raise
            on_corrupt(e)
            if not isinstance(e, CorruptPayloadError):
                return
            position = e.next_offset


def file_size(f) -> int:
    """The size of an open file now (a local file's from the OS, else by seeking)."""
    try:
        return os.fstat(f.fileno()).st_size
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation: no descriptor
        position = f.tell()
        size = f.seek(0, os.SEEK_END)
        f.seek(position)
        return size


def _read_from(path, position, opener):
    with opener(path, "rb") as f:
        size = file_size(f)
        f.seek(position)
        while True:
            offset = f.tell()
            head = f.read(12)
            if len(head) < 12:
                return
            header = head[:8]
            if _CRC.unpack(head[8:])[0] != masked_crc(google_crc32c.value(header)):
                raise CorruptRecordError(
                    "%s: the record at byte %d has a corrupt length (checksum mismatch); "
                    "the rest of this file cannot be read" % (path, offset)
                )
            (length,) = _HEADER.unpack(header)
            # Checked against the file's size before reading, so a crafted length
            # cannot make the reader allocate more than the file holds.
            if offset + 12 + length + 4 > max(size, file_size(f)):
                return  # truncated last record: a writer still writing, or killed
            payload = f.read(length)
            footer = f.read(4)
            if len(payload) < length or len(footer) < 4:
                return
            if _CRC.unpack(footer)[0] != masked_crc(google_crc32c.value(payload)):
                raise CorruptPayloadError(path, offset, f.tell())
            yield offset, payload
