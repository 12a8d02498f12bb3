"""Pattern search: the windows of recorded states nearest a query window (the
`search` route).

A window is `length` consecutive timesteps of some units of one sequence, entirely
within the sequence's valid length. Its distance to the query window (the same units,
`[length, units]`) is the Euclidean norm of their difference.

Cost: every window start of an array at once, by

    |x - q|^2 = sum over the window of |x_t|^2 - 2 sum_t x_{s+t} . q_t + |q|^2,

the first term from a cumulative sum over time, the second a cross-correlation
through the FFT, summed over units in the frequency domain: O(values log time)
whatever the window length, in float64, sequences a block at a time.

Matches are chosen greedily (non-maximum suppression): the nearest window first,
then the nearest that overlaps no window already chosen in the same (step,
sequence), and so on; the query window counts as chosen first and is not listed.
Each chosen window rules out fewer than 2 x length others, so the first
(top + 1) x (2 length - 1) windows by distance always hold the answer: only those are
kept (`Candidates`, at most `MAX_KEPT`), which bounds the memory whatever the number
of steps. Non-finite values count as zero.
"""

import dataclasses
from typing import Dict, List, Optional, Tuple

import numpy as np

from tb_lstm_states.analysis import libraries

# Sequences are compared a block at a time: a block's float64 copy and spectrum stay
# within a few times this many values.
_BLOCK_VALUES = 1 << 20
# The most candidate windows kept, (top + 1) x (2 length - 1): the `search` route
# refuses more (400), which bounds the memory of `Candidates` to about 3 x 32 bytes
# each (100 MiB) however many steps are searched.
MAX_KEPT = 1 << 20


def window_distances(values, lengths, query) -> np.ndarray:
    """The distance of every window of `values` to `query`.

    Args:
      values: `[batch, time, units]`, any float dtype.
      lengths: valid timesteps of each sequence.
      query: `[length, units]`.

    Returns:
      `[batch, max(time - length + 1, 0)]` float64: entry `[b, s]` is the Euclidean
      distance between timesteps `s..s + length - 1` of sequence b and the query; inf
      where the window leaves the sequence's valid length.
    """
    libraries.load()
    from scipy import fft

    batch, time, units = values.shape
    q = np.nan_to_num(np.asarray(query, dtype=np.float64), posinf=0.0, neginf=0.0)
    length = q.shape[0]
    starts = time - length + 1
    if starts <= 0 or length == 0:
        return np.full((batch, max(starts, 0)), np.inf)
    size = fft.next_fast_len(time, real=True)
    # Correlation, not convolution: the conjugate spectrum of the query. A size of at
    # least `time` is enough: the starts kept never wrap around.
    query_spectrum = np.conj(fft.rfft(q, n=size, axis=0))
    query_energy = float((q * q).sum())
    out = np.empty((batch, starts))
    rows = max(1, _BLOCK_VALUES // max(time * units, 1))
    for b0 in range(0, batch, rows):
        x = np.asarray(values[b0 : b0 + rows], dtype=np.float64)
        x = np.nan_to_num(x, posinf=0.0, neginf=0.0)
        spectrum = (fft.rfft(x, n=size, axis=1) * query_spectrum).sum(axis=2)
        cross = fft.irfft(spectrum, n=size, axis=1)[:, :starts]
        energy = np.cumsum((x * x).sum(axis=2), axis=1)
        energy = np.concatenate([np.zeros((len(x), 1)), energy], axis=1)
        squared = energy[:, length:] - energy[:, :starts] - 2 * cross + query_energy
        out[b0 : b0 + len(x)] = np.sqrt(np.maximum(squared, 0.0))
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1, 1)
    out[np.arange(starts)[None, :] + length > lengths] = np.inf
    return out


@dataclasses.dataclass
class Candidates:
    """The nearest windows of the arrays searched so far, enough to choose `top`
    matches of `length` timesteps (the module docstring).

    Args:
      length: the window length.
      top: how many matches are wanted.
      exclude: `(key, sequence, start)` of the query window, which rules out the
        windows overlapping it in its (key, sequence); None for none.
    """

    length: int
    top: int
    exclude: Optional[Tuple[int, int, int]] = None
    _parts: List[Tuple[np.ndarray, ...]] = dataclasses.field(default_factory=list)

    @property
    def keep(self) -> int:
        return (self.top + 1) * (2 * self.length - 1)

    def add(self, key: int, distances: np.ndarray) -> None:
        """Adds the `[batch, starts]` distances of one array (`window_distances`),
        known by `key` (an int, e.g. its step)."""
        distances = np.array(distances, dtype=np.float64)
        if self.exclude is not None and self.exclude[0] == key:
            _, sequence, start = self.exclude
            if sequence < len(distances):
                lo = max(start - self.length + 1, 0)
                distances[sequence, lo : start + self.length] = np.inf
        flat = distances.reshape(-1)
        finite = np.flatnonzero(np.isfinite(flat))
        if finite.size > self.keep:
            finite = finite[np.argpartition(flat[finite], self.keep - 1)[: self.keep]]
        starts = max(distances.shape[1], 1)
        self._parts.append(
            (
                flat[finite],
                np.full(finite.size, key, dtype=np.int64),
                finite // starts,
                finite % starts,
            )
        )
        if sum(len(part[0]) for part in self._parts) > 2 * self.keep:
            # The nearest `keep` of all so far hold the answer as well as all do.
            merged = [np.concatenate(column) for column in zip(*self._parts)]
            nearest = np.argpartition(merged[0], self.keep - 1)[: self.keep]
            self._parts = [tuple(column[nearest] for column in merged)]

    def matches(self) -> List[Dict[str, float]]:
        """`[{key, sequence, start, distance}]`, nearest first, at most `top`: greedy,
        each overlapping no nearer match of the same (key, sequence). Ties go to the
        lower key, sequence, start."""
        if not self._parts:
            return []
        distance, key, sequence, start = (np.concatenate(p) for p in zip(*self._parts))
        order = np.lexsort((start, sequence, key, distance))
        chosen: Dict[Tuple[int, int], List[int]] = {}
        result: List[Dict[str, float]] = []
        for i in order.tolist():
            if len(result) >= self.top:
                break
            group = (int(key[i]), int(sequence[i]))
            s = int(start[i])
            taken = chosen.setdefault(group, [])
            if any(abs(s - other) < self.length for other in taken):
                continue
            taken.append(s)
            result.append(
                {"key": group[0], "sequence": group[1], "start": s, "distance": float(distance[i])}
            )
        return result
