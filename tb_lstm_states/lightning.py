"""`StatesCallback`: logs a recurrent layer's states from a Lightning `Trainer`.

    from tb_lstm_states.lightning import StatesCallback
    trainer = Trainer(callbacks=[StatesCallback("encoder.lstm", probe)], max_epochs=20)

At the end of every training epoch (or every n-th), global rank 0 captures the
layer's states on the probe and writes them with step = the epoch number, into the
run directory of the trainer's `TensorBoardLogger` (its `log_dir`, beside the
scalars), or into `default_root_dir` without one. It works with `lightning.pytorch`
and `pytorch_lightning`, whichever is installed (`pip install tb-lstm-states[lightning]`),
and pickles (for `ddp_spawn`): the writer is made in the process that trains.
"""

import importlib
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Sequence, Union

if TYPE_CHECKING:
    from tb_lstm_states.storage.writer import StateWriter


def _callback_class() -> Any:
    """Lightning 2's `Callback` ("lightning"), else the older package name's."""
    for package in ("lightning.pytorch", "pytorch_lightning"):
        try:
            return importlib.import_module(package).Callback
        except (ImportError, AttributeError):  # pragma: no cover - depends on what is installed
            continue
    raise ImportError(
        "tb_lstm_states.lightning needs Lightning: pip install lightning "
        "(or pytorch_lightning), or pip install tb-lstm-states[lightning]"
    )


_Callback: Any = _callback_class()


class StatesCallback(_Callback):
    """Logs the states of one recurrent layer of the LightningModule at epoch ends."""

    def __init__(
        self,
        module: str,
        probe: Union[Any, Callable[[Any], Any]],
        *,
        tag: Optional[str] = None,
        every_n_epochs: int = 1,
        series: Optional[Dict[str, Any]] = None,
        tokens: Optional[Sequence[Sequence[str]]] = None,
        loss: Optional[Callable[[Any], Any]] = None,
        dtype: str = "float16",
    ):
        """
        Args:
          module: the attribute path of the recurrent layer inside the
            LightningModule, e.g. `"encoder.lstm"` (an `nn.LSTM`, `nn.GRU` or `nn.RNN`).
          probe: the layer's input (a tensor or `PackedSequence`; moved to the
            layer's device), or a callable `(pl_module) -> input`.
          tag: the tag in TensorBoard; default `module`.
          every_n_epochs: log at epochs 0, n, 2n, ...
          series, tokens, dtype: as for `StateWriter.add_states`.
          loss: optional callable, as `StateWriter.log` (and `tls.capture`) take it:
            given the layer's output on the probe (what `layer(probe)[0]` returns),
            a scalar tensor, e.g. `lambda out: (out[:, -1] - target).pow(2).sum()`.
            With it the gradients dL/dh_t (and dL/dc_t) are logged too, as kinds
            `grad_hidden` and `grad_cell`; the model's `.grad`s are left alone. For
            `ddp_spawn` it must pickle (a module-level function, not a lambda).

        Raises:
          ValueError: on a bad `module`, `every_n_epochs`, `dtype` or `loss`.
        """
        super().__init__()
        if loss is not None and not callable(loss):
            raise ValueError(
                "loss must be a callable (the layer's output -> a scalar tensor), got %s"
                % type(loss).__name__
            )
        if not isinstance(module, str) or not module:
            raise ValueError(
                "module must be the attribute path of the recurrent layer in the "
                "LightningModule, e.g. 'encoder.lstm', got %r" % (module,)
            )
        if isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, int):
            raise ValueError("every_n_epochs must be a positive int, got %r" % (every_n_epochs,))
        if every_n_epochs < 1:
            raise ValueError("every_n_epochs must be a positive int, got %r" % (every_n_epochs,))
        if dtype not in ("float16", "float32"):
            raise ValueError("dtype must be 'float16' or 'float32', got %r" % (dtype,))
        self.module = module
        self.probe = probe
        self.tag = tag or module
        self.every_n_epochs = every_n_epochs
        self.series = series
        self.tokens = tokens
        self.dtype = dtype
        self.loss = loss
        self._writer: Optional[StateWriter] = None

    # The writer (a thread and an open file) stays in the process that made it.
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_writer"] = None
        return state

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        epoch = int(trainer.current_epoch)
        if epoch % self.every_n_epochs or not trainer.is_global_zero:
            return
        layer = self._layer(pl_module)
        probe = self.probe(pl_module) if callable(self.probe) else self.probe
        probe = probe.to(next(layer.parameters()).device)
        if self._writer is None:
            from tb_lstm_states.storage.writer import StateWriter

            self._writer = StateWriter(logdir(trainer))
        training = layer.training
        layer.training = False  # capture is dropout-free anyway; no warning about it
        try:
            self._writer.log(
                self.tag,
                layer,
                probe,
                epoch,
                series=self.series,
                tokens=self.tokens,
                dtype=self.dtype,
                loss=self.loss,
            )
        finally:
            layer.training = training

    def on_train_end(self, trainer, pl_module) -> None:
        self._close()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._close()

    def teardown(self, trainer, pl_module, stage) -> None:
        self._close()

    def _close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    def _layer(self, pl_module):
        try:
            return pl_module.get_submodule(self.module)
        except AttributeError as e:
            raise ValueError(
                "StatesCallback: %s has no submodule %r (%s); module must be the attribute "
                "path of the recurrent layer, e.g. 'encoder.lstm'"
                % (type(pl_module).__name__, self.module, e)
            ) from None


def logdir(trainer) -> str:
    """Where a trainer's states go: its `TensorBoardLogger`'s `log_dir`, else
    `default_root_dir`."""
    for logger in getattr(trainer, "loggers", None) or []:
        if type(logger).__name__ == "TensorBoardLogger":
            return logger.log_dir
    return trainer.default_root_dir
