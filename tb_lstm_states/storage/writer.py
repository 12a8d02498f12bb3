"""`StateWriter`: writes recurrent states beside a TensorBoard event file, off the training thread.

    import tb_lstm_states as tls
    with tls.StateWriter("runs/exp1") as writer:
        for epoch in range(epochs):
            train(...)
            writer.log("encoder", model.lstm, probe_inputs, step=epoch)

Each step becomes two things (`storage/format.py`): an array file,
`<run>/plugins/lstm_states/<tag>-<hash>.<step>.<unique>.safetensors`, and an index
summary in this writer's event file, appended only once the array file is
complete, so every index a reader finds points to a whole file.

`add_states` checks the record (`plan.py`), sums an LSTM's forget gates in float64
(their means, `extras.py`), copies the states to host numpy arrays at the stored
dtype (the float16 cast is the copy; torch casts), copies the few sequences the
statistics are computed on, queues the record and returns. One
background thread computes the statistics and the min/max pyramids of long
sequences, checksums each 64 KiB slice (CRC32C, in C) and writes the file with
`os.writev` straight from the arrays (`arrayfile.py`), then appends the index. A
queue bounded in bytes makes `add_states` wait when the disk falls behind, instead
of holding an unbounded number of records in memory.

With `summary_writer=sw`, the states go to a second event file of this writer's own
in `sw`'s run directory, so they show under the same run as `sw`'s scalars. Both
TensorBoard load paths read both files of a run live: the Rust data server always
does, and the Python loader does with `--reload_multifile=true`, which this plugin's
loader sets by default. (Without it, the Python loader follows only the last file
in name order; this writer's file is named to sort first, so the user's scalars
stay live.)
"""

import atexit
import collections
import contextlib
import json
import os
import secrets
import threading
import time
import weakref
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

from tb_lstm_states import distributed, metadata, statistics
from tb_lstm_states import states as states_lib
from tb_lstm_states.storage import (
    arrayfile,
    convert,
    event_file,
    extras,
    format,
    gradients,
    plan,
    remote,
)

DEFAULT_MAX_QUEUE_BYTES = 256 << 20


class StateWriter:
    """Writes `RecurrentStates` as `lstm_states` array files and index summaries.

    Safe to call from several threads; records are written in the order their
    `add_states` calls queued them. An error in the writer thread (a full disk) is
    raised by the next call to `add_states`, `flush` or `close`, naming the record
    that failed; that record is dropped (its partial array file removed, its partial
    index cut from the event file), so every record before it stays readable, and
    the writer goes on with the next ones.

    Under `torch.distributed` (a default process group initialized), only global rank
    0 writes: on the other ranks `StateWriter(...)` returns a writer that checks its
    arguments, writes nothing, creates nothing and never blocks. With
    `all_ranks=True` every rank writes its own records, each under its tag suffixed
    with the rank (`"encoder/rank1"`).
    """

    def __new__(cls, *args, all_ranks: bool = False, **kwargs):
        if cls is StateWriter and not all_ranks and distributed.rank() not in (None, 0):
            return super().__new__(_OtherRankWriter)
        return super().__new__(cls)

    def __init__(
        self,
        logdir: Union[str, "os.PathLike[str]", None] = None,
        *,
        summary_writer: Any = None,
        max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
        filename_suffix: str = ".lstm_states",
        all_ranks: bool = False,
    ):
        """Creates a new event file and the thread that writes the records.

        Args:
          logdir: the run directory to write into (created if missing), or a URL
            fsspec writes (`s3://bucket/exp/run1`, `gs://...`, `memory://...`; needs
            `s3fs`/`gcsfs`): array files are uploaded whole, the event file object is
            rewritten after each record (`storage/remote.py`); nothing is written locally.
          summary_writer: a `torch.utils.tensorboard.SummaryWriter` (or anything with
            `log_dir` or `get_logdir()`): write into its run instead. Give exactly one
            of `logdir` and `summary_writer`.
          max_queue_bytes: how many bytes of records may wait for the disk before
            `add_states` waits. A single larger record is still accepted.
          filename_suffix: appended to the event file name.
          all_ranks: under `torch.distributed`, False (the default): only global
            rank 0 writes, the other ranks get a writer that does nothing. True:
            every rank writes, under its tags suffixed with `/rank<r>`.

        Raises:
          ValueError: if neither or both of `logdir` and `summary_writer` are given.
          OSError: if the event file cannot be created.
        """
        _check_destination(logdir, summary_writer)
        self._all_ranks = bool(all_ranks)
        timestamp = None
        if summary_writer is not None:
            logdir = _summary_writer_logdir(summary_writer)
        assert logdir is not None  # _check_destination leaves no other case
        logdir = os.fspath(logdir)
        # A URL (s3://, gs://, memory://): fsspec, objects written whole (storage/remote.py).
        self._fs = remote.filesystem(logdir) if remote.is_url(logdir) else None
        if self._fs is None:
            os.makedirs(logdir, exist_ok=True)
        else:
            logdir = logdir.rstrip("/")
        if summary_writer is not None:
            # Named to sort before the SummaryWriter's file. A Python loader that
            # polls only the newest file of a run (--reload_multifile=false, which
            # this plugin's loader does not leave) then keeps following the user's
            # scalars, and only these states stop updating live.
            if self._fs is None:
                oldest = event_file.oldest_event_file_time(logdir)
            else:
                oldest = remote.oldest_event_file_time(self._fs, logdir)
            if oldest is not None:
                timestamp = min(oldest, int(time.time())) - 1
        name = os.path.basename(event_file.event_file_name(logdir, filename_suffix, timestamp))
        self._file: Union[event_file.RecordFile, remote.RecordObject]
        if self._fs is None:
            self._file = event_file.RecordFile(os.path.join(logdir, name))
            self._array_dir = os.path.join(logdir, *format.PLUGIN_DIRECTORY)
            try:
                os.makedirs(self._array_dir, exist_ok=True)
            except BaseException:
                self._file.close()
                raise
        else:
            self._file = remote.RecordObject(self._fs, remote.join(logdir, name))
            self._array_dir = remote.join(logdir, *format.PLUGIN_DIRECTORY)
        self._max_queue_bytes = int(max_queue_bytes)
        self._unique = secrets.token_hex(4)  # array file names: unique to this writer
        self._count = 0  # records named so far

        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._queue: collections.deque[plan.Job] = collections.deque()
        self._in_flight = 0  # records reserved (being converted) or queued, not yet done
        self._queued_bytes = 0  # their bytes
        self._queued = 0  # records queued so far
        self._done = 0  # records written (or failed) so far, in queue order
        self._closed = False
        self._errors: List[tuple] = []  # (job, exception) of records that failed

        self._thread = threading.Thread(
            target=self._run, name="tb_lstm_states.StateWriter", daemon=True
        )
        self._thread.start()
        # The thread is a daemon so a forgotten close() cannot hang the interpreter;
        # this hook still writes what is queued at exit.
        self._atexit = _close_at_exit(weakref.ref(self))
        atexit.register(self._atexit)

    @property
    def path(self) -> Optional[str]:
        """The event file this writer writes (None on a rank that writes nothing)."""
        return self._file.path

    @property
    def logdir(self) -> Optional[str]:
        """The run directory this writer writes into (a URL for a remote one; None on
        a rank that writes nothing, given a `summary_writer`)."""
        if self._fs is not None:
            return self._file.path.rsplit("/", 1)[0]
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
          states: a `RecurrentStates` of torch tensors (as `tls.capture` returns; on
            any device) or numpy arrays. It is copied before this returns, so it can
            be reused. Layers' `grads` (captured with a loss), on every layer or
            none, are stored as kinds `grad_hidden` and `grad_cell`, in float32.
          step: the training step or epoch, an int (numpy integers too).
          series: optional named `[batch, time]` numeric tracks shown as overlays.
          tokens: optional `batch` lists of strings, one per timestep.
          description: optional Markdown shown in the tab.
          dtype: `"float16"` (default; arrays with finite values beyond its range are
            kept as float32, NaN and Inf are kept) or `"float32"`; not gradients'.

        Raises:
          TypeError: if `step` is not an int, or `states` not a `RecurrentStates`.
          ValueError: on a bad tag or dtype, or shapes of states, series or tokens
            that do not match; nothing is written.
          RuntimeError: if writing an earlier record failed (see the cause); this
            record is not queued.
        """
        self._check_open("step %r of tag %r" % (step, tag))
        if not isinstance(tag, str) or not tag:
            raise ValueError("tag must be a non-empty string, got %r" % (tag,))
        step = plan.check_step(step)
        rank = distributed.rank()
        if rank is not None:
            if self._all_ranks:
                tag = "%s/rank%d" % (tag, rank)
            elif rank != 0:  # created before the process group: rank 0 writes
                return
        if dtype not in convert.DTYPES:
            raise ValueError("dtype must be one of %s, got %r" % (sorted(convert.DTYPES), dtype))
        if not isinstance(states, states_lib.RecurrentStates):
            raise TypeError(
                "states must be a RecurrentStates (what tls.capture returns), got %s; "
                "to capture and write in one call use log(tag, module, inputs, step)"
                % type(states).__name__
            )
        job = plan.plan(tag, step, states, series, tokens, description, dtype)
        self._reserve(job)
        try:
            # From the captured gates, before the float16 cast rounds them.
            job.means = extras.forget_means(job.kind, job.keys, job.arrays, job.lengths)
            job.arrays = [
                convert.stored_copy(array, plan.stored_dtype(kind, dtype))
                for (_, kind), array in zip(job.keys, job.arrays)
            ]
            job.series = [
                convert.stored_copy(values, "float32").reshape(job.batch, job.time)
                for values in job.series
            ]
            job.samples = plan.samples(job)
        except BaseException:
            self._unreserve(job)
            raise
        self._enqueue(job, sum(a.nbytes for a in job.arrays + job.series))

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
        loss=None,
    ) -> None:
        """Captures the states of `module` on `inputs` (`tls.capture`) and queues them.

        Args:
          tag, step, series, tokens, description, dtype: as for `add_states`.
          module: an `nn.LSTM`, `nn.GRU` or `nn.RNN`.
          inputs: its input (a tensor or a `PackedSequence`).
          hx: optional initial state, as the module takes it.
          loss: optional callable, as `tls.capture` takes it (the module's output to
            a scalar tensor): the gradients dL/dh_t (and dL/dc_t) are stored too.

        Raises:
          As `add_states`, and as `tls.capture` for a module or input it cannot run.
        """
        self._check_open()
        plan.check_step(step)  # before running the module
        distributed.check_not_wrapped(module, "StateWriter.log()")
        from tb_lstm_states import capturing  # imports torch: only when used

        states = capturing.capture(module, inputs, hx=hx, loss=loss)
        self.add_states(
            tag, states, step, series=series, tokens=tokens, description=description, dtype=dtype
        )

    def flush(self) -> None:
        """Waits until every record queued so far is written and handed to the OS.

        Raises:
          RuntimeError: if writing a record failed (see the cause).
        """
        with self._lock:
            target = self._queued
            while self._done < target and self._thread.is_alive():
                self._changed.wait()
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
            self._changed.notify_all()
        self._thread.join()
        self._file.close()
        atexit.unregister(self._atexit)
        self._raise_pending_error()

    def __enter__(self) -> "StateWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ------------------------------------------------------------------
    # The queue.

    def _check_open(self, this_call: str = "") -> None:
        if self._closed:
            raise ValueError("this StateWriter is closed; create a new one to write more")
        self._raise_pending_error(this_call)

    def _raise_pending_error(self, this_call: str = "") -> None:
        """Raises the writer thread's errors, if any.

        Args:
          this_call: the record of the call that raises (e.g. "step 3 of tag 'enc'"),
            which is then not queued either: the message says so.
        """
        with self._lock:
            errors, self._errors = self._errors, []
        if errors:
            job, error = errors[0]
            more = ""
            if len(errors) > 1:
                more = " (and %d later record%s: %s)" % (
                    len(errors) - 1,
                    "s" if len(errors) > 2 else "",
                    ", ".join("step %d of tag %r" % (j.step, j.tag) for j, _ in errors[1:6])
                    + (", ..." if len(errors) > 6 else ""),
                )
            if this_call:
                this_call = (
                    "; %s, given to this call, was not queued either: give it again" % this_call
                )
            raise RuntimeError(
                "StateWriter could not write step %d of tag %r to %s (%s: %s)%s; it was "
                "dropped, the records before it are intact%s"
                % (job.step, job.tag, self.logdir, type(error).__name__, error, more, this_call)
            ) from error

    def _reserve(self, job: plan.Job) -> None:
        """Counts `job` as in flight, first waiting for room: backpressure, waiting
        for the disk rather than queueing without bound. A record larger than the
        bound is accepted once nothing else is in flight."""
        with self._lock:
            while (
                self._in_flight
                and not self._closed
                and self._queued_bytes + job.nbytes > self._max_queue_bytes
            ):
                self._changed.wait()
            if self._closed:
                raise ValueError("this StateWriter was closed while add_states waited")
            self._in_flight += 1
            self._queued_bytes += job.nbytes

    def _unreserve(self, job: plan.Job) -> None:
        with self._lock:
            self._in_flight -= 1
            self._queued_bytes -= job.nbytes
            self._changed.notify_all()

    def _enqueue(self, job: plan.Job, nbytes: int) -> None:
        """Queues a converted `job` of `nbytes` (more than reserved where float16
        arrays stayed float32)."""
        with self._lock:
            self._queued_bytes += nbytes - job.nbytes
            job.nbytes = nbytes
            self._queue.append(job)
            self._queued += 1
            self._changed.notify_all()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue:
                    if self._closed and not self._in_flight:
                        return
                    self._changed.wait()
                job = self._queue.popleft()
            error = None
            try:
                self._write(job)
            except BaseException as e:
                error = e
            job.arrays, job.series, job.samples = [], [], []  # freed now, not with the next job
            job.means = {}
            with self._lock:
                if error is not None:
                    self._errors.append((job, error))
                self._in_flight -= 1
                self._queued_bytes -= job.nbytes
                self._done += 1
                self._changed.notify_all()

    # ------------------------------------------------------------------
    # The writer thread's work.

    def _write(self, job: plan.Job) -> None:
        """Writes the array file of `job`, then its index."""
        tensors: List[format.Tensor] = []
        buffers: List[np.ndarray] = []
        entries: List[Dict[str, Any]] = []
        state_entries: List[Dict[str, Any]] = []
        for (layer, kind), array in zip(job.keys, job.arrays):
            name = format.array_name(layer, kind)
            tensors.append(format.Tensor(name, array.dtype.name, array.shape))
            buffers.append(array)
            entry: Dict[str, Any] = {"layer": layer, "kind": kind, "tensor": name}
            entries.append(entry)
            state_entries.append(entry)
        for series_name, values in zip(job.series_names, job.series):
            name = format.series_name(series_name)
            tensors.append(format.Tensor(name, "float32", values.shape))
            buffers.append(values)
            entries.append({"series": series_name, "tensor": name})
        # Min/max pyramids of long sequences and forget means: entry[member] names them.
        for entry, member, name, extra in extras.tensors(state_entries, job.arrays, job):
            tensors.append(format.Tensor(name, extra.dtype.name, extra.shape))
            buffers.append(extra)
            entry[member] = name
        file_metadata = {
            "format": format.FORMAT_NAME,
            "version": str(extras.index_version(entries)),
            "tokens": json.dumps(job.tokens, separators=(",", ":")),
        }
        layout = format.Layout(tensors, file_metadata)
        table = np.hstack(
            [
                statistics.table(job.samples, [kind for _, kind in job.keys], job.sample_lengths),
                np.array([convert.extremes(array) for array in job.arrays], np.float32).reshape(
                    -1, 2
                ),
            ]
        )
        arrays = dict(zip(job.keys, job.arrays))
        path, crc_table = self._write_array_file(job, layout, buffers)
        try:
            index = format.build_index(
                layout,
                os.path.basename(path),
                crc_table,
                kind=job.kind,
                num_layers=job.num_layers,
                num_directions=job.num_directions,
                batch=job.batch,
                time=job.time,
                lengths=job.lengths,
                series=job.series_names,
                has_tokens=job.tokens is not None,
                arrays=entries,
                statistics=table,
                gradient_reach=gradients.record_reach(
                    job.kind, job.num_layers, job.num_directions, arrays, job.lengths
                ),
            )
            value = summary_pb2.Summary.Value(
                tag=job.tag,
                metadata=metadata.create_summary_metadata(
                    metadata.ROLE_INDEX, description=job.description, content=job.structure
                ),
                tensor=tensor_pb2.TensorProto(
                    dtype=types_pb2.DT_STRING,
                    tensor_shape=tensor_shape_pb2.TensorShapeProto(),
                    string_val=[index],
                ),
            )
            event = event_pb2.Event(
                wall_time=job.wall_time, step=job.step, summary=summary_pb2.Summary(value=[value])
            )
            self._file.write(event.SerializeToString())
        except BaseException:
            if self._fs is not None:
                remote.remove(self._fs, path)
            else:
                arrayfile.remove(path)  # no index points to it
            raise

    def _write_array_file(self, job: plan.Job, layout: format.Layout, buffers: list):
        """Writes a whole array file (`arrayfile.py`); returns its path and checksum table.

        Raises:
          OSError: if it cannot be written; what was written of it is removed.
        """
        if self._fs is not None:  # a URL: uploaded as one object once complete
            self._count += 1
            name = format.array_file_name(job.tag, job.step, "%s%d" % (self._unique, self._count))
            url = remote.join(self._array_dir, name)
            return url, arrayfile.upload(self._fs, url, layout, buffers)
        while True:
            self._count += 1
            name = format.array_file_name(job.tag, job.step, "%s%d" % (self._unique, self._count))
            path = os.path.join(self._array_dir, name)
            try:
                fd = os.open(path, event_file.CREATE_FLAGS, 0o666)
                break
            except FileExistsError:  # another writer drew the same name: draw again
                self._unique = secrets.token_hex(4)
        return path, arrayfile.write(fd, path, layout, buffers)


class _OtherRankWriter(StateWriter):
    """What `StateWriter(...)` is on a rank other than 0 (without `all_ranks`): it
    checks its arguments as a writer would, and writes, creates and waits for nothing."""

    def __init__(self, logdir=None, *, summary_writer=None, all_ranks=False, **_):
        _check_destination(logdir, summary_writer)
        self._logdir = os.fspath(logdir) if logdir is not None else None
        self._closed = False

    @property
    def path(self) -> Optional[str]:
        """None: this rank writes no event file."""
        return None

    @property
    def logdir(self) -> Optional[str]:
        """The run directory given (None with `summary_writer`); nothing is written there."""
        return self._logdir

    def add_states(self, tag, states, step, **_) -> None:
        self._check_open()
        if not isinstance(tag, str) or not tag:
            raise ValueError("tag must be a non-empty string, got %r" % (tag,))
        plan.check_step(step)

    def log(self, tag, module, inputs, step, **_) -> None:
        self._check_open()
        plan.check_step(step)
        distributed.check_not_wrapped(module, "StateWriter.log()")

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self._closed = True

    def _check_open(self, this_call: str = "") -> None:
        if self._closed:
            raise ValueError("this StateWriter is closed; create a new one to write more")


def _check_destination(logdir, summary_writer) -> None:
    if (logdir is None) == (summary_writer is None):
        raise ValueError(
            "give exactly one of logdir (a run directory) or summary_writer "
            "(a torch SummaryWriter whose run the states join)"
        )


def _summary_writer_logdir(summary_writer) -> str:
    get_logdir = getattr(summary_writer, "get_logdir", None)
    logdir = get_logdir() if callable(get_logdir) else getattr(summary_writer, "log_dir", None)
    if not logdir:
        raise ValueError(
            "summary_writer must be a torch.utils.tensorboard.SummaryWriter (something with "
            "get_logdir() or log_dir), got %s" % type(summary_writer).__name__
        )
    return logdir


def _close_at_exit(writer_ref):
    def close():
        writer = writer_ref()
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()

    return close
