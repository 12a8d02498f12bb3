"""The plugin's byte-bounded LRU cache."""

import threading
import time

import numpy as np
import pytest

from tb_lstm_states.cache import ByteBoundedCache, size_of


def test_evicts_least_recently_used_to_stay_in_budget():
    cache = ByteBoundedCache(1000)
    for key in "abc":
        cache.put(key, b"x", size=300)
    cache.get("a")  # now b is the least recently used
    cache.put("d", b"x", size=300)
    assert cache.get("b") is None
    assert [cache.get(k) for k in "acd"] == [b"x"] * 3
    assert cache.current_bytes == 900


def test_a_value_over_the_budget_is_not_kept():
    cache = ByteBoundedCache(100)
    cache.put("small", b"x", size=50)
    cache.put("big", b"x", size=101)
    assert cache.get("big") is None and cache.get("small") == b"x"
    assert cache.get_or_compute("huge", lambda: np.zeros(1000)).shape == (1000,)
    assert cache.get("huge") is None


def test_sizes_of_arrays_count_their_buffer():
    base = np.zeros(1000, dtype=np.float32)
    assert size_of(base) >= 4000
    assert size_of(base[:10]) >= 4000  # a view keeps the whole buffer alive
    assert size_of(b"x" * 100) >= 100


def test_get_or_compute_runs_once_per_key_at_a_time():
    cache = ByteBoundedCache(1 << 20)
    calls = []

    def compute():
        calls.append(1)
        time.sleep(0.1)
        return b"value"

    results = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get_or_compute("k", compute)))
        for _ in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [b"value"] * 6 and len(calls) == 1


def test_get_or_compute_propagates_errors_and_retries_later():
    cache = ByteBoundedCache(1 << 20)

    def fail():
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        cache.get_or_compute("k", fail)
    assert cache.get_or_compute("k", lambda: 3) == 3


def test_negative_budget_is_refused():
    with pytest.raises(ValueError, match="non-negative"):
        ByteBoundedCache(-1)
