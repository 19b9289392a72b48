"""GANs on MNIST (real-valued pixels in [0, 1]); tiny variants on the embedded 8x8 digits.

Training uses train[:50000]; train[50000:60000] is held out (`data.holdout`) and its first
1,000 images choose the Parzen width, as in Goodfellow et al. (2014).

Variants (`--config=experiments/configs/gan_mnist.py:VARIANT --config.data.mnist_dir=DIR`):
  mlp        the 2014 paper's MLP GAN: G 100-1200-1200-784 ReLU/sigmoid, D maxout
             784-(240x5)-(240x5)-1 with dropout 0.2 on the input and 0.5 on hidden units;
             Adam 2e-4 (beta1 0.5), batch 100, normal noise; nonsaturating loss; the
             paper code's initialisation (weights uniform +-0.05 in G, +-0.005 in D, G's
             output bias at the logits of the pixel means).
  mlp_paper  mlp trained by the 2014 code's own rule (goodfeli/adversarial mnist.yaml):
             one heavy-ball SGD step of G and D together from one forward pass, rate
             0.1 / 1.000004^t (floor 1e-6), momentum 0.5 -> 0.7 over epochs 1..250, D's
             objective halved, uniform noise U(-sqrt 3, sqrt 3); samples from the raw G (no
             EMA); every evaluation also scores the held-out split and reports the test
             Parzen estimate at the step that split ranks best (parzen_selected_*).
  mlp_small  G 100-256-512-784, D 784-512-256-1 LeakyReLU, batch 128 (the benchmark's model).
  dcgan      Radford et al.'s recipe without batch norm: G 7x7x128 -> 14x14x64 -> 28x28x1
             transposed convs, D 4x4 stride-2 convs 64, 128; Adam 2e-4, beta1 0.5, batch 128;
             weights with Radford's std 0.02 (uniform +-0.0346: with LeCun normal, D won
             outright within 200 steps and G collapsed).
  cgan       mlp conditioned on the label (one-hot into G and D), as Mirza & Osindero (2014)
             conditioned the paper's MLP GAN with a maxout D: a sample grid with one row
             per digit, and the classifier's accuracy on samples of each label.
  tiny_mlp, tiny_mlp_paper, tiny_dcgan, tiny_cgan
             a few steps on the 8x8 digits, offline (tests, seconds).
Options: --config.model.loss=hinge | wgan-gp (then e.g. --config.model.n_critic=5
--config.optim.b1=0. --config.optim.b2=0.9 --config.optim.g_learning_rate=1e-4 ...).

Sample metrics in the feature space of the MNIST classifier need it trained first:
  ./launch.sh classifier --config=experiments/configs/classifier.py:mnist \\
      --config.data.mnist_dir=DIR --workdir=runs/classifier_mnist
and `--config.eval.classifier_workdir=runs/classifier_mnist`.

Measured (docs/gan.md, 2 shared CPU cores): see the results table there for the commands,
step counts and numbers (Parzen LL, Frechet distance, cGAN label accuracy).
"""

import ml_collections

from genjax_lab.models import gan

VARIANTS = (
    "mlp",
    "mlp_paper",
    "mlp_small",
    "dcgan",
    "cgan",
    "tiny_mlp",
    "tiny_mlp_paper",
    "tiny_dcgan",
    "tiny_cgan",
)


def get_config(variant: str = "mlp") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r} of gan_mnist: one of {', '.join(VARIANTS)}")
    config = gan.default_config()
    arch = variant.removeprefix("tiny_")
    if arch == "mlp_paper":
        arch = "mlp"
        config.model.update(noise="uniform", d_loss_scale=0.5)
        config.optim.update(
            optimizer="momentum",
            update_order="simultaneous",
            g_learning_rate=0.1,
            d_learning_rate=0.1,
            lr_decay_factor=1.000004,
            min_learning_rate=1e-6,
            momentum=0.5,
            final_momentum=0.7,
            momentum_start=1,
            momentum_saturate=250,
        )
        config.eval.update(use_ema=False, select_on_validation=True)
    if arch in ("mlp", "cgan"):
        config.batch_size = 100
        config.model.update(
            g_hidden=(1200, 1200),
            d_hidden=(240, 240),
            d_maxout_pieces=5,
            d_input_dropout=0.2,
            d_dropout=0.5,
            g_init_range=0.05,
            d_init_range=0.005,
        )
    elif arch == "dcgan":
        config.model.update(arch="dcgan", g_init_range=0.0346, d_init_range=0.0346)
    if arch == "cgan":
        config.model.conditional = True
    if variant.startswith("tiny_"):
        config.data.name, config.data.holdout = "digits", 200
        config.num_epochs, config.num_steps, config.batch_size = -1, 30, 32
        config.log_every, config.eval_every, config.checkpoint.every = 10, 0, 10
        config.eval_batch_size = 120
        config.model.update(g_hidden=(32,), d_hidden=(32,))
        config.eval.update(parzen_samples=300, parzen_validation=100, parzen_chunk=100)
    return config
