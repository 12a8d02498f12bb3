"""The compiled loop that writes a record's pieces while its producer still publishes them.

Imported on first use only: it imports numba, and compiles (or loads from numba's
on-disk cache) on its first call.

`StateWriter` writes a record while `add_states` still copies its arrays. Written
from Python, each part took the writer thread back into the interpreter: it had to
take the GIL, which `add_states` held between its compiled copies, and every hand
over of the GIL between the two threads woke a sleeping thread. On this project's
2-core VMs a wake cost the waker about 45 us (an interrupt to an idle vCPU,
measured), several times a record. Here the writer thread takes the GIL once to
start writing a record and once when nothing is left to write: `write_published`
writes every piece published so far, and those published meanwhile, with
`writev` called through its address, without the GIL. `benchmarks/write.py` wrote
1.2 MB records at 54-55% of `tofile`'s speed, against 46-47% from Python.

Pieces are published as `(address, length)` rows of an int64 array, the layout of
`struct iovec` on 64-bit platforms, which `writev` reads in place; a counter says
how many rows are ready. The counter is stored with release and loaded with
acquire ordering, so a row is complete before it is counted on any CPU.
"""

import ctypes
import ctypes.util
import errno
import sys

import numba
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

# POSIX promises at least 16; Linux and macOS take 1024. One call writes at most this many.
_IOV_MAX = 1024
_EINTR, _EIO = errno.EINTR, errno.EIO


def _addresses():
    """`(writev, errno location)` of the C library, or `(0, 0)` where it has no
    `writev` (Windows) or no known way to its errno."""
    if sys.platform == "win32" or ctypes.sizeof(ctypes.c_void_p) != 8:
        return 0, 0
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
    errno_function = None
    for name in ("__errno_location", "__error", "__errno"):  # glibc/musl, macOS, BSDs
        errno_function = getattr(libc, name, None)
        if errno_function is not None:
            break
    writev = getattr(libc, "writev", None)
    if writev is None or errno_function is None:
        return 0, 0
    return (ctypes.cast(writev, ctypes.c_void_p).value,
            ctypes.cast(errno_function, ctypes.c_void_p).value)


WRITEV_ADDRESS, ERRNO_ADDRESS = _addresses()


def available() -> bool:
    """Whether `write_published` can run here (64-bit POSIX)."""
    return bool(WRITEV_ADDRESS and ERRNO_ADDRESS)


@intrinsic
def _load_acquire_at(typingctx, array, index):
    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        return builder.load_atomic(builder.gep(data, [args[1]]), "acquire", 8)

    return types.int64(array, types.intp), codegen


@intrinsic
def _store_release_at(typingctx, array, index, value):
    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        builder.store_atomic(args[2], builder.gep(data, [args[1]]), "release", 8)
        return context.get_dummy_value()

    return types.void(array, types.intp, types.int64), codegen


@intrinsic
def _writev_at(typingctx, address, fd, iovecs, count):
    """`writev(fd, iovecs, count)` called through its address (passed at run time, so
    that numba can cache the kernel); returns its result."""
    def codegen(context, builder, signature, args):
        i64, i32 = ir.IntType(64), ir.IntType(32)
        function_type = ir.FunctionType(i64, [i32, ir.IntType(8).as_pointer(), i32])
        function = builder.inttoptr(args[0], function_type.as_pointer())
        return builder.call(function, [builder.trunc(args[1], i32),
                                       builder.inttoptr(args[2], ir.IntType(8).as_pointer()),
                                       builder.trunc(args[3], i32)])

    return types.int64(types.int64, types.int64, types.int64, types.int64), codegen


@intrinsic
def _errno_at(typingctx, address):
    """The calling thread's errno, through the C library's function for its location."""
    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        location = ir.FunctionType(i32.as_pointer(), [])
        pointer = builder.call(builder.inttoptr(args[0], location.as_pointer()), [])
        return builder.sext(builder.load(pointer), ir.IntType(64))

    return types.int64(types.int64), codegen


# The kernels call these stubs, not the intrinsics: numba keys its disk cache on what
# a function refers to, and an intrinsic pickles with a fresh uuid in every process.
def _load_acquire(array, index):  # Typed below; never called from Python.
    raise NotImplementedError


def _store_release(array, index, value):  # Typed below.
    raise NotImplementedError


def _writev(address, fd, iovecs, count):  # Typed below.
    raise NotImplementedError


def _errno(address):  # Typed below.
    raise NotImplementedError


@overload(_load_acquire, inline="always")
def _load_acquire_overload(array, index):
    return lambda array, index: _load_acquire_at(array, index)


@overload(_store_release, inline="always")
def _store_release_overload(array, index, value):
    return lambda array, index, value: _store_release_at(array, index, value)


@overload(_writev, inline="always")
def _writev_overload(address, fd, iovecs, count):
    return lambda address, fd, iovecs, count: _writev_at(address, fd, iovecs, count)


@overload(_errno, inline="always")
def _errno_overload(address):
    return lambda address: _errno_at(address)


@numba.njit(cache=True, nogil=True)
def publish(published, count):
    """Sets `published[0] = count` once every store before it is visible."""
    _store_release(published, 0, count)


@numba.njit(cache=True, nogil=True)
def write_published(fd, rows, published, start, writev_address, errno_address):
    """Writes the published pieces from row `start` on, and those published while it
    writes, until none is left.

    Args:
      fd: the file descriptor.
      rows: int64 `[n, 2]`, a piece's `(address, length)` a row. A partly written row
        is left pointing at its rest.
      published: int64 `[1]`, how many rows are ready (`publish`).
      start: the first row not yet written.
      writev_address, errno_address: `WRITEV_ADDRESS`, `ERRNO_ADDRESS`.

    Returns:
      The first row not written (all published ones are), or minus the errno of a
      failed `writev` (what came before it may be written).
    """
    row = start
    while True:
        ready = min(_load_acquire(published, 0), rows.shape[0])
        while row < ready and rows[row, 1] == 0:
            row += 1
        if row >= ready:
            return row
        count = min(ready - row, _IOV_MAX)
        written = _writev(writev_address, fd, rows[row:].ctypes.data, count)
        if written < 0:
            error = _errno(errno_address)
            if error == _EINTR:  # a signal came before anything was written: again
                continue
            return -error
        if written == 0:
            return -_EIO  # writev wrote nothing of a non-empty piece
        while written > 0:  # a short write (a signal, a full disk) goes on mid-row
            if written >= rows[row, 1]:
                written -= rows[row, 1]
                row += 1
            else:
                rows[row, 0] += written
                rows[row, 1] -= written
                written = 0
