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
# launched tensor operation, and per element touched by an elementwise operation.
# On a CPU a strided elementwise pass costs about 1 ns an element, so there the
# sequential scan nearly always wins; on a GPU launches dominate.
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


def linear_scan(values, factors, steps, chunk, reverse):
    """In place: values[t] += factors[t] * values[t-1] (t+1 when reverse), in order.

    Args:
      values: `[padded_steps, ...]`, padded_steps a multiple of `chunk`; holds the
        inputs u_t on entry and the solution on return.
      factors: `[steps, ...]`, the factors a_t (a_t of the first step is unused).
      steps: the number of real timesteps (the rest of `values` is zero).
      chunk: from `scan_chunk`; 1 runs the sequential loop.
      reverse: whether the recurrence runs from the last step to the first.
    """
    if chunk == 1:
        sequential_scan(values, factors, steps, reverse)
        return
    padded_steps = values.shape[0]
    trailing = values.shape[1:]
    products = values.new_zeros(values.shape)
    products[:steps] = factors
    values = values.view(padded_steps // chunk, chunk, *trailing)
    products = products.view(padded_steps // chunk, chunk, *trailing)
    # Within chunks: after the round with shift s, each position holds the sum over
    # the 2s positions before it, and `products` the product of their factors.
    shift = 1
    while shift < chunk:
        if reverse:
            head, tail = slice(None, -shift), slice(shift, None)
        else:
            head, tail = slice(shift, None), slice(None, -shift)
        carried = products[:, head] * values[:, tail]
        values[:, head] += carried
        products[:, head] = products[:, head] * products[:, tail]
        shift *= 2
    chunks = values.shape[0]
    if chunks == 1:
        return
    # Carry the boundary value of each chunk into the next one.
    if reverse:
        for index in range(chunks - 2, -1, -1):
            values[index, 0].addcmul_(products[index, 0], values[index + 1, 0])
        carried = products[:-1, 1:] * values[1:, :1]
        values[:-1, 1:] += carried
    else:
        for index in range(1, chunks):
            values[index, -1].addcmul_(products[index, -1], values[index - 1, -1])
        carried = products[1:, :-1] * values[:-1, -1:]
        values[1:, :-1] += carried


def sequential_scan(values, factors, steps, reverse):
    """`linear_scan` one timestep at a time: one elementwise operation per step.

    Args:
      values: `[>= steps, ...]`, the inputs on entry and the solution on return.
      factors: `[steps, ...]`.
      steps: the number of timesteps.
      reverse: whether the recurrence runs from the last step to the first.
    """
    value_steps = values.unbind(0)
    factor_steps = factors.unbind(0)
    if reverse:
        for t in range(steps - 2, -1, -1):
            value_steps[t].addcmul_(factor_steps[t], value_steps[t + 1])
    else:
        for t in range(1, steps):
            value_steps[t].addcmul_(factor_steps[t], value_steps[t - 1])
