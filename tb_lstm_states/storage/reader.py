"""`read_states`: the states logged in a logdir, as numpy arrays, without TensorBoard.

    import tb_lstm_states as tls
    for rec in tls.read_states("runs", tag="encoder"):
        cell = rec.states.layer(0).cell  # [batch, time, hidden], float16 or float32

The logdir is walked the way TensorBoard walks it: every directory holding a file
whose name contains `tfevents` is a run, named by its path relative to the logdir
(`"."` for the logdir itself). Its event files are read in name order (their names
start with the creation time), every record's CRC32C is checked in C, and only
`lstm_states` summaries are decoded: JSON and raw little-endian arrays, never pickle.

A version 2 step (this package) is an index summary in the event file and a
safetensors file in `<run>/plugins/lstm_states/`; its arrays are read from that file
and checked slice by slice against the index's checksums. A version 1 step (the
arrays inside the event file) is decoded from the event itself.

A truncated last record (a writer still running, or killed mid-record) is skipped
quietly, as TensorBoard does. A record or array file that is damaged (a failed
checksum, a torn or missing array file, a malformed or oversized index, an event
file that cannot be opened) is skipped with a `CorruptRecordWarning` naming the file,
the byte offset and the problem, and reading goes on: one flipped bit should not hide
a whole training run. A record written by a newer version of this package is
skipped with a `NewerVersionWarning` asking for an upgrade. With `strict=True` the
first of them raises instead (`CorruptRecordError`, `format.NewerVersionError`).
"""

import dataclasses
import numbers
import os
import warnings
from typing import Dict, Iterable, Iterator, List, Optional, Union

import numpy as np
from google.protobuf import message
from tensorboard.compat.proto import event_pb2

from tb_lstm_states import metadata
from tb_lstm_states import states as states_lib
from tb_lstm_states.storage import event_file, format, gradients, legacy, ranged, remote


class CorruptRecordWarning(UserWarning):
    """A record or its array file is damaged; it was skipped."""


class NewerVersionWarning(UserWarning):
    """A record was written by a newer version of this package; it was skipped."""


class CorruptRecordError(ValueError):
    """With `strict=True`: a record, its array file or an event file is damaged."""


@dataclasses.dataclass
class StatesRecord:
    """The states of one (run, tag, step), as `read_states` yields them.

    Attributes:
      run: the run, the directory relative to the logdir (`"."` for the logdir).
      tag: the tag the states were logged under.
      step: the step they were logged at.
      wall_time: when they were logged, seconds since the epoch.
      states: a `RecurrentStates` of read-only numpy arrays in their stored dtype;
        each layer's `grads` holds its gradients where the step was logged with a
        loss (float32), and is empty where it was not.
      series: name -> `[batch, time]` float32 array.
      tokens: `batch` lists of strings, or None.
      description: the description given when logging, or "".
    """

    run: str
    tag: str
    step: int
    wall_time: float
    states: states_lib.RecurrentStates
    series: Dict[str, np.ndarray]
    tokens: Optional[List[List[str]]]
    description: str = ""


def read_states(
    logdir: str,
    *,
    run: Optional[str] = None,
    tag: Optional[str] = None,
    steps: Union[int, Iterable[int], None] = None,
    strict: bool = False,
) -> Iterator[StatesRecord]:
    """Yields the states records of a logdir, run by run, in file order.

    Args:
      logdir: the directory TensorBoard would be given as `--logdir`, or a URL
        fsspec reads (`s3://bucket/exp`, `gs://...`, `memory://...`).
      run: only this run (`"."` for event files directly in `logdir`).
      tag: only this tag.
      steps: only this step, or these steps.
      strict: False (the default): a damaged record, array file or event file is
        skipped with a `CorruptRecordWarning` naming the file, byte offset and
        problem, a record of a newer version of this package with a
        `NewerVersionWarning`, and reading goes on, so every intact record is
        yielded. True: the first of them raises instead.

    Yields:
      `StatesRecord`s. A (run, tag, step) logged twice (a restarted run) is yielded
      twice, in the order written; TensorBoard shows the later one.

    Raises:
      FileNotFoundError: if `logdir` does not exist.
      CorruptRecordError: with `strict=True`, on the first damaged record or file.
      format.NewerVersionError: with `strict=True`, on a record written by a newer
        version of this package (upgrade tb-lstm-states).
    """
    logdir = os.fspath(logdir)
    fs = remote.filesystem(logdir) if remote.is_url(logdir) else None
    if not (os.path.isdir(logdir) if fs is None else fs.isdir(logdir)):
        raise FileNotFoundError("logdir %r is not a directory" % logdir)
    opener = open if fs is None else fs.open
    wanted_steps = _step_filter(steps)
    problems = _Problems(strict)
    for run_name, directory, paths in _runs(logdir) if fs is None else _remote_runs(fs, logdir):
        if run is not None and run_name != os.path.normpath(run):
            continue
        for path in paths:
            records = event_file.read_records(
                path, on_corrupt=problems.corrupt_record, opener=opener
            )
            while True:
                try:
                    offset, payload = next(records)
                except StopIteration:
                    break
                except (OSError, ValueError, MemoryError) as e:  # the file itself
                    problems.corrupt("%s: cannot be read: %s" % (path, _short(e)), e)
                    break
                yield from _decode(
                    run_name, directory, path, offset, payload, tag, wanted_steps, problems, opener
                )


class _Problems:
    """Warns about (or, strict, raises on) what a logdir holds that cannot be read."""

    def __init__(self, strict):
        self.strict = strict

    def corrupt(self, message, cause=None):
        if self.strict:
            raise CorruptRecordError(message) from cause
        warnings.warn("skipping a corrupt record: %s" % message, CorruptRecordWarning, stacklevel=5)

    def corrupt_record(self, error):
        self.corrupt(str(error), error)

    def newer(self, error):
        if self.strict:
            raise error
        warnings.warn("skipping a record: %s" % error, NewerVersionWarning, stacklevel=5)


def _short(error) -> str:
    text = str(error) or type(error).__name__
    return text if len(text) <= 500 else text[:500] + "..."


def _step_filter(steps):
    if steps is None:
        return None
    if isinstance(steps, numbers.Integral) and not isinstance(steps, bool):
        return {int(steps)}
    return {int(s) for s in steps}


def _runs(logdir):
    """`(run, directory, sorted event file paths)` of each run, runs in sorted order."""
    runs = []
    for directory, subdirectories, files in os.walk(logdir):
        subdirectories.sort()
        paths = sorted(os.path.join(directory, f) for f in files if "tfevents" in f)
        if paths:
            runs.append((os.path.relpath(directory, logdir), directory, paths))
    return sorted(runs)


def _remote_runs(fs, url):
    """`_runs` of a URL: run directories as URLs, event files as URLs."""
    root = fs._strip_protocol(url).rstrip("/")
    runs = []
    for directory, _, files in fs.walk(url):
        paths = sorted(
            fs.unstrip_protocol(directory.rstrip("/") + "/" + f) for f in files if "tfevents" in f
        )
        if paths:
            relative = directory.rstrip("/")[len(root) :].strip("/") or "."
            runs.append((relative, fs.unstrip_protocol(directory.rstrip("/")), paths))
    return sorted(runs)


def _peek_step(payload):
    """The step of a serialized Event without parsing it, or None if not found first.

    Writers serialize `wall_time` (field 1, fixed64) then `step` (field 2, varint)
    first, so a step filter can skip a large record without parsing its arrays.
    """
    if len(payload) < 11 or payload[0] != 0x09 or payload[9] != 0x10:
        return None
    step, shift = 0, 0
    for byte in payload[10:20]:
        step |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return step - (1 << 64) if step >= 1 << 63 else step
    return None


def _decode(run_name, directory, path, offset, payload, tag, wanted_steps, problems, opener=open):
    if wanted_steps is not None:
        step = _peek_step(payload)
        if step is not None and step not in wanted_steps:
            return
    try:
        event = event_pb2.Event.FromString(payload)
    except (message.DecodeError, RecursionError, ValueError, MemoryError) as e:
        problems.corrupt("%s byte %d: not an Event (%s)" % (path, offset, type(e).__name__), e)
        return
    if not event.HasField("summary"):
        return
    if wanted_steps is not None and event.step not in wanted_steps:
        return
    for value in event.summary.value:
        if tag is not None and value.tag != tag:
            continue
        plugin_data = value.metadata.plugin_data
        if plugin_data.plugin_name != metadata.PLUGIN_NAME:
            continue
        where = "%s byte %d: the record of tag %r at step %d" % (
            path,
            offset,
            value.tag[:200],
            event.step,
        )
        try:
            content = metadata.parse_plugin_content(plugin_data.content)
            role = content.get("role")
            if role == metadata.ROLE_INDEX:
                decoded = _decode_index(directory, value, event.step, opener)
            elif role == metadata.ROLE_STATES:
                decoded = legacy.decode_record(value.tensor.string_val)[:3]
            else:
                continue
        except format.NewerVersionError as e:
            problems.newer(format.NewerVersionError("%s: %s" % (where, e)))
            continue
        except (
            ValueError,
            OSError,
            RecursionError,
            MemoryError,
            KeyError,
            IndexError,
            TypeError,
            OverflowError,
        ) as e:
            # Anything a record's content can raise: that record is skipped, never the walk.
            problems.corrupt("%s: %s" % (where, _short(e)), e)
            continue
        states, series, tokens = decoded
        yield StatesRecord(
            run=run_name,
            tag=value.tag,
            step=event.step,
            wall_time=event.wall_time,
            states=states,
            series=series,
            tokens=tokens,
            description=value.metadata.summary_description,
        )


def _decode_index(directory, value, step, opener=open):
    """`(states, series, tokens)` of a version 2 step, read and checked from its file."""
    values = value.tensor.string_val
    if len(values) != 1:
        raise format.FormatError("malformed lstm_states index: %d strings" % len(values))
    index = format.parse_index(values[0])
    format.check_file_name(index, value.tag, step)
    if opener is open:
        path = os.path.join(directory, *format.PLUGIN_DIRECTORY, index["file"])
    else:
        path = remote.join(directory, *format.PLUGIN_DIRECTORY, index["file"])
    try:
        with opener(path, "rb") as f:
            size = event_file.file_size(f)
            if size < index["file_bytes"]:  # before any read is sized by the index
                raise format.FormatError(
                    "array file %s is shorter than its index says (%d of %d bytes: torn or "
                    "still being written)" % (index["file"], size, index["file_bytes"])
                )

            def read_range(offset, length):
                f.seek(offset)
                return f.read(max(0, min(length, size - offset)))

            metadata_fields = ranged.parse_file_header(read_range(0, index["header_bytes"]), index)
            tokens = ranged.parse_tokens(metadata_fields, index)
            crc_table = ranged.read_crc_table(read_range, index)
            arrays = {}
            for entry in index["arrays"]:
                key = entry["series"] if "series" in entry else (entry["layer"], entry["kind"])
                arrays[key] = ranged.read_array(read_range, index, crc_table, entry)
    except FileNotFoundError:
        raise format.FormatError("its array file %s is missing" % index["file"]) from None
    return _assemble(index, arrays), {n: arrays[n] for n in index["series"] if n in arrays}, tokens


def _assemble(index, arrays):
    kind = index["kind"]
    layers = []
    for entry in range(index["num_layers"] * index["num_directions"]):
        gates = {g: arrays[(entry, g)] for g in states_lib.GATE_NAMES[kind] if (entry, g) in arrays}
        grads = {
            gradients.state_of(g): arrays[(entry, g)]
            for g in gradients.kinds(kind)
            if (entry, g) in arrays
        }
        layers.append(
            states_lib.LayerStates(
                arrays[(entry, "hidden")], arrays.get((entry, "cell")), gates, grads
            )
        )
    return states_lib.RecurrentStates(
        kind=kind,
        layers=layers,
        lengths=np.asarray(index["lengths"], dtype=np.int64),
        num_directions=index["num_directions"],
    )
