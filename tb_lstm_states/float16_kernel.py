"""The compiled float32 -> float16 cast and range check behind `StateWriter`.

Imported on first use only: it imports numba, and compiles (or loads from numba's
on-disk cache) one kernel per input type on its first call.

Each call releases the GIL once for a whole array. torch's cast, called on slices so
that it would not wake its thread pool for a small array, released and retook the
GIL for every slice, and each time the writer thread could take it: on this
project's 2-core VMs the six float32 -> float16 casts of a 1.2 MB record took 1.0 ms
in `add_states` against 0.1 ms alone. Here a (3, 128, 256) array takes 5 us; numpy's
own cast, scalar code, 156 us.

Rounding is to nearest, ties to even, as numpy's `astype(np.float16)`: bit for bit
equal to it for every value but the payload bits of NaNs, which stay NaNs. Where the
CPU converts half floats (x86 with F16C, aarch64) LLVM's own conversion is used;
elsewhere the bits are rounded with integer operations, also exact.
"""

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from tb_lstm_states.statistics_kernel import has_half_conversion

FLOAT16_MAX = 65504.0


def _half_bits_from_float32_bits(bits):
    """The float16 bits nearest to the float32 of `bits` (uint32), ties to even."""
    sign = (bits >> 16) & 0x8000
    magnitude = bits & 0x7FFFFFFF
    if magnitude >= 0x7F800000:  # infinity or NaN
        if magnitude == 0x7F800000:
            return np.uint16(sign | 0x7C00)
        payload = (magnitude >> 13) & 0x3FF
        return np.uint16(sign | 0x7C00 | (payload if payload else 1))  # still a NaN
    if magnitude >= 0x477FF000:  # 65520 and up round past 65504: infinity
        return np.uint16(sign | 0x7C00)
    if magnitude < 0x38800000:  # below 2**-14: a subnormal half, or zero
        if magnitude < 0x33000000:  # at most 2**-25, a tie with zero: zero
            return np.uint16(sign)
        shift = 126 - (magnitude >> 23)  # from 14 to 24
        significand = 0x800000 | (magnitude & 0x7FFFFF)
        half = significand >> shift
        rest = significand & ((1 << shift) - 1)
        middle = 1 << (shift - 1)
        if rest > middle or (rest == middle and half & 1):
            half += 1  # may carry into the smallest normal: still right
        return np.uint16(sign | half)
    half = (magnitude - 0x38000000) >> 13  # exponent rebiased from 127 to 15
    rest = magnitude & 0x1FFF
    if rest > 0x1000 or (rest == 0x1000 and half & 1):
        half += 1  # may carry into the exponent: still right
    return np.uint16(sign | half)


@intrinsic
def _float32_to_half_bits(typingctx, value):
    def codegen(context, builder, signature, args):
        if has_half_conversion(context):
            half = builder.fptrunc(args[0], ir.HalfType())
            return builder.bitcast(half, ir.IntType(16))
        # LLVM would call a library function numba's JIT does not resolve.
        bits = builder.bitcast(args[0], ir.IntType(32))
        return context.compile_internal(
            builder, _half_bits_from_float32_bits, types.uint16(types.uint32), [bits])

    return types.uint16(types.float32), codegen


def _to_half_bits(value):  # Typed below; never called from Python.
    raise NotImplementedError


# The kernels call this stub, not the intrinsic: numba keys its disk cache on what a
# function refers to, and an intrinsic pickles with a fresh uuid in every process.
@overload(_to_half_bits)
def _to_half_bits_overload(value):
    if value == types.float32:
        return lambda value: _float32_to_half_bits(value)
    return None


@numba.njit(cache=True, nogil=True)
def cast_to_float16(source, target):
    """`target[...] = source` rounded to float16, for `[batch, time, units]` arrays.

    Args:
      source: float32, any strides.
      target: uint16, the bits of a float16 array of the same shape.
    """
    if source.shape != target.shape:
        raise ValueError("cast_to_float16: the arrays differ in shape")
    batch, time, units = source.shape
    for b in range(batch):
        for t in range(time):
            row = source[b, t]
            out = target[b, t]
            for u in range(units):
                out[u] = _to_half_bits(row[u])


@numba.njit(cache=True, nogil=True)
def count_beyond(values, limit):
    """How many finite values of a 1-D float array have |x| > `limit` (its dtype).

    A count, not the largest magnitude: the sum vectorizes, a running maximum that
    skips NaN and infinity did not (12 us against 140 us for 98k float32 values).
    """
    count = 0
    for i in range(values.size):
        magnitude = abs(values[i])
        count += (magnitude > limit) & (magnitude < np.inf)
    return count
