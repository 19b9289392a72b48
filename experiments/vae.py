"""Trains a VAE, IWAE or conditional VAE, then scores the test set.

./launch.sh vae --config=experiments/configs/vae_digits.py
./launch.sh vae --config=experiments/configs/vae_mnist.py:iwae_table1 --config.data.mnist_dir=DIR
./launch.sh vae --config=experiments/configs/vae_cifar10.py --config.data.cifar10_dir=DIR
./launch.sh sample --workdir=runs/vae --label=7        # then: digits given a label (a CVAE)
./launch.sh classify --workdir=runs/vae --input=DIGITS.npy   # Bayes' rule over p(x | y)
"""

import json
import pathlib

from genjax_lab import saving
from genjax_lab.core import config as config_lib
from genjax_lab.core import metrics as metrics_lib
from genjax_lab.core.loop import train_and_evaluate
from genjax_lab.data.images import bits_per_dim, load_images
from genjax_lab.models import vae

config_lib.define_flags(config_lib.beside(__file__, "configs/vae_digits.py"), "runs/vae")


def main(config, workdir: pathlib.Path) -> None:
    dataset = load_images(config.data)
    family = vae.family_for(config, dataset)
    result = train_and_evaluate(config, workdir, family.as_family(), dataset)
    if result.preempted:
        return  # the final estimates belong to the run that reaches the last step
    binarized = config.data.binarize != "none"
    meta = {
        **family.meta,
        "input": {
            "kind": "image",
            "shape": list(family.image_shape),
            "layout": "image",
            "binarize": "threshold" if binarized else None,
            "labels": [str(label) for label in range(family.num_classes)],
        },
    }
    saving.save(workdir, "vae", config, meta, family.params(result.state.params))
    metrics = result.metrics
    if config.eval.nll_samples:
        metrics = metrics_lib.final_metrics(
            workdir,
            result.step,
            lambda: {**result.metrics, **vae.test_nll(family, result.state, dataset, config)},
        )
    if config.model.likelihood == "logistic":
        # The discretized logistic gives each 8-bit image a probability: its -log p(x) in
        # bits per dimension is the unit colour-image likelihoods are published in.
        scores = [n for n in metrics if n in ("neg_elbo", "test_nll") or n.startswith("nll_iwae")]
        metrics = {
            **metrics,
            **{f"{n}_bits_per_dim": bits_per_dim(metrics[n], family.image_shape) for n in scores},
        }
    metrics_lib.write_summary(workdir, metrics)
    metrics_lib.say(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    config_lib.run(main)
