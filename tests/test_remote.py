"""Remote logdirs: `StateWriter` and `read_states` on fsspec URLs, and TensorBoard
serving an `s3://` logdir, against moto's S3 server on 127.0.0.1 (a real HTTP S3)."""

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
import urllib.parse

import numpy as np
import pytest
import torch
from conftest import free_port, http_get, wait_for_json
from torch import nn

import tb_lstm_states as tls

pytest.importorskip("s3fs")
pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

BUCKET = "tls"
PREFIX = "/data/plugin/lstm_states/"


@pytest.fixture(scope="module")
def s3():
    """An S3 endpoint on 127.0.0.1; the variables s3fs, boto3 and TensorBoard read."""
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = "http://127.0.0.1:%d" % port
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "S3_ENDPOINT": endpoint,
        "S3_USE_HTTPS": "0",
        "S3_VERIFY_SSL": "0",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        import boto3

        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
        try:
            yield env
        finally:
            s3fs.S3FileSystem.clear_instance_cache()
            server.stop()


def _objects(prefix):
    import boto3

    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    listing = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for o in listing.get("Contents", []))


def _model():
    torch.manual_seed(0)
    return nn.LSTM(3, 5, num_layers=2, batch_first=True), torch.randn(2, 7, 3)


def test_s3_writer_writes_objects_and_nothing_local(s3, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lstm, probe = _model()
    with tls.StateWriter("s3://%s/exp/run1" % BUCKET) as writer:
        for step in range(3):
            writer.log("enc", lstm, probe, step, tokens=[list("abcdefg")] * 2)
        writer.flush()
        assert writer.logdir == "s3://tls/exp/run1"
        keys = _objects("exp/run1/")
        assert len(keys) == 4  # written by the time flush returns
    assert os.listdir(tmp_path) == []  # no local s3: directory
    assert sum("tfevents" in k for k in keys) == 1
    assert sum(k.startswith("exp/run1/plugins/lstm_states/") for k in keys) == 3

    records = list(tls.read_states("s3://%s/exp" % BUCKET))
    assert [(r.run, r.tag, r.step) for r in records] == [("run1", "enc", s) for s in range(3)]
    expected = tls.capture(lstm, probe)
    for index, layer in enumerate(expected.layers):
        for kind in ("hidden", "cell", "input", "forget", "candidate", "output"):
            got = records[-1].states.layers[index].get(kind)
            np.testing.assert_allclose(got, layer.get(kind).numpy().astype(np.float16), atol=0)
    assert records[0].tokens == [list("abcdefg")] * 2
    assert os.listdir(tmp_path) == []


def test_s3_summary_writer_and_tensorboard_serves_it(s3, tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    lstm, probe = _model()
    summary_writer = SummaryWriter("s3://%s/tb/run1" % BUCKET, flush_secs=1)
    writer = tls.StateWriter(summary_writer=summary_writer)
    for step in range(3):
        summary_writer.add_scalar("loss", 1.0 / (step + 1), step)
        writer.log("enc", lstm, probe, step)
    writer.flush()
    summary_writer.flush()
    assert len([k for k in _objects("tb/run1/") if "tfevents" in k]) == 2
    (record,) = tls.read_states("s3://%s/tb" % BUCKET, steps=2)

    # s3:// is served by the Python loader (the data server reads local and gs:// only).
    with _tensorboard("s3://%s/tb" % BUCKET, tmp_path) as base:
        runs = wait_for_json(base + PREFIX + "runs", lambda b: b.get("run1", {}).get("enc"))
        assert runs["run1"]["enc"]["steps"] == 3
        query = urllib.parse.urlencode(
            dict(run="run1", tag="enc", step=2, layer=1, kind="cell", format="npy")
        )
        status, _, body = http_get(base + PREFIX + "states?" + query)
        assert status == 200, body[:500]
        served = np.load(io.BytesIO(body), allow_pickle=False)
        expected = record.states.layers[1].cell
        assert served.dtype == expected.dtype and served.tobytes() == expected.tobytes()

        # A step written while TensorBoard runs shows up (the event object grows).
        writer.log("enc", lstm, probe, 3)
        writer.flush()
        wait_for_json(base + PREFIX + "runs", lambda b: b["run1"]["enc"]["steps"] == 4)
    writer.close()
    summary_writer.close()


def test_memory_url_round_trip():
    lstm, probe = _model()
    url = "memory://tls-test-%d/run" % os.getpid()
    with tls.StateWriter(url) as writer:
        writer.log("enc", lstm, probe, 5, dtype="float32")
    (record,) = tls.read_states(url.rsplit("/", 1)[0])
    assert (record.run, record.step) == ("run", 5)
    np.testing.assert_array_equal(
        record.states.layers[1].hidden, tls.capture(lstm, probe).layers[1].hidden.numpy()
    )


def test_unhandled_scheme_names_the_problem_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="nosuchproto://"):
        tls.StateWriter("nosuchproto://bucket/run")
    with pytest.raises(ImportError, match="gcsfs"):
        if _has("gcsfs"):
            raise ImportError("gcsfs is installed; the message names it")
        tls.StateWriter("gs://bucket/run")
    assert os.listdir(tmp_path) == []


def test_missing_package_is_named():
    code = (
        "import sys; sys.modules['s3fs'] = None\n"  # as if not installed
        "from tb_lstm_states.storage import remote\n"
        "try:\n"
        "    remote.filesystem('s3://bucket/run')\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert "s3fs" in output and "tb-lstm-states[s3]" in output, output


def _has(name):
    import importlib.util

    return importlib.util.find_spec(name) is not None


@contextlib.contextmanager
def _tensorboard(logdir, tmp_path):
    port = free_port()
    log_path = tmp_path / "tensorboard.log"
    args = [
        sys.executable,
        "-m",
        "tensorboard.main",
        "--logdir",
        logdir,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--load_fast",
        "false",
        "--reload_interval",
        "1",
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=dict(os.environ)
        )
    base = "http://127.0.0.1:%d" % port
    try:
        deadline = time.time() + 90
        while True:
            if process.poll() is not None:
                raise RuntimeError("tensorboard exited: " + log_path.read_text(errors="replace"))
            with contextlib.suppress(OSError):
                if http_get(base + "/data/plugins_listing", timeout=5)[0] == 200:
                    break
            if time.time() > deadline:
                raise RuntimeError("tensorboard did not start: " + log_path.read_text())
            time.sleep(0.2)
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
