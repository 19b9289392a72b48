"""A trained GAN's sample metrics: the Parzen estimate and, given a feature function, the
Frechet distance, the classifier score and a cGAN's label accuracy."""

import jax
import ml_collections
import numpy as np

from genjax_lab.core import data as data_lib
from genjax_lab.core import mesh as mesh_lib
from genjax_lab.eval import frechet, parzen
from genjax_lab.models.gan.family import GANFamily, GANState
from genjax_lab.models.gan.model import sample


def _marginal_labels(
    family: GANFamily, train_labels: np.ndarray, num: int, rng: np.random.Generator
):
    """Labels of a cGAN's samples drawn from the training label frequencies, so the
    samples come from the marginal p(x) = sum_y p(y) p(x | y); None for a plain GAN."""
    return rng.choice(train_labels, size=num) if family.conditional else None


def sample_metrics(
    family: GANFamily,
    state: GANState,
    dataset: data_lib.Dataset,
    validation: dict[str, np.ndarray],
    config: ml_collections.ConfigDict,
    features: frechet.FeatureFunction | None = None,
) -> dict[str, float]:
    """What config.eval asks for: the Parzen log-likelihood of the test set (Goodfellow et
    al.'s protocol); with `features` (images -> (logits, features) of a trained classifier,
    e.g. models.classifier.FeatureNetwork), the Frechet distance of samples to test images
    beside the real-train-vs-real-test floor, the classifier score of samples and of test
    images, and a cGAN's label accuracy."""
    ev = config.eval
    params = mesh_lib.host_copy(family.params_of(state))
    key = jax.random.fold_in(jax.random.key(config.seed), 30_000)
    rng = np.random.default_rng([config.seed, 30_000])
    train, test = dataset["train"], dataset["test"]
    results = {}
    if ev.parzen_samples:
        labels = _marginal_labels(family, train["label"], ev.parzen_samples, rng)
        samples = sample(jax.random.fold_in(key, 0), params, ev.parzen_samples, y=labels)
        score = parzen.parzen_score(
            samples,
            validation["image"][: ev.parzen_validation] / 255.0,
            test["image"] / 255.0,
            chunk=ev.parzen_chunk,
        )
        results.update(
            parzen_log_likelihood=score.mean, parzen_stderr=score.stderr, parzen_sigma=score.sigma
        )
    if features is not None:
        n = ev.feature_samples
        labels = _marginal_labels(family, train["label"], n, rng)
        samples = sample(jax.random.fold_in(key, 1), params, n, y=labels)
        results.update(
            frechet.feature_scores(features, samples, test["image"][:n], train["image"][:n])
        )
        if family.conditional:
            labels = np.repeat(np.arange(family.num_classes, dtype=np.int32), ev.label_samples)
            given = sample(jax.random.fold_in(key, 2), params, len(labels), y=labels)
            accuracy, per_label = frechet.label_accuracy(features(given)[0], labels)
            results.update(
                label_accuracy=accuracy, label_accuracy_worst=float(np.nanmin(per_label))
            )
    return results
