"""Gaussian mixtures, EM: the E-step statistics, the M-step, `em_step`, whole EM runs (`em`,
`em_split`) and the k-means start (`init_kmeans`).

EM, one iteration (`em_step`): the E-step forms responsibilities r_nk = p(z=k | x_n) in log
space (logsumexp) and their statistics, mask-weighted sums over the batch axis (`e_step`):
  N_k = sum_n r_nk, S1_k = sum_n r_nk (x_n - c_k), S2_k = sum_n r_nk (x_n - c_k)(x_n - c_k)^T
(diag/spherical keep the diagonal of S2; tied keeps sum_k S2_k), plus the sum of log p(x_n).
For full and tied covariances each component's centre c_k is its mean under the current
parameters, so the covariance below cancels only what the mean moved in the iteration (as
scikit-learn's centred estimate; moments about one shared centre lose a float32 cluster
whose spread is small beside its distance from that centre). Diag and spherical take one
shared centre c = sum_k w_k mu_k, in one matmul (scikit-learn's diag and spherical use raw
moments). Being batch sums, the statistics
of a sharded batch are reduced across devices inside jit, and those of streamed batches add
(`add_statistics`); `m_step` then gives the new parameters (scikit-learn's estimators):
  N_k += 10 eps (no empty component), w = N / sum N, mu_k = c_k + S1_k / N_k,
  Sigma_k = S2_k / N_k - (S1_k / N_k)(S1_k / N_k)^T + reg_covar I   (full; diag: diagonal;
  spherical: mean of the diagonal; tied: (sum_k S2_k - sum_k N_k m_k m_k^T) / sum N + reg I).
Each iteration cannot decrease the log-likelihood (tested). `em` runs EM as one compiled
`lax.while_loop` whose iteration count and tolerance are traced values: it stops, as
scikit-learn, after the first iteration whose mean log-likelihood gain is below `tol`, and
returns the log-likelihood before each M-step.

Initialisation (`init_kmeans`, jittable, vmappable over classes): k-means
(genjax_lab.inference.kmeans), then one M-step from the hard assignments. To reproduce a
scikit-learn run, build the same start with `from_precisions` (its means_init, weights_init,
precisions_init) instead.
"""

import functools
import operator
from collections.abc import Callable
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from genjax_lab.core import checks, compilation
from genjax_lab.core import mesh as mesh_lib
from genjax_lab.core.mesh import batch_einsum, is_batch_sharded
from genjax_lab.inference import kmeans as kmeans_lib
from genjax_lab.models.gmm.model import (
    GMM,
    CovarianceType,
    _check_mask,
    _check_params,
    _check_points,
    _check_type,
    _cholesky_of_inverse,
    _log_joint,
    shared_centre_is_exact,
    shift,
)

if TYPE_CHECKING:  # the training loop (checkpoints, Orbax) is imported only by em_split
    from genjax_lab.core import data as data_lib


@struct.dataclass
class EMStats:
    """resp_sum [K], sum_x [K, D], sum_xx (full [K, D, D], diag/spherical [K, D], tied [D, D]),
    log_likelihood (sum of mask * log p(x_n)), count (sum of mask). Sums of x are taken about
    each component's mean under the parameters of the E-step (`_statistics`)."""

    resp_sum: jax.Array
    sum_x: jax.Array
    sum_xx: jax.Array
    log_likelihood: jax.Array
    count: jax.Array


def _check_e_step(params: GMM, x, mask, chunk_size=-1, **_) -> None:
    _check_params(params)
    _check_points(params, x, mask, padding_ignored=True)
    if chunk_size not in (None, -1):
        checks.check_count("chunk_size", chunk_size)


def _check_em(params: GMM, x, mask, reg_covar, num_iters: int = 1, **_) -> None:
    _check_e_step(params, x, mask)
    checks.check_number("reg_covar", reg_covar, low=0.0)
    checks.check_count("num_iters", num_iters)


def _check_seeding(
    x,
    num_components: int,
    mask=None,
    covariance_type: str = "full",
    kmeans_iters: int = 0,
    reg_covar: float = 0.0,
    **_,
) -> None:
    _check_mask(mask, checks.check_array("x", x, ("N", "D"), kinds=checks.FLOAT).shape[0])
    _check_type(covariance_type)
    checks.check_count("num_components", num_components)
    checks.check_count("kmeans_iters", kmeans_iters, minimum=0)
    checks.check_number("reg_covar", reg_covar, low=0.0)


# ----------------------------------------------------------------------------- EM
# Covariance types whose statistics are always taken about each component's own mean. Diag
# and spherical take theirs about one shared centre, in one matmul (9x faster per chunk of
# 1,024 points, K = 32, D = 16, than per-component centring), except where that centre would
# lose digits (model.shared_centre_is_exact; scikit-learn's diag and spherical estimates use
# raw moments, and lose float32 clusters far apart beside their spread).
_PER_COMPONENT_CENTRES = ("full", "tied")


def _centres(params: GMM) -> jax.Array:
    """The centres [K, D] of the E-step statistics under `params`: each component's mean, or
    for diag and spherical mixtures whose shared centre keeps its digits, shift(params)."""
    if params.covariance_type in _PER_COMPONENT_CENTRES:
        return params.means
    shared = jnp.broadcast_to(shift(params), params.means.shape)
    return jnp.where(shared_centre_is_exact(params), shared, params.means)


def _statistics(
    resp: jax.Array, x: jax.Array, centers: jax.Array, covariance_type: str
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(resp_sum [K], sum_x [K, D], sum_xx) of x [N, D] about `centers` (each component's own
    [K, D], or one shared [D] for diag and spherical), under mask-weighted responsibilities
    resp [N, K]: sum_x = sum_n r_nk (x_n - c_k), sum_xx the same of the outer products (full
    [K, D, D], tied summed over the components [D, D], diag and spherical their diagonals
    [K, D]).

    About each component's centre (its current mean), the M-step's covariance
    sum_xx / N_k - d d^T (d = sum_x / N_k) cancels only what the mean moved, as scikit-learn's
    centred estimate: about one shared centre, float32 clusters at +-100 with spread 0.01
    lost their covariance to rounding (a "singular" fit scikit-learn does not have).
    """
    if centers.ndim == 1:
        xc = x - centers
        moments = batch_einsum("nk,nf->kf", resp, jnp.concatenate([xc, xc * xc], axis=1))
        d = x.shape[1]
        return resp.sum(0), moments[:, :d], moments[:, d:]
    if covariance_type not in _PER_COMPONENT_CENTRES:

        def one(weights, centre):  # one component at a time: N x D temporaries
            xc = x - centre
            moments = batch_einsum("n,nf->f", weights, jnp.concatenate([xc, xc * xc], axis=1))
            return jnp.split(moments, 2)

        sum_x, sum_xx = jax.lax.map(lambda wc: one(*wc), (resp.T, centers))
        return resp.sum(0), sum_x, sum_xx
    xc = x[:, None, :] - centers[None]  # [N, K, D]
    weighted = resp[:, :, None] * xc
    sum_x = batch_einsum("nk,nkd->kd", resp, xc)
    if covariance_type == "full":
        return resp.sum(0), sum_x, batch_einsum("nkd,nke->kde", weighted, xc)
    return resp.sum(0), sum_x, batch_einsum("nkd,nke->de", weighted, xc)


def _weighted_means(resp: jax.Array, x: jax.Array) -> jax.Array:
    """sum_n r_nk x_n / sum_n r_nk: [K, D], the first pass of a two-pass (exactly centred)
    M-step where the whole batch is at hand."""
    nk = resp.sum(0) + 10 * jnp.finfo(resp.dtype).eps
    return batch_einsum("nk,nd->kd", resp, x) / nk[:, None]


def _block_e_step(params: GMM, x: jax.Array, mask: jax.Array) -> EMStats:
    x = jnp.where(mask[:, None] > 0, x, 0.0)  # padding rows may hold anything
    joint = _log_joint(params, x)
    log_px = jax.nn.logsumexp(joint, axis=1, keepdims=True)
    resp = jnp.exp(joint - log_px) * mask[:, None]
    kind = params.covariance_type
    if kind in _PER_COMPONENT_CENTRES:
        resp_sum, sum_x, sum_xx = _statistics(resp, x, params.means, kind)
    else:
        resp_sum, sum_x, sum_xx = jax.lax.cond(
            shared_centre_is_exact(params),
            lambda: _statistics(resp, x, shift(params), kind),
            lambda: _statistics(resp, x, params.means, kind),
        )
    return EMStats(resp_sum, sum_x, sum_xx, jnp.sum(log_px[:, 0] * mask), mask.sum())


def _default_chunk_size(x: jax.Array, covariance_type: str) -> int | None:
    # On CPU, [chunk, K, D] intermediates that stay in cache are ~2-3x faster than whole-batch
    # ones; accelerators and explicitly sharded batches take the batch whole.
    if is_batch_sharded(x) or jax.default_backend() != "cpu":
        return None
    return 1024 if covariance_type in ("full", "tied") else 4096


@checks.validated(_check_e_step)
@functools.partial(jax.jit, static_argnames=("chunk_size",))
def e_step(
    params: GMM, x: jax.Array, mask: jax.Array | None = None, *, chunk_size: int | None = -1
) -> EMStats:
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


def _moments(
    stats: EMStats, covariance_type: str, reg_covar: float
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(N_k [K], means about the statistics' centres [K, D], covariances in scikit-learn's
    layout with reg_covar added): scikit-learn's `_estimate_gaussian_parameters`, shared by
    EM's M-step and the variational mixture's (gmm.bayesian)."""
    nk = stats.resp_sum + 10 * jnp.finfo(stats.resp_sum.dtype).eps
    mean_c = stats.sum_x / nk[:, None]
    d = mean_c.shape[1]
    eye = jnp.eye(d, dtype=mean_c.dtype)
    if covariance_type == "full":
        cov = (
            stats.sum_xx / nk[:, None, None]
            - mean_c[:, :, None] * mean_c[:, None, :]
            + reg_covar * eye
        )
    elif covariance_type == "tied":
        outer = jnp.einsum("k,kd,ke->de", nk, mean_c, mean_c)
        cov = (stats.sum_xx - outer) / nk.sum() + reg_covar * eye
    else:
        cov = stats.sum_xx / nk[:, None] - mean_c**2 + reg_covar
        if covariance_type == "spherical":
            cov = cov.mean(1)
    return nk, mean_c, cov


def _m_step(stats: EMStats, centers: jax.Array, covariance_type: str, reg_covar: float) -> GMM:
    """The new mixture from statistics taken about `centers` ([K, D] or shared [D])."""
    nk, mean_c, cov = _moments(stats, covariance_type, reg_covar)
    if covariance_type in ("full", "tied"):
        chol = _cholesky_of_inverse(cov)
    else:
        chol = 1.0 / jnp.sqrt(cov)
    return GMM(nk / nk.sum(), centers + mean_c, chol, covariance_type)


def _check_m_step(params: GMM, stats: EMStats, reg_covar, **_) -> None:
    _check_params(params)
    checks.check_finite_tree("stats", stats)
    checks.check_number("reg_covar", reg_covar, low=0.0)


@checks.validated(_check_m_step)
@jax.jit
def m_step(params: GMM, stats: EMStats, reg_covar: float = 1e-6) -> GMM:
    """New parameters from the E-step statistics taken under `params`."""
    return _m_step(stats, _centres(params), params.covariance_type, reg_covar)


@checks.validated(_check_em)
@jax.jit
def em_step(
    params: GMM, x: jax.Array, mask: jax.Array | None = None, reg_covar: float = 1e-6
) -> tuple[GMM, jax.Array]:
    """One EM iteration on a (possibly sharded) batch: (new params, mean log-likelihood under
    `params`)."""
    stats = e_step(params, x, mask)
    return m_step(params, stats, reg_covar), stats.log_likelihood / stats.count


def converging_loop(
    step: Callable,
    params,
    max_iter: jax.Array,
    tol: jax.Array,
    capacity: int,
    dtype,
) -> tuple:
    """Up to max_iter <= capacity calls params, objective = step(params) in one
    `lax.while_loop` (max_iter and tol traced), stopping after the first call whose objective
    changed by less than tol in absolute value from the previous call's, as scikit-learn's
    mixtures stop. Returns (params, objectives [capacity] NaN past the calls made, calls)."""
    history = jnp.full((capacity,), jnp.nan, dtype)

    def running(carry):
        i, _, _, _, converged = carry
        return (i < max_iter) & ~converged

    def iteration(carry):
        i, p, previous, history, _ = carry
        p, objective = step(p)
        objective = objective.astype(history.dtype)
        converged = jnp.abs(objective - previous) < tol
        return i + 1, p, objective, history.at[i].set(objective), converged

    start = (
        jnp.zeros((), jnp.int32),
        params,
        jnp.full((), -jnp.inf, dtype),
        history,
        jnp.zeros((), bool),
    )
    iterations, params, _, history, _ = jax.lax.while_loop(running, iteration, start)
    return params, history, iterations


def _em_loop(
    params: GMM,
    x: jax.Array,
    mask: jax.Array | None,
    max_iter: jax.Array,
    tol: jax.Array,
    reg_covar: jax.Array,
    capacity: int,
) -> tuple[GMM, jax.Array, jax.Array]:
    """Up to max_iter <= capacity EM iterations (`converging_loop` on the mean
    log-likelihood before each M-step). Returns (params, history [capacity], NaN past the
    iterations run, iterations run)."""
    step = lambda p: em_step(p, x, mask, reg_covar)
    return converging_loop(step, params, max_iter, tol, capacity, x.dtype)


_em_program = jax.jit(_em_loop, static_argnames=("capacity",))


def _iteration_capacity(num_iters: int) -> int:
    # The history buffer's length is a shape: bucketed, so most iteration counts share it.
    return compilation.bucket_size(num_iters, minimum=128)


@checks.validated(_check_em)
def em(
    params: GMM,
    x: jax.Array,
    mask: jax.Array | None = None,
    *,
    num_iters: int,
    reg_covar: float = 1e-6,
    tol: float = 0.0,
) -> tuple[GMM, np.ndarray]:
    """Up to `num_iters` EM iterations as one compiled while loop, stopping once an iteration's
    mean log-likelihood gain is below `tol` in absolute value (scikit-learn's rule; tol=0:
    exactly num_iters). The counts are traced: another num_iters or tol reuses the program.
    Returns (params, mean log-likelihood before each M-step [iterations run])."""
    checks.check_number("tol", tol, low=0.0)
    x = jnp.asarray(x)
    params, history, iterations = _em_program(
        params, x, mask, num_iters, tol, reg_covar, capacity=_iteration_capacity(num_iters)
    )
    history, iterations = jax.device_get((history, iterations))
    return params, history[:iterations]


def em_split(
    params: GMM,
    split: "data_lib.Split",
    *,
    num_iters: int,
    features: Callable[[dict[str, jax.Array]], jax.Array] = lambda batch: batch["x"],
    reg_covar: float = 1e-6,
    batch_size: int = 4096,
    mesh=None,
) -> tuple[GMM, jax.Array]:
    """`em` on a split read `batch_size` rows at a time (in memory, or streamed from
    ArrayRecord files when it does not fit in host memory): each iteration sums the E-step
    statistics of every global batch, sharded over the `data` mesh (default: all devices of
    all hosts), then takes one M-step. `features(batch)` gives x [B, D] from the split's
    columns. Returns (params, mean log-likelihood before each M-step [num_iters]); equals `em`
    on the whole split up to the order of float summation."""
    from genjax_lab.core import splits  # imported here: it brings in the input pipeline

    checks.check_count("num_iters", num_iters)
    mesh = mesh_lib.data_mesh() if mesh is None else mesh
    checked = lambda p, batch: e_step(p, features(batch), batch["mask"])
    # Called from Python, e_step copies each batch to the host to check it. Every pass reads
    # the same rows, so the first pass checks them and later passes run compiled only.
    compiled = jax.jit(checked)
    log_likelihoods = []
    for iteration in range(num_iters):
        batch_stats = checked if iteration == 0 else compiled
        stats = splits.sum_over_split(
            lambda batch, _, p=params, f=batch_stats: f(p, batch), mesh, split, batch_size
        )
        log_likelihoods.append(stats.log_likelihood / stats.count)
        params = m_step(params, stats, reg_covar)
    return params, jnp.stack(log_likelihoods)


# ----------------------------------------------------------------------------- initialisation
@checks.validated(_check_seeding)
@functools.partial(jax.jit, static_argnames=("num_components", "covariance_type"))
def init_kmeans(
    key: jax.Array,
    x: jax.Array,
    num_components: int,
    covariance_type: CovarianceType = "full",
    mask: jax.Array | None = None,
    *,
    kmeans_iters: int = 20,
    reg_covar: float = 1e-6,
) -> GMM:
    """k-means (genjax_lab.inference.kmeans: k-means++ seeds, `kmeans_iters` Lloyd iterations,
    traced), then the M-step of the hard assignments. Jittable."""
    mask = jnp.ones(x.shape[:1], x.dtype) if mask is None else mask.astype(x.dtype)
    centers = kmeans_lib.kmeans(key, x, num_components, mask, num_iters=kmeans_iters)
    resp = kmeans_lib.hard_assign(x, centers) * mask[:, None]
    # The whole batch is at hand: two passes, the means, then moments about them.
    centers = _weighted_means(resp, x)
    resp_sum, sum_x, sum_xx = _statistics(resp, x, centers, covariance_type)
    zero = jnp.zeros((), x.dtype)
    stats = EMStats(resp_sum, sum_x, sum_xx, zero, zero)
    return _m_step(stats, centers, covariance_type, reg_covar)
