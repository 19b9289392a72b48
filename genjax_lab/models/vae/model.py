"""The VAE's model: Flax modules, the parameters (`VAEParams`), `init`, the decoder's
log-likelihood and the input checks shared by the verbs.

Modules are Flax linen used purely: `model.apply(variables, ..., method=...)`. Shapes:
x [B, H, W, C] in [0, 1] (binary for the Bernoulli decoder), y [B] int labels, z [B, L].

Several stochastic layers (Burda et al. 2016, Appendix: x - h1 - h2): z = (h1, ..., hL)
with q(h1 | x, y) q(h2 | h1) ... and p(x | h1, y) p(h1 | h2) ... p(hL), every factor a
diagonal Gaussian given by an MLP except p(x | h1, y) and the N(0, I) prior on hL.

An inverse autoregressive flow (Kingma et al. 2016; `config.model.iaf_steps` > 0) makes
q(h1 | x, y) richer: z_0 = mean + std * eps from the encoder, then T steps
z_t = sigma_t * z_{t-1} + (1 - sigma_t) * m_t with [m_t, s_t] = MADE_t(z_{t-1}, context),
sigma_t = sigmoid(s_t), the variables' order reversed between steps; h1 = z_T and
log q(h1 | x, y) = log N(z_0; mean, std) - sum_t sum_i log sigma_t,i.
"""

import math
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genjax_lab.core import checks

LIKELIHOODS = ("bernoulli", "gaussian", "logistic")
_LOG_2PI = math.log(2 * math.pi)


def _activation(name: str):
    try:
        return {"tanh": jnp.tanh, "relu": nn.relu, "elu": nn.elu, "gelu": nn.gelu}[name]
    except KeyError:
        raise ValueError(
            f"config.model.activation must be tanh, relu, elu or gelu, got {name!r}"
        ) from None


class Encoder(nn.Module):
    """q(z | x, y): a diagonal Gaussian; an MLP, or two stride-2 convolutions then an MLP.

    Without y and conv it is a Gaussian MLP layer, also used for q(h_{l+1} | h_l) and
    p(h_l | h_{l+1}) between stochastic layers.
    """

    hidden: Sequence[int]
    latent_dim: int
    activation: str = "tanh"
    conv: bool = False
    context_dim: int = 0  # > 0: a third output, the context h of an IAF posterior

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
        if self.context_dim:
            return mean, log_std, nn.Dense(self.context_dim, name="context")(h)
        return mean, log_std


def made_masks(dim: int, hidden: Sequence[int]) -> list[np.ndarray]:
    """The connectivity masks of a MADE (Germain et al. 2015) on `dim` inputs in their
    natural order: [fan_in, fan_out] booleans, one per hidden layer, then the outputs'.

    Hidden unit degrees cycle through 1..dim-1; a unit of degree k sees inputs 1..k, and
    output i sees only hidden units of degree < i, so output i depends on inputs < i alone.
    """
    in_degrees = np.arange(1, dim + 1)
    masks = []
    for width in hidden:
        degrees = 1 + np.arange(width) % max(dim - 1, 1)
        masks.append(degrees[None, :] >= in_degrees[:, None])
        in_degrees = degrees
    masks.append(np.arange(1, dim + 1)[None, :] > in_degrees[:, None])
    return masks


class MaskedDense(nn.Module):
    """A dense layer whose kernel is multiplied by a fixed [fan_in, features] mask."""

    features: int
    bias_init: Any = nn.initializers.zeros

    @nn.compact
    def __call__(self, h, mask: np.ndarray):
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (h.shape[-1], self.features))
        bias = self.param("bias", self.bias_init, (self.features,))
        return h @ (kernel * jnp.asarray(mask, kernel.dtype)) + bias


class IAFStep(nn.Module):
    """One step of an inverse autoregressive flow: z [..., L], context [..., C] or None ->
    (z', log det dz'/dz [...]), the Jacobian lower-triangular with diagonal sigma."""

    hidden: Sequence[int]
    activation: str = "tanh"

    @nn.compact
    def __call__(self, z, context=None):
        act = _activation(self.activation)
        masks = made_masks(z.shape[-1], self.hidden)
        h = z
        for i, (width, mask) in enumerate(zip(self.hidden, masks)):
            h = MaskedDense(width, name=f"hidden_{i}")(h, mask)
            if context is not None and i == 0:
                h = h + nn.Dense(width, use_bias=False, name="context")(context)
            h = act(h)
        shift = MaskedDense(z.shape[-1], name="shift")(h, masks[-1])
        # A gate bias of 1 starts sigma near 1 (the paper's advice): each step starts close
        # to the identity, so the untrained flow leaves the Gaussian posterior almost as is.
        gate = MaskedDense(z.shape[-1], bias_init=nn.initializers.ones, name="gate")(h, masks[-1])
        sigma = jax.nn.sigmoid(gate)
        return sigma * z + (1.0 - sigma) * shift, jnp.sum(jax.nn.log_sigmoid(gate), axis=-1)


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
                raise ValueError(
                    f"the conv decoder needs image sides divisible by 4, got {self.image_shape}"
                )
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
    flow: tuple[IAFStep, ...] = ()  # the IAF steps on h1; () keeps q(h1 | x, y) Gaussian

    @property
    def latent_dims(self) -> tuple[int, ...]:
        """Sizes of h1, ..., hL."""
        return (self.encoder.latent_dim, *(layer.latent_dim for layer in self.upper_encoders))

    def _onehot(self, y):
        return None if self.num_classes == 0 else jax.nn.one_hot(y, self.num_classes)

    def encode(self, x, y=None):
        """q(h1 | x, y)'s Gaussian (before any flow): mean, log std [B, L1]."""
        return self.encoder(x, self._onehot(y))[:2]

    def encode_context(self, x, y=None):
        """mean, log std [B, L1] and the flow's context [B, C] (None without one)."""
        out = self.encoder(x, self._onehot(y))
        return out if len(out) == 3 else (*out, None)

    def flow_forward(self, z, context=None):
        """The IAF on z_0 [..., B, L1] with context [B, C]: (z_T, sum_t log det [..., B])."""
        log_det = jnp.zeros(z.shape[:-1], z.dtype)
        for t, step in enumerate(self.flow):
            if t:  # reversed order: each variable is conditioned on every other in turn
                z = z[..., ::-1]
            z, step_log_det = step(z, context)
            log_det = log_det + step_log_det
        return z, log_det

    def posterior_point(self, x, y=None):
        """h1 at the encoder's mean, through the flow: [B, L1]."""
        mean, _, context = self.encode_context(x, y)
        if self.flow:
            mean, _ = self.flow_forward(mean, context)
        return mean

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
        mean = self.posterior_point(x, y)
        for layer in self.upper_encoders:
            mean, _ = layer(mean)
        for layer in reversed(self.upper_priors):
            mean, _ = layer(mean)
        return self.decode(mean, y)


def make_model(
    model_config: ml_collections.ConfigDict, image_shape: Sequence[int], num_classes: int
) -> VAE:
    """The Flax module of `config.model` for images [H, W, C]; conditional on num_classes
    labels when config.model.conditional."""
    if model_config.likelihood not in LIKELIHOODS:
        raise ValueError(
            f"config.model.likelihood must be one of {LIKELIHOODS}, got {model_config.likelihood!r}"
        )
    dims = (model_config.latent_dim, *model_config.upper_latent_dims)
    if any(int(d) <= 0 for d in dims):
        raise ValueError(
            f"config.model.latent_dim and upper_latent_dims must be positive, got {dims}"
        )
    for name in ("encoder_hidden", "decoder_hidden", "upper_hidden"):
        checks.check_counts(f"config.model.{name}", model_config[name])
    common = {"activation": model_config.activation, "conv": model_config.conv}
    upper_hidden = tuple(model_config.upper_hidden)
    # .get: a model saved before these keys existed loads without them
    iaf_steps = checks.check_count(
        "config.model.iaf_steps", model_config.get("iaf_steps", 0), minimum=0
    )
    iaf_hidden = checks.check_counts("config.model.iaf_hidden", model_config.get("iaf_hidden", ()))
    context_dim = 0
    if iaf_steps:
        context_dim = checks.check_count(
            "config.model.iaf_context_dim", model_config.get("iaf_context_dim", 0), minimum=0
        )

    def gaussian_layer(latent_dim):
        return Encoder(
            hidden=upper_hidden, latent_dim=int(latent_dim), activation=model_config.activation
        )

    return VAE(
        encoder=Encoder(
            hidden=tuple(model_config.encoder_hidden),
            latent_dim=model_config.latent_dim,
            context_dim=context_dim,
            **common,
        ),
        decoder=Decoder(
            hidden=tuple(model_config.decoder_hidden),
            image_shape=tuple(int(side) for side in image_shape),
            likelihood=model_config.likelihood,
            **common,
        ),
        num_classes=num_classes if model_config.conditional else 0,
        upper_encoders=tuple(gaussian_layer(d) for d in dims[1:]),
        upper_priors=tuple(gaussian_layer(d) for d in dims[:-1]),
        flow=tuple(
            IAFStep(hidden=iaf_hidden, activation=model_config.activation) for _ in range(iaf_steps)
        ),
    )


@flax.struct.dataclass
class VAEParams:
    """What every verb takes: the Flax variables, the label prior and the module (static).

    The module rides in the pytree's static part, so the verbs need nothing but params, and
    `init(key, config, meta)` rebuilds it from the config and the data-fixed sizes (which is
    how `genjax_lab.saving.load` restores a model without its data).

    variables: the Flax variables dict ({"params": ...}).
    log_prior: log p(y) [num_classes] for a conditional VAE (label frequencies after `fit`,
      uniform after `init`); None for an unconditional one.
    model: the `VAE` module.
    """

    variables: Any
    log_prior: jax.Array | None
    model: VAE = flax.struct.field(pytree_node=False)


def init_variables(key: jax.Array, model: VAE) -> Any:
    """Fresh Flax variables of `model` (the training loop's parameters)."""
    height_width_channels = model.decoder.image_shape
    y = jnp.zeros((1,), jnp.int32) if model.num_classes else None
    return model.init(key, jnp.zeros((1, *height_width_channels)), y)


def _model_of(config: ml_collections.ConfigDict, meta: Mapping[str, Any]) -> VAE:
    checks.check_mapping("meta", meta, ("image_shape", "num_classes"))
    return make_model(config.model, meta["image_shape"], int(meta["num_classes"]))


def init(key: jax.Array, config: ml_collections.ConfigDict, meta: Mapping[str, Any]) -> VAEParams:
    """Fresh parameters for `config` (the family's whole config) and `meta` (image_shape
    [H, W, C], num_classes: see `meta_from_data`); a uniform label prior."""
    model = _model_of(config, meta)
    log_prior = None
    if model.num_classes:
        log_prior = jnp.full((model.num_classes,), -math.log(model.num_classes), jnp.float32)
    return VAEParams(init_variables(key, model), log_prior, model)


def meta_from_data(data: Mapping[str, Any], config: ml_collections.ConfigDict) -> dict:
    """The sizes the data fix: image_shape [H, W, C] of data["x"] [N, H, W, C], and
    num_classes (config.data.num_classes for a conditional VAE, 0 otherwise)."""
    checks.check_mapping("data", data, ("x", "y") if config.model.conditional else ("x",))
    images = checks.check_array("data['x']", data["x"], ("N", "H", "W", "C"), kinds=checks.REAL)
    num_classes = 0
    if config.model.conditional:
        num_classes = checks.check_count("config.data.num_classes", config.data.num_classes)
    return {"image_shape": [int(side) for side in images.shape[1:]], "num_classes": num_classes}


# ----------------------------------------------------------------------------- input checks


def check_labels(model: VAE, y, num: int, name: str = "y") -> None:
    """Labels [num] in [0, num_classes) for a conditional VAE; an unconditional one ignores y."""
    if model.num_classes == 0:
        return
    labels = checks.check_array(name, y, (num,), kinds=checks.INTEGER)
    if labels.min() < 0 or labels.max() >= model.num_classes:
        raise ValueError(
            f"{name} must be labels in [0, {model.num_classes}), "
            f"got range [{labels.min()}, {labels.max()}]"
        )


def check_images(params: VAEParams, x) -> int:
    """params finite and x [B, H, W, C] pixel intensities in [0, 1]; returns B."""
    checks.check_finite_tree("params", params.variables)
    pixels = checks.check_array(
        "x", x, ("B", *params.model.decoder.image_shape), kinds=checks.FLOAT
    )
    if pixels.min() < 0 or pixels.max() > 1:
        raise ValueError(
            f"x must hold pixel intensities in [0, 1], got range [{pixels.min()}, {pixels.max()}]"
        )
    return pixels.shape[0]


# ----------------------------------------------------------------------------- likelihoods


def _check_decoded(likelihood: str, decoded, x, **_) -> None:
    checks.check_choice("likelihood", likelihood, LIKELIHOODS)
    pixels = checks.check_array("x", x, kinds=checks.FLOAT)
    outputs = checks.check_array("decoded", decoded, kinds=checks.FLOAT)
    try:
        np.broadcast_shapes(outputs.shape[:-1], pixels.shape)
    except ValueError:
        raise ValueError(
            "decoded must be [..., H, W, C, P] with [..., H, W, C] broadcasting "
            f"against x's shape {pixels.shape}, got shape {outputs.shape}"
        ) from None


@checks.validated(_check_decoded)
def decoder_log_prob(likelihood: str, decoded: jax.Array, x: jax.Array) -> jax.Array:
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
    gap = jnp.log(-jnp.expm1(jnp.minimum(lower - upper, -1e-6)))
    interior = log_cdf_upper + log_survival_lower + gap
    return jnp.where(x < -0.999, log_cdf_upper, jnp.where(x > 0.999, log_survival_lower, interior))


def _normal_log_density(z, mean, log_std):
    return jnp.sum(-0.5 * (((z - mean) * jnp.exp(-log_std)) ** 2 + _LOG_2PI) - log_std, axis=-1)


def decoder_mean(likelihood: str, decoded: jax.Array) -> jax.Array:
    """The decoder's mean image [..., H, W, C] in [0, 1] from its outputs [..., H, W, C, P]."""
    if likelihood == "bernoulli":
        return jax.nn.sigmoid(decoded[..., 0])
    if likelihood == "logistic":
        return jnp.clip((decoded[..., 0] + 1.0) / 2.0, 0.0, 1.0)
    return jnp.clip(decoded[..., 0], 0.0, 1.0)
