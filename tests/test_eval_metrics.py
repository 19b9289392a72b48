"""Parzen window protocol and Frechet distance in closed form, classifier score and label
accuracy; the library oracles for both metrics are in tests/test_oracles.py."""

import math

import numpy as np
import pytest

from genjax_lab.eval import frechet, parzen
from tests.test_oracles import brute_force_parzen


@pytest.fixture(scope="module")
def pixels():
    rng = np.random.default_rng(0)
    # Sample counts that are not multiples of the chunk: padding must carry no weight.
    return rng.random((203, 6, 6, 1)), rng.random((57, 6, 6, 1)), rng.random((71, 6, 6, 1))


def test_parzen_chunk_size_changes_only_summation_order(pixels):
    samples, validation, _ = pixels
    sigmas = np.array([0.1, 0.2, 0.5])
    small = parzen.parzen_log_likelihoods(np.float32(samples), validation, sigmas, chunk=16)
    whole = parzen.parzen_log_likelihoods(samples, validation, sigmas, chunk=1000)
    np.testing.assert_allclose(whole, small, rtol=1e-5, atol=2e-3)


def test_parzen_score_follows_the_protocol(pixels):
    samples, validation, test = pixels
    result = parzen.parzen_score(samples, validation, test, chunk=32)
    means = [brute_force_parzen(samples, validation, s).mean() for s in parzen.DEFAULT_SIGMAS]
    best = parzen.DEFAULT_SIGMAS[int(np.argmax(means))]
    assert result.sigma == pytest.approx(best)
    np.testing.assert_allclose(result.validation_means, means, rtol=1e-5, atol=2e-3)
    test_ll = brute_force_parzen(samples, test, best)
    assert result.mean == pytest.approx(test_ll.mean(), rel=1e-5, abs=2e-3)
    assert result.stderr == pytest.approx(test_ll.std() / math.sqrt(len(test)), rel=1e-3)
    assert len(parzen.DEFAULT_SIGMAS) == 10 and parzen.DEFAULT_SIGMAS[0] == pytest.approx(0.1)


def test_parzen_rejects_bad_inputs(pixels):
    samples, validation, _ = pixels
    with pytest.raises(ValueError, match="x must hold real-valued pixels"):
        parzen.parzen_log_likelihoods(samples, validation * 255, [0.1])
    with pytest.raises(ValueError, match="sigmas"):
        parzen.parzen_log_likelihoods(samples, validation, [0.0])
    with pytest.raises(ValueError, match="pixels per example"):
        parzen.parzen_log_likelihoods(samples, validation[:, :3], [0.1])


def test_frechet_distance_of_gaussians_in_closed_form():
    """Commuting (diagonal) covariances: |dmu|^2 + sum (sqrt(s1) - sqrt(s2))^2;
    rank-deficient ok."""
    s1, s2 = np.array([1.0, 4.0, 0.0]), np.array([9.0, 1.0, 2.0])
    mu1, mu2 = np.zeros(3), np.array([1.0, 2.0, 0.0])
    expected = 5.0 + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert frechet.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(
        expected, rel=1e-12
    )
    with pytest.raises(ValueError, match="cov2 must have shape"):
        frechet.frechet_distance(mu1, np.diag(s1), mu2, np.eye(4))


def test_classifier_score_and_label_accuracy():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(300, 10)) * 3
    p = np.exp(logits - np.logaddexp.reduce(logits, axis=1, keepdims=True))
    marginal = p.mean(0)
    expected = np.exp(np.mean(np.sum(p * (np.log(p) - np.log(marginal)), axis=1)))
    assert frechet.classifier_score(logits) == pytest.approx(expected, rel=1e-10)
    # Confident and balanced over 10 classes: the maximum, 10; one class: the minimum, 1.
    assert frechet.classifier_score(np.tile(np.eye(10) * 100, (3, 1))) == pytest.approx(
        10.0, rel=1e-6
    )
    assert frechet.classifier_score(np.tile([[50.0, 0, 0]], (7, 1))) == pytest.approx(1.0, rel=1e-9)
    labels = np.argmax(logits, 1)
    labels[:30] = (labels[:30] + 1) % 10
    accuracy, per_label = frechet.label_accuracy(logits, labels)
    assert accuracy == pytest.approx(0.9)
    assert per_label.shape == (10,) and np.nanmin(per_label) < 1.0


def test_feature_scores_take_a_feature_function():
    """eval takes a feature function (images -> (logits, features)), never a model: the
    scores are those of the arrays it returns, and train stands in as the real-data floor."""
    rng = np.random.default_rng(3)
    weights = rng.normal(size=(16, 5))

    def features(images):
        flat = np.asarray(images, np.float64).reshape(len(images), -1)
        return flat @ weights, flat[:, :6]

    samples, test, train = (rng.random((40, 4, 4, 1)) for _ in range(3))
    scores = frechet.feature_scores(features, samples, test, train)
    assert scores == {
        "frechet_distance": frechet.frechet_distance_of_features(
            features(samples)[1], features(test)[1]
        ),
        "frechet_distance_train_vs_test": frechet.frechet_distance_of_features(
            features(train)[1], features(test)[1]
        ),
        "classifier_score": frechet.classifier_score(features(samples)[0]),
        "classifier_score_test": frechet.classifier_score(features(test)[0]),
    }
    assert frechet.feature_scores(features, test, test, test)["frechet_distance"] == (
        pytest.approx(0.0, abs=1e-9)
    )
