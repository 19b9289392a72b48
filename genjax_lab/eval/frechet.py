"""Sample-quality metrics in the feature space of a classifier the caller supplies.

Everything here takes arrays, or a feature function images -> (logits, features) (the
project's MNIST classifier, models.classifier.FeatureNetwork, in place of Inception); no
model is imported.
- Frechet distance between Gaussians fitted to features (the FID recipe):
  |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^{1/2}), in float64 on the host. tr (S1 S2)^{1/2}
  without a complex sqrtm: with R_i = S_i^{1/2} (symmetric eigen-decompositions), S1 S2 is
  similar to R1 S2 R1 = (R2 R1)^T (R2 R1), whose eigenvalues are the squared singular
  values of R2 R1, so the trace is the sum of those singular values. Taken from R2 R1
  itself, not from the eigenvalues of its square, the small ones keep their digits: with
  covariances of condition 1e8 the distance of a set to itself is 1e-13 of the traces, not
  1e-9.
- Classifier score exp(E_x KL(p(y | x) || p(y))), p(y) = E_x p(y | x) (the Inception
  score's formula with the MNIST classifier).
- Label accuracy: how often the classifier names the label a conditional sample was asked for.
"""

from collections.abc import Callable

import numpy as np

# images [N, H, W, C] (uint8, or floats in [0, 1]) -> (logits [N, K], features [N, F]).
FeatureFunction = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def gaussian_fit(features) -> tuple[np.ndarray, np.ndarray]:
    """(mean [F], covariance [F, F], ddof 1) in float64 of features [N, F], N >= 2."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"features must be [N, F] with N >= 2, got shape {features.shape}")
    if not np.all(np.isfinite(features)):
        raise ValueError("features must be finite")
    return features.mean(0), np.cov(features, rowvar=False)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mean1, cov1, mean2, cov2) -> float:
    """Frechet (2-Wasserstein) distance squared between N(mean1, cov1) and N(mean2, cov2)."""
    mean1, mean2 = np.asarray(mean1, np.float64), np.asarray(mean2, np.float64)
    cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    f = mean1.shape[0]
    expected = (("mean2", mean2, (f,)), ("cov1", cov1, (f, f)), ("cov2", cov2, (f, f)))
    for name, value, shape in expected:
        if value.shape != shape:
            raise ValueError(
                f"{name} must have shape {shape} to match mean1 {mean1.shape}, got {value.shape}"
            )
    trace_sqrt = np.linalg.svd(_psd_sqrt(cov2) @ _psd_sqrt(cov1), compute_uv=False).sum()
    return float(np.sum((mean1 - mean2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_sqrt)


def frechet_distance_of_features(features1, features2) -> float:
    """Frechet distance between Gaussians fitted to two feature sets [N1, F], [N2, F]."""
    return frechet_distance(*gaussian_fit(features1), *gaussian_fit(features2))


def classifier_score(logits) -> float:
    """exp(mean_x KL(p(y | x) || p(y))) for classifier logits [N, K]; between 1 and K."""
    logits = np.asarray(logits, np.float64)
    if logits.ndim != 2 or not np.all(np.isfinite(logits)):
        raise ValueError(f"logits must be finite [N, K], got shape {logits.shape}")
    log_p = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    log_marginal = np.log(np.exp(log_p).mean(0))
    kl = np.sum(np.exp(log_p) * (log_p - log_marginal), axis=1)
    return float(np.exp(kl.mean()))


def label_accuracy(logits, labels) -> tuple[float, np.ndarray]:
    """(overall accuracy, accuracy per label [K]) of argmax logits [N, K] against labels [N]."""
    logits, labels = np.asarray(logits), np.asarray(labels)
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"logits [N, K] and labels [N] disagree: {logits.shape} vs {labels.shape}")
    correct = np.argmax(logits, axis=1) == labels
    per_label = np.array(
        [
            correct[labels == k].mean() if np.any(labels == k) else np.nan
            for k in range(logits.shape[1])
        ]
    )
    return float(correct.mean()), per_label


def feature_scores(
    features: FeatureFunction, samples, test_images, train_images
) -> dict[str, float]:
    """Samples against real images through `features`: frechet_distance (samples vs test),
    its floor frechet_distance_train_vs_test (real train vs real test), classifier_score of
    the samples and classifier_score_test of the test images."""
    sample_logits, sample_features = features(samples)
    test_logits, test_features = features(test_images)
    _, train_features = features(train_images)
    return {
        "frechet_distance": frechet_distance_of_features(sample_features, test_features),
        "frechet_distance_train_vs_test": frechet_distance_of_features(
            train_features, test_features
        ),
        "classifier_score": classifier_score(sample_logits),
        "classifier_score_test": classifier_score(test_logits),
    }
