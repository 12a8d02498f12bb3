"""Writing array files: the bytes of a `format.Layout`, each slice checksummed on the way.

The writer thread checksums a block of `format.CHUNK_BYTES` slices (CRC32C, in C,
straight from the arrays), then writes that block while it is in cache; the
checksum table ends the file. A file on a URL is checksummed the same way and
uploaded as one object once complete.
"""

import contextlib
import os
from typing import Any, Callable, List

import google_crc32c
import numpy as np

from tb_lstm_states.storage import event_file, format, remote

# Pieces go out together once they hold this many bytes.
BLOCK_BYTES = 16 * format.CHUNK_BYTES


def write(fd: int, path: str, layout: format.Layout, buffers: List[np.ndarray]) -> np.ndarray:
    """Writes a whole array file to `fd` (a new, empty file at `path`) and closes it.

    Args:
      fd: the file, opened for writing.
      path: its path, removed if the file cannot be written whole.
      layout: the file's layout; its header is written first.
      buffers: the data tensors' C-contiguous arrays, in layout order.

    Returns:
      The checksum table (uint32), as written at the end of the file.

    Raises:
      OSError: if it cannot be written; what was written of it is removed.
    """
    complete = False
    try:
        # One system call for a small file, one a block (written while in cache)
        # for a large one.
        pending: List[Any] = [layout.header]
        pending_bytes = len(layout.header)
        crcs = []
        for array in buffers:
            data = array.reshape(-1).view(np.uint8)  # C-contiguous: a view
            for start in range(0, len(data), BLOCK_BYTES):
                block = data[start : start + BLOCK_BYTES]
                for offset in range(0, len(block), format.CHUNK_BYTES):
                    # In C, straight from the array (google_crc32c takes a
                    # numpy array's buffer); the block is then written in cache.
                    crcs.append(crc32c(block[offset : offset + format.CHUNK_BYTES]))
                pending.append(block)
                pending_bytes += len(block)
                if pending_bytes >= BLOCK_BYTES:
                    event_file.write_all(fd, pending)
                    pending, pending_bytes = [], 0
        crc_table = np.array(crcs, dtype="<u4")
        event_file.write_all(fd, [*pending, crc_table])
        complete = True
    finally:
        os.close(fd)
        if not complete:
            remove(path)
    return crc_table


def upload(fs: Any, url: str, layout: format.Layout, buffers: List[np.ndarray]) -> np.ndarray:
    """`write` for a URL: checksummed as there, uploaded as one object once complete
    (straight from the arrays: the pieces are views). Returns the checksum table."""
    pieces: List[Any] = [layout.header]
    crcs = []
    for array in buffers:
        data = array.reshape(-1).view(np.uint8)  # C-contiguous: a view
        for offset in range(0, len(data), format.CHUNK_BYTES):
            crcs.append(crc32c(data[offset : offset + format.CHUNK_BYTES]))
        pieces.append(data)
    crc_table = np.array(crcs, dtype="<u4")
    remote.write_object(fs, url, [*pieces, crc_table])
    return crc_table


def remove(path: str) -> None:
    """Removes a file, if it is there."""
    with contextlib.suppress(OSError):
        os.remove(path)


def _crc32c_of_arrays_supported() -> bool:
    """Whether google_crc32c takes a numpy array's buffer as it is (numpy exports
    one with no release hook, which its argument parsing requires)."""
    try:
        return google_crc32c.value(np.frombuffer(b"123456789", np.uint8).copy()) == 0xE3069283
    except TypeError:
        return False


def _crc32c_of_a_copy(data: np.ndarray) -> int:
    return google_crc32c.value(data.tobytes())


# The CRC32C of a slice of a numpy array: of its buffer as it is, else of a copy of
# each 64 KiB slice (in cache).
crc32c: Callable[[np.ndarray], int] = (
    google_crc32c.value if _crc32c_of_arrays_supported() else _crc32c_of_a_copy
)
