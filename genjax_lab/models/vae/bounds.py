"""Scoring, sampling and the posterior of a VAE: the shared verbs (genjax_lab.api).

Log weights log w = log p(x | z, y) + log p(z) - log q(z | x, y) are [K, B] for K samples
z ~ q (z = (h1, ..., hL): log w = log p(x, h1..hL | y) - log q(h1..hL | x, y));
ELBO = mean_k log w, IWAE_K = logsumexp_k log w - log K (`log_prob_bound`), and log p(x) is
estimated by importance sampling with large K, in chunks to bound memory
(`log_prob_estimate`). A conditional VAE classifies by Bayes' rule over those estimates.
"""

import functools
import itertools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from genjax_lab import api
from genjax_lab.core import checks
from genjax_lab.models.vae.model import (
    VAE,
    VAEParams,
    check_images,
    check_labels,
    decoder_log_prob,
    decoder_mean,
)


class Gaussian(NamedTuple):
    """A diagonal Gaussian: mean and log standard deviation, [..., L] each."""

    mean: jax.Array
    log_std: jax.Array


def _normal_log_density(z, mean, log_std):
    return jnp.sum(
        -0.5 * (((z - mean) * jnp.exp(-log_std)) ** 2 + math.log(2 * math.pi)) - log_std, axis=-1
    )


def _split_noise(eps: jax.Array, dims: tuple[int, ...]) -> list[jax.Array]:
    """[..., sum(dims)] -> one [..., d] per layer: one draw serves every layer."""
    bounds = np.cumsum((0, *dims))
    return [eps[..., start:stop] for start, stop in itertools.pairwise(bounds)]


def _apply_flat(params: VAEParams, method, h: jax.Array, level: int):
    """A Gaussian layer on h [K, B, L]: the modules take one batch axis."""
    mean, log_std = params.model.apply(
        params.variables, h.reshape(-1, h.shape[-1]), level, method=method
    )
    return mean.reshape(*h.shape[:-1], -1), log_std.reshape(*h.shape[:-1], -1)


def _check_bound(params: VAEParams, x, y=None, num_samples: int = 1, **_) -> None:
    num = check_images(params, x)
    if y is not None:
        check_labels(params.model, y, num)
    checks.check_count("num_samples", num_samples)


def _over_labels(score, key: jax.Array, params: VAEParams, x: jax.Array) -> jax.Array:
    """logsumexp_c score(key, params, x, y = c) + log p(y = c) [B]: log p(x) of a conditional
    VAE from its log p(x | y) (a bound of each gives a bound, an estimate an estimate);
    every label uses the same key."""

    def one_label(label):
        return score(key, params, x, jnp.full((x.shape[0],), label, jnp.int32))

    every = jax.vmap(one_label, out_axes=-1)(jnp.arange(params.model.num_classes))
    return jax.nn.logsumexp(every + params.log_prior, axis=-1)


def _draw_h1(params: VAEParams, mean, log_std, context, eps) -> tuple[jax.Array, jax.Array]:
    """h1 ~ q(h1 | x, y) from the encoder's outputs and standard normal noise eps [K, B, L1]:
    (z_0, h1) [K, B, L1] each, h1 = z_0 but through the IAF when the model has one, and
    log |det dh1 / dz_0| [K, B] (None without one)."""
    z = mean + jnp.exp(log_std) * eps  # [K, B, L1]
    if not params.model.flow:
        return z, z, None
    h1, log_det = params.model.apply(params.variables, z, context, method=VAE.flow_forward)
    return z, h1, log_det


def _posterior_log_density(z0, mean, log_std, log_det):
    """log q(h1 | x, y) = log N(z_0; mean, std) - log |det dh1 / dz_0|."""
    log_q = _normal_log_density(z0, mean, log_std)
    return log_q if log_det is None else log_q - log_det


@checks.validated(_check_bound)
def log_weight_terms(
    key: jax.Array,
    params: VAEParams,
    x: jax.Array,
    y: jax.Array | None = None,
    num_samples: int = 1,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(log p(x | h1, y), log p(h1..hL), log q(h1..hL | x, y)) for `num_samples` draws
    z = (h1..hL) ~ q per example: [K, B] each; `log_weights` is their sum, and
    log q - log p(h) is the single-sample estimate of KL(q || p) that a beta-VAE weighs."""
    model, variables = params.model, params.variables
    mean, log_std, context = model.apply(variables, x, y, method=VAE.encode_context)
    dims = model.latent_dims
    eps = jax.random.normal(key, (num_samples, *mean.shape[:-1], sum(dims)), mean.dtype)
    eps = _split_noise(eps, dims)
    z0, z, log_det = _draw_h1(params, mean, log_std, context, eps[0])
    posterior = [(z, mean, log_std)]  # (h_l, its q mean, its q log std), upwards
    for level, noise in enumerate(eps[1:]):
        mean, log_std = _apply_flat(params, VAE.encode_upper, posterior[-1][0], level)
        posterior.append((mean + jnp.exp(log_std) * noise, mean, log_std))
    latents = [h for h, _, _ in posterior]
    labels = None if y is None else jnp.tile(y, num_samples)
    decoded = model.apply(variables, z.reshape(-1, z.shape[-1]), labels, method=VAE.decode)
    decoded = decoded.reshape(num_samples, *x.shape, decoded.shape[-1])
    log_px = decoder_log_prob(model.decoder.likelihood, decoded, x[None])
    # The terms are computed in the order of the one-layer model without a flow, whose
    # gradients stay bitwise: the order of the forward pass fixes the order in which the
    # backward pass sums each latent's cotangents.
    log_pz = _normal_log_density(latents[-1], 0.0, jnp.zeros_like(latents[-1]))
    for level in reversed(range(len(dims) - 1)):
        mean, log_std = _apply_flat(params, VAE.prior_upper, latents[level + 1], level)
        log_pz = log_pz + _normal_log_density(latents[level], mean, log_std)
    log_qz = _posterior_log_density(z0, *posterior[0][1:], log_det)
    for h, mean, log_std in posterior[1:]:
        log_qz = log_qz + _normal_log_density(h, mean, log_std)
    return log_px, log_pz, log_qz


@checks.validated(_check_bound)
def log_weights(
    key: jax.Array,
    params: VAEParams,
    x: jax.Array,
    y: jax.Array | None = None,
    num_samples: int = 1,
) -> jax.Array:
    """log p(x, z | y) - log q(z | x, y) for `num_samples` z = (h1..hL) ~ q per example:
    [K, B]."""
    log_px, log_pz, log_qz = log_weight_terms(key, params, x, y, num_samples)
    return log_px + log_pz - log_qz


@checks.validated(_check_bound)
def elbo(
    key: jax.Array,
    params: VAEParams,
    x: jax.Array,
    y: jax.Array | None = None,
    *,
    num_samples: int = 1,
) -> jax.Array:
    """The evidence lower bound per example, averaged over `num_samples` z: [B]."""
    return log_weights(key, params, x, y, num_samples).mean(0)


@checks.validated(_check_bound)
def log_prob_bound(
    key: jax.Array,
    params: VAEParams,
    x: jax.Array,
    y: jax.Array | None = None,
    *,
    num_samples: int = 1,
) -> jax.Array:
    """The importance-weighted bound on log p(x | y) with K = `num_samples` (K = 1: the
    ELBO), [B]. A conditional VAE given no labels bounds log p(x) = log sum_y p(x | y) p(y)."""
    return _log_prob_bound(key, params, x, y, num_samples)


# The verbs compile whole: called from Python, op-by-op dispatch of their many small ops costs
# more than one compilation.
@functools.partial(jax.jit, static_argnums=4)
def _log_prob_bound(key, params, x, y, num_samples):
    if params.model.num_classes and y is None:
        return _over_labels(lambda *a: _log_prob_bound(*a, num_samples), key, params, x)
    lw = log_weights(key, params, x, y, num_samples)
    return jax.nn.logsumexp(lw, axis=0) - math.log(num_samples)


def _check_estimate(params: VAEParams, x, y=None, num_samples: int = 1, chunk=None, **_) -> None:
    _check_bound(params, x, y, num_samples)
    if chunk is not None and num_samples % checks.check_count("chunk", chunk):
        raise ValueError(f"num_samples={num_samples} must be a multiple of chunk={chunk}")


@checks.validated(_check_estimate)
def log_prob_estimate(
    key: jax.Array,
    params: VAEParams,
    x: jax.Array,
    y: jax.Array | None = None,
    *,
    num_samples: int = 1000,
    chunk: int | None = None,
) -> jax.Array:
    """log p(x | y) by importance sampling with q as proposal: `num_samples` draws, `chunk`
    at a time (None: all at once), [B].

    Memory is that of `chunk` samples; the running logsumexp is exact. A conditional VAE
    given no labels estimates log p(x) = log sum_y p(x | y) p(y).
    """
    return _log_prob_estimate(
        key, params, x, y, num_samples, num_samples if chunk is None else chunk
    )


@functools.partial(jax.jit, static_argnums=(4, 5))
def _log_prob_estimate(key, params, x, y, num_samples, chunk):
    if params.model.num_classes and y is None:
        return _over_labels(lambda *a: _log_prob_estimate(*a, num_samples, chunk), key, params, x)

    def one_chunk(running, chunk_key):
        lw = log_weights(chunk_key, params, x, y, chunk)
        return jnp.logaddexp(running, jax.nn.logsumexp(lw, axis=0)), None

    start = jnp.full(x.shape[0], -jnp.inf, x.dtype)
    total, _ = jax.lax.scan(one_chunk, start, jax.random.split(key, num_samples // chunk))
    return total - math.log(num_samples)


# ----------------------------------------------------------------------------- sampling


def _check_sample(params: VAEParams, num: int, y=None, **_) -> None:
    checks.check_finite_tree("params", params.variables)
    num = checks.check_count("num", num)
    if y is not None:
        check_labels(params.model, y, num)


@checks.validated(_check_sample)
def sample(key: jax.Array, params: VAEParams, num: int, *, y: jax.Array | None = None) -> jax.Array:
    """x ~ p(x | h1, y) with hL ~ N(0, I), h_l ~ p(h_l | h_{l+1}), shown as the decoder's
    mean: [num, H, W, C] in [0, 1]. A conditional VAE draws x given the labels y [num], or
    draws the labels from log_prior when y is None; an unconditional one ignores y."""
    return _sample(key, params, num, y)


@functools.partial(jax.jit, static_argnums=2)
def _sample(key, params, num, y):
    model = params.model
    if model.num_classes and y is None:
        # fold_in keeps the latent noise of `key` the same as when the labels are given
        y = jax.random.categorical(jax.random.fold_in(key, 1), params.log_prior, shape=(num,))
    dims = model.latent_dims
    eps = _split_noise(jax.random.normal(key, (num, sum(dims))), dims)
    z = eps[-1]
    for level in reversed(range(len(dims) - 1)):
        mean, log_std = model.apply(params.variables, z, level, method=VAE.prior_upper)
        z = mean + jnp.exp(log_std) * eps[level]
    decoded = model.apply(params.variables, z, y, method=VAE.decode)
    return decoder_mean(model.decoder.likelihood, decoded)


def reconstruct(params: VAEParams, x: jax.Array, y: jax.Array | None = None) -> jax.Array:
    """The decoder's mean [B, H, W, C] through the means of every layer, up and back down."""
    decoded = params.model.apply(params.variables, x, y)
    return decoder_mean(params.model.decoder.likelihood, decoded)


# ----------------------------------------------------------------------------- the posterior


def _check_posterior(params: VAEParams, x, y=None, **_) -> None:
    num = check_images(params, x)
    if y is not None:
        check_labels(params.model, y, num)


@checks.validated(_check_posterior)
def posterior(params: VAEParams, x: jax.Array, y: jax.Array | None = None) -> Gaussian:
    """q(h1 | x, y), the Gaussian next to x: mean and log std [B, L1] each (with an IAF,
    the Gaussian the flow starts from: draw q itself with `sample_posterior`).

    A conditional VAE given no labels returns q(h1 | x, y = c) for every label c,
    [B, num_classes, L1] each: weighted by `classifier(params)`'s P(y | x) they make q(h1 | x).
    """
    return _posterior(params, x, y)


@jax.jit
def _posterior(params, x, y):
    model = params.model

    def encode(labels):
        return Gaussian(*model.apply(params.variables, x, labels, method=VAE.encode))

    if model.num_classes == 0 or y is not None:
        return encode(y)
    every_label = jnp.arange(model.num_classes, dtype=jnp.int32)
    return jax.vmap(lambda c: encode(jnp.full((x.shape[0],), c)), out_axes=1)(every_label)


@checks.validated(_check_posterior)
def sample_posterior(
    key: jax.Array,
    params: VAEParams,
    x: jax.Array,
    y: jax.Array | None = None,
    *,
    num_samples: int = 1,
) -> tuple[jax.Array, jax.Array]:
    """h1 ~ q(h1 | x, y), through the IAF when the model has one: (h1 [K, B, L1],
    log q(h1 | x, y) [K, B]) for K = `num_samples` draws per example."""
    checks.check_count("num_samples", num_samples)
    return _sample_posterior(key, params, x, y, num_samples)


@functools.partial(jax.jit, static_argnums=4)
def _sample_posterior(key, params, x, y, num_samples):
    mean, log_std, context = params.model.apply(params.variables, x, y, method=VAE.encode_context)
    eps = jax.random.normal(key, (num_samples, *mean.shape), mean.dtype)
    z0, h1, log_det = _draw_h1(params, mean, log_std, context, eps)
    return h1, _posterior_log_density(z0, mean, log_std, log_det)


def _check_interpolate(params: VAEParams, x_a, x_b, num: int, y=None, **_) -> None:
    batch = check_images(params, x_a)
    if check_images(params, x_b) != batch:
        raise ValueError(
            f"x_a and x_b must hold as many images, got {batch} and {np.shape(x_b)[0]}"
        )
    checks.check_count("num", num, minimum=2)
    if y is not None:
        check_labels(params.model, y, batch)


@checks.validated(_check_interpolate)
def interpolate(
    params: VAEParams,
    x_a: jax.Array,
    x_b: jax.Array,
    num: int,
    *,
    y: jax.Array | None = None,
    slerp: bool = False,
) -> jax.Array:
    """The decoder's mean along the path from h1(x_a) to h1(x_b), `num` evenly spaced
    points ends included: [B, num, H, W, C] for image pairs x_a, x_b [B, H, W, C].

    h1(x) is the encoder's mean through the flow (`reconstruct`'s point); the path is the
    straight segment, or with `slerp` the great-circle arc (Shoemake 1985; White 2016 for
    latent spaces), which keeps the norm typical of N(0, I) draws along the way. A
    conditional VAE encodes and decodes every point with the labels y [B] (required)."""
    if params.model.num_classes and y is None:
        raise ValueError("y: a conditional VAE interpolates given the labels y [B]")
    return _interpolate(params, x_a, x_b, num, y, slerp)


@functools.partial(jax.jit, static_argnums=(3, 5))
def _interpolate(params, x_a, x_b, num, y, slerp):
    model = params.model
    h_a = model.apply(params.variables, x_a, y, method=VAE.posterior_point)  # [B, L]
    h_b = model.apply(params.variables, x_b, y, method=VAE.posterior_point)
    t = jnp.linspace(0.0, 1.0, num, dtype=h_a.dtype)[None, :, None]  # [1, num, 1]
    weight_a, weight_b = 1.0 - t, t
    if slerp:
        cos = jnp.sum(h_a * h_b, -1) / (
            jnp.linalg.norm(h_a, axis=-1) * jnp.linalg.norm(h_b, axis=-1) + 1e-12
        )
        omega = jnp.arccos(jnp.clip(cos, -1.0, 1.0))[:, None, None]
        sin = jnp.sin(omega)
        # parallel endpoints have no arc: the segment is their limit
        arc = sin > 1e-6
        safe = jnp.where(arc, sin, 1.0)
        weight_a = jnp.where(arc, jnp.sin((1.0 - t) * omega) / safe, weight_a)
        weight_b = jnp.where(arc, jnp.sin(t * omega) / safe, weight_b)
    path = weight_a * h_a[:, None] + weight_b * h_b[:, None]  # [B, num, L]
    labels = None if y is None else jnp.repeat(y, num)
    decoded = model.apply(
        params.variables, path.reshape(-1, path.shape[-1]), labels, method=VAE.decode
    )
    images = decoder_mean(model.decoder.likelihood, decoded)
    return images.reshape(x_a.shape[0], num, *images.shape[1:])


# ----------------------------------------------------------------------------- Bayes' rule


def classifier(
    params: VAEParams, *, num_samples: int = 100, chunk: int | None = None
) -> api.BayesClassifier:
    """P(y | x) of a conditional VAE by Bayes' rule: log_prior plus log p(x | y) by
    importance sampling (`log_prob_estimate` with `num_samples` draws, `chunk` at a time);
    every label's estimate uses the classifier's one key."""
    if params.model.num_classes == 0:
        raise ValueError(
            "params must be a conditional VAE's (config.model.conditional) to classify"
        )
    checks.check_count("num_samples", num_samples)
    estimate = functools.partial(log_prob_estimate, num_samples=num_samples, chunk=chunk)
    return api.from_conditional(params.log_prior, params, estimate, stochastic=True)
