"""log Z of RBMs and DBMs: annealed importance sampling (Salakhutdinov & Murray, ICML 2008)
and exact enumeration for small models.

AIS. With the base-rate model A (zero weights, zero hidden biases, visible biases b_A fit
to the training data's pixel means) and the target B = (W, b, c), the intermediate models
at inverse temperature beta are
    log p*_beta(v) = (1 - beta) b_A.v + beta b.v + sum_j softplus(beta (c_j + (v W)_j))
(Gaussian visible units: -(1 - beta) |v - b_A|^2 / 2 - beta |v - b|^2 / 2 in place of the
linear terms), so p_0 = A with log Z_A = sum_i softplus(b_A,i) + H log 2 (Gaussian:
V/2 log 2 pi + H log 2) and p_1 = B. Each run draws v ~ A, then for k = 1..K adds
log p*_k(v) - log p*_{k-1}(v) to its log weight and moves v by one Gibbs sweep that
leaves p_k invariant (h ~ p(h | v; beta_k), v ~ p(v | h; beta_k)). Z_B / Z_A is estimated
by the mean of the M weights w_m: log Z_B = log Z_A + log mean_m w_m. The spread is
reported as the paper does, log(Z_hat +- 3 sigma_hat) with sigma_hat = std(w) / sqrt(M),
and as the delta-method standard deviation of log Z_hat, sigma_hat / Z_hat. AIS is
unbiased for Z, so log Z_hat underestimates log Z on average: test log-likelihoods from it
tend to be optimistic.

Runs are a vector (vmap) and temperatures a lax.scan; run m's randomness is fold_in(key, m),
so sharding the runs over a 'data' mesh (shard_map, no collectives) gives the same weights.

DBM: given h1, v and h2 are independent, so a 2-layer DBM is the RBM with hidden h1 and
visible [v, h2] (`boltzmann.dbm_as_rbm`). Its log Z is that RBM's: AIS anneals the DBM's
joint with h1 sampled and both v and h2 summed out analytically in the weights; the base
model fits b_A to the pixel means for v and is uniform (b_A = 0) for h2.

Exact log Z enumerates the smaller layer (Bernoulli; Gaussian visible units: always the
hidden layer, integrating v in closed form), in chunks of `chunk_size` states.
"""
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from genjax_lab.core.mesh import DATA_AXIS
from genjax_lab.models.boltzmann import (
    DBMParams,
    RBMParams,
    chain_keys,
    check_visible,
    dbm_as_rbm,
    sample_bernoulli,
    sample_normal,
    visible_bias_from_mean,
)

_LOG_2PI = math.log(2 * math.pi)
MAX_ENUMERATION_BITS = 26


class AISResult(NamedTuple):
    log_z: float  # log Z_A + log mean(w)
    log_z_lower: float  # log(Z_hat - 3 sigma_hat); -inf when the interval reaches 0
    log_z_upper: float  # log(Z_hat + 3 sigma_hat)
    log_z_std: float  # sigma_hat / Z_hat, the delta-method std of log Z_hat
    log_z_base: float  # log Z_A
    log_weights: np.ndarray  # [M] log(Z_B / Z_A) estimates of the single runs


# ----------------------------------------------------------------------------- schedules


def piecewise_schedule(num_temperatures: int = 14_500, breaks=(0.5, 0.9), fractions=(500, 4000, 10000)) -> np.ndarray:
    """Inverse temperatures 0 = beta_0 < ... < beta_K = 1, uniform within each piece.

    Pieces [0, 0.5), [0.5, 0.9), [0.9, 1] get `num_temperatures` steps in the proportions
    `fractions`; the default is the paper's 0:1e-3:0.5, 0.5:1e-4:0.9, 0.9:1e-5:1
    (14,500 steps, 14,501 values). Returns float64 [K + 1].
    """
    edges = (0.0, *breaks, 1.0)
    if len(fractions) != len(edges) - 1 or any(f <= 0 for f in fractions):
        raise ValueError(f"fractions must be {len(edges) - 1} positive numbers, got {fractions}")
    if any(a >= b for a, b in zip(edges[:-1], edges[1:])):
        raise ValueError(f"breaks must increase strictly inside (0, 1), got {breaks}")
    counts = np.maximum(1, np.round(num_temperatures * np.asarray(fractions) / np.sum(fractions))).astype(int)
    pieces = [np.linspace(lo, hi, n, endpoint=False) for lo, hi, n in zip(edges[:-1], edges[1:], counts)]
    return np.concatenate([*pieces, [1.0]])


def paper_schedule() -> np.ndarray:
    """0:1e-3:0.5, 0.5:1e-4:0.9, 0.9:1e-5:1 (Salakhutdinov & Murray 2008): [14501]."""
    return piecewise_schedule(14_500)


def _check_betas(betas) -> np.ndarray:
    betas = np.asarray(betas, np.float64)
    if betas.ndim != 1 or betas.size < 2:
        raise ValueError(f"betas must be a 1-D array of at least 2 inverse temperatures, got shape {betas.shape}")
    if betas[0] != 0.0 or betas[-1] != 1.0:
        raise ValueError(f"betas must start at 0 and end at 1, got {betas[0]} ... {betas[-1]}")
    if np.any(np.diff(betas) < 0):
        raise ValueError(f"betas must be non-decreasing; first decrease at index {int(np.argmax(np.diff(betas) < 0)) + 1}")
    return betas


# ----------------------------------------------------------------------------- AIS


def base_rate_bias(data, *, visible: str = "bernoulli", eps: float = 1e-3) -> np.ndarray:
    """b_A of the base-rate model from training data [N, ...]: logit of clipped pixel means
    (Bernoulli) or the means (Gaussian): [V]."""
    check_visible(visible)
    data = np.asarray(data, np.float64)
    return visible_bias_from_mean(data.reshape(data.shape[0], -1).mean(0), visible, eps)


def _linear_terms(v, bias, visible: str):
    """The beta-independent visible part of log p*: b.v or -|v - b|^2 / 2: [M]."""
    return v @ bias if visible == "bernoulli" else -0.5 * jnp.sum((v - bias) ** 2, -1)


def _ais_local(params: RBMParams, base_bias, betas, keys, visible: str):
    """Log weights of the runs whose keys are `keys` [M]: [M]."""
    init_keys = jax.vmap(jax.random.fold_in, (0, None))(keys, 0)
    probs_or_mean = jnp.broadcast_to(base_bias, (keys.shape[0], base_bias.shape[0]))
    if visible == "bernoulli":
        v = sample_bernoulli(init_keys, jax.nn.sigmoid(probs_or_mean))
    else:
        v = sample_normal(init_keys, probs_or_mean)

    def body(carry, xs):
        v, log_w = carry
        beta_prev, beta, t = xs
        logits = v @ params.W + params.b_hid
        gap = _linear_terms(v, params.b_vis, visible) - _linear_terms(v, base_bias, visible)
        log_w += (beta - beta_prev) * gap + jnp.sum(jax.nn.softplus(beta * logits) - jax.nn.softplus(beta_prev * logits), -1)
        pairs = jax.vmap(jax.random.split)(jax.vmap(jax.random.fold_in, (0, None))(keys, t))
        h = sample_bernoulli(pairs[:, 0], jax.nn.sigmoid(beta * logits))
        field = (1.0 - beta) * base_bias + beta * (params.b_vis + h @ params.W.T)
        v = sample_bernoulli(pairs[:, 1], jax.nn.sigmoid(field)) if visible == "bernoulli" else sample_normal(pairs[:, 1], field)
        return (v, log_w), None

    xs = (betas[:-1], betas[1:], jnp.arange(1, betas.shape[0]))
    (_, log_w), _ = jax.lax.scan(body, (v, jnp.zeros_like(v[:, 0])), xs)  # zeros_like: varying across devices like v
    return log_w


@functools.partial(jax.jit, static_argnames=("num_runs", "visible", "mesh"))
def _ais_log_weights(params, base_bias, betas, key, num_runs: int, visible: str, mesh: Mesh | None):
    if mesh is None:
        return _ais_local(params, base_bias, betas, chain_keys(key, 0, num_runs), visible)

    def local(params, base_bias, betas, key):
        n = num_runs // mesh.shape[DATA_AXIS]
        keys = chain_keys(key, jax.lax.axis_index(DATA_AXIS) * n, n)
        return _ais_local(params, base_bias, betas, keys, visible)

    return jax.shard_map(local, mesh=mesh, in_specs=(P(), P(), P(), P()), out_specs=P(DATA_AXIS))(
        params, base_bias, betas, key)


def summarize_log_weights(log_weights, log_z_base: float) -> AISResult:
    """log Z = log Z_A + log mean(w), with log(Z_hat +- 3 std(w) / sqrt(M)) bounds (float64)."""
    log_weights = np.asarray(log_weights, np.float64)
    if not np.all(np.isfinite(log_weights)):
        raise FloatingPointError(f"{np.sum(~np.isfinite(log_weights))} AIS log weights are not finite")
    shift = log_weights.max()
    w = np.exp(log_weights - shift)
    mean = w.mean()
    sigma = w.std(ddof=1) / math.sqrt(w.size) if w.size > 1 else 0.0
    lower = np.log(mean - 3 * sigma) if mean > 3 * sigma else -np.inf
    return AISResult(log_z=float(log_z_base + shift + np.log(mean)), log_z_lower=float(log_z_base + shift + lower),
                     log_z_upper=float(log_z_base + shift + np.log(mean + 3 * sigma)), log_z_std=float(sigma / mean),
                     log_z_base=float(log_z_base), log_weights=log_weights)


def ais_log_z(params: RBMParams, betas, key, num_runs: int = 100, *, base_vis_bias=None, visible: str = "bernoulli",
              mesh: Mesh | None = None) -> AISResult:
    """AIS estimate of log Z for an RBM (Salakhutdinov & Murray 2008).

    params: W [V, H], b_vis [V], b_hid [H]. betas: [K + 1] from 0 to 1 (`paper_schedule()`
    or `piecewise_schedule(K)`). base_vis_bias: [V] b_A (`base_rate_bias(train_data)`);
    None: zeros (uniform base for Bernoulli, N(0, I) for Gaussian). mesh: shard the runs
    over its 'data' axis (num_runs a multiple of its size); results equal the unsharded run.
    """
    check_visible(visible)
    betas = _check_betas(betas)
    num_visible, num_hidden = params.W.shape
    if num_runs < 2:
        raise ValueError(f"num_runs must be at least 2 (the spread needs two runs), got {num_runs}")
    if mesh is not None and num_runs % mesh.shape[DATA_AXIS]:
        raise ValueError(f"num_runs={num_runs} must be a multiple of the 'data' mesh size {mesh.shape[DATA_AXIS]}")
    base = np.zeros(num_visible) if base_vis_bias is None else np.asarray(base_vis_bias, np.float64)
    if base.shape != (num_visible,):
        raise ValueError(f"base_vis_bias must have shape ({num_visible},), got {base.shape}")
    if not np.all(np.isfinite(base)):
        raise ValueError("base_vis_bias must be finite (clip the pixel means before taking logits)")
    if visible == "bernoulli":
        log_z_base = np.sum(np.logaddexp(0.0, base)) + num_hidden * math.log(2)
    else:
        log_z_base = 0.5 * num_visible * _LOG_2PI + num_hidden * math.log(2)
    dtype = params.W.dtype
    log_w = _ais_log_weights(params, jnp.asarray(base, dtype), jnp.asarray(betas, dtype), key, num_runs, visible, mesh)
    return summarize_log_weights(jax.device_get(log_w), log_z_base)


def dbm_ais_log_z(params: DBMParams, betas, key, num_runs: int = 100, *, base_vis_bias=None,
                  mesh: Mesh | None = None) -> AISResult:
    """AIS log Z of a 2-layer DBM, annealing the equivalent RBM (hidden h1, visible [v, h2]).

    base_vis_bias: [V] b_A for v (pixel means); h2's base is uniform.
    """
    num_visible, num_h2 = params.b_vis.shape[0], params.b_h2.shape[0]
    base_v = np.zeros(num_visible) if base_vis_bias is None else np.asarray(base_vis_bias, np.float64)
    if base_v.shape != (num_visible,):
        raise ValueError(f"base_vis_bias must have shape ({num_visible},), got {base_v.shape}")
    return ais_log_z(dbm_as_rbm(params), betas, key, num_runs, base_vis_bias=np.concatenate([base_v, np.zeros(num_h2)]),
                     mesh=mesh)


# ----------------------------------------------------------------------------- enumeration


def _states(start, num: int, bits: int, dtype) -> jax.Array:
    """The binary expansions of integers start .. start + num - 1: [num, bits]."""
    ints = start + jnp.arange(num, dtype=jnp.int32)
    return ((ints[:, None] >> jnp.arange(bits, dtype=jnp.int32)) & 1).astype(dtype)


def _log_terms_over_hidden(params: RBMParams, h, visible: str):
    """log sum_v exp(-E(v, h)) for each h [S, H]: [S]."""
    field = params.b_vis + h @ params.W.T
    if visible == "bernoulli":
        return h @ params.b_hid + jnp.sum(jax.nn.softplus(field), -1)
    num_visible = params.b_vis.shape[0]
    return (h @ params.b_hid + 0.5 * jnp.sum(field**2, -1) - 0.5 * jnp.sum(params.b_vis**2)
            + 0.5 * num_visible * _LOG_2PI)


def _log_terms_over_visible(params: RBMParams, v, visible: str):
    """log sum_h exp(-E(v, h)) = -F(v) for each binary v [S, V]: [S]."""
    return v @ params.b_vis + jnp.sum(jax.nn.softplus(v @ params.W + params.b_hid), -1)


@functools.partial(jax.jit, static_argnames=("side", "visible", "chunk_size"))
def _enumerate(params: RBMParams, side: str, visible: str, chunk_size: int):
    bits = params.W.shape[1] if side == "hidden" else params.W.shape[0]
    total = 2**bits
    chunk = min(chunk_size, total)
    terms = _log_terms_over_hidden if side == "hidden" else _log_terms_over_visible

    def chunk_lse(start):
        states = _states(start, chunk, bits, params.W.dtype)
        valid = start + jnp.arange(chunk) < total  # the last chunk may run past 2^bits
        return jax.nn.logsumexp(jnp.where(valid, terms(params, states, visible), -jnp.inf))

    starts = jnp.arange(0, total, chunk, dtype=jnp.int32)
    return jax.nn.logsumexp(jax.lax.map(chunk_lse, starts))


def exact_log_z(params: RBMParams, *, visible: str = "bernoulli", chunk_size: int = 4096, side: str | None = None) -> jax.Array:
    """log Z by enumerating 2^n states of one layer, the other summed out analytically: [].

    side: 'hidden' or 'visible' (Bernoulli only); default the smaller layer (always the
    hidden one for Gaussian visible units). Memory is chunk_size states at a time; the
    result has the precision of params (enable x64 for float64).
    """
    check_visible(visible)
    num_visible, num_hidden = params.W.shape
    if side is None:
        side = "hidden" if visible == "gaussian" or num_hidden <= num_visible else "visible"
    if side not in ("hidden", "visible"):
        raise ValueError(f"side must be 'hidden' or 'visible', got {side!r}")
    if side == "visible" and visible == "gaussian":
        raise ValueError("side='visible' needs binary visible units; Gaussian ones are integrated out instead")
    bits = num_hidden if side == "hidden" else num_visible
    if bits > MAX_ENUMERATION_BITS:
        raise ValueError(f"exact_log_z would enumerate 2^{bits} {side} states; at most 2^{MAX_ENUMERATION_BITS} allowed")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    return _enumerate(params, side, visible, chunk_size)


def dbm_exact_log_z(params: DBMParams, *, chunk_size: int = 4096) -> jax.Array:
    """log Z of a 2-layer DBM by enumeration of h1 (or of [v, h2] if smaller): []."""
    return exact_log_z(dbm_as_rbm(params), chunk_size=chunk_size)
