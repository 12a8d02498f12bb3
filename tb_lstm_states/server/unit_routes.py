"""`UnitRoutes`: the routes of the tab that say what a unit means, mixed into
`routes.StatesPlugin`.

- `units`: per-unit statistics, and with `series=` each unit's significance against
  it (`views.units`, `compare.py`);
- `match`: the units of another array that correspond (`compare.py`);
- `search`: where else a window of states occurs (`search.py`).

As in `routes.py`, a route method parses and validates its parameters and an `*_impl`
method computes its answer: checked against the caps before anything is read, then
run on the analysis pool (`work.py`) and cached (`_heavy`).
"""

from concurrent import futures

from tensorboard import errors
from werkzeug import wrappers

from tb_lstm_states import cache
from tb_lstm_states.server import compare, params, search, source, views, work
from tb_lstm_states.server.guard import never_500
from tb_lstm_states.server.params import Args, json_bytes_reply


class UnitRoutes:
    """The `units`, `match` and `search` routes, and `_heavy` (shared with
    projections). The plugin provides the attributes annotated here."""

    cache: cache.ByteBoundedCache
    _source: source.RecordSource
    _analysis_pool: work.WorkPool
    _request_pool: futures.ThreadPoolExecutor

    def _heavy(self, pool, key, compute, connection=None):
        """The cached result of `key`, else `compute` run on `pool` (shared by identical
        requests, cached when done even if its client left)."""
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        return pool.run(key, lambda: self.cache.get_or_compute(key, compute), connection)

    # werkzeug types `application` for plain functions; it wraps methods here, as in
    # routes.py (it passes the request as the last argument).
    @wrappers.Request.application
    @never_500
    def _serve_units(self, request):  # type: ignore[misc]
        ctx, experiment = params.context(request)
        args = Args(request)
        run, tag = args.string("run"), args.string("tag")
        step = args.integer("step")
        layer = args.integer("layer", minimum=0)
        kind = args.string("kind")
        series, max_lag = compare.parse_significance(args)
        connection = work.request_connection(request)
        body = self.units_impl(
            ctx, experiment, run, tag, step, layer, kind, series, max_lag, connection
        )
        return json_bytes_reply(request, body)

    def units_impl(
        self, ctx, experiment, run, tag, step, layer, kind, series=None, max_lag=0, connection=None
    ):
        """Returns the encoded JSON of the `units` route (cached; `views.units`),
        computed on the analysis pool (`work.py`).

        Args:
          series, max_lag: with a series, each unit's significance against it
            (`compare.py`).
          connection: the client's socket: if it closes before the work starts, the
            work is dropped.
        """
        record, handle = self._source.array(ctx, experiment, run, tag, step, layer, kind)
        views.check_units(record, handle, layer, kind)
        compare.check_significance(record, series)
        key: tuple = ("units", experiment, run, tag, record.step, record.wall_time, layer, kind)
        key += (series, max_lag) if series is not None else ()
        return self._heavy(
            self._analysis_pool,
            key,
            lambda: views.units(record, handle, layer, kind, series, max_lag),
            connection,
        )

    @wrappers.Request.application
    @never_500
    def _serve_match(self, request):  # type: ignore[misc]
        ctx, experiment = params.context(request)
        query = compare.parse_match(Args(request))
        connection = work.request_connection(request)
        return json_bytes_reply(request, self.match_impl(ctx, experiment, query, connection))

    def match_impl(self, ctx, experiment, query, connection=None):
        """Returns the encoded JSON of the `match` route (cached; `compare.match`) of a
        `compare.MatchQuery`, computed on the analysis pool (`work.py`)."""
        q = query
        one = self._source.array(ctx, experiment, q.run, q.tag, q.step, q.layer, q.kind)
        other = self._source.array(
            ctx, experiment, q.other_run, q.other_tag, q.other_step, q.other_layer, q.other_kind
        )
        compare.check_match(one, other, q)
        key = ("match", experiment, q, one[0].wall_time, other[0].wall_time)
        return self._heavy(self._analysis_pool, key, lambda: compare.match(one, other), connection)

    @wrappers.Request.application
    @never_500
    def _serve_search(self, request):  # type: ignore[misc]
        ctx, experiment = params.context(request)
        query = search.parse_search(Args(request))
        connection = work.request_connection(request)
        return json_bytes_reply(request, self.search_impl(ctx, experiment, query, connection))

    def search_impl(self, ctx, experiment, query: search.SearchQuery, connection=None):
        """Returns the encoded JSON of the `search` route (cached; `search.py`) of a
        `search.SearchQuery`, computed on the analysis pool (`work.py`).

        Every step searched is found (its index, not its array) and the whole request
        checked against the caps before any array is read.
        """
        q = query
        query_side = self._source.array(ctx, experiment, q.run, q.tag, q.step, q.layer, q.kind)
        search.check_query(query_side[0], query_side[1], q)
        index = self._source.tag_index(ctx, experiment, q.run, q.tag, max_age=0.0)
        logged = [d.step for d in index.data]
        # Checked against the listing first: a long list of unknown steps costs one
        # set difference, not a lookup each.
        missing = sorted(set(q.steps or ()) - set(logged))
        if missing:
            raise errors.NotFoundError(
                "run %r tag %r has no step %d (it has %d steps)"
                % (q.run, q.tag, missing[0], len(logged))
            )
        steps = logged if q.steps is None else list(q.steps)
        if not steps:
            raise errors.NotFoundError("run %r tag %r has no steps" % (q.run, q.tag))
        found = list(
            self._request_pool.map(
                lambda s: self._source.array(
                    ctx, experiment, q.run, q.tag, s, q.layer, q.kind, read_ahead=False
                ),
                steps,
            )
        )
        search.check_searched(found, q)
        key = (
            "search",
            experiment,
            q,
            query_side[0].wall_time,
            tuple((r.step, r.wall_time) for r, _ in found),
        )
        return self._heavy(
            self._analysis_pool,
            key,
            lambda: search.search_windows(query_side, found, q),
            connection,
        )
