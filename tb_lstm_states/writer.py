"""`StateWriter`: writes recurrent states into TensorBoard event files, off the training thread.

    import tb_lstm_states as tls
    with tls.StateWriter("runs/exp1") as writer:
        for epoch in range(epochs):
            train(...)
            writer.log("encoder", model.lstm, probe_inputs, step=epoch)

Each `add_states` converts the states to host numpy arrays at the stored dtype (the
only copy, and the one the float16 cast needs anyway), into buffers reused from
earlier records, and checksums each copy (CRC32C, in C) while it is in cache: one
compiled call per array, `copy_kernel`. It publishes each copy to a background
thread that writes it (a compiled loop that takes what is published meanwhile too,
without the GIL: `stream_kernel`), while `add_states` goes on to the next array
and then the statistics (sampled sequences, one compiled pass without the GIL,
`statistics`), which end the record; `add_states` writes that small end itself
where the writer thread is idle by then, and returns. The event proto is encoded by
hand around the arrays, so a large record never goes through protobuf
serialization or a Python-level copy. What a record's layout decides (its header,
the event's bytes around the arrays) is worked out once per layout (`_Plan`). A
queue bounded in bytes makes `add_states` wait when the disk falls behind, instead
of holding an unbounded number of records in memory.

With `summary_writer=sw`, the states go to a second event file of this writer's own
in `sw`'s run directory, so they show under the same run as `sw`'s scalars. Writing
through `sw`'s own event file would run TensorBoard's pure-Python CRC (about 6 MB/s)
in `sw`'s thread and slow training through the GIL. Both TensorBoard load paths read
both files of a run live: the Rust data server always does, and the Python loader
does with `--reload_multifile=true`, which this plugin's loader sets by default.
(Without it, the Python loader follows only the last file in name order; this
writer's file is named to sort first, so the user's scalars stay live.)
"""

import atexit
import numbers
import os
import struct
import threading
import time
import weakref
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from tensorboard.compat.proto import summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

from tb_lstm_states import codec, event_file, metadata, statistics, summary, wire
from tb_lstm_states import states as states_lib

# The protobuf limit on one serialized message: readers cannot parse a larger Event.
MAX_EVENT_BYTES = (1 << 31) - 1

DEFAULT_MAX_QUEUE_BYTES = 256 << 20

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1

# The plans of this many record signatures are kept (see `_signature`).
_MAX_PLANS = 64


class StateWriter:
    """Writes `RecurrentStates` as `lstm_states` summaries into an event file.

    Safe to call from several threads; records are written in the order their
    `add_states` calls queued them. An error in the writer thread (a full disk) is
    raised by the next call to `add_states`, `flush` or `close`; the record that
    failed is cut from the file, so every record before it stays readable.
    """

    def __init__(
        self,
        logdir: Optional[str] = None,
        *,
        summary_writer: Any = None,
        max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
        filename_suffix: str = ".lstm_states",
    ):
        """Creates a new event file and the thread that writes it.

        Args:
          logdir: the run directory to write into (created if missing).
          summary_writer: a `torch.utils.tensorboard.SummaryWriter` (or anything with
            `log_dir` or `get_logdir()`): write into its run instead. Give exactly one
            of `logdir` and `summary_writer`.
          max_queue_bytes: how many bytes of records may wait for the disk before
            `add_states` waits. A single larger record is still accepted. Written
            records' buffers are kept for reuse within the same bound (and at most
            as many records' as were in flight at once) until `close`.
          filename_suffix: appended to the event file name.

        Raises:
          ValueError: if neither or both of `logdir` and `summary_writer` are given.
          OSError: if the event file cannot be created.
        """
        if (logdir is None) == (summary_writer is None):
            raise ValueError(
                "give exactly one of logdir (a run directory) or summary_writer "
                "(a torch SummaryWriter whose run the states join)")
        timestamp = None
        if summary_writer is not None:
            logdir = _summary_writer_logdir(summary_writer)
        logdir = os.fspath(logdir)
        os.makedirs(logdir, exist_ok=True)
        if summary_writer is not None:
            # Named to sort before the SummaryWriter's file. A Python loader that
            # polls only the newest file of a run (--reload_multifile=false, which
            # this plugin's loader does not leave) then keeps following the user's
            # scalars, and only these states stop updating live.
            oldest = event_file.oldest_event_file_time(logdir)
            if oldest is not None:
                timestamp = min(oldest, int(time.time())) - 1
        self._file = event_file.RecordFile(
            event_file.event_file_name(logdir, filename_suffix, timestamp))
        self._max_queue_bytes = int(max_queue_bytes)

        self._lock = threading.Lock()
        # Separate conditions, so that freeing room wakes no one unless add_states
        # waits for it: waking a thread cost tens of microseconds a record here.
        self._work = threading.Condition(self._lock)  # the writer thread waits for parts
        self._room = threading.Condition(self._lock)  # add_states waits for queue room
        self._progress = threading.Condition(self._lock)  # flush waits for parts written
        self._queue: List[_Job] = []  # records being made and written, oldest first
        self._queued_bytes = 0
        self._writing = False  # a thread writes a part (`_claim`)
        self._flushers = 0  # threads waiting in flush
        self._closed = False
        self._error: Optional[BaseException] = None
        self._error_job: Optional[_Job] = None

        self._pool = _BufferPool(self._max_queue_bytes)
        self._plans: Dict[tuple, _Plan] = {}

        self._thread = threading.Thread(
            target=self._run, name="tb_lstm_states.StateWriter", daemon=True)
        self._thread.start()
        # The thread is a daemon so a forgotten close() cannot hang the interpreter;
        # this hook still writes what is queued at exit.
        self._atexit = _close_at_exit(weakref.ref(self))
        atexit.register(self._atexit)

    @property
    def path(self) -> str:
        """The event file this writer writes."""
        return self._file.path

    @property
    def logdir(self) -> str:
        """The run directory this writer writes into."""
        return os.path.dirname(self._file.path)

    def add_states(
        self,
        tag: str,
        states,
        step: int,
        *,
        series: Optional[Dict[str, Any]] = None,
        tokens: Optional[Sequence[Sequence[str]]] = None,
        description: Optional[str] = None,
        dtype: str = "float16",
    ) -> None:
        """Queues the states of one step for writing and returns without waiting for the disk.

        Args:
          tag: the name of the states in TensorBoard, e.g. `"encoder"`.
          states: a `RecurrentStates` of torch tensors (as `tls.capture` returns) or
            numpy arrays. It is copied before this returns, so it can be reused.
          step: the training step or epoch, an int (numpy integers too).
          series: optional named `[batch, time]` numeric tracks shown as overlays.
          tokens: optional `batch` lists of strings, one per timestep.
          description: optional Markdown shown in the tab.
          dtype: `"float16"` (default; arrays with finite values beyond its range are
            kept as float32, NaN and Inf are kept) or `"float32"`.

        Raises:
          TypeError: if `step` is not an int.
          ValueError: on a bad tag or dtype, shapes of states, series or tokens that do
            not match, or a record over the 2 GiB protobuf limit; nothing is written.
          RuntimeError: if writing an earlier record failed (see the cause).
        """
        self._check_open()
        if not isinstance(tag, str) or not tag:
            raise ValueError("tag must be a non-empty string, got %r" % (tag,))
        step = _check_step(step)
        if dtype not in codec.DTYPES:
            raise ValueError("dtype must be one of %s, got %r" % (sorted(codec.DTYPES), dtype))
        if not isinstance(states, states_lib.RecurrentStates):
            raise TypeError(
                "states must be a RecurrentStates (what tls.capture returns), got %s; "
                "to capture and write in one call use log(tag, module, inputs, step)"
                % type(states).__name__)
        numpy_states = summary.to_numpy_states(states)
        numpy_series = {name: summary._to_numpy(v) for name, v in (series or {}).items()}
        arrays = _record_arrays(numpy_states, numpy_series)
        signature = _signature(tag, description, dtype, numpy_states, numpy_series, tokens,
                               arrays)
        plan = self._plans.get(signature) if signature is not None else None
        if plan is None:
            _check_size(tag, step, numpy_states, numpy_series, codec.DTYPES[dtype].itemsize)
            header, planned = codec.plan_record(
                numpy_states, series=numpy_series, tokens=tokens, dtype=dtype)
            plan = _Plan(tag, description, numpy_states, header, planned)
            if signature is not None:
                if len(self._plans) >= _MAX_PLANS:
                    self._plans.clear()
                self._plans[signature] = plan
            arrays = [array for array, _ in planned]
        job = _Job(tag, step, time.time(), plan)
        # Exact now that the stored dtypes are known (float16 may have become float32).
        if job.stream.length > MAX_EVENT_BYTES:
            raise _too_large(tag, step, job.stream.length)
        self._reserve(job)
        from tb_lstm_states import copy_kernel  # numba: imported on first use

        queued = False
        try:
            # Each array goes to the writer thread once copied, so the disk is busy
            # while the next ones are copied (the copies run without the GIL).
            # The record is queued with its first array, so the writer thread wakes
            # once, to write, not once for the record and again for the array.
            pieces = [job.prefix, plan.header]
            crc = 0
            for array, shape, stored_dtype, key in zip(
                    arrays, plan.shapes, plan.dtypes, plan.array_keys):
                out = self._pool.take(shape, stored_dtype)
                job.pooled.append(out)
                pieces.append(key)
                # Large arrays go in slices, so the writer thread starts on the
                # first one while the rest is copied.
                for source, target in _slices(array.reshape(shape), out):
                    # Checksummed here, while the copy is in this core's cache; the
                    # writer thread only writes, without the GIL (`stream_kernel`).
                    crc = copy_kernel.copy_into(target, source, event_file.crc32c(pieces, crc))
                    pieces.append(_bytes_view(target))
                    self._put(job, pieces, first=not queued)
                    queued = True
                    pieces = []
            # From the caller's arrays, exactly as `states_pb` computes them. Sampled
            # (`statistics.MAX_VALUES`): a fraction of a millisecond.
            compute_statistics = plan.statistics.prepare(numpy_states)
            # While the writer thread writes the arrays.
            table = compute_statistics().astype("<f4", copy=False).tobytes()
            pieces += [plan.statistics_key, plan.statistics_prefix, table]
            self._put(job, pieces, first=not queued, crc=event_file.crc32c(pieces, crc))
        except BaseException:
            self._cancel(job)
            raise

    def log(
        self,
        tag: str,
        module,
        inputs,
        step: int,
        *,
        hx=None,
        series: Optional[Dict[str, Any]] = None,
        tokens: Optional[Sequence[Sequence[str]]] = None,
        description: Optional[str] = None,
        dtype: str = "float16",
    ) -> None:
        """Captures the states of `module` on `inputs` (`tls.capture`) and queues them.

        Args:
          tag, step, series, tokens, description, dtype: as for `add_states`.
          module: an `nn.LSTM`, `nn.GRU` or `nn.RNN`.
          inputs: its input (a tensor or a `PackedSequence`).
          hx: optional initial state, as the module takes it.

        Raises:
          As `add_states`, and as `tls.capture` for a module or input it cannot run.
        """
        self._check_open()
        _check_step(step)  # before running the module
        from tb_lstm_states import capturing  # imports torch: only when used

        states = capturing.capture(module, inputs, hx=hx)
        self.add_states(tag, states, step, series=series, tokens=tokens,
                        description=description, dtype=dtype)

    def flush(self) -> None:
        """Writes every queued record and hands it to the OS before returning.

        The calling thread writes what it can itself rather than wait for the writer
        thread to be scheduled: it would wait either way.

        Raises:
          RuntimeError: if writing a record failed (see the cause).
        """
        with self._lock:
            last = self._queue[-1] if self._queue else None
            self._flushers += 1
        try:
            while last is not None:
                with self._lock:
                    if last.written:
                        break
                    part = self._claim()
                    if part is None:
                        self._progress.wait()
                if part is not None:
                    self._write_part(part)
        finally:
            with self._lock:
                self._flushers -= 1
                self._wake_writer()
        self._raise_pending_error()

    def close(self) -> None:
        """Writes what is queued, stops the writer thread and closes the file. Idempotent.

        Raises:
          RuntimeError: if writing a record failed (see the cause); the file is
            closed all the same.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._work.notify_all()
            self._room.notify_all()
        self._thread.join()
        self._file.close()
        self._pool.clear()
        atexit.unregister(self._atexit)
        self._raise_pending_error()

    def __enter__(self) -> "StateWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("this StateWriter is closed; create a new one to write more")
        self._raise_pending_error()

    def _raise_pending_error(self) -> None:
        with self._lock:
            error, job = self._error, self._error_job
            self._error = self._error_job = None
        if error is not None:
            raise RuntimeError(
                "StateWriter could not write step %d of tag %r to %s (%s: %s); the records "
                "before it are intact" % (job.step, job.tag, self.path,
                                          type(error).__name__, error)
            ) from error

    def _reserve(self, job: "_Job") -> None:
        """Counts `job` as queued, first waiting for room: backpressure, waiting for
        the disk rather than queueing without bound. A record larger than the
        bound is accepted once the queue is empty."""
        with self._lock:
            while self._queue and self._queued_bytes + job.nbytes > self._max_queue_bytes:
                self._room.wait()
            if self._closed:
                raise ValueError("this StateWriter was closed while add_states waited")
            self._queued_bytes += job.nbytes

    def _put(self, job: "_Job", pieces: list, *, first: bool,
             crc: Optional[int] = None) -> None:
        """Publishes the next pieces of a reserved `job` to be written.

        Args:
          job: the record.
          pieces: its next pieces, which must stay unchanged until written.
          first: queue the record (with its first pieces: one wake for both).
          crc: the CRC32C of the whole payload, with its last pieces. If no one is
            writing then, they are written here: waking the writer thread for them
            took longer than writing them, and a `flush` right after would wait for
            it in turn.

        Raises:
          ValueError: if the writer was closed meanwhile, or (a bug) if the pieces
            do not add up to the announced length; the record is dropped.
        """
        with self._lock:
            if first:
                if self._closed:
                    raise ValueError("this StateWriter was closed while add_states ran")
                self._queue.append(job)
            if not job.written:  # else writing it failed: the rest is dropped
                job.stream.publish(pieces, crc)
            part = None
            if crc is not None:
                job.finished = True
                if job.written:
                    self._release(job)
                part = self._claim(job)
            if part is None:
                self._wake_writer()
        if part is not None:
            self._write_part(part)

    def _cancel(self, job: "_Job") -> None:
        """Drops a record `add_states` gave up on; what was written of it is cut."""
        with self._lock:
            job.cancelled = True
            if job not in self._queue:  # never queued, or out of the file already
                self._release(job)
                return
            part = self._claim(job)
            if part is None:
                self._wake_writer()
        if part is not None:
            self._write_part(part)

    def _wake_writer(self) -> None:
        """Wakes whoever writes the next part, if one is ready. Called with `_lock` held.

        A thread waiting in `flush` writes it: that thread waits either way, and a
        part written by the writer thread while it waits costs a second wake.
        """
        if self._flushers:
            self._progress.notify_all()
        elif self._queue and (self._queue[0].stream.ready or self._queue[0].cancelled):
            self._work.notify()

    def _claim(self, job: Optional["_Job"] = None) -> Optional["_Job"]:
        """The record to write next (the oldest queued one), with something to write
        or to cut, or None while someone writes or nothing is ready.

        Called with `_lock` held. One thread at a time writes (the writer thread,
        `flush`, or `_put`), so pieces reach the file in order. With `job`, only `job`.
        """
        if self._writing or not self._queue:
            return None
        head = self._queue[0]
        if (job is not None and head is not job) or not (head.stream.ready or head.cancelled):
            return None
        self._writing = True
        return head

    def _write_part(self, job: "_Job") -> None:
        """Writes (or cuts) a record `_claim`ed by this thread, no lock held: what is
        published of it, and what `add_states` publishes meanwhile."""
        error = None
        try:
            if job.cancelled:
                if job.stream.written:
                    self._file.cut()
            else:
                self._file.write_stream(job.stream)
        except BaseException as e:  # noqa: B036 - recorded, and re-raised below if fatal
            error = e
        with self._lock:
            self._writing = False
            if error is not None and self._error is None and isinstance(error, Exception):
                self._error, self._error_job = error, job  # raised by the next call
            if job.cancelled or job.stream.complete or error is not None:
                self._queue.pop(0)
                job.written = True  # or cut from the file
                if job.finished or job.cancelled:
                    self._release(job)
            self._wake_writer()  # for pieces published since, or a flush
        if error is not None and not isinstance(error, Exception):
            raise error

    def _release(self, job: "_Job") -> None:
        """Gives back the buffers and the queue room of a written or dropped `job`
        once `add_states` is done with it. Called with `_lock` held."""
        self._pool.give(job.pooled)
        job.pooled = []
        self._queued_bytes -= job.nbytes
        self._room.notify_all()

    def _run(self) -> None:
        while True:
            with self._lock:
                part = None if self._flushers else self._claim()
                while part is None:
                    if self._closed and not self._queue:
                        return
                    self._work.wait()
                    part = None if self._flushers else self._claim()
            self._write_part(part)


class _BufferPool:
    """Arrays of written records, kept for the next records of the same shapes.

    Fresh memory costs a page fault per 4 KiB on first touch, which made copying a
    64 MB record several times slower than copying into a reused buffer (measured on
    the project's VMs). A training loop logs the same shapes every time, so the
    buffers of as many records as were ever in flight at once (taken and not yet
    given back: one being written while the next is converted, or every tag of a
    step queued together) are kept, up to `max_bytes`; `clear` frees them.
    """

    def __init__(self, max_bytes: int):
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._free: Dict[tuple, List[np.ndarray]] = {}
        self._bytes = 0  # in `_free`
        self._in_use = 0  # taken and not given back
        self._most_in_use = 0

    def take(self, shape: tuple, dtype: np.dtype) -> np.ndarray:
        key = (shape, dtype.str)
        with self._lock:
            arrays = self._free.get(key)
            array = arrays.pop() if arrays else None
            if array is not None:
                self._bytes -= array.nbytes
            nbytes = array.nbytes if array is not None else (
                int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)
            self._in_use += nbytes
            self._most_in_use = max(self._most_in_use, self._in_use)
        return array if array is not None else np.empty(shape, dtype=dtype)

    def give(self, arrays) -> None:
        """Takes back the arrays of one record."""
        arrays = list(arrays or ())
        with self._lock:
            self._in_use -= sum(a.nbytes for a in arrays)
            limit = min(self._max_bytes, self._most_in_use)
            for array in arrays:
                if self._bytes + array.nbytes > limit:
                    self._evict(array.nbytes, limit)
                if self._bytes + array.nbytes <= limit:
                    self._free.setdefault((array.shape, array.dtype.str), []).append(array)
                    self._bytes += array.nbytes

    def _evict(self, nbytes, limit) -> None:
        # Oldest shapes first: dicts keep insertion order.
        for key in list(self._free):
            while self._free[key] and self._bytes + nbytes > limit:
                self._bytes -= self._free[key].pop(0).nbytes
            if not self._free[key]:
                del self._free[key]

    def clear(self) -> None:
        with self._lock:
            self._free.clear()
            self._bytes = 0


class _Plan:
    """What every record of one signature (`_signature`) shares, worked out once.

    The header blob, each array's stored shape and dtype, and the serialized event
    around the arrays but for its wall time and step. Planning a 1.2 MB record
    from scratch took about 80 us of Python (measured), a third of the time its
    arrays take to write, and a training loop logs the same layout every time.
    """

    def __init__(self, tag, description, numpy_states, header, planned):
        self.header = header.tobytes()  # checksummed without releasing the GIL
        self.statistics = statistics.RecordStatistics(numpy_states)
        self.shapes = [array.shape for array, _ in planned]
        self.dtypes = [dtype for _, dtype in planned]
        value_prefix = summary_pb2.Summary.Value(
            tag=tag,
            metadata=metadata.create_summary_metadata(
                metadata.ROLE_STATES,
                description=description,
                content=summary.structure(numpy_states),
            ),
        ).SerializeToString()
        blob_sizes = [len(self.header)] + [
            int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            for shape, dtype in zip(self.shapes, self.dtypes)]
        self.nbytes = sum(blob_sizes)
        # The prefix and header, a key and slices an array, the statistics' three.
        self.max_pieces = 5 + sum(1 + len(_slice_starts(shape, dtype.itemsize))
                                  for shape, dtype in zip(self.shapes, self.dtypes))
        self.array_keys = [wire.length_delimited(8, size) for size in blob_sizes[1:]]
        tensor_prefix = tensor_pb2.TensorProto(
            dtype=types_pb2.DT_STRING,
            tensor_shape=tensor_shape_pb2.TensorShapeProto(
                dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(blob_sizes))]),
        ).SerializeToString()
        tensor_size = len(tensor_prefix) + sum(  # TensorProto.string_val
            len(wire.length_delimited(8, size)) + size for size in blob_sizes)
        value_head = value_prefix + wire.length_delimited(8, tensor_size)  # .tensor
        value_size = len(value_head) + tensor_size
        record_key = wire.length_delimited(1, value_size)  # Summary.value: the record
        self.statistics_prefix, table_bytes = summary.statistics_value_template(
            tag, numpy_states.kind, len(numpy_states.layers))
        statistics_bytes = len(self.statistics_prefix) + table_bytes
        # Summary.value: the statistics.
        self.statistics_key = wire.length_delimited(1, statistics_bytes)
        self.summary_size = (len(record_key) + value_size + len(self.statistics_key)
                             + statistics_bytes)
        # Everything after Event.summary's tag and length, before the header's bytes.
        self.summary_prefix = (record_key + value_head + tensor_prefix
                               + wire.length_delimited(8, len(self.header)))


class _Job:
    """One record, from the `add_states` that makes it to the thread that writes it.

    The payload is the serialized `Event` holding the record and its statistics,
    field by field what `Event(summary=states_pb(...)).SerializeToString()` holds;
    the arrays go in as memoryviews of their copies, so nothing large is copied
    twice. Its length is known from the plan, before any array is copied. Its
    state is guarded by the writer's lock.
    """

    def __init__(self, tag, step, wall_time, plan):
        self.tag = tag
        self.step = step
        self.nbytes = plan.nbytes
        self.pooled: List[np.ndarray] = []
        head = (
            wire.key(1, 1) + struct.pack("<d", wall_time)  # Event.wall_time
            + wire.key(2, 0) + wire.varint(step & 0xFFFFFFFFFFFFFFFF)  # Event.step
            + wire.length_delimited(5, plan.summary_size)  # Event.summary
        )
        self.prefix = head + plan.summary_prefix  # everything before the header's bytes
        self.stream = event_file.RecordStream(len(head) + plan.summary_size, plan.max_pieces)
        self.finished = False  # add_states published its last pieces
        self.cancelled = False  # add_states gave up on it
        self.written = False  # in the file, or cut from it


def _record_arrays(numpy_states, numpy_series) -> Optional[list]:
    """The arrays of a record in blob order, or None where the states lack one (the
    planner then names what is wrong)."""
    try:
        arrays = [layer.get(name) for layer in numpy_states.layers
                  for name in states_lib.array_kinds(numpy_states.kind)]
    except (KeyError, AttributeError):
        return None
    return arrays + list(numpy_series.values())


def _signature(tag, description, dtype, numpy_states, numpy_series, tokens, arrays):
    """Everything `codec.plan_record` and `_Plan` depend on, or None where it is not
    cheap to tell (tokens, or arrays that are not numpy arrays): such records are
    planned from scratch.

    Records of the same signature get the same header: the same kind, shapes,
    lengths and series names, and for float32 input stored as float16 the same
    choice of arrays that must stay float32 (checked for every record).
    """
    if tokens is not None or arrays is None:
        return None
    lengths = numpy_states.lengths
    if not isinstance(lengths, np.ndarray):
        return None
    parts = [tag, description, dtype, numpy_states.kind, numpy_states.num_directions,
             lengths.dtype.str, lengths.tobytes(), tuple(numpy_series)]
    states_arrays = len(arrays) - len(numpy_series)
    for index, array in enumerate(arrays):
        if not isinstance(array, np.ndarray):
            return None
        parts.append(array.shape)
        parts.append(array.dtype.str)
        if index < states_arrays and dtype == "float16":
            parts.append(codec.fits_float16(array))
    return tuple(parts)


# Arrays larger than this are copied and handed to the writer thread in slices.
_SLICE_BYTES = 2 << 20


def _slices(source: np.ndarray, target: np.ndarray):
    """`(source part, target part)` pairs that cover `target` (C-contiguous), in
    order: the whole arrays, or slices along the first axis of about `_SLICE_BYTES`."""
    starts = _slice_starts(target.shape, target.itemsize)
    if len(starts) == 1:
        return [(source, target)]
    ends = starts[1:] + [target.shape[0]]
    return [(source[start:end], target[start:end]) for start, end in zip(starts, ends)]


def _slice_starts(shape: tuple, itemsize: int) -> List[int]:
    """Where the slices `_slices` cuts an array of `shape` into begin."""
    nbytes = int(np.prod(shape, dtype=np.int64)) * itemsize
    if nbytes <= _SLICE_BYTES or not shape:
        return [0]
    rows = max(1, _SLICE_BYTES // max(1, nbytes // max(1, shape[0])))
    return list(range(0, shape[0], rows)) if rows < shape[0] else [0]


def _bytes_view(array: np.ndarray) -> memoryview:
    return memoryview(array).cast("B")


def _check_step(step) -> int:
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise TypeError(
            "step must be an int (the training step or epoch), got %r of type %s"
            % (step, type(step).__name__))
    step = int(step)
    if not _INT64_MIN <= step <= _INT64_MAX:
        raise ValueError("step must fit in a signed 64-bit integer, got %d" % step)
    return step


def _check_size(tag, step, numpy_states, numpy_series, itemsize) -> None:
    # From the shapes alone, before the arrays are converted: a record that cannot
    # be written must not first allocate gigabytes.
    arrays = [layer.get(name) for layer in numpy_states.layers
              for name in ("hidden", "cell") if name == "hidden" or layer.cell is not None]
    arrays += [gate for layer in numpy_states.layers for gate in layer.gates.values()]
    size = sum(int(np.size(a)) * itemsize for a in arrays)
    size += sum(int(np.size(v)) * 4 for v in numpy_series.values())
    if size > MAX_EVENT_BYTES:
        raise _too_large(tag, step, size)


def _too_large(tag, step, size) -> ValueError:
    return ValueError(
        "the record of tag %r at step %d needs %.2f GiB, over the 2 GiB limit of one "
        "TensorBoard event; log fewer sequences (a smaller probe batch), fewer timesteps, "
        "or dtype='float16'. Nothing was written for it." % (tag, step, size / (1 << 30)))


def _summary_writer_logdir(summary_writer) -> str:
    get_logdir = getattr(summary_writer, "get_logdir", None)
    logdir = get_logdir() if callable(get_logdir) else getattr(summary_writer, "log_dir", None)
    if not logdir:
        raise ValueError(
            "summary_writer must be a torch.utils.tensorboard.SummaryWriter (something with "
            "get_logdir() or log_dir), got %s" % type(summary_writer).__name__)
    return logdir


def _close_at_exit(writer_ref):
    def close():
        writer = writer_ref()
        if writer is not None:
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - nothing is left to report it to
                pass
    return close
