"""Host numpy copies of states (torch tensors or numpy arrays) at the stored dtype.

Nothing here imports torch at module level: a torch tensor is recognised by its
methods, and torch is imported only to cast numpy float32 arrays to float16 (its
cast is vectorized and threaded; numpy's is scalar code, slower: figures in
benchmarks/write.py). Where torch cannot be imported, numpy casts.
"""

import math
import sys
from typing import Any, Dict, Optional

import numpy as np

from tb_lstm_states import states as states_lib

DTYPES: Dict[str, np.dtype] = {"float16": np.dtype("<f2"), "float32": np.dtype("<f4")}


def is_torch(value) -> bool:
    """Whether `value` is a torch tensor (without importing torch)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def to_numpy(value):
    """`value` as a numpy array on the host (a torch tensor: float32 for floats, as
    numpy has no bfloat16); None stays None. May share memory with `value`."""
    if value is None or type(value) is np.ndarray:
        return value
    if is_torch(value):
        value = value.detach()
        if value.is_floating_point():
            value = value.float()
        return value.cpu().numpy()
    return np.asarray(value)


def to_numpy_states(recurrent_states):
    """Returns a copy of `recurrent_states` whose arrays are numpy arrays on the host."""
    layers = [
        states_lib.LayerStates(
            hidden=to_numpy(layer.hidden),
            cell=to_numpy(layer.cell),
            gates={name: to_numpy(gate) for name, gate in layer.gates.items()},
            grads={name: to_numpy(grad) for name, grad in layer.grads.items()},
        )
        for layer in recurrent_states.layers
    ]
    return states_lib.RecurrentStates(
        kind=recurrent_states.kind,
        layers=layers,
        lengths=to_numpy(recurrent_states.lengths).astype(np.int64),
        num_directions=recurrent_states.num_directions,
    )


def extremes(array: np.ndarray):
    """`(minimum, maximum)` of a float16 or float32 array's values, NaN ignored
    (both NaN when it holds no number). Large float16 arrays through torch: numpy
    compares float16 values one at a time, and a small one is cheaper converted
    than torch's thread pool is to wake (see `_SERIAL_VALUES`)."""
    if array.dtype == np.float16 and array.size <= _SERIAL_VALUES:
        array = array.astype(np.float32)
    torch = _import_torch() if array.dtype == np.float16 else None
    if torch and array.size:
        low, high = (float(v) for v in torch.aminmax(torch.from_numpy(array)))
        if not (math.isnan(low) or math.isnan(high)):
            return low, high
    with np.errstate(invalid="ignore"):
        values = array[~np.isnan(array)] if array.size else array
        if not values.size:
            return math.nan, math.nan
        return float(values.min()), float(values.max())


def check_real(value, name: str) -> None:
    """Raises ValueError unless `value` holds real numbers (or booleans)."""
    if is_torch(value):
        if value.is_complex():
            raise ValueError("%s must hold real numbers, got dtype %s" % (name, value.dtype))
        return
    dtype = np.asarray(value).dtype if not hasattr(value, "dtype") else np.dtype(value.dtype)
    if dtype != np.bool_ and not (
        np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)
    ):
        raise ValueError("%s must hold real numbers, got dtype %s" % (name, dtype))


def stored_copy(value, dtype: str) -> np.ndarray:
    """A C-contiguous host copy of `value` at the stored dtype, sharing no memory with it.

    Args:
      value: a numpy array or torch tensor (any device) of real numbers.
      dtype: `"float16"` or `"float32"`. With `"float16"`, an array whose finite
        values become infinite in float16 is kept as float32 (NaN and Inf are kept
        as they are).

    Returns:
      A `<f2` or `<f4` array: for float16, the IEEE round-to-nearest-even of each
      value, as numpy's `astype` gives it.
    """
    if is_torch(value):
        return _torch_copy(value, dtype)
    array = np.asarray(value)
    if dtype == "float32" or array.dtype == np.float16:
        return np.array(array, dtype=DTYPES[dtype], order="C", copy=True)
    half = _torch_half(array)
    if half is None:
        with np.errstate(over="ignore", invalid="ignore"):
            half = array.astype(DTYPES["float16"], order="C")
        overflowed = _numpy_overflowed(half, array)
    else:
        half, overflowed = half
    if overflowed:
        return np.array(array, dtype=DTYPES["float32"], order="C", copy=True)
    return half


def _numpy_overflowed(half: np.ndarray, source: np.ndarray) -> bool:
    """Whether a finite value of `source` became infinite in its float16 cast `half`."""
    with np.errstate(invalid="ignore"):
        if half.size == 0 or (math.isfinite(half.min()) and math.isfinite(half.max())):
            return False
    infinite = np.isinf(half)
    return bool(np.isfinite(source[infinite]).any())


_TORCH: Any = None


def _import_torch():
    """torch, imported on first use, or False where it cannot be imported."""
    global _TORCH
    if _TORCH is None:
        try:
            import torch

            _TORCH = torch
        except ImportError:
            _TORCH = False
    return _TORCH


def _torch_half(array: np.ndarray):
    """`(float16 copy, overflowed)` of a native float32 array cast by torch, or None
    where torch cannot take the array (another dtype, read-only or negative strides)
    or cannot be imported: numpy casts it then."""
    if (
        array.dtype != np.float32
        or not array.dtype.isnative
        or not array.flags.writeable
        or any(s < 0 or s % array.itemsize for s in array.strides)
        or array.size == 0
    ):
        return None
    torch = _import_torch()
    if not torch:
        return None
    half, overflowed = _host_half(torch, torch.from_numpy(array))
    return half.numpy(), overflowed


# Tensors up to this many values are cast on the calling thread, in slices of
# `_SLICE` values, which torch converts without its thread pool (its grain size):
# waking the pool costs more than it saves there, and on a machine with few cores
# its threads then spin, taking the core the writer thread needs (figures:
# benchmarks/write.py).
_SERIAL_VALUES = 1 << 20
_SLICE = 1 << 15


def _host_cast(torch, source, target):
    """A contiguous copy of the host tensor `source` at `target` (a torch dtype)."""
    if source.numel() <= _SERIAL_VALUES and source.is_contiguous():
        out = torch.empty(source.shape, dtype=target)
        flat_in, flat_out = source.reshape(-1), out.view(-1)
        for start in range(0, flat_in.numel(), _SLICE):
            flat_out[start : start + _SLICE].copy_(flat_in[start : start + _SLICE])
        return out
    return source.to(dtype=target, memory_format=torch.contiguous_format, copy=True)


def _host_half(torch, source):
    """`(float16 copy, overflowed)` of a host tensor of another dtype."""
    half = _host_cast(torch, source, torch.float16)
    if half.numel() > _SERIAL_VALUES:
        return half, _torch_overflowed(torch, half, source)
    # Small: the exponent bits, in numpy, without the thread pool.
    bits = half.numpy().view(np.uint16).reshape(-1)
    if int(np.bitwise_and(bits, 0x7FFF).max()) < 0x7C00:  # no Inf, no NaN
        return half, False
    return half, _overflowed_where_infinite(torch, half, source)


def _torch_copy(tensor, dtype: str) -> np.ndarray:
    import torch

    source = tensor.detach()
    if dtype == "float16" and source.dtype == torch.float64:
        # torch casts float64 to float16 through float32 (two roundings): numpy does
        # it in one, as every other path here does.
        return stored_copy(source.cpu().numpy(), dtype)
    target = torch.float16 if dtype == "float16" else torch.float32
    if source.device.type == "cpu":  # always copied, so the caller may reuse it
        if target == torch.float16 and source.dtype != torch.float16:
            out, overflowed = _host_half(torch, source)
            if overflowed:
                out = _host_cast(torch, source, torch.float32)
        else:
            out = _host_cast(torch, source, target)
        return out.numpy()
    # On the device: a GPU casts faster, and half as many bytes cross to the host.
    out = source.to(dtype=target, memory_format=torch.contiguous_format)
    if (
        target == torch.float16
        and source.dtype != torch.float16
        and _torch_overflowed(torch, out, source)
    ):
        out = source.to(dtype=torch.float32, memory_format=torch.contiguous_format)
    return out.to("cpu", memory_format=torch.contiguous_format).numpy()


def _torch_overflowed(torch, half, source) -> bool:
    """Whether a finite value of `source` became infinite in its float16 cast `half`.

    One reduction over the float16 cast where every value is finite; only where it
    holds an infinity or NaN, a second look at the source.
    """
    if half.numel() == 0:
        return False
    try:
        low, high = torch.aminmax(half)
        if math.isfinite(low.item()) and math.isfinite(high.item()):
            return False
    except RuntimeError:  # no float16 aminmax in this torch build, on this device
        pass
    return _overflowed_where_infinite(torch, half, source)


def _overflowed_where_infinite(torch, half, source) -> bool:
    infinite = torch.isinf(half)
    return bool(torch.isfinite(source[infinite]).any().item())


def sampled_copy(value, rows: Optional[np.ndarray]) -> np.ndarray:
    """A host copy of `value[rows]` (all of it where `rows` is None), sharing no
    memory with `value`, for the statistics: float16, float32 and float64 stay as
    they are (others become float32). On a GPU, only those sequences cross to the
    host."""
    if is_torch(value):
        import torch

        tensor = value.detach()
        if rows is not None:
            tensor = tensor.index_select(0, torch.as_tensor(rows, device=tensor.device))
        if tensor.dtype not in (torch.float16, torch.float32, torch.float64):
            tensor = tensor.to(torch.float32)
        return tensor.to("cpu", copy=True).numpy()
    array = np.asarray(value)
    if rows is not None:
        array = array[rows]  # a copy
    dtype = array.dtype if array.dtype in (np.float16, np.float32, np.float64) else np.float32
    if rows is None:
        return np.array(array, dtype=dtype, copy=True)
    return np.asarray(array, dtype=dtype)
