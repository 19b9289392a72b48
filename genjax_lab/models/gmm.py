"""Gaussian mixture models: EM with full, diagonal, spherical and tied covariances.

Model, K components in D dimensions: z ~ Categorical(weights), x | z=k ~ N(means_k, Sigma_k).
Parameters are stored as scikit-learn does: the Cholesky factor P_k of each precision
(Sigma_k^-1 = P_k P_k^T, P_k upper triangular), so
  log N(x | mu_k, Sigma_k) = -D/2 log 2 pi - |(x - mu_k) P_k|^2 / 2 + sum_d log P_k[d, d].
Shapes of `precision_cholesky` by covariance type: full [K, D, D]; tied [D, D] (one shared);
diag [K, D] (1 / std per dimension); spherical [K] (1 / std, one per component).
For full and tied covariances the E-step is one einsum x -> x P_k for all k at once (a [D, K*D]
matmul); for diag and spherical the quadratic form expands into matmuls against x and x^2.

EM, one iteration (`em_step`): the E-step forms responsibilities r_nk = p(z=k | x_n) in log
space (logsumexp) and their statistics, mask-weighted sums over the batch axis (`e_step`):
  N_k = sum_n r_nk,  S1_k = sum_n r_nk (x_n - c),  S2_k = sum_n r_nk (x_n - c)(x_n - c)^T
(diag/spherical keep the diagonal of S2; tied keeps sum_n (x_n - c)(x_n - c)^T), plus the sum
of log p(x_n). The shift c = sum_k w_k mu_k of the current parameters keeps raw moments from
cancelling in float32 when the data sit far from the origin. Being batch sums, the statistics
of a sharded batch are reduced across devices inside jit, and those of streamed batches add
(`add_statistics`); `m_step` then gives the new parameters (scikit-learn's estimators):
  N_k += 10 eps (no empty component), w = N / sum N, mu_k = c + S1_k / N_k,
  Sigma_k = S2_k / N_k - (S1_k / N_k)(S1_k / N_k)^T + reg_covar I   (full; diag: diagonal;
  spherical: mean of the diagonal; tied: (sum_k S2_k - sum_k N_k m_k m_k^T) / sum N + reg I).
Each iteration cannot decrease the log-likelihood (tested). `em` and `fit` run EM as one
compiled `lax.while_loop` whose iteration count and tolerance are traced values: they stop,
as scikit-learn, after the first iteration whose mean log-likelihood gain is below `tol`, and
return the log-likelihood before each M-step. `fit` pads the rows (masked) to a few bucket
sizes (genjax_lab.core.compilation.bucket_size), so a new dataset size, iteration count,
tolerance or number of starts reuses the compiled program.

Initialisation (`init_kmeans`, jittable, vmappable over classes): k-means++ seeding (D^2
sampling, Arthur & Vassilvitskii 2007; one candidate per step, not scikit-learn's greedy
trials), then Lloyd iterations, then one M-step from the hard assignments. To reproduce a
scikit-learn run, build the same start with `from_precisions` (its means_init, weights_init,
precisions_init) instead.

Missing dimensions (`condition`, `impute`, `sample_conditional`): Gaussian conditioning per
component on the observed dimensions o, any covariance type (converted to full matrices):
  p(k | x_o) ∝ w_k N(x_o | mu_ko, Sigma_koo),
  x_m | x_o, k ~ N(mu_km + Sigma_kmo Sigma_koo^-1 (x_o - mu_ko), Sigma_kmm - Sigma_kmo Sigma_koo^-1 Sigma_kom).
The per-example observed set is a mask, so everything has static shapes: Sigma_oo is embedded
in a D x D matrix with the identity on the missing block, whose Cholesky factor gives
Sigma_oo's solves and log-determinant exactly.

Errors: bad input is refused host-side with the argument named (x's shape and dtype, NaN in
x, fewer real points than components, reg_covar < 0, parameters that do not fit together)
by every public function called from Python (not when traced inside jit); a fit that produces a singular covariance (e.g.
reg_covar=0 and a component on one point) raises ValueError telling to raise reg_covar, as
scikit-learn does, rather than returning NaN parameters.
"""
import functools
import math
import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.scipy.linalg import solve_triangular

from genjax_lab.core import checks, compilation
from genjax_lab.core import mesh as mesh_lib
from genjax_lab.models.naive_bayes import batch_einsum, is_batch_sharded

if TYPE_CHECKING:  # the training loop (checkpoints, Orbax) is imported only by em_split
    from genjax_lab.core import data as data_lib

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
class EMStats:
    """resp_sum [K], sum_x [K, D], sum_xx (full [K, D, D], diag/spherical [K, D], tied [D, D]),
    log_likelihood (sum of mask * log p(x_n)), count (sum of mask). x is shifted by `shift(params)`."""

    resp_sum: jax.Array
    sum_x: jax.Array
    sum_xx: jax.Array
    log_likelihood: jax.Array
    count: jax.Array


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
        raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}")


_COVARIANCE_DIMS = {"full": ("K", "D", "D"), "tied": ("D", "D"), "diag": ("K", "D"), "spherical": ("K",)}


def _covariance_shape(covariance_type: str, k: int, d: int) -> tuple[int, ...]:
    _check_type(covariance_type)
    return tuple({"K": k, "D": d}[axis] for axis in _COVARIANCE_DIMS[covariance_type])


def _check_covariance_like(name: str, values, covariance_type: str, k: int, d: int) -> None:
    """Covariances or precisions in scikit-learn's layout: full and tied symmetric positive
    definite, diag and spherical positive."""
    matrices = checks.check_array(name, values, _covariance_shape(covariance_type, k, d), kinds=checks.FLOAT,
                                  positive=covariance_type in ("diag", "spherical"))
    if covariance_type in ("full", "tied"):
        if not np.allclose(matrices, np.swapaxes(matrices, -1, -2), rtol=1e-5, atol=1e-8):
            raise ValueError(f"{name} must be symmetric ({covariance_type} covariance_type)")
        try:
            np.linalg.cholesky(matrices)
        except np.linalg.LinAlgError:
            raise ValueError(f"{name} must be positive definite ({covariance_type} covariance_type)") from None


def _check_construction(weights, means, covariance_type: str) -> tuple[int, int]:
    """weights [K] on the simplex and means [K, D] of a GMM being built: returns (K, D)."""
    _check_type(covariance_type)
    k, d = checks.check_array("means", means, ("K", "D"), kinds=checks.FLOAT).shape
    checks.check_simplex("weights", weights, (k,), atol=1e-4)
    return k, d


def _check_params(params: GMM, name: str = "params") -> None:
    """Leaf shapes that fit together (any leading axes, as a classifier's class axis) and finite values."""
    k, d = np.shape(params.means)[-2:]
    leading = np.shape(params.means)[:-2]
    for field, shape in (("weights", (k,)), ("precision_cholesky", _covariance_shape(params.covariance_type, k, d))):
        if np.shape(getattr(params, field)) != leading + shape:
            raise ValueError(f"{name}.{field} must have shape {leading + shape} ({params.covariance_type} "
                             f"covariances, K={k}, D={d}), got {np.shape(getattr(params, field))}")
    checks.check_finite_tree(name, params)


def _check_mask(mask, num_points: int) -> np.ndarray | None:
    return None if mask is None else checks.check_array("mask", mask, (num_points,), nonnegative=True)


def _check_points(params: GMM, x, mask=None, *, allow_nan: bool = False, padding_ignored: bool = False) -> None:
    """x [N, D] finite (NaN too with allow_nan), mask [N] >= 0. padding_ignored: rows with
    mask 0 may hold anything (the E-step zeroes them first)."""
    points = checks.check_array("x", x, ("N", params.num_features), kinds=checks.FLOAT, finite=False)
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


def _check_e_step(params: GMM, x, mask, chunk_size=-1, **_) -> None:
    _check_params(params)
    _check_points(params, x, mask, padding_ignored=True)
    if chunk_size not in (None, -1):
        checks.check_count("chunk_size", chunk_size)


def _check_em(params: GMM, x, mask, reg_covar, num_iters: int = 1, **_) -> None:
    _check_e_step(params, x, mask)
    checks.check_number("reg_covar", reg_covar, low=0.0)
    checks.check_count("num_iters", num_iters)


def _check_seeding(x, num_components: int, mask=None, covariance_type: str = "full", kmeans_iters: int = 0,
                   reg_covar: float = 0.0, **_) -> None:
    _check_mask(mask, checks.check_array("x", x, ("N", "D"), kinds=checks.FLOAT).shape[0])
    _check_type(covariance_type)
    checks.check_count("num_components", num_components)
    checks.check_count("kmeans_iters", kmeans_iters, minimum=0)
    checks.check_number("reg_covar", reg_covar, low=0.0)


def _cholesky_of_inverse(cov: jax.Array) -> jax.Array:
    """Upper P with P P^T = cov^-1 (batched over leading axes); NaN if cov is not positive definite."""
    lower = jnp.linalg.cholesky(cov)
    eye = jnp.broadcast_to(jnp.eye(cov.shape[-1], dtype=cov.dtype), cov.shape)
    return jnp.swapaxes(solve_triangular(lower, eye, lower=True), -1, -2)


def _check_from_covariances(weights, means, covariances, covariance_type: str, **_) -> None:
    _check_covariance_like("covariances", covariances, covariance_type, *_check_construction(weights, means, covariance_type))


def _check_from_precisions(weights, means, precisions, covariance_type: str, **_) -> None:
    _check_covariance_like("precisions", precisions, covariance_type, *_check_construction(weights, means, covariance_type))


@checks.validated(_check_from_covariances)
@functools.partial(jax.jit, static_argnames=("covariance_type",))
def from_covariances(weights, means, covariances, covariance_type: CovarianceType = "full") -> GMM:
    """GMM from covariances in scikit-learn's layout (full [K, D, D], tied [D, D], diag [K, D], spherical [K])."""
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
    """Covariances in scikit-learn's layout (full [K, D, D], tied [D, D], diag [K, D], spherical [K])."""
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


def component_log_prob(params: GMM, x: jax.Array) -> jax.Array:
    """log N(x_n | mu_k, Sigma_k): [N, K] for x [N, D]."""
    chol, kind = params.precision_cholesky, params.covariance_type
    if kind == "full":
        # y_nk = [x_n, 1] [P_k; -mu_k P_k]: one [N, D+1] x [D+1, K*D] matmul for all components.
        k, d = chol.shape[:2]
        weights = jnp.concatenate([jnp.transpose(chol, (1, 0, 2)).reshape(d, k * d),
                                   -jnp.einsum("kd,kde->ke", params.means, chol).reshape(1, k * d)])
        y = (jnp.concatenate([x, jnp.ones_like(x[:, :1])], axis=1) @ weights).reshape(-1, k, d)
        maha = jnp.sum(y * y, axis=2)
        log_det = jnp.sum(jnp.log(jnp.diagonal(chol, axis1=1, axis2=2)), axis=1)
    elif kind == "tied":
        y = (x @ chol)[:, None, :] - params.means @ chol
        maha = jnp.sum(y * y, axis=2)
        log_det = jnp.sum(jnp.log(jnp.diagonal(chol)))
    else:
        # Centre both x and the means first: the expanded quadratic form then cancels less.
        c = shift(params)
        xc, mc = x - c, params.means - c
        if kind == "diag":
            prec = chol**2
            maha = (xc * xc) @ prec.T - 2.0 * xc @ (mc * prec).T + jnp.sum(mc * mc * prec, axis=1)
            log_det = jnp.sum(jnp.log(chol), axis=1)
        else:
            prec = chol**2
            maha = prec * (jnp.sum(xc * xc, axis=1, keepdims=True) - 2.0 * xc @ mc.T + jnp.sum(mc * mc, axis=1))
            log_det = params.num_features * jnp.log(chol)
    return -0.5 * (params.num_features * math.log(2 * math.pi) + maha) + log_det


def _log_joint(params: GMM, x: jax.Array) -> jax.Array:
    return jnp.log(params.weights) + component_log_prob(params, x)


@checks.validated(_check_scoring)
@jax.jit
def log_likelihood(params: GMM, x: jax.Array) -> jax.Array:
    """log p(x_n) per example: [N] (scikit-learn's score_samples)."""
    return jax.nn.logsumexp(_log_joint(params, x), axis=1)


@checks.validated(_check_scoring)
@jax.jit
def score(params: GMM, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Mean log-likelihood per (real) example: scalar."""
    ll = log_likelihood(params, x)
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


# ----------------------------------------------------------------------------- EM
def _packed_outer(xc: jax.Array) -> jax.Array:
    """Upper triangle of x x^T per row: [N, D (D + 1) / 2] (half the work of the full outer product)."""
    rows, cols = np.triu_indices(xc.shape[1])
    return xc[:, rows] * xc[:, cols]


def _unpack(packed: jax.Array, d: int) -> jax.Array:
    """[..., D (D + 1) / 2] upper triangles -> symmetric [..., D, D]."""
    rows, cols = np.triu_indices(d)
    index = np.zeros((d, d), np.int32)
    index[rows, cols] = index[cols, rows] = np.arange(len(rows))
    return packed[..., index]


def _statistics(resp: jax.Array, xc: jax.Array, covariance_type: str) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(resp_sum, sum_x, sum_xx) of centred x [N, D] under mask-weighted responsibilities resp [N, K].

    One matmul resp^T [x, second moments] per block: its rows are the components, so the
    (possibly sharded) batch axis is contracted once.
    """
    d = xc.shape[1]
    if covariance_type == "full":
        moments = batch_einsum("nk,nf->kf", resp, jnp.concatenate([xc, _packed_outer(xc)], axis=1))
        return resp.sum(0), moments[:, :d], _unpack(moments[:, d:], d)
    if covariance_type == "tied":
        sum_xx = _unpack(batch_einsum("n,nf->f", resp.sum(1), _packed_outer(xc)), d)
        return resp.sum(0), batch_einsum("nk,nd->kd", resp, xc), sum_xx
    moments = batch_einsum("nk,nf->kf", resp, jnp.concatenate([xc, xc * xc], axis=1))
    return resp.sum(0), moments[:, :d], moments[:, d:]


def _block_e_step(params: GMM, x: jax.Array, mask: jax.Array) -> EMStats:
    x = jnp.where(mask[:, None] > 0, x, 0.0)  # padding rows may hold anything
    joint = _log_joint(params, x)
    log_px = jax.nn.logsumexp(joint, axis=1, keepdims=True)
    resp = jnp.exp(joint - log_px) * mask[:, None]
    resp_sum, sum_x, sum_xx = _statistics(resp, x - shift(params), params.covariance_type)
    return EMStats(resp_sum, sum_x, sum_xx, jnp.sum(log_px[:, 0] * mask), mask.sum())


def _default_chunk_size(x: jax.Array, covariance_type: str) -> int | None:
    # On CPU, [chunk, K, D] intermediates that stay in cache are ~2-3x faster than whole-batch
    # ones; accelerators and explicitly sharded batches take the batch whole.
    if is_batch_sharded(x) or jax.default_backend() != "cpu":
        return None
    return 1024 if covariance_type in ("full", "tied") else 4096


@checks.validated(_check_e_step)
@functools.partial(jax.jit, static_argnames=("chunk_size",))
def e_step(params: GMM, x: jax.Array, mask: jax.Array | None = None, *, chunk_size: int | None = -1) -> EMStats:
    """E-step statistics of a batch x [B, D] (mask [B]), summed over the batch axis.

    chunk_size: rows per block of a sequential lax.scan over the batch (same sums, less memory
    traffic); None: the whole batch at once; -1 (default): on CPU for an unsharded batch 1024
    (full, tied) or 4096 (diag, spherical), else None.
    """
    mask = jnp.ones(x.shape[:1], x.dtype) if mask is None else mask.astype(x.dtype)
    chunk_size = _default_chunk_size(x, params.covariance_type) if chunk_size == -1 else chunk_size
    n = x.shape[0]
    if chunk_size is None or n <= chunk_size:
        return _block_e_step(params, x, mask)
    num_chunks = -(-n // chunk_size)
    pad = num_chunks * chunk_size - n  # padded rows get mask 0
    xs = jnp.pad(x, ((0, pad), (0, 0))).reshape(num_chunks, chunk_size, x.shape[1])
    masks = jnp.pad(mask, (0, pad)).reshape(num_chunks, chunk_size)
    first = _block_e_step(params, xs[0], masks[0])

    def body(total, block):
        return add_statistics(total, _block_e_step(params, *block)), None

    return jax.lax.scan(body, first, (xs[1:], masks[1:]))[0]


def add_statistics(a: EMStats, b: EMStats) -> EMStats:
    """Statistics of the union of two batches (same parameters)."""
    return jax.tree.map(operator.add, a, b)


def _m_step(stats: EMStats, center: jax.Array, covariance_type: str, reg_covar: float) -> GMM:
    nk = stats.resp_sum + 10 * jnp.finfo(stats.resp_sum.dtype).eps
    mean_c = stats.sum_x / nk[:, None]
    d = mean_c.shape[1]
    eye = jnp.eye(d, dtype=mean_c.dtype)
    if covariance_type == "full":
        cov = stats.sum_xx / nk[:, None, None] - mean_c[:, :, None] * mean_c[:, None, :] + reg_covar * eye
        chol = _cholesky_of_inverse(cov)
    elif covariance_type == "tied":
        cov = (stats.sum_xx - jnp.einsum("k,kd,ke->de", nk, mean_c, mean_c)) / nk.sum() + reg_covar * eye
        chol = _cholesky_of_inverse(cov)
    else:
        var = stats.sum_xx / nk[:, None] - mean_c**2 + reg_covar
        chol = 1.0 / jnp.sqrt(var if covariance_type == "diag" else var.mean(1))
    return GMM(nk / nk.sum(), center + mean_c, chol, covariance_type)


def _check_m_step(params: GMM, stats: EMStats, reg_covar, **_) -> None:
    _check_params(params)
    checks.check_finite_tree("stats", stats)
    checks.check_number("reg_covar", reg_covar, low=0.0)


@checks.validated(_check_m_step)
@jax.jit
def m_step(params: GMM, stats: EMStats, reg_covar: float = 1e-6) -> GMM:
    """New parameters from the E-step statistics taken under `params`."""
    return _m_step(stats, shift(params), params.covariance_type, reg_covar)


@checks.validated(_check_em)
@jax.jit
def em_step(params: GMM, x: jax.Array, mask: jax.Array | None = None, reg_covar: float = 1e-6) -> tuple[GMM, jax.Array]:
    """One EM iteration on a (possibly sharded) batch: (new params, mean log-likelihood under `params`)."""
    stats = e_step(params, x, mask)
    return m_step(params, stats, reg_covar), stats.log_likelihood / stats.count


def _em_loop(params: GMM, x: jax.Array, mask: jax.Array | None, max_iter: jax.Array, tol: jax.Array,
             reg_covar: jax.Array, capacity: int) -> tuple[GMM, jax.Array, jax.Array]:
    """Up to max_iter <= capacity EM iterations (both traced but capacity), stopping after the
    M-step of the first iteration whose mean log-likelihood gained less than tol in absolute
    value, as scikit-learn. Returns (params, history [capacity], NaN past the iterations run,
    iterations run)."""
    history = jnp.full((capacity,), jnp.nan, x.dtype)

    def running(carry):
        i, _, _, _, converged = carry
        return (i < max_iter) & ~converged

    def iteration(carry):
        i, p, previous, history, _ = carry
        p, ll = em_step(p, x, mask, reg_covar)
        ll = ll.astype(history.dtype)
        return i + 1, p, ll, history.at[i].set(ll), jnp.abs(ll - previous) < tol

    start = (jnp.zeros((), jnp.int32), params, jnp.full((), -jnp.inf, x.dtype), history,
             jnp.zeros((), bool))
    iterations, params, _, history, _ = jax.lax.while_loop(running, iteration, start)
    return params, history, iterations


_em_program = jax.jit(_em_loop, static_argnames=("capacity",))


def _iteration_capacity(num_iters: int) -> int:
    # The history buffer's length is a shape: bucketed, so most iteration counts share it.
    return compilation.bucket_size(num_iters, minimum=128)


@checks.validated(_check_em)
def em(params: GMM, x: jax.Array, mask: jax.Array | None = None, *, num_iters: int,
       reg_covar: float = 1e-6, tol: float = 0.0) -> tuple[GMM, np.ndarray]:
    """Up to `num_iters` EM iterations as one compiled while loop, stopping once an iteration's
    mean log-likelihood gain is below `tol` in absolute value (scikit-learn's rule; tol=0:
    exactly num_iters). The counts are traced: another num_iters or tol reuses the program.
    Returns (params, mean log-likelihood before each M-step [iterations run])."""
    checks.check_number("tol", tol, low=0.0)
    x = jnp.asarray(x)
    params, history, iterations = _em_program(params, x, mask, num_iters, tol, reg_covar,
                                              capacity=_iteration_capacity(num_iters))
    history, iterations = jax.device_get((history, iterations))
    return params, history[:iterations]


def em_split(params: GMM, split: "data_lib.Split", *, num_iters: int,
             features: Callable[[dict[str, jax.Array]], jax.Array] = lambda batch: batch["x"],
             reg_covar: float = 1e-6, batch_size: int = 4096, mesh=None) -> tuple[GMM, jax.Array]:
    """`em` on a split read `batch_size` rows at a time (in memory, or streamed from
    ArrayRecord files when it does not fit in host memory): each iteration sums the E-step
    statistics of every global batch, sharded over the `data` mesh (default: all devices of
    all hosts), then takes one M-step. `features(batch)` gives x [B, D] from the split's
    columns. Returns (params, mean log-likelihood before each M-step [num_iters]); equals `em`
    on the whole split up to the order of float summation."""
    from genjax_lab.core import loop as loop_lib

    checks.check_count("num_iters", num_iters)
    mesh = mesh_lib.data_mesh() if mesh is None else mesh
    checked = lambda p, batch: e_step(p, features(batch), batch["mask"])  # noqa: E731
    # Called from Python, e_step copies each batch to the host to check it. Every pass reads
    # the same rows, so the first pass checks them and later passes run compiled only.
    compiled = jax.jit(checked)
    log_likelihoods = []
    for iteration in range(num_iters):
        batch_stats = checked if iteration == 0 else compiled
        stats = loop_lib.sum_over_split(lambda batch, _, p=params, f=batch_stats: f(p, batch), mesh, split, batch_size)
        log_likelihoods.append(stats.log_likelihood / stats.count)
        params = m_step(params, stats, reg_covar)
    return params, jnp.stack(log_likelihoods)


# ----------------------------------------------------------------------------- initialisation
@checks.validated(_check_seeding)
@functools.partial(jax.jit, static_argnames=("num_components",))
def kmeans_plus_plus(key: jax.Array, x: jax.Array, num_components: int, mask: jax.Array | None = None) -> jax.Array:
    """k-means++ seeds: [K, D]. Each seed is a data point drawn with probability ∝ mask * D^2
    (squared distance to the nearest seed so far; the first ∝ mask). Jittable."""
    mask = jnp.ones(x.shape[:1], x.dtype) if mask is None else mask.astype(x.dtype)
    keys = jax.random.split(key, num_components)
    first = x[jax.random.categorical(keys[0], jnp.log(mask))]
    d2 = jnp.sum((x - first) ** 2, axis=1)
    centers = jnp.zeros((num_components, x.shape[1]), x.dtype).at[0].set(first)

    def body(i, carry):
        centers, d2 = carry
        # All-zero distances (fewer distinct points than K): fall back to the mask alone.
        weights = jnp.where(jnp.sum(d2 * mask) > 0, d2 * mask, mask)
        new = x[jax.random.categorical(keys[i], jnp.log(weights))]
        return centers.at[i].set(new), jnp.minimum(d2, jnp.sum((x - new) ** 2, axis=1))

    centers, _ = jax.lax.fori_loop(1, num_components, body, (centers, d2))
    return centers


def _hard_assign(x: jax.Array, centers: jax.Array) -> jax.Array:
    d2 = jnp.sum(centers**2, axis=1) - 2.0 * x @ centers.T
    return jax.nn.one_hot(jnp.argmin(d2, axis=1), centers.shape[0], dtype=x.dtype)


@checks.validated(_check_seeding)
@functools.partial(jax.jit, static_argnames=("num_components", "covariance_type"))
def init_kmeans(key: jax.Array, x: jax.Array, num_components: int, covariance_type: CovarianceType = "full",
                mask: jax.Array | None = None, *, kmeans_iters: int = 20, reg_covar: float = 1e-6) -> GMM:
    """k-means++ seeds, `kmeans_iters` Lloyd iterations (traced), then the M-step of the hard
    assignments. Jittable."""
    mask = jnp.ones(x.shape[:1], x.dtype) if mask is None else mask.astype(x.dtype)
    centers = kmeans_plus_plus(key, x, num_components, mask)

    def lloyd(_, centers):
        onehot = _hard_assign(x, centers) * mask[:, None]
        count = onehot.sum(0)
        new = batch_einsum("nk,nd->kd", onehot, x) / jnp.maximum(count, 1.0)[:, None]
        return jnp.where(count[:, None] > 0, new, centers)  # an empty cluster keeps its centre

    centers = jax.lax.fori_loop(0, kmeans_iters, lloyd, centers)
    resp = _hard_assign(x, centers) * mask[:, None]
    center = jnp.sum(x * mask[:, None], axis=0) / mask.sum()
    resp_sum, sum_x, sum_xx = _statistics(resp, x - center, covariance_type)
    zero = jnp.zeros((), x.dtype)
    return _m_step(EMStats(resp_sum, sum_x, sum_xx, zero, zero), center, covariance_type, reg_covar)


# ----------------------------------------------------------------------------- host-side fit
def _validate_fit_inputs(x, mask, num_components: int, reg_covar: float, min_points_name: str = "x") -> None:
    x_np = checks.check_array("x", x, ("N", "D"), kinds=checks.FLOAT, finite=False)
    # Every row, padding too: the k-means start reads them all.
    if not np.all(np.isfinite(x_np)):
        row, col = np.argwhere(~np.isfinite(x_np))[0]
        raise ValueError(f"x must be finite to fit a GMM, x[{row}, {col}] = {x_np[row, col]} "
                         "(use impute / condition for missing dimensions)")
    _check_mask(mask, x_np.shape[0])
    checks.check_count("num_components", num_components)
    real = x_np if mask is None else x_np[np.asarray(mask) > 0]
    if num_components > len(real):
        raise ValueError(f"num_components={num_components} must be in [1, number of real points in "
                         f"{min_points_name} = {len(real)}]")
    checks.check_number("reg_covar", reg_covar, low=0.0)


def _finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]))


def _refuse_singular(finite: bool, reg_covar: float, what: str = "the mixture") -> None:
    if not finite:
        raise ValueError(f"fitting {what} gave a singular covariance (a component collapsed onto too "
                         f"few points, or duplicate points): increase reg_covar (now {reg_covar}) or "
                         "use fewer components")


def _padded(x: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """x [N, D] and its mask padded with masked zero rows to compilation.bucket_size(N) rows,
    so that nearby data sizes share one compiled fit. NumPy arrays in the dtype JAX would
    use: the compiled call copies them to the device itself, cheaper than a copy here."""
    n = x.shape[0]
    dtype = jax.dtypes.canonicalize_dtype(x.dtype)
    rows = compilation.bucket_size(n)
    padded = np.zeros((rows, x.shape[1]), dtype)
    padded[:n] = x
    weights = np.zeros(rows, dtype)
    weights[:n] = 1.0 if mask is None else mask
    return padded, weights


def _check_fit_counts(num_iters: int, tol: float, num_inits: int, kmeans_iters: int) -> None:
    checks.check_count("num_iters", num_iters)
    checks.check_number("tol", tol, low=0.0)
    checks.check_count("num_inits", num_inits)
    checks.check_count("kmeans_iters", kmeans_iters, minimum=0)


@functools.partial(jax.jit, static_argnames=("num_components", "covariance_type", "capacity"))
def _fit_program(key, x, mask, init, start, max_iter, tol, reg_covar, kmeans_iters, *,
                 num_components: int, covariance_type: str, capacity: int):
    """Start number `start` (init_kmeans(fold_in(key, start)) unless `init`), then `_em_loop`:
    (params, history, iterations, start finite, result finite). Every number is traced."""
    if init is None:
        init = init_kmeans(jax.random.fold_in(key, start), x, num_components, covariance_type, mask,
                           kmeans_iters=kmeans_iters, reg_covar=reg_covar)
    params, history, iterations = _em_loop(init, x, mask, max_iter, tol, reg_covar, capacity)
    return params, history, iterations, _finite(init), _finite(params)


def fit(key: jax.Array, x: jax.Array, num_components: int,
        covariance_type: CovarianceType = "full", *, mask: jax.Array | None = None,
        num_iters: int = 100, tol: float = 1e-3, num_inits: int = 1, reg_covar: float = 1e-6,
        init: GMM | None = None, kmeans_iters: int = 20) -> tuple[GMM, np.ndarray]:
    """Fits a GMM to x [N, D] (mask [N]) as scikit-learn's GaussianMixture: a start, then EM
    until an iteration's mean log-likelihood gain falls below `tol` (absolute; 0: never) or
    after `num_iters` iterations; the best final log-likelihood of `num_inits` starts.

    Start i is init_kmeans(fold_in(key, i)), or `init` (then num_inits must be 1). Returns
    (params, the best start's mean log-likelihood before each M-step [iterations run]): its
    length is the iteration EM stopped at. Host-side: validates inputs, refuses a result with
    a singular covariance. Rows are padded (masked) to compilation.bucket_size(N), and the
    counts and tolerances are traced, so another size in the bucket, num_iters, tol, reg_covar,
    kmeans_iters or num_inits runs the same compiled program.
    """
    _check_type(covariance_type)
    _validate_fit_inputs(x, mask, num_components, reg_covar)
    _check_fit_counts(num_iters, tol, num_inits, kmeans_iters)
    x_np, d = np.asarray(x), np.shape(x)[1]
    if init is not None:
        _check_params(init, "init")
        if init.num_features != d or init.covariance_type != covariance_type:
            raise ValueError(f"init must be a {covariance_type} GMM over D={d} features, got a "
                             f"{init.covariance_type} GMM over {init.num_features}")
        if num_inits != 1:
            raise ValueError(f"num_inits must be 1 with init (every start would be init), "
                             f"got {num_inits}")
    x_padded, mask_padded = _padded(x_np, None if mask is None else np.asarray(mask))
    best = None
    for start in range(num_inits):
        params, history, iterations, init_ok, ok = _fit_program(
            key, x_padded, mask_padded, init, start, num_iters, tol, reg_covar, kmeans_iters,
            num_components=num_components, covariance_type=covariance_type,
            capacity=_iteration_capacity(num_iters))
        history, iterations, init_ok, ok = jax.device_get((history, iterations, init_ok, ok))
        _refuse_singular(init_ok, reg_covar, "the k-means initialisation")
        _refuse_singular(ok, reg_covar)
        history = history[:iterations]
        if best is None or history[-1] > best[1][-1]:
            best = params, history
    return best


# ----------------------------------------------------------------------------- sampling
def _check_sample(params: GMM, num_samples: int, **_) -> None:
    _check_params(params)
    checks.check_count("num_samples", num_samples)


@checks.validated(_check_sample)
@functools.partial(jax.jit, static_argnames=("num_samples",))
def sample(key: jax.Array, params: GMM, num_samples: int) -> tuple[jax.Array, jax.Array]:
    """(x [N, D], component labels int [N]) ~ p(x, z)."""
    label_key, noise_key = jax.random.split(key)
    labels = jax.random.categorical(label_key, jnp.log(params.weights), shape=(num_samples,))
    chol = jnp.linalg.cholesky(full_covariances(params))  # [K, D, D]
    noise = jax.random.normal(noise_key, (num_samples, params.num_features), params.means.dtype)
    return params.means[labels] + jnp.einsum("nde,ne->nd", chol[labels], noise), labels


def _condition_one(mean, cov, x, obs):
    """Conditioning of one component on one example (obs: float 0/1 [D], x: zeros where missing)."""
    # Sigma_oo embedded with identity on the missing block: its Cholesky gives Sigma_oo's.
    embedded = cov * obs[:, None] * obs[None, :] + jnp.diag(1.0 - obs)
    lower = jnp.linalg.cholesky(embedded)
    diff = (x - mean) * obs
    white = solve_triangular(lower, diff[:, None], lower=True)[:, 0]
    log_density = -0.5 * (jnp.sum(obs) * math.log(2 * math.pi) + white @ white) - jnp.sum(jnp.log(jnp.diagonal(lower)))

    def solve(b):  # embedded^-1 b: Sigma_oo^-1 on the observed block, zero-coupled elsewhere
        return solve_triangular(lower, solve_triangular(lower, b, lower=True), lower=True, trans="T")

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
    """Mixture posterior given the observed dimensions of each x_n [N, D] (NaN or `observed` False = missing)."""
    x = jnp.asarray(x)
    obs = _observed(x, observed).astype(params.means.dtype)
    x = jnp.where(obs > 0, x, 0.0)
    per_component = jax.vmap(_condition_one, in_axes=(0, 0, None, None))  # over k
    log_density, means, chol = jax.vmap(per_component, in_axes=(None, None, 0, 0))(
        params.means, full_covariances(params), x, obs)
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
def sample_conditional(key: jax.Array, params: GMM, x: jax.Array, observed: jax.Array | None = None) -> jax.Array:
    """x_missing ~ p(x_missing | x_observed) for each row: [N, D], observed entries kept."""
    cond = condition(params, x, observed)
    label_key, noise_key = jax.random.split(key)
    labels = jax.random.categorical(label_key, cond.log_weights, axis=1)
    rows = jnp.arange(labels.shape[0])
    mean, chol = cond.means[rows, labels], cond.cov_cholesky[rows, labels]
    noise = jax.random.normal(noise_key, mean.shape, mean.dtype)
    drawn = mean + jnp.einsum("nde,ne->nd", chol, noise)
    return jnp.where(_observed(jnp.asarray(x), observed), mean, drawn)


# ----------------------------------------------------------------------------- classifier
@struct.dataclass
class MixtureClassifier:
    """class_log_prior [C]; components: a GMM whose arrays carry a leading class axis [C, ...]."""

    class_log_prior: jax.Array
    components: GMM


@functools.partial(jax.jit, static_argnames=("num_components", "covariance_type", "capacity"))
def _fit_classes_program(keys, x, class_masks, max_iter, tol, reg_covar, kmeans_iters, *,
                         num_components: int, covariance_type: str, capacity: int):
    def one(key, mask):
        init = init_kmeans(key, x, num_components, covariance_type, mask, kmeans_iters=kmeans_iters,
                           reg_covar=reg_covar)
        return _em_loop(init, x, mask, max_iter, tol, reg_covar, capacity)

    components, history, iterations = jax.vmap(one)(keys, class_masks)
    return components, history, iterations, _finite(components)


def fit_classifier(key: jax.Array, x: jax.Array, y: jax.Array, num_classes: int, num_components: int,
                   covariance_type: CovarianceType = "full", *, mask: jax.Array | None = None,
                   num_iters: int = 100, tol: float = 1e-3, reg_covar: float = 1e-6,
                   class_prior: jax.Array | None = None,
                   kmeans_iters: int = 20) -> tuple[MixtureClassifier, np.ndarray]:
    """One GMM per class (all fitted at once, vmapped over classes with class masks) + class priors.

    x [N, D], y int [N]; each class's EM stops as `fit`'s. Returns (classifier, per-class mean
    log-likelihoods [C, most iterations run], NaN past the iterations a class ran).
    """
    _check_type(covariance_type)
    checks.check_count("num_classes", num_classes)
    _check_fit_counts(num_iters, tol, 1, kmeans_iters)
    x_np = checks.check_array("x", x, ("N", "D"), kinds=checks.FLOAT, finite=False)
    y_np = checks.check_array("y", y, (x_np.shape[0],), kinds=checks.INTEGER)
    mask_np = np.ones(len(x_np)) if mask is None else _check_mask(mask, len(x_np))
    if y_np.min() < 0 or y_np.max() >= num_classes:
        raise ValueError(f"y must be [N] class indices in [0, num_classes={num_classes})")
    if class_prior is not None:
        checks.check_simplex("class_prior", class_prior, (num_classes,))
    for c in range(num_classes):
        _validate_fit_inputs(x_np, mask_np * (y_np == c), num_components, reg_covar, f"class {c} of y")
    x_padded, _ = _padded(x_np, None)
    class_masks = np.zeros((num_classes, x_padded.shape[0]), x_padded.dtype)
    class_masks[:, :len(x_np)] = (y_np[None, :] == np.arange(num_classes)[:, None]) * mask_np
    components, history, iterations, ok = _fit_classes_program(
        jax.random.split(key, num_classes), x_padded, jnp.asarray(class_masks), num_iters, tol,
        reg_covar, kmeans_iters, num_components=num_components, covariance_type=covariance_type,
        capacity=_iteration_capacity(num_iters))
    history, iterations, ok = jax.device_get((history, iterations, ok))
    _refuse_singular(ok, reg_covar, "a class-conditional mixture")
    counts = class_masks.sum(1)
    if class_prior is None:
        log_prior = np.log(counts) - np.log(counts.sum())
    else:
        log_prior = np.log(np.asarray(class_prior, x_padded.dtype))
    classifier = MixtureClassifier(jnp.asarray(log_prior, x_padded.dtype), components)
    return classifier, history[:, :iterations.max()]


def _check_classifier_input(clf: MixtureClassifier, x, **_) -> None:
    checks.check_finite_tree("clf.class_log_prior", clf.class_log_prior, allow_neg_inf=True)
    _check_scoring(clf.components, x)


@checks.validated(_check_classifier_input)
@jax.jit
def classifier_log_joint(clf: MixtureClassifier, x: jax.Array) -> jax.Array:
    """log p(x_n, y = c): [N, C]."""
    per_class = jax.vmap(log_likelihood, in_axes=(0, None), out_axes=1)(clf.components, x)
    return clf.class_log_prior + per_class


@checks.validated(_check_classifier_input)
@jax.jit
def classifier_predict_log_proba(clf: MixtureClassifier, x: jax.Array) -> jax.Array:
    """log p(y = c | x_n) by Bayes' rule: [N, C]."""
    joint = classifier_log_joint(clf, x)
    return joint - jax.nn.logsumexp(joint, axis=1, keepdims=True)


@checks.validated(_check_classifier_input)
@jax.jit
def classifier_predict(clf: MixtureClassifier, x: jax.Array) -> jax.Array:
    """Most probable class: int [N]."""
    return jnp.argmax(classifier_log_joint(clf, x), axis=1)
