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
    model, variables = params.model, params.variables
    mean, log_std = model.apply(variables, x, y, method=VAE.encode)
    dims = model.latent_dims
    eps = jax.random.normal(key, (num_samples, *mean.shape[:-1], sum(dims)), mean.dtype)
    eps = _split_noise(eps, dims)
    z = mean + jnp.exp(log_std) * eps[0]  # [K, B, L1]
    posterior = [(z, mean, log_std)]  # (h_l, its q mean, its q log std), upwards
    for level, noise in enumerate(eps[1:]):
        mean, log_std = _apply_flat(params, VAE.encode_upper, posterior[-1][0], level)
        posterior.append((mean + jnp.exp(log_std) * noise, mean, log_std))
    latents = [h for h, _, _ in posterior]
    labels = None if y is None else jnp.tile(y, num_samples)
    decoded = model.apply(variables, z.reshape(-1, z.shape[-1]), labels, method=VAE.decode)
    decoded = decoded.reshape(num_samples, *x.shape, decoded.shape[-1])
    log_px = decoder_log_prob(model.decoder.likelihood, decoded, x[None])
    # The terms are added in the order of the one-layer model, whose gradients stay bitwise.
    log_pz = _normal_log_density(latents[-1], 0.0, jnp.zeros_like(latents[-1]))
    for level in reversed(range(len(dims) - 1)):
        mean, log_std = _apply_flat(params, VAE.prior_upper, latents[level + 1], level)
        log_pz = log_pz + _normal_log_density(latents[level], mean, log_std)
    log_qz = _normal_log_density(*posterior[0])
    for h, mean, log_std in posterior[1:]:
        log_qz = log_qz + _normal_log_density(h, mean, log_std)
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
    """q(h1 | x, y), the Gaussian next to x: mean and log std [B, L1] each.

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
