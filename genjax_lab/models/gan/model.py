"""The GAN's networks, losses and gradient penalty, its parameters and the verbs on them.

Modules are Flax linen used purely. Shapes: x [B, H, W, C] with real-valued pixels in
[0, 1]; y [B] int labels; z [B, noise_dim]. The generator ends in a sigmoid, so its
samples are pixel intensities; the discriminator returns one logit per example, [B].
"""

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genjax_lab.core import checks
from genjax_lab.eval import parzen

ARCHS = ("mlp", "dcgan")
LOSSES = ("nonsaturating", "hinge", "wgan-gp", "wgan")
NOISES = ("normal", "uniform")
# PyTorch's BatchNorm momentum 0.1 (the DCGAN reference's) is Flax's 0.9
_BN_MOMENTUM = 0.9
NO_LIKELIHOOD = (
    "a GAN has no likelihood: use the Parzen estimate, "
    "genjax_lab.models.gan.parzen_log_prob(key, params, x, num_samples=, sigma=)"
)


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


def _batch_norm(h: jax.Array, train: bool, mask: jax.Array | None, name: str) -> jax.Array:
    """Batch norm over every axis but the channels: batch statistics in training (of the
    rows where mask [B] is set, so padding rows never shift the real ones), the running
    averages kept in `batch_stats` otherwise."""
    rows = None if mask is None else (mask > 0).reshape((-1,) + (1,) * (h.ndim - 1))
    layer = nn.BatchNorm(use_running_average=not train, momentum=_BN_MOMENTUM, name=name)
    return layer(h, mask=None if rows is None else jnp.broadcast_to(rows, h.shape))


class Generator(nn.Module):
    """G(z, y): z [B, noise_dim], y_onehot [B, K] or None -> images [B, H, W, C] in (0, 1)."""

    arch: str
    hidden: Sequence[int]
    image_shape: tuple[int, int, int]
    init_range: float = 0.0
    # Radford et al.: after every layer but the output (dcgan only)
    batch_norm: bool = False

    @nn.compact
    def __call__(self, z, y_onehot=None, train: bool = False, mask=None):
        """train: batch statistics (batch_norm; the updated averages are the mutable
        `batch_stats`), else their running averages; mask [B]: the rows they are of."""
        height, width, channels = self.image_shape
        dense = functools.partial(nn.Dense, kernel_init=_kernel_init(self.init_range))
        deconv = functools.partial(
            nn.ConvTranspose,
            kernel_size=(4, 4),
            strides=(2, 2),
            padding="SAME",
            kernel_init=_kernel_init(self.init_range),
        )
        h = _concat_label(z, y_onehot)
        if self.arch == "mlp":
            for units in self.hidden:
                h = nn.relu(dense(units)(h))
            h = dense(height * width * channels, name="out")(h)
        else:
            # A bias before batch norm is cancelled by its mean: none there, as in the
            # DCGAN reference (its gradient would be rounding noise, which Adam amplifies).
            h = dense(128 * (height // 4) * (width // 4), use_bias=not self.batch_norm)(h)
            h = h.reshape(h.shape[0], height // 4, width // 4, 128)
            if self.batch_norm:
                h = _batch_norm(h, train, mask, "bn_project")
            h = deconv(64, use_bias=not self.batch_norm)(nn.relu(h))
            if self.batch_norm:
                h = _batch_norm(h, train, mask, "bn_deconv")
            h = deconv(channels, name="out")(nn.relu(h))
        return jax.nn.sigmoid(h).reshape(h.shape[0], height, width, channels)


class Discriminator(nn.Module):
    """D(x, y): images [B, H, W, C], y_onehot [B, K] or None -> logits [B]."""

    arch: str
    hidden: Sequence[int]
    maxout_pieces: int = 0
    input_dropout: float = 0.0
    dropout: float = 0.0
    init_range: float = 0.0
    # Miyato et al. 2018: every weight divided by its largest singular value, estimated by
    # one power iteration per training call (the vectors kept in `batch_stats`)
    spectral_norm: bool = False
    # Radford et al.: after every conv layer but the input one (dcgan only)
    batch_norm: bool = False

    @nn.compact
    def __call__(self, x, y_onehot=None, train: bool = False, mask=None):
        """train: dropout on, batch statistics and power iterations (their state is the
        mutable `batch_stats`); mask [B]: the rows batch statistics are of."""
        dense = functools.partial(nn.Dense, kernel_init=_kernel_init(self.init_range))

        def layer(module, h):
            if self.spectral_norm:
                return nn.SpectralNorm(module)(h, update_stats=train)
            return module(h)

        if self.arch == "mlp":
            h = nn.Dropout(self.input_dropout, deterministic=not train)(x.reshape(x.shape[0], -1))
            for units in self.hidden:
                if self.maxout_pieces:
                    h = layer(dense(units * self.maxout_pieces), h)
                    h = h.reshape(h.shape[0], units, self.maxout_pieces).max(-1)
                else:
                    h = nn.leaky_relu(layer(dense(units), h), 0.2)
                h = nn.Dropout(self.dropout, deterministic=not train)(h)
        else:
            h = x
            for i, features in enumerate((64, 128)):
                normalised = self.batch_norm and i > 0
                conv = nn.Conv(
                    features,
                    (4, 4),
                    strides=(2, 2),
                    padding="SAME",
                    use_bias=not normalised,  # batch norm's mean would cancel it
                    kernel_init=_kernel_init(self.init_range),
                )
                h = layer(conv, h)
                if normalised:
                    h = _batch_norm(h, train, mask, f"bn_conv{i}")
                h = nn.leaky_relu(h, 0.2)
            h = h.reshape(h.shape[0], -1)
        logits = layer(dense(1), h)[:, 0]
        if y_onehot is None:
            return logits
        projection = dense(h.shape[-1], use_bias=False, name="label_projection")
        label_embedding = layer(projection, y_onehot)
        return logits + (label_embedding * h).sum(-1)


def make_models(
    model_config: ml_collections.ConfigDict, image_shape: Sequence[int]
) -> tuple[Generator, Discriminator]:
    """The generator and discriminator named by `config.model`, validated."""
    if model_config.arch not in ARCHS:
        raise ValueError(f"config.model.arch must be one of {ARCHS}, got {model_config.arch!r}")
    if model_config.arch == "dcgan" and (image_shape[0] % 4 or image_shape[1] % 4):
        raise ValueError(
            f"config.model.arch='dcgan' needs image sides divisible by 4, got {tuple(image_shape)}"
        )
    if model_config.g_init_range < 0 or model_config.d_init_range < 0:
        raise ValueError(
            "config.model.g_init_range and d_init_range must be >= 0 (0: Flax's "
            f"LeCun normal), got {model_config.g_init_range}, "
            f"{model_config.d_init_range}"
        )
    checks.check_counts("config.model.g_hidden", model_config.g_hidden)
    checks.check_counts("config.model.d_hidden", model_config.d_hidden)
    checks.check_count("config.model.d_maxout_pieces", model_config.d_maxout_pieces, minimum=0)
    # .get: a model saved before these keys existed loads without them
    batch_norm = bool(model_config.get("batch_norm", False))
    if batch_norm and model_config.arch != "dcgan":
        raise ValueError(
            "config.model.batch_norm is the DCGAN's (Radford et al.): it needs "
            f"config.model.arch='dcgan', got {model_config.arch!r}"
        )
    for name in ("d_input_dropout", "d_dropout"):
        checks.check_number(
            f"config.model.{name}", model_config[name], low=0.0, high=1.0, high_open=True
        )
    generator = Generator(
        arch=model_config.arch,
        hidden=tuple(model_config.g_hidden),
        image_shape=tuple(image_shape),
        init_range=model_config.g_init_range,
        batch_norm=batch_norm,
    )
    discriminator = Discriminator(
        arch=model_config.arch,
        hidden=tuple(model_config.d_hidden),
        maxout_pieces=model_config.d_maxout_pieces,
        input_dropout=model_config.d_input_dropout,
        dropout=model_config.d_dropout,
        init_range=model_config.d_init_range,
        spectral_norm=bool(model_config.get("spectral_norm", False)),
        batch_norm=batch_norm,
    )
    return generator, discriminator


def draw_noise(kind: str, noise_dim: int, key: jax.Array, num: int) -> jax.Array:
    """z [num, noise_dim]: standard normal, or uniform with unit variance."""
    shape = (num, noise_dim)
    if kind == "normal":
        return jax.random.normal(key, shape)
    if kind == "uniform":
        return jax.random.uniform(key, shape, minval=-math.sqrt(3.0), maxval=math.sqrt(3.0))
    raise ValueError(f"config.model.noise must be one of {NOISES}, got {kind!r}")


def pixels(images: jax.Array) -> jax.Array:
    """float32 pixels in [0, 1] of uint8 images (divided by 255) or of [0, 1] floats."""
    return images.astype(jnp.float32) / (255.0 if images.dtype == jnp.uint8 else 1.0)


# ----------------------------------------------------------------------------- losses


def discriminator_loss(loss: str, real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """Per-example discriminator loss (before any gradient penalty): [B]."""
    if loss == "nonsaturating":
        return jax.nn.softplus(-real_logits) + jax.nn.softplus(fake_logits)
    if loss == "hinge":
        return nn.relu(1.0 - real_logits) + nn.relu(1.0 + fake_logits)
    if loss in ("wgan-gp", "wgan"):
        return fake_logits - real_logits
    raise ValueError(f"config.model.loss must be one of {LOSSES}, got {loss!r}")


def generator_loss(loss: str, fake_logits: jax.Array) -> jax.Array:
    """Per-example generator loss: [B]."""
    if loss == "nonsaturating":
        return jax.nn.softplus(-fake_logits)
    if loss in ("hinge", "wgan-gp", "wgan"):
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


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    return jnp.sum(values * mask) / jnp.maximum(mask.sum(), 1.0)


# ----------------------------------------------------------------------------- parameters


@dataclasses.dataclass(frozen=True)
class GANSpec:
    """What sampling needs beyond the weights' shapes (static: part of the tree structure,
    so `saving.load` rebuilds it from the config through `init`)."""

    generator: Generator
    discriminator: Discriminator
    noise: str
    noise_dim: int
    num_classes: int
    conditional: bool

    def onehot(self, y: jax.Array | None) -> jax.Array | None:
        return jax.nn.one_hot(y, self.num_classes) if self.conditional else None


@flax.struct.dataclass
class GANParams:
    """A trained GAN: generator variables (the moving average when config.eval.use_ema,
    as samples and metrics use) and discriminator variables."""

    generator: Any
    discriminator: Any
    spec: GANSpec = flax.struct.field(pytree_node=False)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _generate(spec: GANSpec, g_params, key, num: int, y):
    z = draw_noise(spec.noise, spec.noise_dim, key, num)
    return spec.generator.apply(g_params, z, spec.onehot(y))


def sample(key: jax.Array, params: GANParams, num: int, *, y=None, chunk: int = 1000) -> np.ndarray:
    """`num` images G(z, y), z ~ noise, on the host, `chunk` at a time: float32
    [num, H, W, C] in (0, 1). y [num]: a cGAN's labels (x given y); None on a cGAN draws
    them uniformly (the GAN keeps no class frequencies). A plain GAN takes no y."""
    spec = params.spec
    checks.check_count("num", num)
    checks.check_count("chunk", chunk)
    if not spec.conditional and y is not None:
        raise ValueError("y: this GAN is not conditional (config.model.conditional=False)")
    if spec.conditional:
        if y is None:
            label_key, key = jax.random.split(key)
            y = np.asarray(jax.random.randint(label_key, (num,), 0, spec.num_classes))
        y = checks.check_array("y", y, (num,), kinds=checks.INTEGER)
        if y.min() < 0 or y.max() >= spec.num_classes:
            raise ValueError(
                f"y must lie in [0, {spec.num_classes}), got range [{y.min()}, {y.max()}]"
            )
    parts = []
    for i, start in enumerate(range(0, num, chunk)):
        size = min(chunk, num - start)
        labels = None if y is None else jnp.asarray(y[start : start + size])
        parts.append(
            np.asarray(_generate(spec, params.generator, jax.random.fold_in(key, i), size, labels))
        )
    return np.concatenate(parts)


def log_prob(params: GANParams, x, y=None):
    """Refused: a GAN defines p(x) only through its sampler (see `parzen_log_prob`)."""
    del params, x, y
    raise NotImplementedError(NO_LIKELIHOOD)


def parzen_log_prob(
    key: jax.Array, params: GANParams, x, *, num_samples: int, sigma: float, chunk: int = 1000
) -> np.ndarray:
    """log of a Gaussian Parzen window of width `sigma` on `num_samples` samples, at each
    image of x [B, H, W, C] (uint8, or floats in [0, 1]): [B] float64. A kernel density
    estimate of the sampler, not the model's likelihood (genjax_lab.eval.parzen): it
    depends on sigma and num_samples and is not comparable to other families' log p(x)."""
    checks.check_positive("sigma", sigma)
    x = np.asarray(x)
    points = x / 255.0 if x.dtype == np.uint8 else x
    samples = sample(key, params, num_samples, chunk=chunk)
    return parzen.parzen_log_likelihoods(samples, points, [sigma], chunk)[:, 0]
