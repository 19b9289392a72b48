"""Parzen window and Frechet distance against float64 NumPy / SciPy references."""
import math

import numpy as np
import pytest
import scipy.linalg

from genjax_lab.eval import frechet, parzen


def _numpy_parzen(samples, x, sigma):
    """Direct float64 formula: differences, no expansion, no chunks."""
    mu = np.float64(samples).reshape(len(samples), -1)
    x = np.float64(x).reshape(len(x), -1)
    sq = ((x[:, None, :] - mu[None, :, :]) ** 2).sum(-1)
    exponents = -sq / (2 * sigma**2)
    return (np.logaddexp.reduce(exponents, axis=1) - math.log(len(mu))
            - mu.shape[1] * math.log(sigma * math.sqrt(2 * math.pi)))


@pytest.fixture(scope="module")
def pixels():
    rng = np.random.default_rng(0)
    # Sample counts that are not multiples of the chunk: padding must carry no weight.
    return rng.random((203, 6, 6, 1)), rng.random((57, 6, 6, 1)), rng.random((71, 6, 6, 1))


def test_parzen_equals_float64_numpy_in_chunks(pixels):
    samples, validation, _ = pixels
    sigmas = np.array([0.1, 0.2, 0.5])
    got = parzen.parzen_log_likelihoods(np.float32(samples), validation, sigmas, chunk=16)
    expected = np.stack([_numpy_parzen(samples, validation, s) for s in sigmas], axis=1)
    # float32 distances: |x - mu|^2 / (2 sigma^2) of order 100 at sigma 0.1, to ~1e-5 relative.
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=2e-3)
    # The chunk size changes only summation order.
    np.testing.assert_allclose(parzen.parzen_log_likelihoods(samples, validation, sigmas, chunk=1000), got,
                               rtol=1e-5, atol=2e-3)


def test_parzen_score_follows_the_protocol(pixels):
    samples, validation, test = pixels
    result = parzen.parzen_score(samples, validation, test, chunk=32)
    means = [_numpy_parzen(samples, validation, s).mean() for s in parzen.DEFAULT_SIGMAS]
    best = parzen.DEFAULT_SIGMAS[int(np.argmax(means))]
    assert result.sigma == pytest.approx(best)
    np.testing.assert_allclose(result.validation_means, means, rtol=1e-5, atol=2e-3)
    test_ll = _numpy_parzen(samples, test, best)
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


def _scipy_frechet(a, b):
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(s1 @ s2).real
    return np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * root)


def test_frechet_distance_equals_scipy_sqrtm():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(500, 12)) @ rng.normal(size=(12, 12))
    b = rng.normal(0.3, 1.5, size=(400, 12)) @ rng.normal(size=(12, 12))
    got = frechet.frechet_distance_of_features(a, b)
    assert got == pytest.approx(_scipy_frechet(a, b), rel=1e-8)
    assert frechet.frechet_distance_of_features(a, a) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_of_gaussians_in_closed_form():
    """Commuting (diagonal) covariances: |dmu|^2 + sum (sqrt(s1) - sqrt(s2))^2; rank-deficient ok."""
    s1, s2 = np.array([1.0, 4.0, 0.0]), np.array([9.0, 1.0, 2.0])
    mu1, mu2 = np.zeros(3), np.array([1.0, 2.0, 0.0])
    expected = 5.0 + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert frechet.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-12)
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
    assert frechet.classifier_score(np.tile(np.eye(10) * 100, (3, 1))) == pytest.approx(10.0, rel=1e-6)
    assert frechet.classifier_score(np.tile([[50.0, 0, 0]], (7, 1))) == pytest.approx(1.0, rel=1e-9)
    labels = np.argmax(logits, 1)
    labels[:30] = (labels[:30] + 1) % 10
    accuracy, per_label = frechet.label_accuracy(logits, labels)
    assert accuracy == pytest.approx(0.9)
    assert per_label.shape == (10,) and np.nanmin(per_label) < 1.0
