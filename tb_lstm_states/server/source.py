"""`RecordSource`: the steps and records of a tag, through the data provider, cached.

The plugin lists steps only through `context.data_provider`, so it works on both
load paths (the Rust data server and the Python loader). Version 2 steps are index
tensors; their arrays are read from the run's `plugins/lstm_states/` directory in
checked byte ranges (`arrays.py`). Version 1 steps are blob sequences, read from the
event files with their checksums checked (`events.py`) when there is a logdir to
find them in, else through the provider.

A tag's listing (`listing.TagIndex`) serves the requests of the next
`INDEX_MAX_AGE_SECONDS` before it is checked again; parsed indexes, version 1
headers and arrays are kept in the plugin's caches.
"""

import contextlib
import dataclasses
import threading
import time
from concurrent import futures
from typing import Any, Dict, Optional, Set, Tuple

from tensorboard import errors
from tensorboard.backend.event_processing import data_provider as data_provider_lib
from tensorboard.data import provider
from tensorboard.util import tb_logging

from tb_lstm_states import cache as cache_lib
from tb_lstm_states import metadata
from tb_lstm_states.server import arrays, events, listing, records
from tb_lstm_states.storage import format, legacy

logger = tb_logging.get_logger()

# How long a listing of a tag's steps serves `states` and friends before it is
# checked again. `steps`, `runs` and `overview` always check.
INDEX_MAX_AGE_SECONDS = 2.0


class RecordSource:
    """Lists the steps of states tags and reads their records, either version.

    Attributes:
      headers: the cache of indexes, version 1 headers and checksum tables.
      cache: the cache of arrays and results.
    """

    def __init__(
        self,
        data_provider,
        logdir: Optional[str],
        *,
        downsample: int,
        headers: cache_lib.ByteBoundedCache,
        cache: cache_lib.ByteBoundedCache,
        files: arrays.ArrayFiles,
        request_pool: futures.Executor,
        prefetch_pool: futures.Executor,
    ):
        """Creates the source.

        Args:
          data_provider: the `context.data_provider` of TensorBoard.
          logdir: the logdir, or None when TensorBoard has none (a data server
            elsewhere): version 1 records are then read through the provider.
          downsample: the most steps to ask the provider for.
          headers, cache: the plugin's caches (small headers; arrays and results).
          files: the array files of version 2 steps.
          request_pool: runs reads beside each other (a version 1 header and array).
          prefetch_pool: reads version 1 headers ahead of need.
        """
        self._data_provider = data_provider
        self._logdir = logdir
        self._downsample = downsample
        self.headers = headers
        self.cache = cache
        self._files = files
        self._request_pool = request_pool
        self._prefetch_pool = prefetch_pool
        self._indexes: Dict[tuple, listing.TagIndex] = {}
        self._indexes_lock = threading.Lock()
        self._prefetching: Set[tuple] = set()
        # Version 1 records are read from the event files, checksums checked
        # (`events.py`), when there is a logdir to find them in. Else through the
        # provider: the Rust data server answers small blobs slowly (a TCP delayed-ACK
        # stall) but serves many at once; so blobs are read in parallel: headers
        # ahead of need, and a header beside its array. The in-process provider
        # copies a whole record to read any blob of it.
        self._events = events.EventRecords(logdir) if logdir else None
        self._read_ahead = self._events is None and not isinstance(
            data_provider, data_provider_lib.MultiplexerDataProvider
        )
        self._warned = cache_lib.ByteBoundedCache(1 << 20)  # problems already logged

    def warn_once(self, key, message):
        """Logs a problem of the logdir once (not on every poll of the tab)."""
        if self._warned.get(key) is None:
            self._warned.put(key, True, size=256)
            logger.warning("lstm_states: %s", message)

    # ------------------------------------------------------------------
    # Listing steps through the data provider.

    def list_tensors(self, ctx, experiment, run_tag_filter=None):
        return self._data_provider.list_tensors(
            ctx,
            experiment_id=experiment,
            plugin_name=metadata.PLUGIN_NAME,
            run_tag_filter=run_tag_filter,
        )

    def read_tensors(self, ctx, experiment, run_tag_filter=None):
        return self._data_provider.read_tensors(
            ctx,
            experiment_id=experiment,
            plugin_name=metadata.PLUGIN_NAME,
            downsample=self._downsample,
            run_tag_filter=run_tag_filter,
        )

    def list_blob_sequences(self, ctx, experiment, run_tag_filter=None):
        return self._data_provider.list_blob_sequences(
            ctx,
            experiment_id=experiment,
            plugin_name=metadata.PLUGIN_NAME,
            run_tag_filter=run_tag_filter,
        )

    def read_blob_sequences(self, ctx, experiment, run_tag_filter=None):
        return self._data_provider.read_blob_sequences(
            ctx,
            experiment_id=experiment,
            plugin_name=metadata.PLUGIN_NAME,
            downsample=self._downsample,
            run_tag_filter=run_tag_filter,
        )

    @staticmethod
    def content(series, run, tag):
        """The plugin content of a listed time series (404 naming it if malformed)."""
        try:
            return metadata.parse_plugin_content(series.plugin_content)
        except ValueError as e:
            raise errors.NotFoundError("run %r tag %r: %s" % (run, tag, e)) from None

    @staticmethod
    def _structure(content, run, tag):
        try:
            structure = listing.structure(content)
        except ValueError as e:
            raise errors.NotFoundError("run %r tag %r: %s" % (run, tag, e)) from None
        if structure is None:
            raise errors.NotFoundError(
                "run %r tag %r is not an lstm_states record (role %r)"
                % (run, tag, content.get("role"))
            )
        return structure

    def tag_index(self, ctx, experiment, run, tag, *, max_age=INDEX_MAX_AGE_SECONDS):
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
            # changed: skip the listing (a round trip to the data server).
            data = self.read_blob_sequences(ctx, experiment, run_tag_filter).get(run, {}).get(tag)
            if data is not None:
                return self.store_index(
                    ctx,
                    experiment,
                    run,
                    tag,
                    listing.make_index(listing.V1, cached.structure, cached.description, data, now),
                )
        series = self.list_tensors(ctx, experiment, run_tag_filter).get(run, {}).get(tag)
        if series is not None:
            content = self.content(series, run, tag)
            if content.get("role") == metadata.ROLE_INDEX:
                signature = listing.signature(series)
                if (
                    cached is not None
                    and cached.version == listing.V2
                    and cached.signature == signature
                ):
                    return self.store_index(
                        ctx, experiment, run, tag, dataclasses.replace(cached, fetched=now)
                    )
                structure = self._structure(content, run, tag)
                data = self.read_tensors(ctx, experiment, run_tag_filter).get(run, {}).get(tag, [])
                return self.store_index(
                    ctx,
                    experiment,
                    run,
                    tag,
                    listing.make_index(
                        listing.V2, structure, series.description, data, now, signature
                    ),
                )
        blobs = self.list_blob_sequences(ctx, experiment, run_tag_filter).get(run, {}).get(tag)
        if blobs is None:
            if series is not None:
                self._structure(self.content(series, run, tag), run, tag)  # 404 naming the role
            self._raise_unknown(ctx, experiment, run, tag)
        structure = self._structure(self.content(blobs, run, tag), run, tag)
        data = self.read_blob_sequences(ctx, experiment, run_tag_filter).get(run, {}).get(tag, [])
        return self.store_index(
            ctx,
            experiment,
            run,
            tag,
            listing.make_index(listing.V1, structure, blobs.description, data, now),
        )

    def store_index(self, ctx, experiment, run, tag, index):
        """Keeps the listing of (run, tag) and, where version 1 headers are read
        through the provider, starts reading them ahead of need."""
        with self._indexes_lock:
            self._indexes[(experiment, run, tag)] = index
        if self._read_ahead and index.version == listing.V1:
            for datum in index.data:
                key = self._header_key(experiment, run, tag, datum)
                with self._indexes_lock:
                    if key in self._prefetching or self.headers.get(key) is not None:
                        continue
                    self._prefetching.add(key)
                self._prefetch_pool.submit(
                    self._prefetch_header, ctx, experiment, run, tag, datum, key
                )
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
        known = set(self.list_tensors(ctx, experiment, run_filter))
        known |= set(self.list_blob_sequences(ctx, experiment, run_filter))
        if run not in known:
            raise errors.NotFoundError("no run %r with lstm_states data" % (run,))
        raise errors.NotFoundError("run %r has no lstm_states tag %r" % (run, tag))

    def _datum(self, ctx, experiment, run, tag, step):
        index = self.tag_index(ctx, experiment, run, tag)
        datum = index.by_step.get(step)
        if datum is None:  # perhaps written since the listing: list again
            index = self.tag_index(ctx, experiment, run, tag, max_age=0.0)
            datum = index.by_step.get(step)
        if datum is None:
            span = (
                "no steps"
                if not index.data
                else "steps %d to %d" % (index.data[0].step, index.data[-1].step)
            )
            raise errors.NotFoundError(
                "run %r tag %r has no step %d (it has %d: %s)"
                % (run, tag, step, len(index.data), span)
            )
        return index, datum

    def all_indexes(self, ctx, experiment) -> Dict[Tuple[str, str], listing.TagIndex]:
        """The listing of every states tag of every run, both versions.

        A tag whose plugin data is malformed (not JSON, too deep, sizes beyond the
        caps, a newer version) is left out, with a warning logged once naming it.
        Version 2 listings whose time series did not change are reused.
        """
        tensors = self.list_tensors(ctx, experiment)
        blobs = self.list_blob_sequences(ctx, experiment)
        now = time.monotonic()
        # (run, tag) -> TagIndex, or (version, structure, series) still to read
        found: Dict[Tuple[str, str], Any] = {}
        stale = []
        for version, listed in ((listing.V1, blobs), (listing.V2, tensors)):
            for run, tags in listed.items():
                for tag, series in tags.items():
                    try:
                        structure = listing.structure(
                            metadata.parse_plugin_content(series.plugin_content)
                        )
                    except records.LOGDIR_ERRORS as e:
                        self.warn_once(
                            ("runs", run, tag, type(e).__name__),
                            "skipping run %r tag %r: its plugin data: %s"
                            % (run, tag, records.message(e)),
                        )
                        continue
                    if structure is None:
                        continue  # a version 1 statistics tensor
                    if version == listing.V2:
                        with self._indexes_lock:
                            cached = self._indexes.get((experiment, run, tag))
                        if (
                            cached is not None
                            and cached.version == listing.V2
                            and cached.signature == listing.signature(series)
                        ):
                            found[(run, tag)] = cached
                            continue
                        stale.append((run, tag))
                    found[(run, tag)] = (version, structure, series)
        if stale:
            data = self.read_tensors(
                ctx,
                experiment,
                provider.RunTagFilter(
                    runs=sorted({r for r, _ in stale}), tags=sorted({t for _, t in stale})
                ),
            )
            for run, tag in stale:
                _, structure, series = found[(run, tag)]
                found[(run, tag)] = self.store_index(
                    ctx,
                    experiment,
                    run,
                    tag,
                    listing.make_index(
                        listing.V2,
                        structure,
                        series.description,
                        data.get(run, {}).get(tag, []),
                        now,
                        listing.signature(series),
                    ),
                )
        if any(isinstance(v, tuple) for v in found.values()):
            data = self.read_blob_sequences(ctx, experiment)
            for (run, tag), value in list(found.items()):
                if isinstance(value, tuple):
                    _, structure, series = value
                    found[(run, tag)] = listing.make_index(
                        listing.V1,
                        structure,
                        series.description,
                        data.get(run, {}).get(tag, []),
                        now,
                    )
        return found

    # ------------------------------------------------------------------
    # Records: one step, either version.

    def record(self, ctx, experiment, run, tag, step, want=None) -> records.Record:
        """The record of one step.

        Args:
          want: `(layer, kind)` the caller will read, so that a version 1 record's
            array can be read beside its header.
        """
        index, datum = self._datum(ctx, experiment, run, tag, step)
        if index.version == listing.V2:
            return self._v2_record(experiment, run, tag, datum)
        return self._v1_record(ctx, experiment, run, tag, index, datum, want)

    def parse_index(self, experiment, run, tag, datum) -> dict:
        """The parsed and validated index of a version 2 step (cached)."""
        raw = listing.index_bytes(datum)
        key = (
            "index",
            experiment,
            run,
            tag,
            datum.step,
            datum.wall_time,
            len(raw),
            format.crc32c(raw),
        )
        return self.headers.get_or_compute(key, lambda: format.parse_index(raw))

    def _v2_record(self, experiment, run, tag, datum) -> records.V2Record:
        with records.logdir_errors(run, tag, datum.step):
            index = self.parse_index(experiment, run, tag, datum)
            format.check_file_name(index, tag, datum.step)
            path = arrays.array_file_path(self._logdir, run, index)
        return records.V2Record(run, tag, datum, index, path, self._files)

    def _read_blob(self, ctx, datum, position):
        return self._data_provider.read_blob(ctx, blob_key=datum.values[position].blob_key)

    def _blob(self, ctx, experiment, run, tag, datum, position):
        """Blob `position` of a version 1 step: from its event file, checked (the whole
        record is read and cached), or through the provider when no event file
        holds it."""
        events = self._events
        if events is not None:
            key = ("v1 record", experiment, run, tag, datum.step, datum.wall_time)
            blobs = self.cache.get_or_compute(
                key,
                lambda: events.blobs(run, tag, datum.step, datum.wall_time),
                size=lambda value: 64 + sum(len(b) + 64 for b in value or ()),
            )
            if blobs is not None:
                if len(blobs) != len(datum.values):
                    raise legacy.RecordError(
                        "malformed lstm_states record: %d blobs in the event file, %d listed"
                        % (len(blobs), len(datum.values))
                    )
                return blobs[position]
            self.warn_once(
                ("unverified", experiment, run, tag),
                "run %r tag %r: no event file under the logdir holds step %d; "
                "version 1 records are served from TensorBoard's memory, unverified"
                % (run, tag, datum.step),
            )
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
                    "states under another tag or run"
                )
            header = legacy.decode_header(self._blob(ctx, experiment, run, tag, datum, 0))
            if len(datum.values) != len(header["arrays"]) + 1:
                raise legacy.RecordError(
                    "malformed lstm_states record: %d blobs, its header describes %d"
                    % (len(datum.values), len(header["arrays"]) + 1)
                )
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
                with contextlib.suppress(errors.PublicError):
                    prefetched[guess] = self._blob(ctx, experiment, run, tag, datum, guess)
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

        return records.V1Record(
            run,
            tag,
            datum,
            header,
            load_array,
            self.cache,
            (experiment, run, tag, datum.step, datum.wall_time),
        )

    def array(self, ctx, experiment, run, tag, step, layer, kind, read_ahead=True):
        """`(record, handle)` of one layer and kind of one step (404 if absent).

        Args:
          read_ahead: whether a version 1 array may be read beside its header on
            the request pool; False when called from that pool.
        """
        record = self.record(
            ctx, experiment, run, tag, step, want=(layer, kind) if read_ahead else None
        )
        return record, record.entry(layer, kind)


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
