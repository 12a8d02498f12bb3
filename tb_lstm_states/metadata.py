"""Plugin name and the versioned plugin data of the summaries this package writes.

Version 2 (this package) writes one summary per (tag, step), role `index`: a
`DT_STRING` scalar tensor holding the JSON index of the step's array file
(`storage/format.py`), with the layout (`kind`, `num_layers`, `num_directions`,
`batch`, `time`, `units`) in the plugin data so that listing needs no tensor.
Version 1 wrote role `states` (a blob sequence holding the arrays) and role
`statistics` (a tensor under `tag + STATISTICS_SUFFIX`); they are still read.
"""

import json

from tensorboard.compat.proto import summary_pb2

from tb_lstm_states.storage import format, jsonsafe

PLUGIN_NAME = "lstm_states"

# Bumped when a reader of an older version could misread a newer record.
PLUGIN_DATA_VERSION = 2

ROLE_INDEX = "index"
# Version 1's roles, read only.
ROLE_STATES = "states"
ROLE_STATISTICS = "statistics"

# The statistics summary of tag `t` is written under `t + STATISTICS_SUFFIX`.
STATISTICS_SUFFIX = "/_statistics"


def create_summary_metadata(role, *, description=None, content=None):
    """Builds the `SummaryMetadata` for a states or statistics summary.

    Args:
      role: `ROLE_INDEX` (a tensor), or version 1's `ROLE_STATES` (a blob
        sequence) or `ROLE_STATISTICS` (a tensor).
      description: optional Markdown shown in the tab.
      content: a JSON-serializable dict stored beside the version.

    Returns:
      A `summary_pb2.SummaryMetadata` with `data_class` set, which TensorBoard
      needs to keep third-party data at all.
    """
    payload = dict(content or {})
    payload.update(version=PLUGIN_DATA_VERSION, role=role)
    data_class = (
        summary_pb2.DATA_CLASS_BLOB_SEQUENCE
        if role == ROLE_STATES
        else summary_pb2.DATA_CLASS_TENSOR
    )
    return summary_pb2.SummaryMetadata(
        summary_description=description or "",
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=PLUGIN_NAME,
            content=json.dumps(payload, sort_keys=True).encode("utf-8"),
        ),
        data_class=data_class,
    )


def parse_plugin_content(content):
    """Parses plugin content bytes into a dict.

    Raises:
      ValueError: if the content is not a JSON object (of at most
        `format.MAX_PLUGIN_DATA_BYTES`, nested at most `format.MAX_JSON_DEPTH` deep),
        or its version is newer than this package understands (`NewerVersionError`:
        upgrade `tb-lstm-states` to read it).
    """
    try:
        payload = jsonsafe.parse_json(
            content, max_bytes=format.MAX_PLUGIN_DATA_BYTES, what="lstm_states plugin data"
        )
    except format.FormatError as e:
        raise format.FormatError("lstm_states plugin data is not JSON: %s" % e) from None
    if not isinstance(payload, dict):
        raise ValueError("lstm_states plugin data is not a JSON object")
    version = payload.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError("lstm_states plugin data has no integer version")
    if version > PLUGIN_DATA_VERSION:
        raise format.NewerVersionError(
            "lstm_states plugin data version %d is newer than this package "
            "understands (%d); upgrade tb-lstm-states" % (version, PLUGIN_DATA_VERSION)
        )
    return payload
