"""The statistics against their definitions, written out again the plain way."""

import numpy as np
import pytest

from tb_lstm_states import states as states_lib
from tb_lstm_states import statistics

SIGMOID_GATES = {"input", "forget", "output", "reset", "update"}


@pytest.fixture(autouse=True, params=["whole", "chunked"])
def chunks(request, monkeypatch):
    """Every test twice: arrays taken whole (up to 64k values, as by default), and
    every array a few timesteps at a time, its sums merged."""
    if request.param == "chunked":
        monkeypatch.setattr(statistics, "_CHUNK_VALUES", 7)
    return request.param


def reference(array, name, lengths):
    """The columns by their definitions, in float64 over the valid positions."""
    array = np.asarray(array, dtype=np.float32)
    mask = np.arange(array.shape[1])[None, :] < np.asarray(lengths).reshape(-1, 1)
    values = array[mask].astype(np.float64)  # [valid, units]
    out = np.full(len(statistics.COLUMNS), np.nan)
    if values.size == 0:
        return out
    with np.errstate(invalid="ignore", over="ignore"):
        out[0] = np.abs(values).mean()
        out[1] = values.std()
        value32 = array[mask]  # thresholds compare in float32
        if name in SIGMOID_GATES:
            saturated = (value32 < np.float32(0.05)) | (value32 > np.float32(0.95))
        else:
            limit = np.float32(np.arctanh(0.95) if name == "cell" else 0.95)
            saturated = np.abs(value32) > limit
        out[2] = saturated.mean()
        span = value32.max(axis=0) - value32.min(axis=0)
        out[3] = (span < np.float32(1e-3)).mean()
        steps = mask[:, 1:] & mask[:, :-1]
        if steps.any():
            change = (array[:, 1:] - array[:, :-1])[steps].astype(np.float64)
            out[4] = np.sqrt(np.square(change).sum(axis=-1)).mean()
    return out


def check(array, name, lengths, sample=None):
    got = statistics.array_statistics(array, name, lengths, sample)
    assert got.dtype == np.float32 and got.shape == (len(statistics.COLUMNS),)
    rows = np.arange(len(lengths)) if sample is None else np.asarray(sample)
    want = reference(np.asarray(array)[rows], name, np.asarray(lengths)[rows])
    np.testing.assert_allclose(
        got,
        want,
        rtol=1e-5,
        atol=1e-6,
        equal_nan=True,
        err_msg="%s %s lengths=%s" % (name, array.dtype, list(lengths)),
    )


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("name", ["cell", "hidden", "input", "candidate", "update"])
def test_columns_match_their_definitions(dtype, name):
    rng = np.random.default_rng(7)
    for trial in range(12):
        batch, time, units = rng.integers(1, 5), rng.integers(1, 20), rng.integers(1, 70)
        scale, offset = rng.choice([0.01, 1.0, 3.0]), rng.choice([0.0, 0.5, 100.0])
        array = (rng.standard_normal((batch, time, units)) * scale + offset).astype(dtype)
        if trial % 3 == 0:
            array[:, :, 0] = 0.25  # a dead unit
        if trial % 4 == 1:
            array[..., -1] = rng.choice([0.0, 1.0], size=(batch, time))  # saturated
        lengths = rng.integers(0, time + 1, size=batch)
        check(array, name, lengths)


def test_mean_far_from_zero_keeps_the_std():
    # A single-pass variance without a shift would cancel to noise here.
    array = 1000.0 + 1e-3 * np.random.default_rng(0).standard_normal((4, 50, 8))
    check(array.astype(np.float32), "hidden", [50, 50, 50, 50])


def test_nan_and_inf():
    rng = np.random.default_rng(3)
    array = rng.standard_normal((2, 6, 5)).astype(np.float32)
    array[:, :, 1] = 0.5  # dead, but for its NaN
    array[0, 2, 1] = np.nan
    array[:, :, 3] = 0.5  # dead
    check(array, "hidden", [6, 6])
    got = statistics.array_statistics(array, "hidden", [6, 6])
    assert np.isnan(got[0]) and np.isnan(got[1]) and got[3] == pytest.approx(1 / 5)
    array = rng.standard_normal((2, 6, 5)).astype(np.float16)
    array[1, 3, 4] = np.inf
    check(array, "cell", [6, 4])  # the inf is past the length: all finite
    check(array, "cell", [6, 6])
    array[0, 0, 0] = -np.inf
    check(array, "cell", [6, 6])


def test_empty_and_sampled():
    array = np.ones((3, 4, 2), np.float32)
    assert np.isnan(statistics.array_statistics(array, "hidden", [0, 0, 0])).all()
    assert np.isnan(statistics.array_statistics(array[:, :, :0], "hidden", [4, 4, 4])).all()
    one_step = statistics.array_statistics(array, "hidden", [1, 1, 0])
    assert np.isnan(one_step[4]) and not np.isnan(one_step[:4]).any()
    rng = np.random.default_rng(1)
    array = rng.standard_normal((9, 7, 3)).astype(np.float16)
    check(array, "forget", rng.integers(0, 8, size=9), sample=[0, 4, 8])
    # Lengths past the array's time are read as the whole sequence.
    np.testing.assert_array_equal(
        statistics.array_statistics(array, "cell", [99] * 9),
        statistics.array_statistics(array, "cell", [7] * 9),
    )
    with pytest.raises(IndexError):
        statistics.array_statistics(array, "cell", [7] * 9, sample=[9])


# Every float16 value v in its own record [0, v] (one unit, two steps): no sums whose
# order could differ, so float16 input must give the float32 input's bits, and
# the change column is |v| itself.
def test_every_float16_value_is_read_exactly():
    values = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    for v in [*values[::7].tolist(), np.inf, -np.inf, np.nan, 65504.0, 6e-08]:
        array = np.array([0, v], dtype=np.float16).reshape(1, 2, 1)
        got = statistics.array_statistics(array, "hidden", [2])
        want = statistics.array_statistics(array.astype(np.float32), "hidden", [2])
        np.testing.assert_array_equal(got, want)
        assert np.isnan(v) or got[4] == abs(np.float32(np.float16(v))), (v, got)


def test_table_is_the_statistics_of_each_array():
    rng = np.random.default_rng(5)
    arrays = [rng.standard_normal((3, 5, units)).astype(np.float16) for units in (2, 7)]
    lengths = [5, 2, 0]
    table = statistics.table(arrays, ["cell", "input"], lengths)
    assert table.dtype == np.float32 and table.shape == (2, len(statistics.COLUMNS))
    for row, array, name in zip(table, arrays, ["cell", "input"]):
        np.testing.assert_array_equal(row, statistics.array_statistics(array, name, lengths))


def make_states(batch, time, hidden, lengths, seed=0):
    rng = np.random.default_rng(seed)
    valid = (np.arange(time)[None, :] < np.asarray(lengths)[:, None])[:, :, None]

    def array():
        return (rng.standard_normal((batch, time, hidden)) * valid).astype(np.float32)

    layer = states_lib.LayerStates(
        hidden=array(), cell=array(), gates={n: array() for n in states_lib.GATE_NAMES["lstm"]}
    )
    return states_lib.RecurrentStates("lstm", [layer], np.asarray(lengths))


def test_statistics_of_large_batches_are_sampled_sequences():
    assert list(statistics.sample_sequences(4, 10, max_values=100)) == [0, 1, 2, 3]
    assert list(statistics.sample_sequences(100, 10, max_values=50)) == [0, 25, 50, 74, 99]
    assert list(statistics.sample_sequences(3, 1000, max_values=10)) == [0]
    states = make_states(64, 32, 64, np.arange(64) % 33)
    sampled = statistics.record_statistics(states, max_values=16 * 32 * 64)
    exact = statistics.record_statistics(states, max_values=1 << 40)
    rows = statistics.sample_sequences(64, 32 * 64, max_values=16 * 32 * 64)
    assert len(rows) == 16
    subset = states_lib.RecurrentStates(
        "lstm",
        [
            states_lib.LayerStates(
                states.layers[0].hidden[rows],
                states.layers[0].cell[rows],
                {k: v[rows] for k, v in states.layers[0].gates.items()},
            )
        ],
        states.lengths[rows],
    )
    np.testing.assert_array_equal(sampled, statistics.record_statistics(subset))
    assert statistics.rows("lstm", 1) == [(0, name) for name in states_lib.array_kinds("lstm")]
    # An estimate: means and fractions stay close to the exact ones.
    np.testing.assert_allclose(sampled[:, :3], exact[:, :3], rtol=0.1, atol=0.02)
