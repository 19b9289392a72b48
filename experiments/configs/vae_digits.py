"""VAE on the embedded 8x8 digits (scikit-learn's copy, prepared as a TFDS dataset offline).

Variants (`--config=experiments/configs/vae_digits.py:VARIANT`):
  default  `./launch.sh vae`: the conditional VAE p(x | y, z), 64-200-200-16 tanh MLPs,
           dynamic binarization, 60 epochs (1,380 steps of 64); classifies the test set
           by Bayes' rule (p(x | y) by importance sampling, 100 samples per label).
  vae      the same without labels: an unconditional VAE.
  tiny     a few steps, for tests and smoke runs (seconds).
"""

import ml_collections

from genjax_lab.models import vae


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
    config = vae.default_config()
    config.model.conditional = variant != "vae"
    config.eval.classify_samples = 100 if config.model.conditional else 0
    if variant == "tiny":
        config.num_epochs = -1
        config.num_steps = 40
        config.batch_size = 32
        config.log_every = 10
        config.checkpoint.every = 10
        config.model.encoder_hidden = (32,)
        config.model.decoder_hidden = (32,)
        config.model.latent_dim = 4
        config.eval.iwae_samples = 5
        config.eval.nll_samples = 20
        config.eval.nll_chunk = 10
        config.eval.classify_samples = 10
    elif variant not in ("default", "vae"):
        raise ValueError(f"unknown variant {variant!r} of vae_digits: default, vae or tiny")
    return config
