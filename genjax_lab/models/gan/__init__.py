"""Generative adversarial networks: the MLP GAN (Goodfellow et al. 2014), DCGAN (Radford et
al. 2016), the conditional GAN (Mirza & Osindero 2014), WGAN (Arjovsky et al. 2017) and
WGAN-GP, trained on the shared loop.

Architectures (`config.model.arch`):
  mlp     G: z(+y) -> ReLU layers `g_hidden` -> sigmoid image. D: x(+y) -> `d_hidden`
          LeakyReLU(0.2) layers, or maxout layers (`d_maxout_pieces` > 0, as the 2014
          paper's D: 240 units x 5 pieces, twice), with dropout on the input
          (`d_input_dropout`, the paper's 0.2) and hidden layers (`d_dropout`, 0.5) -> logit.
  dcgan   G: z(+y) -> Dense to (H/4, W/4, 128), ReLU -> 4x4 stride-2 transposed convs
          (64, then C channels) -> sigmoid, i.e. 7 -> 14 -> 28 on MNIST. D: 4x4 stride-2
          convs (64, 128) with LeakyReLU(0.2) -> logit. Adam 2e-4, beta1 0.5 as the paper.
          Batch-norm free by default, so every example's forward pass is independent of
          the rest of the batch; `batch_norm=True` puts it where Radford et al. do: in G
          after every layer but the output, in D after every conv but the input one.
          Batch statistics are of the batch's unmasked rows (padding never leaks into
          them), real and fake batches pass through D separately (as in their code), and
          the running averages, kept in the variables' `batch_stats`, serve sampling and
          evaluation.
  Spectral normalisation (`spectral_norm=True`, Miyato et al. 2018): each of D's weights
  divided by its largest singular value, one power iteration per training pass, the
  vectors in D's `batch_stats`.
  Conditioning (`conditional=True`): G sees [z, onehot(y)]; D is a projection
  discriminator (Miyato & Koyama 2018): logit = w . phi(x) + b + e_y . phi(x), phi(x) its
  last hidden features and e_y a learned embedding of the label. The label then enters D
  at the top, where it asks whether phi(x) fits class y; fed in at D's input instead
  (Mirza & Osindero's concatenation), D told real from fake by label consistency within
  a thousand steps on MNIST and G never learned to use the label (label accuracy 0.10).

Losses (`config.model.loss`): 'nonsaturating' (D: softplus(-D(x)) + softplus(D(G(z))),
G: softplus(-D(G(z)))), 'hinge' (D: relu(1 - D(x)) + relu(1 + D(G(z))), G: -D(G(z))),
'wgan-gp' (D: D(G(z)) - D(x) + gp_weight (|grad D(x_hat)| - 1)^2, G: -D(G(z))), 'wgan'
(the same without the penalty, D's weights clipped to [-weight_clip, weight_clip] after
each update; the paper's 0.01, n_critic 5, `config.optim.optimizer='rmsprop'`, 5e-5).

The shared verbs (genjax_lab.api); config is the family's whole `default_config()`:
  meta_from_data(data, config) -> {image_shape, num_classes}; init(key, config, meta) ->
      GANParams (generator and discriminator variables, the architecture static);
  fit(key, data, config, init=None) -> (params, history): data = {"x": images [N, H, W, C]
      (uint8 or [0, 1] floats), "y": labels [N] (a cGAN)}, in memory on one device with
      the loop's step, `train_step`.
  log_prob raises NotImplementedError: a GAN has no likelihood. `parzen_log_prob(key,
      params, x, num_samples=, sigma=)` is the Parzen-window estimate of Goodfellow et al.,
      a kernel density of samples, not comparable to a likelihood.
  sample(key, params, num, *, y=None) -> images [num, H, W, C] in (0, 1); a cGAN's x
      given y [num] (y=None draws labels uniformly).
No posterior (no encoder) and no classifier: a cGAN's discriminator is not p(x | y), so
Bayes' rule has nothing to use; how well samples carry their label is a sample metric.

Modules: model (networks, losses, penalty, parameters, the verbs on them), family (state,
optimizer, train step, the loop adapter, config), fit (init, meta_from_data, fit), metrics
(sample metrics at each evaluation).
"""

from genjax_lab.models.gan.family import (
    UPDATE_ORDERS,
    GANFamily,
    GANState,
    HeavyBallState,
    apply_train,
    check_config,
    clip_weights,
    default_config,
    ema_decay,
    family_for,
    heavy_ball,
    learning_rate_schedule,
    make_optimizer,
    momentum_schedule,
    select_by_validation,
    simultaneous_step,
    split_holdout,
    train_step,
    trainable,
)
from genjax_lab.models.gan.fit import fit, init, meta_from_data
from genjax_lab.models.gan.metrics import sample_metrics
from genjax_lab.models.gan.model import (
    ARCHS,
    LOSSES,
    NOISES,
    Discriminator,
    GANParams,
    GANSpec,
    Generator,
    discriminator_loss,
    draw_noise,
    generator_loss,
    gradient_penalty,
    log_prob,
    make_models,
    parzen_log_prob,
    sample,
)

__all__ = [
    "ARCHS",
    "LOSSES",
    "NOISES",
    "UPDATE_ORDERS",
    "Discriminator",
    "GANFamily",
    "GANParams",
    "GANSpec",
    "GANState",
    "Generator",
    "HeavyBallState",
    "apply_train",
    "check_config",
    "clip_weights",
    "default_config",
    "discriminator_loss",
    "draw_noise",
    "ema_decay",
    "family_for",
    "fit",
    "generator_loss",
    "gradient_penalty",
    "heavy_ball",
    "init",
    "learning_rate_schedule",
    "log_prob",
    "make_models",
    "make_optimizer",
    "meta_from_data",
    "momentum_schedule",
    "parzen_log_prob",
    "sample",
    "sample_metrics",
    "select_by_validation",
    "simultaneous_step",
    "split_holdout",
    "train_step",
    "trainable",
]
