"""Sample-quality metrics in the feature space of the project's own MNIST classifier.

- Frechet distance between Gaussians fitted to features (the FID recipe, with the MNIST
  classifier of models/classifier.py in place of Inception):
  |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^{1/2}), in float64 on the host. tr (S1 S2)^{1/2}
  comes from symmetric eigen-decompositions: with R = S1^{1/2}, S1 S2 is similar to the
  symmetric PSD R S2 R, so the trace is sum sqrt(eig(R S2 R)); no complex sqrtm.
- Classifier score exp(E_x KL(p(y | x) || p(y))), p(y) = E_x p(y | x) (the Inception
  score's formula with the MNIST classifier).
- Label accuracy: how often the classifier names the label a conditional sample was asked for.
"""
import dataclasses
import json
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genjax_lab.models import classifier


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
    for name, value, shape in (("mean2", mean2, (f,)), ("cov1", cov1, (f, f)), ("cov2", cov2, (f, f))):
        if value.shape != shape:
            raise ValueError(f"{name} must have shape {shape} to match mean1 {mean1.shape}, got {value.shape}")
    root1 = _psd_sqrt(cov1)
    middle = root1 @ cov2 @ root1
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
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
    per_label = np.array([correct[labels == k].mean() if np.any(labels == k) else np.nan
                          for k in range(logits.shape[1])])
    return float(correct.mean()), per_label


@dataclasses.dataclass(frozen=True)
class FeatureNetwork:
    """A trained classifier of experiments/classifier.py: images -> (logits, features)."""

    family: classifier.ClassifierFamily
    params: object

    @classmethod
    def load(cls, workdir: str | pathlib.Path, image_shape: tuple[int, int, int]) -> "FeatureNetwork":
        """The classifier trained in `workdir` (its config.json and newest checkpoint)."""
        config_path = pathlib.Path(workdir) / "config.json"
        if not config_path.is_file():
            raise FileNotFoundError(
                f"config.eval.classifier_workdir={str(workdir)!r}: no config.json; train one with "
                "./launch.sh classifier --config=experiments/configs/classifier.py:mnist --config.data.mnist_dir=DIR "
                f"--workdir={workdir}")
        config = ml_collections.ConfigDict(json.loads(config_path.read_text()))
        family = classifier.ClassifierFamily(config=config, image_shape=tuple(image_shape))
        params = classifier.load_params(workdir)
        try:
            jax.eval_shape(family.model.apply, params, jnp.zeros((1, *image_shape)))
        except Exception as e:  # noqa: BLE001 - a shape mismatch shows up as any of several errors
            raise ValueError(f"config.eval.classifier_workdir={str(workdir)!r}: its classifier does not take "
                             f"images of shape {tuple(image_shape)} ({e})") from e
        return cls(family=family, params=params)

    def __call__(self, images, batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
        """(logits [N, K], features [N, F]) of uint8 or [0, 1] float images [N, H, W, C]."""
        model = self.family.model
        outputs = [_apply(model, self.params, jnp.asarray(images[i:i + batch_size]))
                   for i in range(0, len(images), batch_size)]
        return tuple(np.concatenate([np.asarray(o[j]) for o in outputs]) for j in range(2))


@jax.jit(static_argnums=0)
def _apply(model, params, images):
    x = images.astype(jnp.float32) / (255.0 if images.dtype == jnp.uint8 else 1.0)
    return model.apply(params, x)
