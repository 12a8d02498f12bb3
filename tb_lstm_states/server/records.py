"""One step of one tag, ready to serve: its header and checked reads of its arrays.

`V2Record` reads a version 2 step: the index (already parsed) and ranged reads of its
array file (`arrays.ArrayFiles`). `V1Record` reads a version 1 step: the blobs of its
blob sequence through the data provider, each array decoded whole and cached. Both
answer the same questions, so the routes do not care which they serve.

Whatever a logdir holds, a record raises `errors.NotFoundError` (404) naming the
run, tag, step and problem, never anything that would answer 500.
"""

import contextlib
from typing import Dict, List, Optional

import numpy as np
from google.protobuf import message as message_lib
from tensorboard import errors
from tensorboard.compat import tf

from tb_lstm_states.storage import format, gradients, legacy, ranged

# What reading a logdir's content may raise; all mean "this step cannot be served".
LOGDIR_ERRORS = (
    format.FormatError,
    legacy.RecordError,
    OSError,
    KeyError,
    ValueError,
    IndexError,
    TypeError,
    RecursionError,
    OverflowError,
    MemoryError,
    AttributeError,
    message_lib.DecodeError,
    tf.errors.OpError,
)


@contextlib.contextmanager
def logdir_errors(run, tag, step=None):
    """Turns an error caused by a logdir's content into a 404 naming where it is."""
    try:
        yield
    except errors.PublicError:
        raise
    except LOGDIR_ERRORS as e:
        where = "run %r tag %r" % (run, tag)
        if step is not None:
            where += " step %d" % step
        raise errors.NotFoundError("%s: %s" % (where, message(e))) from None


def message(error) -> str:
    if isinstance(error, KeyError):
        return "missing %s" % (error.args[0] if error.args else "entry",)
    if isinstance(error, MemoryError):
        return "too large to read"
    text = str(error) or type(error).__name__
    return text if len(text) <= 500 else text[:500] + "..."


def check_layer_kind(header, run, tag, layer, kind):
    """404 naming the valid range when `layer` or `kind` is not in the record."""
    entries = header["num_layers"] * header["num_directions"]
    if layer >= entries:
        raise errors.NotFoundError(
            "run %r tag %r has layers 0 to %d (layer * directions + direction); no layer %d"
            % (run, tag, entries - 1, layer)
        )
    kinds = gradients.stored_kinds(header["kind"])
    if kind not in kinds:
        raise errors.NotFoundError(
            "run %r tag %r (%s) has kinds %s; no kind %r"
            % (run, tag, header["kind"], ", ".join(kinds), kind)
        )


def check_sequence(header, sequence, run, tag):
    if sequence >= header["batch"]:
        raise errors.NotFoundError(
            "run %r tag %r has sequences 0 to %d; no sequence %d"
            % (run, tag, header["batch"] - 1, sequence)
        )


class Record:
    """A step's header and arrays. Subclasses read them.

    Attributes:
      run, tag: where the step is.
      datum: the provider's datum of the step (`step`, `wall_time`).
      header: `kind`, `num_layers`, `num_directions`, `batch`, `time`, `lengths`,
        `series` (names).
      version: 1 or 2.
    """

    version = 0

    def __init__(self, run, tag, datum, header):
        self.run = run
        self.tag = tag
        self.datum = datum
        self.header = header

    @property
    def step(self):
        return self.datum.step

    @property
    def wall_time(self):
        return self.datum.wall_time

    def guard(self):
        return logdir_errors(self.run, self.tag, self.datum.step)

    def entry(self, layer: int, kind: str):
        """The handle of an array (404 naming what is missing)."""
        check_layer_kind(self.header, self.run, self.tag, layer, kind)
        try:
            return self._find(layer=layer, kind=kind)
        except KeyError:
            if gradients.is_gradient(kind) and not self.has_gradients():
                raise errors.NotFoundError(
                    "run %r tag %r step %d holds no gradients, so no %s: only steps logged "
                    "with a loss (StateWriter.log(..., loss=...)) do; the overview's 'kinds' "
                    "says which" % (self.run, self.tag, self.step, kind)
                ) from None
            raise errors.NotFoundError(
                "run %r tag %r step %d has no layer %d %s"
                % (self.run, self.tag, self.step, layer, kind)
            ) from None

    def kinds(self) -> List[str]:
        """The array kinds this step holds (any layer), in stored order."""
        present = {e.get("kind") for e in self.header["arrays"] if "series" not in e}
        return [k for k in gradients.stored_kinds(self.header["kind"]) if k in present]

    def has_gradients(self) -> bool:
        """Whether this step holds gradient arrays (it was logged with a loss)."""
        return any(gradients.is_gradient(kind) for kind in self.kinds())

    def series_entry(self, name: str):
        with self.guard():
            return self._find(series=name)

    def stored_dtype(self, handle) -> str:
        raise NotImplementedError

    def time_of(self, handle) -> int:
        raise NotImplementedError

    def units_of(self, handle) -> int:
        raise NotImplementedError

    def has_pyramid(self, handle) -> bool:
        """Whether binned views of the array can take whole blocks from a pyramid."""
        return False

    def has_mean(self, handle) -> bool:
        """Whether the array (a forget gate) has its mean stored (`storage/extras.py`)."""
        return False

    def mean(self, handle) -> np.ndarray:
        """The stored mean of a forget gate that `has_mean`: `[units]` float64."""
        raise NotImplementedError

    def read(
        self, handle, sequence: Optional[int] = None, start: int = 0, stop: Optional[int] = None
    ) -> np.ndarray:
        """The stored array or a window of it: `[batch, stop - start, units]`, or
        `[stop - start, units]` of one sequence."""
        raise NotImplementedError

    def binned(self, handle, sequence: int, start: int, stop: int, bins: int) -> np.ndarray:
        """`[2, bins, units]` float32: each bin's minimum and maximum, exact."""
        raise NotImplementedError

    def tokens(self) -> Optional[List[List[str]]]:
        raise NotImplementedError

    def _find(self, **which):
        raise NotImplementedError


class V2Record(Record):
    """A version 2 step: a parsed index and its array file."""

    version = 2

    def __init__(self, run, tag, datum, index, path, files):
        super().__init__(run, tag, datum, index)
        self._path = path
        self._files = files

    def _find(self, **which):
        return format.find_array(self.header, **which)

    def stored_dtype(self, handle):
        return handle["dtype"]

    def time_of(self, handle):
        return handle["shape"][1]

    def units_of(self, handle):
        return handle["shape"][2]

    def has_pyramid(self, handle):
        return handle.get("pyramid") is not None

    def has_mean(self, handle):
        return handle.get("mean") is not None

    def mean(self, handle):
        with self.guard():
            return self._files.mean(self._path, self.header, handle)

    def read(self, handle, sequence=None, start=0, stop=None):
        with self.guard():
            return self._files.read(self._path, self.header, handle, sequence, start, stop)

    def binned(self, handle, sequence, start, stop, bins):
        with self.guard():
            return self._files.binned(self._path, self.header, handle, sequence, start, stop, bins)

    def tokens(self):
        with self.guard():
            return self._files.tokens(self._path, self.header)


class V1Record(Record):
    """A version 1 step: a decoded header blob, arrays decoded whole from their blobs.

    Args:
      load_array: `position -> array`, the decoded (cached) blob `position`.
      cache: where binned views are kept.
      key: the step's identity in cache keys.
    """

    version = 1

    def __init__(self, run, tag, datum, header, load_array, cache, key):
        super().__init__(run, tag, datum, header)
        self._load_array = load_array
        self._cache = cache
        self._key = key

    def _find(self, **which):
        return legacy.find_array(self.header, **which)

    def stored_dtype(self, handle):
        return self.header["arrays"][handle - 1]["dtype"]

    def time_of(self, handle):
        return self.header["arrays"][handle - 1]["shape"][1]

    def units_of(self, handle):
        return self.header["arrays"][handle - 1]["shape"][2]

    def read(self, handle, sequence=None, start=0, stop=None):
        with self.guard():
            array = self._load_array(handle)
            stop = array.shape[1] if stop is None else stop
            if sequence is not None:
                return array[sequence, start:stop]
            if start == 0 and stop == array.shape[1]:
                return array
            return array[:, start:stop]

    def binned(self, handle, sequence, start, stop, bins):
        key = ("binned", *self._key, handle, sequence, start, stop, bins)

        def compute():
            array = self._load_array(handle)[sequence]
            result = ranged.binned(lambda t0, t1: array[t0:t1], None, start, stop, bins)
            result = np.ascontiguousarray(result, dtype=np.float32)
            result.setflags(write=False)
            return result

        with self.guard():
            return self._cache.get_or_compute(key, compute)

    def tokens(self):
        return self.header["tokens"]


def series_arrays(record: Record) -> Dict[str, np.ndarray]:
    """Every series of a record: name -> `[batch, time]` float32."""
    return {name: record.read(record.series_entry(name)) for name in record.header["series"]}
