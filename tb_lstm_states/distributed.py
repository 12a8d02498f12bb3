"""What this package needs to know about `torch.distributed` and module wrappers.

Nothing here imports torch: a process that has not imported it is not distributed,
and TensorBoard (which imports this package to load the plugin) never pays for it.
"""

import sys
from typing import Optional


def rank() -> Optional[int]:
    """This process's global rank when a default `torch.distributed` process group is
    initialized, else None (no torch imported, no process group, or no distributed build)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    dist = sys.modules.get("torch.distributed") or getattr(torch, "distributed", None)
    if dist is None:
        return None
    try:
        if not (dist.is_available() and dist.is_initialized()):
            return None
        return int(dist.get_rank())
    except (RuntimeError, ValueError, AttributeError):
        return None


# Wrapper classes by name -> the attribute that holds the wrapped module.
_WRAPPERS = {
    "DistributedDataParallel": "module",
    "DataParallel": "module",
    "FullyShardedDataParallel": "module",
    "OptimizedModule": "_orig_mod",  # torch.compile
}


def check_not_wrapped(module, what: str) -> None:
    """Raises a TypeError naming the attribute to pass when `module` is a
    `DistributedDataParallel`, `DataParallel`, FSDP or `torch.compile` wrapper.

    Args:
      module: what the user passed as the recurrent layer.
      what: the call, for the message, e.g. `"capture()"`.
    """
    for cls in type(module).__mro__:
        attribute = _WRAPPERS.get(cls.__name__)
        if attribute is not None and hasattr(module, attribute):
            inner = getattr(module, attribute)
            hint = "model.%s" % attribute
            if type(inner).__name__ not in ("LSTM", "GRU", "RNN"):
                hint += ".<the recurrent layer>, e.g. model.%s.lstm" % attribute
            raise TypeError(
                "%s got a %s wrapper, not the recurrent layer: pass the wrapped module, "
                "%s (a %s wraps the module in .%s)"
                % (what, cls.__name__, hint, cls.__name__, attribute)
            )
