"""Fitting HMMs (genjax_lab.models.hmm): MAP Baum-Welch EM, k-means/segmental starts with
restarts, and gradient ascent on the marginal likelihood.

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

Starts: `kmeans_init` (Lloyd's k-means on all real frames; state variances are the cluster
variances) for ergodic models, and a uniform segmentation of every sequence for
left-to-right models (state k gets frames [k L / K, (k + 1) L / K)), the usual start for
speech. `fit_em_restarts` vmaps start + EM over several keys and keeps the fit with the
best MAP objective. `fit_gradient` maximises the same objective with optax instead.
"""
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import Array

from genjax_lab.inference.hmm import hmm_log_likelihood, hmm_smoother
from genjax_lab.models import hmm as hmm_model
from genjax_lab.models.hmm import (
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


class EMStats(NamedTuple):
    """E-step results under the parameters going in: log_likelihood = sum_b mask_b
    log p(y_b) (scalar), log_prior = log p(theta) up to a constant, objective = their sum."""

    log_likelihood: Array
    log_prior: Array
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
        return jnp.sum(w[..., 0], (0, 1)), jnp.sum(w * diff, (0, 1)), jnp.sum(w * diff * diff, (0, 1))
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
    shift = (prior.mean_weight * (prior.mean_prior - means) + s1) / jnp.where(mean_den > 0, mean_den, 1.0)
    shift = jnp.where(mean_den > 0, shift, 0.0)
    new_means = means + shift
    scatter = s2 - 2.0 * shift * s1 + n * shift * shift
    num = prior.covariance_prior + jnp.maximum(scatter, 0.0) + prior.mean_weight * (new_means - prior.mean_prior) ** 2
    den = n + prior.covariance_pseudocount
    ok = (den > 0) & (num > 0)
    var = num / jnp.where(ok, den, 1.0)
    new_log_scales = jnp.where(ok, 0.5 * jnp.log(jnp.where(ok, var, 1.0)), log_scales)
    return new_means, new_log_scales


def _gaussian_map_full(emission: FullGaussianEmission, n, s1, s2, prior: HMMPrior):
    d = emission.means.shape[-1]
    eye = jnp.eye(d, dtype=emission.means.dtype)
    mean_den = (prior.mean_weight + n)[:, None]
    shift = (prior.mean_weight * (prior.mean_prior - emission.means) + s1) / jnp.where(mean_den > 0, mean_den, 1.0)
    shift = jnp.where(mean_den > 0, shift, 0.0)
    means = emission.means + shift
    outer = lambda a, b: a[:, :, None] * b[:, None, :]  # noqa: E731
    scatter = s2 - outer(shift, s1) - outer(s1, shift) + n[:, None, None] * outer(shift, shift)
    dm = means - prior.mean_prior
    num = prior.covariance_prior * eye + scatter + prior.mean_weight * outer(dm, dm)
    den = (n + prior.covariance_pseudocount)[:, None, None]
    cov = num / jnp.where(den > 0, den, 1.0)
    cov = 0.5 * (cov + jnp.swapaxes(cov, -1, -2))
    chol = jnp.linalg.cholesky(cov)
    ok = (den[:, 0, 0] > 0) & jnp.all(jnp.isfinite(chol), axis=(-2, -1))
    raw = jnp.where(ok[:, None, None], hmm_model._raw_tril(jnp.where(ok[:, None, None], chol, eye)), emission.scale_tril)
    return FullGaussianEmission(means, raw)


def _m_step_emission(emission: Emission, stats, prior: HMMPrior) -> Emission:
    if isinstance(emission, CategoricalEmission):
        return CategoricalEmission(_dirichlet_map(emission.logits, stats, prior.emission_concentration))
    if isinstance(emission, DiagGaussianEmission):
        return DiagGaussianEmission(*_gaussian_map_diag(emission.means, emission.log_scales, *stats, prior))
    if isinstance(emission, FullGaussianEmission):
        return _gaussian_map_full(emission, *stats, prior)
    if isinstance(emission, GaussianMixtureEmission):
        n, s1, s2 = stats
        logits = _dirichlet_map(emission.logits, n, prior.emission_concentration)
        means, log_scales = _gaussian_map_diag(emission.means, emission.log_scales, n, s1, s2, prior)
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


def log_prior(params: HMMParams, prior: HMMPrior) -> Array:
    """log p(theta) up to an additive constant (module docstring), a scalar."""
    total = _dirichlet_log_prior(params.initial_logits, prior.initial_concentration)
    total += _dirichlet_log_prior(params.transition_logits, prior.transition_concentration)
    e = params.emission
    if isinstance(e, CategoricalEmission):
        return total + _dirichlet_log_prior(e.logits, prior.emission_concentration)
    if isinstance(e, DiagGaussianEmission):
        return total + _diag_log_prior(e.means, e.log_scales, prior)
    if isinstance(e, GaussianMixtureEmission):
        return total + _dirichlet_log_prior(e.logits, prior.emission_concentration) + _diag_log_prior(
            e.means, e.log_scales, prior
        )
    if isinstance(e, FullGaussianEmission):
        chol = hmm_model.scale_tril(e.scale_tril)
        d = e.means.shape[-1]
        dm = e.means - prior.mean_prior
        eye = jnp.eye(d, dtype=e.means.dtype)
        scale = prior.covariance_prior * eye + prior.mean_weight * dm[:, :, None] * dm[:, None, :]
        inv = jax.scipy.linalg.cho_solve((chol, True), scale)
        logdet = 2.0 * jnp.sum(jnp.diagonal(e.scale_tril, axis1=-2, axis2=-1), axis=-1)
        return total + jnp.sum(-0.5 * prior.covariance_pseudocount * logdet - 0.5 * jnp.trace(inv, axis1=-2, axis2=-1))
    raise TypeError(f"unknown emission type {type(e).__name__}")


# ----------------------------------------------------------------------------- steps


def _mask(mask, lengths: Array, dtype) -> Array:
    """Per-sequence weights [B] in the model's dtype, ones when none are given."""
    return jnp.ones(jnp.shape(lengths), dtype) if mask is None else jnp.asarray(mask, dtype)


def _batch_mask(batch: dict, params: HMMParams) -> Array:
    return _mask(batch.get("mask"), batch["lengths"], params.transition_logits.dtype)


@jax.jit
def em_step(params: HMMParams, batch: dict, prior: HMMPrior = HMMPrior()) -> tuple[HMMParams, EMStats]:
    """One MAP Baum-Welch iteration on batch {'obs' [B, T(, D)], 'lengths' [B], optional
    'mask' [B]}. Returns (new params, EMStats of the params going in). Inputs are not
    validated (jit); obs must be finite also on padding (`validate_sequences` zeroes it)."""
    stats = _e_step(params, batch["obs"], batch["lengths"], _batch_mask(batch, params))
    return _m_step(params, stats, prior)


@jax.jit
def em_step_buckets(params: HMMParams, batches: tuple[dict, ...], prior: HMMPrior = HMMPrior()) -> tuple[HMMParams, EMStats]:
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
    lp = log_prior(params, prior)
    return new, EMStats(loglik, lp, loglik + lp)


@functools.partial(jax.jit, static_argnames=("num_iters",))
def _fit_em(params, obs, lengths, mask, num_iters, prior):
    batch = {"obs": obs, "lengths": lengths, "mask": mask}
    return jax.lax.scan(lambda p, _: em_step(p, batch, prior), params, length=num_iters)


def fit_em(
    params: HMMParams, obs, lengths, num_iters: int, prior: HMMPrior = HMMPrior(), mask=None
) -> tuple[HMMParams, EMStats]:
    """`num_iters` EM steps from `params` on validated obs [B, T(, D)], lengths [B] and an
    optional mask [B] (weights per sequence, e.g. to fit one class of a labelled set).
    Returns (params, EMStats with a leading [num_iters] axis, before each step)."""
    obs, lengths = hmm_model.validate_sequences(params, obs, lengths)
    mask = _mask(mask, lengths, params.transition_logits.dtype)
    return _fit_em(params, obs, lengths, mask, num_iters, prior)


# ----------------------------------------------------------------------------- starts


def _frame_weights(lengths: Array, num_steps: int, mask: Array) -> Array:
    return (jnp.arange(num_steps)[None, :] < lengths[:, None]) * mask[:, None]


def _weighted_moments(frames: Array, resp: Array, floor: Array):
    """Means and variances [K, D] of frames [N, D] under responsibilities [N, K]."""
    n = jnp.sum(resp, axis=0)[:, None]
    means = resp.T @ frames / jnp.maximum(n, 1e-12)
    var = resp.T @ (frames * frames) / jnp.maximum(n, 1e-12) - means * means
    return means, jnp.maximum(var, floor)


def kmeans(key: Array, frames: Array, weights: Array, num_clusters: int, num_iters: int = 20) -> Array:
    """Lloyd's k-means on weighted frames [N, D] (weight 0 = ignored), k-means++ seeding by
    one weighted draw per centre. Returns centres [num_clusters, D]."""

    def seed(centres, inputs):
        i, k = inputs
        d2 = jnp.min(jnp.sum((frames[:, None] - centres[None]) ** 2, -1) + jnp.where(jnp.arange(num_clusters) < i, 0.0, jnp.inf), axis=1)
        d2 = jnp.where(i == 0, 1.0, d2)
        idx = jax.random.categorical(k, jnp.log(jnp.maximum(d2 * weights, 0.0)))
        return centres.at[i].set(frames[idx]), None

    centres = jnp.zeros((num_clusters, frames.shape[-1]), frames.dtype)
    keys = jax.random.split(key, num_clusters)
    centres, _ = jax.lax.scan(seed, centres, (jnp.arange(num_clusters), keys))

    def lloyd(centres, _):
        assign = jnp.argmin(jnp.sum((frames[:, None] - centres[None]) ** 2, -1), axis=1)
        resp = jax.nn.one_hot(assign, num_clusters, dtype=frames.dtype) * weights[:, None]
        n = jnp.sum(resp, axis=0)[:, None]
        new = resp.T @ frames / jnp.maximum(n, 1e-12)
        return jnp.where(n > 0, new, centres), None

    centres, _ = jax.lax.scan(lloyd, centres, None, length=num_iters)
    return centres


@functools.partial(jax.jit, static_argnames=("num_states", "emission", "num_components", "left_to_right"))
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
    global_var = jnp.sum(weights[:, None] * frames**2, 0) / jnp.sum(weights) - (
        jnp.sum(weights[:, None] * frames, 0) / jnp.sum(weights)
    ) ** 2
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
        centres = kmeans(k_centres, frames, weights, num_states)
        assign = jnp.argmin(jnp.sum((frames[:, None] - centres[None]) ** 2, -1), axis=1)
        resp = jax.nn.one_hot(assign, num_states, dtype=obs.dtype) * weights[:, None]
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
            jnp.zeros((num_states, num_components), obs.dtype), comp_means,
            jnp.broadcast_to(0.5 * jnp.log(var)[:, None], comp_means.shape),
        )
    else:
        raise ValueError(f"emission must be 'diag', 'full' or 'mixture', got {emission!r}")
    return HMMParams(init_logits, trans_logits, em)


def fit_em_restarts(
    key: Array,
    obs,
    lengths,
    num_states: int,
    num_iters: int,
    num_restarts: int = 4,
    emission: str = "diag",
    num_components: int = 1,
    left_to_right: bool = False,
    prior: HMMPrior = HMMPrior(),
    mask=None,
) -> tuple[HMMParams, Array]:
    """Start (`init_gaussian_hmm` with its own key) + EM for `num_restarts` keys at once
    (vmap); returns the params with the best final MAP objective and all final objectives
    [num_restarts]. With left_to_right the starts differ only for mixtures (jitter)."""
    probe = HMMParams(None, None, DiagGaussianEmission(jnp.zeros((1, jnp.shape(obs)[-1])), None))
    obs, lengths = hmm_model.validate_sequences(probe, obs, lengths)
    mask = _mask(mask, lengths, obs.dtype)
    return _fit_restarts(key, obs, lengths, mask, num_states, num_iters, num_restarts, emission,
                         num_components, left_to_right, prior)


@functools.partial(jax.jit, static_argnums=(4, 5, 6, 7, 8, 9))
def _fit_restarts(key, obs, lengths, mask, num_states, num_iters, num_restarts, emission,
                  num_components, left_to_right, prior):
    def one(k):
        start = init_gaussian_hmm(k, obs, lengths, num_states, emission, num_components, left_to_right, mask)
        params, _ = _fit_em(start, obs, lengths, mask, num_iters, prior)
        final = _objective(params, obs, lengths, mask, prior)
        return params, final

    params, finals = jax.vmap(one)(jax.random.split(key, num_restarts))
    best = jnp.argmax(jnp.where(jnp.isfinite(finals), finals, -jnp.inf))
    return jax.tree.map(lambda x: x[best], params), finals


def _objective(params, obs, lengths, mask, prior):
    loglik = hmm_log_likelihood(*hmm_model._potentials(params, obs), lengths)
    return jnp.sum(mask * loglik) + log_prior(params, prior)


# --------------------------------------------------------------------------- gradient


def fit_gradient(
    params: HMMParams,
    obs,
    lengths,
    num_steps: int,
    optimizer: optax.GradientTransformation | None = None,
    prior: HMMPrior = HMMPrior(),
    mask=None,
) -> tuple[HMMParams, Array]:
    """Gradient ascent on the MAP objective with optax (default Adam, lr 0.05), full batch.
    The loss is -(objective) / number of real frames. Returns (params, losses [num_steps])."""
    obs, lengths = hmm_model.validate_sequences(params, obs, lengths)
    mask = _mask(mask, lengths, params.transition_logits.dtype)
    optimizer = optax.adam(0.05) if optimizer is None else optimizer
    return _fit_gradient(params, obs, lengths, mask, num_steps, optimizer, prior)


@functools.partial(jax.jit, static_argnames=("num_steps", "optimizer"))
def _fit_gradient(params, obs, lengths, mask, num_steps, optimizer, prior):
    frames = jnp.sum(mask * lengths)

    def loss_fn(p):
        return -_objective(p, obs, lengths, mask, prior) / frames

    def step(carry, _):
        p, opt_state = carry
        loss, grads = jax.value_and_grad(loss_fn)(p)
        updates, opt_state = optimizer.update(grads, opt_state, p)
        return (optax.apply_updates(p, updates), opt_state), loss

    (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)), length=num_steps)
    return params, losses


# ------------------------------------------------------------------------- classifier


def fit_classifier(
    hmms: HMMParams, obs, lengths, labels, num_iters: int, prior: HMMPrior = HMMPrior()
) -> tuple[hmm_model.HMMClassifier, EMStats]:
    """EM for every class HMM at once: hmms stacked [C, ...] (starts), obs [B, T(, D)],
    lengths [B], labels [B] in [0, C). Class c is fitted on the sequences with label c (a
    mask, vmapped over classes); the class prior is the label frequency. Returns the
    classifier and per-class EMStats [C, num_iters]."""
    first = jax.tree.map(lambda x: x[0], hmms)
    obs, lengths = hmm_model.validate_sequences(first, obs, lengths)
    c = hmms.initial_logits.shape[0]
    labels = jnp.asarray(labels)
    if labels.shape != lengths.shape or jnp.any((labels < 0) | (labels >= c)):
        raise ValueError(f"labels must be [B] = {lengths.shape} integers in [0, {c})")
    masks = jax.nn.one_hot(labels, c, dtype=hmms.transition_logits.dtype).T  # [C, B]
    fit = functools.partial(_fit_em, num_iters=num_iters, prior=prior)
    fitted, stats = jax.vmap(fit, in_axes=(0, None, None, 0))(hmms, obs, lengths, masks)
    counts = jnp.sum(masks, axis=1)
    return hmm_model.HMMClassifier(fitted, jnp.log(counts / jnp.sum(counts))), stats
