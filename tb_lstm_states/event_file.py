"""TFRecord framing of TensorBoard event files, written and read with a C CRC32C.

An event file is a sequence of records, each framed as

    u64 length (little-endian) | u32 masked CRC32C of those 8 bytes |
    payload (a serialized `Event`)  | u32 masked CRC32C of the payload

TensorBoard's own writer computes the CRC in pure Python (about 6 MB/s). Here the
payload is given as a list of pieces (small `bytes` and large memoryviews of numpy
arrays), checksummed in C piece by piece and written without ever being joined, so
a large record is never copied. A record may also be a `RecordStream`, written
(`RecordFile.write_stream`) while its producer still publishes the rest of it,
checksummed by that producer.

`google_crc32c` (1.9) accepts only `bytes`-like objects without a release hook (not
a memoryview of a numpy array) and releases the GIL only for `bytes` of 1 MiB or
more. So large pieces are checksummed by calling the C library that google_crc32c
ships (`crc32c_extend`) through ctypes, which takes a pointer and releases the GIL:
no copy, and the training thread keeps running. Where that library cannot be found,
pieces are checksummed in slices of `CRC_SLICE_BYTES`, each copied to `bytes` while
it is in cache, so the GIL is held only for the memcpy.
"""

import ctypes
import ctypes.util
import glob
import os
import socket
import struct
import threading
import time
from typing import Iterator, Optional, Sequence, Tuple, Union

import google_crc32c
import numpy as np

from tensorboard.compat.proto import event_pb2

# google_crc32c releases the GIL for bytes of at least 1 MiB; larger slices would
# fall out of the CPU cache between the copy and the checksum.
CRC_SLICE_BYTES = 1 << 20

_HEADER = struct.Struct("<Q")
_CRC = struct.Struct("<I")
_MASK_DELTA = 0xA282EAD8

Piece = Union[bytes, memoryview]

_uid_lock = threading.Lock()
_uid = 0


class CorruptRecordError(IOError):
    """A record of an event file fails its checksum."""


def masked_crc(crc: int) -> int:
    """Masks a CRC32C the way TFRecord does, so data holding CRCs checksums well."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def _load_crc32c_extend():
    """`crc32c_extend` of the C library that google_crc32c ships, through ctypes, or None.

    ctypes releases the GIL for the call and takes a raw pointer, so a numpy array is
    checksummed in place while the training thread runs.
    """
    base = os.path.dirname(google_crc32c.__file__)
    patterns = [
        os.path.join(base + ".libs", "libcrc32c*.so*"),  # manylinux wheels (auditwheel)
        os.path.join(base, ".dylibs", "libcrc32c*.dylib"),  # macOS wheels (delocate)
        os.path.join(base, "extra-dll", "crc32c*.dll"),  # Windows wheels
    ]
    candidates = sorted(path for pattern in patterns for path in glob.glob(pattern))
    system = ctypes.util.find_library("crc32c")  # a build linked against the system's
    if system:
        candidates.append(system)
    check = b"123456789"
    for path in candidates:
        try:
            extend = ctypes.CDLL(path).crc32c_extend
        except (OSError, AttributeError):
            continue
        extend.restype = ctypes.c_uint32
        extend.argtypes = [ctypes.c_uint32, ctypes.c_void_p, ctypes.c_size_t]
        if extend(0, check, len(check)) == google_crc32c.value(check):
            return extend
    return None


_c_extend = _load_crc32c_extend()

# Where compiled code (`copy_kernel`) can call `crc32c_extend`, or 0 without it.
CRC32C_EXTEND_ADDRESS = ctypes.cast(_c_extend, ctypes.c_void_p).value if _c_extend else 0


def crc32c(pieces: Sequence[Piece], crc: int = 0) -> int:
    """CRC32C of the concatenation of `pieces`, without concatenating them."""
    for piece in pieces:
        if isinstance(piece, bytes):
            crc = google_crc32c.extend(crc, piece)
            continue
        view = memoryview(piece).cast("B")
        if _c_extend is not None:
            address = np.frombuffer(view, dtype=np.uint8).ctypes.data if len(view) else 0
            crc = _c_extend(crc, address, len(view))
            continue
        for start in range(0, len(view), CRC_SLICE_BYTES):
            # google_crc32c takes only `bytes` (not a memoryview of an array), and
            # releases the GIL only for `bytes`: a slice copied while it is in cache
            # costs far less than holding the GIL for the whole checksum.
            crc = google_crc32c.extend(crc, bytes(view[start:start + CRC_SLICE_BYTES]))
    return crc


def frame(pieces: Sequence[Piece]) -> Tuple[bytes, bytes, int]:
    """Returns `(head, tail, length)`: the framing around a payload made of `pieces`."""
    length = piece_bytes(pieces)
    return frame_head(length), frame_tail(crc32c(pieces)), length


def piece_bytes(pieces: Sequence[Piece]) -> int:
    """The number of bytes in `pieces`."""
    return sum(memoryview(piece).nbytes for piece in pieces)


def frame_head(length: int) -> bytes:
    """The 12 bytes before a payload of `length` bytes."""
    header = _HEADER.pack(length)
    return header + _CRC.pack(masked_crc(google_crc32c.value(header)))


def frame_tail(crc: int) -> bytes:
    """The 4 bytes after a payload whose CRC32C is `crc`."""
    return _CRC.pack(masked_crc(crc))


def event_file_name(logdir: str, suffix: str = "", timestamp: Optional[float] = None) -> str:
    """A new event file path in `logdir`, named like TensorBoard's own writers name them.

    The name holds `tfevents`, which is how both TensorBoard loaders recognise event
    files, then the creation time (or `timestamp`), which orders a run's files, and a
    per-process counter so two writers never share a file.
    """
    global _uid
    with _uid_lock:
        uid = _uid
        _uid += 1
    name = "events.out.tfevents.%010d.%s.%d.%d%s" % (
        time.time() if timestamp is None else timestamp,
        socket.gethostname(), os.getpid(), uid, suffix)
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


class RecordStream:
    """A record of known length whose pieces are published while it is written.

    The producer `publish`es the payload's pieces in order, the last ones with the
    payload's CRC32C; `RecordFile.write_stream` writes what is published so far. The
    frame's head is published first and its tail last, so the pieces go out as they
    are. One thread publishes, and one at a time writes, while more is published:
    each piece is a row `(address, length)`, and the count of published rows is
    stored after them (`stream_kernel.publish`), so a writer reads only complete
    rows. The caller keeps `publish` and the bookkeeping around `write_stream`
    (`ready`, `complete`) under a lock of its own.
    """

    def __init__(self, length: int, max_pieces: int):
        """Args: length: the payload's; max_pieces: how many pieces it may take."""
        from tb_lstm_states import stream_kernel  # numba: imported on first use

        self._store_count = stream_kernel.publish
        self.length = length
        self.size = 0  # payload bytes published
        self.written = 0  # pieces written
        self.finished = False  # the last pieces are published
        self._rows = np.zeros((max_pieces + 2, 2), np.int64)  # (address, length): iovecs
        self._published = np.zeros(1, np.int64)
        self._pieces: list = []  # what the rows point into, kept alive until written
        self._add(frame_head(length))

    @property
    def ready(self) -> bool:
        """Whether published pieces wait to be written."""
        return self.written < len(self._pieces)

    @property
    def complete(self) -> bool:
        """Whether the whole record, tail included, is written."""
        return self.finished and not self.ready

    def publish(self, pieces: Sequence[Piece], crc: Optional[int] = None) -> None:
        """Publishes the next pieces, which must stay unchanged until written.

        Args:
          pieces: the pieces.
          crc: the CRC32C of the whole payload, with its last pieces.

        Raises:
          ValueError: if the pieces overrun the record or (with `crc`) fall short of
            its length: its frame would lie.
        """
        for piece in pieces:
            self.size += self._add(piece)
        if crc is not None:
            self._add(frame_tail(crc), tail=True)
            self.finished = True
        if self.size > self.length or (self.finished and self.size != self.length):
            raise ValueError("a record's pieces hold %d bytes, not the %d announced"
                             % (self.size, self.length))
        self._store_count(self._published, len(self._pieces))

    def _add(self, piece: Piece, tail: bool = False) -> int:
        if len(self._pieces) >= len(self._rows) - (not tail):  # the tail's row is kept
            raise ValueError("a record stream takes at most %d pieces" % (len(self._rows) - 2))
        if isinstance(piece, bytes):
            size = len(piece)
            address = ctypes.cast(ctypes.c_char_p(piece), ctypes.c_void_p).value
        else:
            piece = memoryview(piece).cast("B")
            size = piece.nbytes
            if not size:
                address = 0
            elif piece.readonly:
                address = np.frombuffer(piece, np.uint8).ctypes.data
            else:
                address = ctypes.addressof(ctypes.c_char.from_buffer(piece))
        self._rows[len(self._pieces)] = (address, size)
        self._pieces.append(piece)
        return size


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
        self._fd: Optional[int] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        self._record_start = 0  # where the record being written begins
        self._stream_kernel = None
        first = event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2")
        first.source_metadata.writer = "tb_lstm_states"
        self.write([first.SerializeToString()])

    def write(self, pieces: Sequence[Piece]) -> int:
        """Writes one whole record whose payload is the concatenation of `pieces`.

        Returns:
          The number of bytes the record took in the file.

        Raises:
          OSError: as `write_stream`.
        """
        head, tail, length = frame(pieces)
        self._check_open()
        try:
            _write_all(self._fd, [head] + list(pieces) + [tail])
        except BaseException:
            self.cut()
            raise
        self._record_start += len(head) + length + len(tail)
        return len(head) + length + len(tail)

    def write_stream(self, stream: RecordStream) -> None:
        """Writes what `stream` published since the last call, and what it publishes
        meanwhile.

        Raises:
          OSError: if it cannot be written (a full disk). The file is first cut back
            to where the record began, so every record before it stays readable and
            later ones stay framed.
        """
        self._check_open()
        kernel = self._stream_kernel
        if kernel is None:
            from tb_lstm_states import stream_kernel as kernel  # numba: on first use

            self._stream_kernel = kernel
        if kernel.available():
            written = kernel.write_published(
                self._fd, stream._rows, stream._published, stream.written,
                kernel.WRITEV_ADDRESS, kernel.ERRNO_ADDRESS)
            if written < 0:
                self.cut()
                raise OSError(-written, os.strerror(-written), self.path)
        else:
            written = int(stream._published[0])
            try:
                _write_all(self._fd, stream._pieces[stream.written:written])
            except BaseException:
                self.cut()
                raise
        stream.written = written
        if stream.complete:
            self._record_start += _HEADER.size + _CRC.size + stream.length + _CRC.size

    def cut(self) -> None:
        """Drops what was written of an unfinished record (a producer gave up on it)."""
        try:
            os.ftruncate(self._fd, self._record_start)
            os.lseek(self._fd, self._record_start, os.SEEK_SET)
        except OSError:
            pass  # the error that made the record stop says more than this one would

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _check_open(self) -> None:
        if self._fd is None:
            raise ValueError("%s is closed" % self.path)


def _max_iovecs() -> int:
    """How many pieces one `os.writev` takes: IOV_MAX (1024 on Linux; POSIX promises
    at least 16), or 1 where there is no `os.writev` (Windows): one write a piece."""
    if not hasattr(os, "writev"):
        return 1
    try:
        limit = os.sysconf("SC_IOV_MAX")
    except (ValueError, OSError):
        limit = -1
    return limit if limit > 0 else 16


_MAX_IOVECS = _max_iovecs()


def _write_all(fd: int, pieces: Sequence[Piece]) -> None:
    """Writes `pieces` in order, in one `os.writev` straight from their memory, going
    on after a partial write. Measured here: a 1.2 MB record's 16 pieces took
    228 us in one `writev`, 262 us in one write each."""
    views = [memoryview(piece).cast("B") for piece in pieces]
    views = [view for view in views if len(view)]
    while views:
        if _MAX_IOVECS > 1:
            written = os.writev(fd, views[:_MAX_IOVECS])
        else:
            written = os.write(fd, views[0])
        while views and written >= len(views[0]):
            written -= len(views.pop(0))
        if written:
            views[0] = views[0][written:]


class CorruptPayloadError(CorruptRecordError):
    """A record's payload fails its checksum; the next record starts at `next_offset`."""

    def __init__(self, path: str, offset: int, next_offset: int):
        super().__init__(
            "%s: the record at byte %d is corrupt (payload checksum mismatch)" % (path, offset))
        self.path = path
        self.offset = offset
        self.next_offset = next_offset


def read_records(path: str, on_corrupt=None) -> Iterator[Tuple[int, bytes]]:
    """Yields `(offset, payload)` of each complete, checksummed record of an event file.

    A truncated last record (a writer still writing, or killed mid-record) ends the
    iteration quietly, as it does in TensorBoard's loaders.

    Args:
      path: the event file.
      on_corrupt: None to raise on a corrupt record; else a function called with the
        `CorruptRecordError`, after which a record with a bad payload is skipped and
        a record with a bad length ends the file (nothing after it is framed).

    Raises:
      CorruptRecordError: on a corrupt record when `on_corrupt` is None, naming the
        file and the byte offset.
    """
    position = 0
    while True:
        try:
            for offset, payload in _read_from(path, position):
                yield offset, payload
            return
        except CorruptRecordError as e:
            if on_corrupt is None:
                raise
            on_corrupt(e)
            if not isinstance(e, CorruptPayloadError):
                return
            position = e.next_offset


def _read_from(path, position):
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
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
                    "the rest of this file cannot be read" % (path, offset))
            (length,) = _HEADER.unpack(header)
            # Checked against the file's size before reading, so a crafted length
            # cannot make the reader allocate more than the file holds.
            if offset + 12 + length + 4 > max(size, os.fstat(f.fileno()).st_size):
                return  # truncated last record: a writer still writing, or killed
            payload = f.read(length)
            footer = f.read(4)
            if len(payload) < length or len(footer) < 4:
                return
            if _CRC.unpack(footer)[0] != masked_crc(google_crc32c.value(payload)):
                raise CorruptPayloadError(path, offset, f.tell())
            yield offset, payload
