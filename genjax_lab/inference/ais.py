"""Annealed importance sampling (Neal 2001) over any annealed family of unnormalised densities.

A path of densities p*_beta, 0 = beta_0 < ... < beta_K = 1, runs from a base p_0 whose
normaliser Z_0 is known to the target p_1 whose Z_1 is wanted. Each run draws x ~ p_0, then
for k = 1..K adds log p*_k(x) - log p*_{k-1}(x) to its log weight and moves x by a transition
that leaves p_k invariant. Z_1 / Z_0 is estimated by the mean of the M weights w_m:
log Z_1 = log Z_0 + log mean_m w_m. The spread is reported as Salakhutdinov & Murray (2008)
do, log(Z_hat +- 3 sigma_hat) with sigma_hat = std(w) / sqrt(M), and as the delta-method
standard deviation of log Z_hat, sigma_hat / Z_hat. AIS is unbiased for Z, so log Z_hat
underestimates log Z on average: log-likelihoods from it tend to be optimistic.

The model supplies the path (`AnnealingPath`): a batch of M runs is a pytree whose leaves
lead with M, and every function takes the path's parameters `theta` (a pytree traced into
the compiled run) and one PRNG key per run. Runs are a vector and temperatures a lax.scan;
run m's randomness is fold_in(key, m) (its start from fold_in(., 0), the move at step t
from fold_in(., t)), so sharding the runs over a 'data' mesh (shard_map, no collectives)
gives the same weights.

RAISE (reverse AIS; Burda, Grosse & Salakhutdinov, AISTATS 2015) scores data instead of
estimating Z. The forward chain x_0 ~ p_0, x_k ~ T_k(. | x_{k-1}) for k = 1..K defines the
*annealing model* p_ann, the law of x_K, which tends to p_1 as K grows. For each observed x
the reverse chain starts at x_K = x (a latent part drawn from a proposal q(. | x), its log q
subtracted from the weight) and moves by T_K, ..., T_1, which must be reversible with respect
to p_k (block Gibbs sweeps are), so that the reverse kernel of T_k is T_k itself. Its weight
    w = p_0(x_0) prod_k f_k(x_k) / f_k(x_{k-1}) / q = p_ann(x_K, chain) / q(chain | x),
the f_k being the unnormalised densities, has E[w] = p_ann(x): no normaliser is needed, and
the log-mean of M weights is a stochastic lower bound on log p_ann(x). Telescoped, log w =
log p_0(x) + log p*_1(x) - log p*_0(x) - sum_k [log p*_k(x_{k-1}) - log p*_{k-1}(x_{k-1})]
- log q: the same small log ratios that AIS sums, so both accumulate alike in float32.
AIS errs high on log p (log Z_hat errs low), RAISE errs low; together they bracket it.
"""

import functools
import itertools
import math
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from genjax_lab.core.mesh import DATA_AXIS


class AISResult(NamedTuple):
    log_z: float  # log Z_0 + log mean(w)
    log_z_lower: float  # log(Z_hat - 3 sigma_hat); -inf when the interval reaches 0
    log_z_upper: float  # log(Z_hat + 3 sigma_hat)
    log_z_std: float  # sigma_hat / Z_hat, the delta-method std of log Z_hat
    log_z_base: float  # log Z_0
    log_weights: np.ndarray  # [M] log(Z_1 / Z_0) estimates of the single runs


class AnnealingPath(Protocol):
    """An annealed family of densities. Implementations are hashable (a frozen dataclass),
    because the compiled run is cached per path."""

    def sample_base(self, theta: Any, keys: jax.Array) -> Any:
        """M independent draws from p_0, one per key [M]: a pytree leading with M."""

    def log_ratio(self, theta: Any, x: Any, beta_prev: jax.Array, beta: jax.Array) -> jax.Array:
        """log p*_beta(x) - log p*_beta_prev(x) for each run: [M]."""

    def transition(self, theta: Any, keys: jax.Array, x: Any, beta: jax.Array) -> Any:
        """x moved by a kernel that leaves p_beta invariant, one key per run [M]."""


class RAISEResult(NamedTuple):
    log_prob: np.ndarray  # [N] log mean_m w: a stochastic lower bound on log p_ann(x_n)
    log_weights: np.ndarray  # [N, M] log w of each item's chains


class ReversibleAnnealingPath(AnnealingPath, Protocol):
    """A path whose transitions are reversible with respect to p_beta, so that RAISE can run
    them backwards, and which knows where a reverse chain starts for observed data."""

    def base_log_prob(self, theta: Any, x: Any) -> jax.Array:
        """The normalised log p_0(x) of each run: [M]."""

    def start(self, theta: Any, keys: jax.Array, data: Any) -> tuple[Any, jax.Array]:
        """The reverse chain's first state x_K for each run's observed data (a pytree
        leading with M) and log q [M] of the part of x_K drawn from a proposal (0 if none)."""


# ----------------------------------------------------------------------------- schedules


def piecewise_schedule(
    num_temperatures: int = 14_500, breaks=(0.5, 0.9), fractions=(500, 4000, 10000)
) -> np.ndarray:
    """Inverse temperatures 0 = beta_0 < ... < beta_K = 1, uniform within each piece.

    Pieces [0, 0.5), [0.5, 0.9), [0.9, 1] get `num_temperatures` steps in the proportions
    `fractions`; the default is Salakhutdinov & Murray's 0:1e-3:0.5, 0.5:1e-4:0.9,
    0.9:1e-5:1 (14,500 steps, 14,501 values). Returns float64 [K + 1].
    """
    edges = (0.0, *breaks, 1.0)
    if len(fractions) != len(edges) - 1 or any(f <= 0 for f in fractions):
        raise ValueError(f"fractions must be {len(edges) - 1} positive numbers, got {fractions}")
    if any(a >= b for a, b in itertools.pairwise(edges)):
        raise ValueError(f"breaks must increase strictly inside (0, 1), got {breaks}")
    shares = num_temperatures * np.asarray(fractions) / np.sum(fractions)
    counts = np.maximum(1, np.round(shares)).astype(int)
    pieces = [
        np.linspace(lo, hi, n, endpoint=False) for lo, hi, n in zip(edges[:-1], edges[1:], counts)
    ]
    return np.concatenate([*pieces, [1.0]])


def paper_schedule() -> np.ndarray:
    """0:1e-3:0.5, 0.5:1e-4:0.9, 0.9:1e-5:1 (Salakhutdinov & Murray 2008): [14501]."""
    return piecewise_schedule(14_500)


def check_betas(betas) -> np.ndarray:
    """betas as float64 [K + 1], non-decreasing from 0 to 1."""
    betas = np.asarray(betas, np.float64)
    if betas.ndim != 1 or betas.size < 2:
        raise ValueError(
            f"betas must be a 1-D array of at least 2 inverse temperatures, got shape {betas.shape}"
        )
    if betas[0] != 0.0 or betas[-1] != 1.0:
        raise ValueError(f"betas must start at 0 and end at 1, got {betas[0]} ... {betas[-1]}")
    if np.any(np.diff(betas) < 0):
        first = int(np.argmax(np.diff(betas) < 0)) + 1
        raise ValueError(f"betas must be non-decreasing; first decrease at index {first}")
    return betas


# ----------------------------------------------------------------------------- AIS


def _fold_in_each(keys: jax.Array, data) -> jax.Array:
    return jax.vmap(jax.random.fold_in, (0, None))(keys, data)


def _ais_local(path: AnnealingPath, theta, betas, keys):
    """Log weights of the runs whose keys are `keys` [M]: [M]."""
    x = path.sample_base(theta, _fold_in_each(keys, 0))

    def body(carry, xs):
        x, log_w = carry
        beta_prev, beta, t = xs
        log_w += path.log_ratio(theta, x, beta_prev, beta)
        return (path.transition(theta, _fold_in_each(keys, t), x, beta), log_w), None

    first = jax.tree.leaves(x)[0]
    # zeros_like: varying across devices like the runs, as a shard_map carry must be
    log_w = jnp.zeros_like(first.reshape(first.shape[0], -1)[:, 0])
    xs = (betas[:-1], betas[1:], jnp.arange(1, betas.shape[0]))
    (_, log_w), _ = jax.lax.scan(body, (x, log_w), xs)
    return log_w


def _run_keys(key, offset, num: int) -> jax.Array:
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(offset + jnp.arange(num))


@functools.partial(jax.jit, static_argnames=("path", "num_runs", "mesh"))
def _log_weights(path: AnnealingPath, theta, betas, key, num_runs: int, mesh: Mesh | None):
    if mesh is None:
        return _ais_local(path, theta, betas, _run_keys(key, 0, num_runs))

    def local(theta, betas, key):
        n = num_runs // mesh.shape[DATA_AXIS]
        keys = _run_keys(key, jax.lax.axis_index(DATA_AXIS) * n, n)
        return _ais_local(path, theta, betas, keys)

    return jax.shard_map(local, mesh=mesh, in_specs=(P(), P(), P()), out_specs=P(DATA_AXIS))(
        theta, betas, key
    )


def summarize_log_weights(log_weights, log_z_base: float) -> AISResult:
    """log Z = log Z_0 + log mean(w), with log(Z_hat +- 3 std(w) / sqrt(M)) bounds (float64)."""
    log_weights = np.asarray(log_weights, np.float64)
    if not np.all(np.isfinite(log_weights)):
        raise FloatingPointError(
            f"{np.sum(~np.isfinite(log_weights))} AIS log weights are not finite"
        )
    shift = log_weights.max()
    w = np.exp(log_weights - shift)
    mean = w.mean()
    sigma = w.std(ddof=1) / math.sqrt(w.size) if w.size > 1 else 0.0
    lower = np.log(mean - 3 * sigma) if mean > 3 * sigma else -np.inf
    offset = log_z_base + shift
    return AISResult(
        log_z=float(offset + np.log(mean)),
        log_z_lower=float(offset + lower),
        log_z_upper=float(offset + np.log(mean + 3 * sigma)),
        log_z_std=float(sigma / mean),
        log_z_base=float(log_z_base),
        log_weights=log_weights,
    )


def annealed_importance_sampling(
    path: AnnealingPath,
    theta: Any,
    betas,
    key: jax.Array,
    num_runs: int = 100,
    *,
    log_z_base: float,
    dtype=jnp.float32,
    mesh: Mesh | None = None,
) -> AISResult:
    """AIS estimate of log Z_1 along `path` with parameters `theta`.

    betas: [K + 1] from 0 to 1 (`paper_schedule()` or `piecewise_schedule(K)`), cast to
    `dtype` (the path's). log_z_base: log Z_0 of the base density. mesh: shard the runs over
    its 'data' axis (num_runs a multiple of its size); results equal the unsharded run.
    """
    betas = check_betas(betas)
    if num_runs < 2:
        raise ValueError(f"num_runs must be at least 2 (the spread needs two runs), got {num_runs}")
    if mesh is not None and num_runs % mesh.shape[DATA_AXIS]:
        raise ValueError(
            f"num_runs={num_runs} must be a multiple of the 'data' mesh size "
            f"{mesh.shape[DATA_AXIS]}"
        )
    log_w = _log_weights(path, theta, jnp.asarray(betas, dtype), key, num_runs, mesh)
    return summarize_log_weights(jax.device_get(log_w), log_z_base)


# ----------------------------------------------------------------------------- RAISE


def _raise_local(path: ReversibleAnnealingPath, theta, betas, keys, data):
    """Log weights of the reverse chains with keys [C] started at data [C, ...]: [C]."""
    x, log_q = path.start(theta, _fold_in_each(keys, 0), data)
    log_w = path.base_log_prob(theta, x) + path.log_ratio(theta, x, betas[0], betas[-1]) - log_q

    def body(carry, xs):
        x, log_w = carry
        beta_prev, beta, t = xs
        x = path.transition(theta, _fold_in_each(keys, t), x, beta)
        return (x, log_w - path.log_ratio(theta, x, beta_prev, beta)), None

    xs = (betas[:-1], betas[1:], jnp.arange(1, betas.shape[0]))
    (_, log_w), _ = jax.lax.scan(body, (x, log_w), xs, reverse=True)  # T_K first, T_1 last
    return log_w


@functools.partial(jax.jit, static_argnames=("path", "num_chains"))
def _raise_log_weights(path, theta, betas, key, data, first_item, num_chains: int):
    num_items = jax.tree.leaves(data)[0].shape[0]
    item_keys = _run_keys(key, first_item, num_items)
    keys = jax.vmap(lambda k: _run_keys(k, 0, num_chains))(item_keys).reshape(-1)
    chains = jax.tree.map(lambda leaf: jnp.repeat(leaf, num_chains, axis=0), data)
    return _raise_local(path, theta, betas, keys, chains).reshape(num_items, num_chains)


def reverse_annealed_importance_sampling(
    path: ReversibleAnnealingPath,
    theta: Any,
    betas,
    key: jax.Array,
    data: Any,
    num_chains: int = 1,
    *,
    first_item: int = 0,
    dtype=jnp.float32,
) -> RAISEResult:
    """RAISE: a stochastic lower bound on log p_ann(x) for each item of `data`, no log Z.

    data: a pytree leading with the N items. betas: [K + 1] from 0 to 1, the forward path's
    schedule (the reverse chains run it backwards), cast to `dtype`. num_chains: M reverse
    chains per item. Chain m of item n draws from fold_in(fold_in(key, first_item + n), m)
    (its start from fold_in(., 0), the move at beta_k from fold_in(., k)), so an item's
    estimate does not depend on the batch it is scored in: score a large set in slices,
    passing each slice's offset as first_item.
    """
    betas = check_betas(betas)
    if num_chains < 1:
        raise ValueError(f"num_chains must be at least 1, got {num_chains}")
    log_w = _raise_log_weights(
        path, theta, jnp.asarray(betas, dtype), key, data, first_item, num_chains
    )
    log_w = np.asarray(jax.device_get(log_w), np.float64)
    if not np.all(np.isfinite(log_w)):
        raise FloatingPointError(f"{np.sum(~np.isfinite(log_w))} RAISE log weights are not finite")
    shift = log_w.max(axis=1, keepdims=True)
    log_mean = shift[:, 0] + np.log(np.mean(np.exp(log_w - shift), axis=1))
    return RAISEResult(log_prob=log_mean, log_weights=log_w)
