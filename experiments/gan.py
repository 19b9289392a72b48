"""Trains a GAN (MLP, DCGAN or conditional), then scores its samples.

  ./launch.sh gan --config=experiments/configs/gan_mnist.py:mlp --config.data.mnist_dir=DIR
  ./launch.sh gan --config=experiments/configs/gan_mnist.py:cgan --config.data.mnist_dir=DIR \\
      --config.eval.classifier_workdir=runs/classifier_mnist --workdir=runs/gan_cgan

Every evaluation (config.eval_every, and the last step) logs the sample metrics to
metrics.jsonl and images/metrics.png: parzen_log_likelihood +- parzen_stderr (sigma
parzen_sigma), with a classifier frechet_distance (floor: frechet_distance_train_vs_test),
classifier_score (test images: classifier_score_test), cGAN label_accuracy. summary.json:
the last step's metrics and the timings (train_seconds includes the evaluations).
"""

import dataclasses
import json
import pathlib
import time

from genjax_lab import saving
from genjax_lab.core import config as config_lib
from genjax_lab.core import metrics as metrics_lib
from genjax_lab.core.loop import train_and_evaluate
from genjax_lab.data.images import load_images
from genjax_lab.models import classifier, gan

config_lib.define_flags(config_lib.beside(__file__, "configs/gan_mnist.py:tiny_mlp"), "runs/gan")


def main(config, workdir: pathlib.Path) -> None:
    dataset, validation = gan.split_holdout(load_images(config.data), config.data.holdout)
    family = gan.family_for(config, dataset)
    features = None
    if config.eval.classifier_workdir:  # loaded before training: a wrong path fails at once
        features = classifier.FeatureNetwork.load(
            config.eval.classifier_workdir, family.image_shape
        )
    family = dataclasses.replace(
        family,
        score_samples=lambda state: gan.sample_metrics(
            family, state, dataset, validation, config, features
        ),
    )
    start = time.perf_counter()
    result = train_and_evaluate(config, workdir, family.as_family(), dataset)
    train_seconds = time.perf_counter() - start  # this launch only
    if result.preempted:
        return  # the final estimates belong to the run that reaches the last step
    meta = {
        "image_shape": list(family.image_shape),
        "num_classes": family.num_classes,
        "input": {"kind": "image", "shape": list(family.image_shape), "layout": "image"},
    }
    saving.save(workdir, "gan", config, meta, family.params_of(result.state))
    # no timings in the record: reruns compare equal
    metrics = metrics_lib.final_metrics(workdir, result.step, lambda: result.metrics)
    metrics_lib.write_summary(workdir, {**metrics, "train_seconds": train_seconds})
    metrics_lib.say(json.dumps({**metrics, "train_seconds": train_seconds}, indent=1))


if __name__ == "__main__":
    config_lib.run(main)
