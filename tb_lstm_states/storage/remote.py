"""Logdirs behind a URL (`s3://`, `gs://`, `memory://`, any fsspec protocol).

`StateWriter` and `read_states` take a URL wherever they take a directory. A URL is
anything with a `scheme://` other than `file://`; it is handled by fsspec and the
package of its protocol (`s3fs` for `s3://`, `gcsfs` for `gs://`). A URL whose
protocol cannot be handled is an `ImportError` or `ValueError` naming the package
or protocol: never a local directory named `s3:`.

How a writer writes to an object store, where an object appears whole or not at
all and cannot be appended to:

- An array file is uploaded as one object once it is complete (`write_object`), so
  it is never seen partly written; an upload that fails is discarded.
- The event file is kept in memory (a few kilobytes a record: the arrays are not in
  it) and the whole object is rewritten after each record (`RecordObject`).
  TensorBoard's readers for S3 (boto3 ranged GETs) and fsspec read an event file
  from the byte where they stopped, so a rewrite that only grows the object is read
  as an appended file is: each record once, a truncated last record never seen.
  One object per record instead would make the Python loader (which is the loader
  for `s3://`) poll only the newest file of a run without `--reload_multifile`.
"""

import contextlib
import os
from typing import Optional, Sequence

# Protocol -> the package fsspec needs for it.
_PACKAGES = {
    "s3": "s3fs",
    "s3a": "s3fs",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "az": "adlfs",
    "abfs": "adlfs",
    "abfss": "adlfs",
    "hf": "huggingface_hub",
}
_EXTRAS = {"s3fs": "s3", "gcsfs": "gcs"}


def is_url(path) -> bool:
    """Whether `path` is a URL for fsspec rather than a local path."""
    if not isinstance(path, str) or "://" not in path:
        return False
    scheme = path.split("://", 1)[0]
    return bool(scheme) and scheme.lower() != "file" and scheme.replace("+", "").isalnum()


def filesystem(url: str):
    """The fsspec file system of `url`.

    Raises:
      ImportError: fsspec or the package of the protocol is missing (named, with the
        pip command).
      ValueError: the protocol is unknown to fsspec.
    """
    protocol = url.split("://", 1)[0].lower()
    package = _PACKAGES.get(protocol)
    install = "pip install %s" % (package or "fsspec")
    if package in _EXTRAS:
        install += " (or pip install tb-lstm-states[%s])" % _EXTRAS[package]
    try:
        import fsspec
    except ImportError:
        raise ImportError(
            "%s is a URL: reading or writing it needs fsspec%s; %s"
            % (url, " and " + package if package else "", install)
        ) from None
    try:
        fs, _ = fsspec.core.url_to_fs(url)
    except ImportError as e:
        raise ImportError(
            "%s: the %s:// protocol needs the package %s, which is missing (%s); %s"
            % (url, protocol, package or "of that protocol", e, install)
        ) from None
    except ValueError as e:
        raise ValueError(
            "%s: fsspec cannot handle the %s:// protocol (%s); use a local directory or a "
            "URL fsspec knows (s3://, gs://, memory://, ...)" % (url, protocol, e)
        ) from None
    return fs


def join(url: str, *parts: str) -> str:
    """`url` and `parts` joined with `/` (never `\\`, on any OS)."""
    return "/".join([url.rstrip("/")] + [p.strip("/") for p in parts])


def write_object(fs, url: str, buffers: Sequence) -> None:
    """Uploads the bytes-like `buffers`, in order, as one object: it appears whole once
    complete; an upload that fails is discarded (nothing, or the old object, stays)."""
    f = fs.open(url, "wb")
    try:
        for buffer in buffers:
            view = memoryview(buffer).cast("B")
            if len(view):
                f.write(view)
    except BaseException:
        discard = getattr(f, "discard", None)
        if callable(discard):
            discard()
        else:  # pragma: no cover - every buffered fsspec file has discard()
            f.close()
            remove(fs, url)
        raise
    f.close()


def remove(fs, url: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        fs.rm_file(url)


class RecordObject:
    """`event_file.RecordFile` for an object store: the event file in memory, the
    whole object rewritten after each record."""

    def __init__(self, fs, url: str):
        """Writes the object with its `file_version` event.

        Raises:
          OSError (or the store's error): if it cannot be written.
        """
        import time

        from tensorboard.compat.proto import event_pb2

        self.path = url
        self._fs = fs
        self._data: Optional[bytearray] = bytearray()
        first = event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2")
        first.source_metadata.writer = "tb_lstm_states"
        self.write(first.SerializeToString())

    def write(self, payload: bytes) -> None:
        """Appends one record and rewrites the object; on an error the record is
        dropped from the object and from memory."""
        from tb_lstm_states.storage import event_file

        if self._data is None:
            raise ValueError("%s is closed" % self.path)
        size = len(self._data)
        self._data += event_file.frame(payload)
        try:
            self._fs.pipe_file(self.path, bytes(self._data))
        except BaseException:
            del self._data[size:]
            raise

    def close(self) -> None:
        self._data = None


def oldest_event_file_time(fs, url: str) -> Optional[int]:
    """As `event_file.oldest_event_file_time`, for a URL."""
    try:
        names = [os.path.basename(p.rstrip("/")) for p in fs.ls(url, detail=False)]
    except (FileNotFoundError, OSError):
        return None
    times = []
    for name in names:
        if "tfevents" in name:
            field = name.split("tfevents.", 1)[-1].split(".", 1)[0]
            if field.isdigit():
                times.append(int(field))
    return min(times) if times else None
