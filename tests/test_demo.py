"""The demo: `python -m demo` writes runs that everything downstream can read.

A short run (one epoch) checks that every run and tag is readable offline
(`read_states`), that the scalars are there, and that a real TensorBoard lists
it all through the plugin. `test_full_demo_tells_its_story` trains the full demo
(about 35 s on 2 cores) and checks its story: the depth unit and the anomaly
recall. `benchmarks/demo_story.py` prints those figures and the training time.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, tensorboard_server, wait_for_json

if REPO not in sys.path:  # the demo is not part of the installed package
    sys.path.insert(0, REPO)

from demo import brackets, prices

pytestmark = pytest.mark.timeout(600)

EPOCHS = 1
RUNS = {"%s/%s" % (brackets.TASK, name): brackets.TAG for name, _ in brackets.RUNS}
RUNS.update({"%s/%s" % (prices.TASK, name): prices.TAG for name, _ in prices.RUNS})
SCALARS = {
    brackets.TASK: {
        "loss/train",
        "accuracy/train",
        "loss/probe",
        "accuracy/probe",
        "depth_unit/abs_r",
    },
    prices.TASK: {
        "loss/train",
        "loss/probe",
        "accuracy/direction",
        "change_track/recall",
        "change_track/precision",
    },
}


@pytest.fixture(scope="module")
def demo_logdir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo")
    logdir = tmp / "runs"
    summary = tmp / "summary.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "demo",
            "--logdir",
            str(logdir),
            "--epochs",
            str(EPOCHS),
            "--quiet",
            "--summary",
            str(summary),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return logdir, json.loads(summary.read_text()), result.stdout


def _scalar_tags(run_dir):
    from tensorboard.backend.event_processing import event_accumulator

    accumulator = event_accumulator.EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {
        tag: [e.step for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]
    }


def test_demo_writes_every_run(demo_logdir):
    logdir, summary, stdout = demo_logdir
    assert sorted(summary["runs"]) == sorted(RUNS)
    assert "trained and logged 4 runs" in stdout
    for run in RUNS:
        assert os.path.isdir(logdir / run), run


def test_every_run_and_tag_reads_back(demo_logdir):
    import tb_lstm_states as tls

    logdir, _, _ = demo_logdir
    records = list(tls.read_states(str(logdir)))
    seen = {}
    for rec in records:
        seen.setdefault((rec.run, rec.tag), []).append(rec.step)
        assert rec.states.kind == "lstm"
        assert rec.description
        layer = rec.states.layers[0]
        for name in ("cell", "hidden", "input", "forget", "candidate", "output"):
            array = layer.get(name)
            assert array.shape[:2] == (rec.states.batch_size, rec.states.time_steps)
            assert np.all(np.isfinite(array)), (rec.run, name)
        if rec.tag == brackets.TAG:
            assert rec.states.layers[0].cell.shape == (
                brackets.PROBE_SEQUENCES,
                brackets.PROBE_LENGTH,
                brackets.HIDDEN_SIZE,
            )
            assert len(rec.tokens) == brackets.PROBE_SEQUENCES
            assert all(len(seq) == brackets.PROBE_LENGTH for seq in rec.tokens)
            assert set(rec.series) == {"depth"}
        else:
            assert rec.tokens is None
            assert set(rec.series) == {"price", "prediction", "anomaly"}
            assert rec.series["price"].shape == (prices.PROBE_SEQUENCES, prices.PROBE_LENGTH)
    assert seen == {(run, tag): list(range(EPOCHS + 1)) for run, tag in RUNS.items()}


def test_every_run_has_its_scalars(demo_logdir):
    logdir, _, _ = demo_logdir
    for run in RUNS:
        tags = _scalar_tags(logdir / run)
        expected = SCALARS[run.split("/")[0]]
        assert expected <= set(tags), (run, sorted(tags))
        for tag in expected:
            first = 1 if tag.endswith("/train") else 0
            assert tags[tag] == list(range(first, EPOCHS + 1)), (run, tag, tags[tag])


def test_story_reads_from_the_logdir(demo_logdir):
    from demo import story

    logdir, summary, _ = demo_logdir
    figures = story.story(str(logdir))
    for run, f in figures.items():
        assert f["steps"] == EPOCHS + 1
        trained = summary["runs"][run]
        # The figures from the float16 records agree with the training process's own.
        if run.startswith(brackets.TASK):
            assert abs(abs(f["r"]) - abs(trained["r"])) < 0.01
        else:
            assert f["total"] == prices.PROBE_SEQUENCES * (prices.PROBE_JUMPS + prices.PROBE_BURSTS)
            assert abs(f["recall"] - trained["recall"]) <= 1.0 / f["total"] + 1e-9


def test_tensorboard_lists_the_demo(demo_logdir):
    logdir, _, _ = demo_logdir
    with tensorboard_server(logdir, load_fast=True) as url:
        runs = wait_for_json(
            url + "/data/plugin/lstm_states/runs", lambda body: set(body) == set(RUNS), timeout=60
        )
        for run, tag in RUNS.items():
            info = runs[run][tag]
            assert info["steps"] == EPOCHS + 1
            assert info["kind"] == "lstm"
        scalar_runs = wait_for_json(
            url + "/data/plugin/scalars/tags", lambda body: set(RUNS) <= set(body), timeout=60
        )
        assert "loss/probe" in scalar_runs["brackets/lr_0.01"]


def test_full_demo_tells_its_story(tmp_path):
    """The whole demo, default epochs (about 35 s on 2 cores): the story is real.

    Measured from the logged float16 records: a cell unit follows the nesting depth
    with |r| >= 0.9 in the final epoch (lr 0.01 run), and the change track flags most
    (>= 75%) of the injected anomalies within 3 steps of their onset in every prices run.
    """
    from demo import story

    logdir = tmp_path / "runs"
    result = subprocess.run(
        [sys.executable, "-m", "demo", "--logdir", str(logdir), "--quiet"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    figures = story.story(str(logdir))
    depth = figures["brackets/lr_0.01"]
    assert depth["final_step"] == brackets.EPOCHS
    assert abs(depth["r"]) >= 0.9, depth
    for name, _ in prices.RUNS:
        found = figures["%s/%s" % (prices.TASK, name)]
        assert found["final_step"] == prices.EPOCHS
        assert found["recall"] >= 0.75, (name, found)


QUICK_START = """
import sys, torch
import tb_lstm_states as tls
from torch.utils.tensorboard import SummaryWriter

model = torch.nn.LSTM(4, 8, batch_first=True)
sw = SummaryWriter(sys.argv[1])
writer = tls.StateWriter(summary_writer=sw)
probe = torch.randn(3, 10, 4)
for epoch in range(2):
    sw.add_scalar("loss/val", 1.0 / (epoch + 1), epoch)
    writer.log("encoder", model, probe, epoch)
writer.close()
sw.close()
"""


def test_readme_quick_start(tmp_path):
    """The README's quick start, in a fresh interpreter as a user runs it."""
    import tb_lstm_states as tls

    run = tmp_path / "exp1"
    result = subprocess.run(
        [sys.executable, "-c", QUICK_START, str(run)],
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = list(tls.read_states(str(tmp_path)))
    assert [(r.run, r.tag, r.step) for r in records] == [
        ("exp1", "encoder", 0),
        ("exp1", "encoder", 1),
    ]
    assert records[0].states.layers[0].cell.shape == (3, 10, 8)
    assert _scalar_tags(run) == {"loss/val": [0, 1]}
