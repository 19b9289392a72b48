"""Fitting HMMs: the family's config, `init`, `meta_from_data` and `fit` (MAP Baum-Welch EM
from k-means / segmental / random starts, best of `num_inits`, stopping on `tol`), the EM step
it is made of, and gradient ascent on the marginal likelihood.

Data layout of `fit`: {"x": Sequences(obs, lengths) or obs [B, T] int / [B, T, D] float,
"y": [B] int (class-conditional fits), "mask": [B] (optional sequence weights)}.

EM step. The E-step runs forward-backward on a batch {'obs' [B, T(, D)], 'lengths' [B],
'mask' [B]} and forms sufficient statistics as sums over the batch axis weighted by the
mask (rows with mask 0 are the harness's padding): expected initial-state counts [K],
transition counts [K, K] and emission statistics. With the batch sharded over the 'data'
mesh axis under jit, XLA reduces these sums across devices inside the compiled step.
Gaussian statistics are centred on the current means (sum w (y - mu_old), sum w (y -
mu_old)^2), so the M-step's scatter does not lose digits to cancellation when
|mean| >> standard deviation.

Prior (HMMPrior), and the MAP M-step it gives (objective: log p(y | theta) + log p(theta),
which EM never decreases):
  - initial, transition rows, categorical emission rows and mixture weights:
    Dirichlet(c): p_j ∝ max(n_j + c - 1, 0). A row with no mass keeps its old value, so no
    0/0; a probability that is exactly zero (a -inf logit, e.g. left-to-right) stays zero.
  - Gaussian means and covariances, per state (per component for mixtures), with
    kappa = mean_weight, m0 = mean_prior, Psi = covariance_prior * I, n0 =
    covariance_pseudocount:
      p(mu, Sigma) ∝ |Sigma|^(-n0/2) exp(-tr(Sigma^-1 (Psi + kappa (mu - m0)(mu - m0)^T)) / 2)
    (normal-inverse-Wishart with nu = n0 - D - 2; the diagonal case is the same per
    dimension). MAP: mu = (kappa m0 + sum w y) / (kappa + N),
      Sigma = (Psi + sum w (y - mu)(y - mu)^T + kappa (mu - m0)(mu - m0)^T) / (N + n0).
    With Psi > 0 and n0 > 0 a state that loses all its frames gets Sigma = Psi / n0 instead
    of a singular matrix, so states cannot collapse into NaN. kappa = Psi = n0 = 0 and
    Dirichlet c = 1 is maximum likelihood (used to compare with hmmlearn).

Starts: `init_gaussian_hmm` (k-means from genjax_lab.inference.kmeans on all real frames;
state variances are the cluster variances) for ergodic models, a uniform segmentation of
every sequence for left-to-right models (state k gets frames [k L / K, (k + 1) L / K)), the
usual start for speech, and `init_categorical_hmm` (random sticky transitions, Dirichlet(1)
emissions) for symbols. `fit` runs `num_inits` starts through one compiled while loop each
and keeps the best final MAP objective per class. `fit_gradient` maximises the same
objective with optax instead.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax import Array

from genjax_lab.core import checks, compilation
from genjax_lab.inference import kmeans as kmeans_lib
from genjax_lab.inference.hmm import hmm_log_likelihood, hmm_smoother
from genjax_lab.models.hmm import model as hmm_model
from genjax_lab.models.hmm.model import (
    CategoricalEmission,
    DiagGaussianEmission,
    Emission,
    FullGaussianEmission,
    GaussianMixtureEmission,
    HMMParams,
)


class HMMPrior(NamedTuple):
    """Conjugate prior hyperparameters (module docstring); scalars or broadcastable arrays."""

    initial_concentration: float = 1.0
    transition_concentration: float = 1.0
    emission_concentration: float = 1.0
    mean_prior: float = 0.0
    mean_weight: float = 0.0
    covariance_prior: float = 1e-2
    covariance_pseudocount: float = 1.0


MAXIMUM_LIKELIHOOD = HMMPrior(covariance_prior=0.0, covariance_pseudocount=0.0)
DEFAULT_PRIOR = HMMPrior()


class EMStats(NamedTuple):
    """E-step results under the parameters going in: log_likelihood = sum_b mask_b
    log p(y_b) (scalar), parameter_log_prior = log p(theta) up to a constant, objective =
    their sum."""

    log_likelihood: Array
    parameter_log_prior: Array
    objective: Array


# --------------------------------------------------------------------------- E-step


def _emission_stats(emission: Emission, obs: Array, weights: Array):
    """Sufficient statistics from state weights [B, T, K] (posterior x mask). Contractions
    run per sequence and the batch axis is then summed: on an Explicit 'data' mesh that
    sum is the cross-device reduction (an einsum contracting a sharded axis is refused)."""
    if isinstance(emission, CategoricalEmission):
        onehot = jax.nn.one_hot(obs, emission.logits.shape[-1], dtype=weights.dtype)
        return jnp.sum(jnp.einsum("btk,btv->bkv", weights, onehot), axis=0)
    if isinstance(emission, DiagGaussianEmission):
        diff = obs[..., None, :] - emission.means  # [B, T, K, D]
        w = weights[..., None]
        return jnp.sum(weights, (0, 1)), jnp.sum(w * diff, (0, 1)), jnp.sum(w * diff * diff, (0, 1))
    if isinstance(emission, FullGaussianEmission):
        diff = obs[..., None, :] - emission.means
        return (
            jnp.sum(weights, (0, 1)),
            jnp.sum(weights[..., None] * diff, (0, 1)),
            jnp.sum(jnp.einsum("btk,btkd,btke->bkde", weights, diff, diff), axis=0),
        )
    if isinstance(emission, GaussianMixtureEmission):
        joint = hmm_model._mixture_joint_log_prob(emission, obs)  # [B, T, K, M]
        w = (weights[..., None] * jax.nn.softmax(joint, axis=-1))[..., None]
        diff = obs[..., None, None, :] - emission.means  # [B, T, K, M, D]
        return (
            jnp.sum(w[..., 0], (0, 1)),
            jnp.sum(w * diff, (0, 1)),
            jnp.sum(w * diff * diff, (0, 1)),
        )
    raise TypeError(f"unknown emission type {type(emission).__name__}")


def _e_step(params: HMMParams, obs: Array, lengths: Array, mask: Array):
    lpi, la, ll = hmm_model._potentials(params, obs)
    smoothed = hmm_smoother(lpi, la, ll, lengths)
    weights = smoothed.posteriors * mask[:, None, None]
    initial = jnp.sum(weights[:, 0], axis=0)
    transition = jnp.sum(mask[:, None, None] * smoothed.transition_counts, axis=0)
    emission = _emission_stats(params.emission, obs, weights)
    return initial, transition, emission, jnp.sum(mask * smoothed.log_likelihood)


# --------------------------------------------------------------------------- M-step


def _dirichlet_map(logits: Array, counts: Array, concentration) -> Array:
    """MAP rows of a Dirichlet-categorical; structural zeros (-inf) and empty rows kept."""
    allowed = jnp.isfinite(logits)
    mass = jnp.where(allowed, jnp.maximum(counts + concentration - 1.0, 0.0), 0.0)
    total = jnp.sum(mass, axis=-1, keepdims=True)
    new = jnp.where(mass > 0, jnp.log(jnp.where(mass > 0, mass, 1.0)), -jnp.inf) - jnp.log(
        jnp.where(total > 0, total, 1.0)
    )
    return jnp.where(total > 0, new, jax.nn.log_softmax(logits, axis=-1))


def _gaussian_map_diag(means, log_scales, n, s1, s2, prior: HMMPrior):
    """Diagonal MAP from statistics centred on the old means; shapes [..., D], n [...]."""
    n = n[..., None]
    mean_den = prior.mean_weight + n
    shift = (prior.mean_weight * (prior.mean_prior - means) + s1) / jnp.where(
        mean_den > 0, mean_den, 1.0
    )
    shift = jnp.where(mean_den > 0, shift, 0.0)
    new_means = means + shift
    scatter = s2 - 2.0 * shift * s1 + n * shift * shift
    num = (
        prior.covariance_prior
        + jnp.maximum(scatter, 0.0)
        + prior.mean_weight * (new_means - prior.mean_prior) ** 2
    )
    den = n + prior.covariance_pseudocount
    ok = (den > 0) & (num > 0)
    var = num / jnp.where(ok, den, 1.0)
    new_log_scales = jnp.where(ok, 0.5 * jnp.log(jnp.where(ok, var, 1.0)), log_scales)
    return new_means, new_log_scales


def _gaussian_map_full(emission: FullGaussianEmission, n, s1, s2, prior: HMMPrior):
    d = emission.means.shape[-1]
    eye = jnp.eye(d, dtype=emission.means.dtype)
    mean_den = (prior.mean_weight + n)[:, None]
    shift = (prior.mean_weight * (prior.mean_prior - emission.means) + s1) / jnp.where(
        mean_den > 0, mean_den, 1.0
    )
    shift = jnp.where(mean_den > 0, shift, 0.0)
    means = emission.means + shift
    outer = lambda a, b: a[:, :, None] * b[:, None, :]
    scatter = s2 - outer(shift, s1) - outer(s1, shift) + n[:, None, None] * outer(shift, shift)
    dm = means - prior.mean_prior
    num = prior.covariance_prior * eye + scatter + prior.mean_weight * outer(dm, dm)
    den = (n + prior.covariance_pseudocount)[:, None, None]
    cov = num / jnp.where(den > 0, den, 1.0)
    cov = 0.5 * (cov + jnp.swapaxes(cov, -1, -2))
    chol = jnp.linalg.cholesky(cov)
    ok = (den[:, 0, 0] > 0) & jnp.all(jnp.isfinite(chol), axis=(-2, -1))
    raw = jnp.where(
        ok[:, None, None],
        hmm_model._raw_tril(jnp.where(ok[:, None, None], chol, eye)),
        emission.scale_tril,
    )
    return FullGaussianEmission(means, raw)


def _m_step_emission(emission: Emission, stats, prior: HMMPrior) -> Emission:
    if isinstance(emission, CategoricalEmission):
        return CategoricalEmission(
            _dirichlet_map(emission.logits, stats, prior.emission_concentration)
        )
    if isinstance(emission, DiagGaussianEmission):
        return DiagGaussianEmission(
            *_gaussian_map_diag(emission.means, emission.log_scales, *stats, prior)
        )
    if isinstance(emission, FullGaussianEmission):
        return _gaussian_map_full(emission, *stats, prior)
    if isinstance(emission, GaussianMixtureEmission):
        n, s1, s2 = stats
        logits = _dirichlet_map(emission.logits, n, prior.emission_concentration)
        means, log_scales = _gaussian_map_diag(
            emission.means, emission.log_scales, n, s1, s2, prior
        )
        return GaussianMixtureEmission(logits, means, log_scales)
    raise TypeError(f"unknown emission type {type(emission).__name__}")


# ------------------------------------------------------------------------ objective


def _dirichlet_log_prior(logits: Array, concentration) -> Array:
    logp = jax.nn.log_softmax(logits, axis=-1)
    allowed = jnp.isfinite(logp)
    return jnp.sum(jnp.where(allowed, (concentration - 1.0) * jnp.where(allowed, logp, 0.0), 0.0))


def _diag_log_prior(means, log_scales, prior: HMMPrior) -> Array:
    inv_var = jnp.exp(-2.0 * log_scales)
    quad = prior.covariance_prior + prior.mean_weight * (means - prior.mean_prior) ** 2
    return jnp.sum(-prior.covariance_pseudocount * log_scales - 0.5 * quad * inv_var)


def parameter_log_prior(params: HMMParams, prior: HMMPrior) -> Array:
    """log p(theta) up to an additive constant (module docstring), a scalar."""
    total = _dirichlet_log_prior(params.initial_logits, prior.initial_concentration)
    total += _dirichlet_log_prior(params.transition_logits, prior.transition_concentration)
    e = params.emission
    if isinstance(e, CategoricalEmission):
        return total + _dirichlet_log_prior(e.logits, prior.emission_concentration)
    if isinstance(e, DiagGaussianEmission):
        return total + _diag_log_prior(e.means, e.log_scales, prior)
    if isinstance(e, GaussianMixtureEmission):
        return (
            total
            + _dirichlet_log_prior(e.logits, prior.emission_concentration)
            + _diag_log_prior(e.means, e.log_scales, prior)
        )
    if isinstance(e, FullGaussianEmission):
        chol = hmm_model.scale_tril(e.scale_tril)
        d = e.means.shape[-1]
        dm = e.means - prior.mean_prior
        eye = jnp.eye(d, dtype=e.means.dtype)
        scale = prior.covariance_prior * eye + prior.mean_weight * dm[:, :, None] * dm[:, None, :]
        inv = jax.scipy.linalg.cho_solve((chol, True), scale)
        logdet = 2.0 * jnp.sum(jnp.diagonal(e.scale_tril, axis1=-2, axis2=-1), axis=-1)
        return total + jnp.sum(
            -0.5 * prior.covariance_pseudocount * logdet - 0.5 * jnp.trace(inv, axis1=-2, axis2=-1)
        )
    raise TypeError(f"unknown emission type {type(e).__name__}")


# ----------------------------------------------------------------------------- steps


def _mask(mask, lengths: Array, dtype) -> Array:
    """Per-sequence weights [B] in the model's dtype, ones when none are given."""
    return jnp.ones(jnp.shape(lengths), dtype) if mask is None else jnp.asarray(mask, dtype)


def _batch_mask(batch: dict, params: HMMParams) -> Array:
    return _mask(batch.get("mask"), batch["lengths"], params.transition_logits.dtype)


@jax.jit
def em_step(
    params: HMMParams, batch: dict, prior: HMMPrior = DEFAULT_PRIOR
) -> tuple[HMMParams, EMStats]:
    """One MAP Baum-Welch iteration on batch {'obs' [B, T(, D)], 'lengths' [B], optional
    'mask' [B]}. Returns (new params, EMStats of the params going in). Inputs are not
    validated (jit); obs must be finite also on padding (`validate_sequences` zeroes it)."""
    stats = _e_step(params, batch["obs"], batch["lengths"], _batch_mask(batch, params))
    return _m_step(params, stats, prior)


@jax.jit
def em_step_buckets(
    params: HMMParams, batches: tuple[dict, ...], prior: HMMPrior = DEFAULT_PRIOR
) -> tuple[HMMParams, EMStats]:
    """`em_step` on the union of several batches that differ in padded length T (sequences
    bucketed by length, so short ones are not padded to the longest and the forward-backward
    and emission work scale with the real frames): the E-step statistics of every batch are
    summed, then one M-step. Same batch format and results as `em_step` on the union."""
    stats = [_e_step(params, b["obs"], b["lengths"], _batch_mask(b, params)) for b in batches]
    return _m_step(params, jax.tree.map(lambda *parts: sum(parts), *stats), prior)


def _m_step(params: HMMParams, stats, prior: HMMPrior) -> tuple[HMMParams, EMStats]:
    initial, transition, emission_stats, loglik = stats
    new = HMMParams(
        _dirichlet_map(params.initial_logits, initial, prior.initial_concentration),
        _dirichlet_map(params.transition_logits, transition, prior.transition_concentration),
        _m_step_emission(params.emission, emission_stats, prior),
    )
    lp = parameter_log_prior(params, prior)
    return new, EMStats(loglik, lp, loglik + lp)


def _em_loop(
    params: HMMParams,
    obs: Array,
    lengths: Array,
    mask: Array,
    max_iter: Array,
    tol: Array,
    prior: HMMPrior,
    capacity: int,
) -> tuple[HMMParams, EMStats, Array]:
    """Up to max_iter <= capacity EM steps (all traced but capacity), stopping after the M-step
    of the first iteration whose objective gained less than tol over the previous one
    (hmmlearn's ConvergenceMonitor). Returns (params, EMStats of the params going into each
    step [capacity], NaN past the iterations run, iterations run)."""
    batch = {"obs": obs, "lengths": lengths, "mask": mask}
    dtype = params.transition_logits.dtype
    empty = EMStats(*(jnp.full((capacity,), jnp.nan, dtype) for _ in EMStats._fields))

    def running(carry):
        i, _, _, _, converged = carry
        return (i < max_iter) & ~converged

    def iteration(carry):
        i, p, previous, history, _ = carry
        p, stats = em_step(p, batch, prior)
        stats = EMStats(*(jnp.asarray(v, dtype) for v in stats))
        history = EMStats(*(h.at[i].set(v) for h, v in zip(history, stats)))
        return i + 1, p, stats.objective, history, stats.objective - previous < tol

    start = (
        jnp.zeros((), jnp.int32),
        params,
        jnp.full((), -jnp.inf, dtype),
        empty,
        jnp.zeros((), bool),
    )
    iterations, params, _, history, _ = jax.lax.while_loop(running, iteration, start)
    return params, history, iterations


@functools.partial(jax.jit, static_argnames=("capacity",))
def _em_program(params, obs, lengths, mask, max_iter, tol, prior, capacity):
    return _em_loop(params, obs, lengths, mask, max_iter, tol, prior, capacity)


def iteration_capacity(num_iters: int) -> int:
    # The history buffer's length is a shape: bucketed, so most iteration counts share it.
    return compilation.bucket_size(num_iters, minimum=128)


def fit_em(
    params: HMMParams,
    x,
    *,
    num_iters: int,
    tol: float = -np.inf,
    prior: HMMPrior = DEFAULT_PRIOR,
    mask=None,
) -> tuple[HMMParams, EMStats]:
    """Up to `num_iters` EM steps from `params` on validated sequences x (Sequences or obs
    [B, T(, D)]) with optional sequence weights mask [B] (e.g. one class of a labelled set),
    stopping once an iteration's objective gain falls below `tol` (default: never). One
    compiled while loop: another num_iters or tol reuses it. Returns (params, EMStats before
    each step, [iterations run])."""
    checks.check_count("num_iters", num_iters)
    x = hmm_model.as_sequences(x)
    obs, lengths = hmm_model.validate_sequences(params, x.obs, x.lengths)
    mask = _mask(mask, lengths, params.transition_logits.dtype)
    params, history, iterations = _em_program(
        params, obs, lengths, mask, num_iters, tol, prior, iteration_capacity(num_iters)
    )
    return params, jax.tree.map(lambda h: h[: int(iterations)], history)


# ----------------------------------------------------------------------------- starts


def _frame_weights(lengths: Array, num_steps: int, mask: Array) -> Array:
    return (jnp.arange(num_steps)[None, :] < lengths[:, None]) * mask[:, None]


def _weighted_moments(frames: Array, resp: Array, floor: Array):
    """Means and variances [K, D] of frames [N, D] under responsibilities [N, K]."""
    n = jnp.sum(resp, axis=0)[:, None]
    means = resp.T @ frames / jnp.maximum(n, 1e-12)
    var = resp.T @ (frames * frames) / jnp.maximum(n, 1e-12) - means * means
    return means, jnp.maximum(var, floor)


@functools.partial(
    jax.jit, static_argnames=("num_states", "emission", "num_components", "left_to_right")
)
def init_gaussian_hmm(
    key: Array,
    obs: Array,
    lengths: Array,
    num_states: int,
    emission: str = "diag",
    num_components: int = 1,
    left_to_right: bool = False,
    mask: Array | None = None,
) -> HMMParams:
    """A Gaussian HMM start from data obs [B, T, D] (validated, padding zeroed), lengths [B].

    emission: 'diag' | 'full' | 'mixture' (diagonal, `num_components` per state).
    Ergodic: k-means means, cluster variances, uniform initial/transition probabilities.
    left_to_right: uniform segmentation, start in state 0, stay 0.6 / advance 0.4."""
    b, t, d = obs.shape
    mask = jnp.ones((b,), obs.dtype) if mask is None else mask
    weights = _frame_weights(lengths, t, mask).reshape(-1)
    frames = obs.reshape(-1, d)
    global_var = (
        jnp.sum(weights[:, None] * frames**2, 0) / jnp.sum(weights)
        - (jnp.sum(weights[:, None] * frames, 0) / jnp.sum(weights)) ** 2
    )
    floor = 1e-3 * jnp.maximum(global_var, 1e-6)
    k_centres, k_jitter = jax.random.split(key)
    if left_to_right:
        seg = jnp.minimum(jnp.arange(t)[None, :] * num_states // lengths[:, None], num_states - 1)
        resp = jax.nn.one_hot(seg.reshape(-1), num_states, dtype=obs.dtype) * weights[:, None]
        pi, a = hmm_model.left_to_right_transitions(num_states)
        with jax.ensure_compile_time_eval():
            init_logits = jnp.log(jnp.asarray(pi, obs.dtype))
            trans_logits = jnp.log(jnp.asarray(a, obs.dtype))
    else:
        centres = kmeans_lib.kmeans(k_centres, frames, num_states, weights)
        resp = kmeans_lib.hard_assign(frames, centres) * weights[:, None]
        init_logits = jnp.zeros((num_states,), obs.dtype)
        trans_logits = jnp.zeros((num_states, num_states), obs.dtype)
    means, var = _weighted_moments(frames, resp, floor)
    if emission == "diag":
        em = DiagGaussianEmission(means, 0.5 * jnp.log(var))
    elif emission == "full":
        diagonal = jnp.sqrt(var)[..., None] * jnp.eye(d, dtype=obs.dtype)
        em = FullGaussianEmission(means, hmm_model._raw_tril(diagonal))
    elif emission == "mixture":
        noise = jax.random.normal(k_jitter, (num_states, num_components, d), obs.dtype)
        comp_means = means[:, None] + 0.5 * jnp.sqrt(var)[:, None] * noise
        em = GaussianMixtureEmission(
            jnp.zeros((num_states, num_components), obs.dtype),
            comp_means,
            jnp.broadcast_to(0.5 * jnp.log(var)[:, None], comp_means.shape),
        )
    else:
        raise ValueError(f"emission must be 'diag', 'full' or 'mixture', got {emission!r}")
    return HMMParams(init_logits, trans_logits, em)


def objective(
    params: HMMParams, obs: Array, lengths: Array, mask: Array, prior: HMMPrior = DEFAULT_PRIOR
) -> Array:
    """The MAP objective sum_b mask_b log p(x_b) + log p(theta), a scalar (no validation)."""
    loglik = hmm_log_likelihood(*hmm_model._potentials(params, obs), lengths)
    return jnp.sum(mask * loglik) + parameter_log_prior(params, prior)


# --------------------------------------------------------------------------- gradient


def fit_gradient(
    params: HMMParams,
    x,
    num_iters: int,
    optimizer: optax.GradientTransformation | None = None,
    prior: HMMPrior = DEFAULT_PRIOR,
    mask=None,
) -> tuple[HMMParams, Array]:
    """Gradient ascent on the MAP objective with optax (default Adam, lr 0.05), full batch.
    The loss is -(objective) / number of real frames. Returns (params, losses [num_iters])."""
    x = hmm_model.as_sequences(x)
    obs, lengths = hmm_model.validate_sequences(params, x.obs, x.lengths)
    mask = _mask(mask, lengths, params.transition_logits.dtype)
    optimizer = optax.adam(0.05) if optimizer is None else optimizer
    return _fit_gradient(params, obs, lengths, mask, num_iters, optimizer, prior)


@functools.partial(jax.jit, static_argnames=("num_iters", "optimizer"))
def _fit_gradient(params, obs, lengths, mask, num_iters, optimizer, prior):
    frames = jnp.sum(mask * lengths)

    def loss_fn(p):
        return -objective(p, obs, lengths, mask, prior) / frames

    def step(carry, _):
        p, opt_state = carry
        loss, grads = jax.value_and_grad(loss_fn)(p)
        updates, opt_state = optimizer.update(grads, opt_state, p)
        return (optax.apply_updates(p, updates), opt_state), loss

    (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)), length=num_iters)
    return params, losses


# ------------------------------------------------------------------------------ family

EMISSIONS = ("categorical", "diag", "full", "mixture")


def default_config() -> ml_collections.ConfigDict:
    """The model's whole config.

    num_states: K. emission: one of EMISSIONS; num_components: per state (mixture only);
    num_symbols: V for categorical emissions (0: the largest symbol + 1). left_to_right: a
    Bakis chain started from a uniform segmentation (else k-means for Gaussians, random
    sticky transitions and Dirichlet(1) emissions for symbols). num_iters: the most EM
    iterations; tol: stop after the first iteration whose objective (total log-likelihood
    plus the log prior) gained less than tol, as hmmlearn (a negative tol such as -inf:
    run num_iters). num_inits: starts, the best final objective kept. prior: HMMPrior's
    fields. class_conditional: one HMM per class of data["y"] and the class prior (a
    LabelledHMM); num_classes: C, 0 for the largest label + 1.
    """
    return ml_collections.ConfigDict(
        {
            "num_states": 2,
            "emission": "diag",
            "num_components": 1,
            "num_symbols": 0,
            "left_to_right": False,
            "num_iters": 100,
            "tol": 1e-2,
            "num_inits": 1,
            "prior": ml_collections.ConfigDict(HMMPrior()._asdict()),
            "class_conditional": False,
            "num_classes": 0,
        }
    )


def _check_config(config: ml_collections.ConfigDict) -> None:
    checks.check_count("config.num_states", config.num_states)
    checks.check_choice("config.emission", config.emission, EMISSIONS)
    checks.check_count("config.num_components", config.num_components)
    checks.check_count("config.num_symbols", config.num_symbols, minimum=0)
    checks.check_count("config.num_iters", config.num_iters)
    checks.check_count("config.num_inits", config.num_inits)
    checks.check_count("config.num_classes", config.num_classes, minimum=0)


def _sequences(x) -> tuple[np.ndarray, np.ndarray]:
    """(obs, lengths) as NumPy of data["x"]: Sequences or a bare obs array."""
    if isinstance(x, hmm_model.Sequences):
        return np.asarray(x.obs), np.asarray(x.lengths)
    obs = checks.check_array("x", x, nonempty=False, finite=False)
    if obs.ndim < 2:
        raise ValueError(f"x must be obs [B, T] or [B, T, D] (or Sequences), got {obs.shape}")
    return obs, np.full(obs.shape[:1], obs.shape[1])


def meta_from_data(data, config: ml_collections.ConfigDict) -> dict:
    """The sizes the data fix: num_symbols (categorical) or num_features, the emission kind,
    dtype and, class-conditional, num_classes."""
    _check_config(config)
    checks.check_mapping("data", data, ("x", "y") if config.class_conditional else ("x",))
    obs, lengths = _sequences(data["x"])
    meta = {"emission": config.emission}
    if config.emission == "categorical":
        if not np.issubdtype(obs.dtype, np.integer):
            raise ValueError(
                f"x must hold integer symbols for categorical emissions, got {obs.dtype}"
            )
        valid = np.arange(obs.shape[1])[None, :] < lengths[:, None]
        meta["num_symbols"] = int(config.num_symbols or obs[valid].max() + 1)
        meta["dtype"] = jnp.dtype(jax.dtypes.canonicalize_dtype(float)).name
    else:
        if obs.ndim != 3:
            raise ValueError(
                f"x must be obs [B, T, D] for {config.emission} emissions, got shape {obs.shape}"
            )
        meta["num_features"] = int(obs.shape[-1])
        meta["dtype"] = jnp.dtype(hmm_model.float_dtype(obs)).name
    if config.class_conditional:
        num_classes = config.num_classes
        if num_classes == 0:
            num_classes = (
                int(checks.check_array("y", data["y"], (obs.shape[0],), kinds=checks.INTEGER).max())
                + 1
            )
        meta["num_classes"] = int(num_classes)
    return meta


def _fresh_hmm(key: Array, config, meta) -> HMMParams:
    k, dtype = config.num_states, jnp.dtype(meta["dtype"])
    zeros = functools.partial(jnp.zeros, dtype=dtype)
    if config.emission == "categorical":
        emission = CategoricalEmission(zeros((k, meta["num_symbols"])))
    else:
        d = meta["num_features"]
        means = jax.random.normal(key, (k, d), dtype)
        if config.emission == "diag":
            emission = DiagGaussianEmission(means, zeros((k, d)))
        elif config.emission == "full":
            emission = FullGaussianEmission(means, zeros((k, d, d)))
        else:
            m = config.num_components
            emission = GaussianMixtureEmission(
                zeros((k, m)), jax.random.normal(key, (k, m, d), dtype), zeros((k, m, d))
            )
    return HMMParams(zeros((k,)), zeros((k, k)), emission)


def init(
    key: Array, config: ml_collections.ConfigDict, meta
) -> "HMMParams | hmm_model.LabelledHMM":
    """A fresh model of the structure a fit gives: uniform probabilities, standard normal
    means and unit scales (per class, with a uniform class prior, when class-conditional)."""
    _check_config(config)
    if not config.class_conditional:
        return _fresh_hmm(key, config, meta)
    c = meta["num_classes"]
    hmms = jax.vmap(lambda k: _fresh_hmm(k, config, meta))(jax.random.split(key, c))
    return hmm_model.LabelledHMM(jnp.full((c,), -np.log(c), meta["dtype"]), hmms)


def init_categorical_hmm(
    key: Array, num_states: int, num_symbols: int, left_to_right: bool = False, dtype=jnp.float32
) -> HMMParams:
    """A random start for symbols: sticky random transitions (0.8 I + 0.2 Dirichlet(1)
    rows; or a Bakis chain when left_to_right), uniform initial state, Dirichlet(1) rows."""
    k_a, k_b = jax.random.split(key)
    b = jax.random.dirichlet(k_b, jnp.ones(num_symbols, dtype), (num_states,))
    if left_to_right:
        pi, a = hmm_model.left_to_right_transitions(num_states)
        with jax.ensure_compile_time_eval(), np.errstate(divide="ignore"):
            init_logits, trans_logits = (
                jnp.asarray(np.log(pi), dtype),
                jnp.asarray(np.log(a), dtype),
            )
    else:
        sticky = jax.random.dirichlet(k_a, jnp.ones(num_states, dtype), (num_states,))
        init_logits = jnp.zeros((num_states,), dtype)
        trans_logits = jnp.log(0.8 * jnp.eye(num_states, dtype=dtype) + 0.2 * sticky)
    return HMMParams(init_logits, trans_logits, CategoricalEmission(jnp.log(b)))


def _start(
    key, obs, lengths, mask, *, num_states, emission, num_components, num_symbols, left_to_right
) -> HMMParams:
    if emission == "categorical":
        return init_categorical_hmm(key, num_states, num_symbols, left_to_right, mask.dtype)
    return init_gaussian_hmm(
        key, obs, lengths, num_states, emission, num_components, left_to_right, mask
    )


_STATIC = ("num_states", "emission", "num_components", "num_symbols", "left_to_right", "capacity")


@functools.partial(jax.jit, static_argnames=_STATIC)
def _fit_program(
    key,
    start_index,
    obs,
    lengths,
    class_masks,
    init,
    max_iter,
    tol,
    prior,
    *,
    num_states,
    emission,
    num_components,
    num_symbols,
    left_to_right,
    capacity,
):
    """Start number `start_index` of every class (from fold_in(key, start_index) split over
    the classes, unless `init` [C, ...]), then `_em_loop`, vmapped over the class masks
    [C, B]. Every number is traced."""
    keys = jax.random.split(jax.random.fold_in(key, start_index), class_masks.shape[0])

    def one(k, mask, start):
        if start is None:
            start = _start(
                k,
                obs,
                lengths,
                mask,
                num_states=num_states,
                emission=emission,
                num_components=num_components,
                num_symbols=num_symbols,
                left_to_right=left_to_right,
            )
        return _em_loop(start, obs, lengths, mask, max_iter, tol, prior, capacity)

    return jax.vmap(one)(keys, class_masks, init)


def _padded(obs: np.ndarray, lengths: np.ndarray, dtype):
    """obs and lengths padded to bucketed sizes (compilation.bucket_size of B and T, so nearby
    data sizes share one compiled fit): padded sequences have length 1, zero frames and,
    through the masks the caller builds, no weight."""
    b, t = obs.shape[:2]
    rows, steps = compilation.bucket_size(b, minimum=8), compilation.bucket_size(t, minimum=16)
    padded = np.zeros((rows, steps, *obs.shape[2:]), dtype)
    padded[:b, :t] = obs
    padded_lengths = np.ones(rows, np.int32)
    padded_lengths[:b] = lengths
    return padded, padded_lengths


def _converged(objective: np.ndarray, iterations: np.ndarray, tol: float) -> np.ndarray:
    """Whether the last iteration run gained less than tol: objective [C, capacity]."""
    rows = np.arange(objective.shape[0])
    last = objective[rows, np.maximum(iterations - 1, 0)]
    previous = objective[rows, np.maximum(iterations - 2, 0)]
    return (iterations >= 2) & (last - previous < tol)


def _pick(better: np.ndarray, new, old):
    """Per class [C]: the new start's leaf where it is better, else the old one's."""
    return np.where(better.reshape(-1, *[1] * (np.ndim(new) - 1)), new, old)


def fit(
    key: Array,
    data,
    config: ml_collections.ConfigDict,
    init: "HMMParams | hmm_model.LabelledHMM | None" = None,
):
    """Fits an HMM to data["x"] (Sequences or obs [B, T(, D)]; sequence weights data["mask"]
    [B], optional), or with config.class_conditional one HMM per class of data["y"] [B] and
    the class prior (a LabelledHMM).

    config: `default_config()`. Start i draws from fold_in(key, i), or is `init` (then
    config.num_inits must be 1). One compiled while loop per start, on sequences padded to
    bucketed B and T: another size within a bucket, num_iters, tol, prior or key reuses it.
    history: "objective" and "log_likelihood" (total over the sequences) before each M-step
    [iterations run] of the best start, "num_iters" the iterations run, "converged" whether
    EM stopped on tol; class-conditional: per class ([C, most iterations], NaN past a class's
    own), and "class_count" [C].
    """
    meta = meta_from_data(data, config)
    labelled = config.class_conditional
    if not labelled and "y" in data:
        raise ValueError(
            "data has 'y' but config.class_conditional is False: set it to fit one "
            "HMM per class, or leave 'y' out"
        )
    want = hmm_model.LabelledHMM if labelled else HMMParams
    if init is not None and not isinstance(init, want):
        raise TypeError(f"init must be a {want.__name__}, got {type(init).__name__}")
    if init is not None and config.num_inits != 1:
        raise ValueError(
            f"config.num_inits must be 1 with init (every start would be init), "
            f"got {config.num_inits}"
        )
    obs, lengths = _sequences(data["x"])
    probe = (
        _fresh_hmm(jax.random.key(0), config, meta) if init is None else hmm_model._one_hmm(init)
    )
    hmm_model.check_params(probe, "init")
    obs, lengths = hmm_model.validate_sequences_host(probe, obs, lengths)
    num = obs.shape[0]
    mask = (
        np.ones(num)
        if data.get("mask") is None
        else checks.check_array("mask", data["mask"], (num,), nonnegative=True)
    )
    dtype = jnp.dtype(meta["dtype"])
    obs, lengths = _padded(obs, lengths, obs.dtype)
    if labelled:
        c = meta["num_classes"]
        y = hmm_model._check_labels(hmm_model.LabelledHMM(jnp.zeros(c), None), data["y"], num)
        class_masks = np.zeros((c, len(lengths)), dtype)
        class_masks[:, :num] = (y[None, :] == np.arange(c)[:, None]) * mask
    else:
        class_masks = np.zeros((1, len(lengths)), dtype)
        class_masks[0, :num] = mask
    starts = None
    if init is not None:
        starts = init.hmms if labelled else jax.tree.map(lambda leaf: leaf[None], init)
    prior = HMMPrior(**{f: jnp.asarray(v, dtype) for f, v in config.prior.to_dict().items()})
    best = None
    for start in range(config.num_inits):
        params, history, iterations = jax.device_get(
            _fit_program(
                key,
                start,
                obs,
                lengths,
                class_masks,
                starts,
                config.num_iters,
                jnp.asarray(config.tol, dtype),
                prior,
                num_states=config.num_states,
                emission=config.emission,
                num_components=config.num_components,
                num_symbols=meta.get("num_symbols", 0),
                left_to_right=config.left_to_right,
                capacity=iteration_capacity(config.num_iters),
            )
        )
        final = history.objective[np.arange(len(iterations)), iterations - 1]
        final = np.where(np.isfinite(final), final, -np.inf)
        if best is None:
            best = params, history, iterations, final
            continue
        pick = functools.partial(_pick, final > best[3])
        best = (
            jax.tree.map(pick, params, best[0]),
            jax.tree.map(pick, history, best[1]),
            pick(iterations, best[2]),
            np.maximum(final, best[3]),
        )
    params, history, iterations, _ = best
    params = jax.tree.map(jnp.asarray, params)
    most = int(iterations.max())
    out = {
        "objective": history.objective[:, :most],
        "log_likelihood": history.log_likelihood[:, :most],
        "num_iters": iterations,
        "converged": _converged(history.objective, iterations, config.tol),
    }
    if not labelled:
        return jax.tree.map(lambda leaf: leaf[0], params), {k: v[0] for k, v in out.items()}
    counts = class_masks.sum(1)
    log_prior = jnp.asarray(np.log(counts) - np.log(counts.sum()), dtype)
    return hmm_model.LabelledHMM(log_prior, params), {**out, "class_count": counts}
