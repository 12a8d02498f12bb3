"""`StatesPlugin`: the routes of the LSTM States tab (documented in docs/http_api.md).

The plugin lists steps only through `context.data_provider`, so it works on both
load paths (the Rust data server and the Python loader). Version 2 steps are index
tensors; their arrays are read from the run's `plugins/lstm_states/` directory in
checked byte ranges (`arrays.py`). Version 1 steps are blob sequences, read through
the provider. Every route parses its parameters, then calls an `*_impl` method.
"""

import dataclasses
import functools
import io
import os
import re
import threading
import time
from concurrent import futures
from typing import Dict, Optional

import numpy as np
from werkzeug import wrappers

from tensorboard import errors
from tensorboard.backend import http_util
from tensorboard.backend.event_processing import data_provider as data_provider_lib
from tensorboard.data import provider
from tensorboard.plugins import base_plugin
from tensorboard.util import tb_logging

from tb_lstm_states import analysis, cache, metadata
from tb_lstm_states.server import arrays, descriptions, events, listing, params, records, work
from tb_lstm_states.server.params import Args, encode, floats, json_bytes_reply, json_float, json_reply
from tb_lstm_states.storage import format
from tb_lstm_states.storage import legacy

logger = tb_logging.get_logger()

DEFAULT_CACHE_MB = 256
# What "all steps" means to a provider: a sampling hint of 0 would return none.
ALL_STEPS = 1 << 30
# How long a listing of a tag's steps serves `states` and friends before it is
# checked again. `steps`, `runs` and `overview` always check.
INDEX_MAX_AGE_SECONDS = 2.0

PROJECTION_CAPS = {
    # method: (points per request, points per step)
    "pca": (250_000, 250_000),
    "tsne": (25_000, 3_000),
    "umap": (25_000, 10_000),
}
# The most values (points x units) one projection request lays out: its input is
# at most this many float32 values (128 MiB).
MAX_PROJECTION_VALUES = 1 << 25
# The most values a route reads or computes on at once: a whole array (`states`
# without `sequence`, `units`), one sequence (`changes`), a window at full
# resolution, or the series of a step. Larger asks answer 400 naming what to ask
# for instead (a sequence, a window, bins).
MAX_READ_VALUES = 1 << 25

# A version 1 statistics table has at most format.MAX_STATISTICS_ROWS rows and this
# many columns (it wrote format.STATISTICS_COLUMNS).
MAX_STATISTICS_COLUMNS = 16

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
            pools = _WORK_POOLS[workers] = (work.WorkPool(workers, "projection"),
                                            work.WorkPool(1, "analysis"))
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


def _never_500(handler):
    """Answers 404 for an error raised by a logdir's content that no narrower check
    caught: whatever a logdir holds, a route never answers 500. Any other error (a
    bug) is logged with its traceback and answered 404 too, naming it."""

    @functools.wraps(handler)
    def wrapper(self, request):
        try:
            return handler(self, request)
        except errors.PublicError:
            raise
        except records.LOGDIR_ERRORS as e:
            logger.warning("lstm_states: %s answered 404: %s: %s", request.path,
                           type(e).__name__, records.message(e))
            raise errors.NotFoundError("lstm_states cannot serve this from the logdir: %s"
                                       % records.message(e))
        except Exception as e:  # pylint: disable=broad-except
            logger.error("lstm_states: %s failed", request.path, exc_info=True)
            raise errors.NotFoundError("lstm_states could not serve this (%s: %s); the "
                                       "TensorBoard log has the details"
                                       % (type(e).__name__, records.message(e)))

    return wrapper


@dataclasses.dataclass
class StatesResult:
    """What the `states` route serves.

    Attributes:
      record: the step (`records.Record`).
      array: `[2, bins, units]` float32 when `binned`; else the stored array's window,
        `[stop - start, units]` with a sequence, `[batch, stop - start, units]` without.
      start, stop: the timestep window.
      binned: whether `array` is per-bin minimum and maximum.
      time: the timesteps of the whole sequence.
      stored_dtype: the dtype the step stores the array in.
      lengths: the valid timesteps of each sequence served.
    """

    record: records.Record
    array: np.ndarray
    start: int
    stop: int
    time: int
    binned: bool
    stored_dtype: str
    lengths: list


class StatesPlugin(base_plugin.TBPlugin):
    """Serves recorded recurrent states and views derived from them."""

    plugin_name = metadata.PLUGIN_NAME

    def __init__(self, context, *, cache_bytes: Optional[int] = None,
                 workers: Optional[int] = None):
        """Creates the plugin.

        Args:
          context: a `base_plugin.TBContext`; its `data_provider`, `logdir` and
            `sampling_hints` are used.
          cache_bytes: the budget of the array and result cache (default 256 MiB).
          workers: threads for projections (default `work.DEFAULT_WORKERS`); unit
            statistics and descriptions have one more of their own.
        """
        self._data_provider = context.data_provider
        self._logdir = context.logdir
        hint = (context.sampling_hints or {}).get(self.plugin_name)
        self._downsample = hint if isinstance(hint, int) and hint > 0 else ALL_STEPS
        if cache_bytes is None:
            cache_bytes = DEFAULT_CACHE_MB << 20
        # Indexes, headers and checksum tables (small, needed by every request) get
        # their own slice of the budget, so that large arrays never evict them.
        header_bytes = min(max(cache_bytes // 16, 1 << 20), cache_bytes // 2)
        self.headers = cache.ByteBoundedCache(header_bytes)
        self.cache = cache.ByteBoundedCache(cache_bytes - header_bytes)
        self.files = arrays.ArrayFiles(self.headers, self.cache)
        self._indexes: Dict[tuple, listing.TagIndex] = {}
        self._indexes_lock = threading.Lock()
        self._prefetching = set()
        # Version 1 records are read from the event files, checksums checked
        # (`events.py`), when there is a logdir to find them in. Else through the
        # provider: the Rust data server answers a small blob only after ~40 ms (a
        # TCP delayed-ACK stall) but serves many at once; so blobs are read in
        # parallel: headers ahead of need, and a header beside its array. The
        # in-process provider copies a whole record to read any blob of it.
        self._events = events.EventRecords(self._logdir) if self._logdir else None
        self._read_ahead = self._events is None and not isinstance(
            self._data_provider, data_provider_lib.MultiplexerDataProvider)
        self._request_pool = _REQUEST_POOL
        self._prefetch_pool = _PREFETCH_POOL
        self._projection_pool, self._analysis_pool = _work_pools(
            work.DEFAULT_WORKERS if workers is None else int(workers))
        self._descriptions = descriptions.Descriptions(self._analysis_pool)
        self._warned = cache.ByteBoundedCache(1 << 20)  # problems already logged

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
    # Listing steps through the data provider.

    def _list_tensors(self, ctx, experiment, run_tag_filter=None):
        return self._data_provider.list_tensors(
            ctx, experiment_id=experiment, plugin_name=self.plugin_name,
            run_tag_filter=run_tag_filter)

    def _read_tensors(self, ctx, experiment, run_tag_filter=None):
        return self._data_provider.read_tensors(
            ctx, experiment_id=experiment, plugin_name=self.plugin_name,
            downsample=self._downsample, run_tag_filter=run_tag_filter)

    def _list_blob_sequences(self, ctx, experiment, run_tag_filter=None):
        return self._data_provider.list_blob_sequences(
            ctx, experiment_id=experiment, plugin_name=self.plugin_name,
            run_tag_filter=run_tag_filter)

    def _read_blob_sequences(self, ctx, experiment, run_tag_filter=None):
        return self._data_provider.read_blob_sequences(
            ctx, experiment_id=experiment, plugin_name=self.plugin_name,
            downsample=self._downsample, run_tag_filter=run_tag_filter)

    @staticmethod
    def _content(series, run, tag):
        try:
            return metadata.parse_plugin_content(series.plugin_content)
        except ValueError as e:
            raise errors.NotFoundError("run %r tag %r: %s" % (run, tag, e))

    @staticmethod
    def _structure(content, run, tag):
        try:
            structure = listing.structure(content)
        except ValueError as e:
            raise errors.NotFoundError("run %r tag %r: %s" % (run, tag, e))
        if structure is None:
            raise errors.NotFoundError("run %r tag %r is not an lstm_states record (role %r)"
                                       % (run, tag, content.get("role")))
        return structure

    def _tag_index(self, ctx, experiment, run, tag, *, max_age=INDEX_MAX_AGE_SECONDS):
        """The steps of (run, tag), listed at most `max_age` seconds ago."""
        key = (experiment, run, tag)
        now = time.monotonic()
        with self._indexes_lock:
            cached = self._indexes.get(key)
        if cached is not None and now - cached.fetched <= max_age:
            return cached
        run_tag_filter = provider.RunTagFilter(runs=[run], tags=[tag])
        if cached is not None and cached.version == listing.V1:
            # TensorBoard keeps a tag's first metadata, so only the steps can have
            # changed: skip the listing (on the data server, a ~40 ms small reply).
            data = self._read_blob_sequences(ctx, experiment, run_tag_filter).get(run, {}).get(tag)
            if data is not None:
                return self._store_index(ctx, experiment, run, tag, listing.make_index(
                    listing.V1, cached.structure, cached.description, data, now))
        series = self._list_tensors(ctx, experiment, run_tag_filter).get(run, {}).get(tag)
        if series is not None:
            content = self._content(series, run, tag)
            if content.get("role") == metadata.ROLE_INDEX:
                signature = listing.signature(series)
                if (cached is not None and cached.version == listing.V2
                        and cached.signature == signature):
                    return self._store_index(ctx, experiment, run, tag,
                                             dataclasses.replace(cached, fetched=now))
                structure = self._structure(content, run, tag)
                data = self._read_tensors(ctx, experiment, run_tag_filter).get(run, {}).get(tag, [])
                return self._store_index(ctx, experiment, run, tag, listing.make_index(
                    listing.V2, structure, series.description, data, now, signature))
        blobs = self._list_blob_sequences(ctx, experiment, run_tag_filter).get(run, {}).get(tag)
        if blobs is None:
            if series is not None:
                self._structure(self._content(series, run, tag), run, tag)  # 404 naming the role
            self._raise_unknown(ctx, experiment, run, tag)
        structure = self._structure(self._content(blobs, run, tag), run, tag)
        data = self._read_blob_sequences(ctx, experiment, run_tag_filter).get(run, {}).get(tag, [])
        return self._store_index(ctx, experiment, run, tag, listing.make_index(
            listing.V1, structure, blobs.description, data, now))

    def _store_index(self, ctx, experiment, run, tag, index):
        with self._indexes_lock:
            self._indexes[(experiment, run, tag)] = index
        if self._read_ahead and index.version == listing.V1:
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
            self._v1_header(ctx, experiment, run, tag, datum)
        except Exception:  # pylint: disable=broad-except
            pass  # the request that needs this header will read it and report
        finally:
            with self._indexes_lock:
                self._prefetching.discard(key)

    def _raise_unknown(self, ctx, experiment, run, tag):
        run_filter = provider.RunTagFilter(runs=[run])
        known = set(self._list_tensors(ctx, experiment, run_filter))
        known |= set(self._list_blob_sequences(ctx, experiment, run_filter))
        if run not in known:
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

    # ------------------------------------------------------------------
    # Records: one step, either version.

    def _record(self, ctx, experiment, run, tag, step, want=None) -> records.Record:
        """The record of one step.

        Args:
          want: `(layer, kind)` the caller will read, so that a version 1 record's
            array can be read beside its header.
        """
        index, datum = self._datum(ctx, experiment, run, tag, step)
        if index.version == listing.V2:
            return self._v2_record(experiment, run, tag, datum)
        return self._v1_record(ctx, experiment, run, tag, index, datum, want)

    def _parse_index(self, experiment, run, tag, datum) -> dict:
        raw = listing.index_bytes(datum)
        key = ("index", experiment, run, tag, datum.step, datum.wall_time, len(raw), format.crc32c(raw))
        return self.headers.get_or_compute(key, lambda: format.parse_index(raw))

    def _v2_record(self, experiment, run, tag, datum) -> records.V2Record:
        with records.logdir_errors(run, tag, datum.step):
            index = self._parse_index(experiment, run, tag, datum)
            format.check_file_name(index, tag, datum.step)
            path = arrays.array_file_path(self._logdir, run, index)
        return records.V2Record(run, tag, datum, index, path, self.files)

    def _read_blob(self, ctx, datum, position):
        return self._data_provider.read_blob(ctx, blob_key=datum.values[position].blob_key)

    def _blob(self, ctx, experiment, run, tag, datum, position):
        """Blob `position` of a version 1 step: from its event file, checked (the whole
        record is read and cached), or through the provider when no event file
        holds it."""
        if self._events is not None:
            key = ("v1 record", experiment, run, tag, datum.step, datum.wall_time)
            blobs = self.cache.get_or_compute(
                key, lambda: self._events.blobs(run, tag, datum.step, datum.wall_time),
                size=lambda value: 64 + sum(len(b) + 64 for b in value or ()))
            if blobs is not None:
                if len(blobs) != len(datum.values):
                    raise legacy.RecordError(
                        "malformed lstm_states record: %d blobs in the event file, %d listed"
                        % (len(blobs), len(datum.values)))
                return blobs[position]
            self._warn_once(("unverified", experiment, run, tag),
                            "run %r tag %r: no event file under the logdir holds step %d; "
                            "version 1 records are served from TensorBoard's memory, unverified"
                            % (run, tag, datum.step))
        return self._read_blob(ctx, datum, position)

    @staticmethod
    def _header_key(experiment, run, tag, datum):
        return ("v1 header", experiment, run, tag, datum.step, datum.wall_time)

    def _v1_header(self, ctx, experiment, run, tag, datum):
        key = self._header_key(experiment, run, tag, datum)

        def load():
            if not datum.values:
                raise legacy.RecordError("malformed lstm_states record: no blobs")
            if len(datum.values) == 1:
                # A version 1 record has a header and arrays. One value is a version 2
                # index logged under a tag whose first summary in this run was
                # version 1: TensorBoard lists the whole tag as version 1.
                raise legacy.RecordError(
                    "this step looks like a version 2 index under a tag that holds version 1 "
                    "records in this run, which TensorBoard cannot list as both: log new "
                    "states under another tag or run")
            header = legacy.decode_header(self._blob(ctx, experiment, run, tag, datum, 0))
            if len(datum.values) != len(header["arrays"]) + 1:
                raise legacy.RecordError(
                    "malformed lstm_states record: %d blobs, its header describes %d"
                    % (len(datum.values), len(header["arrays"]) + 1))
            return header

        with records.logdir_errors(run, tag, datum.step):
            return self.headers.get_or_compute(key, load)

    def _v1_record(self, ctx, experiment, run, tag, index, datum, want=None) -> records.V1Record:
        header = self.headers.get(self._header_key(experiment, run, tag, datum))
        prefetched = {}
        if header is None and self._read_ahead and want is not None:
            # Read the header and, where the record is laid out as version 1 wrote
            # it, the array at the same time; the header then says where it is.
            guess = _array_position(index.structure, *want)
            pending = self._request_pool.submit(self._v1_header, ctx, experiment, run, tag, datum)
            if guess is not None and guess < len(datum.values):
                try:
                    prefetched[guess] = self._blob(ctx, experiment, run, tag, datum, guess)
                except errors.PublicError:
                    pass
            header = pending.result()
        elif header is None:
            header = self._v1_header(ctx, experiment, run, tag, datum)

        def load_array(position):
            key = ("v1 array", experiment, run, tag, datum.step, datum.wall_time, position)

            def load():
                blob = prefetched.pop(position, None)
                if blob is None:
                    blob = self._blob(ctx, experiment, run, tag, datum, position)
                return legacy.decode_array(header, position, blob)

            return self.cache.get_or_compute(key, load)

        return records.V1Record(run, tag, datum, header, load_array, self.cache,
                                (experiment, run, tag, datum.step, datum.wall_time))

    def _array(self, ctx, experiment, run, tag, step, layer, kind, read_ahead=True):
        """`(record, handle)` of one layer and kind of one step (404 if absent).

        Args:
          read_ahead: whether a version 1 array may be read beside its header on
            the request pool; False when called from that pool.
        """
        record = self._record(ctx, experiment, run, tag, step,
                              want=(layer, kind) if read_ahead else None)
        return record, record.entry(layer, kind)

    # ------------------------------------------------------------------
    # Routes: parse and validate, then call an `*_impl` method.

    @wrappers.Request.application
    @_never_500
    def _serve_runs(self, request):
        ctx, experiment = params.context(request)
        return json_reply(request, self.runs_impl(ctx, experiment))

    def _warn_once(self, key, message):
        """Logs a problem of the logdir once (not on every poll of the tab)."""
        if self._warned.get(key) is None:
            self._warned.put(key, True, size=256)
            logger.warning("lstm_states: %s", message)

    def runs_impl(self, ctx, experiment):
        """`{run: {tag: entry}}` of every states tag, both versions.

        A tag whose plugin data is malformed (not JSON, too deep, sizes beyond the
        caps, a newer version) is left out, with a warning logged once naming it;
        the other tags are listed. Descriptions: `descriptions.py`.
        """
        tensors = self._list_tensors(ctx, experiment)
        blobs = self._list_blob_sequences(ctx, experiment)
        now = time.monotonic()
        found = {}  # (run, tag) -> TagIndex, or (structure, series) still to read
        stale = []
        for version, listed in ((listing.V1, blobs), (listing.V2, tensors)):
            for run, tags in listed.items():
                for tag, series in tags.items():
                    try:
                        structure = listing.structure(metadata.parse_plugin_content(series.plugin_content))
                    except records.LOGDIR_ERRORS as e:
                        self._warn_once(("runs", run, tag, type(e).__name__),
                                        "skipping run %r tag %r: its plugin data: %s"
                                        % (run, tag, records.message(e)))
                        continue
                    if structure is None:
                        continue  # a version 1 statistics tensor
                    if version == listing.V2:
                        with self._indexes_lock:
                            cached = self._indexes.get((experiment, run, tag))
                        if (cached is not None and cached.version == listing.V2
                                and cached.signature == listing.signature(series)):
                            found[(run, tag)] = cached
                            continue
                        stale.append((run, tag))
                    found[(run, tag)] = (version, structure, series)
        if stale:
            data = self._read_tensors(ctx, experiment, provider.RunTagFilter(
                runs=sorted({r for r, _ in stale}), tags=sorted({t for _, t in stale})))
            for run, tag in stale:
                _, structure, series = found[(run, tag)]
                found[(run, tag)] = self._store_index(ctx, experiment, run, tag, listing.make_index(
                    listing.V2, structure, series.description, data.get(run, {}).get(tag, []), now,
                    listing.signature(series)))
        if any(isinstance(v, tuple) for v in found.values()):
            data = self._read_blob_sequences(ctx, experiment)
            for (run, tag), value in list(found.items()):
                if isinstance(value, tuple):
                    _, structure, series = value
                    found[(run, tag)] = listing.make_index(
                        listing.V1, structure, series.description, data.get(run, {}).get(tag, []), now)
        texts = {key: descriptions.cut(index.description) for key, index in found.items()}
        rendered = self._descriptions.html(text for text, _ in texts.values())
        result = {}
        for (run, tag), index in sorted(found.items()):
            text, was_cut = texts[(run, tag)]
            result.setdefault(run, {})[tag] = dict(
                index.structure,
                **listing.step_counts(index),
                description=rendered[text],
                description_truncated=was_cut,
                description_chars=len(index.description) if isinstance(index.description, str) else 0,
            )
        return result

    @wrappers.Request.application
    @_never_500
    def _serve_steps(self, request):
        ctx, experiment = params.context(request)
        args = Args(request)
        run, tag = args.string("run"), args.string("tag")
        return json_reply(request, self.steps_impl(ctx, experiment, run, tag))

    def steps_impl(self, ctx, experiment, run, tag):
        index = self._tag_index(ctx, experiment, run, tag, max_age=0.0)
        return [{"step": d.step, "wall_time": d.wall_time} for d in index.data]

    @wrappers.Request.application
    @_never_500
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
                "parameter 'bins' needs 'sequence': bins cover the timesteps of one sequence")
        result = self.states_impl(ctx, experiment, run, tag, step, layer, kind, sequence,
                                  start=start, stop=stop, bins=bins)
        array = result.array
        if fmt == "npy":
            body = io.BytesIO()
            np.save(body, array, allow_pickle=False)
            name = "%s_%s_step%d_layer%d_%s" % (run, tag, step, layer, kind)
            if sequence is not None:
                name += "_sequence%d" % sequence
            if result.start != 0 or result.stop != result.time:
                name += "_t%d-%d" % (result.start, result.stop)
            if result.binned:
                name += "_bins%d" % bins
            name = re.sub(r"[^A-Za-z0-9._-]", "_", name)[-196:] + ".npy"
            return http_util.Respond(
                request, body.getvalue(), "application/octet-stream",
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

    def states_impl(self, ctx, experiment, run, tag, step, layer, kind, sequence=None, *,
                    start=None, stop=None, bins=None) -> StatesResult:
        """One array of one step, or a window of one sequence, or its binned view.

        Args:
          sequence: a sequence of the probe batch, or None for all of them.
          start, stop: the timesteps `[start, stop)`; default the whole sequence.
          bins: with `sequence`, the most timesteps to answer: a longer window is
            answered as each bin's minimum and maximum.

        Raises:
          errors.InvalidArgumentError: for a window out of the sequence.
          errors.NotFoundError: for what the logdir lacks or cannot serve.
        """
        record, handle = self._array(ctx, experiment, run, tag, step, layer, kind)
        header = record.header
        if sequence is not None:
            records.check_sequence(header, sequence, run, tag)
        time_steps = record.time_of(handle)
        start = 0 if start is None else start
        stop = time_steps if stop is None else stop
        if stop > time_steps:
            raise errors.InvalidArgumentError(
                "parameter 'stop' is %d, past the end of the sequence: it has %d timesteps "
                "(stop is exclusive, at most %d)" % (stop, time_steps, time_steps))
        if start >= stop:
            raise errors.InvalidArgumentError(
                "parameter 'start' (%d) must be less than 'stop' (%d)" % (start, stop))
        binned = bins is not None and stop - start > bins
        units = record.units_of(handle)
        window = stop - start
        if binned and record.has_pyramid(handle) and window >= 4 * format.PYRAMID_BLOCK * bins:
            # whole blocks from the pyramid, the partial blocks at bin edges from the array
            values = (2 * -(-window // format.PYRAMID_BLOCK) + 2 * format.PYRAMID_BLOCK * (bins + 1)) * units
        else:
            values = window * units * (header["batch"] if sequence is None else 1)
        _check_values(values, "states of layer %d %s, timesteps %d to %d%s" % (
            layer, kind, start, stop, "" if sequence is None else " of sequence %d" % sequence),
            "ask for one sequence (sequence=), a window (start=, stop=) or a binned view (bins=)")
        if binned:
            array = record.binned(handle, sequence, start, stop, bins)
        else:
            array = record.read(handle, sequence, start, stop)
        lengths = header["lengths"] if sequence is None else [header["lengths"][sequence]]
        return StatesResult(record, array, start, stop, time_steps, binned, record.stored_dtype(handle),
                            lengths)

    @wrappers.Request.application
    @_never_500
    def _serve_series(self, request):
        ctx, experiment = params.context(request)
        args = Args(request)
        run, tag, step = args.string("run"), args.string("tag"), args.integer("step")
        return json_reply(request, self.series_impl(ctx, experiment, run, tag, step))

    def series_impl(self, ctx, experiment, run, tag, step):
        record = self._record(ctx, experiment, run, tag, step)
        header = record.header
        _check_values(len(header["series"]) * header["batch"] * header["time"],
                      "the series of step %d" % step, "this step holds more than the tab reads")
        series = {name: floats(array) for name, array in records.series_arrays(record).items()}
        return {
            "step": record.step,
            "batch": header["batch"],
            "time": header["time"],
            "lengths": header["lengths"],
            "series": series,
            "tokens": record.tokens(),
        }

    @wrappers.Request.application
    @_never_500
    def _serve_overview(self, request):
        ctx, experiment = params.context(request)
        args = Args(request)
        run, tag = args.string("run"), args.string("tag")
        return json_bytes_reply(request, self.overview_impl(ctx, experiment, run, tag))

    def overview_impl(self, ctx, experiment, run, tag):
        """Returns the encoded JSON of the `overview` route (cached per listing)."""
        index = self._tag_index(ctx, experiment, run, tag, max_age=0.0)
        if index.version == listing.V2:
            key = ("overview", experiment, run, tag, tuple((d.step, d.wall_time) for d in index.data))
            return self.cache.get_or_compute(
                key, lambda: encode(self._overview_v2(experiment, run, tag, index.data)))
        statistics_tag = tag + metadata.STATISTICS_SUFFIX
        run_tag_filter = provider.RunTagFilter(runs=[run], tags=[statistics_tag])
        series = self._list_tensors(ctx, experiment, run_tag_filter).get(run, {}).get(statistics_tag)
        if series is None:
            raise errors.NotFoundError("run %r tag %r has no statistics summary" % (run, tag))
        content = self._content(series, run, tag + " statistics")
        rows, columns = content.get("rows"), content.get("columns")
        if (content.get("role") != metadata.ROLE_STATISTICS or not isinstance(rows, list)
                or not isinstance(columns, list) or len(rows) > format.MAX_STATISTICS_ROWS
                or len(columns) > MAX_STATISTICS_COLUMNS
                or not all(isinstance(c, str) and len(c) <= 64 for c in columns)
                or not all(isinstance(r, list) and len(r) == 2 and isinstance(r[0], int)
                           and isinstance(r[1], str) and len(r[1]) <= 64 for r in rows)):
            raise errors.NotFoundError(
                "run %r tag %r statistics are malformed (at most %d rows [layer, kind] and %d "
                "named columns)" % (run, tag, format.MAX_STATISTICS_ROWS, MAX_STATISTICS_COLUMNS))
        data = self._read_tensors(ctx, experiment, run_tag_filter).get(run, {}).get(statistics_tag, [])
        data = listing.latest_per_step(data)
        key = ("overview v1", experiment, run, tag, tuple((d.step, d.wall_time) for d in data))
        return self.cache.get_or_compute(key, lambda: encode(self._overview_v1(rows, columns, data)))

    def _overview_v2(self, experiment, run, tag, data):
        rows, tables = None, []
        for datum in data:
            try:
                index = self._parse_index(experiment, run, tag, datum)
            except (format.FormatError, ValueError) as e:
                logger.warning("lstm_states: run %r tag %r step %d: %s", run, tag, datum.step, e)
                tables.append(None)
                continue
            step_rows = [list(row) for row in format.statistics_rows(index)]
            if rows is None:
                rows = step_rows
            statistics = index["statistics"]
            table = None
            if step_rows == rows and statistics is not None:
                try:  # a JSON integer can be too large for a float
                    table = np.array([[np.nan if v is None else v for v in row] for row in statistics],
                                     dtype=np.float64)
                except (OverflowError, ValueError, TypeError):
                    table = None
            tables.append(table)
        rows = rows or []
        shape = (len(rows), len(format.STATISTICS_COLUMNS))
        values = np.stack([t if t is not None else np.full(shape, np.nan) for t in tables]) \
            if tables else np.zeros((0,) + shape)
        return {
            "rows": rows,
            "columns": list(format.STATISTICS_COLUMNS),
            "steps": [d.step for d in data],
            "wall_times": [d.wall_time for d in data],
            "values": floats(values, significant=6),
        }

    @staticmethod
    def _overview_v1(rows, columns, data):
        shape = (len(rows), len(columns))
        values = []
        for datum in data:
            table = np.asarray(datum.numpy)
            if table.shape != shape or not np.issubdtype(table.dtype, np.number):
                table = np.full(shape, np.nan)  # a table of another size is never built
            values.append(table)
        stacked = np.stack(values) if values else np.zeros((0,) + shape)
        return {
            "rows": rows,
            "columns": columns,
            "steps": [d.step for d in data],
            "wall_times": [d.wall_time for d in data],
            # Six significant digits: plenty for a plot, and a third of the JSON.
            "values": floats(stacked, significant=6),
        }

    @wrappers.Request.application
    @_never_500
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
        """Returns the encoded JSON of the `changes` route (cached)."""
        record, handle = self._array(ctx, experiment, run, tag, step, layer, kind)
        records.check_sequence(record.header, sequence, run, tag)
        _check_values(record.header["lengths"][sequence] * record.units_of(handle),
                      "the changes of sequence %d" % sequence,
                      "this sequence is longer than the tab analyses")
        key = ("changes", experiment, run, tag, record.step, record.wall_time, layer, kind,
               sequence, threshold)

        def compute():
            length = record.header["lengths"][sequence]
            result = analysis.changes(record.read(handle, sequence), length, threshold)
            return encode({
                "step": record.step, "layer": layer, "kind": kind, "sequence": sequence,
                "length": length, "threshold": threshold,
                "norm": floats(result["norm"]), "cosine": floats(result["cosine"]),
                "zscore": floats(result["zscore"]),
                "anomalies": [int(t) for t in result["anomalies"]],
                "median": json_float(result["median"]), "mad": json_float(result["mad"]),
            })

        return self.cache.get_or_compute(key, compute)

    @wrappers.Request.application
    @_never_500
    def _serve_units(self, request):
        ctx, experiment = params.context(request)
        args = Args(request)
        run, tag = args.string("run"), args.string("tag")
        step = args.integer("step")
        layer = args.integer("layer", minimum=0)
        kind = args.string("kind")
        body = self.units_impl(ctx, experiment, run, tag, step, layer, kind,
                               connection=work.request_connection(request))
        return json_bytes_reply(request, body)

    def units_impl(self, ctx, experiment, run, tag, step, layer, kind, connection=None):
        """Returns the encoded JSON of the `units` route (cached), computed on the
        analysis pool (`work.py`).

        Args:
          connection: the client's socket: if it closes before the work starts, the
            work is dropped.
        """
        record, handle = self._array(ctx, experiment, run, tag, step, layer, kind)
        header = record.header
        _check_values(header["batch"] * record.time_of(handle) * record.units_of(handle),
                      "the unit statistics of layer %d %s" % (layer, kind),
                      "this array is larger than the tab analyses")
        _check_values(len(header["series"]) * header["batch"] * header["time"],
                      "the series of step %d" % step, "this step holds more than the tab reads")
        key = ("units", experiment, run, tag, record.step, record.wall_time, layer, kind)

        def compute():
            array = record.read(handle)
            series = records.series_arrays(record)
            result = analysis.unit_statistics(array, kind, record.header["lengths"], series)
            return encode({
                "step": record.step, "layer": layer, "kind": kind, "units": int(array.shape[2]),
                "variance": floats(result["variance"]),
                "saturation": floats(result["saturation"]),
                "activity": floats(result["activity"]),
                "dead": [bool(d) for d in result["dead"]],
                "period": floats(result["period"]),
                "period_strength": floats(result["period_strength"]),
                "correlation": {k: floats(v) for k, v in result["correlation"].items()},
                "order": [int(u) for u in result["order"]],
            })

        return self._heavy(self._analysis_pool, key, compute, connection)

    def _heavy(self, pool, key, compute, connection=None):
        """The cached result of `key`, else `compute` run on `pool` (shared by identical
        requests, cached when done even if its client left)."""
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        return pool.run(key, lambda: self.cache.get_or_compute(key, compute), connection)

    @wrappers.Request.application
    @_never_500
    def _serve_projection(self, request):
        ctx, experiment = params.context(request)
        args = Args(request)
        run, tag = args.string("run"), args.string("tag")
        layer = args.integer("layer", minimum=0)
        kind = args.string("kind")
        method = args.choice("method", analysis.METHODS)
        steps = args.integer_list("steps", required=False)
        sequences = args.integer_list("sequence", required=False, minimum=0)
        body = self.projection_impl(ctx, experiment, run, tag, layer, kind, method, steps, sequences,
                                    connection=work.request_connection(request))
        return json_bytes_reply(request, body)

    def projection_impl(self, ctx, experiment, run, tag, layer, kind, method, steps=None, sequences=None,
                        connection=None):
        """Returns the encoded JSON of the `projection` route (cached), computed on the
        projection pool (`work.py`).

        Args:
          steps: the steps to lay out, or None for the default choice.
          sequences: the sequence indices, or None for all.
          connection: the client's socket: if it closes before the work starts, the
            work is dropped.
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
        found = list(self._request_pool.map(
            lambda s: self._array(ctx, experiment, run, tag, s, layer, kind, read_ahead=False), chosen))
        if sequences is not None:
            sequences = sorted(set(sequences))
            for record, _ in found:
                for sequence in sequences:
                    records.check_sequence(record.header, sequence, run, tag)
        per_step = [
            sum(r.header["lengths"][b] for b in (sequences if sequences is not None else range(r.header["batch"])))
            for r, _ in found
        ]
        largest = max(per_step) if per_step else 0
        if largest > step_cap:
            raise errors.InvalidArgumentError(
                "projection with method=%s is capped at %d points per step; a step here has %d "
                "(sequences x valid timesteps): choose fewer sequences with sequence="
                % (method, step_cap, largest)
            )
        units = max((r.units_of(h) for r, h in found), default=1)
        if largest * units > MAX_PROJECTION_VALUES:
            raise errors.InvalidArgumentError(
                "a projection is capped at %d values (points x units); a step here has %d "
                "points of %d units: choose fewer sequences with sequence="
                % (MAX_PROJECTION_VALUES, largest, units))
        total_cap = min(total_cap, MAX_PROJECTION_VALUES // units)
        if sum(per_step) > total_cap:
            if steps is not None:
                raise errors.InvalidArgumentError(
                    "projection with method=%s is capped at %d points per request; steps=%s "
                    "asks for %d: request fewer steps (steps=) or sequences (sequence=)"
                    % (method, total_cap, _abbreviate(chosen), sum(per_step))
                )
            keep = _evenly_spaced(len(found), max(total_cap // max(largest, 1), 1))
            found = [found[i] for i in keep]
        key = ("projection", experiment, run, tag, layer, kind, method,
               tuple((r.step, r.wall_time) for r, _ in found),
               None if sequences is None else tuple(sequences))

        def compute():
            try:
                return self._projection(layer, kind, method, found, sequences)
            finally:
                _release_free_memory()

        return self._heavy(self._projection_pool, key, compute, connection)

    def _projection(self, layer, kind, method, found, sequences):
        def rows_of(item):
            record, handle = item
            header = record.header
            chosen = sequences if sequences is not None else list(range(header["batch"]))
            lengths = [header["lengths"][b] for b in chosen]
            if sequences is None:
                array = record.read(handle)
                rows = [array[b, :n] for b, n in zip(chosen, lengths)]
            else:  # only the sequences asked for: a version 2 step reads just those
                rows = [record.read(handle, b, 0, n) for b, n in zip(chosen, lengths) if n]
            empty = np.zeros((0, record.units_of(handle)), format.DTYPES[record.stored_dtype(handle)])
            points = np.concatenate(rows, axis=0) if rows else empty
            keys = np.concatenate([np.zeros(0, np.int64)] + [
                b * record.time_of(handle) + np.arange(n, dtype=np.int64)
                for b, n in zip(chosen, lengths)])
            return points, keys, lengths

        points, keys, lengths = [], [], []
        for step_points, step_keys, step_lengths in self._request_pool.map(rows_of, found):
            points.append(step_points)
            keys.append(step_keys)
            lengths.append(step_lengths)
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
        return encode({
            "method": method,
            "method_used": result["method_used"],
            "layer": layer,
            "kind": kind,
            "steps": [r.step for r, _ in found],
            "sequences": sequences if sequences is not None else list(
                range(found[0][0].header["batch"] if found else 0)),
            "lengths": lengths,
            "offsets": [int(o) for o in offsets] if coordinates else [],
            "coordinates": params.rounded_relative(flat.ravel()),
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


def _array_position(structure, layer, kind):
    """The blob index of an array in a version 1 record laid out as its writer did.

    Returns None when `layer` or `kind` is out of the structure's range.
    """
    kinds = structure["kinds"]
    layers, directions = structure["layers"], structure["directions"]
    if not (isinstance(layers, int) and isinstance(directions, int)):
        return None
    if kind not in kinds or not 0 <= layer < layers * directions:
        return None
    return 1 + layer * len(kinds) + kinds.index(kind)


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


def _check_values(values, what, instead):
    """400 when a request would read or compute on more than `MAX_READ_VALUES` values."""
    if values > MAX_READ_VALUES:
        raise errors.InvalidArgumentError(
            "%s would take %d values, more than the %d one request may read: %s"
            % (what, values, MAX_READ_VALUES, instead))
