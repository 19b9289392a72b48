"""VAE on Fashion-MNIST (Xiao et al. 2017): 28x28 grey-level clothing, 10 classes, drop-in
for MNIST (the same four IDX file names, 60,000 train / 10,000 test).

./launch.sh vae --config=experiments/configs/vae_fashion_mnist.py --workdir=runs/vae_fashion
  (downloads Fashion-MNIST through TFDS; offline, add --config.data.fashion_mnist_dir=DIR,
  a folder holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
  t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz)

Variants (`--config=experiments/configs/vae_fashion_mnist.py:VARIANT`):
  default   the one-layer model of vae_mnist.py (784-200-200-50 tanh, Gaussian q,
            Bernoulli p on dynamically binarized pixels), Adam 1e-3, batch 100, 50 epochs
            (30,000 steps); test -log p(x) in nats from 1,000 importance samples.
  logistic  the 8-bit grey levels under the discretized-logistic decoder, scored in bits
            per dimension (nats / (784 ln 2)) as colour datasets are.
  tiny      a few steps of a small model, for smoke runs (seconds).
Not yet measured on the real data (none on this machine).
"""

import ml_collections

from genjax_lab.models import vae
from genjax_lab.models.vae.family import shrink_to_tiny


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
    config = vae.default_config()
    config.data.name = "fashion_mnist"
    config.data.binarize = "dynamic"
    config.batch_size = 100
    config.num_epochs = 50.0
    config.log_every = 600
    config.eval_every = 6000
    config.eval_batch_size = 1000
    config.checkpoint.every = 3000
    config.model.encoder_hidden = config.model.decoder_hidden = (200, 200)
    config.model.latent_dim = 50
    config.model.activation = "tanh"
    config.eval.nll_batch_size = 100
    config.eval.nll_examples = 1000
    if variant == "logistic":
        config.data.binarize = "none"  # the logistic decoder takes the 8-bit levels
        config.model.likelihood = "logistic"
    elif variant == "tiny":
        shrink_to_tiny(config)
    elif variant != "default":
        raise ValueError(
            f"unknown variant {variant!r} of vae_fashion_mnist: default, logistic or tiny"
        )
    return config
