"""The discriminative baseline trains through the loop on 8 devices and learns, and its
workdir loads as the feature function of the sample metrics (FeatureNetwork)."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from experiments.configs import classifier as classifier_config
from genjax_lab.core.data import Dataset
from genjax_lab.core.loop import train_and_evaluate
from genjax_lab.models import classifier


def test_mlp_classifier_learns_digits_in_the_loop(tmp_path):
    digits = load_digits()
    images = np.round(digits.images * 255 / 16).astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int32)
    dataset = Dataset(
        {
            "train": {"image": images[:1400], "label": labels[:1400]},
            "test": {"image": images[1400:], "label": labels[1400:]},
        }
    )
    config = classifier_config.get_config("tiny")
    config.num_steps, config.batch_size, config.data.binarize = 300, 64, "none"
    config.eval_batch_size = 200  # 397 test images: the last batch is padded and masked
    result = train_and_evaluate(
        config, tmp_path, classifier.family_for(config, dataset).as_family(), dataset
    )
    assert result.metrics["accuracy"] > 0.85, result.metrics
    assert result.step == 300 and (tmp_path / "checkpoints" / "300").exists()
    network = classifier.FeatureNetwork.load(tmp_path, (8, 8, 1))
    logits, features = network(dataset["test"]["image"], batch_size=150)
    hidden = config.model.hidden[-1]
    assert logits.shape == (397, 10) and features.shape == (397, hidden)
    accuracy = np.mean(np.argmax(logits, 1) == dataset["test"]["label"])
    assert accuracy == pytest.approx(result.metrics["accuracy"], abs=1e-6)
    with pytest.raises(ValueError, match="classifier_workdir"):
        classifier.FeatureNetwork.load(tmp_path, (28, 28, 1))
