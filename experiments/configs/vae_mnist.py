"""VAE / IWAE on MNIST with dynamic binarization: the models of Burda et al. (2016), Table 1.

One stochastic layer: 784-200-200-50 tanh encoder and 50-200-200-784 decoder, Gaussian q,
Bernoulli p; Adam (0.9, 0.999, eps 1e-4), batch 20; 3^i passes at lr 1e-3 * 10^(-i/7).
Two stochastic layers (the paper's Appendix): q(h1 | x) 784-200-200-100, q(h2 | h1)
100-100-100-50, p(h1 | h2) 50-100-100-100, p(x | h1) 100-200-200-784, tanh, Gaussian
latents, Bernoulli pixels; same optimiser and schedule.

Variants (`--config=experiments/configs/vae_mnist.py:VARIANT`, with
`--config.data.mnist_dir=DIR` offline):
  vae_k1 (default), vae_k5, vae_k50, iwae_k5, iwae_k50: one stochastic layer;
  vae2_k1, vae2_k5, vae2_k50, iwae2_k5, iwae2_k50: two stochastic layers;
           the truncated schedule i = 0..3 (1+3+9+27 = 40 passes, 120,000 steps); test NLL
           from k = 5000 importance samples (Table 1 is on the full 3,280 passes: VAE k=1
           86.76 nats). Measured: see docs/vae.md.
  full     append to any variant with a comma, e.g. `vae_k1,full`: the paper's whole
           schedule i = 0..7 (3,280 passes), for a GPU or a cluster.
  tiny     a few hundred steps, for smoke runs.
"""

import ml_collections

from genjax_lab.models import vae

STEPS_PER_PASS = 60_000 // 20


def _schedule(num_stages: int) -> tuple[tuple[int, ...], tuple[float, ...], int]:
    """Boundaries (steps), multiplicative scales and total passes of 3^i passes per stage i."""
    boundaries, passes = [], 0
    for stage in range(num_stages):
        passes += 3**stage
        boundaries.append(passes * STEPS_PER_PASS)
    scale = 10 ** (-1 / 7)
    return tuple(boundaries[:-1]), (scale,) * (num_stages - 1), passes


def get_config(variant: str = "vae_k1") -> ml_collections.ConfigDict:
    names = variant.split(",")
    model_variant, full = names[0], "full" in names[1:]
    config = vae.default_config()
    config.data.name = "mnist"
    config.data.binarize = "dynamic"
    config.batch_size = 20
    config.eval_batch_size = 1000
    config.log_every = 3000
    config.eval_every = 30_000
    config.checkpoint.every = 15_000
    config.model.encoder_hidden = (200, 200)
    config.model.decoder_hidden = (200, 200)
    config.model.latent_dim = 50
    config.model.activation = "tanh"
    config.optim.learning_rate = 1e-3
    config.optim.eps = 1e-4
    boundaries, scales, passes = _schedule(8 if full else 4)
    config.optim.boundaries, config.optim.scales = boundaries, scales
    config.num_epochs = float(passes)
    config.eval.iwae_samples = 50
    config.eval.nll_samples = 5000
    config.eval.nll_chunk = 1000
    config.eval.nll_batch_size = 100

    if model_variant == "tiny":
        config.num_epochs, config.num_steps = -1, 300
        config.log_every, config.eval_every, config.checkpoint.every = 100, 0, 300
        config.eval.nll_samples, config.eval.nll_chunk = 100, 100
        return config
    model_name, _, k = model_variant.partition("_k")
    objective, layers = model_name.removesuffix("2"), 2 if model_name.endswith("2") else 1
    if (
        objective not in ("vae", "iwae")
        or k not in ("1", "5", "50")
        or (objective, k) == ("iwae", "1")
    ):
        raise ValueError(
            f"unknown variant {variant!r}: (vae|iwae)[2]_k(1|5|50) (iwae only k5, k50; 2: two "
            "stochastic layers) or tiny (+',full')"
        )
    config.model.objective = "elbo" if objective == "vae" else "iwae"
    config.model.num_samples = int(k)
    if layers == 2:
        config.model.latent_dim, config.model.upper_latent_dims = 100, (50,)
        config.model.upper_hidden = (100, 100)
    return config
