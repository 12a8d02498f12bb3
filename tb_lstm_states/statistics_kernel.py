"""The compiled single pass behind `statistics.array_statistics`.

Imported by `statistics` on first use only: it imports numba, and compiles (or loads
from numba's on-disk cache) one kernel per input type on its first call.

numpy needed 9-15 passes per array (a float16 cast, abs, mean, std, counts, per-unit
min and max, the difference of timesteps, its square, sum and root), each with
microseconds of call overhead, six arrays a record: most of what writing a small
record cost. Here each value is read once and every column is accumulated in
registers: in float32 along a row of units (vectorized), in float64 across rows.
numpy summed in float32 pairwise, so the last bits differ.

numba has no float16 on CPU: float16 arrays come in as their uint16 bits. Where the
CPU converts half floats (x86 with F16C, aarch64) LLVM's own conversion is used, one
instruction for 16 values; elsewhere it would be a library call that numba's JIT
does not resolve (it crashed), so the bits are converted with integer operations,
about 4x slower, also exact.
"""

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload


def has_half_conversion(context):
    """Whether LLVM converts half floats in one instruction on the CPU numba compiles for."""
    codegen = context.codegen()
    triple = getattr(codegen, "_llvm_module", None)
    triple = getattr(triple, "triple", "") or ""
    # The features numba compiles for (the host's, or NUMBA_CPU_FEATURES); numba
    # keys its cache on them, so a cached kernel never runs where they are missing.
    features = getattr(codegen, "_tm_features", "") or ""
    return triple.startswith("aarch64") or "+f16c" in features.split(",")


@intrinsic
def _half_bits_to_float32(typingctx, bits):
    def codegen(context, builder, signature, args):
        value = args[0]
        if has_half_conversion(context):
            return builder.fpext(builder.bitcast(value, ir.HalfType()), ir.FloatType())
        i32 = ir.IntType(32)
        bits32 = builder.zext(value, i32)
        magnitude = builder.and_(bits32, i32(0x7FFF))
        sign = builder.shl(builder.and_(bits32, i32(0x8000)), i32(16))
        # Normal: rebias the exponent (15 -> 127); infinities and NaNs: the top one.
        rebiased = builder.add(builder.shl(magnitude, i32(13)), i32(112 << 23))
        special = builder.icmp_unsigned(">=", magnitude, i32(0x7C00))
        rebiased = builder.select(special, builder.add(rebiased, i32(112 << 23)), rebiased)
        normal = builder.or_(rebiased, sign)
        # Zero or subnormal: magnitude * 2**-24, exactly, with the sign.
        small = builder.fmul(builder.uitofp(magnitude, ir.FloatType()),
                             ir.Constant(ir.FloatType(), 2.0 ** -24))
        small = builder.or_(builder.bitcast(small, i32), sign)
        tiny = builder.icmp_unsigned("<", magnitude, i32(0x400))
        return builder.bitcast(builder.select(tiny, small, normal), ir.FloatType())

    return types.float32(types.uint16), codegen


def _to_float32(value):  # Typed per input type below; never called from Python.
    raise NotImplementedError


@overload(_to_float32)
def _to_float32_overload(value):
    if value == types.uint16:
        return lambda value: _half_bits_to_float32(value)
    return lambda value: np.float32(value)


# reassoc: sums vectorize; contract: fused multiply-adds; nsz: no -0.0 care. Not the
# flags that assume no NaN or infinity: those must go through.
_FASTMATH = {"reassoc", "contract", "nsz"}


# Arrays per call of `group_statistics`: a tuple of a fixed length, so one compiled
# kernel serves records of any number of arrays (a shorter group is padded).
GROUP = 6


@numba.njit(cache=True, nogil=True)
def group_statistics(arrays, sample, lengths, lows, highs, dead_range, out):
    """`array_statistics` of each of `GROUP` arrays into `out[i]`, in one call.

    One call for a whole record (six arrays of an LSTM layer) releases the GIL once:
    between separate calls a writer thread waiting for the GIL could take it and
    hold this one up (measured: twice as slow while a record was written).

    Args:
      arrays: a tuple of `GROUP` arrays of one type (see `array_statistics`).
      sample, lengths, dead_range: as for `array_statistics`, shared.
      lows, highs: float32 `[GROUP]`, the saturation bounds of each array.
      out: float64 `[GROUP, 5]`.
    """
    i = 0
    for values in arrays:
        out[i] = array_statistics(values, sample, lengths, lows[i], highs[i], dead_range)
        i += 1


@numba.njit(cache=True, nogil=True, fastmath=_FASTMATH)
def array_statistics(values, sample, lengths, low, high, dead_range):
    """The columns of `statistics.COLUMNS` for one `[batch, time, units]` array.

    Args:
      values: the array, float32 or the uint16 bits of float16.
      sample: the indices of the sequences to use.
      lengths: the valid timesteps of each sampled sequence (at most `time` are read).
      low, high: float32; a value below `low` or above `high` is saturated.
      dead_range: float32; a unit whose values span less is dead.

    Returns:
      `(mean_abs, std, saturated, dead, change)` as floats; NaN where undefined.
    """
    batch, time, units = values.shape
    # numba does not check bounds: checked here, once.
    if lengths.size != sample.size:
        raise ValueError("statistics kernel: one length per sampled sequence is needed")
    for i in range(sample.size):
        if sample[i] < 0 or sample[i] >= batch:
            raise IndexError("statistics kernel: sampled sequence out of range")
    minimum = np.full(units, np.inf, np.float32)
    maximum = np.full(units, -np.inf, np.float32)
    # Sums of values minus a shift (a value of the array), so the single-pass
    # variance does not cancel when the mean is far from zero.
    shift = np.float32(0.0)
    for i in range(sample.size):
        if lengths[i] > 0 and time > 0 and units > 0:
            shift = _to_float32(values[sample[i], 0, 0])
            break
    count = 0
    total_abs = 0.0
    total = 0.0
    total_square = 0.0
    saturated = 0
    steps = 0
    total_norm = 0.0
    # The previous row, converted once: float16 input is converted once a value.
    previous = np.empty(units, np.float32)
    for i in range(sample.size):
        sequence = values[sample[i]]
        for t in range(min(lengths[i], time)):
            row = sequence[t]
            if t == 0:
                for u in range(units):
                    previous[u] = _to_float32(row[u])
            row_abs = np.float32(0.0)
            row_total = np.float32(0.0)
            row_square = np.float32(0.0)
            row_change = np.float32(0.0)
            # float32 (exact up to 2**24 units): an integer count here made LLVM
            # vectorize the whole loop at int64 width, half as wide (measured 2x slower).
            row_saturated = np.float32(0.0)
            for u in range(units):
                value = _to_float32(row[u])
                row_abs += abs(value)
                centered = value - shift
                row_total += centered
                row_square += centered * centered
                saturated_here = (value < low) | (value > high)
                row_saturated += np.float32(1.0) if saturated_here else np.float32(0.0)
                # In float32, as the stored states differ.
                change = value - previous[u]
                previous[u] = value
                row_change += change * change
                # NaN is handled below: these skip or keep it, depending on its side.
                minimum[u] = min(minimum[u], value)
                maximum[u] = max(maximum[u], value)
            total_abs += row_abs
            total += row_total
            total_square += row_square
            saturated += np.int64(row_saturated)
            count += units
            if t > 0:
                total_norm += np.sqrt(np.float64(row_change))
                steps += 1
    nan = np.nan
    if count == 0:
        return nan, nan, nan, nan, nan
    mean = total / count
    # NaN with an infinite value, as numpy's std; rounding may dip below zero.
    variance = total_square / count - mean * mean
    if variance < 0.0:
        variance = 0.0
    dead = 0
    for u in range(units):
        # The span in float32, as numpy computed it.
        if maximum[u] - minimum[u] < dead_range:
            dead += 1
    if dead and not np.isfinite(total):
        # A NaN somewhere (rare): a unit holding one is not dead, as numpy's
        # max - min is NaN there. Only now worth a second pass.
        dead = _count_dead(values, sample, lengths, minimum, maximum, dead_range)
    return (
        total_abs / count,
        np.sqrt(variance),
        saturated / count,
        dead / units,
        total_norm / steps if steps else nan,
    )


@numba.njit(cache=True, nogil=True)
def _count_dead(values, sample, lengths, minimum, maximum, dead_range):
    units = values.shape[2]
    has_nan = np.zeros(units, np.bool_)
    for i in range(sample.size):
        sequence = values[sample[i]]
        for t in range(min(lengths[i], values.shape[1])):
            for u in range(units):
                value = _to_float32(sequence[t, u])
                has_nan[u] |= value != value
    dead = 0
    for u in range(units):
        if not has_nan[u] and maximum[u] - minimum[u] < dead_range:
            dead += 1
    return dead
