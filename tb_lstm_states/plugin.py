"""The TensorBoard backend of the LSTM States tab.

`StatesLoader` is the `tensorboard_plugins` entry point. Before TensorBoard builds
its data provider, its `fix_flags` keeps every `lstm_states` step (TensorBoard keeps
10 blob-sequence steps per tag of a plugin it does not know) unless the user passed
`--samples_per_plugin lstm_states=N`, and lets the Python loader poll every event
file of a run (`--reload_multifile=true`) unless the user set that flag. It adds
one flag, `--lstm_states_cache_mb` (default 512): the memory for decoded arrays and
derived results.

`StatesPlugin` reads only through `context.data_provider`, so it works on both load
paths. Every route is a GET under `/data/plugin/lstm_states/`. `layer` is an index
into `RecurrentStates.layers`: `layer_index * directions + direction`, in
`[0, layers * directions)`. `kind` is `cell` (LSTM only), `hidden` or a gate name
(`input`, `forget`, `candidate`, `output` for LSTM; `reset`, `update`, `new` for
GRU). `sequence` indexes the probe batch. JSON numbers that are undefined or not
finite are `null`.

Errors: a missing, repeated or malformed parameter answers 400 with a plain-text
message that names it; an unknown run, tag, step, layer, kind or sequence (and a
record that cannot be decoded) answers 404.

Routes:

- `runs` -> `{run: {tag: {kind, layers, directions, batch, time, units, kinds,
  steps, first_step, last_step, description}}}`. `layers` is the module's
  `num_layers`, `directions` 1 or 2, `units` a dict array kind -> width (the
  `hidden` width differs from the others under `proj_size`), `kinds` the array kinds
  in stored order, `steps` how many steps are kept, `description` safe HTML.
- `steps?run=&tag=` -> `[{step, wall_time}]`, ascending. Always re-reads the
  provider: poll it to see new steps.
- `states?run=&tag=&step=&layer=&kind=[&sequence=][&format=npy]` -> one array,
  `[batch, time, units]`, or `[time, units]` with `sequence`. By default the body is
  raw little-endian **float32** (`application/octet-stream`) with headers
  `X-Shape: 8,250,80`, `X-Dtype: float32`, `X-Stored-Dtype: float16|float32` (what
  the record holds), `X-Lengths: 250,250,...` (valid timesteps of each sequence in
  the array), `X-Step`, `X-Wall-Time`. With `format=npy`: a `.npy` file
  (attachment) holding exactly the stored array, as `tls.read_states` returns it.
- `series?run=&tag=&step=` -> `{step, batch, time, lengths, series: {name:
  [[value per timestep] per sequence]}, tokens: [[str per timestep] per sequence] |
  null}`.
- `overview?run=&tag=` -> `{rows: [[layer, kind]], columns: ["mean_abs", "std",
  "saturated", "dead", "change"], steps: [int], wall_times: [float], values:
  [[[value per column] per row] per step]}` from the statistics summary (no blob
  is read). See `statistics.py` for the columns.
- `changes?run=&tag=&step=&layer=&kind=&sequence=[&threshold=3.5]` -> `{step, layer,
  kind, sequence, length, threshold, norm, cosine, zscore, anomalies, median, mad}`:
  per timestep `t < length` the norm of x_t - x_{t-1} (null at t=0), the cosine
  between that change and the previous one (null at t<2), the robust z-score of the
  norm; `anomalies` the timesteps whose z-score exceeds `threshold` (a positive
  number).
- `units?run=&tag=&step=&layer=&kind=` -> `{step, layer, kind, units, variance,
  saturation, activity, dead, period, period_strength, correlation: {series name:
  [per unit]}, order}`: per unit over all valid positions; `period` the lag in
  timesteps of the strongest autocorrelation peak (null if none); `order` a
  permutation of units from hierarchical clustering, to sort a heatmap by.
- `projection?run=&tag=&layer=&kind=&method=pca|tsne|umap[&steps=1,5,9][&sequence=0,3]`
  -> `{method, method_used, layer, kind, steps, sequences, lengths, offsets,
  coordinates, bounds, explained_variance}`. A point is one (step, sequence,
  timestep) with timestep < that sequence's length; step k's points are, for each
  sequence `sequences[i]`, its timesteps `0..lengths[k][i]-1`, and start at point
  `offsets[k]`. `coordinates` is flat `[x0, y0, x1, y1, ...]`; `bounds` is `[xmin,
  ymin, xmax, ymax]`. Layouts are aligned across steps: PCA on one basis fitted on
  all requested steps; t-SNE and UMAP each step initialised from the previous
  step's layout (UMAP's then moved onto the previous layout by a similarity
  transform, as UMAP rescales its start). `steps` and `sequence` take
  comma-separated lists (default: all sequences; all steps, or if they exceed the
  cap, evenly spaced steps that fit, always with the last). Points per request are
  capped (`PROJECTION_CAPS`: pca 250,000; tsne 25,000 in all and 3,000 per step;
  umap 25,000 and 10,000 per step); an explicit request over the cap answers 400
  naming the cap. `method_used` is `pca` when a step has fewer than 5 points.
  `explained_variance` (PCA only, else null) gives the fraction of variance on each
  axis. Coordinates are rounded to 1e-3 of the power of ten of the largest one.
  Results are cached: t-SNE takes seconds per step, so show progress.
- `index.js` and any other file of `tb_lstm_states/static/` by its relative path:
  `.js` as `text/javascript`.
"""

import contextlib
import io
import json
import math
import os
import re
import threading
import time
from concurrent import futures
from typing import Dict, Optional

import numpy as np
from werkzeug import wrappers

from tensorboard import errors, plugin_util
from tensorboard.backend import http_util
from tensorboard.backend.event_processing import data_provider as data_provider_lib
from tensorboard.data import provider
from tensorboard.plugins import base_plugin
from tensorboard.util import tb_logging

from tb_lstm_states import analysis, cache, codec, metadata
from tb_lstm_states import states as states_lib

logger = tb_logging.get_logger()

DEFAULT_CACHE_MB = 512
# What "all steps" means to a provider: a sampling hint of 0 would return none.
ALL_STEPS = 1 << 30
# How long a listing of a tag's steps serves `states` and friends before it is
# re-read. `steps` and `runs` always re-read.
INDEX_MAX_AGE_SECONDS = 2.0

PROJECTION_CAPS = {
    # method: (points per request, points per step)
    "pca": (250_000, 250_000),
    "tsne": (25_000, 3_000),
    "umap": (25_000, 10_000),
}

# Shared by every plugin instance (TensorBoard makes one); threads start on first use.
# Tasks of one pool never wait on tasks of the same pool, so neither can deadlock.
_REQUEST_POOL = futures.ThreadPoolExecutor(8, thread_name_prefix="lstm_states")
_PREFETCH_POOL = futures.ThreadPoolExecutor(8, thread_name_prefix="lstm_states_prefetch")

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
_STATIC_TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".json": "application/json",
    ".map": "application/json",
    ".wasm": "application/wasm",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}
_STATIC_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_INTEGER = re.compile(r"-?[0-9]{1,19}")
_INT64_MAX = (1 << 63) - 1
_ROUTE_PREFIX = "/data/plugin/%s/" % metadata.PLUGIN_NAME


class StatesLoader(base_plugin.TBLoader):
    """Loads `StatesPlugin` after adjusting the flags it needs."""

    def define_flags(self, parser):
        group = parser.add_argument_group(metadata.PLUGIN_NAME)
        group.add_argument(
            "--lstm_states_cache_mb",
            metavar="MB",
            type=int,
            default=DEFAULT_CACHE_MB,
            help="Memory for decoded lstm_states arrays and derived views "
            "(projections, unit statistics), in MiB. (default: %(default)s)",
        )

    def fix_flags(self, flags):
        """Keeps every `lstm_states` step and polls every event file, unless set."""
        samples = getattr(flags, "samples_per_plugin", None)
        if isinstance(samples, dict):
            # 0 means "keep all" to both loaders; a user's own value wins.
            samples.setdefault(metadata.PLUGIN_NAME, 0)
        elif not samples:
            flags.samples_per_plugin = {metadata.PLUGIN_NAME: 0}
        if getattr(flags, "reload_multifile", None) is None:
            # Training writes a StateWriter file beside the SummaryWriter's; the
            # Python loader would otherwise poll only the newest of them.
            flags.reload_multifile = True
        cache_mb = getattr(flags, "lstm_states_cache_mb", DEFAULT_CACHE_MB)
        if not isinstance(cache_mb, int) or cache_mb < 0:
            raise base_plugin.FlagsError(
                "--lstm_states_cache_mb must be a non-negative integer, got %r" % (cache_mb,)
            )

    def load(self, context):
        flags = context.flags
        cache_mb = getattr(flags, "lstm_states_cache_mb", DEFAULT_CACHE_MB) if flags else DEFAULT_CACHE_MB
        return StatesPlugin(context, cache_bytes=int(cache_mb) << 20)


class _TagIndex:
    """The steps of one (run, tag) as the provider listed them, and their structure."""

    def __init__(self, structure, description, data, fetched):
        self.structure = structure
        self.description = description
        self.data = data  # BlobSequenceDatum, ascending steps
        self.by_step = {datum.step: datum for datum in data}
        self.fetched = fetched


class StatesPlugin(base_plugin.TBPlugin):
    """Serves recorded recurrent states and views derived from them."""

    plugin_name = metadata.PLUGIN_NAME

    def __init__(self, context, *, cache_bytes: Optional[int] = None):
        """Creates the plugin.

        Args:
          context: a `base_plugin.TBContext`; only its `data_provider` and
            `sampling_hints` are used.
          cache_bytes: the budget of the array and result cache (default 512 MiB).
        """
        self._data_provider = context.data_provider
        hint = (context.sampling_hints or {}).get(self.plugin_name)
        self._downsample = hint if isinstance(hint, int) and hint > 0 else ALL_STEPS
        if cache_bytes is None:
            cache_bytes = DEFAULT_CACHE_MB << 20
        # Headers (small, needed by every request) get their own slice of the
        # budget, so that large arrays never evict them.
        header_bytes = min(max(cache_bytes // 16, 1 << 20), cache_bytes // 2)
        self.headers = cache.ByteBoundedCache(header_bytes)
        self.cache = cache.ByteBoundedCache(cache_bytes - header_bytes)
        self._indexes: Dict[tuple, _TagIndex] = {}
        self._indexes_lock = threading.Lock()
        self._prefetching = set()
        # The Rust data server answers a small blob only after ~40 ms (a TCP
        # delayed-ACK stall) but serves many at once; so blobs are read in parallel:
        # headers ahead of need, and a header beside its array. The in-process
        # provider copies a whole record to read any blob of it: no read-ahead there.
        self._read_ahead = not isinstance(
            self._data_provider, data_provider_lib.MultiplexerDataProvider)
        self._request_pool = _REQUEST_POOL
        self._prefetch_pool = _PREFETCH_POOL

    def get_plugin_apps(self):
        return {
            "/runs": self._serve_runs,
            "/steps": self._serve_steps,
            "/states": self._serve_states,
            "/series": self._serve_series,
            "/overview": self._serve_overview,
            "/changes": self._serve_changes,
            "/units": self._serve_units,
            "/projection": self._serve_projection,
            "/index.js": self._serve_static,
            # Exact routes win over this catch-all: other bundle files (workers,
            # chunks) are fetched relative to index.js.
            "/*": self._serve_static,
        }

    def is_active(self):
        return False  # TensorBoard enables the tab from `list_plugins`

    def frontend_metadata(self):
        return base_plugin.FrontendMetadata(es_module_path="/index.js", tab_name="LSTM States")

    # ------------------------------------------------------------------
    # Reading through the data provider.

    def _tag_index(self, ctx, experiment, run, tag, *, max_age=INDEX_MAX_AGE_SECONDS):
        key = (experiment, run, tag)
        now = time.monotonic()
        with self._indexes_lock:
            index = self._indexes.get(key)
        if index is not None and now - index.fetched <= max_age:
            return index
        run_tag_filter = provider.RunTagFilter(runs=[run], tags=[tag])
        if index is not None:
            # TensorBoard keeps a tag's first metadata, so only the steps can have
            # changed: skip the listing (on the data server, a ~40 ms small reply).
            data = self._data_provider.read_blob_sequences(
                ctx, experiment_id=experiment, plugin_name=self.plugin_name,
                downsample=self._downsample, run_tag_filter=run_tag_filter,
            ).get(run, {}).get(tag)
            if data is not None:
                return self._store_index(ctx, experiment, run, tag, _TagIndex(
                    index.structure, index.description, sorted(data, key=lambda d: d.step), now))
        listing = self._data_provider.list_blob_sequences(
            ctx, experiment_id=experiment, plugin_name=self.plugin_name,
            run_tag_filter=run_tag_filter,
        )
        series = listing.get(run, {}).get(tag)
        if series is None:
            self._raise_unknown(ctx, experiment, run, tag)
        try:
            content = metadata.parse_plugin_content(series.plugin_content)
        except ValueError as e:
            raise errors.NotFoundError("run %r tag %r: %s" % (run, tag, e))
        structure = _structure(content)
        if structure is None:
            raise errors.NotFoundError(
                "run %r tag %r is not an lstm_states record (role %r)" % (run, tag, content.get("role"))
            )
        data = self._data_provider.read_blob_sequences(
            ctx, experiment_id=experiment, plugin_name=self.plugin_name,
            downsample=self._downsample, run_tag_filter=run_tag_filter,
        ).get(run, {}).get(tag, [])
        index = _TagIndex(structure, series.description, sorted(data, key=lambda d: d.step), now)
        return self._store_index(ctx, experiment, run, tag, index)

    def _store_index(self, ctx, experiment, run, tag, index):
        with self._indexes_lock:
            self._indexes[(experiment, run, tag)] = index
        if self._read_ahead:
            for datum in index.data:
                key = self._header_key(experiment, run, tag, datum)
                with self._indexes_lock:
                    if key in self._prefetching or self.headers.get(key) is not None:
                        continue
                    self._prefetching.add(key)
                self._prefetch_pool.submit(self._prefetch_header, ctx, experiment, run, tag, datum, key)
        return index

    def _prefetch_header(self, ctx, experiment, run, tag, datum, key):
        try:
            self._header(ctx, experiment, run, tag, datum)
        except Exception:  # pylint: disable=broad-except
            pass  # the request that needs this header will read it and report
        finally:
            with self._indexes_lock:
                self._prefetching.discard(key)

    def _raise_unknown(self, ctx, experiment, run, tag):
        runs = self._data_provider.list_blob_sequences(
            ctx, experiment_id=experiment, plugin_name=self.plugin_name,
            run_tag_filter=provider.RunTagFilter(runs=[run]),
        )
        if run not in runs:
            raise errors.NotFoundError("no run %r with lstm_states data" % (run,))
        raise errors.NotFoundError("run %r has no lstm_states tag %r" % (run, tag))

    def _datum(self, ctx, experiment, run, tag, step):
        index = self._tag_index(ctx, experiment, run, tag)
        datum = index.by_step.get(step)
        if datum is None:  # perhaps written since the listing: list again
            index = self._tag_index(ctx, experiment, run, tag, max_age=0.0)
            datum = index.by_step.get(step)
        if datum is None:
            span = "no steps" if not index.data else "steps %d to %d" % (
                index.data[0].step, index.data[-1].step)
            raise errors.NotFoundError(
                "run %r tag %r has no step %d (it has %d: %s)" % (run, tag, step, len(index.data), span)
            )
        return index, datum

    def _read_blob(self, ctx, datum, position):
        return self._data_provider.read_blob(ctx, blob_key=datum.values[position].blob_key)

    @staticmethod
    def _header_key(experiment, run, tag, datum):
        return (experiment, run, tag, datum.step, datum.wall_time)

    def _header(self, ctx, experiment, run, tag, datum):
        key = self._header_key(experiment, run, tag, datum)

        def load():
            if not datum.values:
                raise codec.RecordError("malformed lstm_states record: no blobs")
            header = codec.decode_header(self._read_blob(ctx, datum, 0))
            if len(datum.values) != len(header["arrays"]) + 1:
                raise codec.RecordError(
                    "malformed lstm_states record: %d blobs, its header describes %d"
                    % (len(datum.values), len(header["arrays"]) + 1)
                )
            return header

        return self._record_call(run, tag, datum, lambda: self.headers.get_or_compute(key, load))

    def _blob_array(self, ctx, experiment, run, tag, datum, header, position, blob=None):
        key = ("array", experiment, run, tag, datum.step, datum.wall_time, position)

        def load():
            data = blob if blob is not None else self._read_blob(ctx, datum, position)
            return codec.decode_array(header, position, data)

        return self._record_call(run, tag, datum, lambda: self.cache.get_or_compute(key, load))

    @staticmethod
    def _record_call(run, tag, datum, call):
        try:
            return call()
        except codec.RecordError as e:
            # The logdir's fault, not the request's; but never a 500.
            raise errors.NotFoundError("run %r tag %r step %d: %s" % (run, tag, datum.step, e))

    def _state_array(self, ctx, experiment, run, tag, step, layer, kind):
        """Returns `(header, datum, array)` for one layer and kind of one step."""
        index, datum = self._datum(ctx, experiment, run, tag, step)
        header = self.headers.get(self._header_key(experiment, run, tag, datum))
        guess = blob = None
        if header is None and self._read_ahead:
            # Read the header and, where the record is laid out as the codec writes
            # it, the array at the same time; the header then confirms the guess.
            guess = _array_position(index.structure, layer, kind)
            pending = self._request_pool.submit(self._header, ctx, experiment, run, tag, datum)
            if guess is not None and guess < len(datum.values):
                with contextlib.suppress(errors.PublicError):
                    blob = self._read_blob(ctx, datum, guess)
            header = pending.result()
        else:
            header = self._header(ctx, experiment, run, tag, datum)
        position = _locate(header, run, tag, step, layer, kind)
        blob = blob if position == guess else None
        return header, datum, self._blob_array(ctx, experiment, run, tag, datum, header, position, blob)

    # ------------------------------------------------------------------
    # Routes: parse and validate, then call an `*_impl` method.

    @wrappers.Request.application
    def _serve_runs(self, request):
        ctx, experiment = _context(request)
        return _json(request, self.runs_impl(ctx, experiment))

    def runs_impl(self, ctx, experiment):
        listing = self._data_provider.list_blob_sequences(
            ctx, experiment_id=experiment, plugin_name=self.plugin_name)
        data = self._data_provider.read_blob_sequences(
            ctx, experiment_id=experiment, plugin_name=self.plugin_name, downsample=self._downsample)
        result = {}
        for run, tags in listing.items():
            for tag, series in tags.items():
                try:
                    structure = _structure(metadata.parse_plugin_content(series.plugin_content))
                except ValueError as e:
                    logger.warning("lstm_states: skipping run %r tag %r: %s", run, tag, e)
                    continue
                if structure is None:
                    continue
                steps = [datum.step for datum in data.get(run, {}).get(tag, [])]
                result.setdefault(run, {})[tag] = dict(
                    structure,
                    steps=len(steps),
                    first_step=min(steps) if steps else None,
                    last_step=max(steps) if steps else None,
                    description=plugin_util.markdown_to_safe_html(series.description),
                )
        return result

    @wrappers.Request.application
    def _serve_steps(self, request):
        ctx, experiment = _context(request)
        args = _Args(request)
        run, tag = args.string("run"), args.string("tag")
        return _json(request, self.steps_impl(ctx, experiment, run, tag))

    def steps_impl(self, ctx, experiment, run, tag):
        index = self._tag_index(ctx, experiment, run, tag, max_age=0.0)
        return [{"step": d.step, "wall_time": d.wall_time} for d in index.data]

    @wrappers.Request.application
    def _serve_states(self, request):
        ctx, experiment = _context(request)
        args = _Args(request)
        run, tag = args.string("run"), args.string("tag")
        step = args.integer("step")
        layer = args.integer("layer", minimum=0)
        kind = args.string("kind")
        sequence = args.integer("sequence", minimum=0, required=False)
        fmt = args.choice("format", ("binary", "npy"), default="binary")
        header, datum, array = self.states_impl(ctx, experiment, run, tag, step, layer, kind, sequence)
        lengths = header["lengths"] if sequence is None else [header["lengths"][sequence]]
        if fmt == "npy":
            body = io.BytesIO()
            np.save(body, array, allow_pickle=False)
            name = "%s_%s_step%d_layer%d_%s.npy" % (run, tag, step, layer, kind)
            if sequence is not None:
                name = name[:-4] + "_sequence%d.npy" % sequence
            name = re.sub(r"[^A-Za-z0-9._-]", "_", name)[-200:]
            return http_util.Respond(
                request, body.getvalue(), "application/octet-stream",
                headers=[("Content-Disposition", 'attachment; filename="%s"' % name)],
            )
        body = np.ascontiguousarray(array, dtype="<f4").tobytes()
        headers = [
            ("X-Shape", ",".join(str(d) for d in array.shape)),
            ("X-Dtype", "float32"),
            ("X-Stored-Dtype", str(array.dtype.name)),
            ("X-Lengths", ",".join(str(n) for n in lengths)),
            ("X-Step", str(datum.step)),
            ("X-Wall-Time", repr(float(datum.wall_time))),
        ]
        return http_util.Respond(request, body, "application/octet-stream", headers=headers)

    def states_impl(self, ctx, experiment, run, tag, step, layer, kind, sequence=None):
        """Returns `(header, datum, array)`: the stored array, or one sequence of it."""
        header, datum, array = self._state_array(ctx, experiment, run, tag, step, layer, kind)
        if sequence is not None:
            _check_sequence(header, sequence, run, tag)
            array = array[sequence]
        return header, datum, array

    @wrappers.Request.application
    def _serve_series(self, request):
        ctx, experiment = _context(request)
        args = _Args(request)
        run, tag, step = args.string("run"), args.string("tag"), args.integer("step")
        return _json(request, self.series_impl(ctx, experiment, run, tag, step))

    def series_impl(self, ctx, experiment, run, tag, step):
        _, datum = self._datum(ctx, experiment, run, tag, step)
        header = self._header(ctx, experiment, run, tag, datum)
        series = {}
        for name in header["series"]:
            position = codec.find_array(header, series=name)
            array = self._blob_array(ctx, experiment, run, tag, datum, header, position)
            series[name] = _floats(array)
        return {
            "step": datum.step,
            "batch": header["batch"],
            "time": header["time"],
            "lengths": header["lengths"],
            "series": series,
            "tokens": header["tokens"],
        }

    @wrappers.Request.application
    def _serve_overview(self, request):
        ctx, experiment = _context(request)
        args = _Args(request)
        run, tag = args.string("run"), args.string("tag")
        return _json_bytes(request, self.overview_impl(ctx, experiment, run, tag))

    def overview_impl(self, ctx, experiment, run, tag):
        """Returns the encoded JSON of the `overview` route (cached per listing)."""
        statistics_tag = tag + metadata.STATISTICS_SUFFIX
        run_tag_filter = provider.RunTagFilter(runs=[run], tags=[statistics_tag])
        listing = self._data_provider.list_tensors(
            ctx, experiment_id=experiment, plugin_name=self.plugin_name, run_tag_filter=run_tag_filter)
        series = listing.get(run, {}).get(statistics_tag)
        if series is None:
            self._tag_index(ctx, experiment, run, tag)  # 404 naming the run or tag, if unknown
            raise errors.NotFoundError("run %r tag %r has no statistics summary" % (run, tag))
        try:
            content = metadata.parse_plugin_content(series.plugin_content)
        except ValueError as e:
            raise errors.NotFoundError("run %r tag %r statistics: %s" % (run, tag, e))
        rows, columns = content.get("rows"), content.get("columns")
        if (content.get("role") != metadata.ROLE_STATISTICS or not isinstance(rows, list)
                or not isinstance(columns, list)):
            raise errors.NotFoundError("run %r tag %r statistics are malformed" % (run, tag))
        data = self._data_provider.read_tensors(
            ctx, experiment_id=experiment, plugin_name=self.plugin_name,
            downsample=self._downsample, run_tag_filter=run_tag_filter,
        ).get(run, {}).get(statistics_tag, [])
        key = ("overview", experiment, run, tag, tuple((d.step, d.wall_time) for d in data))
        return self.cache.get_or_compute(key, lambda: _encode(self._overview(rows, columns, data)))

    @staticmethod
    def _overview(rows, columns, data):
        shape = (len(rows), len(columns))
        values = []
        for datum in data:
            table = np.asarray(datum.numpy)
            if table.shape != shape or not np.issubdtype(table.dtype, np.number):
                table = np.full(shape, np.nan)
            values.append(table)
        stacked = np.stack(values) if values else np.zeros((0,) + shape)
        return {
            "rows": rows,
            "columns": columns,
            "steps": [d.step for d in data],
            "wall_times": [d.wall_time for d in data],
            # Six significant digits: plenty for a plot, and a third of the JSON.
            "values": _floats(stacked, significant=6),
        }

    @wrappers.Request.application
    def _serve_changes(self, request):
        ctx, experiment = _context(request)
        args = _Args(request)
        run, tag = args.string("run"), args.string("tag")
        step = args.integer("step")
        layer = args.integer("layer", minimum=0)
        kind = args.string("kind")
        sequence = args.integer("sequence", minimum=0)
        threshold = args.positive_float("threshold", default=analysis.DEFAULT_THRESHOLD)
        body = self.changes_impl(ctx, experiment, run, tag, step, layer, kind, sequence, threshold)
        return _json_bytes(request, body)

    def changes_impl(self, ctx, experiment, run, tag, step, layer, kind, sequence, threshold):
        """Returns the encoded JSON of the `changes` route (cached)."""
        header, datum, array = self._state_array(ctx, experiment, run, tag, step, layer, kind)
        _check_sequence(header, sequence, run, tag)
        key = ("changes", experiment, run, tag, datum.step, datum.wall_time, layer, kind, sequence, threshold)

        def compute():
            length = header["lengths"][sequence]
            result = analysis.changes(array[sequence], length, threshold)
            return _encode({
                "step": datum.step, "layer": layer, "kind": kind, "sequence": sequence,
                "length": length, "threshold": threshold,
                "norm": _floats(result["norm"]), "cosine": _floats(result["cosine"]),
                "zscore": _floats(result["zscore"]),
                "anomalies": [int(t) for t in result["anomalies"]],
                "median": _float(result["median"]), "mad": _float(result["mad"]),
            })

        return self.cache.get_or_compute(key, compute)

    @wrappers.Request.application
    def _serve_units(self, request):
        ctx, experiment = _context(request)
        args = _Args(request)
        run, tag = args.string("run"), args.string("tag")
        step = args.integer("step")
        layer = args.integer("layer", minimum=0)
        kind = args.string("kind")
        return _json_bytes(request, self.units_impl(ctx, experiment, run, tag, step, layer, kind))

    def units_impl(self, ctx, experiment, run, tag, step, layer, kind):
        """Returns the encoded JSON of the `units` route (cached)."""
        header, datum, array = self._state_array(ctx, experiment, run, tag, step, layer, kind)
        key = ("units", experiment, run, tag, datum.step, datum.wall_time, layer, kind)

        def compute():
            series = {}
            for name in header["series"]:
                position = codec.find_array(header, series=name)
                series[name] = self._blob_array(ctx, experiment, run, tag, datum, header, position)
            with _single_threaded_blas():
                result = analysis.unit_statistics(array, kind, header["lengths"], series)
            return _encode({
                "step": datum.step, "layer": layer, "kind": kind, "units": int(array.shape[2]),
                "variance": _floats(result["variance"]),
                "saturation": _floats(result["saturation"]),
                "activity": _floats(result["activity"]),
                "dead": [bool(d) for d in result["dead"]],
                "period": _floats(result["period"]),
                "period_strength": _floats(result["period_strength"]),
                "correlation": {k: _floats(v) for k, v in result["correlation"].items()},
                "order": [int(u) for u in result["order"]],
            })

        return self.cache.get_or_compute(key, compute)

    @wrappers.Request.application
    def _serve_projection(self, request):
        ctx, experiment = _context(request)
        args = _Args(request)
        run, tag = args.string("run"), args.string("tag")
        layer = args.integer("layer", minimum=0)
        kind = args.string("kind")
        method = args.choice("method", analysis.METHODS)
        steps = args.integer_list("steps", required=False)
        sequences = args.integer_list("sequence", required=False, minimum=0)
        body = self.projection_impl(ctx, experiment, run, tag, layer, kind, method, steps, sequences)
        return _json_bytes(request, body)

    def projection_impl(self, ctx, experiment, run, tag, layer, kind, method, steps=None, sequences=None):
        """Returns the encoded JSON of the `projection` route (cached).

        Args:
          steps: the steps to lay out, or None for the default choice.
          sequences: the sequence indices, or None for all.
        """
        if method == "umap" and not analysis.umap_available():
            raise errors.InvalidArgumentError(
                "method=umap needs the umap-learn package: pip install 'tb-lstm-states[umap]'"
            )
        total_cap, step_cap = PROJECTION_CAPS[method]
        if steps is None:
            index = self._tag_index(ctx, experiment, run, tag, max_age=0.0)
            if not index.data:
                raise errors.NotFoundError("run %r tag %r has no steps" % (run, tag))
            chosen = [d.step for d in index.data]
        else:
            chosen = sorted(set(steps))
        data = [self._datum(ctx, experiment, run, tag, s)[1] for s in chosen]
        headers = list(self._request_pool.map(
            lambda datum: self._header(ctx, experiment, run, tag, datum), data))
        if sequences is not None:
            sequences = sorted(set(sequences))
            for header in headers:
                for sequence in sequences:
                    _check_sequence(header, sequence, run, tag)
        per_step = [
            sum(h["lengths"][b] for b in (sequences if sequences is not None else range(h["batch"])))
            for h in headers
        ]
        largest = max(per_step) if per_step else 0
        if largest > step_cap:
            raise errors.InvalidArgumentError(
                "projection with method=%s is capped at %d points per step; a step here has %d "
                "(sequences x valid timesteps): choose fewer sequences with sequence="
                % (method, step_cap, largest)
            )
        if sum(per_step) > total_cap:
            if steps is not None:
                raise errors.InvalidArgumentError(
                    "projection with method=%s is capped at %d points per request; steps=%s "
                    "asks for %d: request fewer steps (steps=) or sequences (sequence=)"
                    % (method, total_cap, _abbreviate(chosen), sum(per_step))
                )
            keep = _evenly_spaced(len(data), max(total_cap // max(largest, 1), 1))
            data = [data[i] for i in keep]
            headers = [headers[i] for i in keep]
        key = ("projection", experiment, run, tag, layer, kind, method,
               tuple((d.step, d.wall_time) for d in data),
               None if sequences is None else tuple(sequences))

        def compute():
            try:
                return self._projection(ctx, experiment, run, tag, layer, kind, method, data, headers, sequences)
            finally:
                _release_free_memory()

        return self.cache.get_or_compute(key, compute)

    def _projection(self, ctx, experiment, run, tag, layer, kind, method, data, headers, sequences):
        positions = [_locate(h, run, tag, d.step, layer, kind) for d, h in zip(data, headers)]
        arrays = list(self._request_pool.map(
            lambda args: self._blob_array(ctx, experiment, run, tag, *args),
            zip(data, headers, positions)))
        points, keys, lengths = [], [], []
        for header, array in zip(headers, arrays):
            chosen = sequences if sequences is not None else list(range(header["batch"]))
            step_lengths = [header["lengths"][b] for b in chosen]
            rows = [array[b, :n] for b, n in zip(chosen, step_lengths)]
            time_steps = array.shape[1]
            points.append(np.concatenate(rows, axis=0) if rows else np.zeros((0, array.shape[2]), array.dtype))
            keys.append(np.concatenate(
                [b * time_steps + np.arange(n) for b, n in zip(chosen, step_lengths)]
            ).astype(np.int64) if rows else np.zeros(0, np.int64))
            lengths.append(step_lengths)
        with _single_threaded_blas():
            result = analysis.project(method, points, keys)
        coordinates = result["coordinates"]
        flat = np.concatenate(coordinates, axis=0) if coordinates else np.zeros((0, 2), np.float32)
        flat = np.nan_to_num(flat.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        offsets = np.concatenate([[0], np.cumsum([len(c) for c in coordinates])[:-1]]).astype(int)
        if len(flat):
            bounds = [float(flat[:, 0].min()), float(flat[:, 1].min()),
                      float(flat[:, 0].max()), float(flat[:, 1].max())]
        else:
            bounds = [0.0, 0.0, 0.0, 0.0]
        return _encode({
            "method": method,
            "method_used": result["method_used"],
            "layer": layer,
            "kind": kind,
            "steps": [d.step for d in data],
            "sequences": sequences if sequences is not None else list(range(headers[0]["batch"] if headers else 0)),
            "lengths": lengths,
            "offsets": [int(o) for o in offsets] if coordinates else [],
            "coordinates": _rounded_relative(flat.ravel()),
            "bounds": bounds,
            "explained_variance": result.get("explained_variance"),
        })

    @wrappers.Request.application
    def _serve_static(self, request):
        path = request.path
        position = path.find(_ROUTE_PREFIX)
        relative = path[position + len(_ROUTE_PREFIX):] if position >= 0 else ""
        content_type, body = self.static_impl(relative)
        return http_util.Respond(request, body, content_type)

    def static_impl(self, relative):
        """Returns `(content_type, bytes)` of a file of the static bundle.

        Only plain names of known types inside `STATIC_DIR` are served: no `..`,
        no hidden files, no links out of the directory.
        """
        parts = relative.split("/")
        ext = os.path.splitext(relative)[1].lower()
        if (not relative or not all(_STATIC_NAME.fullmatch(p) for p in parts)
                or ext not in _STATIC_TYPES):
            raise errors.NotFoundError("no static file %r" % (relative,))
        root = os.path.realpath(STATIC_DIR)
        full = os.path.realpath(os.path.join(root, *parts))
        if os.path.commonpath([root, full]) != root or not os.path.isfile(full):
            raise errors.NotFoundError("no static file %r" % (relative,))
        with open(full, "rb") as f:
            return _STATIC_TYPES[ext], f.read()


# ----------------------------------------------------------------------
# Helpers.


def _structure(content):
    """The `runs` entry of a states tag from its plugin content, or None if not states."""
    if content.get("role") != metadata.ROLE_STATES:
        return None
    kind = content.get("kind")
    if kind not in states_lib.KINDS:
        raise ValueError("unknown kind %r" % (kind,))
    units = content.get("units")
    return {
        "kind": kind,
        "layers": content.get("num_layers"),
        "directions": content.get("num_directions"),
        "batch": content.get("batch"),
        "time": content.get("time"),
        "units": units if isinstance(units, dict) else {},
        "kinds": list(states_lib.array_kinds(kind)),
    }


def _locate(header, run, tag, step, layer, kind):
    """The blob index of `layer`, `kind` in a record; 404 naming what is missing."""
    entries = header["num_layers"] * header["num_directions"]
    if layer >= entries:
        raise errors.NotFoundError(
            "run %r tag %r has layers 0 to %d (layer * directions + direction); no layer %d"
            % (run, tag, entries - 1, layer)
        )
    kinds = states_lib.array_kinds(header["kind"])
    if kind not in kinds:
        raise errors.NotFoundError(
            "run %r tag %r (%s) has kinds %s; no kind %r" % (run, tag, header["kind"], ", ".join(kinds), kind)
        )
    try:
        return codec.find_array(header, layer=layer, kind=kind)
    except KeyError:
        raise errors.NotFoundError("run %r tag %r step %d has no layer %d %s" % (run, tag, step, layer, kind))


def _array_position(structure, layer, kind):
    """The blob index of an array in a record laid out as `codec.encode_record` does.

    Returns None when `layer` or `kind` is out of the structure's range.
    """
    kinds = structure["kinds"]
    layers, directions = structure["layers"], structure["directions"]
    if not (isinstance(layers, int) and isinstance(directions, int)):
        return None
    if kind not in kinds or not 0 <= layer < layers * directions:
        return None
    return 1 + layer * len(kinds) + kinds.index(kind)


def _check_sequence(header, sequence, run, tag):
    if sequence >= header["batch"]:
        raise errors.NotFoundError(
            "run %r tag %r has sequences 0 to %d; no sequence %d" % (run, tag, header["batch"] - 1, sequence)
        )


def _evenly_spaced(count, keep):
    """Indices of `keep` of `count` items, evenly spaced, always with the last."""
    if keep >= count:
        return list(range(count))
    if keep == 1:
        return [count - 1]
    return sorted({round(i * (count - 1) / (keep - 1)) for i in range(keep)})


def _abbreviate(values, limit=8):
    text = ",".join(str(v) for v in values[:limit])
    return text + (",..." if len(values) > limit else "")


def _release_free_memory():
    """Hands freed heap memory back to the system (glibc only).

    A projection's temporaries (a float32 copy of 200,000 points, 400,000 Python
    floats) are freed into malloc's per-thread arenas, which glibc keeps: without
    this, resident memory grows well past the cache after a few projections.
    """
    trim = _MALLOC_TRIM
    if trim is not None:
        trim(0)


def _find_malloc_trim():
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return None


_MALLOC_TRIM = _find_malloc_trim()


class _single_threaded_blas:
    """Runs BLAS on one thread: on a busy machine, its thread pool is 10-70x slower."""

    def __enter__(self):
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
            self._limits = None
            return self
        self._limits = threadpool_limits(limits=1, user_api="blas")
        return self

    def __exit__(self, *exc_info):
        if self._limits is not None:
            self._limits.restore_original_limits()


def _context(request):
    return plugin_util.context(request.environ), plugin_util.experiment_id(request.environ)


def _float(value):
    value = float(value)
    return value if math.isfinite(value) else None


def _floats(array, significant=None):
    """A nested list of an array's values, None where not finite.

    Args:
      array: an array of numbers.
      significant: if given, round to this many significant digits.
    """
    array = np.asarray(array, dtype=np.float64)
    finite = np.isfinite(array)
    if significant is not None:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            magnitude = np.floor(np.log10(np.abs(np.where(finite & (array != 0), array, 1.0))))
            scale = 10.0 ** (significant - 1 - magnitude)
            array = np.where(finite, np.round(array * scale) / scale, array)
    if finite.all():
        return array.tolist()
    values = array.astype(object)
    values[~finite] = None
    return values.tolist()


def _rounded_relative(values):
    """Values rounded to 1e-3 of the largest magnitude's power of ten, as a list.

    Finer than any canvas draws, and short numbers are several times faster to
    encode as JSON: at 400,000 coordinates that is most of a projection's reply.
    """
    largest = float(np.abs(values).max()) if len(values) else 0.0
    decimals = 3 - int(math.floor(math.log10(largest))) if largest > 0 else 0
    return np.round(values, max(decimals, 0)).tolist()


def _encode(value):
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _json(request, value):
    return _json_bytes(request, _encode(value))


def _json_bytes(request, body):
    return http_util.Respond(request, body, "application/json")


class _Args:
    """Strict query-parameter parsing: every problem is a 400 naming the parameter."""

    def __init__(self, request):
        self._args = request.args

    def _single(self, name, required):
        values = self._args.getlist(name)
        if len(values) > 1:
            raise errors.InvalidArgumentError(
                "parameter %r is given %d times; give it once" % (name, len(values)))
        if not values:
            if required:
                raise errors.InvalidArgumentError("missing parameter %r" % (name,))
            return None
        return values[0]

    def string(self, name):
        return self._single(name, True)

    def integer(self, name, *, minimum=-_INT64_MAX - 1, required=True):
        value = self._single(name, required)
        if value is None:
            return None
        return _parse_integer(name, value, minimum)

    def integer_list(self, name, *, minimum=-_INT64_MAX - 1, required=True):
        value = self._single(name, required)
        if value is None:
            return None
        items = value.split(",")
        if len(items) > 100_000:
            raise errors.InvalidArgumentError("parameter %r lists more than 100000 values" % (name,))
        return [_parse_integer(name, item, minimum) for item in items]

    def choice(self, name, choices, *, default=None):
        value = self._single(name, default is None)
        if value is None:
            return default
        if value not in choices:
            raise errors.InvalidArgumentError(
                "parameter %r must be one of %s, got %r" % (name, ", ".join(choices), value[:100]))
        return value

    def positive_float(self, name, *, default):
        value = self._single(name, False)
        if value is None:
            return default
        try:
            number = float(value) if len(value) <= 64 else float("nan")
        except ValueError:
            number = float("nan")
        if not (math.isfinite(number) and number > 0):
            raise errors.InvalidArgumentError(
                "parameter %r must be a positive finite number, got %r" % (name, value[:100]))
        return number


def _parse_integer(name, value, minimum):
    if not _INTEGER.fullmatch(value) or not (-_INT64_MAX - 1 <= int(value) <= _INT64_MAX):
        raise errors.InvalidArgumentError(
            "parameter %r must be an integer, got %r" % (name, value[:100]))
    number = int(value)
    if number < minimum:
        raise errors.InvalidArgumentError(
            "parameter %r must be at least %d, got %d" % (name, minimum, number))
    return number
