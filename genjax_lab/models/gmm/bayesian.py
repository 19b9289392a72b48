"""Variational Bayesian Gaussian mixtures: scikit-learn's BayesianGaussianMixture, which
chooses the number of components itself (surplus components get a vanishing weight).

Model (Bishop 2006, 10.2; Blei & Jordan 2006 for the Dirichlet process), K components at most:
  weights  pi ~ Dirichlet(gamma_0, ..., gamma_0) (weight_concentration_prior_type
           'dirichlet_distribution'), or the stick-breaking v_k ~ Beta(1, gamma_0),
           pi_k = v_k prod_{j<k} (1 - v_j) of a truncated Dirichlet process ('dirichlet_process');
  Lambda_k ~ Wishart(nu_0, Psi_0^-1), mu_k | Lambda_k ~ N(m_0, (beta_0 Lambda_k)^-1);
  z_n ~ Categorical(pi), x_n | z_n = k ~ N(mu_k, Lambda_k^-1).
Mean-field q(z) q(pi) q(mu, Lambda) is fitted by coordinate ascent, each iteration an E-step
(responsibilities r_nk ∝ exp(E[log pi_k] + E[log N(x_n | mu_k, Lambda_k)])) then the conjugate
updates from N_k, xbar_k, S_k (scikit-learn's `_estimate_gaussian_parameters`, reg_covar
added): the Dirichlet's gamma_0 + N_k, or the sticks' (1 + N_k, gamma_0 + sum_{j>k} N_j);
beta_k = beta_0 + N_k; m_k = (beta_0 m_0 + N_k xbar_k) / beta_k; nu_k = nu_0 + N_k; and
W_k^-1 = Psi_0 + N_k S_k + N_k beta_0 / beta_k (xbar_k - m_0)(xbar_k - m_0)^T. Precisions are
stored as scikit-learn stores them, normalised: `precision_cholesky` is the Cholesky factor of
E[Lambda_k] = nu_k W_k (its covariances_ are W_k^-1 / nu_k); diag, spherical and tied are
scikit-learn's variants of the same updates (tied: one nu and one W, diag and spherical: the
Wishart's E[log |Lambda|] formula, as scikit-learn). Priors left at 0 / () in the config take
scikit-learn's defaults: gamma_0 = 1 / K, beta_0 = 1, m_0 the data mean, nu_0 = D, Psi_0 the
data covariance (unbiased; diag: the variances, spherical: their mean).

The objective (`history["lower_bound"]`) is scikit-learn's lower_bound_: its simplification
of the ELBO right after the M-step, with the terms that are constant for a fixed data set and
prior dropped; coordinate ascent does not decrease it (tested), and only its changes are used.
`fit` runs as one compiled `lax.while_loop` (gmm.em.converging_loop; max_iter and tol traced)
and stops, as scikit-learn, after the first iteration whose lower bound changed by less than
tol.

Scoring, and what each number is:
  log_prob(params, x)         exact log density of the expected-parameter mixture: weights
                              E[pi] (scikit-learn's weights_), means m_k, covariances
                              E[Lambda_k]^-1 (its covariances_); `expected_mixture` is that GMM.
  log_prob_bound(key, params, x)  scikit-learn's score_samples: logsumexp_k (E[log pi_k] +
                              E[log N(x | mu_k, Lambda_k)]), which by Jensen is below the log
                              posterior predictive density log E_q[p(x | pi, mu, Lambda)].
  posterior(params, x)        q(z_n = k), scikit-learn's predict_proba; `predict` its argmax.
  sample(key, params, num)    draws from the expected-parameter mixture (scikit-learn's sample).

A fit is saved as family "bayesian_gmm": genjax_lab.saving.save(workdir, "bayesian_gmm",
config, meta_from_data(data, config), params); saving.load(workdir) restores it through `init`.
"""

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import struct
from jax.scipy.special import betaln, digamma, gammaln

from genjax_lab.core import checks, compilation
from genjax_lab.inference import kmeans as kmeans_lib
from genjax_lab.models.gmm import model as gmm_model
from genjax_lab.models.gmm.em import (
    _PER_COMPONENT_CENTRES,
    EMStats,
    _moments,
    _statistics,
    _weighted_means,
    converging_loop,
)
from genjax_lab.models.gmm.family import (
    _converged,
    _feature_meta,
    _finite,
    _fit_starts,
)
from genjax_lab.models.gmm.model import COVARIANCE_TYPES, GMM, _cholesky_of_inverse

WEIGHT_PRIOR_TYPES = ("dirichlet_process", "dirichlet_distribution")


def default_config() -> ml_collections.ConfigDict:
    """The model's whole config, scikit-learn's BayesianGaussianMixture arguments.

    num_components: K, the most components. covariance_type: one of COVARIANCE_TYPES.
    weight_concentration_prior_type: one of WEIGHT_PRIOR_TYPES. weight_concentration_prior
    (gamma_0; 0: 1 / K), mean_precision_prior (beta_0; 0: 1), mean_prior (m_0 [D]; (): the
    data mean), degrees_of_freedom_prior (nu_0 > D - 1; 0: D), covariance_prior (Psi_0: full
    and tied [D, D], diag [D], spherical a 1-tuple; (): from the data). num_iters: max_iter;
    tol: stop after the first iteration whose lower bound changed by less than tol.
    reg_covar: added to each S_k's diagonal. num_inits: k-means starts, the highest final
    lower bound kept; kmeans_iters: Lloyd iterations of each start.
    """
    return ml_collections.ConfigDict(
        {
            "num_components": 10,
            "covariance_type": "full",
            "weight_concentration_prior_type": "dirichlet_process",
            "weight_concentration_prior": 0.0,
            "mean_precision_prior": 0.0,
            "mean_prior": (),
            "degrees_of_freedom_prior": 0.0,
            "covariance_prior": (),
            "num_iters": 100,
            "tol": 1e-3,
            "reg_covar": 1e-6,
            "num_inits": 1,
            "kmeans_iters": 20,
        }
    )


def _check_config(config: ml_collections.ConfigDict) -> None:
    checks.check_count("config.num_components", config.num_components)
    checks.check_choice("config.covariance_type", config.covariance_type, COVARIANCE_TYPES)
    checks.check_choice(
        "config.weight_concentration_prior_type",
        config.weight_concentration_prior_type,
        WEIGHT_PRIOR_TYPES,
    )
    for name in ("weight_concentration_prior", "mean_precision_prior"):
        checks.check_number(f"config.{name}", config[name], low=0.0)
    checks.check_number("config.degrees_of_freedom_prior", config.degrees_of_freedom_prior, low=0)
    checks.check_count("config.num_iters", config.num_iters)
    checks.check_number("config.tol", config.tol, low=0.0)
    checks.check_number("config.reg_covar", config.reg_covar, low=0.0)
    checks.check_count("config.num_inits", config.num_inits)
    checks.check_count("config.kmeans_iters", config.kmeans_iters, minimum=0)


# ----------------------------------------------------------------------------- parameters
@struct.dataclass
class Prior:
    """weight_concentration gamma_0, mean_precision beta_0, degrees_of_freedom nu_0 (scalars),
    mean m_0 [D], covariance Psi_0 (full and tied [D, D], diag [D], spherical scalar)."""

    weight_concentration: jax.Array
    mean_precision: jax.Array
    mean: jax.Array
    degrees_of_freedom: jax.Array
    covariance: jax.Array


@struct.dataclass
class BayesianGMM:
    """The variational posterior q(pi) q(mu, Lambda), in scikit-learn's attributes.

    weight_concentration: the sticks' Beta parameters [2, K] (dirichlet_process) or the
    Dirichlet's [K]; mean_precision beta_k [K]; means m_k [K, D]; degrees_of_freedom nu_k [K]
    (tied: a scalar); precision_cholesky: the Cholesky factor of E[Lambda_k], shaped as a
    GMM's; prior: the `Prior` the updates use.
    """

    weight_concentration: jax.Array
    mean_precision: jax.Array
    means: jax.Array
    degrees_of_freedom: jax.Array
    precision_cholesky: jax.Array
    prior: Prior
    covariance_type: str = struct.field(pytree_node=False, default="full")
    weight_prior_type: str = struct.field(pytree_node=False, default="dirichlet_process")

    @property
    def num_components(self) -> int:
        return self.means.shape[-2]

    @property
    def num_features(self) -> int:
        return self.means.shape[-1]


def weights(params: BayesianGMM) -> jax.Array:
    """E[pi] [K] (scikit-learn's weights_): the sticks' E[v_k] prod_{j<k} E[1 - v_j], or the
    Dirichlet's mean."""
    concentration = params.weight_concentration
    if params.weight_prior_type == "dirichlet_distribution":
        return concentration / concentration.sum()
    total = concentration[0] + concentration[1]
    rest = jnp.concatenate([jnp.ones(1, total.dtype), jnp.cumprod(concentration[1] / total)[:-1]])
    stick = concentration[0] / total * rest
    return stick / stick.sum()


def expected_mixture(params: BayesianGMM) -> GMM:
    """The GMM of the expected parameters: weights E[pi], means m_k, precisions E[Lambda_k]."""
    return GMM(weights(params), params.means, params.precision_cholesky, params.covariance_type)


def covariances(params: BayesianGMM) -> jax.Array:
    """E[Lambda_k]^-1 in scikit-learn's layout (its covariances_)."""
    return gmm_model.covariances(expected_mixture(params))


# ----------------------------------------------------------------------------- prior
def _config_array(name: str, value, shape: tuple[int, ...]) -> np.ndarray:
    array = (
        np.asarray(value, np.float64).reshape(shape) if np.size(value) == np.prod(shape) else None
    )
    if array is None:
        raise ValueError(f"config.{name} must hold {shape} values, got {value!r}")
    return array


def prior_from_data(
    x: jax.Array, config: ml_collections.ConfigDict, mask: jax.Array | None = None
) -> Prior:
    """The prior of `config`, its unset entries from the data x [N, D] (rows weighted by mask
    [N]) as scikit-learn's: gamma_0 = 1 / K, beta_0 = 1, m_0 the mean, nu_0 = D, Psi_0 the
    unbiased covariance (diag: variances; spherical: their mean)."""
    _check_config(config)
    x_np = checks.check_array("x", x, ("N", "D"), kinds=checks.FLOAT)
    n, d = x_np.shape
    w = np.ones(n) if mask is None else checks.check_array("mask", mask, (n,), nonnegative=True)
    w = w.astype(np.float64)
    total = w.sum()
    if total <= 1:
        raise ValueError(f"x needs more than one (unmasked) row for a prior, got {total}")
    mean = (w @ x_np) / total
    centred = x_np - mean
    cov = (centred * w[:, None]).T @ centred / (total - 1)
    kind = config.covariance_type
    empirical = {"full": cov, "tied": cov, "diag": np.diag(cov), "spherical": np.diag(cov).mean()}
    shapes = {"full": (d, d), "tied": (d, d), "diag": (d,), "spherical": ()}
    covariance = (
        empirical[kind]
        if not len(config.covariance_prior)
        else _config_array("covariance_prior", config.covariance_prior, shapes[kind])
    )
    nu_0 = config.degrees_of_freedom_prior or float(d)
    if nu_0 <= d - 1:
        raise ValueError(f"config.degrees_of_freedom_prior must be > D - 1 = {d - 1}, got {nu_0}")
    dtype = jax.dtypes.canonicalize_dtype(x_np.dtype)
    return Prior(
        *(
            jnp.asarray(value, dtype)
            for value in (
                config.weight_concentration_prior or 1.0 / config.num_components,
                config.mean_precision_prior or 1.0,
                mean
                if not len(config.mean_prior)
                else _config_array("mean_prior", config.mean_prior, (d,)),
                nu_0,
                covariance,
            )
        )
    )


# ----------------------------------------------------------------------------- updates
def _m_step(
    prior: Prior,
    x: jax.Array,
    resp: jax.Array,
    covariance_type: str,
    weight_prior_type: str,
    reg_covar,
) -> BayesianGMM:
    """The conjugate updates from mask-weighted responsibilities resp [N, K] (module doc)."""
    # Full and tied: two passes over the whole batch, the means, then moments about them.
    centers = _weighted_means(resp, x) if covariance_type in _PER_COMPONENT_CENTRES else prior.mean
    resp_sum, sum_x, sum_xx = _statistics(resp, x, centers, covariance_type)
    zero = jnp.zeros((), x.dtype)
    nk, offset, sk = _moments(
        EMStats(resp_sum, sum_x, sum_xx, zero, zero), covariance_type, reg_covar
    )
    diff = centers + offset - prior.mean  # xbar_k - m_0
    k = nk.shape[0]
    if weight_prior_type == "dirichlet_process":
        # Each stick's second parameter: gamma_0 + the mass of the components after it.
        after = jnp.concatenate([jnp.cumsum(nk[::-1])[-2::-1], jnp.zeros(1, nk.dtype)])
        concentration = jnp.stack([1.0 + nk, prior.weight_concentration + after])
    else:
        concentration = prior.weight_concentration + nk
    beta_0 = prior.mean_precision
    beta = beta_0 + nk
    means = prior.mean + nk[:, None] * diff / beta[:, None]
    shrink = beta_0 / beta  # [K]
    if covariance_type == "tied":
        nu = prior.degrees_of_freedom + nk.sum() / k
        spread = jnp.einsum("k,kd,ke->de", nk * shrink, diff, diff)
        cov = (prior.covariance + sk * nk.sum() / k + spread / k) / nu
    else:
        nu = prior.degrees_of_freedom + nk
        if covariance_type == "full":
            spread = (nk * shrink)[:, None, None] * diff[:, :, None] * diff[:, None, :]
            cov = (prior.covariance + nk[:, None, None] * sk + spread) / nu[:, None, None]
        elif covariance_type == "diag":
            cov = (prior.covariance + nk[:, None] * (sk + shrink[:, None] * diff**2)) / nu[:, None]
        else:
            cov = (prior.covariance + nk * (sk + shrink * jnp.mean(diff**2, axis=1))) / nu
    if covariance_type in ("full", "tied"):
        chol = _cholesky_of_inverse(cov)
    else:
        chol = 1.0 / jnp.sqrt(cov)
    return BayesianGMM(
        concentration, beta, means, nu, chol, prior, covariance_type, weight_prior_type
    )


def _expected_log_weights(params: BayesianGMM) -> jax.Array:
    """E[log pi_k] [K]."""
    concentration = params.weight_concentration
    if params.weight_prior_type == "dirichlet_distribution":
        return digamma(concentration) - digamma(concentration.sum())
    digamma_sum = digamma(concentration[0] + concentration[1])
    log_rest = digamma(concentration[1]) - digamma_sum
    before = jnp.concatenate([jnp.zeros(1, log_rest.dtype), jnp.cumsum(log_rest)[:-1]])
    return digamma(concentration[0]) - digamma_sum + before


def _expected_log_joint(params: BayesianGMM, x: jax.Array) -> jax.Array:
    """E[log pi_k + log N(x_n | mu_k, Lambda_k)] [N, K] (scikit-learn's weighted log prob)."""
    d = params.num_features
    nu = params.degrees_of_freedom
    # The stored precision is E[Lambda] = nu W: log N under it, less its log nu^(D/2), plus
    # E[log |Lambda|] / 2 and the mean's uncertainty -D / (2 beta_k).
    log_gauss = gmm_model.component_log_prob(expected_mixture(params), x) - 0.5 * d * jnp.log(nu)
    log_lambda = d * jnp.log(2.0) + jnp.sum(
        digamma(0.5 * (nu - jnp.arange(d, dtype=x.dtype)[:, None])), axis=0
    )
    log_prob = log_gauss + 0.5 * (log_lambda - d / params.mean_precision)
    return log_prob + _expected_log_weights(params)


def _log_det_cholesky(params: BayesianGMM) -> jax.Array:
    """log |P_k| per component (tied: one)."""
    chol, kind = params.precision_cholesky, params.covariance_type
    if kind in ("full", "tied"):
        return jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
    if kind == "diag":
        return jnp.sum(jnp.log(chol), axis=1)
    return params.num_features * jnp.log(chol)


def _lower_bound(params: BayesianGMM, entropy: jax.Array) -> jax.Array:
    """scikit-learn's lower_bound_ after the M-step; entropy: -sum_n sum_k r_nk log r_nk."""
    d = params.num_features
    nu = params.degrees_of_freedom
    log_det = _log_det_cholesky(params) - 0.5 * d * jnp.log(nu)
    # The Wishart's log normaliser without its log pi term.
    log_wishart = -(
        nu * log_det
        + nu * d * 0.5 * jnp.log(2.0)
        + jnp.sum(gammaln(0.5 * (nu - jnp.arange(d, dtype=nu.dtype)[:, None])), axis=0)
    )
    log_wishart = jnp.sum(log_wishart) * (params.num_components if jnp.ndim(nu) == 0 else 1)
    concentration = params.weight_concentration
    if params.weight_prior_type == "dirichlet_process":
        log_norm_weight = -jnp.sum(betaln(concentration[0], concentration[1]))
    else:
        log_norm_weight = gammaln(concentration.sum()) - jnp.sum(gammaln(concentration))
    return (
        entropy - log_wishart - log_norm_weight - 0.5 * d * jnp.sum(jnp.log(params.mean_precision))
    )


def _vb_step(
    params: BayesianGMM, x: jax.Array, mask: jax.Array, reg_covar
) -> tuple[BayesianGMM, jax.Array]:
    """One E-step and M-step: (new params, scikit-learn's lower bound after it)."""
    joint = _expected_log_joint(params, x)
    log_resp = joint - jax.nn.logsumexp(joint, axis=1, keepdims=True)
    resp = jnp.exp(log_resp) * mask[:, None]
    new = _m_step(
        params.prior, x, resp, params.covariance_type, params.weight_prior_type, reg_covar
    )
    entropy = -jnp.sum(jnp.where(resp > 0, resp * log_resp, 0.0))
    return new, _lower_bound(new, entropy)


def _check_responsibilities(x, resp, config, mask=None) -> None:
    _check_config(config)
    n, _ = checks.check_array("x", x, ("N", "D"), kinds=checks.FLOAT).shape
    checks.check_array(
        "resp", resp, (n, config.num_components), kinds=checks.FLOAT, nonnegative=True
    )
    if mask is not None:
        checks.check_array("mask", mask, (n,), nonnegative=True)


def from_responsibilities(
    x: jax.Array,
    resp: jax.Array,
    config: ml_collections.ConfigDict,
    mask: jax.Array | None = None,
    prior: Prior | None = None,
) -> BayesianGMM:
    """The posterior that responsibilities resp [N, K] of x [N, D] give (one M-step, as
    scikit-learn's `_initialize(X, resp)`): a start for `fit(..., init=)`. prior: default
    `prior_from_data(x, config, mask)`."""
    _check_responsibilities(x, resp, config, mask)
    prior = prior_from_data(x, config, mask) if prior is None else prior
    x = jnp.asarray(x)
    weights_ = jnp.ones(x.shape[:1], x.dtype) if mask is None else jnp.asarray(mask, x.dtype)
    return _initial(prior, x, jnp.asarray(resp, x.dtype) * weights_[:, None], config)


_m_step_program = jax.jit(_m_step, static_argnums=(3, 4))


def _initial(prior: Prior, x, resp, config) -> BayesianGMM:
    return _m_step_program(
        prior,
        x,
        resp,
        config.covariance_type,
        config.weight_concentration_prior_type,
        config.reg_covar,
    )


# ----------------------------------------------------------------------------- saving
def meta_from_data(data: Mapping[str, Any], config: ml_collections.ConfigDict) -> dict:
    """The sizes the data fix (genjax_lab.saving): num_features and dtype."""
    _check_config(config)
    checks.check_mapping("data", data, ("x",))
    return _feature_meta(data["x"])


def init(key: jax.Array, config: ml_collections.ConfigDict, meta: Mapping[str, Any]) -> BayesianGMM:
    """A posterior of the structure a fit of `config` gives on meta["num_features"] features
    in meta["dtype"]: one M-step from K standard normal points, one a component, under unit
    prior scales. genjax_lab.saving.load reads its shapes to restore a saved fit."""
    _check_config(config)
    d, dtype = meta["num_features"], jnp.dtype(meta["dtype"])
    k, kind = config.num_components, config.covariance_type
    unit = {"full": jnp.eye(d), "tied": jnp.eye(d), "diag": jnp.ones(d), "spherical": 1.0}[kind]
    prior = Prior(*(jnp.asarray(value, dtype) for value in (1.0 / k, 1.0, jnp.zeros(d), d, unit)))
    points = jax.random.normal(key, (k, d), dtype)
    return _m_step(
        prior,
        points,
        jnp.eye(k, dtype=dtype),
        kind,
        config.weight_concentration_prior_type,
        config.reg_covar,
    )


# ----------------------------------------------------------------------------- fit
@compilation.size_tiered_jit(
    static_argnames=("num_components", "covariance_type", "weight_prior_type", "capacity"),
)
def _fit_program(
    key,
    x,
    mask,
    prior,
    init,
    start,
    max_iter,
    tol,
    reg_covar,
    kmeans_iters,
    *,
    num_components: int,
    covariance_type: str,
    weight_prior_type: str,
    capacity: int,
):
    """Start `start` (k-means on fold_in(key, start), its hard responsibilities, one M-step:
    scikit-learn's init_params='kmeans') unless `init`, then the VB iterations."""
    if init is None:
        centers = kmeans_lib.kmeans(
            jax.random.fold_in(key, start), x, num_components, mask, num_iters=kmeans_iters
        )
        resp = kmeans_lib.hard_assign(x, centers) * mask[:, None]
        init = _m_step(prior, x, resp, covariance_type, weight_prior_type, reg_covar)
    step = lambda p: _vb_step(p, x, mask, reg_covar)
    params, history, iterations = converging_loop(step, init, max_iter, tol, capacity, x.dtype)
    return params, history, iterations, {"the variational mixture": _finite(params)}


def _check_init(init: BayesianGMM, config: ml_collections.ConfigDict, d: int) -> None:
    if not isinstance(init, BayesianGMM):
        raise TypeError(f"init must be a BayesianGMM, got {type(init).__name__}")
    found = (init.num_features, init.num_components, init.covariance_type, init.weight_prior_type)
    wanted = (
        d,
        config.num_components,
        config.covariance_type,
        config.weight_concentration_prior_type,
    )
    if found != wanted:
        raise ValueError(
            f"init must be (D, config.num_components, config.covariance_type, "
            f"config.weight_concentration_prior_type) = {wanted}, got {found}"
        )
    checks.check_finite_tree("init", init)


def fit(
    key: jax.Array,
    data: Mapping[str, Any],
    config: ml_collections.ConfigDict,
    init: BayesianGMM | None = None,
) -> tuple[BayesianGMM, dict]:
    """Variational inference for x = data["x"] [N, D] (rows weighted by data["mask"] [N]).

    Start i: k-means on fold_in(key, i) and one M-step from its hard assignments (or `init`,
    e.g. `from_responsibilities`, whose prior is then used; config.num_inits must be 1).
    Then up to config.num_iters iterations, stopping on config.tol (module doc); of
    config.num_inits starts the highest final lower bound is kept. Rows are padded (masked)
    to a bucket size, so nearby data sizes, iteration counts and tolerances share one
    compiled program.
    history: "lower_bound" [iterations run] (the last is scikit-learn's lower_bound_),
    "num_iters" (its n_iter_), "converged".
    """
    _check_config(config)
    checks.check_mapping("data", data, ("x",))
    x_np, mask = np.asarray(data["x"]), data.get("mask")
    params, history, iterations = _fit_starts(
        _fit_program,
        key,
        x_np,
        mask,
        init,
        config,
        _check_init,
        lambda x, mask: (prior_from_data(x, config, mask) if init is None else init.prior,),
        weight_prior_type=config.weight_concentration_prior_type,
    )
    return params, {
        "lower_bound": history,
        "num_iters": iterations,
        "converged": bool(_converged(history, config.tol)),
    }


# ----------------------------------------------------------------------------- the verbs
def _check_scoring(params: BayesianGMM, x, **_) -> None:
    if not isinstance(params, BayesianGMM):
        raise TypeError(f"params must be a BayesianGMM, got {type(params).__name__}")
    checks.check_finite_tree("params", params)
    checks.check_array("x", x, ("N", params.num_features), kinds=checks.FLOAT)


@checks.validated(_check_scoring)
@jax.jit
def log_prob(params: BayesianGMM, x: jax.Array) -> jax.Array:
    """Exact log density [N] of the expected-parameter mixture (`expected_mixture`) at x."""
    return gmm_model._mixture_log_prob(expected_mixture(params), x)


def _check_bound(key, params: BayesianGMM, x, **_) -> None:
    _check_scoring(params, x)


@checks.validated(_check_bound)
@jax.jit
def log_prob_bound(key: jax.Array | None, params: BayesianGMM, x: jax.Array) -> jax.Array:
    """scikit-learn's score_samples [N]: logsumexp_k E[log pi_k + log N(x | mu_k, Lambda_k)],
    below the log posterior predictive density (module doc). key: unused (deterministic)."""
    del key
    return jax.nn.logsumexp(_expected_log_joint(params, x), axis=1)


@checks.validated(_check_scoring)
@jax.jit
def posterior(params: BayesianGMM, x: jax.Array) -> jax.Array:
    """q(z_n = k) [N, K] (scikit-learn's predict_proba)."""
    return jax.nn.softmax(_expected_log_joint(params, x), axis=1)


@checks.validated(_check_scoring)
@jax.jit
def predict(params: BayesianGMM, x: jax.Array) -> jax.Array:
    """The most probable component of each row, int [N] (scikit-learn's predict)."""
    return jnp.argmax(_expected_log_joint(params, x), axis=1)


def sample(
    key: jax.Array, params: BayesianGMM, num: int, *, y: jax.Array | None = None
) -> jax.Array:
    """x [num, D] from the expected-parameter mixture (scikit-learn's sample). y: refused,
    the mixture has no classes."""
    if y is not None:
        raise ValueError("y: a Bayesian mixture has no class to sample given (pass y=None)")
    if checks.is_checkable(params):
        checks.check_finite_tree("params", params)
    return gmm_model.sample(key, expected_mixture(params), num)
