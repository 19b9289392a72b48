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
from genjax_lab.inference.hmm import hmm_log_likelihood, hmm_smoother_with_passes
from genjax_lab.models.hmm import model as hmm_model
from genjax_lab.models.hmm.model import (
    COVARIANCE_TYPES,
    MIXTURES,
    CategoricalEmission,
    DiagGaussianEmission,
    Emission,
    FullGaussianEmission,
    HMMParams,
    MultinomialEmission,
    PoissonEmission,
    SphericalGaussianEmission,
    TiedGaussianEmission,
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
    if isinstance(emission, (PoissonEmission, MultinomialEmission)):
        counts = jnp.sum(jnp.einsum("btk,btd->bkd", weights, obs), axis=0)
        return jnp.sum(weights, (0, 1)), counts
    if isinstance(emission, (DiagGaussianEmission, SphericalGaussianEmission)):
        diff = obs[..., None, :] - emission.means  # [B, T, K, D]
        w = weights[..., None]
        return jnp.sum(weights, (0, 1)), jnp.sum(w * diff, (0, 1)), jnp.sum(w * diff * diff, (0, 1))
    if isinstance(emission, (FullGaussianEmission, TiedGaussianEmission)):
        diff = obs[..., None, :] - emission.means
        return (
            jnp.sum(weights, (0, 1)),
            jnp.sum(weights[..., None] * diff, (0, 1)),
            jnp.sum(jnp.einsum("btk,btkd,btke->bkde", weights, diff, diff), axis=0),
        )
    if isinstance(emission, MIXTURES):
        joint = hmm_model._mixture_joint_log_prob(emission, obs)  # [B, T, K, M]
        w = (weights[..., None] * jax.nn.softmax(joint, axis=-1))[..., None]
        diff = obs[..., None, None, :] - emission.means  # [B, T, K, M, D]
        if COVARIANCE_TYPES[type(emission)] in ("full", "tied"):
            outer = jnp.einsum("btkm,btkmd,btkme->bkmde", w[..., 0], diff, diff)
            return jnp.sum(w[..., 0], (0, 1)), jnp.sum(w * diff, (0, 1)), jnp.sum(outer, axis=0)
        return (
            jnp.sum(w[..., 0], (0, 1)),
            jnp.sum(w * diff, (0, 1)),
            jnp.sum(w * diff * diff, (0, 1)),
        )
    raise TypeError(f"unknown emission type {type(emission).__name__}")


def _e_step(params: HMMParams, obs: Array, lengths: Array, mask: Array, passes: str = "auto"):
    """(statistics, exact): the smoother on `passes` (inference.hmm.PASSES); exact is False
    only where passes="scaled" was not exact, and the statistics are then not to be used."""
    lpi, la, ll = hmm_model._potentials(params, obs)
    smoothed, exact = hmm_smoother_with_passes(lpi, la, ll, lengths, passes=passes)
    weights = smoothed.posteriors * mask[:, None, None]
    initial = jnp.sum(weights[:, 0], axis=0)
    transition = jnp.sum(mask[:, None, None] * smoothed.transition_counts, axis=0)
    emission = _emission_stats(params.emission, obs, weights)
    return (initial, transition, emission, jnp.sum(mask * smoothed.log_likelihood)), exact


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


def _mean_shift(means, n, s1, prior: HMMPrior, learn_means: bool):
    """(new means, their shift from the old) for n [..., 1]; frozen means do not move, so
    the covariances are then re-estimated around the old ones (as hmmlearn)."""
    if not learn_means:
        return means, jnp.zeros_like(means)
    mean_den = prior.mean_weight + n
    shift = (prior.mean_weight * (prior.mean_prior - means) + s1) / jnp.where(
        mean_den > 0, mean_den, 1.0
    )
    shift = jnp.where(mean_den > 0, shift, 0.0)
    return means + shift, shift


def _shared(prior: HMMPrior, count: int) -> HMMPrior:
    """The covariance prior split over `count` components that share one covariance (tied):
    summed over them it is counted once, as hmmlearn's tied update."""
    return prior._replace(
        covariance_prior=prior.covariance_prior / count,
        covariance_pseudocount=prior.covariance_pseudocount / count,
    )


def _gaussian_map_diag(
    means, log_scales, n, s1, s2, prior: HMMPrior, spherical: bool = False, learn_means=True
):
    """Diagonal MAP from statistics centred on the old means; shapes [..., D], n [...].
    spherical: one variance per component, the mean of its diagonal MAP (log_scales [...])."""
    n = n[..., None]
    new_means, shift = _mean_shift(means, n, s1, prior, learn_means)
    scatter = s2 - 2.0 * shift * s1 + n * shift * shift
    num = (
        prior.covariance_prior
        + jnp.maximum(scatter, 0.0)
        + prior.mean_weight * (new_means - prior.mean_prior) ** 2
    )
    den = n + prior.covariance_pseudocount
    if spherical:
        num, den = jnp.mean(num, axis=-1), den[..., 0]
    ok = (den > 0) & (num > 0)
    var = num / jnp.where(ok, den, 1.0)
    new_log_scales = jnp.where(ok, 0.5 * jnp.log(jnp.where(ok, var, 1.0)), log_scales)
    return new_means, new_log_scales


def _gaussian_map_full(
    means, raw, n, s1, s2, prior: HMMPrior, tied: bool = False, learn_means: bool = True
):
    """Full-covariance MAP: means [..., D], raw Cholesky factors [..., D, D], n [...].
    tied: one covariance over the last component axis (raw [..., D, D] without it), from the
    summed statistics; pass the prior `_shared` over that axis."""
    d = means.shape[-1]
    eye = jnp.eye(d, dtype=means.dtype)
    means, shift = _mean_shift(means, n[..., None], s1, prior, learn_means)
    outer = lambda a, b: a[..., :, None] * b[..., None, :]
    scatter = s2 - outer(shift, s1) - outer(s1, shift) + n[..., None, None] * outer(shift, shift)
    dm = means - prior.mean_prior
    num = prior.covariance_prior * eye + scatter + prior.mean_weight * outer(dm, dm)
    den = (n + prior.covariance_pseudocount)[..., None, None]
    if tied:
        num, den = jnp.sum(num, axis=-3), jnp.sum(den, axis=-3)
    cov = num / jnp.where(den > 0, den, 1.0)
    cov = 0.5 * (cov + jnp.swapaxes(cov, -1, -2))
    chol = jnp.linalg.cholesky(cov)
    ok = (den[..., 0, 0] > 0) & jnp.all(jnp.isfinite(chol), axis=(-2, -1))
    raw = jnp.where(
        ok[..., None, None],
        hmm_model._raw_tril(jnp.where(ok[..., None, None], chol, eye)),
        raw,
    )
    return means, raw


# hmmlearn's letters of `params` / `init_params`: start, transitions, means, covariances,
# emission probabilities, mixture weights, Poisson rates.
ALL_PARAMS = "stmcewl"
_FIELD_LETTERS = {"means": "m", "log_scales": "c", "scale_tril": "c", "log_rates": "l"}


def _field_letter(emission: Emission, field: str) -> str:
    if field == "logits":
        return "w" if isinstance(emission, MIXTURES) else "e"
    return _FIELD_LETTERS.get(field, "")


def _m_step_emission(
    emission: Emission, stats, prior: HMMPrior, learn: str = ALL_PARAMS
) -> Emission:
    new = _m_step_all(emission, stats, prior, "m" in learn)
    if all(letter in learn for letter in map(lambda f: _field_letter(emission, f), new._fields)):
        return new
    return type(emission)(
        *(
            fresh if _field_letter(emission, field) in learn else old
            for field, fresh, old in zip(new._fields, new, emission)
        )
    )


def _m_step_all(emission: Emission, stats, prior: HMMPrior, learn_means: bool) -> Emission:
    if isinstance(emission, CategoricalEmission):
        return CategoricalEmission(
            _dirichlet_map(emission.logits, stats, prior.emission_concentration)
        )
    if isinstance(emission, MultinomialEmission):
        logits = _dirichlet_map(emission.logits, stats[1], prior.emission_concentration)
        return MultinomialEmission(logits, emission.num_trials)
    if isinstance(emission, PoissonEmission):
        # Maximum likelihood (hmmlearn's PoissonHMM with its default prior): a state without
        # frames keeps its rates, and a rate of zero is floored to stay finite in log space.
        n, counts = stats
        tiny = jnp.finfo(counts.dtype).tiny
        rates = counts / jnp.where(n > 0, n, 1.0)[:, None]
        log_rates = jnp.log(jnp.maximum(rates, tiny))
        return PoissonEmission(jnp.where(n[:, None] > 0, log_rates, emission.log_rates))
    if isinstance(emission, DiagGaussianEmission):
        return DiagGaussianEmission(
            *_gaussian_map_diag(
                emission.means, emission.log_scales, *stats, prior, learn_means=learn_means
            )
        )
    if isinstance(emission, FullGaussianEmission):
        return FullGaussianEmission(
            *_gaussian_map_full(
                emission.means, emission.scale_tril, *stats, prior, learn_means=learn_means
            )
        )
    kind = COVARIANCE_TYPES[type(emission)]
    n, s1, s2 = stats
    head = ()
    if isinstance(emission, MIXTURES):
        head = (_dirichlet_map(emission.logits, n, prior.emission_concentration),)
    if kind in ("diag", "spherical"):
        moments = _gaussian_map_diag(
            emission.means, emission.log_scales, n, s1, s2, prior, kind == "spherical", learn_means
        )
    else:
        tied = kind == "tied"
        moments = _gaussian_map_full(
            emission.means,
            emission.scale_tril,
            n,
            s1,
            s2,
            _shared(prior, n.shape[-1]) if tied else prior,
            tied,
            learn_means,
        )
    return type(emission)(*head, *moments)


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
    if isinstance(e, (CategoricalEmission, MultinomialEmission)):
        return total + _dirichlet_log_prior(e.logits, prior.emission_concentration)
    if isinstance(e, PoissonEmission):
        return total  # maximum likelihood rates: a flat prior
    if isinstance(e, DiagGaussianEmission):
        return total + _diag_log_prior(e.means, e.log_scales, prior)
    if isinstance(e, FullGaussianEmission):
        return total + _full_log_prior(e.means, e.scale_tril, prior)
    if type(e) not in COVARIANCE_TYPES:
        raise TypeError(f"unknown emission type {type(e).__name__}")
    if isinstance(e, MIXTURES):
        total += _dirichlet_log_prior(e.logits, prior.emission_concentration)
    kind = COVARIANCE_TYPES[type(e)]
    means, scales = hmm_model.gaussian_components(e)
    if kind in ("diag", "spherical"):
        return total + _diag_log_prior(means, scales, prior)
    # Tied: the covariance prior counted once per shared covariance, as its M-step.
    shared = _shared(prior, means.shape[-2]) if kind == "tied" else prior
    return total + _full_log_prior(means, scales, shared)


def _full_log_prior(means, raw, prior: HMMPrior) -> Array:
    """The normal-inverse-Wishart log density (module docstring) of components means
    [..., D] with raw Cholesky factors [..., D, D], summed."""
    chol = hmm_model.scale_tril(raw)
    d = means.shape[-1]
    dm = means - prior.mean_prior
    eye = jnp.eye(d, dtype=means.dtype)
    scale = prior.covariance_prior * eye + prior.mean_weight * dm[..., :, None] * dm[..., None, :]
    inv = jax.scipy.linalg.cho_solve((chol, True), scale)
    logdet = 2.0 * jnp.sum(jnp.diagonal(raw, axis1=-2, axis2=-1), axis=-1)
    return jnp.sum(
        -0.5 * prior.covariance_pseudocount * logdet - 0.5 * jnp.trace(inv, axis1=-2, axis2=-1)
    )


# ----------------------------------------------------------------------------- steps


def _mask(mask, lengths: Array, dtype) -> Array:
    """Per-sequence weights [B] in the model's dtype, ones when none are given."""
    return jnp.ones(jnp.shape(lengths), dtype) if mask is None else jnp.asarray(mask, dtype)


def _batch_mask(batch: dict, params: HMMParams) -> Array:
    return _mask(batch.get("mask"), batch["lengths"], params.transition_logits.dtype)


@functools.partial(jax.jit, static_argnames=("learn",))
def em_step(
    params: HMMParams, batch: dict, prior: HMMPrior = DEFAULT_PRIOR, learn: str = ALL_PARAMS
) -> tuple[HMMParams, EMStats]:
    """One MAP Baum-Welch iteration on batch {'obs' [B, T(, D)], 'lengths' [B], optional
    'mask' [B]}. Returns (new params, EMStats of the params going in). Inputs are not
    validated (jit); obs must be finite also on padding (`validate_sequences` zeroes it).
    learn: hmmlearn's `params` letters (ALL_PARAMS); the others keep their values exactly."""
    stats, _ = _e_step(params, batch["obs"], batch["lengths"], _batch_mask(batch, params))
    return _m_step(params, stats, prior, learn)


@functools.partial(jax.jit, static_argnames=("learn",))
def em_step_buckets(
    params: HMMParams,
    batches: tuple[dict, ...],
    prior: HMMPrior = DEFAULT_PRIOR,
    learn: str = ALL_PARAMS,
) -> tuple[HMMParams, EMStats]:
    """`em_step` on the union of several batches that differ in padded length T (sequences
    bucketed by length, so short ones are not padded to the longest and the forward-backward
    and emission work scale with the real frames): the E-step statistics of every batch are
    summed, then one M-step. Same batch format and results as `em_step` on the union."""
    stats = [_e_step(params, b["obs"], b["lengths"], _batch_mask(b, params))[0] for b in batches]
    return _m_step(params, jax.tree.map(lambda *parts: sum(parts), *stats), prior, learn)


def _m_step(
    params: HMMParams, stats, prior: HMMPrior, learn: str = ALL_PARAMS
) -> tuple[HMMParams, EMStats]:
    initial, transition, emission_stats, loglik = stats
    new = HMMParams(
        _dirichlet_map(params.initial_logits, initial, prior.initial_concentration)
        if "s" in learn
        else params.initial_logits,
        _dirichlet_map(params.transition_logits, transition, prior.transition_concentration)
        if "t" in learn
        else params.transition_logits,
        _m_step_emission(params.emission, emission_stats, prior, learn),
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
    learn: str = ALL_PARAMS,
    passes: str = "auto",
) -> tuple[HMMParams, EMStats, Array, Array]:
    """Up to max_iter <= capacity EM steps (all traced but capacity), stopping after the M-step
    of the first iteration whose objective gained less than tol over the previous one
    (hmmlearn's ConvergenceMonitor). Returns (params, EMStats of the params going into each
    step [capacity], NaN past the iterations run, iterations run, exact). The E-steps run
    the smoother's `passes`; with "scaled" the loop stops at the first E-step that was not
    exact, with exact False: the results are then not to be used (rerun with "auto")."""
    mask = _mask(mask, lengths, params.transition_logits.dtype)
    dtype = params.transition_logits.dtype
    empty = EMStats(*(jnp.full((capacity,), jnp.nan, dtype) for _ in EMStats._fields))

    def running(carry):
        i, _, _, _, converged, exact = carry
        return (i < max_iter) & ~converged & exact

    def iteration(carry):
        i, p, previous, history, _, _ = carry
        stats, exact = _e_step(p, obs, lengths, mask, passes)
        p, stats = _m_step(p, stats, prior, learn)
        stats = EMStats(*(jnp.asarray(v, dtype) for v in stats))
        history = EMStats(*(h.at[i].set(v) for h, v in zip(history, stats)))
        return i + 1, p, stats.objective, history, stats.objective - previous < tol, exact

    start = (
        jnp.zeros((), jnp.int32),
        params,
        jnp.full((), -jnp.inf, dtype),
        empty,
        jnp.zeros((), bool),
        jnp.ones((), bool),
    )
    iterations, params, _, history, _, exact = jax.lax.while_loop(running, iteration, start)
    return params, history, iterations, exact


@functools.partial(jax.jit, static_argnames=("capacity", "learn"))
def _em_program(params, obs, lengths, mask, max_iter, tol, prior, capacity, learn):
    return _em_loop(params, obs, lengths, mask, max_iter, tol, prior, capacity, learn)[:3]


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
    learn: str = ALL_PARAMS,
) -> tuple[HMMParams, EMStats]:
    """Up to `num_iters` EM steps from `params` on validated sequences x (Sequences or obs
    [B, T(, D)]) with optional sequence weights mask [B] (e.g. one class of a labelled set),
    stopping once an iteration's objective gain falls below `tol` (default: never). One
    compiled while loop: another num_iters or tol reuses it. learn: the parameters EM
    updates, hmmlearn's `params` letters (ALL_PARAMS). Returns (params, EMStats before each
    step, [iterations run])."""
    checks.check_count("num_iters", num_iters)
    learn = check_letters("learn", learn)
    x = hmm_model.as_sequences(x)
    obs, lengths = hmm_model.validate_sequences(params, x.obs, x.lengths)
    mask = _mask(mask, lengths, params.transition_logits.dtype)
    params, history, iterations = _em_program(
        params, obs, lengths, mask, num_iters, tol, prior, iteration_capacity(num_iters), learn
    )
    return params, jax.tree.map(lambda h: h[: int(iterations)], history)


def check_letters(name: str, letters: str) -> str:
    """hmmlearn's parameter letters (a subset of ALL_PARAMS, any order), in canonical order
    so that equal sets share one compiled program. Raises ValueError naming `name`."""
    if not isinstance(letters, str) or set(letters) - set(ALL_PARAMS):
        raise ValueError(f"{name} must be letters of {ALL_PARAMS!r}, got {letters!r}")
    return "".join(letter for letter in ALL_PARAMS if letter in letters)


# ----------------------------------------------------------------------------- starts


def _frame_weights(lengths: Array, num_steps: int, mask: Array) -> Array:
    return (jnp.arange(num_steps)[None, :] < lengths[:, None]) * mask[:, None]


def _weighted_moments(frames: Array, resp: Array, floor: Array):
    """Means and variances [K, D] of frames [N, D] under responsibilities [N, K]."""
    n = jnp.sum(resp, axis=0)[:, None]
    means = resp.T @ frames / jnp.maximum(n, 1e-12)
    var = resp.T @ (frames * frames) / jnp.maximum(n, 1e-12) - means * means
    return means, jnp.maximum(var, floor)


def _data_start(key, obs, lengths, num_states, left_to_right, mask):
    """The shared data start: (initial logits, transition logits, state means and variances
    [K, D] of the frames, key for jitter). Ergodic: k-means clusters, uniform probabilities;
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
    return init_logits, trans_logits, means, var, k_jitter


GAUSSIAN_EMISSIONS = ("diag", "spherical", "full", "tied", "mixture")


@functools.partial(
    jax.jit,
    static_argnames=("num_states", "emission", "num_components", "left_to_right", "covariance"),
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
    covariance: str = "diag",
) -> HMMParams:
    """A Gaussian HMM start from data obs [B, T, D] (validated, padding zeroed), lengths [B].

    emission: one of GAUSSIAN_EMISSIONS ('mixture': `num_components` per state with
    `covariance` 'diag' | 'spherical' | 'full' | 'tied'). Ergodic: k-means means, cluster
    variances (spherical: their mean; tied: pooled over the states), uniform
    initial/transition probabilities. left_to_right: uniform segmentation, start in state 0,
    stay 0.6 / advance 0.4. Mixture components are jittered around their state's mean."""
    if emission not in GAUSSIAN_EMISSIONS:
        raise ValueError(f"emission must be one of {GAUSSIAN_EMISSIONS}, got {emission!r}")
    init_logits, trans_logits, means, var, k_jitter = _data_start(
        key, obs, lengths, num_states, left_to_right, mask
    )
    d = obs.shape[-1]
    kind = covariance if emission == "mixture" else emission
    if emission == "mixture":
        noise = jax.random.normal(k_jitter, (num_states, num_components, d), obs.dtype)
        comp_means = means[:, None] + 0.5 * jnp.sqrt(var)[:, None] * noise
        var = jnp.broadcast_to(var[:, None], comp_means.shape)
        means = comp_means
    if kind == "diag":
        leaf = 0.5 * jnp.log(var)
    elif kind == "spherical":
        leaf = 0.5 * jnp.log(jnp.mean(var, axis=-1))
    elif kind == "full":
        leaf = hmm_model._raw_tril(jnp.sqrt(var)[..., None] * jnp.eye(d, dtype=obs.dtype))
    elif kind == "tied":
        # One covariance per state's components (mixture) or for all states: the mean of
        # the cluster variances over the axis that shares it.
        pooled = jnp.mean(var, axis=-2)
        leaf = hmm_model._raw_tril(jnp.sqrt(pooled)[..., None] * jnp.eye(d, dtype=obs.dtype))
    else:
        raise ValueError(f"covariance must be 'diag', 'spherical', 'full' or 'tied', got {kind!r}")
    if emission == "mixture":
        logits = jnp.zeros((num_states, num_components), obs.dtype)
        em = hmm_model._MIXTURES[kind](logits, means, leaf)
    else:
        em = hmm_model._GAUSSIANS[kind](means, leaf)
    return HMMParams(init_logits, trans_logits, em)


@functools.partial(jax.jit, static_argnames=("num_states", "emission", "left_to_right"))
def init_count_hmm(
    key: Array,
    obs: Array,
    lengths: Array,
    num_states: int,
    emission: str = "poisson",
    num_trials: Array | int = 1,
    left_to_right: bool = False,
    mask: Array | None = None,
) -> HMMParams:
    """A start for count frames obs [B, T, D] (validated): the k-means (or left-to-right
    segment) clusters' mean counts as Poisson rates, or normalised (plus one half per
    outcome, so no probability starts at zero) as multinomial probabilities."""
    init_logits, trans_logits, means, _, _ = _data_start(
        key, obs, lengths, num_states, left_to_right, mask
    )
    if emission == "poisson":
        floor = 1e-3 * jnp.maximum(jnp.max(means), 1.0)
        return HMMParams(
            init_logits, trans_logits, PoissonEmission(jnp.log(jnp.maximum(means, floor)))
        )
    if emission == "multinomial":
        logits = jnp.log(jnp.maximum(means, 0.0) + 0.5)
        logits = logits - jax.nn.logsumexp(logits, axis=-1, keepdims=True)
        emission_params = MultinomialEmission(logits, jnp.asarray(num_trials, jnp.int32))
        return HMMParams(init_logits, trans_logits, emission_params)
    raise ValueError(f"emission must be 'poisson' or 'multinomial', got {emission!r}")


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

EMISSIONS = (
    "categorical",
    "diag",
    "full",
    "mixture",
    "spherical",
    "tied",
    "poisson",
    "multinomial",
)
COVARIANCES = ("diag", "spherical", "full", "tied")


def default_config() -> ml_collections.ConfigDict:
    """The model's whole config.

    num_states: K. emission: one of EMISSIONS (Gaussians: hmmlearn's covariance types;
    poisson and multinomial: count frames [D]); num_components: per state (mixture only),
    with mixture_covariance one of COVARIANCES; num_symbols: V for categorical emissions
    (0: the largest symbol + 1); num_trials: a multinomial frame's total (0: from the data,
    where every frame must have the same). params: the parameters EM learns, hmmlearn's
    letters (ALL_PARAMS: s start, t transitions, m means, c covariances, e emission
    probabilities, w mixture weights, l Poisson rates); the others keep their start values
    exactly. init_params: with `init`, the parameters still drawn from the data start
    (hmmlearn's init_params; without init every parameter is). left_to_right: a
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
            "mixture_covariance": "diag",
            "num_trials": 0,
            "params": ALL_PARAMS,
            "init_params": "",
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
    checks.check_choice("config.mixture_covariance", config.mixture_covariance, COVARIANCES)
    checks.check_count("config.num_trials", config.num_trials, minimum=0)
    check_letters("config.params", config.params)
    check_letters("config.init_params", config.init_params)
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
    if config.emission == "multinomial":
        meta["num_trials"] = config.num_trials or _data_num_trials(obs, lengths)
    if config.class_conditional:
        num_classes = config.num_classes
        if num_classes == 0:
            num_classes = (
                int(checks.check_array("y", data["y"], (obs.shape[0],), kinds=checks.INTEGER).max())
                + 1
            )
        meta["num_classes"] = int(num_classes)
    return meta


def _data_num_trials(obs: np.ndarray, lengths: np.ndarray) -> int:
    valid = np.arange(obs.shape[1])[None, :] < lengths[:, None]
    sums = np.unique(obs[valid].sum(-1))
    if sums.size != 1 or sums[0] < 1 or sums[0] != int(sums[0]):
        raise ValueError(
            f"x: every frame of a multinomial fit must sum to the same number of trials >= 1, "
            f"got sums {sums[:5].tolist()} (or set config.num_trials)"
        )
    return int(sums[0])


def _fresh_hmm(key: Array, config, meta) -> HMMParams:
    k, dtype = config.num_states, jnp.dtype(meta["dtype"])
    zeros = functools.partial(jnp.zeros, dtype=dtype)
    if config.emission == "categorical":
        emission = CategoricalEmission(zeros((k, meta["num_symbols"])))
    elif config.emission == "poisson":
        emission = PoissonEmission(zeros((k, meta["num_features"])))
    elif config.emission == "multinomial":
        trials = jnp.asarray(meta["num_trials"], jnp.int32)
        emission = MultinomialEmission(zeros((k, meta["num_features"])), trials)
    else:
        d = meta["num_features"]
        means = jax.random.normal(key, (k, d), dtype)
        if config.emission == "diag":
            emission = DiagGaussianEmission(means, zeros((k, d)))
        elif config.emission == "full":
            emission = FullGaussianEmission(means, zeros((k, d, d)))
        elif config.emission == "spherical":
            emission = SphericalGaussianEmission(means, zeros((k,)))
        elif config.emission == "tied":
            emission = TiedGaussianEmission(means, zeros((d, d)))
        else:
            m = config.num_components
            emission = hmm_model._MIXTURES[config.mixture_covariance](
                zeros((k, m)),
                jax.random.normal(key, (k, m, d), dtype),
                zeros(
                    {"diag": (k, m, d), "spherical": (k, m), "full": (k, m, d, d)}.get(
                        config.mixture_covariance, (k, d, d)
                    )
                ),
            )
    return HMMParams(zeros((k,)), zeros((k, k)), emission)


def _host_structure(config: ml_collections.ConfigDict, meta) -> HMMParams:
    """`_fresh_hmm`'s structure as host zeros, for the host-side input checks: built on the
    device it would compile a program per leaf."""
    shapes = jax.eval_shape(lambda: _fresh_hmm(jax.random.key(0), config, meta))
    params = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
    if config.emission == "multinomial":  # data, read by the count checks
        trials = np.asarray(meta["num_trials"], np.int32)
        params = params._replace(emission=params.emission._replace(num_trials=trials))
    return params


def init(
    key: Array, config: ml_collections.ConfigDict, meta
) -> "HMMParams | hmm_model.LabelledHMM":
    """A fresh model of the structure a fit gives: uniform probabilities, standard normal
    means and unit scales (per class, with a uniform class prior, when class-conditional).
    Keys missing from config take default_config()'s values, so a model saved before a key
    existed still loads."""
    complete = default_config()
    complete.update(config.to_dict())
    config = complete
    _check_config(config)
    if not config.class_conditional:
        return _fresh_hmm(key, config, meta)
    c = meta["num_classes"]
    hmms = jax.vmap(lambda k: _fresh_hmm(k, config, meta))(jax.random.split(key, c))
    return hmm_model.LabelledHMM(jnp.full((c,), -np.log(c), meta["dtype"]), hmms)


def _flat_dirichlet_rows(key: Array, rows: int, width: int, dtype) -> Array:
    """Rows [rows, width] drawn from Dirichlet(1, ..., 1), the uniform distribution on the
    simplex, as i.i.d. Exp(1) draws divided by their row sums: that is exactly this
    distribution, and unlike jax.random.dirichlet it needs no gamma sampler, whose rejection
    loop was most of a small fit's compile time (a casino HMM: about 0.5 s of a 1.4 s first
    fit). The uniforms lie in [tiny, 1), so every draw is positive and so is every
    probability of a start."""
    uniform = jax.random.uniform(key, (rows, width), dtype, minval=jnp.finfo(dtype).tiny)
    draws = -jnp.log(uniform)
    return draws / jnp.sum(draws, axis=-1, keepdims=True)


def init_categorical_hmm(
    key: Array, num_states: int, num_symbols: int, left_to_right: bool = False, dtype=jnp.float32
) -> HMMParams:
    """A random start for symbols: sticky random transitions (0.8 I + 0.2 Dirichlet(1)
    rows; or a Bakis chain when left_to_right), uniform initial state, Dirichlet(1) rows."""
    k_a, k_b = jax.random.split(key)
    b = _flat_dirichlet_rows(k_b, num_states, num_symbols, dtype)
    if left_to_right:
        pi, a = hmm_model.left_to_right_transitions(num_states)
        with jax.ensure_compile_time_eval(), np.errstate(divide="ignore"):
            init_logits, trans_logits = (
                jnp.asarray(np.log(pi), dtype),
                jnp.asarray(np.log(a), dtype),
            )
    else:
        sticky = _flat_dirichlet_rows(k_a, num_states, num_states, dtype)
        init_logits = jnp.zeros((num_states,), dtype)
        trans_logits = jnp.log(0.8 * jnp.eye(num_states, dtype=dtype) + 0.2 * sticky)
    return HMMParams(init_logits, trans_logits, CategoricalEmission(jnp.log(b)))


def _start(
    key,
    obs,
    lengths,
    mask,
    *,
    num_states,
    emission,
    num_components,
    num_symbols,
    left_to_right,
    mixture_covariance="diag",
    num_trials=0,
) -> HMMParams:
    if emission == "categorical":
        return init_categorical_hmm(key, num_states, num_symbols, left_to_right, mask.dtype)
    if emission in ("poisson", "multinomial"):
        return init_count_hmm(
            key, obs, lengths, num_states, emission, num_trials, left_to_right, mask
        )
    return init_gaussian_hmm(
        key,
        obs,
        lengths,
        num_states,
        emission,
        num_components,
        left_to_right,
        mask,
        **({"covariance": mixture_covariance} if emission == "mixture" else {}),
    )


def _merge(init: HMMParams, start: HMMParams, letters: str) -> HMMParams:
    """`init` with the parameters named by hmmlearn's `letters` taken from `start`."""
    emission = type(init.emission)(
        *(
            new if _init_letter(init.emission, field) in letters else old
            for field, new, old in zip(init.emission._fields, start.emission, init.emission)
        )
    )
    return HMMParams(
        start.initial_logits if "s" in letters else init.initial_logits,
        start.transition_logits if "t" in letters else init.transition_logits,
        emission,
    )


def _init_letter(emission: Emission, field: str) -> str:
    # num_trials is data, not a learned parameter: never replaced.
    return _field_letter(emission, field) or "-"


_STATIC = (
    "num_states",
    "emission",
    "num_components",
    "num_symbols",
    "left_to_right",
    "capacity",
    "mixture_covariance",
    "num_trials",
    "learn",
    "init_params",
    "passes",
)


@compilation.size_tiered_jit(static_argnames=_STATIC)
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
    mixture_covariance="diag",
    num_trials=0,
    learn=ALL_PARAMS,
    init_params="",
    passes="auto",
):
    """Start number `start_index` of every class (from fold_in(key, start_index) split over
    the classes, unless `init` [C, ...]: then only its `init_params` come from that start),
    then `_em_loop` learning `learn` on the smoother's `passes`, for each class mask [C, B]
    in turn (a lax.map, as `model._over_classes` and for its reason: under vmap the
    smoother's choice of pass would run both every iteration). Every number is traced."""
    keys = jax.random.split(jax.random.fold_in(key, start_index), class_masks.shape[0])

    def one(k, mask, start):
        if start is None or init_params:
            fresh = _start(
                k,
                obs,
                lengths,
                mask,
                num_states=num_states,
                emission=emission,
                num_components=num_components,
                num_symbols=num_symbols,
                left_to_right=left_to_right,
                mixture_covariance=mixture_covariance,
                num_trials=num_trials,
            )
            start = fresh if start is None else _merge(start, fresh, init_params)
        return _em_loop(start, obs, lengths, mask, max_iter, tol, prior, capacity, learn, passes)

    return jax.lax.map(lambda per_class: one(*per_class), (keys, class_masks, init))


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
    config.num_inits must be 1, unless config.init_params redraws some of its parameters).
    One compiled while loop per start, on sequences padded to bucketed B and T: another size
    within a bucket, num_iters, tol, prior or key reuses it (compiled quickly, on
    compilation.SizeTieredJit's small tier, up to its size). history: "objective" and
    "log_likelihood" (total over the sequences) before each M-step [iterations run] of the
    best start, "num_iters" the iterations run, "converged" whether EM stopped on tol,
    "start_objectives" every start's final objective [num_inits] (the kept start has the
    largest); class-conditional: per class ([C, most iterations], NaN past a class's own;
    [C, num_inits]), and "class_count" [C].
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
    if init is not None and config.num_inits != 1 and not config.init_params:
        raise ValueError(
            f"config.num_inits must be 1 with init and no config.init_params (every start "
            f"would be init), got {config.num_inits}"
        )
    obs, lengths = _sequences(data["x"])
    if init is None:
        probe = _host_structure(config, meta)
    else:
        probe = hmm_model._one_hmm(init)
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
        y = hmm_model._check_labels(hmm_model.LabelledHMM(np.zeros(c), None), data["y"], num)
        class_masks = np.zeros((c, len(lengths)), dtype)
        class_masks[:, :num] = (y[None, :] == np.arange(c)[:, None]) * mask
    else:
        class_masks = np.zeros((1, len(lengths)), dtype)
        class_masks[0, :num] = mask
    starts = None
    if init is not None:
        starts = init.hmms if labelled else jax.tree.map(lambda leaf: leaf[None], init)
    # Host values throughout: each jnp conversion on the host would compile a program of its
    # own, several per fit (0.05-0.2 s each), where the fit itself is one.
    prior = HMMPrior(**{f: np.asarray(v, dtype) for f, v in config.prior.to_dict().items()})
    run = functools.partial(
        _fit_program,
        key,
        obs=obs,
        lengths=lengths,
        class_masks=class_masks,
        init=starts,
        max_iter=config.num_iters,
        tol=np.asarray(config.tol, dtype),
        prior=prior,
        num_states=config.num_states,
        emission=config.emission,
        num_components=config.num_components,
        num_symbols=meta.get("num_symbols", 0),
        left_to_right=config.left_to_right,
        capacity=iteration_capacity(config.num_iters),
        mixture_covariance=config.mixture_covariance,
        num_trials=meta.get("num_trials", 0),
        learn=check_letters("config.params", config.params),
        init_params=check_letters("config.init_params", config.init_params),
        problem_size=obs.size,
    )
    best, finals = None, []
    for start in range(config.num_inits):
        # One kind of smoother pass compiles in half the time of both (a first small fit is
        # mostly compilation): a left-to-right chain always takes the log-space passes, an
        # ergodic one the scaled passes, which say when they are not exact (a start or
        # M-step with a zero transition; an observation that the chain predicts its likely
        # states for with probability below 1e-20); then the start reruns on "auto", the
        # choice per iteration.
        params, history, iterations, exact = jax.device_get(
            run(start_index=start, passes="log" if config.left_to_right else "scaled")
        )
        if not exact.all():
            params, history, iterations, _ = jax.device_get(run(start_index=start, passes="auto"))
        final = history.objective[np.arange(len(iterations)), iterations - 1]
        final = np.where(np.isfinite(final), final, -np.inf)
        finals.append(final)
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
    most = int(iterations.max())
    out = {
        "objective": history.objective[:, :most],
        "log_likelihood": history.log_likelihood[:, :most],
        "num_iters": iterations,
        "converged": _converged(history.objective, iterations, config.tol),
        "start_objectives": np.stack(finals, axis=-1),
    }
    if not labelled:
        params = jax.tree.map(lambda leaf: leaf[0], params)
        return jax.device_put(params), {k: v[0] for k, v in out.items()}
    counts = class_masks.sum(1)
    log_prior = (np.log(counts) - np.log(counts.sum())).astype(dtype)
    labelled_hmm = hmm_model.LabelledHMM(log_prior, params)
    return jax.device_put(labelled_hmm), {**out, "class_count": counts}
