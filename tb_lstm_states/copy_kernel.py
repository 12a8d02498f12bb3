"""The compiled copy behind `StateWriter.add_states`, and the float16 range check.

Imported on first use only: it imports numba, and compiles (or loads from numba's
on-disk cache) one kernel per input type on its first call.

`copy_checksummed` copies an array into the writer's buffer, casting float32 to
float16 where it is stored so, and extends the record's CRC32C over the copy while
it is in cache, in one call that releases the GIL once. Each release is a chance
for the writer thread to take the GIL, and on this project's 2-core VMs taking it
back cost tens of microseconds: torch's cast, called on slices so that it would not
wake its thread pool for a small array, released the GIL for every slice, and the
six casts of a 1.2 MB record took 1.0 ms in `add_states` against 0.1 ms alone.
Here a (3, 128, 256) array takes 5 us to cast; numpy's own cast, scalar code, 156 us.

Rounding is to nearest, ties to even, as numpy's `astype(np.float16)`: bit for bit
equal to it for every value but the payload bits of NaNs, which stay NaNs. Where the
CPU converts half floats (x86 with F16C, aarch64) LLVM's own conversion is used;
elsewhere the bits are rounded with integer operations, also exact.
"""

from typing import Optional

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from tb_lstm_states import event_file
from tb_lstm_states.statistics_kernel import has_half_conversion


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


@intrinsic
def _crc32c_extend_at(typingctx, address, crc, data, length):
    """`crc32c_extend(crc, data, length)` of google-crc32c's C library, called through
    its address, passed at run time so that numba can cache the kernel."""
    def codegen(context, builder, signature, args):
        address, crc, data, length = [
            context.cast(builder, value, type_, types.intp)
            for value, type_ in zip(args, signature.args)]
        i32, size = ir.IntType(32), context.get_value_type(types.uintp)
        function_type = ir.FunctionType(i32, [i32, ir.IntType(8).as_pointer(), size])
        function = builder.inttoptr(address, function_type.as_pointer())
        result = builder.call(function, [builder.trunc(crc, i32),
                                         builder.inttoptr(data, ir.IntType(8).as_pointer()),
                                         length])
        return builder.zext(result, ir.IntType(64))

    return types.int64(address, crc, data, length), codegen


# The kernels call these stubs, not the intrinsics: numba keys its disk cache on
# what a function refers to, and an intrinsic pickles with a fresh uuid in every
# process.
def _store(out, index, value):  # Typed below; never called from Python.
    raise NotImplementedError


def _crc32c_extend(address, crc, data, length):  # Typed below.
    raise NotImplementedError


@overload(_store, inline="always")
def _store_overload(out, index, value):
    if out.dtype == types.uint16 and value == types.float32:
        def store(out, index, value):
            out[index] = _float32_to_half_bits(value)
    else:
        def store(out, index, value):
            out[index] = value
    return store


@overload(_crc32c_extend, inline="always")
def _crc32c_extend_overload(address, crc, data, length):
    return lambda address, crc, data, length: _crc32c_extend_at(address, crc, data, length)


@numba.njit(cache=True, nogil=True)
def copy_checksummed(source, target, crc, crc_address):
    """Copies `[batch, time, units]` `source` into `target` and checksums the copy.

    Args:
      source: any strides; float32 to be cast to float16, or the dtype of `target`
        (float16 as its uint16 bits).
      target: C-contiguous, the same shape: uint16 (float16 bits) or float32.
      crc: the CRC32C of what comes before in the payload.
      crc_address: the address of `crc32c_extend`, or 0 to leave `crc` as it is.

    Returns:
      `crc` extended over the bytes of `target` (as given when `crc_address` is 0).
    """
    if source.shape != target.shape:
        raise ValueError("copy_checksummed: the arrays differ in shape")
    batch, time, units = source.shape
    for b in range(batch):
        for t in range(time):
            row = source[b, t]
            out = target[b, t]
            for u in range(units):
                _store(out, u, row[u])
    if crc_address:
        crc = _crc32c_extend(crc_address, crc, target.ctypes.data, target.size * target.itemsize)
    return crc


def copy_into(out: np.ndarray, array: np.ndarray, crc: Optional[int] = None) -> Optional[int]:
    """Copies `array` into `out` (C-contiguous), casting to its dtype.

    `[batch, time, units]` arrays, float32 or of `out`'s dtype, take one call of
    `copy_checksummed`; anything else is numpy's copy.

    Args:
      out: the C-contiguous target.
      array: the source, of `out`'s shape.
      crc: None, or the CRC32C of what comes before `out` in a payload.

    Returns:
      None, or `crc` extended over the bytes of `out`.
    """
    native = out.dtype.isnative and array.dtype.isnative
    if (native and array.ndim == 3 and array.dtype in (out.dtype, np.float32)
            and out.flags.c_contiguous):  # the kernel checksums out's memory as one block
        if out.dtype == np.float16:  # numba has no float16: its bits
            out = out.view(np.uint16)
            if array.dtype == np.float16:
                array = array.view(np.uint16)
        address = event_file.CRC32C_EXTEND_ADDRESS if crc is not None else 0
        extended = copy_checksummed(array, out, crc or 0, address)
        if address:
            return extended
    else:
        np.copyto(out, array, casting="unsafe")
    if crc is None:
        return None
    return event_file.crc32c([out], crc)


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
