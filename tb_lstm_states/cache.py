"""A thread-safe least-recently-used cache bounded by the bytes it holds.

The plugin keeps decoded arrays and encoded derived results (changes, unit
statistics, projections) here, so repeated requests are cheap while the
backend's memory stays bounded however many steps a user browses.
"""

import threading
from collections import OrderedDict
from typing import Any, Callable, Dict, Hashable, Optional

import numpy as np


def size_of(value: Any) -> int:
    """Estimates the bytes `value` keeps alive: exact for arrays and bytes."""
    if isinstance(value, np.ndarray):
        # A view over a larger buffer keeps that buffer alive.
        base = value
        while isinstance(base.base, np.ndarray):
            base = base.base
        return int(max(value.nbytes, base.nbytes)) + 128
    if isinstance(value, (bytes, bytearray, memoryview)):
        return len(value) + 64
    if isinstance(value, str):
        return len(value) + 64
    if isinstance(value, (tuple, list)):
        return sum(size_of(v) for v in value) + 64
    if isinstance(value, dict):
        return sum(size_of(k) + size_of(v) for k, v in value.items()) + 64
    return 64


class ByteBoundedCache:
    """An LRU cache that evicts until the sizes of its values fit `max_bytes`.

    A value larger than the whole budget is returned to the caller but not kept.
    `get_or_compute` runs at most one computation per key at a time, so two
    requests for the same expensive projection do the work once.
    """

    def __init__(self, max_bytes: int):
        if max_bytes < 0:
            raise ValueError("max_bytes must be non-negative, got %r" % (max_bytes,))
        self._max_bytes = int(max_bytes)
        self._entries: OrderedDict[Hashable, tuple] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._in_flight: Dict[Hashable, threading.Event] = {}

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @property
    def current_bytes(self) -> int:
        with self._lock:
            return self._bytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def get(self, key: Hashable, default: Optional[Any] = None) -> Any:
        """Returns the value of `key` (marking it recently used), or `default`."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return default
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: Hashable, value: Any, size: Optional[int] = None) -> None:
        """Stores `value`, evicting least recently used entries to stay in budget."""
        size = size_of(value) if size is None else int(size)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if size > self._max_bytes:
                return
            self._entries[key] = (value, size)
            self._bytes += size
            while self._bytes > self._max_bytes:
                _, (_, evicted) = self._entries.popitem(last=False)
                self._bytes -= evicted

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def get_or_compute(
        self, key: Hashable, compute: Callable[[], Any], size: Optional[Callable[[Any], int]] = None
    ) -> Any:
        """Returns the cached value of `key`, computing and storing it if absent.

        Args:
          key: a hashable key.
          compute: called without arguments when the key is absent; its
            exceptions propagate to every caller waiting on the same key.
          size: optional function giving the size of a computed value.
        """
        while True:
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None:
                    self._entries.move_to_end(key)
                    return entry[0]
                event = self._in_flight.get(key)
                if event is None:
                    event = self._in_flight[key] = threading.Event()
                    owner = True
                else:
                    owner = False
            if not owner:
                event.wait()
                # The owner stored the value, or failed (or it did not fit):
                # look again, and compute ourselves if it is still absent.
                with self._lock:
                    entry = self._entries.get(key)
                    if entry is not None:
                        return entry[0]
                    if key in self._in_flight:
                        continue
                    event = self._in_flight[key] = threading.Event()
            try:
                value = compute()
                self.put(key, value, None if size is None else size(value))
                return value
            finally:
                with self._lock:
                    self._in_flight.pop(key, None)
                event.set()
