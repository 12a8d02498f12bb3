"""Summary protos for states: the blob-sequence record and its statistics tensor."""

import numpy as np

from tensorboard.compat.proto import summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

from tb_lstm_states import codec, metadata, statistics, wire
from tb_lstm_states import states as states_lib


def _to_numpy(value):
    if value is None or type(value) is np.ndarray:
        return value
    if hasattr(value, "detach"):  # a torch tensor; avoid importing torch here
        value = value.detach()
        # numpy has no bfloat16, and the codec stores at most float32 anyway.
        if value.is_floating_point():
            value = value.float()
        return value.cpu().numpy()
    return np.asarray(value)


def to_numpy_states(recurrent_states):
    """Returns a copy of `recurrent_states` whose arrays are numpy arrays on the host."""
    layers = [
        states_lib.LayerStates(
            hidden=_to_numpy(layer.hidden),
            cell=_to_numpy(layer.cell),
            gates={name: _to_numpy(gate) for name, gate in layer.gates.items()},
        )
        for layer in recurrent_states.layers
    ]
    return states_lib.RecurrentStates(
        kind=recurrent_states.kind,
        layers=layers,
        lengths=_to_numpy(recurrent_states.lengths).astype(np.int64),
        num_directions=recurrent_states.num_directions,
    )


def _string_tensor(blobs):
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(blobs))]
        ),
        string_val=[bytes(memoryview(b).cast("B")) for b in blobs],
    )


def structure(recurrent_states):
    """The layout facts the tab lists without reading any blob."""
    return {
        "kind": recurrent_states.kind,
        "num_layers": recurrent_states.num_layers,
        "num_directions": recurrent_states.num_directions,
        "batch": recurrent_states.batch_size,
        "time": recurrent_states.time_steps,
        "units": {
            name: int(recurrent_states.layers[0].get(name).shape[2])
            for name in states_lib.array_kinds(recurrent_states.kind)
        },
    }


def statistics_value(tag, numpy_states):
    """The `Summary.Value` of the statistics tensor of a record."""
    table = statistics.record_statistics(numpy_states)
    value = _statistics_value_without_table(tag, numpy_states.kind, len(numpy_states.layers))
    value.tensor.tensor_content = table.astype("<f4").tobytes()
    return value


def statistics_value_template(tag, kind, num_entries):
    """The serialized statistics `Summary.Value` of a record, but for its table.

    Returns:
      `(prefix, table_bytes)`: `prefix + table.astype("<f4").tobytes()` is the
      serialized value of a `[len(rows), len(COLUMNS)]` table (what
      `statistics_value(...).SerializeToString()` parses to); `table_bytes` is the
      length the table must have. The same for every record of the same layout, so
      a writer builds it once.
    """
    value = _statistics_value_without_table(tag, kind, num_entries)
    tensor = value.tensor.SerializeToString()
    value.ClearField("tensor")
    table_bytes = 4 * len(statistics.rows(kind, num_entries)) * len(statistics.COLUMNS)
    # Value.tensor (field 8) last, holding TensorProto.tensor_content (field 4) last:
    # any field order parses to the same message.
    tensor += wire.length_delimited(4, table_bytes)
    prefix = value.SerializeToString() + wire.length_delimited(8, len(tensor) + table_bytes) + tensor
    return prefix, table_bytes


def _statistics_value_without_table(tag, kind, num_entries):
    table_rows = statistics.rows(kind, num_entries)
    content = {
        "states_tag": tag,
        "rows": table_rows,
        "columns": list(statistics.COLUMNS),
    }
    tensor = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d)
                 for d in (len(table_rows), len(statistics.COLUMNS))]
        ),
    )
    return summary_pb2.Summary.Value(
        tag=tag + metadata.STATISTICS_SUFFIX,
        metadata=metadata.create_summary_metadata(metadata.ROLE_STATISTICS, content=content),
        tensor=tensor,
    )


def states_value(tag, numpy_states, *, series=None, tokens=None, description=None, dtype="float16"):
    """The `Summary.Value` of the blob-sequence record of `numpy_states`."""
    blobs = codec.encode_record(numpy_states, series=series, tokens=tokens, dtype=dtype)
    return summary_pb2.Summary.Value(
        tag=tag,
        metadata=metadata.create_summary_metadata(
            metadata.ROLE_STATES, description=description, content=structure(numpy_states)
        ),
        tensor=_string_tensor(blobs),
    )


def states_pb(tag, states, *, series=None, tokens=None, description=None, dtype="float16"):
    """Builds a `Summary` with the states record of `tag` and its statistics.

    Args:
      tag: the name of the states in TensorBoard, e.g. `"encoder"`.
      states: a `RecurrentStates` (torch tensors or numpy arrays).
      series: optional dict of named `[batch, time]` numeric tracks aligned with time.
      tokens: optional `batch` lists of strings, one per timestep.
      description: optional Markdown shown in the tab.
      dtype: `"float16"` (default) or `"float32"`.

    Returns:
      A `tensorboard.compat.proto.summary_pb2.Summary` with two values: the record
      (a blob sequence under `tag`) and its statistics (a tensor).
    """
    if not isinstance(tag, str) or not tag:
        raise ValueError("tag must be a non-empty string, got %r" % (tag,))
    numpy_states = to_numpy_states(states)
    series = {name: _to_numpy(values) for name, values in (series or {}).items()}
    return summary_pb2.Summary(
        value=[
            states_value(tag, numpy_states, series=series, tokens=tokens,
                         description=description, dtype=dtype),
            statistics_value(tag, numpy_states),
        ]
    )
