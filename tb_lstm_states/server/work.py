"""Bounded pools for the routes' heavy work, shared by identical requests.

Projections (and any later analysis of their weight) run on `workers` threads of
their own (`--lstm_states_workers`, default `DEFAULT_WORKERS`); unit statistics and
the rendering of descriptions run on one more thread, so that a long projection
never delays them. However many requests arrive, at most that many computations run
at once, which bounds the memory and CPU they take together.

- Identical requests share one computation: a key in flight is not started again,
  its result (or error) goes to every request waiting on it.
- A computation whose every requester has gone (the browser closed the connection)
  before it started is dropped. One already running is finished and its result
  kept in the cache for the next asker, never thrown away.
- BLAS runs on one thread, set once when the first pool starts (scikit-learn's
  `threadpoolctl`): several computations at once, each on a BLAS thread pool of its
  own, contend for the cores (figures: benchmarks/load.py). Nothing is changed per
  request.
"""

import select
import socket
import threading
from concurrent import futures
from typing import Any, Callable, Dict, Hashable, Optional

from tensorboard import errors
from tensorboard.util import tb_logging

logger = tb_logging.get_logger()

DEFAULT_WORKERS = 2
# How often a waiting request checks that its client is still connected.
POLL_SECONDS = 0.5

_blas_lock = threading.Lock()
_blas_limited = False


def limit_blas_threads() -> None:
    """Makes BLAS single-threaded, once per process (idempotent)."""
    global _blas_limited
    with _blas_lock:
        if _blas_limited:
            return
        _blas_limited = True
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return
    threadpool_limits(limits=1, user_api="blas")


class AbandonedError(errors.InvalidArgumentError):
    """Every client of a computation closed its connection before it started."""


def client_gone(connection) -> bool:
    """Whether the peer of a request's socket has closed it (it reads as end of file).

    A socket we cannot inspect (TLS, or none) counts as connected.
    """
    if connection is None:
        return False
    try:
        readable, _, _ = select.select([connection], [], [], 0)
        if not readable:
            return False
        return connection.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError, TypeError, AttributeError):
        return False


def request_connection(request) -> Optional[Any]:
    """The client socket of a werkzeug request, where the server exposes it."""
    return request.environ.get("werkzeug.socket")


class _Job:
    """One computation in flight: its future (set as it is submitted), whether it has
    started, and how many requests wait on it."""

    __slots__ = ("future", "started", "waiters")
    future: "futures.Future[Any]"

    def __init__(self):
        self.waiters = 0
        self.started = False


class WorkPool:
    """A fixed number of threads; identical keys in flight share one computation."""

    def __init__(self, workers: int, name: str):
        if workers < 1:
            raise ValueError("workers must be at least 1, got %r" % (workers,))
        self.workers = workers
        self._executor = futures.ThreadPoolExecutor(
            workers, thread_name_prefix="lstm_states_" + name, initializer=limit_blas_threads
        )
        self._jobs: Dict[Hashable, _Job] = {}
        self._lock = threading.Lock()

    def in_flight(self) -> int:
        with self._lock:
            return len(self._jobs)

    def submit(self, key: Hashable, compute: Callable[[], Any]) -> "futures.Future":
        """Starts `compute` under `key` unless it is in flight; returns its future."""
        with self._lock:
            job = self._jobs.get(key)
            if job is None:
                job = self._start(key, compute)
            return job.future

    def _start(self, key, compute):
        job = self._jobs[key] = _Job()

        def run():
            with self._lock:
                job.started = True
            try:
                return compute()
            finally:
                with self._lock:
                    if self._jobs.get(key) is job:
                        del self._jobs[key]

        job.future = self._executor.submit(run)
        return job

    def run(self, key: Hashable, compute: Callable[[], Any], connection=None) -> Any:
        """The result of `compute` under `key`, computed on the pool (or shared).

        Args:
          key: identifies the computation: equal keys in flight share one.
          compute: called without arguments on a pool thread; its exception reaches
            every waiter.
          connection: the requester's socket; when it closes before the
            computation starts and nobody else waits, the computation is dropped.

        Raises:
          AbandonedError: when the computation was dropped (nobody reads the answer).
        """
        with self._lock:
            job = self._jobs.get(key)
            if job is None:
                job = self._start(key, compute)
            job.waiters += 1
        waiting = True
        try:
            while True:
                try:
                    return job.future.result(
                        timeout=POLL_SECONDS if connection is not None else None
                    )
                except futures.TimeoutError:
                    if not client_gone(connection):
                        continue
                except futures.CancelledError:
                    raise AbandonedError("the computation was dropped: its clients left") from None
                with self._lock:
                    job.waiters -= 1
                    waiting = False
                    if (
                        job.waiters == 0
                        and not job.started
                        and job.future.cancel()
                        and self._jobs.get(key) is job
                    ):
                        del self._jobs[key]
                raise AbandonedError("the client closed its connection before its work began")
        finally:
            if waiting:
                with self._lock:
                    job.waiters -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
