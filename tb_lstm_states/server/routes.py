"""`StatesPlugin`: the routes of the LSTM States tab (documented in docs/http_api.md).

Every route parses and validates its parameters, then calls an `*_impl` method,
which finds the step (`source.RecordSource`, through the data provider) and computes
its answer (`views.py`, `overview.py`, `projection.py`), cached. The routes that say
what a unit means (`units`, `match`, `search`) are in `unit_routes.py`. Heavy work
(projections, unit statistics, matching, search) runs on bounded pools (`work.py`).
Whatever a logdir holds, a route answers 400 or 404 naming the problem, never 500
(`guard.never_500`).
"""

import io
import os
import re
import threading
from concurrent import futures
from typing import Dict, Optional

import numpy as np
from tensorboard import errors
from tensorboard.backend import http_util
from tensorboard.data import provider
from tensorboard.plugins import base_plugin
from tensorboard.util import tb_logging
from werkzeug import wrappers

from tb_lstm_states import analysis, cache, metadata
from tb_lstm_states.analysis import libraries
from tb_lstm_states.server import (
    arrays,
    descriptions,
    listing,
    overview,
    params,
    projection,
    source,
    unit_routes,
    views,
    work,
)
from tb_lstm_states.server.guard import never_500
from tb_lstm_states.server.params import Args, encode, json_bytes_reply, json_reply
from tb_lstm_states.storage import gradients as storage_gradients

logger = tb_logging.get_logger()

DEFAULT_CACHE_MB = 256
# What "all steps" means to a provider: a sampling hint of 0 would return none.
ALL_STEPS = 1 << 30

# Shared by every plugin instance (TensorBoard makes one); threads start on first use.
# Tasks of one pool never wait on tasks of the same pool, so neither can deadlock.
_REQUEST_POOL = futures.ThreadPoolExecutor(8, thread_name_prefix="lstm_states")
_PREFETCH_POOL = futures.ThreadPoolExecutor(8, thread_name_prefix="lstm_states_prefetch")
# Heavy work (`work.py`): projections on `workers` threads, unit statistics and
# descriptions on one of their own; one set of pools per worker count.
_WORK_POOLS: Dict[int, tuple] = {}
_WORK_POOLS_LOCK = threading.Lock()


def _work_pools(workers):
    with _WORK_POOLS_LOCK:
        pools = _WORK_POOLS.get(workers)
        if pools is None:
            pools = _WORK_POOLS[workers] = (
                work.WorkPool(workers, "projection"),
                work.WorkPool(1, "analysis"),
            )
        return pools


STATIC_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "static")
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
_ROUTE_PREFIX = "/data/plugin/%s/" % metadata.PLUGIN_NAME


class StatesPlugin(unit_routes.UnitRoutes, base_plugin.TBPlugin):
    """Serves recorded recurrent states and views derived from them."""

    plugin_name = metadata.PLUGIN_NAME

    def __init__(
        self, context, *, cache_bytes: Optional[int] = None, workers: Optional[int] = None
    ):
        """Creates the plugin.

        Args:
          context: a `base_plugin.TBContext`; its `data_provider`, `logdir` and
            `sampling_hints` are used.
          cache_bytes: the budget of the array and result cache (default 256 MiB).
          workers: threads for projections (default `work.DEFAULT_WORKERS`); unit
            statistics and descriptions have one more of their own.
        """
        hint = (context.sampling_hints or {}).get(self.plugin_name)
        downsample = hint if isinstance(hint, int) and hint > 0 else ALL_STEPS
        if cache_bytes is None:
            cache_bytes = DEFAULT_CACHE_MB << 20
        # Indexes, headers and checksum tables (small, needed by every request) get
        # their own slice of the budget, so that large arrays never evict them.
        header_bytes = min(max(cache_bytes // 16, 1 << 20), cache_bytes // 2)
        self.headers = cache.ByteBoundedCache(header_bytes)
        self.cache = cache.ByteBoundedCache(cache_bytes - header_bytes)
        self.files = arrays.ArrayFiles(self.headers, self.cache)
        self._request_pool = _REQUEST_POOL
        self._source = source.RecordSource(
            context.data_provider,
            context.logdir,
            downsample=downsample,
            headers=self.headers,
            cache=self.cache,
            files=self.files,
            request_pool=_REQUEST_POOL,
            prefetch_pool=_PREFETCH_POOL,
        )
        self._projection_pool, self._analysis_pool = _work_pools(
            work.DEFAULT_WORKERS if workers is None else int(workers)
        )
        self._descriptions = descriptions.Descriptions(self._analysis_pool)
        # scipy and scikit-learn, imported now off the startup path, so that the tab's
        # first requests neither wait for them nor import them concurrently.
        threading.Thread(target=libraries.load, name="lstm_states-imports", daemon=True).start()

    def get_plugin_apps(self):
        return {
            "/runs": self._serve_runs,
            "/steps": self._serve_steps,
            "/states": self._serve_states,
            "/series": self._serve_series,
            "/overview": self._serve_overview,
            "/changes": self._serve_changes,
            "/units": self._serve_units,
            "/match": self._serve_match,
            "/search": self._serve_search,
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
    # Routes: parse and validate, then call an `*_impl` method.

    @wrappers.Request.application
    @never_500
    def _serve_runs(self, request):
        ctx, experiment = params.context(request)
        return json_reply(request, self.runs_impl(ctx, experiment))

    def runs_impl(self, ctx, experiment):
        """`{run: {tag: entry}}` of every states tag, both versions.

        A tag whose plugin data is malformed (not JSON, too deep, sizes beyond the
        caps, a newer version) is left out, with a warning logged once naming it;
        the other tags are listed. Descriptions: `descriptions.py`.
        """
        found = self._source.all_indexes(ctx, experiment)
        texts = {key: descriptions.cut(index.description) for key, index in found.items()}
        rendered = self._descriptions.html(text for text, _ in texts.values())
        result: Dict[str, Dict[str, dict]] = {}
        for (run, tag), index in sorted(found.items()):
            text, was_cut = texts[(run, tag)]
            result.setdefault(run, {})[tag] = dict(
                index.structure,
                **listing.step_counts(index),
                description=rendered[text],
                description_truncated=was_cut,
                description_chars=len(index.description)
                if isinstance(index.description, str)
                else 0,
            )
        return result

    @wrappers.Request.application
    @never_500
    def _serve_steps(self, request):
        ctx, experiment = params.context(request)
        args = Args(request)
        run, tag = args.string("run"), args.string("tag")
        return json_reply(request, self.steps_impl(ctx, experiment, run, tag))

    def steps_impl(self, ctx, experiment, run, tag):
        """`[{step, wall_time}]` of every step of (run, tag), listed now."""
        index = self._source.tag_index(ctx, experiment, run, tag, max_age=0.0)
        return [{"step": d.step, "wall_time": d.wall_time} for d in index.data]

    @wrappers.Request.application
    @never_500
    def _serve_states(self, request):
        ctx, experiment = params.context(request)
        args = Args(request)
        run, tag = args.string("run"), args.string("tag")
        step = args.integer("step")
        layer = args.integer("layer", minimum=0)
        kind = args.string("kind")
        sequence = args.integer("sequence", minimum=0, required=False)
        start = args.integer("start", minimum=0, required=False)
        stop = args.integer("stop", minimum=0, required=False)
        bins = args.integer("bins", minimum=1, required=False)
        fmt = args.choice("format", ("binary", "npy"), default="binary")
        if bins is not None and sequence is None:
            raise errors.InvalidArgumentError(
                "parameter 'bins' needs 'sequence': bins cover the timesteps of one sequence"
            )
        result = self.states_impl(
            ctx,
            experiment,
            run,
            tag,
            step,
            layer,
            kind,
            sequence,
            start=start,
            stop=stop,
            bins=bins,
        )
        array = result.array
        if fmt == "npy":
            buffer = io.BytesIO()
            np.save(buffer, array, allow_pickle=False)
            name = "%s_%s_step%d_layer%d_%s" % (run, tag, step, layer, kind)
            if sequence is not None:
                name += "_sequence%d" % sequence
            if result.start != 0 or result.stop != result.time:
                name += "_t%d-%d" % (result.start, result.stop)
            if result.binned:
                name += "_bins%d" % bins
            name = re.sub(r"[^A-Za-z0-9._-]", "_", name)[-196:] + ".npy"
            return http_util.Respond(
                request,
                buffer.getvalue(),
                "application/octet-stream",
                headers=[("Content-Disposition", 'attachment; filename="%s"' % name)],
            )
        body = np.ascontiguousarray(array, dtype="<f4").tobytes()
        headers = [
            ("X-Shape", ",".join(str(d) for d in array.shape)),
            ("X-Dtype", "float32"),
            ("X-Stored-Dtype", result.stored_dtype),
            ("X-Lengths", ",".join(str(n) for n in result.lengths)),
            ("X-Step", str(result.record.step)),
            ("X-Wall-Time", repr(float(result.record.wall_time))),
            ("X-Start", str(result.start)),
            ("X-Stop", str(result.stop)),
            ("X-Binned", "1" if result.binned else "0"),
        ]
        return http_util.Respond(request, body, "application/octet-stream", headers=headers)

    def states_impl(
        self,
        ctx,
        experiment,
        run,
        tag,
        step,
        layer,
        kind,
        sequence=None,
        *,
        start=None,
        stop=None,
        bins=None,
    ) -> views.StatesResult:
        """One array of one step, or a window of one sequence, or its binned view
        (`views.states_window`)."""
        record, handle = self._source.array(ctx, experiment, run, tag, step, layer, kind)
        return views.states_window(record, handle, layer, kind, sequence, start, stop, bins)

    @wrappers.Request.application
    @never_500
    def _serve_series(self, request):
        ctx, experiment = params.context(request)
        args = Args(request)
        run, tag, step = args.string("run"), args.string("tag"), args.integer("step")
        return json_reply(request, self.series_impl(ctx, experiment, run, tag, step))

    def series_impl(self, ctx, experiment, run, tag, step):
        """The series, lengths and tokens of one step (`views.series`)."""
        return views.series(self._source.record(ctx, experiment, run, tag, step))

    @wrappers.Request.application
    @never_500
    def _serve_overview(self, request):
        ctx, experiment = params.context(request)
        args = Args(request)
        run, tag = args.string("run"), args.string("tag")
        return json_bytes_reply(request, self.overview_impl(ctx, experiment, run, tag))

    def overview_impl(self, ctx, experiment, run, tag):
        """Returns the encoded JSON of the `overview` route (cached per listing)."""
        source = self._source
        index = source.tag_index(ctx, experiment, run, tag, max_age=0.0)
        if index.version == listing.V2:
            key = (
                "overview",
                experiment,
                run,
                tag,
                tuple((d.step, d.wall_time) for d in index.data),
            )
            return self.cache.get_or_compute(
                key,
                lambda: encode(
                    overview.v2_tables(
                        lambda datum: source.parse_index(experiment, run, tag, datum),
                        run,
                        tag,
                        index.data,
                    )
                ),
            )
        statistics_tag = tag + metadata.STATISTICS_SUFFIX
        run_tag_filter = provider.RunTagFilter(runs=[run], tags=[statistics_tag])
        series = (
            source.list_tensors(ctx, experiment, run_tag_filter).get(run, {}).get(statistics_tag)
        )
        if series is None:
            raise errors.NotFoundError("run %r tag %r has no statistics summary" % (run, tag))
        rows, columns = overview.v1_layout(
            source.content(series, run, tag + " statistics"), run, tag
        )
        data = (
            source.read_tensors(ctx, experiment, run_tag_filter)
            .get(run, {})
            .get(statistics_tag, [])
        )
        data = listing.latest_per_step(data)
        key = ("overview v1", experiment, run, tag, tuple((d.step, d.wall_time) for d in data))
        return self.cache.get_or_compute(
            key, lambda: encode(overview.v1_tables(rows, columns, data))
        )

    @wrappers.Request.application
    @never_500
    def _serve_changes(self, request):
        ctx, experiment = params.context(request)
        args = Args(request)
        run, tag = args.string("run"), args.string("tag")
        step = args.integer("step")
        layer = args.integer("layer", minimum=0)
        kind = args.string("kind")
        sequence = args.integer("sequence", minimum=0)
        threshold = args.positive_float("threshold", default=analysis.DEFAULT_THRESHOLD)
        body = self.changes_impl(ctx, experiment, run, tag, step, layer, kind, sequence, threshold)
        return json_bytes_reply(request, body)

    def changes_impl(self, ctx, experiment, run, tag, step, layer, kind, sequence, threshold):
        """Returns the encoded JSON of the `changes` route (cached; `views.changes`)."""
        record, handle = self._source.array(ctx, experiment, run, tag, step, layer, kind)
        views.check_changes(record, handle, sequence)
        key = (
            "changes",
            experiment,
            run,
            tag,
            record.step,
            record.wall_time,
            layer,
            kind,
            sequence,
            threshold,
        )
        return self.cache.get_or_compute(
            key, lambda: views.changes(record, handle, layer, kind, sequence, threshold)
        )

    @wrappers.Request.application
    @never_500
    def _serve_projection(self, request):
        ctx, experiment = params.context(request)
        args = Args(request)
        run, tag = args.string("run"), args.string("tag")
        layer = args.integer("layer", minimum=0)
        kind = args.string("kind")
        method = args.choice("method", analysis.METHODS)
        steps = args.integer_list("steps", required=False)
        sequences = args.integer_list("sequence", required=False, minimum=0)
        body = self.projection_impl(
            ctx,
            experiment,
            run,
            tag,
            layer,
            kind,
            method,
            steps,
            sequences,
            connection=work.request_connection(request),
        )
        return json_bytes_reply(request, body)

    def projection_impl(
        self,
        ctx,
        experiment,
        run,
        tag,
        layer,
        kind,
        method,
        steps=None,
        sequences=None,
        connection=None,
    ):
        """Returns the encoded JSON of the `projection` route (cached; `projection.py`),
        computed on the projection pool (`work.py`).

        Args:
          steps: the steps to lay out, or None for the default choice.
          sequences: the sequence indices, or None for all.
          connection: the client's socket: if it closes before the work starts, the
            work is dropped.
        """
        projection.check_method(method)
        if steps is None:
            index = self._source.tag_index(ctx, experiment, run, tag, max_age=0.0)
            if not index.data:
                raise errors.NotFoundError("run %r tag %r has no steps" % (run, tag))
            chosen = [d.step for d in index.data]
        else:
            chosen = sorted(set(steps))
        optional = steps is None and storage_gradients.is_gradient(kind)

        def fetch(step):
            try:
                return self._source.array(
                    ctx, experiment, run, tag, step, layer, kind, read_ahead=False
                )
            except errors.NotFoundError:
                if optional:
                    return None  # a step logged without a loss; lay out those with one
                raise

        found = list(self._request_pool.map(fetch, chosen))
        if optional:
            chosen = [s for s, f in zip(chosen, found) if f is not None]
            found = [f for f in found if f is not None]
            if not found:
                raise errors.NotFoundError(
                    "run %r tag %r: no step holds %s; log with a loss "
                    "(StateWriter.log(..., loss=...)) to store gradients" % (run, tag, kind)
                )
        if sequences is not None:
            sequences = sorted(set(sequences))
        found = projection.within_caps(
            found, method, sequences, chosen, steps_given=steps is not None, run=run, tag=tag
        )
        key = (
            "projection",
            experiment,
            run,
            tag,
            layer,
            kind,
            method,
            tuple((r.step, r.wall_time) for r, _ in found),
            None if sequences is None else tuple(sequences),
        )

        def compute():
            try:
                return projection.layout(found, layer, kind, method, sequences, self._request_pool)
            finally:
                projection.release_free_memory()

        return self._heavy(self._projection_pool, key, compute, connection)

    # werkzeug types `application` for plain functions; here, as in TensorBoard's own
    # plugins, it wraps a method (it passes the request as the last argument).
    @wrappers.Request.application  # type: ignore[arg-type]
    def _serve_static(self, request):
        path = request.path
        position = path.find(_ROUTE_PREFIX)
        relative = path[position + len(_ROUTE_PREFIX) :] if position >= 0 else ""
        content_type, body = self.static_impl(relative)
        return http_util.Respond(request, body, content_type)

    def static_impl(self, relative):
        """Returns `(content_type, bytes)` of a file of the static bundle.

        Only plain names of known types inside `STATIC_DIR` are served: no `..`,
        no hidden files, no links out of the directory.
        """
        parts = relative.split("/")
        ext = os.path.splitext(relative)[1].lower()
        if (
            not relative
            or not all(_STATIC_NAME.fullmatch(p) for p in parts)
            or ext not in _STATIC_TYPES
        ):
            raise errors.NotFoundError("no static file %r" % (relative,))
        root = os.path.realpath(STATIC_DIR)
        full = os.path.realpath(os.path.join(root, *parts))
        if os.path.commonpath([root, full]) != root or not os.path.isfile(full):
            raise errors.NotFoundError("no static file %r" % (relative,))
        with open(full, "rb") as f:
            return _STATIC_TYPES[ext], f.read()
