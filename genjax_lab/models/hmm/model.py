"""Hidden Markov models: parameter pytrees, emission models, scoring, decoding and sampling.

A K-state HMM: z_0 ~ pi, z_t | z_{t-1} ~ A[z_{t-1}], x_t | z_t ~ emission[z_t]. Parameters
are unconstrained, so any value is a valid model and gradient fitting needs no projection:
  pi = softmax(initial_logits), A = softmax(transition_logits, rows),
  categorical: B = softmax(logits, rows); diagonal Gaussian: sigma = exp(log_scales);
  full Gaussian: Sigma = L L^T, L lower triangular with exp(diagonal of `scale_tril`) on the
  diagonal; Gaussian mixture: weights = softmax(logits), diagonal components.
A -inf logit is a structural zero (left-to-right models): EM keeps it zero and gradients
through it are zero.

Sequences `x` come batched and padded: `Sequences(obs, lengths)` with obs [B, T] int
(categorical) or [B, T, D] float and lengths [B] (1 <= lengths <= T), or a bare obs array
when every sequence has all T steps. The public functions validate their inputs on the host
and name the argument at fault; the jitted message passing lives in genjax_lab.inference.hmm.

Class-conditional HMMs (`LabelledHMM`: one HMM per class, leaves stacked on a leading class
axis, and the class log prior) classify by Bayes' rule through genjax_lab.api.BayesClassifier.
"""

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg
import numpy as np
from jax import Array

from genjax_lab import api
from genjax_lab.core import checks
from genjax_lab.inference import hmm as hmm_inference

_LOG_2PI = math.log(2.0 * math.pi)


class CategoricalEmission(NamedTuple):
    """logits: [K, V]; p(y = v | x = k) = softmax(logits[k])[v]."""

    logits: Array


class DiagGaussianEmission(NamedTuple):
    """means, log_scales: [K, D]; y | x = k ~ N(means[k], diag(exp(2 log_scales[k])))."""

    means: Array
    log_scales: Array


class FullGaussianEmission(NamedTuple):
    """means: [K, D]; scale_tril: [K, D, D], its strict lower triangle and log-diagonal give
    the Cholesky factor L_k of Sigma_k = L_k L_k^T (the upper triangle is ignored)."""

    means: Array
    scale_tril: Array


class GaussianMixtureEmission(NamedTuple):
    """logits: [K, M] mixture weights; means, log_scales: [K, M, D] diagonal components."""

    logits: Array
    means: Array
    log_scales: Array


class SphericalGaussianEmission(NamedTuple):
    """means: [K, D]; log_scales: [K]; y | x = k ~ N(means[k], exp(2 log_scales[k]) I)."""

    means: Array
    log_scales: Array


class TiedGaussianEmission(NamedTuple):
    """means: [K, D]; scale_tril: [D, D], one covariance shared by every state (raw Cholesky
    factor as in FullGaussianEmission)."""

    means: Array
    scale_tril: Array


class SphericalMixtureEmission(NamedTuple):
    """logits: [K, M]; means: [K, M, D]; log_scales: [K, M], one scale per component."""

    logits: Array
    means: Array
    log_scales: Array


class FullMixtureEmission(NamedTuple):
    """logits: [K, M]; means: [K, M, D]; scale_tril: [K, M, D, D] raw Cholesky factors."""

    logits: Array
    means: Array
    scale_tril: Array


class TiedMixtureEmission(NamedTuple):
    """logits: [K, M]; means: [K, M, D]; scale_tril: [K, D, D], one covariance per state
    shared by its components (hmmlearn's GMMHMM 'tied')."""

    logits: Array
    means: Array
    scale_tril: Array


class PoissonEmission(NamedTuple):
    """log_rates: [K, D]; counts y_d | x = k ~ Poisson(exp(log_rates[k, d])), independent."""

    log_rates: Array


class MultinomialEmission(NamedTuple):
    """logits: [K, D]; num_trials: scalar int; a frame is a count vector over D outcomes
    summing to num_trials, y | x = k ~ Multinomial(num_trials, softmax(logits[k]))."""

    logits: Array
    num_trials: Array


Emission = (
    CategoricalEmission
    | DiagGaussianEmission
    | FullGaussianEmission
    | GaussianMixtureEmission
    | SphericalGaussianEmission
    | TiedGaussianEmission
    | SphericalMixtureEmission
    | FullMixtureEmission
    | TiedMixtureEmission
    | PoissonEmission
    | MultinomialEmission
)
# hmmlearn's covariance_type of each Gaussian emission; the mixtures have a component axis.
COVARIANCE_TYPES = {
    DiagGaussianEmission: "diag",
    SphericalGaussianEmission: "spherical",
    FullGaussianEmission: "full",
    TiedGaussianEmission: "tied",
    GaussianMixtureEmission: "diag",
    SphericalMixtureEmission: "spherical",
    FullMixtureEmission: "full",
    TiedMixtureEmission: "tied",
}
MIXTURES = (
    GaussianMixtureEmission,
    SphericalMixtureEmission,
    FullMixtureEmission,
    TiedMixtureEmission,
)
COUNTS = (PoissonEmission, MultinomialEmission)


class HMMParams(NamedTuple):
    """initial_logits: [K]; transition_logits: [K, K] (row i: from state i); emission."""

    initial_logits: Array
    transition_logits: Array
    emission: Emission


class LabelledHMM(NamedTuple):
    """One HMM per class: hmms has a leading class axis [C, ...] on every leaf; log_prior [C]
    is log P(y)."""

    log_prior: Array
    hmms: HMMParams


class Sequences(NamedTuple):
    """A padded batch: obs [B, T] int or [B, T, D] float; lengths [B] int, 1 <= lengths <= T."""

    obs: Array
    lengths: Array


def as_sequences(x) -> Sequences:
    """`Sequences` as given, or a bare obs array [B, T(, D)] with every length T (traceable)."""
    if isinstance(x, Sequences):
        return x
    obs = jnp.asarray(x) if not isinstance(x, np.ndarray) else x
    return Sequences(obs, jnp.full(obs.shape[:1], obs.shape[1], jnp.int32))


# ------------------------------------------------------------------------- validation


def _check_positive(name: str, values, shape: tuple[int, ...]) -> np.ndarray:
    v = checks.check_array(name, values, finite=False).astype(np.float64)
    if v.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {v.shape}")
    if not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise ValueError(f"{name} must be finite and positive")
    return v


def float_dtype(*values) -> np.dtype:
    """The floating dtype that inputs ask for, as JAX holds it: floating inputs keep theirs
    (float64 only under jax_enable_x64), anything else gets JAX's default float."""
    floats = [np.asarray(v) for v in values if jnp.issubdtype(np.asarray(v).dtype, jnp.floating)]
    return jnp.result_type(*floats) if floats else jnp.result_type(float)


def _log(p: np.ndarray, like) -> Array:
    """log p (zeros to -inf) in the dtype of the user's input `like`."""
    with np.errstate(divide="ignore"):
        return jnp.asarray(np.log(p), float_dtype(like))


def num_states(params: HMMParams) -> int:
    return params.transition_logits.shape[-1]


def check_params(params: HMMParams, name: str = "params") -> None:
    """One K-state HMM: leaf shapes that fit together, no NaN and no +inf (a -inf logit is a
    structural zero; every other leaf must be finite). Raises ValueError naming the leaf."""
    k = num_states(params)
    shapes = {
        "initial_logits": np.shape(params.initial_logits),
        "transition_logits": np.shape(params.transition_logits),
        "emission": (emission_num_states(params.emission),),
    }
    if shapes != {"initial_logits": (k,), "transition_logits": (k, k), "emission": (k,)}:
        raise ValueError(
            f"{name} must be one HMM with K states: initial_logits [K], transition_logits [K, K] "
            f"and an emission for K states; got shapes {shapes}"
        )
    checks.check_finite_tree(f"{name}.initial_logits", params.initial_logits, allow_neg_inf=True)
    checks.check_finite_tree(
        f"{name}.transition_logits", params.transition_logits, allow_neg_inf=True
    )
    for field, value in params.emission._asdict().items():
        checks.check_finite_tree(f"{name}.emission.{field}", value, allow_neg_inf=field == "logits")


def validate_sequences(params: HMMParams, obs, lengths) -> tuple[Array, Array]:
    """Checks obs [B, T] / [B, T, D] against the emission model and lengths [B]; returns
    them as arrays. Raises ValueError naming `obs` or `lengths`."""
    obs, lengths = validate_sequences_host(params, obs, lengths)
    return jnp.asarray(obs), jnp.asarray(lengths)


def validate_sequences_host(params: HMMParams, obs, lengths) -> tuple[np.ndarray, np.ndarray]:
    """`validate_sequences` as NumPy arrays (obs with zeroed padding, int32 lengths), for
    callers that pad them further before a compiled call."""
    emission = params.emission
    # Values are checked below on the real steps only: padding may hold anything.
    obs = checks.check_array("obs", obs, finite=False, nonempty=False)
    lengths = np.asarray(lengths)
    event_ndim = 0 if isinstance(emission, CategoricalEmission) else 1
    if event_ndim == 0 and obs.ndim == 3 and obs.shape[-1] == 1:
        obs = obs[..., 0]  # hmmlearn's symbols come as a column [N, 1]
    if obs.ndim != 2 + event_ndim:
        want = "[B, T] integers" if event_ndim == 0 else "[B, T, D]"
        raise ValueError(f"obs must be {want} for {type(emission).__name__}, got shape {obs.shape}")
    if lengths.shape != obs.shape[:1]:
        raise ValueError(f"lengths must have shape [B] = {obs.shape[:1]}, got {lengths.shape}")
    if not np.issubdtype(lengths.dtype, np.integer):
        raise ValueError(f"lengths must be integers, got {lengths.dtype}")
    if np.any(lengths < 1):
        raise ValueError(
            f"lengths must be >= 1 (zero-length sequence at index {int(np.argmin(lengths))})"
        )
    if np.any(lengths > obs.shape[1]):
        raise ValueError(f"lengths must be <= T = {obs.shape[1]}, got {int(lengths.max())}")
    valid = np.arange(obs.shape[1])[None, :] < lengths[:, None]
    if event_ndim == 0:
        num_symbols = emission.logits.shape[-1]
        if not np.issubdtype(obs.dtype, np.integer):
            raise ValueError(
                f"obs must be integer symbols for a categorical emission, got {obs.dtype}"
            )
        real = obs[valid]
        if real.size and (real.min() < 0 or real.max() >= num_symbols):
            raise ValueError(
                f"obs symbols must lie in [0, {num_symbols}), got range "
                f"[{real.min()}, {real.max()}]"
            )
        # Cast on the host: a device-side cast would compile once per batch size.
        symbols = np.where(valid, obs, 0).astype(np.int32)
        return symbols, lengths.astype(np.int32)
    dim = emission_num_features(emission)
    if obs.shape[-1] != dim:
        raise ValueError(f"obs must have D = {dim} features per step, got {obs.shape[-1]}")
    if not np.all(np.isfinite(obs[valid])):
        b, t = np.argwhere(~np.isfinite(obs).all(-1) & valid)[0]
        raise ValueError(f"obs contains NaN or inf (sequence {b}, step {t})")
    if isinstance(emission, COUNTS):
        _check_counts(emission, obs[valid])
    # Padding may hold anything (even NaN); zero it so it cannot leak through 0 * NaN.
    model_dtype = emission[0].dtype
    dtype = float_dtype(obs) if jnp.issubdtype(obs.dtype, jnp.floating) else model_dtype
    frames = np.where(valid[..., None], obs, 0.0).astype(dtype)
    return frames, lengths.astype(np.int32)


def _check_counts(emission: Emission, frames: np.ndarray) -> None:
    """Real frames [N, D] of a count emission: non-negative integers (of any dtype), and for
    a multinomial each frame summing to num_trials (hmmlearn's check)."""
    if np.any(frames < 0) or np.any(frames != np.round(frames)):
        raise ValueError(f"obs must hold non-negative integer counts for {type(emission).__name__}")
    if isinstance(emission, MultinomialEmission):
        sums = frames.sum(-1)
        trials = np.asarray(emission.num_trials)
        if sums.size and np.any(sums != trials):
            raise ValueError(
                f"obs: every frame of a multinomial must sum to num_trials = {trials}, got sums "
                f"in [{sums.min()}, {sums.max()}]"
            )


def _checked_inputs(params: HMMParams, obs, lengths) -> tuple[Array, Array]:
    """`validate_sequences` of the inputs of a public function, after `check_params`."""
    check_params(params)
    return validate_sequences(params, obs, lengths)


# ------------------------------------------------------------------------ constructors


def make_hmm(initial_probs, transition_probs, emission: Emission) -> HMMParams:
    """Params from probabilities, validated: initial_probs [K] and transition_probs [K, K]
    must be non-negative with rows summing to one. Zeros become -inf logits."""
    k = emission_num_states(emission)
    pi = checks.check_simplex("initial_probs", initial_probs, (k,))
    a = checks.check_simplex("transition_probs", transition_probs, (k, k))
    return HMMParams(_log(pi, initial_probs), _log(a, transition_probs), emission)


def emission_num_states(emission: Emission) -> int:
    # Every emission's first leaf has the state axis first.
    return emission[0].shape[0]


def emission_num_features(emission: Emission) -> int | None:
    """D, the values per frame; None for categorical symbols (a frame is one integer)."""
    if isinstance(emission, CategoricalEmission):
        return None
    if isinstance(emission, COUNTS):
        return emission[0].shape[-1]
    return emission.means.shape[-1]


def categorical_emission(emission_probs) -> CategoricalEmission:
    """emission_probs: [K, V], rows on the simplex."""
    probs = checks.check_simplex("emission_probs", emission_probs)
    return CategoricalEmission(_log(probs, emission_probs))


def diag_gaussian_emission(means, variances) -> DiagGaussianEmission:
    """means, variances: [K, D], variances > 0."""
    dtype = float_dtype(means, variances)
    means = checks.check_array("means", means, ("K", "D")).astype(np.float64)
    var = _check_positive("variances", variances, means.shape)
    return DiagGaussianEmission(jnp.asarray(means, dtype), jnp.asarray(0.5 * np.log(var), dtype))


def full_gaussian_emission(means, covariances) -> FullGaussianEmission:
    """means: [K, D]; covariances: [K, D, D] symmetric positive definite."""
    dtype = float_dtype(means, covariances)
    means = checks.check_array("means", means, ("K", "D")).astype(np.float64)
    k, d = means.shape
    cov = checks.check_array("covariances", covariances, (k, d, d)).astype(np.float64)
    if not np.allclose(cov, np.swapaxes(cov, -1, -2), rtol=1e-6, atol=1e-8):
        raise ValueError("covariances must be symmetric")
    try:
        chol = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        raise ValueError("covariances must be positive definite") from None
    return FullGaussianEmission(jnp.asarray(means, dtype), jnp.asarray(_raw_tril(chol), dtype))


def gaussian_mixture_emission(weights, means, variances) -> GaussianMixtureEmission:
    """weights: [K, M] rows on the simplex; means, variances: [K, M, D]."""
    w = checks.check_simplex("weights", weights)
    if w.ndim != 2:
        raise ValueError(f"weights must be [K, M], got shape {w.shape}")
    dtype = float_dtype(weights, means, variances)
    means = checks.check_array("means", means, (*w.shape, "D")).astype(np.float64)
    var = _check_positive("variances", variances, means.shape)
    return GaussianMixtureEmission(
        jnp.asarray(np.log(w), dtype),
        jnp.asarray(means, dtype),
        jnp.asarray(0.5 * np.log(var), dtype),
    )


def _covariance_leaf(covariances, kind: str, shape: tuple[int, ...], dtype) -> Array:
    """hmmlearn's covars of one covariance type -> our leaf: log standard deviations
    ('diag' [*shape, D], 'spherical' [*shape]) or raw Cholesky factors ('full'
    [*shape, D, D], 'tied' [*shape[:-1], D, D]). Raises ValueError naming `covariances`."""
    d = shape[-1]
    want = {
        "diag": shape,
        "spherical": shape[:-1],
        "full": (*shape[:-1], d, d),
        "tied": (*shape[:-2], d, d),
    }[kind]
    if kind in ("diag", "spherical"):
        return jnp.asarray(0.5 * np.log(_check_positive("covariances", covariances, want)), dtype)
    cov = checks.check_array("covariances", covariances, want).astype(np.float64)
    if not np.allclose(cov, np.swapaxes(cov, -1, -2), rtol=1e-6, atol=1e-8):
        raise ValueError("covariances must be symmetric")
    try:
        chol = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        raise ValueError("covariances must be positive definite") from None
    return jnp.asarray(_raw_tril(chol), dtype)


_GAUSSIANS = {
    "diag": DiagGaussianEmission,
    "spherical": SphericalGaussianEmission,
    "full": FullGaussianEmission,
    "tied": TiedGaussianEmission,
}
_MIXTURES = {
    "diag": GaussianMixtureEmission,
    "spherical": SphericalMixtureEmission,
    "full": FullMixtureEmission,
    "tied": TiedMixtureEmission,
}


def gaussian_emission(means, covariances, covariance_type: str = "diag") -> Emission:
    """hmmlearn's GaussianHMM(covariance_type) parameters: means [K, D] and covariances
    'diag' [K, D] variances, 'spherical' [K], 'full' [K, D, D] or 'tied' [D, D]."""
    checks.check_choice("covariance_type", covariance_type, tuple(_GAUSSIANS))
    dtype = float_dtype(means, covariances)
    means = checks.check_array("means", means, ("K", "D")).astype(np.float64)
    leaf = _covariance_leaf(covariances, covariance_type, means.shape, dtype)
    return _GAUSSIANS[covariance_type](jnp.asarray(means, dtype), leaf)


def mixture_emission(weights, means, covariances, covariance_type: str = "diag") -> Emission:
    """hmmlearn's GMMHMM(covariance_type) parameters: weights [K, M] rows on the simplex,
    means [K, M, D], covariances 'diag' [K, M, D], 'spherical' [K, M], 'full' [K, M, D, D]
    or 'tied' [K, D, D] (one per state, shared by its components)."""
    checks.check_choice("covariance_type", covariance_type, tuple(_MIXTURES))
    w = checks.check_simplex("weights", weights)
    if w.ndim != 2:
        raise ValueError(f"weights must be [K, M], got shape {w.shape}")
    dtype = float_dtype(weights, means, covariances)
    means = checks.check_array("means", means, (*w.shape, "D")).astype(np.float64)
    leaf = _covariance_leaf(covariances, covariance_type, means.shape, dtype)
    return _MIXTURES[covariance_type](
        jnp.asarray(np.log(w), dtype), jnp.asarray(means, dtype), leaf
    )


def poisson_emission(rates) -> PoissonEmission:
    """hmmlearn's PoissonHMM lambdas: rates [K, D] > 0."""
    dtype = float_dtype(rates)
    shape = np.shape(rates)
    if len(shape) != 2:
        raise ValueError(f"rates must be [K, D], got shape {shape}")
    return PoissonEmission(jnp.asarray(np.log(_check_positive("rates", rates, shape)), dtype))


def multinomial_emission(emission_probs, num_trials: int) -> MultinomialEmission:
    """hmmlearn's MultinomialHMM: emission_probs [K, D] rows on the simplex, num_trials >= 1
    draws per frame."""
    checks.check_count("num_trials", num_trials)
    probs = checks.check_simplex("emission_probs", emission_probs)
    return MultinomialEmission(_log(probs, emission_probs), jnp.asarray(num_trials, jnp.int32))


def _raw_tril(chol):
    """Cholesky factor -> unconstrained form (log on the diagonal). NumPy or JAX arrays."""
    xp = jnp if isinstance(chol, jax.Array) else np
    diag = xp.diagonal(chol, axis1=-2, axis2=-1)
    return xp.tril(chol, -1) + xp.log(diag)[..., None] * xp.eye(chol.shape[-1])


def scale_tril(raw: Array) -> Array:
    """[..., D, D] unconstrained -> Cholesky factor with a positive diagonal."""
    diag = jnp.exp(jnp.diagonal(raw, axis1=-2, axis2=-1))
    return jnp.tril(raw, -1) + diag[..., None] * jnp.eye(raw.shape[-1], dtype=raw.dtype)


def left_to_right_transitions(
    num_states: int, self_prob: float = 0.6, max_jump: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """(initial_probs [K], transition_probs [K, K]) of a Bakis left-to-right chain: start in
    state 0, stay with `self_prob`, else move forward by 1..max_jump (uniformly); the last
    state absorbs. The zeros stay zero under EM."""
    checks.check_count("num_states", num_states)
    checks.check_number("self_prob", self_prob, low=0.0, high=1.0)
    checks.check_count("max_jump", max_jump)
    a = np.zeros((num_states, num_states))
    for i in range(num_states):
        targets = list(range(i + 1, min(i + max_jump, num_states - 1) + 1))
        if not targets:
            a[i, i] = 1.0
            continue
        a[i, i] = self_prob
        a[i, targets] = (1.0 - self_prob) / len(targets)
    pi = np.zeros(num_states)
    pi[0] = 1.0
    return pi, a


def initial_probs(params: HMMParams) -> Array:
    return jax.nn.softmax(params.initial_logits, axis=-1)


def transition_probs(params: HMMParams) -> Array:
    return jax.nn.softmax(params.transition_logits, axis=-1)


def covariances(emission: FullGaussianEmission) -> Array:
    chol = scale_tril(emission.scale_tril)
    return chol @ jnp.swapaxes(chol, -1, -2)


# -------------------------------------------------------------------------- emissions


def _diag_log_prob(means: Array, log_scales: Array, obs: Array) -> Array:
    """obs [..., D] against [S, D] components -> [..., S]."""
    z = (obs[..., None, :] - means) * jnp.exp(-log_scales)
    # The constant per component [S], added once rather than per frame and dimension.
    log_norm = -0.5 * means.shape[-1] * _LOG_2PI - jnp.sum(log_scales, axis=-1)
    return log_norm - 0.5 * jnp.sum(z * z, axis=-1)


def emission_log_prob(emission: Emission, obs: Array) -> Array:
    """log p(y | x = k) for every state: obs [..., T] or [..., T, D] -> [..., T, K]."""
    if isinstance(emission, CategoricalEmission):
        log_b = jax.nn.log_softmax(emission.logits, axis=-1)
        return jnp.take(log_b.T, obs, axis=0)
    if isinstance(emission, DiagGaussianEmission):
        return _diag_log_prob(emission.means, emission.log_scales, obs)
    if isinstance(emission, FullGaussianEmission):
        return _full_log_prob(emission.means, emission.scale_tril, obs)
    if isinstance(emission, MIXTURES):
        return jax.nn.logsumexp(_mixture_joint_log_prob(emission, obs), axis=-1)
    if isinstance(emission, PoissonEmission):
        rates = jnp.exp(emission.log_rates)
        counts = obs[..., None, :]
        log_pmf = jax.scipy.special.xlogy(counts, rates) - rates
        return jnp.sum(log_pmf - jax.scipy.special.gammaln(counts + 1.0), axis=-1)
    if isinstance(emission, MultinomialEmission):
        # The multinomial coefficient n! / prod_d y_d! with n the frame's own total, as
        # hmmlearn (scipy's multinomial.logpmf(y, n=y.sum())).
        gammaln = jax.scipy.special.gammaln
        coef = gammaln(jnp.sum(obs, axis=-1) + 1.0) - jnp.sum(gammaln(obs + 1.0), axis=-1)
        probs = jax.nn.softmax(emission.logits, axis=-1)
        return coef[..., None] + jnp.sum(jax.scipy.special.xlogy(obs[..., None, :], probs), -1)
    if isinstance(emission, (SphericalGaussianEmission, TiedGaussianEmission)):
        return _component_log_prob(*gaussian_components(emission), obs)
    raise TypeError(f"unknown emission type {type(emission).__name__}")


def _full_log_prob(means: Array, raw_tril: Array, obs: Array) -> Array:
    """obs [..., D] against [S, D] components with raw Cholesky factors [S, D, D] -> [..., S]."""
    chol = scale_tril(raw_tril)
    eye = jnp.broadcast_to(jnp.eye(chol.shape[-1], dtype=chol.dtype), chol.shape)
    # L^-1 once per component (S small D x D solves), then one einsum over all frames.
    chol_inv = jax.scipy.linalg.solve_triangular(chol, eye, lower=True)
    z = jnp.einsum("kij,...kj->...ki", chol_inv, obs[..., None, :] - means)
    half_logdet = jnp.sum(jnp.diagonal(raw_tril, axis1=-2, axis2=-1), axis=-1)
    return -0.5 * jnp.sum(z * z + _LOG_2PI, axis=-1) - half_logdet


def gaussian_components(emission: Emission) -> tuple[Array, Array]:
    """Every Gaussian component of a Gaussian or mixture emission with its own covariance
    leaf: (means [K(, M), D], log standard deviations [K(, M), D] for diag and spherical or
    raw Cholesky factors [K(, M), D, D] for full and tied): shared leaves broadcast."""
    kind, means = COVARIANCE_TYPES[type(emission)], emission.means
    if kind == "diag":
        return means, emission.log_scales
    if kind == "spherical":
        return means, jnp.broadcast_to(emission.log_scales[..., None], means.shape)
    if kind == "full":
        return means, emission.scale_tril
    shared = emission.scale_tril[..., None, :, :] if means.ndim == 3 else emission.scale_tril
    return means, jnp.broadcast_to(shared, (*means.shape, means.shape[-1]))


def _component_log_prob(means: Array, scales: Array, obs: Array) -> Array:
    """obs [..., D] against components means [..., D] (any leading shape) and their leaf of
    `gaussian_components` -> [..., *components]."""
    shape, d = means.shape[:-1], means.shape[-1]
    flat = means.reshape(-1, d)
    if scales.ndim == means.ndim:
        comp = _diag_log_prob(flat, scales.reshape(-1, d), obs)
    else:
        comp = _full_log_prob(flat, scales.reshape(-1, d, d), obs)
    return comp.reshape(*comp.shape[:-1], *shape)


def _mixture_joint_log_prob(emission: Emission, obs: Array) -> Array:
    """log w_km + log N(y; mu_km, Sigma_km) -> [..., K, M]."""
    comp = _component_log_prob(*gaussian_components(emission), obs)
    return comp + jax.nn.log_softmax(emission.logits, axis=-1)


def log_emission(params: HMMParams, obs: Array) -> Array:
    """Emission log-likelihoods log p(y_t | x_t = k): obs [..., T(, D)] -> [..., T, K]."""
    return emission_log_prob(params.emission, obs)


# ------------------------------------------------------------------------------ scoring


def _potentials(params: HMMParams, obs: Array) -> tuple[Array, Array, Array]:
    return (
        jax.nn.log_softmax(params.initial_logits, axis=-1),
        jax.nn.log_softmax(params.transition_logits, axis=-1),
        log_emission(params, obs),
    )


def _one_hmm(params: "HMMParams | LabelledHMM") -> HMMParams:
    """The first class's HMM of a LabelledHMM (every class has its shapes), else params."""
    if isinstance(params, LabelledHMM):
        return jax.tree.map(lambda leaf: leaf[0], params.hmms)
    return params


def _checked(params: "HMMParams | LabelledHMM", x) -> tuple[Array, Array]:
    """Validated (obs, lengths) of `x` (Sequences or a bare obs array) against params."""
    if isinstance(params, LabelledHMM):
        checks.check_finite_tree("params.log_prior", params.log_prior, allow_neg_inf=True)
    x = x if isinstance(x, Sequences) else Sequences(x, np.full(np.shape(x)[:1], np.shape(x)[1]))
    return _checked_inputs(_one_hmm(params), x.obs, x.lengths)


@functools.partial(jax.jit, static_argnames=("parallel",))
def log_prob_unchecked(
    params: HMMParams, obs: Array, lengths: Array, parallel: bool = False
) -> Array:
    """Jitted log p(x_b) [B] of one HMM, no validation (`log_prob` validates)."""
    if parallel:
        return hmm_inference.hmm_filter(
            *_potentials(params, obs), lengths, parallel=True
        ).log_likelihood
    return hmm_inference.hmm_log_likelihood(*_potentials(params, obs), lengths)


def _over_classes(fn, hmms: HMMParams, *shared):
    """fn(hmm_c, *shared) for each HMM of a class stack [C, ...], outputs stacked [C, ...].

    A sequential map, not vmap: the recursions choose their probability-space pass or the
    log-space one by a lax.cond on each model, and under vmap that cond becomes a select that
    runs both passes for every class (ergodic class HMMs: 2.3x slower, left-to-right 1.2-1.7x,
    measured at 10 classes x 300 sequences)."""
    return jax.lax.map(lambda hmm_c: fn(hmm_c, *shared), hmms)


@jax.jit
def class_log_likelihoods(hmms: HMMParams, obs: Array, lengths: Array) -> Array:
    """log p(x_b | y = c) [B, C] for class HMMs stacked [C, ...]."""
    return _over_classes(log_prob_unchecked, hmms, obs, lengths).T


def _check_labels(params: LabelledHMM, y, num: int) -> np.ndarray:
    c = params.log_prior.shape[-1]
    y = checks.check_array("y", y, (num,), kinds=checks.INTEGER)
    if y.size and (y.min() < 0 or y.max() >= c):
        raise ValueError(f"y must be class indices in [0, {c}), got range [{y.min()}, {y.max()}]")
    return y


def log_prob(params: "HMMParams | LabelledHMM", x, y=None, parallel: bool = False) -> Array:
    """Exact log p(x_b) [B] of sequences x (Sequences or obs [B, T(, D)]), validated. For a
    LabelledHMM: log p(x_b | y_b) given labels y [B], else log p(x_b) = log sum_c p(x_b, c)."""
    obs, lengths = _checked(params, x)
    if not isinstance(params, LabelledHMM):
        if y is not None:
            raise ValueError("y: an unlabelled HMM has no class label (fit a LabelledHMM)")
        return log_prob_unchecked(params, obs, lengths, parallel)
    per_class = class_log_likelihoods(params.hmms, obs, lengths)
    if y is None:
        return jax.nn.logsumexp(per_class + params.log_prior, axis=-1)
    y = _check_labels(params, y, obs.shape[0])
    return jnp.take_along_axis(per_class, jnp.asarray(y)[:, None], axis=-1)[:, 0]


@functools.partial(jax.jit, static_argnames=("parallel",))
def _smooth(params, obs, lengths, parallel):
    return hmm_inference.hmm_smoother(*_potentials(params, obs), lengths, parallel=parallel)


def smooth(params: HMMParams, x, parallel: bool = False) -> hmm_inference.SmootherResult:
    """Forward-backward on validated sequences x: a SmootherResult (posteriors [B, T, K],
    log-likelihoods [B], ...)."""
    obs, lengths = _checked(params, x)
    return _smooth(params, obs, lengths, parallel)


def posterior(params: "HMMParams | LabelledHMM", x, parallel: bool = False) -> Array:
    """Smoothed state marginals p(z_t = k | x_b) [B, T, K] (zero on padding). For a
    LabelledHMM the latents are the class and the states: p(y = c, z_t = k | x_b) [B, T, C, K]."""
    obs, lengths = _checked(params, x)
    if not isinstance(params, LabelledHMM):
        return _smooth(params, obs, lengths, parallel).posteriors
    smoothed = _over_classes(_smooth, params.hmms, obs, lengths, parallel)
    class_post = jax.nn.softmax(smoothed.log_likelihood.T + params.log_prior, axis=-1)  # [B, C]
    return jnp.einsum("bc,cbtk->btck", class_post, smoothed.posteriors)


@functools.partial(jax.jit, static_argnames=("parallel",))
def _viterbi(params, obs, lengths, parallel):
    return hmm_inference.hmm_viterbi(*_potentials(params, obs), lengths, parallel=parallel)


def most_likely_states(params: HMMParams, x, parallel: bool = False) -> hmm_inference.ViterbiResult:
    """Viterbi paths [B, T] (-1 on padding) and their log p(z*, x) [B], validated input."""
    obs, lengths = _checked(params, x)
    return _viterbi(params, obs, lengths, parallel)


@functools.partial(jax.jit, static_argnames=("parallel",))
def _map_states(params, obs, lengths, parallel):
    return hmm_inference.hmm_marginal_mode(*_potentials(params, obs), lengths, parallel=parallel)


def map_states(params: HMMParams, x, parallel: bool = False) -> Array:
    """Per-frame MAP decoding, argmax_k p(z_t = k | x_b) [B, T] (-1 on padding): hmmlearn's
    decode(algorithm="map"). Unlike Viterbi's path it may step through a zero transition."""
    obs, lengths = _checked(params, x)
    return _map_states(params, obs, lengths, parallel)


# ------------------------------------------------------------- hmmlearn's data layout


def concatenated(obs, lengths=None) -> Sequences:
    """hmmlearn's layout -> a padded batch every verb accepts: obs [N(, D)] (or symbols as
    a column [N, 1]) holds the sequences one after another, lengths [B] their lengths
    (summing to N; None: one sequence of all N frames)."""
    obs = checks.check_array("obs", obs, finite=False)
    n = obs.shape[0]
    lengths = np.array([n]) if lengths is None else np.asarray(lengths)
    if (
        lengths.ndim != 1
        or not lengths.size
        or not np.issubdtype(lengths.dtype, np.integer)
        or np.any(lengths < 1)
        or lengths.sum() != n
    ):
        raise ValueError(
            f"lengths must be positive integers [B] summing to the N = {n} frames of obs, got "
            f"{lengths.tolist()}"
        )
    padded = np.zeros((lengths.size, int(lengths.max()), *obs.shape[1:]), obs.dtype)
    padded[_frame_rows(lengths), _frame_steps(lengths)] = obs
    return Sequences(padded, lengths.astype(np.int32))


def _frame_rows(lengths: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(lengths.size), lengths)


def _frame_steps(lengths: np.ndarray) -> np.ndarray:
    return np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)


def unpad(values, lengths) -> np.ndarray:
    """Per-frame outputs of a padded batch, values [B, T, ...] (posteriors, state paths),
    in hmmlearn's concatenated layout [N, ...] (N = sum of lengths [B])."""
    lengths = np.asarray(lengths)
    return np.asarray(values)[_frame_rows(lengths), _frame_steps(lengths)]


# ------------------------------------------------------------------ model selection


def num_free_parameters(params: HMMParams) -> int:
    """Free scalars of one HMM, as hmmlearn counts them for aic/bic: K - 1 initial, K (K - 1)
    transition, and per emission its means, covariances (diag K D, spherical K, full
    K D (D + 1) / 2, tied D (D + 1) / 2; per component for mixtures, tied per state),
    probabilities (K (V - 1)), rates (K D) and mixture weights K (M - 1) (hmmlearn's GMMHMM
    counts M - 1: it leaves out all but one state's)."""
    emission = params.emission
    k = num_states(params)
    count = (k - 1) + k * (k - 1)
    if isinstance(emission, (CategoricalEmission, MultinomialEmission)):
        return count + k * (emission.logits.shape[-1] - 1)
    if isinstance(emission, PoissonEmission):
        return count + emission.log_rates.size
    means = emission.means
    d, components = means.shape[-1], math.prod(means.shape[:-1])
    triangle = d * (d + 1) // 2
    covariance = {
        "diag": components * d,
        "spherical": components,
        "full": components * triangle,
        # Shared by every state (Gaussian) or by a state's components (mixture).
        "tied": (k if isinstance(emission, MIXTURES) else 1) * triangle,
    }[COVARIANCE_TYPES[type(emission)]]
    weights = k * (emission.logits.shape[-1] - 1) if isinstance(emission, MIXTURES) else 0
    return count + means.size + covariance + weights


def _information(params: HMMParams, x) -> tuple[float, int, int]:
    """(total log-likelihood, free parameters, real frames) of sequences x."""
    obs, lengths = _checked(params, x)
    total = float(jnp.sum(log_prob_unchecked(params, obs, lengths)))
    return total, num_free_parameters(params), int(np.sum(lengths))


def aic(params: HMMParams, x) -> float:
    """Akaike's criterion -2 log p(x) + 2 p on sequences x (hmmlearn's aic), lower is better."""
    total, free, _ = _information(params, x)
    return -2.0 * total + 2.0 * free


def bic(params: HMMParams, x) -> float:
    """Schwarz's criterion -2 log p(x) + p log N, N the real frames (hmmlearn's bic)."""
    total, free, frames = _information(params, x)
    return -2.0 * total + free * math.log(frames)


@jax.jit
def _sample_posterior(key, params, obs, lengths):
    return hmm_inference.hmm_posterior_sample(key, *_potentials(params, obs), lengths)


def sample_posterior(key: Array, params: HMMParams, x) -> Array:
    """One draw z ~ p(z | x) per sequence (forward-filtering backward-sampling), [B, T]."""
    obs, lengths = _checked(params, x)
    return _sample_posterior(key, params, obs, lengths)


# ----------------------------------------------------------------------------- sampling


def _sample_emission(key: Array, emission: Emission, states: Array) -> Array:
    """One observation per entry of `states` [T] -> [T] or [T, D]."""
    if isinstance(emission, CategoricalEmission):
        return jax.random.categorical(key, emission.logits[states]).astype(jnp.int32)
    if isinstance(emission, PoissonEmission):
        return jax.random.poisson(key, jnp.exp(emission.log_rates[states])).astype(jnp.int32)
    if isinstance(emission, MultinomialEmission):
        probs = jax.nn.softmax(emission.logits[states], axis=-1)
        return jax.random.multinomial(key, emission.num_trials, probs).astype(jnp.int32)
    if type(emission) not in COVARIANCE_TYPES:
        raise TypeError(f"unknown emission type {type(emission).__name__}")
    means, scales = gaussian_components(emission)
    noise = jax.random.normal(key, states.shape + means.shape[-1:], means.dtype)
    index = (states,)
    if isinstance(emission, MIXTURES):
        k_comp, _ = jax.random.split(key)
        index = (states, jax.random.categorical(k_comp, emission.logits[states]))
    if scales.ndim == means.ndim:
        return means[index] + jnp.exp(scales[index]) * noise
    return means[index] + jnp.einsum("tij,tj->ti", scale_tril(scales[index]), noise)


def _check_sample(key, params, num: int, y=None, *, length: int, initial_state=None) -> None:
    check_params(_one_hmm(params))
    checks.check_count("num", num)
    checks.check_count("length", length)
    if initial_state is not None:
        k = num_states(_one_hmm(params))
        state = checks.check_array("initial_state", initial_state, kinds=checks.INTEGER)
        if state.shape not in ((), (num,)) or state.min() < 0 or state.max() >= k:
            raise ValueError(
                f"initial_state must be one state or [num] = [{num}] states in [0, {k}), got "
                f"{state.tolist()}"
            )
    if y is not None:
        if not isinstance(params, LabelledHMM):
            raise ValueError("y: an unlabelled HMM has no class label (fit a LabelledHMM)")
        _check_labels(params, y, num)


def _chain(key: Array, params: HMMParams, length: int, z0=None) -> tuple[Array, Array]:
    """One joint draw (states [length] int32, emissions [length(, D)]), from state z0 when
    given (hmmlearn's currstate), else z0 ~ pi."""
    k_init, k_chain, k_obs = jax.random.split(key, 3)
    if z0 is None:
        z0 = jax.random.categorical(k_init, params.initial_logits)

    def step(z, k):
        nxt = jax.random.categorical(k, params.transition_logits[z])
        return nxt, nxt

    _, rest = jax.lax.scan(step, z0, jax.random.split(k_chain, length - 1))
    states = jnp.concatenate([z0[None], rest]).astype(jnp.int32)
    return states, _sample_emission(k_obs, params.emission, states)


@checks.validated(_check_sample)
@functools.partial(jax.jit, static_argnames=("num", "length"))
def sample_with_states(
    key: Array,
    params: "HMMParams | LabelledHMM",
    num: int,
    y=None,
    *,
    length: int,
    initial_state=None,
) -> tuple[Array, Array]:
    """`num` joint draws of `length` steps: (states [num, length] int32, emissions [num,
    length] or [num, length, D]). A LabelledHMM draws from class y [num] (from the class
    prior when y is None). initial_state (one state or [num]): the chains start there instead
    of from pi, continuing a sequence (hmmlearn's sample(currstate=...))."""
    keys = jax.random.split(key, num)
    z0 = None if initial_state is None else jnp.broadcast_to(initial_state, (num,))
    if not isinstance(params, LabelledHMM):
        return jax.vmap(lambda k, z: _chain(k, params, length, z))(keys, z0)
    if y is None:
        y = jax.random.categorical(jax.random.fold_in(key, num), params.log_prior, shape=(num,))
    per_draw = jax.tree.map(lambda leaf: leaf[jnp.asarray(y)], params.hmms)
    return jax.vmap(lambda k, p, z: _chain(k, p, length, z))(keys, per_draw, z0)


def sample(
    key: Array,
    params: "HMMParams | LabelledHMM",
    num: int,
    *,
    y=None,
    length: int,
    initial_state=None,
) -> Array:
    """`num` sequences of `length` emissions, [num, length(, D)] (states: sample_with_states);
    a LabelledHMM draws from class y [num], or from its class prior when y is None;
    initial_state (one state or [num]) fixes the first state, as hmmlearn's currstate."""
    return sample_with_states(key, params, num, y, length=length, initial_state=initial_state)[1]


# --------------------------------------------------------------------------- classifier


def stack_hmms(hmms: list[HMMParams]) -> HMMParams:
    """Per-class params (same structure and sizes) -> one pytree with a class axis [C, ...]."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *hmms)


def make_labelled(hmms: HMMParams, class_probs) -> LabelledHMM:
    """hmms stacked [C, ...] (see `stack_hmms`) and validated class probabilities [C]."""
    c = hmms.initial_logits.shape[0]
    if any(np.shape(leaf)[:1] != (c,) for leaf in jax.tree.leaves(hmms)):
        raise ValueError(f"hmms must carry a class axis of C={c} on every leaf (see stack_hmms)")
    check_params(jax.tree.map(lambda leaf: leaf[0], hmms), "hmms[0]")
    probs = checks.check_simplex("class_probs", class_probs, (c,))
    return LabelledHMM(_log(probs, class_probs), hmms)


def _classifier_log_likelihoods(hmms: HMMParams, x, key: Array | None) -> Array:
    del key  # exact
    x = as_sequences(x)
    if checks.is_checkable(x):
        x = Sequences(*_checked_inputs(jax.tree.map(lambda leaf: leaf[0], hmms), *x))
    return class_log_likelihoods(hmms, x.obs, x.lengths)


def classifier(params: LabelledHMM) -> api.BayesClassifier:
    """Bayes' rule over the classes of a LabelledHMM: log P(y) + log p(x | y); x is Sequences
    or obs [B, T(, D)]."""
    if not isinstance(params, LabelledHMM):
        raise TypeError(
            f"params: a classifier needs class-conditional HMMs (LabelledHMM, from fit "
            f"with config.class_conditional), got {type(params).__name__}"
        )
    checks.check_finite_tree("params.log_prior", params.log_prior, allow_neg_inf=True)
    check_params(jax.tree.map(lambda leaf: leaf[0], params.hmms), "params.hmms[0]")
    base = api.from_class_conditionals(params.log_prior, params.hmms, log_prob_unchecked)
    return dataclasses.replace(base, class_log_likelihoods=_classifier_log_likelihoods)
