"""Solving the elementwise linear recurrence v_t = v_t + a_t * v_{t-1} in place.

An LSTM's cell state is such a recurrence: c_t = f_t * c_{t-1} + i_t * g_t. Once
every gate is known it is elementwise, so it costs one small operation per
timestep. On a CPU that is the cheapest way; on a GPU, where each operation's launch
dominates, a chunked Hillis-Steele scan replaces most of the sequential steps with
log2(chunk) vectorized rounds. Both use products and sums only (no division, no
logarithms), so they are as exact as the sequential loop.
"""

import math

# Rough costs used to choose the chunk length, by device type: seconds per
# launched tensor operation, and per element touched by an elementwise operation
# (estimates; what they rest on: benchmarks/capture.py). On a CPU elements dominate,
# so there the sequential scan nearly always wins; on a GPU launches dominate.
SCAN_COSTS = {"cpu": (4e-6, 1e-9), "cuda": (8e-6, 2e-12)}


def scan_chunk(steps, width, device_type="cpu"):
    """Chooses the chunk length of `linear_scan` by a simple cost model.

    A chunk of K steps costs about 4*log2(K) full-size elementwise operations, then
    steps/K small sequential ones; K=1 is the plain sequential loop.

    Args:
      steps: the number of timesteps.
      width: the number of elements of one timestep.
      device_type: `"cpu"`, `"cuda"`, ... (other devices are costed as a GPU).

    Returns:
      The chunk length, a power of two (1 for the sequential loop).
    """
    op_seconds, element_seconds = SCAN_COSTS.get(device_type, SCAN_COSTS["cuda"])
    best, best_cost = 1, steps * (op_seconds + width * element_seconds)
    chunk = 2
    while chunk <= max(steps, 2) and chunk <= 256:
        levels = math.ceil(math.log2(chunk))
        padded = -(-steps // chunk) * chunk
        full = op_seconds + padded * width * element_seconds
        cost = (4 * levels + 3) * full + (padded // chunk) * (op_seconds + width * element_seconds)
        if cost < best_cost:
            best, best_cost = chunk, cost
        chunk *= 2
    return best


def linear_scan(values, factors, chunk, reverse):
    """In place: values[t] += factors[t] * values[t-1] (t+1 when reverse), in order.

    Args:
      values: `[time, ...]`, the inputs u_t on entry and the solution on return.
      factors: `[time, ...]`, the factors a_t (a_t of the first step is unused).
      chunk: from `scan_chunk`; 1 runs the sequential loop.
      reverse: whether the recurrence runs from the last step to the first.
    """
    if chunk == 1:
        sequential_scan(values, factors, reverse)
        return
    steps, trailing = values.shape[0], values.shape[1:]
    padded_steps = -(-steps // chunk) * chunk
    # Whole chunks: past the last step the values are zero and the factors one.
    work = values.new_zeros(padded_steps, *trailing)
    work[:steps] = values
    products = values.new_ones(padded_steps, *trailing)
    products[:steps] = factors
    work = work.view(padded_steps // chunk, chunk, *trailing)
    products = products.view(padded_steps // chunk, chunk, *trailing)
    # Within chunks: after the round with shift s, each position holds the sum over
    # the 2s positions before it, and `products` the product of their factors.
    shift = 1
    while shift < chunk:
        if reverse:
            head, tail = slice(None, -shift), slice(shift, None)
        else:
            head, tail = slice(shift, None), slice(None, -shift)
        carried = products[:, head] * work[:, tail]
        work[:, head] += carried
        products[:, head] = products[:, head] * products[:, tail]
        shift *= 2
    chunks = work.shape[0]
    # Carry the boundary value of each chunk into the next one.
    if reverse:
        for index in range(chunks - 2, -1, -1):
            work[index, 0].addcmul_(products[index, 0], work[index + 1, 0])
        if chunks > 1:
            work[:-1, 1:] += products[:-1, 1:] * work[1:, :1]
    else:
        for index in range(1, chunks):
            work[index, -1].addcmul_(products[index, -1], work[index - 1, -1])
        if chunks > 1:
            work[1:, :-1] += products[1:, :-1] * work[:-1, -1:]
    values.copy_(work.view(padded_steps, *trailing)[:steps])


def sequential_scan(values, factors, reverse):
    """`linear_scan` one timestep at a time: one elementwise operation per step.

    Args:
      values: `[time, ...]`, the inputs on entry and the solution on return.
      factors: `[time, ...]`.
      reverse: whether the recurrence runs from the last step to the first.
    """
    steps = values.shape[0]
    value_steps = values.unbind(0)
    factor_steps = factors.unbind(0)
    if reverse:
        for t in range(steps - 2, -1, -1):
            value_steps[t].addcmul_(factor_steps[t], value_steps[t + 1])
    else:
        for t in range(1, steps):
            value_steps[t].addcmul_(factor_steps[t], value_steps[t - 1])
