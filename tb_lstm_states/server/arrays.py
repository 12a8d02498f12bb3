"""Version 2 array files, read in checked byte ranges through TensorBoard's file layer.

An array file lives at `<logdir>/<run>/plugins/lstm_states/<file>`. Both parts that
come from outside are checked before they touch a path: the run name (what the data
provider listed) may not be absolute or climb out of the logdir, and the file name
comes only from an index that `format.parse_index` validated, which allows one plain
path part (`format.is_safe_file_name`). So nothing a logdir holds can make the
server open a file outside `<run>/plugins/lstm_states/`.

Files are read through `tensorboard.compat.tf.io.gfile` (TensorFlow's when it is
installed, else TensorBoard's stub: local paths, `s3://`, and fsspec URLs), one
ranged read per request for what it serves, after a `stat` that the file holds the
bytes its index declares (so no read is sized past them); every byte is checked against the
file's checksum table, itself checked against the index. Parsed checksum tables and
token lists go into the small `headers` cache; arrays, windows and binned views into
the `arrays` cache. Nothing else keeps arrays, so memory stays within the budget
however large the logdir.
"""

import contextlib
import os
import posixpath
import re
from typing import Any, List, Optional

import numpy as np
from tensorboard.compat import tf

from tb_lstm_states.storage import format, ranged

# Path separators of run names, what a run name may never hold, and (on Windows)
# drive prefixes ("C:"). On POSIX a backslash is a plain character of a name.
_WINDOWS = os.sep == "\\"
_SEPARATORS = re.compile(r"[/\\]" if _WINDOWS else "/")
_BAD_RUN = re.compile(r"[\x00]|^[A-Za-z]:|^[/\\]|://" if _WINDOWS else r"[\x00]|^/|://")


class LogdirError(format.FormatError):
    """The logdir cannot serve an array file (no logdir, or a run name out of it)."""


def run_directory(logdir: Optional[str], run: str) -> str:
    """The directory of `run` under `logdir`; refuses any name that leaves it.

    Args:
      logdir: the logdir as TensorBoard was given it (a local path or a URL).
      run: a run name as the data provider lists it (`"."` is the logdir).

    Raises:
      LogdirError: without a logdir (TensorBoard started with `--logdir_spec`), or
        for a run name that is absolute or has a `..` part.
    """
    if not logdir:
        raise LogdirError(
            "array files are read from the logdir, and this TensorBoard has none "
            "(start it with --logdir, not --logdir_spec)"
        )
    if not isinstance(run, str) or _BAD_RUN.search(run):
        raise LogdirError("run %r is not a path inside the logdir" % (run,))
    if "://" in logdir:  # object stores: "/" separates, a backslash is a character
        parts = [p for p in run.split("/") if p not in ("", ".")]
    else:
        parts = [p for p in _SEPARATORS.split(run) if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise LogdirError("run %r is not a path inside the logdir" % (run,))
    if "://" in logdir:
        return "/".join([logdir.rstrip("/"), *parts]) if parts else logdir
    base = os.path.normpath(logdir)
    path = os.path.normpath(os.path.join(base, *parts))
    if path != base and not path.startswith(base.rstrip(os.sep) + os.sep):
        raise LogdirError("run %r is not a path inside the logdir" % (run,))
    return path


def array_file_path(logdir: Optional[str], run: str, index: dict) -> str:
    """The path of a parsed index's array file."""
    name = index.get("file")
    # parse_index checked it; never trust twice-read
    if not isinstance(name, str) or not format.is_safe_file_name(name):
        raise LogdirError("array file name %r is not a plain file name" % (name,))
    directory = run_directory(logdir, run)
    if "://" in directory:
        return posixpath.join(directory, *format.PLUGIN_DIRECTORY, name)
    return os.path.join(directory, *format.PLUGIN_DIRECTORY, name)


class RangeReader:
    """`read_range(offset, length)` over one file, for one request.

    The file's size is read first (`size`), and no read goes past it, so that no
    length read from a logdir sizes a buffer beyond the bytes present.

    TensorFlow's `GFile` can seek; TensorBoard's stub cannot, but each of its
    filesystems reads a range from a continuation token (local and fsspec take
    `opaque_offset`, S3 `byte_offset`). S3 answers an inclusive range, one byte
    more: reads are cut to the length asked.

    Args:
      path: the file.
      name: how errors name it ("array file x.safetensors").
      min_bytes: a file shorter than this is refused (torn).

    Raises:
      format.FormatError: naming the file, when it is missing, unreadable or short.
    """

    def __init__(self, path: str, name: str, min_bytes: int = 0):
        self._path = path
        self._name = name
        # TensorBoard's file layer (untyped): a GFile, or the stub's filesystem.
        self._file: Any = None
        self._filesystem: Any = None
        gfile = tf.io.gfile
        self.size = self._call(lambda: gfile.stat(path).length)
        if self.size < min_bytes:
            raise format.FormatError(
                "%s is shorter than its index says (%d of %d bytes: torn, or still being "
                "written)" % (name, self.size, min_bytes)
            )
        if hasattr(gfile.GFile, "seek"):
            self._file = self._call(lambda: gfile.GFile(path, "rb"))
        else:
            from tensorboard.compat.tensorflow_stub.io import gfile as stub

            self._filesystem = self._call(lambda: stub.get_filesystem(path))

    def _call(self, function):
        name = self._name
        try:
            return function()
        except FileNotFoundError:
            raise format.FormatError("%s is missing" % name) from None
        except tf.errors.NotFoundError:
            raise format.FormatError("%s is missing" % name) from None
        except (tf.errors.OpError, OSError) as e:
            raise format.FormatError("%s cannot be read: %s" % (name, _short(e))) from None

    def __call__(self, offset: int, length: int) -> bytes:
        length = min(length, self.size - offset)
        if length <= 0:
            return b""
        if self._file is not None:

            def read():
                self._file.seek(offset)
                return self._file.read(length)
        else:

            def read():
                token = {"opaque_offset": offset, "byte_offset": offset}
                data, _ = self._filesystem.read(self._path, True, length, token)
                return data

        data = self._call(read)
        return bytes(data[:length]) if len(data) > length else data

    def close(self):
        if self._file is not None:
            with contextlib.suppress(Exception):  # closing what was read: nothing to lose
                self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def _array_reader(path: str, index: dict) -> RangeReader:
    return RangeReader(path, "array file %s" % index["file"], index["file_bytes"])


def _short(error) -> str:
    text = str(getattr(error, "message", None) or error)
    return text if len(text) <= 200 else text[:200] + "..."


class ArrayFiles:
    """Checked, cached reads of version 2 array files.

    Every method takes the array file's `path` (from `array_file_path`) and the
    parsed `index`, and raises `format.FormatError` naming the file and the
    problem (missing, torn, corrupt) when it cannot serve.
    """

    def __init__(self, headers, arrays):
        """Args: headers: cache for checksum tables and tokens; arrays: for arrays."""
        self._headers = headers
        self._arrays = arrays

    @staticmethod
    def _file_key(path, index):
        # The index's checksum of the checksum table pins the file's content.
        return (path, index["file_bytes"], index["crc_crc32c"])

    def crc_table(self, path: str, index: dict, reader: Optional[RangeReader] = None) -> np.ndarray:
        """The file's checksum table, checked against the index (cached)."""
        key = ("crc", *self._file_key(path, index))

        def load():
            if reader is not None:
                return ranged.read_crc_table(reader, index)
            with _array_reader(path, index) as own:
                return ranged.read_crc_table(own, index)

        return self._headers.get_or_compute(key, load)

    def tokens(self, path: str, index: dict) -> Optional[List[List[str]]]:
        """The token lists of the file's metadata, or None (cached)."""
        if not index["tokens"]:
            return None
        key = ("tokens", *self._file_key(path, index))

        def load():
            with _array_reader(path, index) as reader:
                header = reader(0, index["header_bytes"])
            return ranged.parse_tokens(ranged.parse_file_header(header, index), index)

        return self._headers.get_or_compute(key, load)

    def read(
        self,
        path: str,
        index: dict,
        entry: dict,
        sequence: Optional[int] = None,
        start: int = 0,
        stop: Optional[int] = None,
    ) -> np.ndarray:
        """One array in its stored dtype (cached), read-only.

        Returns:
          Without `sequence`: `[batch, stop - start, ...]`; with it,
          `[stop - start, ...]` of that sequence (series: without the units axis).
        """
        time = entry["shape"][1]
        stop = time if stop is None else stop
        key = ("array", *self._file_key(path, index), entry["offset"], sequence, start, stop)

        def load():
            with _array_reader(path, index) as reader:
                table = self.crc_table(path, index, reader)
                if sequence is not None:
                    return ranged.read_array(reader, index, table, entry, sequence, start, stop)
                if start == 0 and stop == time:
                    return ranged.read_array(reader, index, table, entry)
                # A window of every sequence: one ranged read per sequence.
                return np.stack(
                    [
                        ranged.read_array(reader, index, table, entry, b, start, stop)
                        for b in range(entry["shape"][0])
                    ]
                )

        return self._arrays.get_or_compute(key, load)

    def mean(self, path: str, index: dict, entry: dict) -> np.ndarray:
        """The forget mean of a forget gate's entry that has one (cached): `[units]`
        float64, read-only."""
        key = ("mean", *self._file_key(path, index), entry["mean"]["offset"])

        def load():
            with _array_reader(path, index) as reader:
                table = self.crc_table(path, index, reader)
                return ranged.read_mean(reader, index, table, entry)

        return self._arrays.get_or_compute(key, load)

    def binned(
        self, path: str, index: dict, entry: dict, sequence: int, start: int, stop: int, bins: int
    ) -> np.ndarray:
        """Exact per-bin minimum and maximum of one sequence's window (cached).

        Returns:
          `[2, bins, units]` float32 (`ranged.binned`); the pyramid serves the whole
          blocks inside wide bins, so a long sequence is not read in full.
        """
        key = ("binned", *self._file_key(path, index), entry["offset"], sequence, start, stop, bins)

        def load():
            with _array_reader(path, index) as reader:
                table = self.crc_table(path, index, reader)

                def read_window(t0, t1):
                    return ranged.read_array(reader, index, table, entry, sequence, t0, t1)

                read_blocks = None
                if entry.get("pyramid") is not None:

                    def read_blocks(b0, b1):
                        return ranged.read_pyramid(reader, index, table, entry, sequence, b0, b1)

                result = ranged.binned(read_window, read_blocks, start, stop, bins)
            result = np.ascontiguousarray(result, dtype=np.float32)
            result.setflags(write=False)
            return result

        return self._arrays.get_or_compute(key, load)
