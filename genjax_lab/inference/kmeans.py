"""k-means, model-agnostic: k-means++ seeding and weighted Lloyd iterations, jittable and
vmappable (over classes, starts), for any model that starts from cluster centres.

Rows carry weights [N] >= 0: 0 drops a row (padding, another class's rows), fractional weights
count it partially. Seeding (Arthur & Vassilvitskii 2007) draws each centre from the rows with
probability ∝ weight * D^2 (squared distance to the nearest centre so far; the first ∝ weight),
one candidate per step rather than scikit-learn's greedy trials. A Lloyd iteration assigns
every row to its nearest centre and moves each centre to the weighted mean of its rows; a
centre with no weight keeps its place. The batch axis may be sharded over a `data` mesh:
the centre sums contract it with `batch_einsum`.
"""

import functools

import jax
import jax.numpy as jnp

from genjax_lab.core import checks
from genjax_lab.core.mesh import batch_einsum


def _check(key, x, num_clusters: int, weights=None, num_iters: int = 0, **_) -> None:
    rows = checks.check_array("x", x, ("N", "D"), kinds=checks.FLOAT).shape[0]
    checks.check_count("num_clusters", num_clusters)
    if weights is not None:
        checks.check_array("weights", weights, (rows,), nonnegative=True)
    checks.check_count("num_iters", num_iters, minimum=0)


def _weights(x: jax.Array, weights: jax.Array | None) -> jax.Array:
    return jnp.ones(x.shape[:1], x.dtype) if weights is None else weights.astype(x.dtype)


def hard_assign(x: jax.Array, centers: jax.Array) -> jax.Array:
    """One-hot nearest centre of each row: [N, K] for x [N, D], centers [K, D]."""
    # |x|^2 is the same for every centre, so it is left out of the argmin.
    d2 = jnp.sum(centers**2, axis=1) - 2.0 * x @ centers.T
    return jax.nn.one_hot(jnp.argmin(d2, axis=1), centers.shape[0], dtype=x.dtype)


@checks.validated(_check)
@functools.partial(jax.jit, static_argnames=("num_clusters",))
def kmeans_plus_plus(
    key: jax.Array, x: jax.Array, num_clusters: int, weights: jax.Array | None = None
) -> jax.Array:
    """k-means++ seeds [num_clusters, D]: rows of x [N, D] drawn ∝ weights * D^2."""
    weights = _weights(x, weights)
    keys = jax.random.split(key, num_clusters)

    def body(i, carry):
        centers, d2 = carry
        # All-zero distances (the first seed, whose d2 starts at zero, or fewer distinct rows
        # than clusters): draw by the weights alone. The first seed is drawn in the loop, so
        # the sampler is compiled once.
        probs = jnp.where(jnp.sum(d2 * weights) > 0, d2 * weights, weights)
        new = x[jax.random.categorical(keys[i], jnp.log(probs))]
        dist = jnp.sum((x - new) ** 2, axis=1)
        return centers.at[i].set(new), jnp.where(i == 0, dist, jnp.minimum(d2, dist))

    init = (jnp.zeros((num_clusters, x.shape[1]), x.dtype), jnp.zeros(x.shape[:1], x.dtype))
    centers, _ = jax.lax.fori_loop(0, num_clusters, body, init)
    return centers


@jax.jit
def lloyd_step(x: jax.Array, centers: jax.Array, weights: jax.Array) -> jax.Array:
    """One Lloyd iteration: the weighted mean of each centre's rows (a centre without weight
    stays where it is)."""
    onehot = hard_assign(x, centers) * weights[:, None]
    count = onehot.sum(0)
    sums = batch_einsum("nk,nd->kd", onehot, x)
    return jnp.where(count[:, None] > 0, sums / jnp.where(count > 0, count, 1.0)[:, None], centers)


@checks.validated(_check)
@functools.partial(jax.jit, static_argnames=("num_clusters",))
def kmeans(
    key: jax.Array,
    x: jax.Array,
    num_clusters: int,
    weights: jax.Array | None = None,
    *,
    num_iters: int = 20,
) -> jax.Array:
    """Centres [num_clusters, D] of x [N, D] (weights [N], default all 1): k-means++ seeds,
    then `num_iters` Lloyd iterations (traced: another count reuses the compiled program)."""
    weights = _weights(x, weights)
    centers = kmeans_plus_plus(key, x, num_clusters, weights)
    return jax.lax.fori_loop(0, num_iters, lambda _, c: lloyd_step(x, c, weights), centers)
