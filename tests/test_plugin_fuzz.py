"""No query string makes any route answer 500: hypothesis against every route.

Queries mix valid values (so that the fuzzing reaches deep into each route) with
junk: unicode, empty strings, huge and negative numbers, NaN, repeated and unknown
parameters, and raw bytes that are not UTF-8.
"""

import glob
import os
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_plugin_support import PREFIX, copy_v1_runs, make_client, write_run

ROUTES = {
    "runs": [],
    "steps": ["run", "tag"],
    "states": [
        "run",
        "tag",
        "step",
        "layer",
        "kind",
        "sequence",
        "format",
        "start",
        "stop",
        "bins",
    ],
    "series": ["run", "tag", "step"],
    "overview": ["run", "tag"],
    "changes": ["run", "tag", "step", "layer", "kind", "sequence", "threshold"],
    "units": ["run", "tag", "step", "layer", "kind", "series", "max_lag"],
    "match": [
        "run",
        "tag",
        "step",
        "layer",
        "kind",
        "other_run",
        "other_tag",
        "other_step",
        "other_layer",
        "other_kind",
    ],
    "search": [
        "run",
        "tag",
        "step",
        "layer",
        "kind",
        "sequence",
        "start",
        "stop",
        "units",
        "steps",
        "top",
    ],
    "projection": ["run", "tag", "layer", "kind", "method", "steps", "sequence"],
}

VALID = {
    "run": ["lstm", "gru", ".", "lstm_run", "gru_run", "torn"],
    "tag": ["encoder", "decoder", "encoder/_statistics", "decoder/gru"],
    "step": ["0", "1", "2", "10", "20"],
    "layer": ["0", "1", "3"],
    "kind": ["cell", "hidden", "forget", "update", "new"],
    "sequence": ["0", "1", "2", "0,1"],
    "format": ["npy", "binary"],
    "threshold": ["3.5", "0.1", "1e300"],
    "method": ["pca", "tsne"],  # umap's first import compiles for ~30 s: see test_plugin
    "steps": ["0,1", "2", "10,20", "0,2,1"],
    "start": ["0", "1", "3", "6", "7"],
    "stop": ["1", "4", "7", "12", "3000"],
    "bins": ["1", "2", "5", "100"],
    "series": ["target", "nope"],
    "max_lag": ["0", "3", "1000"],
    "other_run": ["lstm", "gru", "lstm_run"],
    "other_tag": ["encoder", "decoder"],
    "other_step": ["0", "1", "20"],
    "other_layer": ["0", "1"],
    "other_kind": ["cell", "hidden"],
    "units": ["0", "0,1", "3,1", "1,1"],
    "top": ["1", "5", "1000"],
}

JUNK = st.one_of(
    st.text(max_size=12),
    st.just(""),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(
        [
            "nan",
            "NaN",
            "inf",
            "-inf",
            "-0",
            "+1",
            "1e3",
            "0x10",
            "1_000",
            " 1",
            "１",
            "٣",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775809",
            ",",
            "0,,1",
            "0," * 50,
            "../../etc/passwd",
            "\x00",
            "\ud800",
            "🙂",
            "a" * 5000,
        ]
    ),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    write_run(root / "lstm", steps=range(3), lengths=[7, 5, 0], description="<b>x</b>")
    write_run(
        root / "gru",
        tag="decoder",
        steps=[10, 20],
        kind="gru",
        directions=2,
        series=False,
        tokens=False,
        dtype="float32",
    )
    write_run(root / "torn", steps=range(2), time=3000)  # long enough for a pyramid
    for path in glob.glob(str(root / "torn" / "plugins" / "lstm_states" / "*.1.*")):
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) - 1000)
    copy_v1_runs(root)  # lstm_run: encoder 0-2; gru_run: decoder/gru 5
    fuzz_client, _, _ = make_client(root)
    return fuzz_client


RECORDS = {
    # A coherent valid query for each logged tag, which mutations then break.
    "lstm": dict(
        run="lstm",
        tag="encoder",
        step=["0", "1", "2"],
        layer=["0", "1"],
        kind=["cell", "hidden", "input", "forget", "candidate", "output"],
        sequence=["0", "1", "2"],
        steps=["0,1", "2", "0,1,2"],
    ),
    "gru": dict(
        run="gru",
        tag="decoder",
        step=["10", "20"],
        layer=["0", "1", "2", "3"],
        kind=["hidden", "reset", "update", "new"],
        sequence=["0", "2"],
        steps=["10", "10,20"],
    ),
    "torn": dict(
        run="torn",
        tag="encoder",
        step=["0", "1"],
        layer=["0", "1"],
        kind=["cell", "hidden", "forget"],
        sequence=["0", "2"],
        steps=["0,1", "0"],
        stop=["3000", "2999", "100", "1500"],
        bins=["1", "3", "10", "2999"],
    ),
    "v1 lstm": dict(
        run="lstm_run",
        tag="encoder",
        step=["0", "1", "2"],
        layer=["0", "1"],
        kind=["cell", "hidden", "output"],
        sequence=["0", "1"],
        steps=["0,1", "2"],
        stop=["12", "5", "13"],
    ),
    "v1 gru": dict(
        run="gru_run",
        tag="decoder/gru",
        step=["5"],
        layer=["0"],
        kind=["hidden", "update"],
        sequence=["0", "1"],
        steps=["5"],
    ),
}


def queries(names):
    """Query pairs: a valid query for a random tag, each value mutated 1 time in 8."""

    def valid(record, name):
        choices = record.get(name, VALID.get(name, [""]))
        return st.sampled_from([choices] if isinstance(choices, str) else choices)

    def value(record, name):
        other = st.one_of(JUNK, st.sampled_from(VALID.get(name, [""])))
        return st.integers(0, 7).flatmap(lambda i: other if i == 0 else valid(record, name))

    def from_record(record):
        complete = st.fixed_dictionaries({n: value(record, n) for n in names}).map(
            lambda d: list(d.items())
        )
        pair = st.sampled_from([*names, "extra"]).flatmap(
            lambda n: st.tuples(st.just(n), value(record, n))
        )

        def maybe(strategy):
            return st.integers(0, 3).flatmap(lambda i: strategy if i == 0 else st.just([]))

        return st.tuples(
            complete,
            maybe(st.lists(pair, max_size=3)),
            maybe(st.lists(st.sampled_from(names or ["x"]), max_size=2)),
        )

    return st.sampled_from(sorted(RECORDS)).flatmap(lambda key: from_record(RECORDS[key]))


def check(client, route, query_string):
    response = client.get(PREFIX + route, query_string=query_string)
    assert response.status_code in (200, 400, 404), (route, query_string, response.data[:500])
    if response.status_code != 200:
        assert response.headers["Content-Type"].startswith("text/plain")


FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_no_query_answers_500(client, route):
    names = ROUTES[route]

    @FUZZ
    @given(queries(names))
    def run(case):
        complete, extra, dropped = case
        pairs = [(n, v) for n, v in complete if n not in dropped] + extra
        encoded = urllib.parse.urlencode(
            [(n, v.encode("utf-8", "surrogatepass")) for n, v in pairs]
        )
        check(client, route, encoded)

    run()


@FUZZ
@given(route=st.sampled_from(sorted(ROUTES)), raw=st.binary(max_size=64))
def test_raw_bytes_queries(client, route, raw):
    # Percent-encoded bytes that need not be UTF-8, and stray '&', '=' and '%'.
    check(client, route, urllib.parse.quote_from_bytes(raw, safe="&=%"))


@FUZZ
@given(path=st.text(max_size=40))
def test_static_paths(client, path):
    response = client.get(PREFIX + urllib.parse.quote(path.encode("utf-8", "surrogatepass")))
    assert response.status_code in (200, 400, 404, 405), (path, response.data[:200])
