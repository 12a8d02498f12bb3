"""scipy and scikit-learn are imported once, under one lock, never concurrently.

The tab's first page sends its analysis requests at once. When two request threads
imported different parts of scipy at the same time, one of them saw the package half
initialised, and every later analysis of that TensorBoard answered 404 ("module
'scipy' has no attribute '_lib'"). `analysis.libraries.load` imports them all under
one lock before any analysis imports its own part.
"""

import concurrent.futures
import subprocess
import sys
import textwrap
import urllib.parse

import numpy as np
import pytest
from conftest import http_get, tensorboard_server

import tb_lstm_states as tls
from tb_lstm_states import states as states_lib

PREFIX = "/data/plugin/lstm_states/"

# Run in a fresh interpreter: a meta path finder records every scipy or sklearn
# import that starts while `libraries.load` is neither done nor running, i.e. one
# that could race with another thread's.
CHECK = textwrap.dedent(
    """
    import sys
    import numpy as np
    from tb_lstm_states.analysis import libraries

    unguarded = []

    class Watch:
        def find_spec(self, name, path=None, target=None):
            top = name.split(".")[0]
            if top in ("scipy", "sklearn") and not (libraries._loaded or libraries._lock.locked()):
                unguarded.append(name)
            return None

    sys.meta_path.insert(0, Watch())
    import tb_lstm_states.server.routes  # the plugin's modules import neither at load
    assert not [m for m in sys.modules if m.split(".")[0] in ("scipy", "sklearn")]
    from tb_lstm_states import analysis
    from tb_lstm_states.analysis import search, significance, units

    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 60, 8)).astype(np.float32)
    lengths = np.full(4, 60)
    entry = sys.argv[1]
    if entry == "pca":
        analysis.project_pca([x.reshape(-1, 8)[:100], x.reshape(-1, 8)[100:200]])
    elif entry == "tsne":
        flat, keys = x.reshape(-1, 8), np.arange(120)
        analysis.project_tsne([flat[:120], flat[120:240]], [keys, keys])
    elif entry == "cluster":
        units.cluster_order(x.reshape(-1, 8))
    elif entry == "significance":
        significance.lagged_significance(x, rng.standard_normal((4, 60)), lengths, 5)
    elif entry == "match":
        significance.match_units(x, x[..., ::-1], lengths)
    elif entry == "search":
        search.window_distances(x, lengths, x[0, 3:8])
    assert libraries._loaded
    print("unguarded:", unguarded)
    sys.exit(1 if unguarded else 0)
    """
)


@pytest.mark.parametrize("entry", ["pca", "tsne", "cluster", "significance", "match", "search"])
def test_every_analysis_imports_scipy_only_through_the_lock(entry):
    result = subprocess.run(
        [sys.executable, "-c", CHECK, entry], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("first-requests")
    rng = np.random.default_rng(1)
    for run in ("a", "b"):
        with tls.StateWriter(str(root / run)) as writer:
            for step in range(3):
                hidden = rng.standard_normal((4, 80, 12)).astype(np.float32)
                layer = states_lib.LayerStates(hidden, None, {})
                states = states_lib.RecurrentStates(kind="rnn", layers=[layer], lengths=[80] * 4)
                series = {"price": np.cumsum(rng.standard_normal((4, 80)), axis=1)}
                writer.add_states("enc", states, step, series=series, dtype="float32")
    return root


FIRST_REQUESTS = [
    ("units", dict(run="a", step=2)),
    ("units", dict(run="a", step=2, series="price")),
    ("match", dict(run="a", step=2, other_run="b", other_tag="enc", other_step=2)),
    ("search", dict(run="a", step=2, sequence=0, start=10, stop=20)),
    ("projection", dict(run="a", method="pca")),
    ("projection", dict(run="b", method="tsne")),
]


@pytest.mark.parametrize("load_fast", [True, False], ids=["load_fast", "python_loader"])
def test_the_first_requests_at_once_all_answer(logdir, load_fast):
    """As the tab's first page does: every analysis route at once on a fresh server."""
    with tensorboard_server(logdir, load_fast=load_fast) as url:

        def get(request):
            route, params = request
            query = dict(tag="enc", layer=0, kind="hidden", **params)
            return http_get(url + PREFIX + route + "?" + urllib.parse.urlencode(query), 120)

        with concurrent.futures.ThreadPoolExecutor(len(FIRST_REQUESTS)) as pool:
            answers = list(pool.map(get, FIRST_REQUESTS))
        for request, (status, _, body) in zip(FIRST_REQUESTS, answers):
            assert status == 200, (request, body[:300])
