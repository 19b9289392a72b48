"""An MLP classifier, the discriminative counterpart of the conditional VAE.

Variants:
  default  `./launch.sh classifier`: 64-200-200-10 ReLU MLP on the 8x8 digits, binarized
           the same way as the CVAE's inputs (dynamic), 60 epochs; compare its test
           accuracy with the CVAE's Bayes-rule accuracy (`./launch.sh vae`).
  mnist    a small convnet on MNIST grey levels, 5 epochs: the feature network for
           sample metrics (Frechet distance, classifier score).
  tiny     a few steps, for tests.
"""

import ml_collections

from genjax_lab.models import classifier


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
    config = classifier.default_config()
    config.data.binarize = "dynamic"
    if variant == "mnist":
        config.data.name, config.data.binarize = "mnist", "none"
        config.batch_size, config.num_epochs, config.eval_batch_size = 128, 5.0, 1000
        config.model.conv, config.model.hidden = True, (128,)
        config.log_every, config.checkpoint.every = 200, 1000
    elif variant == "tiny":
        config.num_epochs, config.num_steps, config.log_every, config.checkpoint.every = (
            -1,
            30,
            10,
            10,
        )
        config.model.hidden = (32,)
    elif variant != "default":
        raise ValueError(f"unknown variant {variant!r} of classifier: default, mnist or tiny")
    return config
