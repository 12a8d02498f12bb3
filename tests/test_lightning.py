"""`tb_lstm_states.lightning.StatesCallback` with real Lightning trainers on CPU."""

import importlib
import os
import pickle

import numpy as np
import pytest
import torch
from torch import nn

import tb_lstm_states as tls

PACKAGES = [
    name
    for name in ("lightning.pytorch", "pytorch_lightning")
    if importlib.util.find_spec(name.split(".")[0]) is not None
]
if not PACKAGES:
    pytest.skip("Lightning is not installed (pip install lightning)", allow_module_level=True)

from tb_lstm_states.lightning import StatesCallback  # noqa: E402


def _module_class(pl):
    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Module()
            self.encoder.lstm = nn.LSTM(3, 4, batch_first=True)
            self.head = nn.Linear(4, 1)

        def forward(self, x):
            return self.head(self.encoder.lstm(x)[0][:, -1])

        def training_step(self, batch, _):
            x, y = batch
            loss = nn.functional.mse_loss(self(x), y)
            self.log("loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

        def train_dataloader(self):
            generator = torch.Generator().manual_seed(0)
            x = torch.randn(8, 5, 3, generator=generator)
            return torch.utils.data.DataLoader(
                torch.utils.data.TensorDataset(x, x.sum((1, 2))[:, None]), batch_size=4
            )

    return Tiny


# Module level, so ddp_spawn's processes can unpickle them.
if "lightning.pytorch" in PACKAGES:
    import lightning.pytorch

    TinyLightning = _module_class(lightning.pytorch)
    TinyLightning.__qualname__ = TinyLightning.__name__ = "TinyLightning"
if "pytorch_lightning" in PACKAGES:
    import pytorch_lightning

    TinyPytorchLightning = _module_class(pytorch_lightning)
    TinyPytorchLightning.__qualname__ = TinyPytorchLightning.__name__ = "TinyPytorchLightning"


def _fit(package, tmp_path, loss=None, **trainer_args):
    pl = importlib.import_module(package)
    loggers = importlib.import_module(package + ".loggers")
    model = (TinyLightning if package == "lightning.pytorch" else TinyPytorchLightning)()
    logger = loggers.TensorBoardLogger(str(tmp_path / "tb"), name="exp")
    probe = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(1))
    callback = StatesCallback("encoder.lstm", probe, tag="enc", loss=loss)
    trainer = pl.Trainer(
        max_epochs=3,
        logger=logger,
        callbacks=[callback],
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        **trainer_args,
    )
    trainer.fit(model)
    return logger, model, probe


@pytest.mark.parametrize("package", PACKAGES)
def test_one_process_leaves_steps_0_1_2(package, tmp_path):
    logger, model, probe = _fit(package, tmp_path, devices=1)
    records = list(tls.read_states(logger.root_dir))
    assert [(r.run, r.tag, r.step) for r in records] == [("version_0", "enc", s) for s in range(3)]
    # The last record is of the trained module.
    expected = tls.capture(model.encoder.lstm, probe).layers[0].hidden.numpy()
    np.testing.assert_allclose(records[-1].states.layers[0].hidden, expected, atol=2e-3)
    # Beside the logger's scalars, in its run directory.
    assert any(
        "tfevents" in f and "lstm_states" not in f
        for f in os.listdir(os.path.join(logger.root_dir, "version_0"))
    )


@pytest.mark.parametrize("package", PACKAGES[:1])
def test_ddp_spawn_two_processes_leaves_steps_0_1_2(package, tmp_path):
    logger, _, _ = _fit(package, tmp_path, devices=2, strategy="ddp_spawn")
    # After fit, the parent's logger.log_dir names the next version: read the root.
    records = list(tls.read_states(logger.root_dir))
    assert [(r.tag, r.step) for r in records] == [("enc", s) for s in range(3)]


def last_output_loss(output):
    """The loss of `test_a_loss_logs_the_gradients`: module level, so it pickles."""
    return output[:, -1].pow(2).sum()


@pytest.mark.parametrize("package", PACKAGES[:1])
def test_a_loss_logs_the_gradients(package, tmp_path):
    logger, model, probe = _fit(package, tmp_path, loss=last_output_loss, devices=1)
    records = list(tls.read_states(logger.root_dir))
    assert [r.step for r in records] == [0, 1, 2]
    assert all(set(r.states.layers[0].grads) == {"cell", "hidden"} for r in records)
    # The last record's gradients are those of the trained module, left without .grad.
    model.zero_grad(set_to_none=True)
    expected = tls.capture(model.encoder.lstm, probe, loss=last_output_loss).layers[0].grads
    for name in ("cell", "hidden"):
        np.testing.assert_allclose(
            records[-1].states.layers[0].grads[name], expected[name].numpy(), rtol=1e-5, atol=1e-6
        )
    assert all(p.grad is None for p in model.encoder.lstm.parameters())
    assert pickle.loads(pickle.dumps(StatesCallback("lstm", probe, loss=last_output_loss))).loss


def test_pickles_without_its_writer(tmp_path):
    callback = StatesCallback("encoder.lstm", torch.zeros(1, 2, 3))
    callback._writer = tls.StateWriter(str(tmp_path))
    try:
        copy = pickle.loads(pickle.dumps(callback))
    finally:
        callback._close()
    assert copy._writer is None and copy.tag == "encoder.lstm"
    assert torch.equal(copy.probe, callback.probe)


def test_bad_arguments():
    with pytest.raises(ValueError, match="loss must be a callable"):
        StatesCallback("lstm", torch.zeros(1), loss="mse")
    with pytest.raises(ValueError, match="every_n_epochs"):
        StatesCallback("lstm", torch.zeros(1), every_n_epochs=0)
    with pytest.raises(ValueError, match="attribute path"):
        StatesCallback("", torch.zeros(1))
