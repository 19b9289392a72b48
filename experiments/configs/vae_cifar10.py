"""VAE on CIFAR-10 with the discretized-logistic decoder, scored in bits per dimension.

Each of the 32x32x3 colour values is an 8-bit level with a discretized logistic likelihood
(256 bins on [-1, 1], Salimans et al. 2017), so -log p(x) is a probability of the 8-bit
image and bits/dim = nats / (3,072 ln 2), the unit CIFAR-10 likelihoods are published in
(Kingma et al. 2016 report 3.11 bits/dim for a deep IAF-VAE, far larger than this one).

./launch.sh vae --config=experiments/configs/vae_cifar10.py --workdir=runs/vae_cifar10
  (downloads CIFAR-10 through TFDS; offline, add --config.data.cifar10_dir=DIR, a folder
  holding cifar-10-binary.tar.gz or cifar-10-python.tar.gz)

Variants (`--config=experiments/configs/vae_cifar10.py:VARIANT`):
  default  two stride-2 convolutions (32, 64 channels) and a 512-unit layer each way,
           64 latents, ELU, Adam 1e-3, batch 64, 20 epochs; test -log p(x)
           from 100 importance samples on the first 1,000 test images. Not yet measured
           on the real data (none on this machine).
  tiny     a few steps of a small model, for tests and smoke runs (seconds).
"""

import ml_collections

from genjax_lab.models import vae
from genjax_lab.models.vae.family import shrink_to_tiny


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
    config = vae.default_config()
    config.data.name = "cifar10"
    config.data.binarize = "none"  # the logistic decoder takes the 8-bit levels
    config.model.likelihood = "logistic"
    config.model.conv = True
    config.model.activation = "elu"
    config.model.encoder_hidden = (512,)
    config.model.decoder_hidden = (512,)
    config.model.latent_dim = 64
    config.batch_size = 64
    config.num_epochs = 20.0
    config.log_every = 200
    config.eval_every = 0
    config.eval_batch_size = 500
    config.checkpoint.every = 2000
    config.eval.iwae_samples = 10
    config.eval.nll_samples = 100
    config.eval.nll_chunk = 50
    config.eval.nll_batch_size = 100
    config.eval.nll_examples = 1000
    if variant == "tiny":
        shrink_to_tiny(config)
    elif variant != "default":
        raise ValueError(f"unknown variant {variant!r} of vae_cifar10: default or tiny")
    return config
