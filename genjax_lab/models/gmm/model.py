"""Gaussian mixture models, the model: parameters, densities, sampling and conditioning.

Model, K components in D dimensions: z ~ Categorical(weights), x | z=k ~ N(means_k, Sigma_k).
Parameters are stored as scikit-learn does: the Cholesky factor P_k of each precision
(Sigma_k^-1 = P_k P_k^T, P_k upper triangular), so
  log N(x | mu_k, Sigma_k) = -D/2 log 2 pi - |(x - mu_k) P_k|^2 / 2 + sum_d log P_k[d, d].
Shapes of `precision_cholesky` by covariance type: full [K, D, D]; tied [D, D] (one shared);
diag [K, D] (1 / std per dimension); spherical [K] (1 / std, one per component).
For full and tied covariances the E-step is one einsum x -> x P_k for all k at once (a [D, K*D]
matmul); for diag and spherical the quadratic form expands into matmuls against x and x^2.

The class-conditional mixture (`LabelledGMM`): y ~ Categorical(exp(log_prior)), then x | y
from the GMM of class y (a GMM whose leaves carry a leading class axis [C, ...]). Its
`log_prob(params, x)` is log p(x) = logsumexp_c log p(x, y = c), with y log p(x | y); its
`posterior` the joint p(y = c, z = k | x) [B, C, K]; its classifier (Bayes' rule) is in
genjax_lab.models.gmm.family.

A mixture seen through a linear subspace (`SubspaceGMM`: a GMM over codes z [d] and
x = mean + basis z + e, e ~ N(0, noise_var I) [D], probabilistic PCA's observation model with
a mixture prior): x is a mixture of Gaussians N(mean + W mu_k, W Sigma_k W^T + s2 I) whose
D x D covariances are never formed. Given the observed dimensions o of x (`observe`), each
component is linear Gaussian, so with G = W_o^T W_o / s2 and Lambda_k = Sigma_k^-1
  z | x_o, k ~ N(A_k^-1 (Lambda_k mu_k + W_o^T (x_o - m_o) / s2), A_k^-1),  A_k = Lambda_k + G,
  p(k | x_o) ∝ w_k N(x_o | m_o + W_o mu_k, W_o Sigma_k W_o^T + s2 I),
that marginal evaluated in d dimensions by Woodbury and the determinant lemma. `log_prob` is
the marginal with every dimension observed; `impute_subspace` gives E[x | x_o]; `sample`
returns E[x | z] = mean + W z for z drawn from the codes' mixture (the noise-free image, as
image models show their means).

Missing dimensions (`condition`, `impute`, `sample_conditional`): Gaussian conditioning per
component on the observed dimensions o, any covariance type (converted to full matrices):
  p(k | x_o) ∝ w_k N(x_o | mu_ko, Sigma_koo),
  x_m | x_o, k ~ N(mu_km + Sigma_kmo Sigma_koo^-1 (x_o - mu_ko),
                   Sigma_kmm - Sigma_kmo Sigma_koo^-1 Sigma_kom).
The per-example observed set is a mask, so everything has static shapes: Sigma_oo is embedded
in a D x D matrix with the identity on the missing block, whose Cholesky factor gives
Sigma_oo's solves and log-determinant exactly.

Errors: bad input is refused host-side with the argument named (x's shape and dtype, NaN in
x, parameters that do not fit together) by every public function called from Python (not
when traced inside jit).
"""

import functools
import math
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.scipy.linalg import cho_solve, solve_triangular

from genjax_lab.core import checks

CovarianceType = Literal["full", "diag", "spherical", "tied"]
COVARIANCE_TYPES = ("full", "diag", "spherical", "tied")


@struct.dataclass
class GMM:
    """weights [K], means [K, D], precision_cholesky (shape by covariance_type, see module doc)."""

    weights: jax.Array
    means: jax.Array
    precision_cholesky: jax.Array
    covariance_type: str = struct.field(pytree_node=False, default="full")

    @property
    def num_components(self) -> int:
        return self.means.shape[-2]

    @property
    def num_features(self) -> int:
        return self.means.shape[-1]


@struct.dataclass
class LabelledGMM:
    """A class-conditional mixture: log_prior log P(y) [C]; components: a GMM per class, its
    leaves stacked on a leading class axis [C, ...]."""

    log_prior: jax.Array
    components: GMM

    @property
    def num_classes(self) -> int:
        return self.log_prior.shape[-1]


@struct.dataclass
class SubspaceGMM:
    """codes: the GMM over z [d]; mean [D], basis W [D, d], noise_var s2 (scalar > 0): x =
    mean + W z + N(0, s2 I). A PCA gives all three (basis: its top eigenvectors; s2: the mean
    discarded eigenvalue, probabilistic PCA's maximum-likelihood noise)."""

    codes: GMM
    mean: jax.Array
    basis: jax.Array
    noise_var: jax.Array

    @property
    def num_features(self) -> int:
        return self.mean.shape[-1]


class Conditional(NamedTuple):
    """Per example n and component k given the observed dimensions of x_n.

    log_weights [N, K]: log p(k | x_o); means [N, K, D]: E[x | x_o, k] (observed dims = x_o);
    cov_cholesky [N, K, D, D]: Cholesky factor of Cov[x | x_o, k] on the missing block (identity
    on the observed block); marginal_log_likelihood [N]: log p(x_o).
    """

    log_weights: jax.Array
    means: jax.Array
    cov_cholesky: jax.Array
    marginal_log_likelihood: jax.Array


# ----------------------------------------------------------------------------- parameters
def _check_type(covariance_type: str) -> None:
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(
            f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}"
        )


_COVARIANCE_DIMS = {
    "full": ("K", "D", "D"),
    "tied": ("D", "D"),
    "diag": ("K", "D"),
    "spherical": ("K",),
}


def _covariance_shape(covariance_type: str, k: int, d: int) -> tuple[int, ...]:
    _check_type(covariance_type)
    return tuple({"K": k, "D": d}[axis] for axis in _COVARIANCE_DIMS[covariance_type])


def _check_covariance_like(name: str, values, covariance_type: str, k: int, d: int) -> None:
    """Covariances or precisions in scikit-learn's layout: full and tied symmetric positive
    definite, diag and spherical positive."""
    matrices = checks.check_array(
        name,
        values,
        _covariance_shape(covariance_type, k, d),
        kinds=checks.FLOAT,
        positive=covariance_type in ("diag", "spherical"),
    )
    if covariance_type in ("full", "tied"):
        if not np.allclose(matrices, np.swapaxes(matrices, -1, -2), rtol=1e-5, atol=1e-8):
            raise ValueError(f"{name} must be symmetric ({covariance_type} covariance_type)")
        try:
            np.linalg.cholesky(matrices)
        except np.linalg.LinAlgError:
            raise ValueError(
                f"{name} must be positive definite ({covariance_type} covariance_type)"
            ) from None


def _check_construction(weights, means, covariance_type: str) -> tuple[int, int]:
    """weights [K] on the simplex and means [K, D] of a GMM being built: returns (K, D)."""
    _check_type(covariance_type)
    k, d = checks.check_array("means", means, ("K", "D"), kinds=checks.FLOAT).shape
    checks.check_simplex("weights", weights, (k,), atol=1e-4)
    return k, d


def _check_params(params: GMM, name: str = "params") -> None:
    """Leaf shapes that fit together (any leading axes, as a class axis) and finite values."""
    k, d = np.shape(params.means)[-2:]
    leading = np.shape(params.means)[:-2]
    cov_shape = _covariance_shape(params.covariance_type, k, d)
    for field, shape in (("weights", (k,)), ("precision_cholesky", cov_shape)):
        if np.shape(getattr(params, field)) != leading + shape:
            raise ValueError(
                f"{name}.{field} must have shape {leading + shape} ({params.covariance_type} "
                f"covariances, K={k}, D={d}), got {np.shape(getattr(params, field))}"
            )
    checks.check_finite_tree(name, params)


def _check_mask(mask, num_points: int) -> np.ndarray | None:
    if mask is None:
        return None
    return checks.check_array("mask", mask, (num_points,), nonnegative=True)


def _check_points(
    params: GMM, x, mask=None, *, allow_nan: bool = False, padding_ignored: bool = False
) -> None:
    """x [N, D] finite (NaN too with allow_nan), mask [N] >= 0. padding_ignored: rows with
    mask 0 may hold anything (the E-step zeroes them first)."""
    points = checks.check_array(
        "x", x, ("N", params.num_features), kinds=checks.FLOAT, finite=False
    )
    weights = _check_mask(mask, points.shape[0])
    real_rows = weights > 0 if padding_ignored and weights is not None else None
    checks.check_array("x", points, allow_nan=allow_nan, where=real_rows)


def _check_scoring(params: GMM, x, mask=None, **_) -> None:
    _check_params(params)
    _check_points(params, x, mask)


def _check_conditioning(params: GMM, x, observed=None, **_) -> None:
    _check_params(params)
    _check_points(params, x, allow_nan=True)
    if observed is not None:
        checks.check_array("observed", observed, np.shape(x))


def _cholesky_of_inverse(cov: jax.Array) -> jax.Array:
    """Upper P with P P^T = cov^-1 (batched over leading axes); NaN if cov is not positive
    definite."""
    lower = jnp.linalg.cholesky(cov)
    eye = jnp.broadcast_to(jnp.eye(cov.shape[-1], dtype=cov.dtype), cov.shape)
    return jnp.swapaxes(solve_triangular(lower, eye, lower=True), -1, -2)


def _check_from_covariances(weights, means, covariances, covariance_type: str, **_) -> None:
    _check_covariance_like(
        "covariances",
        covariances,
        covariance_type,
        *_check_construction(weights, means, covariance_type),
    )


def _check_from_precisions(weights, means, precisions, covariance_type: str, **_) -> None:
    _check_covariance_like(
        "precisions",
        precisions,
        covariance_type,
        *_check_construction(weights, means, covariance_type),
    )


@checks.validated(_check_from_covariances)
@functools.partial(jax.jit, static_argnames=("covariance_type",))
def from_covariances(weights, means, covariances, covariance_type: CovarianceType = "full") -> GMM:
    """GMM from covariances in scikit-learn's layout (full [K, D, D], tied [D, D], diag [K, D],
    spherical [K])."""
    _check_type(covariance_type)
    covariances = jnp.asarray(covariances)
    if covariance_type in ("full", "tied"):
        chol = _cholesky_of_inverse(covariances)
    else:
        chol = 1.0 / jnp.sqrt(covariances)
    return GMM(jnp.asarray(weights), jnp.asarray(means), chol, covariance_type)


@checks.validated(_check_from_precisions)
@functools.partial(jax.jit, static_argnames=("covariance_type",))
def from_precisions(weights, means, precisions, covariance_type: CovarianceType = "full") -> GMM:
    """GMM from precisions in scikit-learn's precisions_init layout (same shapes as covariances)."""
    _check_type(covariance_type)
    precisions = jnp.asarray(precisions)
    if covariance_type in ("full", "tied"):
        # Upper P with P P^T = precision, as scikit-learn: with J the flip, chol(J A J) = L gives
        # A = (J L J)(J L J)^T and J L J is upper triangular.
        flipped = jnp.flip(precisions, axis=(-1, -2))
        chol = jnp.flip(jnp.linalg.cholesky(flipped), axis=(-1, -2))
    else:
        chol = jnp.sqrt(precisions)
    return GMM(jnp.asarray(weights), jnp.asarray(means), chol, covariance_type)


@jax.jit
def covariances(params: GMM) -> jax.Array:
    """Covariances in scikit-learn's layout (full [K, D, D], tied [D, D], diag [K, D],
    spherical [K])."""
    if params.covariance_type in ("full", "tied"):
        inv = jnp.linalg.inv(params.precision_cholesky)  # Sigma = P^-T P^-1
        return jnp.swapaxes(inv, -1, -2) @ inv
    return 1.0 / params.precision_cholesky**2


@jax.jit
def full_covariances(params: GMM) -> jax.Array:
    """Every component's covariance as a full matrix: [K, D, D]."""
    cov = covariances(params)
    k, d = params.num_components, params.num_features
    if params.covariance_type == "full":
        return cov
    if params.covariance_type == "tied":
        return jnp.broadcast_to(cov, (k, d, d))
    if params.covariance_type == "spherical":
        cov = jnp.broadcast_to(cov[:, None], (k, d))
    return cov[:, :, None] * jnp.eye(d, dtype=cov.dtype)


def num_parameters(params: GMM) -> int:
    """Free parameters, counted as scikit-learn's `_n_parameters`."""
    k, d = params.num_components, params.num_features
    cov = {"full": k * d * (d + 1) // 2, "diag": k * d, "tied": d * (d + 1) // 2, "spherical": k}
    return cov[params.covariance_type] + k * d + k - 1


# ----------------------------------------------------------------------------- densities
def shift(params: GMM) -> jax.Array:
    """The centre c = sum_k w_k mu_k that the E-step statistics are taken around: [D]."""
    return params.weights @ params.means


# Diag and spherical densities and statistics are expanded about one shared centre c, so
# that one matmul serves every component. Rounding then takes about eps * s of each
# Mahalanobis term and of each variance, s the squared distance of a component's mean from c
# in its own standard deviations: nothing where clusters overlap, all of it for float32
# clusters at +-1e4 with spread 1. Up to this s (errors below 1e-4 in float32) the
# expansion runs; beyond it, the direct form about each component's own mean, a loop over
# the components (the matmul's work done elementwise, N x D memory). Full and tied
# densities are expanded about c too but always (a conditional around their one large
# matmul cost 40% of an EM iteration): at s = 1e8 they lose about 1e-3 nats; their
# statistics are always about each component's own mean.
_MAX_SHARED_CENTRE_SPREAD = 1e3


def shared_centre_is_exact(params: GMM) -> jax.Array:
    """Whether a diag or spherical mixture's expansions about `shift(params)` keep their
    digits (see _MAX_SHARED_CENTRE_SPREAD): a scalar bool."""
    chol = params.precision_cholesky  # [K, D] diag, [K] spherical
    scale = chol if params.covariance_type == "diag" else chol[:, None]
    return jnp.max(((params.means - shift(params)) * scale) ** 2) <= _MAX_SHARED_CENTRE_SPREAD


def component_log_prob(params: GMM, x: jax.Array) -> jax.Array:
    """log N(x_n | mu_k, Sigma_k): [N, K] for x [N, D]."""
    chol, kind = params.precision_cholesky, params.covariance_type
    if kind in ("full", "tied"):
        maha = _expanded_maha(params, x)
    else:
        maha = jax.lax.cond(shared_centre_is_exact(params), _expanded_maha, _direct_maha, params, x)
    if kind == "full":
        log_det = jnp.sum(jnp.log(jnp.diagonal(chol, axis1=1, axis2=2)), axis=1)
    elif kind == "tied":
        log_det = jnp.sum(jnp.log(jnp.diagonal(chol)))
    elif kind == "diag":
        log_det = jnp.sum(jnp.log(chol), axis=1)
    else:
        log_det = params.num_features * jnp.log(chol)
    return -0.5 * (params.num_features * math.log(2 * math.pi) + maha) + log_det


def _expanded_maha(params: GMM, x: jax.Array) -> jax.Array:
    """Squared Mahalanobis distances [N, K], expanded about the shared centre c (one matmul
    for every component): x and the means are centred on c first, so the expansion cancels
    only the components' spread about c."""
    chol, kind = params.precision_cholesky, params.covariance_type
    c = shift(params)
    xc, mc = x - c, params.means - c
    if kind == "full":
        # y_nk = [x_n, 1] [P_k; -m_k P_k]: one [N, D+1] x [D+1, K*D] matmul for all components.
        k, d = chol.shape[:2]
        weights = jnp.concatenate(
            [
                jnp.transpose(chol, (1, 0, 2)).reshape(d, k * d),
                -jnp.einsum("kd,kde->ke", mc, chol).reshape(1, k * d),
            ]
        )
        y = (jnp.concatenate([xc, jnp.ones_like(xc[:, :1])], axis=1) @ weights).reshape(-1, k, d)
        return jnp.sum(y * y, axis=2)
    if kind == "tied":
        y = (xc @ chol)[:, None, :] - mc @ chol
        return jnp.sum(y * y, axis=2)
    prec = chol**2
    if kind == "diag":
        return (xc * xc) @ prec.T - 2.0 * xc @ (mc * prec).T + jnp.sum(mc * mc * prec, axis=1)
    return prec * (
        jnp.sum(xc * xc, axis=1, keepdims=True) - 2.0 * xc @ mc.T + jnp.sum(mc * mc, axis=1)
    )


def _direct_maha(params: GMM, x: jax.Array) -> jax.Array:
    """Diag / spherical: the same about each component's own mean, one at a time."""

    def one(mean, scale):  # [D] (diag) or [] (spherical)
        return jnp.sum(((x - mean) * scale) ** 2, axis=1)

    out = jax.lax.map(lambda ms: one(*ms), (params.means, params.precision_cholesky))
    return jnp.moveaxis(out, 0, -1)


def _log_joint(params: GMM, x: jax.Array) -> jax.Array:
    return jnp.log(params.weights) + component_log_prob(params, x)


def _mixture_log_prob(params: GMM, x: jax.Array) -> jax.Array:
    return jax.nn.logsumexp(_log_joint(params, x), axis=1)


def class_log_likelihoods(components: GMM, x: jax.Array) -> jax.Array:
    """log p(x_n | y = c) [N, C] of class-conditional mixtures (a leading class axis)."""
    return jax.vmap(_mixture_log_prob, in_axes=(0, None), out_axes=1)(components, x)


def _check_labels(params: "LabelledGMM", y, num: int) -> None:
    labels = checks.check_array("y", y, (num,), kinds=checks.INTEGER)
    num_classes = params.num_classes
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"y must hold class indices in [0, {num_classes}), got {labels.min()}..{labels.max()}"
        )


def _check_subspace(params: SubspaceGMM, name: str = "params") -> None:
    _check_params(params.codes, f"{name}.codes")
    d = params.codes.num_features
    mean = checks.check_array(f"{name}.mean", params.mean, ("D",), kinds=checks.FLOAT)
    checks.check_array(f"{name}.basis", params.basis, (mean.shape[0], d), kinds=checks.FLOAT)
    checks.check_number(f"{name}.noise_var", float(params.noise_var), low=0.0, low_open=True)


def _check_log_prob(params, x, y=None, **_) -> None:
    if isinstance(params, SubspaceGMM):
        _check_subspace(params)
        checks.check_array("x", x, ("N", params.num_features), kinds=checks.FLOAT)
        if y is not None:
            raise ValueError("y: a SubspaceGMM has no class to condition on (pass y=None)")
    elif isinstance(params, LabelledGMM):
        checks.check_finite_tree("params.log_prior", params.log_prior, allow_neg_inf=True)
        _check_scoring(params.components, x)
        if y is not None:
            _check_labels(params, y, np.shape(x)[0])
    else:
        _check_scoring(params, x)
        if y is not None:
            raise ValueError("y: an unlabelled GMM has no class to condition on (pass y=None)")


@checks.validated(_check_log_prob)
@jax.jit
def log_prob(
    params: "GMM | LabelledGMM | SubspaceGMM", x: jax.Array, y: jax.Array | None = None
) -> jax.Array:
    """Exact log p(x_n) [N] (scikit-learn's score_samples); for a LabelledGMM log p(x_n | y_n)
    given labels y [N], else log p(x_n) = logsumexp_c log p(x_n, y = c); for a SubspaceGMM
    log p(x_n) of x [N, D] in the observed space."""
    if isinstance(params, SubspaceGMM):
        return observe(params, x).marginal_log_likelihood
    if isinstance(params, GMM):
        return _mixture_log_prob(params, x)
    per_class = class_log_likelihoods(params.components, x)
    if y is None:
        return jax.nn.logsumexp(per_class + params.log_prior, axis=1)
    return jnp.take_along_axis(per_class, jnp.asarray(y)[:, None], axis=1)[:, 0]


def _check_posterior(params, x, **_) -> None:
    _check_log_prob(params, x)


@checks.validated(_check_posterior)
@jax.jit
def posterior(params: "GMM | LabelledGMM | SubspaceGMM", x: jax.Array) -> jax.Array:
    """Responsibilities p(z = k | x_n) [N, K] (a SubspaceGMM: of its codes' components given x
    [N, D]); for a LabelledGMM the joint posterior of class and component p(y = c, z = k |
    x_n) [N, C, K]."""
    if isinstance(params, SubspaceGMM):
        return jnp.exp(observe(params, x).log_weights)
    if isinstance(params, GMM):
        return predict_proba(params, x)
    joint = params.log_prior[:, None] + jax.vmap(_log_joint, in_axes=(0, None), out_axes=1)(
        params.components, x
    )
    return jnp.exp(joint - jax.nn.logsumexp(joint, axis=(1, 2), keepdims=True))


@checks.validated(_check_scoring)
@jax.jit
def score(params: GMM, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Mean log-likelihood per (real) example: scalar."""
    ll = _mixture_log_prob(params, x)
    return ll.mean() if mask is None else jnp.sum(ll * mask) / jnp.sum(mask)


@checks.validated(_check_scoring)
@jax.jit
def predict_log_proba(params: GMM, x: jax.Array) -> jax.Array:
    """log responsibilities log p(z = k | x_n): [N, K]."""
    joint = _log_joint(params, x)
    return joint - jax.nn.logsumexp(joint, axis=1, keepdims=True)


@checks.validated(_check_scoring)
@jax.jit
def predict_proba(params: GMM, x: jax.Array) -> jax.Array:
    """Responsibilities p(z = k | x_n): [N, K]."""
    return jnp.exp(predict_log_proba(params, x))


@checks.validated(_check_scoring)
@jax.jit
def predict(params: GMM, x: jax.Array) -> jax.Array:
    """Most responsible component: int [N]."""
    return jnp.argmax(_log_joint(params, x), axis=1)


def bic(params: GMM, x: jax.Array) -> jax.Array:
    """Bayesian information criterion -2 log L + p log N (lower is better), as scikit-learn."""
    n = x.shape[0]
    return -2.0 * score(params, x) * n + num_parameters(params) * math.log(n)


def aic(params: GMM, x: jax.Array) -> jax.Array:
    """Akaike information criterion -2 log L + 2 p, as scikit-learn."""
    return -2.0 * score(params, x) * x.shape[0] + 2 * num_parameters(params)


# ----------------------------------------------------------------------------- sampling
def _check_sample(key, params, num: int, y=None, **_) -> None:
    checks.check_count("num", num)
    if isinstance(params, SubspaceGMM):
        _check_subspace(params)
        if y is not None:
            raise ValueError("y: a SubspaceGMM has no class to sample given (pass y=None)")
    elif isinstance(params, LabelledGMM):
        checks.check_finite_tree("params.log_prior", params.log_prior, allow_neg_inf=True)
        _check_params(params.components, "params.components")
        if y is not None:
            _check_labels(params, y, num)
    else:
        _check_params(params)
        if y is not None:
            raise ValueError("y: an unlabelled GMM has no class to sample given (pass y=None)")


def _draw_components(key: jax.Array, params: GMM, num: int) -> tuple[jax.Array, jax.Array]:
    label_key, noise_key = jax.random.split(key)
    labels = jax.random.categorical(label_key, jnp.log(params.weights), shape=(num,))
    chol = jnp.linalg.cholesky(full_covariances(params))  # [K, D, D]
    noise = jax.random.normal(noise_key, (num, params.num_features), params.means.dtype)
    return params.means[labels] + jnp.einsum("nde,ne->nd", chol[labels], noise), labels


def _draw(key: jax.Array, params: "GMM | LabelledGMM", num: int, y: jax.Array | None):
    """(x [num, D], y [num] or None, component z [num])."""
    if isinstance(params, GMM):
        x, z = _draw_components(key, params, num)
        return x, None, z
    if y is None:
        class_key, key = jax.random.split(key)
        y = jax.random.categorical(class_key, params.log_prior, shape=(num,))
    y = jnp.asarray(y)
    component_key, noise_key = jax.random.split(key)
    components = params.components
    z = jax.random.categorical(component_key, jnp.log(components.weights[y]), axis=-1)
    chol = jnp.linalg.cholesky(jax.vmap(full_covariances)(components))  # [C, K, D, D]
    noise = jax.random.normal(noise_key, (num, components.num_features), components.means.dtype)
    x = components.means[y, z] + jnp.einsum("nde,ne->nd", chol[y, z], noise)
    return x, y, z


@checks.validated(_check_sample)
@functools.partial(jax.jit, static_argnames=("num",))
def sample_with_components(
    key: jax.Array, params: "GMM | LabelledGMM", num: int, *, y: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """(x [num, D], the component z int [num] each was drawn from) ~ p(x, z) (a LabelledGMM:
    ~ p(x, z | y) given labels y [num], else with y drawn from its prior)."""
    x, _, z = _draw(key, params, num, y)
    return x, z


@checks.validated(_check_sample)
@functools.partial(jax.jit, static_argnames=("num",))
def sample_with_labels(
    key: jax.Array, params: "LabelledGMM", num: int, *, y: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """(x [num, D], y int [num]) ~ p(x, y) of a LabelledGMM, or x ~ p(x | y) given y [num]."""
    if not isinstance(params, LabelledGMM):
        raise TypeError(
            f"params: sample_with_labels needs a LabelledGMM, got {type(params).__name__}"
        )
    x, y, _ = _draw(key, params, num, y)
    return x, y


def sample(
    key: jax.Array,
    params: "GMM | LabelledGMM | SubspaceGMM",
    num: int,
    *,
    y: jax.Array | None = None,
) -> jax.Array:
    """x [num, D] ~ p(x); a LabelledGMM given labels y [num]: x ~ p(x | y); a SubspaceGMM:
    E[x | z] = mean + basis z [num, D] for z ~ its codes' mixture (no observation noise)."""
    if isinstance(params, SubspaceGMM):
        if checks.is_checkable(params):
            _check_sample(key, params, num, y)
        codes = sample_with_components(key, params.codes, num)[0]
        return params.mean + codes @ params.basis.T
    return sample_with_components(key, params, num, y=y)[0]


def _condition_one(mean, cov, x, obs):
    """Conditioning of one component on one example (obs: float 0/1 [D], x: zeros where missing)."""
    # Sigma_oo embedded with identity on the missing block: its Cholesky gives Sigma_oo's.
    embedded = cov * obs[:, None] * obs[None, :] + jnp.diag(1.0 - obs)
    lower = jnp.linalg.cholesky(embedded)
    diff = (x - mean) * obs
    white = solve_triangular(lower, diff[:, None], lower=True)[:, 0]
    log_density = -0.5 * (jnp.sum(obs) * math.log(2 * math.pi) + white @ white) - jnp.sum(
        jnp.log(jnp.diagonal(lower))
    )

    def solve(b):  # embedded^-1 b: Sigma_oo^-1 on the observed block, zero-coupled elsewhere
        forward = solve_triangular(lower, b, lower=True)
        return solve_triangular(lower, forward, lower=True, trans="T")

    cross = cov * obs[:, None]  # rows of the observed dimensions: Sigma_o.
    cond_mean = jnp.where(obs > 0, x, mean + cov @ solve(diff[:, None])[:, 0])
    cond_cov = cov - cross.T @ solve(cross)
    missing = 1.0 - obs
    cond_cov = cond_cov * missing[:, None] * missing[None, :] + jnp.diag(obs)
    return log_density, cond_mean, jnp.linalg.cholesky(cond_cov)


def _observed(x: jax.Array, observed: jax.Array | None) -> jax.Array:
    present = ~jnp.isnan(x)
    return present if observed is None else present & jnp.asarray(observed, bool)


@checks.validated(_check_conditioning)
@jax.jit
def condition(params: GMM, x: jax.Array, observed: jax.Array | None = None) -> Conditional:
    """Mixture posterior given the observed dimensions of each x_n [N, D] (NaN or `observed`
    False = missing)."""
    x = jnp.asarray(x)
    obs = _observed(x, observed).astype(params.means.dtype)
    x = jnp.where(obs > 0, x, 0.0)
    per_component = jax.vmap(_condition_one, in_axes=(0, 0, None, None))  # over k
    log_density, means, chol = jax.vmap(per_component, in_axes=(None, None, 0, 0))(
        params.means, full_covariances(params), x, obs
    )
    joint = jnp.log(params.weights) + log_density
    marginal = jax.nn.logsumexp(joint, axis=1)
    return Conditional(joint - marginal[:, None], means, chol, marginal)


@checks.validated(_check_conditioning)
@jax.jit
def impute(params: GMM, x: jax.Array, observed: jax.Array | None = None) -> jax.Array:
    """E[x_n | observed dimensions]: [N, D], observed entries returned as given."""
    cond = condition(params, x, observed)
    return jnp.einsum("nk,nkd->nd", jnp.exp(cond.log_weights), cond.means)


@checks.validated(_check_conditioning)
@jax.jit
def sample_conditional(
    key: jax.Array, params: GMM, x: jax.Array, observed: jax.Array | None = None
) -> jax.Array:
    """x_missing ~ p(x_missing | x_observed) for each row: [N, D], observed entries kept."""
    cond = condition(params, x, observed)
    label_key, noise_key = jax.random.split(key)
    labels = jax.random.categorical(label_key, cond.log_weights, axis=1)
    rows = jnp.arange(labels.shape[0])
    mean, chol = cond.means[rows, labels], cond.cov_cholesky[rows, labels]
    noise = jax.random.normal(noise_key, mean.shape, mean.dtype)
    drawn = mean + jnp.einsum("nde,ne->nd", chol, noise)
    return jnp.where(_observed(jnp.asarray(x), observed), mean, drawn)


# ----------------------------------------------------------------------------- subspace
def _check_observe(params: SubspaceGMM, x, observed=None, **_) -> None:
    _check_subspace(params)
    checks.check_array("x", x, ("N", params.num_features), kinds=checks.FLOAT)
    if observed is not None:
        checks.check_array("observed", observed, (params.num_features,))


@checks.validated(_check_observe)
@jax.jit
def observe(params: SubspaceGMM, x: jax.Array, observed: jax.Array | None = None) -> Conditional:
    """The posterior over codes given the observed dimensions of x [N, D] (observed: bool [D],
    one set for every row; None: all), by the formulas of the module docstring:
    log_weights [N, K] log p(k | x_o), means [N, K, d] E[z | x_o, k], cov_cholesky [K, d, d]
    the Cholesky factor of Cov[z | x_o, k] = A_k^-1 (the same for every row), and
    marginal_log_likelihood [N] log p(x_o)."""
    codes, basis, noise_var = params.codes, params.basis, params.noise_var
    obs = jnp.ones(basis.shape[:1], x.dtype) if observed is None else observed.astype(x.dtype)
    w_o = basis * obs[:, None]  # rows of the hidden dimensions zeroed: x_o only
    resid = (x - params.mean) * obs
    cov_chol = jnp.linalg.cholesky(full_covariances(codes))  # [K, d, d]
    eye = jnp.eye(basis.shape[1], dtype=x.dtype)
    precision = jax.vmap(lambda c: cho_solve((c, True), eye))(cov_chol)
    a_chol = jnp.linalg.cholesky(precision + w_o.T @ w_o / noise_var)  # A_k = Lambda_k + G

    def solve_a(b):  # A_k^-1 b for b [K, d, N]
        return jax.vmap(lambda c, v: cho_solve((c, True), v))(a_chol, b)

    proj = resid @ w_o / noise_var  # W_o^T (x_o - m_o) / s2: [N, d]
    rhs = jnp.einsum("kde,ke->kd", precision, codes.means)[:, :, None] + proj.T[None]
    z_means = jnp.transpose(solve_a(rhs), (2, 0, 1))  # [N, K, d]
    r = resid[:, None, :] - (codes.means @ w_o.T)[None]  # x_o - m_o - W_o mu_k: [N, K, D]
    g = jnp.einsum("nkp,pd->kdn", r, w_o) / noise_var  # W_o^T r / s2: [K, d, N]
    quad = jnp.sum(r * r, axis=2) / noise_var - jnp.einsum("kdn,kdn->nk", g, solve_a(g))
    log_det = (
        jnp.sum(obs) * jnp.log(noise_var)
        + 2 * jnp.sum(jnp.log(jnp.diagonal(cov_chol, axis1=1, axis2=2)), axis=1)
        + 2 * jnp.sum(jnp.log(jnp.diagonal(a_chol, axis1=1, axis2=2)), axis=1)
    )  # [K]
    log_joint = jnp.log(codes.weights) - 0.5 * (
        jnp.sum(obs) * math.log(2 * math.pi) + log_det + quad
    )
    marginal = jax.nn.logsumexp(log_joint, axis=1)
    # Cov[z | x_o, k] = A_k^-1 = (L L^T)^-1: its lower Cholesky factor from that of A_k's
    # inverse, chol(A_k^-1) = chol of cho_solve(A_k, I).
    cov_z = jax.vmap(lambda c: cho_solve((c, True), eye))(a_chol)
    return Conditional(log_joint - marginal[:, None], z_means, jnp.linalg.cholesky(cov_z), marginal)


def _check_impute_subspace(params: SubspaceGMM, x, observed, **_) -> None:
    _check_observe(params, x, observed)


@checks.validated(_check_impute_subspace)
@jax.jit
def impute_subspace(params: SubspaceGMM, x: jax.Array, observed: jax.Array) -> jax.Array:
    """E[x | x_o] [N, D]: observed entries (bool [D], the same for every row) as given, the
    hidden ones mean_h + W_h E[z | x_o]."""
    posterior_z = observe(params, x, observed)
    z = jnp.einsum("nk,nkd->nd", jnp.exp(posterior_z.log_weights), posterior_z.means)
    return jnp.where(observed, x, params.mean + z @ params.basis.T)
