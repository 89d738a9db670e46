import numpy as np
import pytest

from vidprism_ds.analysis.collect import Specialisation
from vidprism_ds.analysis.metrics import (expert_similarity, keep_histogram, mean_off_diagonal, per_class_accuracy,
                                          top1, weight_by_class)


def _spec(**kw):
    defaults = dict(labels_n=np.array([0, 0, 1, 2]), predictions_n=np.array([0, 1, 1, 0]),
                    expert_weights_ne=np.array([[0.8, 0.2], [0.6, 0.4], [0.1, 0.9], [0.5, 0.5]]),
                    expert_means_ned=np.random.default_rng(0).normal(size=(4, 2, 5)))
    return Specialisation(**{**defaults, **kw})


def test_weight_by_class_averages_each_class_and_marks_absent_ones():
    w = weight_by_class(_spec(), num_classes=4)
    np.testing.assert_allclose(w[:3], [[0.7, 0.3], [0.1, 0.9], [0.5, 0.5]])
    assert np.isnan(w[3]).all()


def test_accuracy_overall_and_per_class():
    spec = _spec()
    assert top1(spec) == 0.5
    acc = per_class_accuracy(spec, 4)
    np.testing.assert_allclose(acc[:3], [0.5, 1.0, 0.0])
    assert np.isnan(acc[3])


def test_similarity_of_parallel_orthogonal_and_opposite_experts():
    means = np.zeros((2, 3, 4))
    means[:, 0, 0] = [1.0, 2.0]
    means[:, 1, 0] = [3.0, 0.5]  # same direction as expert 0 in every clip
    means[0, 2, 1] = 1.0  # orthogonal in clip 0,
    means[1, 2, 0] = -1.0  # opposite in clip 1
    sim = expert_similarity(_spec(expert_means_ned=means, labels_n=np.zeros(2, int), predictions_n=np.zeros(2, int),
                                  expert_weights_ne=np.full((2, 3), 1 / 3)))
    np.testing.assert_allclose(np.diag(sim), 1.0)
    np.testing.assert_allclose(sim, sim.T)
    assert sim[0, 1] == pytest.approx(1.0)
    assert sim[0, 2] == pytest.approx(-0.5) and sim[1, 2] == pytest.approx(-0.5)
    assert mean_off_diagonal(sim) == pytest.approx((1.0 - 0.5 - 0.5) / 3)
    assert np.isnan(mean_off_diagonal(np.ones((1, 1))))


def test_keep_histogram_counts_kept_frames_per_rate():
    spec = _spec(keep_indices=[np.array([[0, 3], [1, 3], [0, 2], [0, 3]]), np.array([[1], [1], [2], [0]])],
                 num_frames=4)
    hist = keep_histogram(spec)
    np.testing.assert_allclose(hist[0], [0.75, 0.25, 0.25, 0.75])
    np.testing.assert_allclose(hist[1], [0.25, 0.5, 0.25, 0.0])
    np.testing.assert_allclose(hist.sum(axis=1), [2.0, 1.0])  # windows per clip
