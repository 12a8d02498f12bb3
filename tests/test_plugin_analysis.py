"""The analyses behind `units`, `changes` and `projection` bound their cost by
construction (streamed blocks, capped clustering, truncated PCA, reduced t-SNE input)
and agree with the plain whole-array definitions they replace."""

import numpy as np
import pytest

from tb_lstm_states import analysis
from tb_lstm_states.analysis import temporal, tsne
from tb_lstm_states.analysis import units as unit_analysis


def reference_unit_statistics(array, name, lengths, series=None):
    """The whole-array definitions: one float64 copy of every valid position."""
    array = np.asarray(array, dtype=np.float32)
    mask = analysis.valid_mask(lengths, array.shape[1])
    values = array[mask].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        result = {
            "variance": values.var(axis=0),
            "saturation": analysis.saturated(values, name).mean(axis=0),
            "activity": np.abs(values).mean(axis=0),
            "dead": (values.max(axis=0) - values.min(axis=0)) < 1e-3,
            "correlation": {},
        }
        for key, track in (series or {}).items():
            y = np.asarray(track, np.float64)[mask]
            m, v = values - values.mean(axis=0), y - y.mean()
            denominator = np.sqrt((m * m).sum(axis=0) * (v * v).sum())
            result["correlation"][key] = np.where(
                denominator > 0,
                (m * v[:, None]).sum(axis=0) / np.where(denominator > 0, denominator, 1),
                np.nan,
            )
    return result


def reference_changes(sequence, length):
    x = np.asarray(sequence, dtype=np.float64)[:length]
    delta = np.diff(x, axis=0)
    norm = np.linalg.norm(delta, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        dots = np.sum(delta[1:] * delta[:-1], axis=1)
        denominator = norm[1:] * norm[:-1]
        cosine = np.where(denominator > 0, dots / np.where(denominator > 0, denominator, 1), np.nan)
    return norm, cosine


@pytest.mark.parametrize("block", [1, 7, 64, 1 << 20])
@pytest.mark.parametrize("seed", range(3))
def test_streamed_unit_statistics_equal_the_whole_array_definitions(monkeypatch, block, seed):
    monkeypatch.setattr(unit_analysis, "_BLOCK_VALUES", block)
    rng = np.random.default_rng(seed)
    batch, time, units = 3, 40, 5
    array = (rng.standard_normal((batch, time, units)) * 0.5 + 3.0).astype(np.float32)
    array[:, :, 4] = 0.2  # a dead unit
    lengths = [40, 17, 0]
    series = {"s": rng.standard_normal((batch, time)), "flat": np.ones((batch, time))}
    got = analysis.unit_statistics(array, "cell", lengths, series)
    want = reference_unit_statistics(array, "cell", lengths, series)
    for key in ("variance", "saturation", "activity"):
        np.testing.assert_allclose(got[key], want[key], rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(got["dead"], want["dead"])
    for key in series:
        np.testing.assert_allclose(
            got["correlation"][key], want["correlation"][key], rtol=1e-8, atol=1e-10, equal_nan=True
        )
    assert sorted(got["order"]) == list(range(units))


@pytest.mark.parametrize("block", [1, 3, 10, 1 << 20])
@pytest.mark.parametrize("length", [0, 1, 2, 3, 4, 31])
def test_changes_in_blocks_equal_the_whole_sequence(monkeypatch, block, length):
    monkeypatch.setattr(temporal, "_BLOCK_VALUES", block)
    sequence = np.random.default_rng(length).standard_normal((31, 3)).astype(np.float16)
    sequence[5] = sequence[4]  # a zero change: the cosines around it are undefined
    got = analysis.changes(sequence, length)
    if length >= 2:
        norm, cosine = reference_changes(sequence, length)
        np.testing.assert_allclose(got["norm"][1:], norm, rtol=1e-12)
        np.testing.assert_allclose(got["cosine"][2:], cosine, rtol=1e-12, equal_nan=True)
    assert len(got["norm"]) == length


def test_periods_in_unit_blocks(monkeypatch):
    t = np.arange(256)
    array = np.stack([np.sin(2 * np.pi * t / p) for p in (8, 16, 32)], axis=1)[None].repeat(2, 0)
    whole = analysis.dominant_periods(array, [256, 200])
    monkeypatch.setattr(unit_analysis, "_BLOCK_VALUES", 600)  # one unit per block
    blocked = analysis.dominant_periods(array, [256, 200])
    np.testing.assert_allclose(blocked["strength"], whole["strength"])
    assert list(blocked["period"]) == [8, 16, 32]


def test_many_units_are_ordered_without_clustering():
    rng = np.random.default_rng(0)
    units = analysis.MAX_CLUSTER_UNITS + 200
    signals = rng.standard_normal((300, 2))
    groups = np.arange(units) % 2
    values = signals[:, groups] + 0.05 * rng.standard_normal((300, units))
    order = analysis.cluster_order(values)
    assert sorted(order) == list(range(units))
    # Correlated units end up side by side: the order switches group about once.
    assert np.count_nonzero(np.diff(groups[order])) <= 4


@pytest.mark.parametrize("points, units", [(400, 300), (100, 300), (3000, 40)])
def test_pca_is_exact_or_randomized_with_the_same_axes(points, units):
    rng = np.random.default_rng(1)
    latent = rng.standard_normal((points, 2)) * [5.0, 2.0]
    x = latent @ rng.standard_normal((2, units)) + 0.01 * rng.standard_normal((points, units))
    x = x.astype(np.float32)
    result = analysis.project_pca([x[: points // 2], x[points // 2 :]])
    got = np.concatenate(result["coordinates"])
    centered = x - x.mean(axis=0)
    _, singular, vt = np.linalg.svd(centered.astype(np.float64), full_matrices=False)
    want = centered @ vt[:2].T
    for axis in range(2):  # equal up to sign
        sign = np.sign(got[:, axis] @ want[:, axis])
        np.testing.assert_allclose(
            sign * got[:, axis], want[:, axis], rtol=1e-3, atol=1e-3 * abs(want).max()
        )
    total = (singular**2).sum()
    np.testing.assert_allclose(result["explained_variance"], singular[:2] ** 2 / total, rtol=1e-3)


def test_tsne_input_is_reduced_to_its_leading_components(monkeypatch):
    seen = []
    original = tsne._neighbour_affinities

    def spy(x, perplexity):
        seen.append(x.shape)
        return original(x, perplexity)

    monkeypatch.setattr(tsne, "_neighbour_affinities", spy)
    rng = np.random.default_rng(0)
    points = [rng.standard_normal((60, 500)).astype(np.float32) for _ in range(2)]
    result = analysis.project_tsne(
        points, [np.arange(60)] * 2, first_iterations=20, next_iterations=5
    )
    assert seen == [(60, analysis.NEIGHBOUR_DIMENSIONS)] * 2
    assert all(np.isfinite(c).all() and c.shape == (60, 2) for c in result["coordinates"])
