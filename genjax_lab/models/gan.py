"""Generative adversarial networks: the MLP GAN (Goodfellow et al. 2014), DCGAN (Radford et
al. 2016) and the conditional GAN (Mirza & Osindero 2014), trained on the shared loop.

Modules are Flax linen used purely. Shapes: x [B, H, W, C] with real-valued pixels in
[0, 1]; y [B] int labels; z [B, noise_dim]. The generator ends in a sigmoid, so its
samples are pixel intensities; the discriminator returns one logit per example, [B].

Architectures (`config.model.arch`):
  mlp     G: z(+y) -> ReLU layers `g_hidden` -> sigmoid image. D: x(+y) -> `d_hidden`
          LeakyReLU(0.2) layers, or maxout layers (`d_maxout_pieces` > 0, as the 2014
          paper's D: 240 units x 5 pieces, twice), with dropout on the input
          (`d_input_dropout`, the paper's 0.2) and hidden layers (`d_dropout`, 0.5) -> logit.
  dcgan   G: z(+y) -> Dense to (H/4, W/4, 128), ReLU -> 4x4 stride-2 transposed convs
          (64, then C channels) -> sigmoid, i.e. 7 -> 14 -> 28 on MNIST. D: 4x4 stride-2
          convs (64, 128) with LeakyReLU(0.2) -> logit. Batch-norm free on purpose: every
          example's forward pass is independent of the rest of the batch, so the mask
          weighting is exact, padding rows cannot leak into real rows, and no batch
          statistics need threading through the state. Adam 2e-4, beta1 0.5 as the paper.
  Conditioning (`conditional=True`): G sees [z, onehot(y)]; D is a projection
  discriminator (Miyato & Koyama 2018): logit = w . phi(x) + b + e_y . phi(x), phi(x) its
  last hidden features and e_y a learned embedding of the label. The label then enters D
  at the top, where it asks whether phi(x) fits class y; fed in at D's input instead
  (Mirza & Osindero's concatenation), D told real from fake by label consistency within
  a thousand steps on MNIST and G never learned to use the label (label accuracy 0.10).

Losses (`config.model.loss`): 'nonsaturating' (D: softplus(-D(x)) + softplus(D(G(z))),
G: softplus(-D(G(z)))), 'hinge' (D: relu(1 - D(x)) + relu(1 + D(G(z))), G: -D(G(z))),
'wgan-gp' (D: D(G(z)) - D(x) + gp_weight (|grad D(x_hat)| - 1)^2, G: -D(G(z))).

One `train_step` = `n_critic` discriminator updates, then one generator update. The
critic updates reuse the step's real batch with fresh noise each (the harness hands one
batch per step). The generator update uses the noise of the last critic update, so G's
forward pass is computed once and its VJP reused (as the PyTorch DCGAN example reuses
its `fake`). An exponential moving average of G's weights (decay min(ema_decay,
(1 + t) / (10 + t)) at update t) is kept in the state and used for samples and metrics.
"""
import dataclasses
import functools
import io
import math
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from PIL import Image, ImageDraw

from genjax_lab.core import checks
from genjax_lab.core import data as data_lib
from genjax_lab.core import images as images_lib
from genjax_lab.core import mesh as mesh_lib
from genjax_lab.core import metrics as metrics_lib
from genjax_lab.core.loop import Family, base_config
from genjax_lab.data.images import image_data_config
from genjax_lab.eval import frechet, parzen

ARCHS = ("mlp", "dcgan")
LOSSES = ("nonsaturating", "hinge", "wgan-gp")
NOISES = ("normal", "uniform")
_FIXED_NOISE_STREAM = 20_000  # a key of its own: the sample grid uses the same z at every evaluation


# ----------------------------------------------------------------------------- modules


def _kernel_init(init_range: float):
    """Weights uniform in [-init_range, init_range] (the 2014 paper's code: 0.05 in G, 0.005
    in D); 0 keeps Flax's LeCun normal. With LeCun normal the MLP GAN collapses onto a few
    shapes (docs/gan.md), as the PyTorch reference with its default init does."""
    if init_range <= 0:
        return nn.initializers.lecun_normal()

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -init_range, init_range)

    return init


def _concat_label(h: jax.Array, y_onehot: jax.Array | None) -> jax.Array:
    return h if y_onehot is None else jnp.concatenate([h, y_onehot], axis=-1)


class Generator(nn.Module):
    """G(z, y): z [B, noise_dim], y_onehot [B, K] or None -> images [B, H, W, C] in (0, 1)."""

    arch: str
    hidden: Sequence[int]
    image_shape: tuple[int, int, int]
    init_range: float = 0.0

    @nn.compact
    def __call__(self, z, y_onehot=None):
        height, width, channels = self.image_shape
        dense = functools.partial(nn.Dense, kernel_init=_kernel_init(self.init_range))
        deconv = functools.partial(nn.ConvTranspose, kernel_size=(4, 4), strides=(2, 2), padding="SAME",
                                   kernel_init=_kernel_init(self.init_range))
        h = _concat_label(z, y_onehot)
        if self.arch == "mlp":
            for units in self.hidden:
                h = nn.relu(dense(units)(h))
            h = dense(height * width * channels, name="out")(h)
        else:
            h = nn.relu(dense(128 * (height // 4) * (width // 4))(h))
            h = h.reshape(h.shape[0], height // 4, width // 4, 128)
            h = nn.relu(deconv(64)(h))
            h = deconv(channels, name="out")(h)
        return jax.nn.sigmoid(h).reshape(h.shape[0], height, width, channels)


class Discriminator(nn.Module):
    """D(x, y): images [B, H, W, C], y_onehot [B, K] or None -> logits [B]."""

    arch: str
    hidden: Sequence[int]
    maxout_pieces: int = 0
    input_dropout: float = 0.0
    dropout: float = 0.0
    init_range: float = 0.0

    @nn.compact
    def __call__(self, x, y_onehot=None, train: bool = False):
        dense = functools.partial(nn.Dense, kernel_init=_kernel_init(self.init_range))
        if self.arch == "mlp":
            h = nn.Dropout(self.input_dropout, deterministic=not train)(x.reshape(x.shape[0], -1))
            for units in self.hidden:
                if self.maxout_pieces:
                    h = dense(units * self.maxout_pieces)(h)
                    h = h.reshape(h.shape[0], units, self.maxout_pieces).max(-1)
                else:
                    h = nn.leaky_relu(dense(units)(h), 0.2)
                h = nn.Dropout(self.dropout, deterministic=not train)(h)
        else:
            h = x
            for features in (64, 128):
                conv = nn.Conv(features, (4, 4), strides=(2, 2), padding="SAME", kernel_init=_kernel_init(self.init_range))
                h = nn.leaky_relu(conv(h), 0.2)
            h = h.reshape(h.shape[0], -1)
        logits = dense(1)(h)[:, 0]
        if y_onehot is None:
            return logits
        label_embedding = dense(h.shape[-1], use_bias=False, name="label_projection")(y_onehot)
        return logits + (label_embedding * h).sum(-1)


def make_models(model_config: ml_collections.ConfigDict, image_shape) -> tuple[Generator, Discriminator]:
    """The generator and discriminator named by `config.model`, validated."""
    if model_config.arch not in ARCHS:
        raise ValueError(f"config.model.arch must be one of {ARCHS}, got {model_config.arch!r}")
    if model_config.arch == "dcgan" and (image_shape[0] % 4 or image_shape[1] % 4):
        raise ValueError(f"config.model.arch='dcgan' needs image sides divisible by 4, got {tuple(image_shape)}")
    if model_config.g_init_range < 0 or model_config.d_init_range < 0:
        raise ValueError("config.model.g_init_range and d_init_range must be >= 0 (0: Flax's LeCun normal), "
                         f"got {model_config.g_init_range}, {model_config.d_init_range}")
    checks.check_counts("config.model.g_hidden", model_config.g_hidden)
    checks.check_counts("config.model.d_hidden", model_config.d_hidden)
    checks.check_count("config.model.d_maxout_pieces", model_config.d_maxout_pieces, minimum=0)
    for name in ("d_input_dropout", "d_dropout"):
        checks.check_number(f"config.model.{name}", model_config[name], low=0.0, high=1.0, high_open=True)
    generator = Generator(arch=model_config.arch, hidden=tuple(model_config.g_hidden), image_shape=tuple(image_shape),
                          init_range=model_config.g_init_range)
    discriminator = Discriminator(
        arch=model_config.arch, hidden=tuple(model_config.d_hidden), maxout_pieces=model_config.d_maxout_pieces,
        input_dropout=model_config.d_input_dropout, dropout=model_config.d_dropout,
        init_range=model_config.d_init_range,
    )
    return generator, discriminator


# ----------------------------------------------------------------------------- losses


def discriminator_loss(loss: str, real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """Per-example discriminator loss (before any gradient penalty): [B]."""
    if loss == "nonsaturating":
        return jax.nn.softplus(-real_logits) + jax.nn.softplus(fake_logits)
    if loss == "hinge":
        return nn.relu(1.0 - real_logits) + nn.relu(1.0 + fake_logits)
    if loss == "wgan-gp":
        return fake_logits - real_logits
    raise ValueError(f"config.model.loss must be one of {LOSSES}, got {loss!r}")


def generator_loss(loss: str, fake_logits: jax.Array) -> jax.Array:
    """Per-example generator loss: [B]."""
    if loss == "nonsaturating":
        return jax.nn.softplus(-fake_logits)
    if loss in ("hinge", "wgan-gp"):
        return -fake_logits
    raise ValueError(f"config.model.loss must be one of {LOSSES}, got {loss!r}")


def gradient_penalty(critic, real: jax.Array, fake: jax.Array, key) -> jax.Array:
    """(|grad_x critic(x_hat)| - 1)^2 at x_hat uniformly between real and fake rows: [B].

    `critic(x) -> [B]` must treat examples independently, so the gradient of the sum is
    each example's own gradient.
    """
    t = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)
    x_hat = t * real + (1.0 - t) * fake
    grads = jax.grad(lambda x: critic(x).sum())(x_hat)
    norms = jnp.sqrt(jnp.sum(grads.reshape(grads.shape[0], -1) ** 2, axis=-1) + 1e-12)
    return (norms - 1.0) ** 2


def _masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    return jnp.sum(values * mask) / jnp.maximum(mask.sum(), 1.0)


# ----------------------------------------------------------------------------- the state


@flax.struct.dataclass
class GANState:
    """Everything training changes, as one pytree the harness checkpoints whole."""

    g_params: Any
    d_params: Any
    g_opt_state: Any
    d_opt_state: Any
    ema_params: Any  # moving average of g_params: what samples and metrics use
    updates: jax.Array  # int32 count of generator updates, for the EMA warm-up


def make_optimizer(learning_rate: float, optim_config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    checks.check_positive("learning_rate", learning_rate)
    for beta in ("b1", "b2"):
        checks.check_number(f"config.optim.{beta}", optim_config[beta], low=0.0, high=1.0, high_open=True)
    return optax.adam(learning_rate, b1=optim_config.b1, b2=optim_config.b2)


def ema_decay(max_decay: float, updates: jax.Array) -> jax.Array:
    """min(max_decay, (1 + t) / (10 + t)): early averages forget the random start."""
    t = updates.astype(jnp.float32)
    return jnp.minimum(max_decay, (1.0 + t) / (10.0 + t))


# ----------------------------------------------------------------------------- the family


@dataclasses.dataclass(frozen=True)
class GANFamily:
    """Binds a config to the loop's Family functions."""

    config: ml_collections.ConfigDict
    image_shape: tuple[int, int, int]
    num_classes: int
    pixel_means: tuple[float, ...] | None = None  # training-set mean of each pixel, flattened
    # state -> sample metrics (Parzen, Frechet, ...), logged at every evaluation when set.
    score_samples: Callable[[GANState], dict[str, float]] | None = dataclasses.field(default=None, compare=False)

    @property
    def models(self) -> tuple[Generator, Discriminator]:
        return make_models(self.config.model, self.image_shape)

    @property
    def conditional(self) -> bool:
        return bool(self.config.model.conditional)

    def _onehot(self, y):
        return jax.nn.one_hot(y, self.num_classes) if self.conditional else None

    def noise(self, key, num: int) -> jax.Array:
        """z [num, noise_dim]: standard normal, or uniform with unit variance."""
        shape = (num, self.config.model.noise_dim)
        if self.config.model.noise == "normal":
            return jax.random.normal(key, shape)
        if self.config.model.noise == "uniform":
            return jax.random.uniform(key, shape, minval=-math.sqrt(3.0), maxval=math.sqrt(3.0))
        raise ValueError(f"config.model.noise must be one of {NOISES}, got {self.config.model.noise!r}")

    def generate(self, g_params, key, num: int, y=None) -> jax.Array:
        """num samples G(z, y), z ~ noise: [num, H, W, C] in (0, 1)."""
        return self.models[0].apply(g_params, self.noise(key, num), self._onehot(y))

    def init(self, key, batch):
        generator, discriminator = self.models
        g_key, d_key = jax.random.split(key)
        y = jnp.zeros((1,), jnp.int32)
        g_params = generator.init(g_key, jnp.zeros((1, self.config.model.noise_dim)), self._onehot(y))
        if self.pixel_means is not None:
            g_params = self._marginal_output_bias(g_params)
        d_params = discriminator.init(d_key, jnp.zeros((1, *self.image_shape)), self._onehot(y))
        optim = self.config.optim
        return GANState(
            g_params=g_params,
            d_params=d_params,
            g_opt_state=make_optimizer(optim.g_learning_rate, optim).init(g_params),
            d_opt_state=make_optimizer(optim.d_learning_rate, optim).init(d_params),
            ema_params=g_params,
            updates=jnp.zeros((), jnp.int32),
        )

    def _marginal_output_bias(self, g_params):
        """G's output bias set to the logits of the training pixel means (the 2014 paper's
        code does this): G starts at the data's mean image instead of uniform grey, which
        a discriminator would reject at once, saturating G's sigmoid."""
        means = np.clip(np.asarray(self.pixel_means, np.float32), 1e-3, 1 - 1e-3)
        bias = g_params["params"]["out"]["bias"]
        if bias.size != means.size:  # a conv G has one bias per channel: the mean pixel
            means = means.reshape(-1, bias.size).mean(0)
        logits = jnp.asarray(np.log(means) - np.log1p(-means), bias.dtype)
        out = {**g_params["params"]["out"], "bias": logits}
        return {**g_params, "params": {**g_params["params"], "out": out}}

    def _critic_update(self, d_params, d_opt_state, real, fake, y_onehot, mask, key):
        """One discriminator update on a real and a fake batch; returns (params, opt, metrics)."""
        discriminator, model = self.models[1], self.config.model
        real_key, fake_key, gp_key = jax.random.split(key, 3)

        def loss_fn(params):
            def critic(x, k):
                return discriminator.apply(params, x, y_onehot, train=True, rngs={"dropout": k})

            real_logits, fake_logits = critic(real, real_key), critic(fake, fake_key)
            per_example = discriminator_loss(model.loss, real_logits, fake_logits)
            aux = {"d_real": _masked_mean(real_logits, mask), "d_fake": _masked_mean(fake_logits, mask)}
            if model.loss == "wgan-gp":
                penalty = gradient_penalty(lambda x: critic(x, gp_key), real, fake, jax.random.fold_in(gp_key, 1))
                aux["gradient_penalty"] = _masked_mean(penalty, mask)
                per_example = per_example + model.gp_weight * penalty
            return _masked_mean(per_example, mask), aux

        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(d_params)
        optimizer = make_optimizer(self.config.optim.d_learning_rate, self.config.optim)
        updates, d_opt_state = optimizer.update(grads, d_opt_state, d_params)
        return optax.apply_updates(d_params, updates), d_opt_state, {"d_loss": loss, **aux}

    def train_step(self, state: GANState, batch, key):
        """n_critic discriminator updates, then one generator update and the EMA."""
        generator, discriminator = self.models
        model, optim = self.config.model, self.config.optim
        real = batch["image"].astype(jnp.float32) / 255.0
        mask = batch["mask"]
        y = batch["label"] if self.conditional else None
        y_onehot = self._onehot(y)
        num = real.shape[0]
        critic_key, last_key, g_key = jax.random.split(key, 3)

        def fake_batch(k):
            return generator.apply(state.g_params, self.noise(k, num), y_onehot)

        def extra_critic_update(carry, k):
            noise_key, update_key = jax.random.split(k)
            d_params, d_opt_state = carry
            d_params, d_opt_state, _ = self._critic_update(
                d_params, d_opt_state, real, fake_batch(noise_key), y_onehot, mask, update_key)
            return (d_params, d_opt_state), None

        (d_params, d_opt_state), _ = jax.lax.scan(
            extra_critic_update, (state.d_params, state.d_opt_state),
            jax.random.split(critic_key, model.n_critic - 1))

        # The last critic update and the generator update share one forward pass of G.
        noise_key, update_key = jax.random.split(last_key)
        z = self.noise(noise_key, num)
        fake, g_vjp = jax.vjp(lambda p: generator.apply(p, z, y_onehot), state.g_params)
        d_params, d_opt_state, metrics = self._critic_update(
            d_params, d_opt_state, real, fake, y_onehot, mask, update_key)

        def g_loss_fn(x):
            logits = discriminator.apply(d_params, x, y_onehot, train=True, rngs={"dropout": g_key})
            return _masked_mean(generator_loss(model.loss, logits), mask)

        g_loss, fake_grads = jax.value_and_grad(g_loss_fn)(fake)
        (g_grads,) = g_vjp(fake_grads)
        g_updates, g_opt_state = make_optimizer(optim.g_learning_rate, optim).update(
            g_grads, state.g_opt_state, state.g_params)
        g_params = optax.apply_updates(state.g_params, g_updates)
        decay = ema_decay(model.ema_decay, state.updates)
        ema_params = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, state.ema_params, g_params)
        new_state = GANState(g_params=g_params, d_params=d_params, g_opt_state=g_opt_state,
                             d_opt_state=d_opt_state, ema_params=ema_params, updates=state.updates + 1)
        return new_state, {**metrics, "g_loss": g_loss}

    def sampling_params(self, state: GANState):
        """The generator weights used for samples and metrics: EMA or raw (config.eval.use_ema)."""
        return state.ema_params if self.config.eval.use_ema else state.g_params

    def eval_step(self, state: GANState, batch, key):
        """Mask-weighted sums: D's accuracy on real test images (logit > 0 means 'real')
        and on as many fresh samples of the sampling generator (logit < 0), mean logits."""
        discriminator = self.models[1]
        real = batch["image"].astype(jnp.float32) / 255.0
        mask = batch["mask"]
        y = batch["label"] if self.conditional else None
        fake = self.generate(self.sampling_params(state), key, real.shape[0], y)
        real_logits = discriminator.apply(state.d_params, real, self._onehot(y))
        fake_logits = discriminator.apply(state.d_params, fake, self._onehot(y))
        return {
            "d_accuracy_real": jnp.sum((real_logits > 0) * mask),
            "d_accuracy_fake": jnp.sum((fake_logits < 0) * mask),
            "d_logit_real": jnp.sum(real_logits * mask),
            "d_logit_fake": jnp.sum(fake_logits * mask),
        }

    def fixed_grid_inputs(self) -> tuple[jax.Array, jax.Array | None, int]:
        """(z [100, noise_dim], labels or None, rows) of the sample grid, the same at every
        evaluation; for the cGAN row r is label r and column c shares one z across rows."""
        key = jax.random.key(_FIXED_NOISE_STREAM + int(self.config.seed))
        if not self.conditional:
            return self.noise(key, 100), None, 10
        rows = self.num_classes
        z = jnp.tile(self.noise(key, 10), (rows, 1))
        return z, jnp.repeat(jnp.arange(rows, dtype=jnp.int32), 10), rows

    def report(self, state: GANState, step: int, workdir: pathlib.Path, key) -> dict:
        """PNGs: samples of a fixed noise batch at this step, and the metrics so far (training
        and evaluation, with this step's sample metrics if `score_samples` is set)."""
        if jax.process_index() != 0:
            return {}
        out = pathlib.Path(workdir) / "images"
        z, y, rows = self.fixed_grid_inputs()
        params = mesh_lib.host_copy(self.sampling_params(state))
        samples = self.models[0].apply(params, z, self._onehot(y))
        images_lib.save_grid(out / f"samples_{step:07d}.png", np.asarray(samples), rows=rows)
        scores = self.score_samples(state) if self.score_samples is not None else {}
        save_metrics_plot(out / "metrics.png", metrics_lib.read_metrics(workdir) + [{"step": step, **scores}])
        return scores

    def as_family(self) -> Family:
        return Family(init=self.init, train_step=self.train_step, eval_step=self.eval_step, report=self.report)


# ----------------------------------------------------------------------------- plots


def save_metrics_plot(path: pathlib.Path, records: list[dict], width: int = 640, panel: int = 120) -> None:
    """One panel per metric (min-max scaled, value range printed) against step."""
    names = sorted({k for r in records for k in r if k not in ("step", "split")})
    image = Image.new("RGB", (width, max(1, len(names)) * panel), "white")
    draw = ImageDraw.Draw(image)
    for i, name in enumerate(names):
        points = [(r["step"], r[name]) for r in records if name in r and math.isfinite(r[name])]
        top = i * panel
        draw.rectangle([40, top + 18, width - 10, top + panel - 8], outline=(180, 180, 180))
        if not points:
            continue
        steps, values = np.array(points, np.float64).T
        lo, hi = values.min(), values.max()
        draw.text((42, top + 4), f"{name}: {lo:.4g} .. {hi:.4g} (last {values[-1]:.4g}, step {int(steps[-1])})", fill="black")
        if len(points) < 2:
            continue
        xs = 42 + (steps - steps.min()) / max(np.ptp(steps), 1e-12) * (width - 54)
        ys = top + panel - 10 - (values - lo) / max(hi - lo, 1e-12) * (panel - 30)
        draw.line(list(zip(xs.tolist(), ys.tolist())), fill=(31, 119, 180), width=2)
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    pathlib.Path(path).write_bytes(buffer.getvalue())


# ----------------------------------------------------------------------------- data and config


def split_holdout(dataset: data_lib.Dataset, holdout: int) -> tuple[data_lib.Dataset, dict[str, np.ndarray]]:
    """Moves the last `holdout` training examples into a validation split the GAN never
    trains on (MNIST: train[50000:60000], as in Goodfellow et al.). Returns (dataset
    without them, validation arrays)."""
    train = dataset["train"]
    size = data_lib.num_examples(train)
    if not 0 < holdout < size:
        raise ValueError(f"config.data.holdout={holdout} must be in (0, {size}) for this training split")
    kept = {k: v[: size - holdout] for k, v in train.items()}
    validation = {k: v[size - holdout:] for k, v in train.items()}
    return data_lib.Dataset({**dataset.splits, "train": kept}), validation


def family_for(config: ml_collections.ConfigDict, dataset: data_lib.Dataset) -> GANFamily:
    """The GAN family for `config`, shaped by the dataset's images."""
    if config.model.loss not in LOSSES:
        raise ValueError(f"config.model.loss must be one of {LOSSES}, got {config.model.loss!r}")
    if config.model.n_critic < 1:
        raise ValueError(f"config.model.n_critic must be >= 1, got {config.model.n_critic}")
    checks.check_choice("config.model.noise", config.model.noise, NOISES)
    checks.check_count("config.model.noise_dim", config.model.noise_dim)
    checks.check_number("config.model.gp_weight", config.model.gp_weight, low=0.0)
    checks.check_number("config.model.ema_decay", config.model.ema_decay, low=0.0, high=1.0)
    for rate in ("g_learning_rate", "d_learning_rate"):
        checks.check_positive(f"config.optim.{rate}", config.optim[rate])
    if config.data.binarize != "none":
        raise ValueError(f"config.data.binarize must be 'none' for a GAN (real-valued pixels), got {config.data.binarize!r}")
    images = dataset["train"]["image"]
    pixel_means = None
    if config.model.marginal_output_bias:
        pixel_means = tuple((data_lib.column_mean(images).reshape(-1) / 255.0).tolist())
    family = GANFamily(config=config, image_shape=tuple(images.shape[1:]),
                       num_classes=int(config.data.num_classes), pixel_means=pixel_means)
    make_models(config.model, family.image_shape)  # validates arch and image shape before anything compiles
    return family


# ----------------------------------------------------------------------------- final metrics


def generate_many(family: GANFamily, g_params, key, num: int, labels=None, chunk: int = 1000) -> np.ndarray:
    """`num` samples on the host, `chunk` at a time: float32 [num, H, W, C] in (0, 1)."""
    checks.check_count("num", num)
    checks.check_count("chunk", chunk)
    if family.conditional:
        labels = checks.check_array("labels", labels, (num,), kinds=checks.INTEGER)
        if labels.min() < 0 or labels.max() >= family.num_classes:
            raise ValueError(f"labels must lie in [0, {family.num_classes}), got range [{labels.min()}, {labels.max()}]")
    generate = jax.jit(family.generate, static_argnums=2)
    parts = []
    for i, start in enumerate(range(0, num, chunk)):
        size = min(chunk, num - start)
        y = None if labels is None else jnp.asarray(labels[start:start + size])
        parts.append(np.asarray(generate(g_params, jax.random.fold_in(key, i), size, y)))
    return np.concatenate(parts)


def _marginal_labels(family: GANFamily, train_labels: np.ndarray, num: int, rng: np.random.Generator):
    """Labels of a cGAN's samples drawn from the training label frequencies, so the
    samples come from the marginal p(x) = sum_y p(y) p(x | y); None for a plain GAN."""
    return rng.choice(train_labels, size=num) if family.conditional else None


def sample_metrics(family: GANFamily, state: GANState, dataset: data_lib.Dataset,
                   validation: dict[str, np.ndarray], config: ml_collections.ConfigDict) -> dict[str, float]:
    """What config.eval asks for: the Parzen log-likelihood of the test set (Goodfellow et
    al.'s protocol); with a classifier, the Frechet distance of samples to test images
    beside the real-train-vs-real-test floor, the classifier score of samples and of test
    images, and a cGAN's label accuracy."""
    ev = config.eval
    params = mesh_lib.host_copy(family.sampling_params(state))
    key = jax.random.fold_in(jax.random.key(config.seed), 30_000)
    rng = np.random.default_rng([config.seed, 30_000])
    train, test = dataset["train"], dataset["test"]
    results = {}
    if ev.parzen_samples:
        samples = generate_many(family, params, jax.random.fold_in(key, 0), ev.parzen_samples,
                                _marginal_labels(family, train["label"], ev.parzen_samples, rng))
        score = parzen.parzen_score(samples, validation["image"][: ev.parzen_validation] / 255.0,
                                    test["image"] / 255.0, chunk=ev.parzen_chunk)
        results.update(parzen_log_likelihood=score.mean, parzen_stderr=score.stderr, parzen_sigma=score.sigma)
    if ev.classifier_workdir:
        network = frechet.FeatureNetwork.load(ev.classifier_workdir, family.image_shape)
        n = ev.feature_samples
        samples = generate_many(family, params, jax.random.fold_in(key, 1), n,
                                _marginal_labels(family, train["label"], n, rng))
        sample_logits, sample_features = network(samples)
        test_logits, test_features = network(test["image"][:n])
        _, train_features = network(train["image"][:n])
        results.update(
            frechet_distance=frechet.frechet_distance_of_features(sample_features, test_features),
            frechet_distance_train_vs_test=frechet.frechet_distance_of_features(train_features, test_features),
            classifier_score=frechet.classifier_score(sample_logits),
            classifier_score_test=frechet.classifier_score(test_logits),
        )
        if family.conditional:
            labels = np.repeat(np.arange(family.num_classes, dtype=np.int32), ev.label_samples)
            logits, _ = network(generate_many(family, params, jax.random.fold_in(key, 2), len(labels), labels))
            accuracy, per_label = frechet.label_accuracy(logits, labels)
            results.update(label_accuracy=accuracy, label_accuracy_worst=float(np.nanmin(per_label)))
    return results


def default_config() -> ml_collections.ConfigDict:
    """The GAN family's keys, with the small MLP GAN on MNIST; configs adjust them."""
    config = base_config()
    config.batch_size = 128
    config.num_epochs = 30.0
    config.log_every = 100
    config.eval_every = 2000
    config.eval_batch_size = 1000
    config.checkpoint.every = 2000
    config.checkpoint.keep = 2
    config.data = image_data_config("mnist", "none", num_classes=10, holdout=10_000)
    config.model = ml_collections.ConfigDict(
        {
            "arch": "mlp",
            "conditional": False,
            "g_hidden": (256, 512),
            "d_hidden": (512, 256),
            "d_maxout_pieces": 0,
            "d_input_dropout": 0.0,
            "d_dropout": 0.0,
            "noise_dim": 100,
            "noise": "normal",
            "loss": "nonsaturating",
            "gp_weight": 10.0,
            "n_critic": 1,
            "ema_decay": 0.999,
            "marginal_output_bias": True,
            "g_init_range": 0.0,  # > 0: weights uniform in [-range, range]; 0: LeCun normal
            "d_init_range": 0.0,
        }
    )
    config.optim = ml_collections.ConfigDict({"g_learning_rate": 2e-4, "d_learning_rate": 2e-4, "b1": 0.5, "b2": 0.999})
    config.eval = ml_collections.ConfigDict(
        {
            "use_ema": True,
            "parzen_samples": 10_000,  # 0: no Parzen estimate
            "parzen_validation": 1_000,
            "parzen_chunk": 1_000,
            "classifier_workdir": "",  # '': no Frechet distance, classifier score or label accuracy
            "feature_samples": 10_000,
            "label_samples": 1_000,  # per label, for the cGAN's label accuracy
        }
    )
    return config
