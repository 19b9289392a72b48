"""Variational autoencoders (Kingma & Welling 2014), IWAE (Burda et al. 2016), conditional VAE.

Modules are Flax linen used purely: `model.apply(params, ..., method=...)`. Shapes:
x [B, H, W, C] in [0, 1] (binary for the Bernoulli decoder), y [B] int labels,
z [B, L]. Log weights log w = log p(x | z, y) + log p(z) - log q(z | x, y) are
[K, B] for K importance samples; ELBO = mean_k log w, IWAE_K = logsumexp_k log w - log K,
and log p(x) is estimated by IWAE with large K, computed in chunks to bound memory.

Several stochastic layers (Burda et al. 2016, Appendix: x - h1 - h2): z = (h1, ..., hL)
with q(h1 | x, y) q(h2 | h1) ... and p(x | h1, y) p(h1 | h2) ... p(hL), every factor a
diagonal Gaussian given by an MLP except p(x | h1, y) and the N(0, I) prior on hL; then
log w = log p(x, h1..hL | y) - log q(h1..hL | x, y). With one layer this is the VAE above.
"""
import dataclasses
import math
import pathlib
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from genjax_lab.core import checks
from genjax_lab.core import data as data_lib
from genjax_lab.core import images as images_lib
from genjax_lab.core import mesh as mesh_lib
from genjax_lab.core.loop import Family, base_config
from genjax_lab.core.splits import evaluate
from genjax_lab.core.state import TrainState
from genjax_lab.data.images import BINARIZATIONS, image_data_config, label_log_prior

LIKELIHOODS = ("bernoulli", "gaussian", "logistic")
_LOG_2PI = math.log(2 * math.pi)


def _activation(name: str):
    try:
        return {"tanh": jnp.tanh, "relu": nn.relu, "elu": nn.elu, "gelu": nn.gelu}[name]
    except KeyError:
        raise ValueError(f"config.model.activation must be tanh, relu, elu or gelu, got {name!r}") from None


class Encoder(nn.Module):
    """q(z | x, y): a diagonal Gaussian; an MLP, or two stride-2 convolutions then an MLP.

    Without y and conv it is a Gaussian MLP layer, also used for q(h_{l+1} | h_l) and
    p(h_l | h_{l+1}) between stochastic layers.
    """

    hidden: Sequence[int]
    latent_dim: int
    activation: str = "tanh"
    conv: bool = False

    @nn.compact
    def __call__(self, x, y_onehot=None):
        act = _activation(self.activation)
        h = x
        if self.conv:
            for features in (32, 64):
                h = act(nn.Conv(features, (3, 3), strides=(2, 2))(h))
        h = h.reshape(h.shape[0], -1)
        if y_onehot is not None:
            h = jnp.concatenate([h, y_onehot], axis=-1)
        for width in self.hidden:
            h = act(nn.Dense(width)(h))
        mean = nn.Dense(self.latent_dim, name="mean")(h)
        log_std = nn.Dense(self.latent_dim, name="log_std")(h)
        return mean, log_std


class Decoder(nn.Module):
    """p(x | z, y): per-pixel parameters of the chosen likelihood, [B, H, W, C, P]."""

    hidden: Sequence[int]
    image_shape: tuple[int, int, int]
    likelihood: str = "bernoulli"
    activation: str = "tanh"
    conv: bool = False

    @nn.compact
    def __call__(self, z, y_onehot=None):
        act = _activation(self.activation)
        num_params = 1 if self.likelihood == "bernoulli" else 2
        h = z if y_onehot is None else jnp.concatenate([z, y_onehot], axis=-1)
        for width in self.hidden:
            h = act(nn.Dense(width)(h))
        height, width, channels = self.image_shape
        if self.conv:
            if height % 4 or width % 4:
                raise ValueError(f"the conv decoder needs image sides divisible by 4, got {self.image_shape}")
            h = act(nn.Dense(64 * (height // 4) * (width // 4))(h))
            h = h.reshape(h.shape[0], height // 4, width // 4, 64)
            h = act(nn.ConvTranspose(32, (3, 3), strides=(2, 2))(h))
            h = nn.ConvTranspose(channels * num_params, (3, 3), strides=(2, 2))(h)
        else:
            h = nn.Dense(height * width * channels * num_params)(h)
        return h.reshape(h.shape[0], height, width, channels, num_params)


class VAE(nn.Module):
    """Encoder and decoder; `num_classes > 0` makes it conditional on the label.

    upper_encoders[l] is q(h_{l+2} | h_{l+1}) and upper_priors[l] is p(h_{l+1} | h_{l+2})
    (0-based l; h1 is the encoder's latent): empty for one stochastic layer.
    """

    encoder: Encoder
    decoder: Decoder
    num_classes: int = 0
    upper_encoders: tuple[Encoder, ...] = ()
    upper_priors: tuple[Encoder, ...] = ()

    @property
    def latent_dims(self) -> tuple[int, ...]:
        """Sizes of h1, ..., hL."""
        return (self.encoder.latent_dim, *(layer.latent_dim for layer in self.upper_encoders))

    def _onehot(self, y):
        return None if self.num_classes == 0 else jax.nn.one_hot(y, self.num_classes)

    def encode(self, x, y=None):
        return self.encoder(x, self._onehot(y))

    def decode(self, z, y=None):
        return self.decoder(z, self._onehot(y))

    def encode_upper(self, h, level: int):
        """q(h_{level+2} | h_{level+1}): mean, log std [B, L_{level+2}] for h [B, L_{level+1}]."""
        return self.upper_encoders[level](h)

    def prior_upper(self, h, level: int):
        """p(h_{level+1} | h_{level+2}): mean, log std [B, L_{level+1}] for h [B, L_{level+2}]."""
        return self.upper_priors[level](h)

    def __call__(self, x, y=None):
        """Reconstruction through the means of every layer, up to hL and back down."""
        mean, _ = self.encode(x, y)
        for layer in self.upper_encoders:
            mean, _ = layer(mean)
        for layer in reversed(self.upper_priors):
            mean, _ = layer(mean)
        return self.decode(mean, y)


def make_model(model_config: ml_collections.ConfigDict, image_shape, num_classes: int) -> VAE:
    if model_config.likelihood not in LIKELIHOODS:
        raise ValueError(f"config.model.likelihood must be one of {LIKELIHOODS}, got {model_config.likelihood!r}")
    dims = (model_config.latent_dim, *model_config.upper_latent_dims)
    if any(int(d) <= 0 for d in dims):
        raise ValueError(f"config.model.latent_dim and upper_latent_dims must be positive, got {dims}")
    for name in ("encoder_hidden", "decoder_hidden", "upper_hidden"):
        checks.check_counts(f"config.model.{name}", model_config[name])
    common = dict(activation=model_config.activation, conv=model_config.conv)
    upper_hidden = tuple(model_config.upper_hidden)

    def gaussian_layer(latent_dim):
        return Encoder(hidden=upper_hidden, latent_dim=int(latent_dim), activation=model_config.activation)

    return VAE(
        encoder=Encoder(hidden=tuple(model_config.encoder_hidden), latent_dim=model_config.latent_dim, **common),
        decoder=Decoder(hidden=tuple(model_config.decoder_hidden), image_shape=tuple(image_shape),
                        likelihood=model_config.likelihood, **common),
        num_classes=num_classes if model_config.conditional else 0,
        upper_encoders=tuple(gaussian_layer(d) for d in dims[1:]),
        upper_priors=tuple(gaussian_layer(d) for d in dims[:-1]),
    )


# ----------------------------------------------------------------------------- input checks


def _check_labels(model: VAE, y, num: int, name: str = "y") -> None:
    """Labels [num] in [0, num_classes) for a conditional VAE; an unconditional one ignores y."""
    if model.num_classes == 0:
        return
    labels = checks.check_array(name, y, (num,), kinds=checks.INTEGER)
    if labels.min() < 0 or labels.max() >= model.num_classes:
        raise ValueError(f"{name} must be labels in [0, {model.num_classes}), got range [{labels.min()}, {labels.max()}]")


def _check_images(model: VAE, params, x) -> int:
    """params finite and x [B, H, W, C] pixel intensities in [0, 1]; returns B."""
    checks.check_finite_tree("params", params)
    pixels = checks.check_array("x", x, ("B", *model.decoder.image_shape), kinds=checks.FLOAT)
    if pixels.min() < 0 or pixels.max() > 1:
        raise ValueError(f"x must hold pixel intensities in [0, 1], got range [{pixels.min()}, {pixels.max()}]")
    return pixels.shape[0]


def _check_bound(model: VAE, params, x, y, num_samples: int, **_) -> None:
    _check_labels(model, y, _check_images(model, params, x))
    checks.check_count("num_samples", num_samples)


def _check_classification(model: VAE, params, x, num_samples: int, num_classes: int | None = None,
                          log_prior=None, **_) -> None:
    if model.num_classes == 0:
        raise ValueError("model must be a conditional VAE (num_classes > 0) to score every label")
    if log_prior is not None:
        checks.check_array("log_prior", log_prior, (model.num_classes,), finite=False)
        checks.check_finite_tree("log_prior", log_prior, allow_neg_inf=True)
    elif checks.check_count("num_classes", num_classes) != model.num_classes:
        raise ValueError(f"num_classes={num_classes} must be the model's {model.num_classes}")
    _check_images(model, params, x)
    checks.check_count("num_samples", num_samples)


# ----------------------------------------------------------------------------- likelihoods


def _check_decoded(likelihood: str, decoded, x, **_) -> None:
    checks.check_choice("likelihood", likelihood, LIKELIHOODS)
    pixels = checks.check_array("x", x, kinds=checks.FLOAT)
    outputs = checks.check_array("decoded", decoded, kinds=checks.FLOAT)
    try:
        np.broadcast_shapes(outputs.shape[:-1], pixels.shape)
    except ValueError:
        raise ValueError(f"decoded must be [..., H, W, C, P] with [..., H, W, C] broadcasting against x's "
                         f"shape {pixels.shape}, got shape {outputs.shape}") from None


@checks.validated(_check_decoded)
def log_likelihood(likelihood: str, decoded: jax.Array, x: jax.Array) -> jax.Array:
    """log p(x | decoded) summed over pixels: decoded [..., H, W, C, P], x [..., H, W, C] -> [...].

    bernoulli: P = logits; gaussian: mean, log std of a density on [0, 1]; logistic: the
    discretized logistic over 256 grey levels (Salimans et al. 2017) with mean and log scale.
    """
    if likelihood == "bernoulli":
        logits = decoded[..., 0]
        per_pixel = x * logits - jax.nn.softplus(logits)
    elif likelihood == "gaussian":
        mean, log_std = decoded[..., 0], decoded[..., 1]
        per_pixel = -0.5 * (((x - mean) * jnp.exp(-log_std)) ** 2 + _LOG_2PI) - log_std
    elif likelihood == "logistic":
        per_pixel = _discretized_logistic(x, decoded[..., 0], decoded[..., 1])
    else:
        raise ValueError(f"unknown likelihood {likelihood!r}; one of {LIKELIHOODS}")
    return per_pixel.reshape(*per_pixel.shape[:-3], -1).sum(-1)


def _discretized_logistic(x, mean, log_scale, bins: int = 256):
    """log P(pixel bin of x) under a logistic on [-1, 1] cut into `bins` bins."""
    x = 2.0 * x - 1.0
    log_scale = jnp.maximum(log_scale, -7.0)
    half = 1.0 / (bins - 1)
    inv = jnp.exp(-log_scale)
    upper, lower = inv * (x - mean + half), inv * (x - mean - half)
    log_cdf_upper = jax.nn.log_sigmoid(upper)
    log_survival_lower = jax.nn.log_sigmoid(-lower)
    # log(sigmoid(u) - sigmoid(l)) = log_sigmoid(u) + log_sigmoid(-l) + log1p(-exp(l - u)),
    # stable for the interior bins; the edge bins take the whole tail.
    interior = log_cdf_upper + log_survival_lower + jnp.log(-jnp.expm1(jnp.minimum(lower - upper, -1e-6)))
    return jnp.where(x < -0.999, log_cdf_upper, jnp.where(x > 0.999, log_survival_lower, interior))


def _normal_log_density(z, mean, log_std):
    return jnp.sum(-0.5 * (((z - mean) * jnp.exp(-log_std)) ** 2 + _LOG_2PI) - log_std, axis=-1)


# ----------------------------------------------------------------------------- bounds


def _split_noise(eps: jax.Array, dims: tuple[int, ...]) -> list[jax.Array]:
    """[..., sum(dims)] -> one [..., d] per layer: one draw serves every layer."""
    bounds = np.cumsum((0, *dims))
    return [eps[..., start:stop] for start, stop in zip(bounds[:-1], bounds[1:])]


def _apply_flat(model: VAE, params, method, h: jax.Array, level: int):
    """A Gaussian layer on h [K, B, L]: the modules take one batch axis."""
    mean, log_std = model.apply(params, h.reshape(-1, h.shape[-1]), level, method=method)
    return mean.reshape(*h.shape[:-1], -1), log_std.reshape(*h.shape[:-1], -1)


@checks.validated(_check_bound)
def log_weights(model: VAE, params, x, y, key, num_samples: int) -> jax.Array:
    """log p(x, z | y) - log q(z | x, y) for `num_samples` z = (h1..hL) ~ q per example: [K, B]."""
    mean, log_std = model.apply(params, x, y, method=VAE.encode)
    dims = model.latent_dims
    eps = jax.random.normal(key, (num_samples, *mean.shape[:-1], sum(dims)), mean.dtype)
    eps = _split_noise(eps, dims)
    z = mean + jnp.exp(log_std) * eps[0]  # [K, B, L1]
    posterior = [(z, mean, log_std)]  # (h_l, its q mean, its q log std), upwards
    for level, noise in enumerate(eps[1:]):
        mean, log_std = _apply_flat(model, params, VAE.encode_upper, posterior[-1][0], level)
        posterior.append((mean + jnp.exp(log_std) * noise, mean, log_std))
    latents = [h for h, _, _ in posterior]
    decoded = model.apply(params, z.reshape(-1, z.shape[-1]), None if y is None else jnp.tile(y, num_samples),
                          method=VAE.decode)
    decoded = decoded.reshape(num_samples, *x.shape, decoded.shape[-1])
    log_px = log_likelihood(model.decoder.likelihood, decoded, x[None])
    # The terms are added in the order of the one-layer model, whose gradients stay bitwise.
    log_pz = _normal_log_density(latents[-1], 0.0, jnp.zeros_like(latents[-1]))
    for level in reversed(range(len(dims) - 1)):
        mean, log_std = _apply_flat(model, params, VAE.prior_upper, latents[level + 1], level)
        log_pz = log_pz + _normal_log_density(latents[level], mean, log_std)
    log_qz = _normal_log_density(*posterior[0])
    for h, mean, log_std in posterior[1:]:
        log_qz = log_qz + _normal_log_density(h, mean, log_std)
    return log_px + log_pz - log_qz


@checks.validated(_check_bound)
def elbo(model: VAE, params, x, y, key, num_samples: int = 1) -> jax.Array:
    """The evidence lower bound per example, averaged over `num_samples` z: [B]."""
    return log_weights(model, params, x, y, key, num_samples).mean(0)


@checks.validated(_check_bound)
def iwae_bound(model: VAE, params, x, y, key, num_samples: int) -> jax.Array:
    """The importance-weighted bound with K = `num_samples`: [B]."""
    lw = log_weights(model, params, x, y, key, num_samples)
    return jax.nn.logsumexp(lw, axis=0) - math.log(num_samples)


@checks.validated(_check_bound)
def importance_log_likelihood(model: VAE, params, x, y, key, num_samples: int, chunk: int) -> jax.Array:
    """log p(x | y) by importance sampling with `num_samples` draws, `chunk` at a time: [B].

    Memory is that of `chunk` samples; the running logsumexp is exact.
    """
    if num_samples % checks.check_count("chunk", chunk):
        raise ValueError(f"num_samples={num_samples} must be a multiple of chunk={chunk}")

    def one_chunk(running, chunk_key):
        lw = log_weights(model, params, x, y, chunk_key, chunk)
        return jnp.logaddexp(running, jax.nn.logsumexp(lw, axis=0)), None

    start = jnp.full(x.shape[0], -jnp.inf, x.dtype)
    total, _ = jax.lax.scan(one_chunk, start, jax.random.split(key, num_samples // chunk))
    return total - math.log(num_samples)


@checks.validated(_check_classification)
def class_log_likelihoods(model: VAE, params, x, key, num_classes: int, num_samples: int, chunk: int):
    """log p(x | y) for every label y of a conditional VAE: [B, num_classes]."""

    def for_label(label):
        y = jnp.full(x.shape[0], label, jnp.int32)
        return importance_log_likelihood(model, params, x, y, jax.random.fold_in(key, label), num_samples, chunk)

    return jax.lax.map(for_label, jnp.arange(num_classes)).T


@checks.validated(_check_classification)
def bayes_classify(model: VAE, params, x, key, log_prior, num_samples: int, chunk: int) -> jax.Array:
    """log p(y | x) = log p(x | y) + log p(y) - log p(x), by Bayes' rule: [B, num_classes]."""
    joint = class_log_likelihoods(model, params, x, key, log_prior.shape[0], num_samples, chunk) + log_prior
    return joint - jax.nn.logsumexp(joint, axis=-1, keepdims=True)


# ----------------------------------------------------------------------------- sampling


def _check_sample(model: VAE, params, num: int, y=None, **_) -> None:
    checks.check_finite_tree("params", params)
    _check_labels(model, y, checks.check_count("num", num))


@checks.validated(_check_sample)
def sample(model: VAE, params, key, num: int, y=None) -> jax.Array:
    """x ~ p(x | h1, y) with hL ~ N(0, I), h_l ~ p(h_l | h_{l+1}), shown as the decoder's mean:
    [num, H, W, C] in [0, 1]."""
    dims = model.latent_dims
    eps = _split_noise(jax.random.normal(key, (num, sum(dims))), dims)
    z = eps[-1]
    for level in reversed(range(len(dims) - 1)):
        mean, log_std = model.apply(params, z, level, method=VAE.prior_upper)
        z = mean + jnp.exp(log_std) * eps[level]
    return decoder_mean(model.decoder.likelihood, model.apply(params, z, y, method=VAE.decode))


def decoder_mean(likelihood: str, decoded: jax.Array) -> jax.Array:
    if likelihood == "bernoulli":
        return jax.nn.sigmoid(decoded[..., 0])
    if likelihood == "logistic":
        return jnp.clip((decoded[..., 0] + 1.0) / 2.0, 0.0, 1.0)
    return jnp.clip(decoded[..., 0], 0.0, 1.0)


# ----------------------------------------------------------------------------- the family


def _check_pixels(images, binarize: str = "dynamic", **_) -> None:
    checks.check_choice("binarize", binarize, BINARIZATIONS)
    if np.asarray(images).dtype != np.uint8:
        raise checks.DTypeError(f"images must be uint8 pixels (0..255), got {np.asarray(images).dtype}")


@checks.validated(_check_pixels)
def prepare_images(images: jax.Array, binarize: str, key) -> jax.Array:
    """uint8 [B, H, W, C] -> float32 in [0, 1]; 'dynamic' draws fresh binary pixels per pass."""
    if binarize == "dynamic":
        return bernoulli_pixels(key, images)
    return images.astype(jnp.float32) / 255.0  # 'static' was binarized at load; 'none': grey


@checks.validated(_check_pixels)
def bernoulli_pixels(key, images: jax.Array) -> jax.Array:
    """x ~ Bernoulli(images / 255) per pixel, float32 {0, 1}, for uint8 images [B, ...].

    Draws 16-bit uniforms, two from each 32-bit word, because random bits dominate the
    cost of a small model's step on a CPU: half the bits of `jax.random.bernoulli`. The
    probability is p = round(v * 65536 / 255) / 65536, within 8e-6 of v / 255. The bits
    are laid out per example, so they do not depend on how the batch is sharded.
    """
    flat = images.reshape(images.shape[0], -1)
    pixels = flat.shape[1]
    words = jax.random.bits(key, (flat.shape[0], (pixels + 1) // 2), jnp.uint32)
    uniform16 = jax.lax.bitcast_convert_type(words, jnp.uint16).reshape(flat.shape[0], -1)[:, :pixels]
    threshold = (flat.astype(jnp.uint32) * 65536 + 127) // 255
    return (uniform16.astype(jnp.uint32) < threshold).astype(jnp.float32).reshape(images.shape)


@dataclasses.dataclass(frozen=True)
class VAEFamily:
    """Binds a config to the loop's Family functions."""

    config: ml_collections.ConfigDict
    image_shape: tuple[int, int, int]
    num_classes: int
    log_prior: np.ndarray  # [num_classes] label frequencies of the training split
    preview: dict | None = None  # a few test examples whose reconstructions are drawn

    @property
    def model(self) -> VAE:
        return make_model(self.config.model, self.image_shape, self.num_classes)

    @property
    def conditional(self) -> bool:
        return bool(self.config.model.conditional)

    def _labels(self, batch):
        return batch["label"] if self.conditional else None

    def init(self, key, batch):
        params = self.model.init(key, jnp.zeros((1, *self.image_shape)), jnp.zeros((1,), jnp.int32) if self.conditional else None)
        return TrainState.create(params, make_optimizer(self.config.optim))

    def loss(self, params, batch, key):
        binarize_key, sample_key = jax.random.split(key)
        x = prepare_images(batch["image"], self.config.data.binarize, binarize_key)
        k = self.config.model.num_samples
        bound = (iwae_bound if self.config.model.objective == "iwae" else elbo)(
            self.model, params, x, self._labels(batch), sample_key, k
        )
        mask = batch["mask"]
        return -jnp.sum(bound * mask) / jnp.maximum(mask.sum(), 1.0)

    def train_step(self, state: TrainState, batch, key):
        loss, grads = jax.value_and_grad(self.loss)(state.params, batch, key)
        return state.apply_gradients(grads, make_optimizer(self.config.optim)), {"loss": loss}

    def eval_step(self, state: TrainState, batch, key):
        binarize_key, elbo_key, iwae_key, class_key = jax.random.split(key, 4)
        x = prepare_images(batch["image"], self.config.data.binarize, binarize_key)
        y, mask, params = self._labels(batch), batch["mask"], state.params
        k = self.config.eval.iwae_samples
        sums = {
            "neg_elbo": -jnp.sum(elbo(self.model, params, x, y, elbo_key) * mask),
            f"nll_iwae{k}": -jnp.sum(iwae_bound(self.model, params, x, y, iwae_key, k) * mask),
        }
        if self.conditional and self.config.eval.classify_samples:
            n = self.config.eval.classify_samples
            log_post = bayes_classify(self.model, params, x, class_key, jnp.asarray(self.log_prior), n, n)
            correct = jnp.argmax(log_post, -1) == batch["label"]
            sums["bayes_accuracy"] = jnp.sum(correct * mask)
        return sums

    def report(self, state: TrainState, step: int, workdir: pathlib.Path, key) -> dict:
        """PNG grids of samples, samples by label (conditional) and reconstructions."""
        if jax.process_index() != 0:
            return {}
        params, model = mesh_lib.host_copy(state.params), self.model
        out = pathlib.Path(workdir) / "images"
        sample_key, label_key, recon_key = jax.random.split(key, 3)
        labels = None
        if self.conditional:
            labels = jax.random.categorical(label_key, jnp.asarray(self.log_prior), shape=(100,))
            by_label = jnp.repeat(jnp.arange(self.num_classes), 10)
            grid = sample(model, params, sample_key, len(by_label), by_label)
            images_lib.save_grid(out / f"samples_by_label_{step:07d}.png", np.asarray(grid), rows=self.num_classes)
        images_lib.save_grid(out / f"samples_{step:07d}.png", np.asarray(sample(model, params, sample_key, 100, labels)), rows=10)
        if self.preview is not None:
            x = prepare_images(jnp.asarray(self.preview["image"]), self.config.data.binarize, recon_key)
            y = jnp.asarray(self.preview["label"]) if self.conditional else None
            recon = decoder_mean(model.decoder.likelihood, model.apply(params, x, y))
            pairs = np.concatenate([np.asarray(x), np.asarray(recon)], axis=0)  # row 1 data, row 2 model
            images_lib.save_grid(out / f"reconstructions_{step:07d}.png", pairs, rows=2)
        return {}

    def as_family(self) -> Family:
        return Family(init=self.init, train_step=self.train_step, eval_step=self.eval_step, report=self.report)


def make_optimizer(optim_config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Adam with the config's betas and eps; a piecewise-constant schedule if given."""
    checks.check_positive("config.optim.learning_rate", optim_config.learning_rate)
    for beta in ("b1", "b2"):
        checks.check_number(f"config.optim.{beta}", optim_config[beta], low=0.0, high=1.0, high_open=True)
    checks.check_number("config.optim.eps", optim_config.eps, low=0.0)
    if len(optim_config.boundaries) != len(optim_config.scales):
        raise ValueError(f"config.optim.boundaries and scales must have one entry each per step change, got "
                         f"{len(optim_config.boundaries)} and {len(optim_config.scales)}")
    if optim_config.boundaries:
        learning_rate = optax.piecewise_constant_schedule(
            optim_config.learning_rate,
            {int(b): float(s) for b, s in zip(optim_config.boundaries, optim_config.scales)},
        )
    else:
        learning_rate = optim_config.learning_rate
    return optax.adam(learning_rate, b1=optim_config.b1, b2=optim_config.b2, eps=optim_config.eps)


def family_for(config: ml_collections.ConfigDict, dataset: data_lib.Dataset) -> VAEFamily:
    """The VAE family for `config`, shaped by the dataset's images and labels."""
    checks.check_choice("config.model.objective", config.model.objective, ("elbo", "iwae"))
    checks.check_count("config.model.num_samples", config.model.num_samples)
    for name in ("iwae_samples", "nll_chunk"):
        checks.check_count(f"config.eval.{name}", config.eval[name])
    checks.check_count("config.eval.nll_samples", config.eval.nll_samples, minimum=0)  # 0: no final estimate
    checks.check_count("config.eval.classify_samples", config.eval.classify_samples, minimum=0)
    train = dataset["train"]
    num_classes = checks.check_count("config.data.num_classes", config.data.num_classes)
    return VAEFamily(
        config=config,
        image_shape=tuple(train["image"].shape[1:]),
        num_classes=num_classes,
        log_prior=label_log_prior(train["label"], num_classes),
        preview={k: v[:16] for k, v in dataset["test"].items()} if "test" in dataset.splits else None,
    )


def test_nll(family: VAEFamily, state: TrainState, dataset: data_lib.Dataset, config) -> dict[str, float]:
    """Test -log p(x) in nats by importance sampling with config.eval.nll_samples draws.

    On the first config.eval.nll_examples test images (0: all of them). Returns test_nll
    with the estimator's sample and image counts beside it.
    """
    k, chunk = config.eval.nll_samples, min(config.eval.nll_samples, config.eval.nll_chunk)
    test = dataset["test"]
    examples = data_lib.num_examples(test)
    if config.eval.nll_examples:
        examples = min(examples, int(config.eval.nll_examples))
        test = {name: value[:examples] for name, value in test.items()}

    def nll_sums(state, batch, key):
        binarize_key, sample_key = jax.random.split(key)
        x = prepare_images(batch["image"], config.data.binarize, binarize_key)
        log_px = importance_log_likelihood(family.model, state.params, x, family._labels(batch), sample_key, k, chunk)
        return {"test_nll": -jnp.sum(log_px * batch["mask"])}

    mesh = mesh_lib.data_mesh()
    key = jax.random.fold_in(jax.random.key(config.seed), 10_000)
    metrics = evaluate(jax.jit(nll_sums), state, mesh, test, config.eval.nll_batch_size, key)
    return {**metrics, "test_nll_samples": float(k), "test_nll_examples": float(examples)}


def default_config() -> ml_collections.ConfigDict:
    """The VAE family's keys with the defaults of the digits experiment; configs adjust them."""
    config = base_config()
    config.seed = 0
    config.batch_size = 64
    config.num_epochs = 60.0
    config.log_every = 100
    config.eval_every = 0
    config.eval_batch_size = 360
    config.checkpoint.every = 200
    config.checkpoint.keep = 3

    config.data = image_data_config("digits", "dynamic", num_classes=10)
    config.model = ml_collections.ConfigDict(
        {
            "encoder_hidden": (200, 200),
            "decoder_hidden": (200, 200),
            "latent_dim": 16,  # h1, the stochastic layer next to x
            "upper_latent_dims": (),  # h2, ..., hL: () is one stochastic layer
            "upper_hidden": (100, 100),  # the MLPs between stochastic layers, both ways
            "activation": "tanh",
            "likelihood": "bernoulli",
            "conv": False,
            "conditional": False,
            "objective": "elbo",  # or "iwae"
            "num_samples": 1,
        }
    )
    config.optim = ml_collections.ConfigDict(
        {"learning_rate": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-4, "boundaries": (), "scales": ()}
    )
    config.eval = ml_collections.ConfigDict(
        {"iwae_samples": 50, "classify_samples": 0, "nll_samples": 1000, "nll_chunk": 500, "nll_batch_size": 360,
         "nll_examples": 0}
    )
    return config
