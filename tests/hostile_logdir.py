"""A hostile logdir: valid framing and checksums everywhere, crafted contents.

`build(root)` writes one run per case of issue 18's "Why" (besides a full disk,
which is the writer's), next to runs that must be served exactly as logged, and
returns a `Hostile` describing what each run must give. Every record is framed as
TensorBoard frames it (length, masked CRC32C of the length, payload, masked CRC32C
of the payload), so the loaders take it in, and only what it says is hostile.
"""

import dataclasses
import itertools
import json
import os
import secrets
import time
from typing import Dict, List, Tuple

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
from test_plugin_support import make_states

import tb_lstm_states as tls
from tb_lstm_states import metadata
from tb_lstm_states import states as states_lib
from tb_lstm_states.storage import event_file, format, legacy

PATHOLOGICAL_DESCRIPTION = "<a " * 50000  # 150 KB: minutes in the Markdown sanitizer

# Runs whose every step must be served exactly as logged, by name.
QUOTE_RUN, QUOTE_TAG = 'q"uote', 'ta"g'
ODD_V2_RUN, ODD_V2_TAG = "back\\slash ünï 状态", 'new\nline "q" \\ ../../up 🙂'
ODD_V1_RUN, ODD_V1_TAG = 'v1 q"uote\\back', 'ta"g\n../x ü'


@dataclasses.dataclass
class Hostile:
    """What `build` wrote.

    Attributes:
      root: the logdir.
      exact: `{(run, tag, step): RecurrentStates}` that must be served as logged.
      skipped: `{(run, tag)}` that `runs` must leave out (bad plugin data).
      refused: `{(run, tag, step)}` every data route must answer 4xx for.
      flipped: `{run: path}` runs whose largest file has bytes flipped in its middle:
        each step either 4xx or as logged (`exact` holds what was logged).
      wide: `(run, tag)` of a valid record with 4,000 units (the cubic-cost case).
      described: `(run, tag)` of the pathological description.
    """

    root: str
    exact: Dict[Tuple[str, str, int], states_lib.RecurrentStates]
    skipped: set
    refused: set
    flipped: Dict[str, str]
    wide: Tuple[str, str]
    described: Tuple[str, str]


_FILES = itertools.count()


class EventFile:
    """Appends framed events to one new event file of a run. Files sort in the order
    they are made (TensorBoard reads them in name order, and drops what a lower step
    in a later file seems to restart)."""

    def __init__(self, run_dir):
        os.makedirs(run_dir, exist_ok=True)
        self.path = os.path.join(
            run_dir,
            "events.out.tfevents.%010d.hostile.%08d.%s"
            % (time.time(), next(_FILES), secrets.token_hex(2)),
        )
        self.add(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def add(self, event):
        with open(self.path, "ab") as f:
            f.write(event_file.frame(event.SerializeToString()))

    def value(self, step, value, wall_time=None):
        self.add(
            event_pb2.Event(
                step=step,
                wall_time=time.time() if wall_time is None else wall_time,
                summary=summary_pb2.Summary(value=[value]),
            )
        )


def string_tensor(strings, shape):
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=n) for n in shape]
        ),
        string_val=list(strings),
    )


def raw_metadata(role, content_bytes, description=""):
    """Summary metadata whose plugin data is exactly `content_bytes` (any bytes)."""
    data_class = (
        summary_pb2.DATA_CLASS_BLOB_SEQUENCE
        if role == metadata.ROLE_STATES
        else summary_pb2.DATA_CLASS_TENSOR
    )
    return summary_pb2.SummaryMetadata(
        summary_description=description,
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=metadata.PLUGIN_NAME, content=content_bytes
        ),
        data_class=data_class,
    )


def structure(states):
    return dict(
        kind=states.kind,
        num_layers=states.num_layers,
        num_directions=states.num_directions,
        batch=states.batch_size,
        time=states.time_steps,
        units={
            k: int(states.layers[0].get(k).shape[2]) for k in states_lib.array_kinds(states.kind)
        },
    )


# ----------------------------------------------------------------------
# Version 1 records, as version 1 of this package wrote them.


def v1_header(states, arrays, changes):
    header = {
        "version": 1,
        "kind": states.kind,
        "num_layers": states.num_layers,
        "num_directions": states.num_directions,
        "batch": states.batch_size,
        "time": states.time_steps,
        "lengths": [int(n) for n in states.lengths],
        "series": [],
        "tokens": None,
        "arrays": arrays,
    }
    header.update(changes)
    return header


def v1_blobs(states, header_changes=None, header_bytes=None, blobs=None):
    """The blobs of a version 1 record: a header and the arrays (or `blobs`)."""
    arrays, arrays_blobs = [], []
    for i, layer in enumerate(states.layers):
        for kind in states_lib.array_kinds(states.kind):
            a = np.ascontiguousarray(layer.get(kind), "<f4")
            arrays.append({"layer": i, "kind": kind, "dtype": "float32", "shape": list(a.shape)})
            arrays_blobs.append(a.tobytes())
    blobs = arrays_blobs if blobs is None else blobs
    if header_bytes is None:
        header_bytes = json.dumps(v1_header(states, arrays, header_changes or {})).encode()
    return [legacy.HEADER_MAGIC + header_bytes, *blobs]


def write_v1(
    events,
    tag,
    step,
    states,
    *,
    content=None,
    header_changes=None,
    header_bytes=None,
    blobs=None,
    statistics_content=None,
    statistics=None,
):
    content = dict(structure(states), **(content or {}))
    payload = metadata.create_summary_metadata(metadata.ROLE_STATES, content=content)
    blobs = v1_blobs(states, header_changes, header_bytes, blobs)
    events.value(
        step,
        summary_pb2.Summary.Value(
            tag=tag, metadata=payload, tensor=string_tensor(blobs, [len(blobs)])
        ),
    )
    if statistics_content is not None:
        table = np.asarray(statistics, np.float32)
        tensor = tensor_pb2.TensorProto(
            dtype=types_pb2.DT_FLOAT,
            tensor_content=table.tobytes(),
            tensor_shape=tensor_shape_pb2.TensorShapeProto(
                dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=n) for n in table.shape]
            ),
        )
        events.value(
            step,
            summary_pb2.Summary.Value(
                tag=tag + metadata.STATISTICS_SUFFIX,
                metadata=metadata.create_summary_metadata(
                    metadata.ROLE_STATISTICS, content=statistics_content
                ),
                tensor=tensor,
            ),
        )


# ----------------------------------------------------------------------
# Version 2 records: written by StateWriter, then their index or plugin data crafted.


def v2_value(scratch, tag, step, states, **kwargs):
    """Writes one step with StateWriter into `scratch`; returns its index summary value
    (a copy to craft) and the array file's path."""
    with tls.StateWriter(scratch) as writer:
        writer.add_states(tag, states, step, **kwargs)
        path = writer.path
    for _, payload in event_file.read_records(path):
        event = event_pb2.Event.FromString(payload)
        for value in event.summary.value:
            if value.metadata.plugin_data.plugin_name == metadata.PLUGIN_NAME and value.tag == tag:
                index = format.parse_index(value.tensor.string_val[0])
                return value, os.path.join(scratch, *format.PLUGIN_DIRECTORY, index["file"])
    raise AssertionError("no index written")


def write_crafted_v2(
    run_dir, scratch, tag, step, states, *, index=None, content=None, index_bytes=None
):
    """A version 2 step whose index is changed by `index(dict)` (then sealed again, as a
    hostile writer would) or replaced by `index_bytes`, and/or whose plugin data is
    `content` (bytes)."""
    value, array_path = v2_value(scratch, tag, step, states, dtype="float32")
    target = os.path.join(run_dir, *format.PLUGIN_DIRECTORY)
    os.makedirs(target, exist_ok=True)
    os.replace(array_path, os.path.join(target, os.path.basename(array_path)))
    if index is not None:
        parsed = json.loads(value.tensor.string_val[0])
        del parsed[format.INDEX_SEAL_KEY]
        index(parsed)
        value.tensor.string_val[0] = format.seal_index(
            json.dumps(parsed, separators=(",", ":")).encode()
        )
    if index_bytes is not None:
        value.tensor.string_val[0] = index_bytes
    if content is not None:
        value.metadata.plugin_data.content = content
    EventFile(run_dir).value(step, value)


def flip_middle(path, count=16):
    """XORs `count` bytes in the middle of a file with 0xFF."""
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(size // 2)
        data = f.read(count)
        f.seek(size // 2)
        f.write(bytes(b ^ 0xFF for b in data))


def largest_file(run_dir):
    paths = [os.path.join(d, f) for d, _, files in os.walk(run_dir) for f in files]
    return max(paths, key=os.path.getsize)


# ----------------------------------------------------------------------


def build(root) -> Hostile:
    root = str(root)
    scratch_root = root + "-scratch"
    os.makedirs(scratch_root, exist_ok=True)
    counter = [0]

    def scratch():
        counter[0] += 1
        return os.path.join(scratch_root, str(counter[0]))

    def run(name):
        return os.path.join(root, name)

    exact, skipped, refused, flipped = {}, set(), set(), {}

    # Runs served exactly: version 2 and version 1, plain and odd names.
    with tls.StateWriter(run("good_v2")) as writer:
        for step in range(3):
            states = make_states(seed=step, lengths=[7, 5, 0])
            writer.add_states(
                "encoder", states, step, dtype="float32", description="States of a **good** run"
            )
            exact[("good_v2", "encoder", step)] = states
    events = EventFile(run("good_v1"))
    for step in range(2):
        states = make_states(seed=10 + step, layers=1)
        write_v1(events, "encoder", step, states)
        exact[("good_v1", "encoder", step)] = states
    for name, tag in ((QUOTE_RUN, QUOTE_TAG), (ODD_V2_RUN, ODD_V2_TAG)):
        with tls.StateWriter(run(name)) as writer:
            for step in range(2):
                states = make_states(seed=20 + step, layers=1)
                writer.add_states(tag, states, step, dtype="float32")
                exact[(name, tag, step)] = states
    events = EventFile(run(ODD_V1_RUN))
    for step in range(2):
        states = make_states(seed=30 + step, layers=1)
        write_v1(events, ODD_V1_TAG, step, states)
        exact[(ODD_V1_RUN, ODD_V1_TAG, step)] = states

    # 1. A description that takes minutes to render.
    with tls.StateWriter(run("described")) as writer:
        states = make_states(seed=40, layers=1)
        writer.add_states("t", states, 0, dtype="float32", description=PATHOLOGICAL_DESCRIPTION)
        exact[("described", "t", 0)] = states
    described = ("described", "t")

    # 2. Malformed records and plugin data (each beside an intact step where a tag can
    # hold both: the intact one must still be served).
    small = make_states(seed=50, layers=1)
    write_crafted_v2(
        run("deep_plugin_data"), scratch(), "t", 0, small, content=b"[" * 50000 + b"]" * 50000
    )
    skipped.add(("deep_plugin_data", "t"))
    write_crafted_v2(
        run("big_plugin_data"),
        scratch(),
        "t",
        0,
        small,
        content=b'{"version":2,"role":"index","pad":"' + b"x" * 200000 + b'"}',
    )
    skipped.add(("big_plugin_data", "t"))
    for name, field, bad in (
        ("unknown_kind_content", "kind", "transformer"),
        ("huge_layers_content", "num_layers", 10**9),
        ("huge_batch_content", "batch", 10**9),
        ("wrapping_units_content", "units", {"hidden": 1 << 62}),
    ):
        content = dict(structure(small), version=2, role="index", **{field: bad})
        write_crafted_v2(run(name), scratch(), "t", 0, small, content=json.dumps(content).encode())
        skipped.add((name, "t"))
    for name, kwargs in (
        ("deep_index", dict(index_bytes=b"[" * 100000)),
        ("unknown_kind_index", dict(index=lambda i: i.update(kind="transformer"))),
        ("huge_units_index", dict(index=lambda i: i["arrays"][0]["shape"].__setitem__(2, 1 << 24))),
        ("wrapping_shape_index", dict(index=lambda i: i.update(batch=1 << 32, time=1 << 32))),
        ("lying_lengths_index", dict(index=lambda i: i.update(lengths=[10**9] * 3))),
        ("statistics_index", dict(index=lambda i: i.update(statistics=[[0.0] * 5] * 2000))),
    ):
        run_dir = run(name)
        write_crafted_v2(run_dir, scratch(), "t", 0, small, **kwargs)
        # An intact step of the same tag, which must still be served.
        good = make_states(seed=51, layers=1)
        write_crafted_v2(run_dir, scratch(), "t", 1, good)
        exact[(name, "t", 1)] = good
        refused.add((name, "t", 0))
    events = EventFile(run("v1_malformed"))
    steps = [
        dict(header_bytes=b"[" * 100000),  # deep JSON
        dict(header_changes=dict(kind="transformer")),
        # A 2 KB record that claims 2**24 units (no timestep, so no bytes).
        dict(
            header_changes=dict(
                kind="rnn",
                batch=1,
                time=0,
                lengths=[0],
                arrays=[
                    {"layer": 0, "kind": "hidden", "dtype": "float32", "shape": [1, 0, 1 << 24]}
                ],
            ),
            blobs=[b""],
        ),
        # A shape of 2**64 values: 0 in int64 arithmetic.
        dict(
            header_changes=dict(
                kind="rnn",
                batch=1,
                time=1 << 32,
                lengths=[0],
                arrays=[
                    {
                        "layer": 0,
                        "kind": "hidden",
                        "dtype": "float32",
                        "shape": [1, 1 << 32, 1 << 32],
                    }
                ],
            ),
            blobs=[b""],
        ),
        dict(header_changes=dict(num_layers=10**9)),
        dict(header_changes=dict(batch=10**9)),
    ]
    for step, kwargs in enumerate(steps):
        write_v1(events, "t", step, small, **kwargs)
        refused.add(("v1_malformed", "t", step))
    good = make_states(seed=52, layers=1)
    write_v1(events, "t", len(steps), good)
    exact[("v1_malformed", "t", len(steps))] = good
    # A version 1 statistics table declared 2000 x 2000.
    events = EventFile(run("v1_statistics"))
    write_v1(
        events,
        "t",
        0,
        small,
        statistics_content={
            "columns": ["c%d" % i for i in range(2000)],
            "role": "statistics",
            "rows": [[0, "hidden"]] * 2000,
            "states_tag": "t",
            "version": 1,
        },
        statistics=[[0.0]],
    )
    exact[("v1_statistics", "t", 0)] = small

    # 3. Sizes: a valid record of 4,000 units (cubic cost in the old PCA and t-SNE).
    wide_states = make_states(kind="rnn", layers=1, batch=1, time=15, units=4000, seed=60)
    with tls.StateWriter(run("wide")) as writer:
        for step in range(2):
            writer.add_states("t", wide_states, step, dtype="float32")
            exact[("wide", "t", step)] = wide_states
    wide = ("wide", "t")

    # 4. Corruption: bytes flipped in the middle of each run's largest file.
    with tls.StateWriter(run("flipped_v2")) as writer:
        for step in range(3):
            states = make_states(seed=70 + step, layers=2, batch=4, time=300, units=64)
            writer.add_states("t", states, step, dtype="float32")
            exact[("flipped_v2", "t", step)] = states
    with tls.StateWriter(run("flipped_v2_event")) as writer:
        for step in range(12):
            states = make_states(seed=80 + step, layers=1, batch=2, time=3, units=2)
            writer.add_states("t", states, step, dtype="float32")
            exact[("flipped_v2_event", "t", step)] = states
    events = EventFile(run("flipped_v1"))
    for step in range(3):
        states = make_states(seed=90 + step, layers=1, batch=3, time=50, units=32)
        write_v1(events, "t", step, states)
        exact[("flipped_v1", "t", step)] = states
    for name in ("flipped_v2", "flipped_v1"):
        flipped[name] = largest_file(run(name))
        flip_middle(flipped[name])
    (event_path,) = [
        os.path.join(run("flipped_v2_event"), f)
        for f in os.listdir(run("flipped_v2_event"))
        if "tfevents" in f
    ]
    flipped["flipped_v2_event"] = event_path
    flip_middle(event_path)

    return Hostile(
        root=root,
        exact=exact,
        skipped=skipped,
        refused=refused,
        flipped=flipped,
        wide=wide,
        described=described,
    )


def stored(states, layer, kind):
    """The array as logged at float32 (how every run here was written)."""
    return np.asarray(states.layers[layer].get(kind), np.float32)


def routes_of(run, tag, step) -> List[Tuple[str, dict]]:
    """A query of every data route for one step."""
    base = dict(run=run, tag=tag)
    one = dict(base, step=step, layer=0, kind="hidden")
    return [
        ("states", dict(one, format="npy")),
        ("states", dict(one, sequence=0)),
        ("states", dict(one, sequence=0, bins=2)),
        ("series", dict(base, step=step)),
        ("changes", dict(one, sequence=0)),
        ("units", one),
        ("projection", dict(base, layer=0, kind="hidden", method="pca", steps=str(step))),
        ("steps", base),
        ("overview", base),
    ]
