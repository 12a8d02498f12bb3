"""`StateWriter` under `torch.distributed` (two gloo ranks on 127.0.0.1) and module wrappers."""

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import tb_lstm_states as tls
from tb_lstm_states import distributed
from tb_lstm_states.storage import writer as writer_lib


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world_size, port, logdir, all_ranks, results):
    dist.init_process_group(
        "gloo", init_method="tcp://127.0.0.1:%d" % port, rank=rank, world_size=world_size
    )
    try:
        torch.manual_seed(0)
        lstm = nn.LSTM(3, 4, batch_first=True)
        probe = torch.randn(2, 5, 3) + rank  # each rank its own probe
        errors = []
        ddp = nn.parallel.DistributedDataParallel(nn.Sequential(nn.Linear(2, 2)))
        with tls.StateWriter(logdir, all_ranks=all_ranks) as writer:
            kind = type(writer).__name__
            for step in range(3):
                writer.log("enc", lstm, probe, step)
            for call in (lambda: tls.capture(ddp, probe), lambda: writer.log("x", ddp, probe, 0)):
                try:
                    call()
                except TypeError as e:
                    errors.append(str(e))
        dist.barrier()
        results[rank] = (
            kind,
            distributed.rank(),
            errors,
            tls.capture(lstm, probe).layers[0].hidden.numpy(),
        )
    finally:
        dist.destroy_process_group()


def _run(tmp_path, all_ranks):
    logdir = str(tmp_path / "run")
    results = mp.Manager().dict()
    mp.spawn(_worker, args=(2, _free_port(), logdir, all_ranks, results), nprocs=2, join=True)
    return logdir, dict(results)


def test_two_gloo_ranks_leave_one_record_per_step(tmp_path):
    logdir, results = _run(tmp_path, all_ranks=False)
    records = list(tls.read_states(logdir))
    assert [(r.tag, r.step) for r in records] == [("enc", 0), ("enc", 1), ("enc", 2)]
    # Rank 0's probe: rank 1 wrote nothing, not even an event file.
    np.testing.assert_allclose(records[0].states.layers[0].hidden, results[0][3], atol=2e-3)
    assert results[0][:2] == ("StateWriter", 0)
    assert results[1][:2] == ("_OtherRankWriter", 1)
    assert len([f for f in os.listdir(logdir) if "tfevents" in f]) == 1
    for rank in (0, 1):
        messages = results[rank][2]
        assert len(messages) == 2, messages
        assert all(".module" in m and "DistributedDataParallel" in m for m in messages)


def test_all_ranks_writes_each_rank_under_its_own_tag(tmp_path):
    logdir, results = _run(tmp_path, all_ranks=True)
    records = list(tls.read_states(logdir))
    assert sorted((r.tag, r.step) for r in records) == [
        ("enc/rank%d" % rank, step) for rank in (0, 1) for step in range(3)
    ]
    for rank in (0, 1):
        record = next(r for r in records if r.tag == "enc/rank%d" % rank)
        np.testing.assert_allclose(record.states.layers[0].hidden, results[rank][3], atol=2e-3)


def test_no_process_group_writes_as_before(tmp_path):
    assert distributed.rank() is None
    with tls.StateWriter(str(tmp_path), all_ranks=True) as writer:
        assert type(writer) is writer_lib.StateWriter
        writer.log("enc", nn.GRU(2, 3), torch.randn(4, 1, 2), 0)
    assert [r.tag for r in tls.read_states(str(tmp_path))] == ["enc"]


def test_torch_compile_wrapper_names_orig_mod(tmp_path):
    lstm = nn.LSTM(2, 3)
    compiled = torch.compile(lstm)  # compiles nothing until called
    with pytest.raises(TypeError, match=r"\._orig_mod"):
        tls.capture(compiled, torch.randn(4, 1, 2))
    with tls.StateWriter(str(tmp_path)) as writer, pytest.raises(TypeError, match="_orig_mod"):
        writer.log("enc", compiled, torch.randn(4, 1, 2), 0)
    model = torch.compile(nn.Sequential(lstm))
    with pytest.raises(TypeError, match=r"model\._orig_mod\.<the recurrent layer>"):
        tls.capture(model, torch.randn(4, 1, 2))


def test_distributed_module_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, tb_lstm_states.distributed as d; assert d.rank() is None; "
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
