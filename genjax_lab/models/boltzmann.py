"""Restricted Boltzmann machines (Bernoulli and unit-variance Gaussian visible units) and a
two-hidden-layer deep Boltzmann machine (Salakhutdinov & Hinton, AISTATS 2009).

Energies (v [V], h [H], h1 [H1], h2 [H2]):
  Bernoulli RBM  E(v, h) = -v W h - b.v - c.h                      v in {0, 1}^V
  Gaussian RBM   E(v, h) = |v - b|^2 / 2 - v W h - c.h              v in R^V (unit variance)
  DBM            E(v, h1, h2) = -v W1 h1 - h1 W2 h2 - b.v - c1.h1 - c2.h2
Free energy F(v) = -log sum_h exp(-E(v, h)) = -b.v - sum_j softplus(c_j + (v W)_j) (Bernoulli;
the Gaussian RBM has |v - b|^2 / 2 in place of -b.v), so log p(v) = -F(v) - log Z.

The DBM is an RBM in disguise: given h1, the layers v and h2 are independent, so the DBM is
the RBM whose hidden layer is h1 and whose visible layer is [v, h2], with weights
[W1; W2^T] and visible biases [b; c2] (`dbm_as_rbm`). Block Gibbs, the negative phase of
training and log Z (ais.py) all use that identity.

Training follows the log-likelihood gradient <v h^T>_data - <v h^T>_model. The positive
phase uses p(h | v) (for the DBM the mean-field posterior); the model term comes from
Gibbs chains started at the data (CD-k, Hinton 2002) or kept across steps (persistent CD,
Tieleman 2008). A step is `(params, opt_state, chains, batch, key) -> (params, opt_state,
chains, metrics)`, pure and jittable; `batch = {"x": [B, ...] float, "mask": [B]}`.

Parallelism: with a mesh, both phases run per device under `jax.shard_map` over the 'data'
axis (batch rows and chains split over it, parameters replicated): each device forms the
mask-weighted sums of its batch rows and of its own chains, and `jax.lax.psum` reduces them
inside the compiled step, sums and weights separately, so the ratio is the exact weighted
mean also where padding leaves devices with unequal weight (a `pmean` of per-device means
would not be). Gradient and optimizer update then run replicated. (Doing the positive
phase as plain jit code instead fails on meshes with Explicit axes, the default of
`jax.make_mesh`, whose batch contractions need an output sharding.) Chain i draws its
randomness from `fold_in(key, i)` with i its *global* chain index (device index * chains
per device + local index), not from the device index alone: a step on 8 devices then
equals the step on 1 device with the same chains and key, up to float reduction order.
"""
import dataclasses
import functools
import math
import pathlib
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.scipy.special import xlogy
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from genjax_lab.core import checks
from genjax_lab.core import data as data_lib
from genjax_lab.core import images as images_lib
from genjax_lab.core import mesh as mesh_lib
from genjax_lab.core.loop import Family, base_config, evaluate
from genjax_lab.core.mesh import DATA_AXIS
from genjax_lab.data.images import image_data_config
from genjax_lab.models import vae

VISIBLE_TYPES = ("bernoulli", "gaussian")
METHODS = ("cd", "pcd")


class RBMParams(NamedTuple):
    W: jax.Array  # [V, H]
    b_vis: jax.Array  # [V]
    b_hid: jax.Array  # [H]


class DBMParams(NamedTuple):
    W1: jax.Array  # [V, H1]
    W2: jax.Array  # [H1, H2]
    b_vis: jax.Array  # [V]
    b_h1: jax.Array  # [H1]
    b_h2: jax.Array  # [H2]


class DBMChains(NamedTuple):
    """Persistent DBM chains: h1 is redrawn from (v, h2) at every sweep, so it is not kept."""

    v: jax.Array  # [N, V]
    h2: jax.Array  # [N, H2]


class _Stats(NamedTuple):
    """Weighted sums over examples or chains; divided by `weight` they are expectations."""

    vh: jax.Array  # [V, H]
    v: jax.Array  # [V]
    h: jax.Array  # [H]
    weight: jax.Array  # []
    free_energy: jax.Array  # []


def check_visible(visible: str) -> None:
    if visible not in VISIBLE_TYPES:
        raise ValueError(f"visible must be one of {VISIBLE_TYPES}, got {visible!r}")


def _check_units(name: str, values, params: RBMParams, layer: str) -> None:
    """values [B, V] (layer "visible") or [B, H] ("hidden") of the RBM `params`, finite."""
    checks.check_finite_tree("params", params)
    size = np.shape(params.W)[0 if layer == "visible" else 1]
    checks.check_array(name, values, ("B", size))


def _check_visible_input(params: RBMParams, v, visible: str = "bernoulli", **_) -> None:
    check_visible(visible)
    _check_units("v", v, params, "visible")


def _check_sgd(learning_rate, momentum, weight_decay, prefix: str = "") -> None:
    checks.check_positive(f"{prefix}learning_rate", learning_rate)
    checks.check_number(f"{prefix}momentum", momentum, low=0.0, high=1.0, high_open=True)
    checks.check_number(f"{prefix}weight_decay", weight_decay, low=0.0)


# ----------------------------------------------------------------------------- initialisation


def init_rbm(key, num_visible: int, num_hidden: int, *, data_mean=None, weight_scale: float = 0.01,
             visible: str = "bernoulli") -> RBMParams:
    """W ~ N(0, weight_scale^2); hidden biases 0; visible biases from the data mean if given.

    data_mean: [V] pixel means (Bernoulli: b = logit(mean), clipped; Gaussian: b = mean),
    as Hinton's practical guide advises, so the chains start near the data's marginals.
    """
    check_visible(visible)
    checks.check_count("num_visible", num_visible)
    checks.check_count("num_hidden", num_hidden)
    checks.check_number("weight_scale", weight_scale, low=0.0)
    b_vis = jnp.zeros(num_visible)
    if data_mean is not None:
        data_mean = checks.check_array("data_mean", data_mean).astype(np.float64).reshape(-1)
        if data_mean.shape != (num_visible,):
            raise ValueError(f"data_mean must have shape ({num_visible},), got {data_mean.shape}")
        b_vis = jnp.asarray(visible_bias_from_mean(data_mean, visible), jnp.float32)
    W = weight_scale * jax.random.normal(key, (num_visible, num_hidden))
    return RBMParams(W=W, b_vis=b_vis, b_hid=jnp.zeros(num_hidden))


def visible_bias_from_mean(data_mean: np.ndarray, visible: str = "bernoulli", eps: float = 1e-3) -> np.ndarray:
    """The visible biases of the zero-weight RBM whose visible marginals are `data_mean` [V].

    Bernoulli: logit(mean) with the mean clipped to [eps, 1 - eps] (pixels that are always
    off would otherwise get -inf); Gaussian: the mean itself.
    """
    data_mean = np.asarray(data_mean, np.float64)
    if visible == "gaussian":
        return data_mean
    p = np.clip(data_mean, eps, 1.0 - eps)
    return np.log(p) - np.log1p(-p)


def init_rbm_chains(key, num_chains: int, num_visible: int, *, visible: str = "bernoulli") -> jax.Array:
    """Fantasy particles for PCD: uniform random bits (Bernoulli) or N(0, 1) (Gaussian): [N, V]."""
    check_visible(visible)
    checks.check_count("num_chains", num_chains)
    checks.check_count("num_visible", num_visible)
    if visible == "gaussian":
        return jax.random.normal(key, (num_chains, num_visible))
    return jax.random.bernoulli(key, 0.5, (num_chains, num_visible)).astype(jnp.float32)


def init_dbm(key, num_visible: int, num_hidden1: int, num_hidden2: int, *, data_mean=None,
             weight_scale: float = 0.01) -> DBMParams:
    """Small random weights, zero hidden biases, visible biases from `data_mean` [V] if given."""
    checks.check_count("num_hidden2", num_hidden2)
    k1, k2 = jax.random.split(key)
    first = init_rbm(k1, num_visible, num_hidden1, data_mean=data_mean, weight_scale=weight_scale)
    W2 = weight_scale * jax.random.normal(k2, (num_hidden1, num_hidden2))
    return DBMParams(W1=first.W, W2=W2, b_vis=first.b_vis, b_h1=first.b_hid, b_h2=jnp.zeros(num_hidden2))


def init_dbm_chains(key, num_chains: int, params: DBMParams) -> DBMChains:
    """Uniform random bits for v [N, V] and h2 [N, H2]."""
    checks.check_count("num_chains", num_chains)
    kv, kh = jax.random.split(key)
    v = jax.random.bernoulli(kv, 0.5, (num_chains, params.b_vis.shape[0])).astype(jnp.float32)
    h2 = jax.random.bernoulli(kh, 0.5, (num_chains, params.b_h2.shape[0])).astype(jnp.float32)
    return DBMChains(v=v, h2=h2)


# ----------------------------------------------------------------------------- the RBM


@checks.validated(_check_visible_input)
def hidden_logits(params: RBMParams, v: jax.Array, scale: float = 1.0) -> jax.Array:
    """scale * v W + c: [B, V] -> [B, H]. scale = 2 is the doubled-input trick (pretraining)."""
    return scale * (v @ params.W) + params.b_hid


@checks.validated(_check_visible_input)
def hidden_probs(params: RBMParams, v: jax.Array) -> jax.Array:
    """p(h_j = 1 | v) = sigmoid(c_j + (v W)_j): [B, V] -> [B, H]."""
    return jax.nn.sigmoid(hidden_logits(params, v))


def _check_hidden_input(params: RBMParams, h, visible: str, **_) -> None:
    check_visible(visible)
    _check_units("h", h, params, "hidden")


@checks.validated(_check_hidden_input)
def visible_mean(params: RBMParams, h: jax.Array, visible: str = "bernoulli", scale: float = 1.0) -> jax.Array:
    """E[v | h]: sigmoid(b + scale * h W^T) (Bernoulli) or b + scale * h W^T (Gaussian): [B, V]."""
    field = params.b_vis + scale * (h @ params.W.T)
    return jax.nn.sigmoid(field) if visible == "bernoulli" else field


def _visible_term(params: RBMParams, v: jax.Array, visible: str) -> jax.Array:
    """The part of -F(v) that does not involve the hidden units: [B]."""
    if visible == "bernoulli":
        return v @ params.b_vis
    return -0.5 * jnp.sum((v - params.b_vis) ** 2, axis=-1)


def _free_energy_from_logits(params: RBMParams, v, logits, visible: str) -> jax.Array:
    return -_visible_term(params, v, visible) - jnp.sum(jax.nn.softplus(logits), axis=-1)


@checks.validated(_check_visible_input)
def free_energy(params: RBMParams, v: jax.Array, visible: str = "bernoulli") -> jax.Array:
    """F(v) = -log sum_h exp(-E(v, h)), the hidden units summed out analytically: [B, V] -> [B]."""
    return _free_energy_from_logits(params, v, hidden_logits(params, v), visible)


def _check_log_prob(params: RBMParams, v, log_z, visible: str, **_) -> None:
    _check_visible_input(params, v, visible)
    checks.check_number("log_z", log_z)


@checks.validated(_check_log_prob)
def rbm_log_prob(params: RBMParams, v: jax.Array, log_z, visible: str = "bernoulli") -> jax.Array:
    """log p(v) = -F(v) - log Z in nats (a density for Gaussian visible units): [B]."""
    return -free_energy(params, v, visible) - log_z


def chain_keys(key, offset, num: int) -> jax.Array:
    """One key per chain, `fold_in(key, offset + i)`: chain randomness follows its global index."""
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(offset + jnp.arange(num))


def sample_bernoulli(keys: jax.Array, probs: jax.Array) -> jax.Array:
    """Row r ~ Bernoulli(probs[r]) with keys[r], as float: keys [N], probs [N, D] -> [N, D]."""
    uniform = jax.vmap(lambda k: jax.random.uniform(k, probs.shape[1:], probs.dtype))(keys)
    return (uniform < probs).astype(probs.dtype)


def sample_normal(keys: jax.Array, mean: jax.Array) -> jax.Array:
    """Row r ~ N(mean[r], I) with keys[r]: keys [N], mean [N, D] -> [N, D]."""
    return mean + jax.vmap(lambda k: jax.random.normal(k, mean.shape[1:], mean.dtype))(keys)


def _sweep(params: RBMParams, v, keys, visible: str, up: float, down: float):
    """One block-Gibbs sweep v -> h -> v' per chain; returns (v', E[v' | h])."""
    pairs = jax.vmap(jax.random.split)(keys)
    h = sample_bernoulli(pairs[:, 0], jax.nn.sigmoid(hidden_logits(params, v, up)))
    mean = visible_mean(params, h, visible, down)
    v = sample_bernoulli(pairs[:, 1], mean) if visible == "bernoulli" else sample_normal(pairs[:, 1], mean)
    return v, mean


def _run_chains(params: RBMParams, v, keys, num_steps, visible: str, up: float = 1.0, down: float = 1.0):
    """`num_steps` sweeps; sweep t of chain r uses fold_in(keys[r], t). Returns (v, E[v | h]).

    num_steps: a Python int, or a traced int32 [] (a schedule of k inside a compiled step).
    """

    def body(t, carry):
        v, _ = carry
        return _sweep(params, v, jax.vmap(jax.random.fold_in, (0, None))(keys, t), visible, up, down)

    return jax.lax.fori_loop(0, num_steps, body, (v, jnp.zeros_like(v)))


def gibbs_chain(params: RBMParams, v0: jax.Array, key, num_steps: int, *, visible: str = "bernoulli"):
    """Block-Gibbs chains from v0 [N, V] for `num_steps` sweeps.

    Returns (v [N, V] the last states, mean [N, V] E[v | h] of the last sweep, for display).
    """
    check_visible(visible)
    if num_steps < 1:
        raise ValueError(f"num_steps must be at least 1, got {num_steps}")
    if checks.is_checkable(params, v0):
        _check_units("v0", v0, params, "visible")
    return _run_chains(params, v0, chain_keys(key, 0, v0.shape[0]), num_steps, visible)


def rbm_filters(params: RBMParams, image_shape: tuple[int, ...]) -> jax.Array:
    """Each hidden unit's incoming weights as an image: [H, *image_shape]."""
    return params.W.T.reshape(params.W.shape[1], *image_shape)


# ----------------------------------------------------------------------------- training


def rbm_optimizer(learning_rate: float = 0.1, momentum: float = 0.5, weight_decay: float = 0.0) -> optax.GradientTransformation:
    """SGD with momentum and L2 decay on the weight matrices only (Hinton's practical guide)."""
    _check_sgd(learning_rate, momentum, weight_decay)
    decay_weights_only = functools.partial(jax.tree.map, lambda x: x.ndim == 2)
    return optax.chain(
        optax.add_decayed_weights(weight_decay, mask=decay_weights_only),
        optax.sgd(learning_rate, momentum=momentum if momentum else None),
    )


def _phase_stats(vis, hid, weights, free_energies) -> _Stats:
    weighted = vis * weights[:, None]
    return _Stats(vh=weighted.T @ hid, v=weighted.sum(0), h=weights @ hid, weight=weights.sum(),
                  free_energy=weights @ free_energies)


def _per_device(fn: Callable, mesh: Mesh | None, num_sharded: int) -> Callable:
    """`fn(params, *sharded, key, sweeps)` per device under shard_map over 'data' (as is if mesh is None).

    The `num_sharded` middle arguments are split over 'data'; fn returns (chains, stats)
    with stats already psum-ed (see `_reduce`), so they leave replicated.
    """
    if mesh is None:
        return fn
    in_specs = (P(), *[P(DATA_AXIS)] * num_sharded, P(), P())
    return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=(P(DATA_AXIS), P()))


def _chain_offset(mesh: Mesh | None, num_local: int):
    """Global index of this device's first chain (rows are split over 'data' in order)."""
    return 0 if mesh is None else jax.lax.axis_index(DATA_AXIS) * num_local


def _reduce(stats, mesh: Mesh | None):
    return stats if mesh is None else jax.lax.psum(stats, DATA_AXIS)


def _negative_phase(params: RBMParams, start, weights, key, *, k, visible: str, up: float, down: float,
                    mesh: Mesh | None):
    """Advances this device's chains `start` [n, V] by k sweeps: (chains, their local weighted _Stats)."""
    keys = chain_keys(key, _chain_offset(mesh, start.shape[0]), start.shape[0])
    v, _ = _run_chains(params, start, keys, k, visible, up, down)
    logits = hidden_logits(params, v, up)
    return v, _phase_stats(v, jax.nn.sigmoid(logits), weights, _free_energy_from_logits(params, v, logits, visible))


def _descent_direction(pos: _Stats, neg: _Stats) -> RBMParams:
    """Minus the log-likelihood gradient, <.>_model - <.>_data, for optax's minimisation."""
    pw, nw = jnp.maximum(pos.weight, 1.0), jnp.maximum(neg.weight, 1.0)
    return RBMParams(W=neg.vh / nw - pos.vh / pw, b_vis=neg.v / nw - pos.v / pw, b_hid=neg.h / nw - pos.h / pw)


def _check_step_args(method: str, k: int, visible: str, mesh: Mesh | None) -> None:
    check_visible(visible)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if k < 1:
        raise ValueError(f"k (Gibbs sweeps per step) must be at least 1, got {k}")
    if mesh is not None and DATA_AXIS not in mesh.axis_names:
        raise ValueError(f"mesh must have a {DATA_AXIS!r} axis, got axes {mesh.axis_names}")


def make_rbm_step(optimizer: optax.GradientTransformation, *, method: str = "pcd", k: int = 1,
                  visible: str = "bernoulli", mesh: Mesh | None = None, up_scale: float = 1.0,
                  down_scale: float = 1.0, keep_negatives: bool = False) -> Callable:
    """The CD-k / PCD-k step `(params, opt_state, chains, batch, key, num_sweeps=None) -> (params, opt_state, chains, metrics)`.

    batch: {"x": [B, ...] visible data (flattened to [B, V]), "mask": [B]}. chains: [N, V]
    persistent fantasy particles for 'pcd' (N a multiple of the device count when sharded),
    ignored and returned unchanged for 'cd' (whose chains start at the batch, weighted by
    its mask), unless keep_negatives: then 'cd' returns the batch's k-step samples [B, V]
    in their place (a training state can hold CD's latest negatives, to display them). key: fresh per step (e.g. fold_in(base, step)). mesh: None runs on one
    device; a mesh with a 'data' axis runs the chains under shard_map. up_scale/down_scale
    multiply W in p(h | v) / p(v | h): 2 and 1 give the doubled-input RBM of DBM
    pretraining (the gradient is then used up to a factor of 2, absorbed by the step size).
    metrics: mean free energy of the data and of the chains (their gap tracks overfitting).
    num_sweeps: an int32 [] that replaces k at this call (a schedule of k, e.g. CD-1 rising
    to CD-25); None: k.
    """
    _check_step_args(method, k, visible, mesh)
    checks.check_positive("up_scale", up_scale)
    checks.check_positive("down_scale", down_scale)

    def phases(params, x, mask, chains, key, sweeps):
        logits = hidden_logits(params, x, up_scale)
        pos = _phase_stats(x, jax.nn.sigmoid(logits), mask, _free_energy_from_logits(params, x, logits, visible))
        # built here, per device, so that every sharded argument arrives already split
        start, weights = (x, mask) if method == "cd" else (chains, jnp.ones(chains.shape[0], x.dtype))
        chains, neg = _negative_phase(params, start, weights, key, k=sweeps, visible=visible, up=up_scale,
                                      down=down_scale, mesh=mesh)
        return chains, _reduce((pos, neg), mesh)

    phases = _per_device(phases, mesh, num_sharded=3)

    def step(params: RBMParams, opt_state, chains, batch, key, num_sweeps=None):
        checks.check_mapping("batch", batch, ("x", "mask"))
        x, mask = _flat(batch["x"]), batch["mask"]
        sweeps = jnp.asarray(k if num_sweeps is None else num_sweeps, jnp.int32)
        new_chains, (pos, neg) = phases(params, x, mask, x if method == "cd" else chains, key, sweeps)
        updates, opt_state = optimizer.update(_descent_direction(pos, neg), opt_state, params)
        metrics = {"free_energy_data": pos.free_energy / jnp.maximum(pos.weight, 1.0),
                   "free_energy_chains": neg.free_energy / jnp.maximum(neg.weight, 1.0)}
        returned = new_chains if method == "pcd" or keep_negatives else chains
        return optax.apply_updates(params, updates), opt_state, returned, metrics

    return step


def _flat(x: jax.Array) -> jax.Array:
    return x.reshape(x.shape[0], -1)


def make_epoch(step: Callable, batch_size: int) -> Callable:
    """One epoch as a single jitted lax.scan over shuffled batches.

    `(params, opt_state, chains, data [N, V], key) -> (params, opt_state, chains, metrics)`;
    the order is a permutation drawn from `key`, the last batch padded with masked rows;
    batch i steps with fold_in(key, i); metrics are averaged over the epoch.
    """
    checks.check_count("batch_size", batch_size)

    @jax.jit
    def epoch(params, opt_state, chains, data, key):
        n = data.shape[0]
        num_batches = -(-n // batch_size)
        order_key, step_key = jax.random.split(key)
        order = jnp.concatenate([jax.random.permutation(order_key, n), jnp.zeros(num_batches * batch_size - n, jnp.int32)])
        mask = (jnp.arange(num_batches * batch_size) < n).astype(data.dtype)

        def body(carry, i):
            rows = jax.lax.dynamic_slice_in_dim(order, i * batch_size, batch_size)
            batch = {"x": data[rows], "mask": jax.lax.dynamic_slice_in_dim(mask, i * batch_size, batch_size)}
            params, opt_state, chains, metrics = step(*carry, batch, jax.random.fold_in(step_key, i))
            return (params, opt_state, chains), metrics

        (params, opt_state, chains), metrics = jax.lax.scan(body, (params, opt_state, chains), jnp.arange(num_batches))
        return params, opt_state, chains, jax.tree.map(jnp.mean, metrics)

    return epoch


# ----------------------------------------------------------------------------- the DBM


def dbm_as_rbm(params: DBMParams) -> RBMParams:
    """The RBM over (visible [v, h2], hidden h1) with the DBM's joint: W [V + H2, H1]."""
    return RBMParams(W=jnp.concatenate([params.W1, params.W2.T], axis=0),
                     b_vis=jnp.concatenate([params.b_vis, params.b_h2]), b_hid=params.b_h1)


def _dbm_from_rbm_layout(rbm: RBMParams, num_visible: int) -> DBMParams:
    """Inverse of `dbm_as_rbm` (also maps gradients given in that layout back)."""
    return DBMParams(W1=rbm.W[:num_visible], W2=rbm.W[num_visible:].T, b_vis=rbm.b_vis[:num_visible],
                     b_h1=rbm.b_hid, b_h2=rbm.b_vis[num_visible:])


def _check_dbm_input(params: DBMParams, v, num_iters: int = 0, log_z=0.0, **_) -> None:
    checks.check_finite_tree("params", params)
    checks.check_array("v", v, ("B", np.shape(params.W1)[0]))
    checks.check_count("num_iters", num_iters, minimum=0)
    checks.check_number("log_z", log_z)


@checks.validated(_check_dbm_input)
def mean_field(params: DBMParams, v: jax.Array, num_iters: int = 10):
    """Fully factorised q(h1) q(h2) for each v [B, V]: returns (mu1 [B, H1], mu2 [B, H2]).

    Starts from a bottom-up pass with doubled W1 (standing in for the top-down input, as in
    Salakhutdinov & Hinton 2009), then alternates the exact layer-wise updates
    mu1 = sigmoid(v W1 + mu2 W2^T + c1), mu2 = sigmoid(mu1 W2 + c2): coordinate ascent, so
    each update can only raise the bound.
    """
    bottom_up = v @ params.W1  # the same at every iteration: computed once
    mu1 = jax.nn.sigmoid(2.0 * bottom_up + params.b_h1)
    mu2 = jax.nn.sigmoid(mu1 @ params.W2 + params.b_h2)

    def update(_, mus):
        _, mu2 = mus
        mu1 = jax.nn.sigmoid(bottom_up + mu2 @ params.W2.T + params.b_h1)
        return mu1, jax.nn.sigmoid(mu1 @ params.W2 + params.b_h2)

    return jax.lax.fori_loop(0, num_iters, update, (mu1, mu2))


def _bernoulli_entropy(mu: jax.Array) -> jax.Array:
    return -jnp.sum(xlogy(mu, mu) + xlogy(1.0 - mu, 1.0 - mu), axis=-1)


def dbm_unnormalized_bound(params: DBMParams, v: jax.Array, mu1: jax.Array, mu2: jax.Array) -> jax.Array:
    """E_q[-E(v, h1, h2)] + H(q) <= log sum_h exp(-E(v, h)) = log p(v) + log Z: [B]."""
    expected = (v @ params.b_vis + mu1 @ params.b_h1 + mu2 @ params.b_h2
                + jnp.sum((v @ params.W1) * mu1, -1) + jnp.sum((mu1 @ params.W2) * mu2, -1))
    return expected + _bernoulli_entropy(mu1) + _bernoulli_entropy(mu2)


@checks.validated(_check_dbm_input)
def dbm_lower_bound(params: DBMParams, v: jax.Array, log_z, num_iters: int = 10) -> jax.Array:
    """The variational lower bound on log p(v) in nats given log Z (exact or AIS): [B].

    With an AIS log Z (which underestimates log Z on average) the result is an estimate of
    the bound, not a guaranteed bound.
    """
    mu1, mu2 = mean_field(params, v, num_iters)
    return dbm_unnormalized_bound(params, v, mu1, mu2) - log_z


def dbm_gibbs_chain(params: DBMParams, chains: DBMChains, key, num_steps: int):
    """Block Gibbs (h1 | v, h2, then v, h2 | h1) for `num_steps` sweeps.

    Returns (chains, v_mean [N, V] = p(v = 1 | h1) of the last sweep, for display).
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be at least 1, got {num_steps}")
    if checks.is_checkable(params, chains):
        checks.check_finite_tree("params", params)
        checks.check_array("chains.v", chains.v, ("N", np.shape(params.b_vis)[0]))
        checks.check_array("chains.h2", chains.h2, (np.shape(chains.v)[0], np.shape(params.b_h2)[0]))
    num_visible = params.b_vis.shape[0]
    state = jnp.concatenate([chains.v, chains.h2], axis=1)
    state, mean = _run_chains(dbm_as_rbm(params), state, chain_keys(key, 0, state.shape[0]), num_steps, "bernoulli")
    return DBMChains(v=state[:, :num_visible], h2=state[:, num_visible:]), mean[:, :num_visible]


def make_dbm_step(optimizer: optax.GradientTransformation, *, k: int = 1, mean_field_iters: int = 10,
                  mesh: Mesh | None = None) -> Callable:
    """The DBM step `(params, opt_state, chains: DBMChains, batch, key, num_sweeps=None) -> (params, opt_state, chains, metrics)`.

    Positive phase: mean-field posteriors of the batch (mask-weighted); negative phase: k
    block-Gibbs sweeps of the persistent chains (per-device under shard_map when `mesh` is
    given, keys by global chain index). metrics: the mean unnormalised bound of the batch,
    E_q[-E] + H(q) (the bound on log p(v) is this minus log Z). num_sweeps: as in `make_rbm_step`.
    """
    _check_step_args("pcd", k, "bernoulli", mesh)
    checks.check_count("mean_field_iters", mean_field_iters, minimum=0)

    def phases(params, x, mask, start, key, sweeps):
        mu1, mu2 = mean_field(params, x, mean_field_iters)
        # the bound rides in the free-energy slot (as minus itself) to be reduced with the rest
        pos = _phase_stats(jnp.concatenate([x, mu2], axis=1), mu1, mask, -dbm_unnormalized_bound(params, x, mu1, mu2))
        state, neg = _negative_phase(dbm_as_rbm(params), start, jnp.ones(start.shape[0], x.dtype), key, k=sweeps,
                                     visible="bernoulli", up=1.0, down=1.0, mesh=mesh)
        return state, _reduce((pos, neg), mesh)

    phases = _per_device(phases, mesh, num_sharded=3)

    def step(params: DBMParams, opt_state, chains: DBMChains, batch, key, num_sweeps=None):
        x, mask = _flat(batch["x"]), batch["mask"]
        num_visible = x.shape[1]
        sweeps = jnp.asarray(k if num_sweeps is None else num_sweeps, jnp.int32)
        state, (pos, neg) = phases(params, x, mask, jnp.concatenate([chains.v, chains.h2], axis=1), key, sweeps)
        grads = _dbm_from_rbm_layout(_descent_direction(pos, neg), num_visible)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        new_chains = DBMChains(v=state[:, :num_visible], h2=state[:, num_visible:])
        metrics = {"unnormalized_bound": -pos.free_energy / jnp.maximum(pos.weight, 1.0)}
        return optax.apply_updates(params, updates), opt_state, new_chains, metrics

    return step


class PretrainResult(NamedTuple):
    params: DBMParams
    rbm1: RBMParams  # v -> h1, trained with doubled bottom-up input
    rbm2: RBMParams  # h1 -> h2, trained with doubled top-down input


def pretrain_dbm(key, data: jax.Array, num_hidden1: int, num_hidden2: int, *, num_epochs: int = 10,
                 batch_size: int = 100, learning_rate: float = 0.05, momentum: float = 0.5, k: int = 1,
                 mesh: Mesh | None = None) -> PretrainResult:
    """Greedy layer-wise pretraining of a DBM with CD-k (Salakhutdinov & Hinton 2009, sec. 3.1).

    data: [N, V] binary (or in [0, 1]). RBM 1 (v -> h1) uses p(h1 | v) = sigmoid(2 v W1 + c)
    and RBM 2 (h1 -> h2) uses p(h1 | h2) = sigmoid(2 h2 W2^T + b), so that in the composed
    DBM, where h1 hears both v and h2 once, each input counts as it did in pretraining. RBM 2
    learns from p(h1 | v) of RBM 1 (probabilities, not samples). Simplification: h1's bias
    is the average of the two RBMs' biases for h1 (each RBM saw half of h1's input).
    """
    data = checks.check_array("data", data)
    if data.ndim < 2:
        raise ValueError(f"data must be [N, V] (or [N, ...] images), got shape {data.shape}")
    checks.check_count("num_epochs", num_epochs, minimum=0)
    data = jnp.asarray(data, jnp.float32).reshape(data.shape[0], -1)
    optimizer = rbm_optimizer(learning_rate, momentum)
    keys = jax.random.split(key, 4)
    rbm1 = _train_cd(keys[0], keys[1], data, num_hidden1, optimizer, num_epochs, batch_size, k, mesh, up=2.0, down=1.0)
    h1_data = jax.nn.sigmoid(hidden_logits(rbm1, data, 2.0))
    rbm2 = _train_cd(keys[2], keys[3], h1_data, num_hidden2, optimizer, num_epochs, batch_size, k, mesh, up=1.0, down=2.0)
    return PretrainResult(params=compose_dbm(rbm1, rbm2), rbm1=rbm1, rbm2=rbm2)


def compose_dbm(rbm1: RBMParams, rbm2: RBMParams) -> DBMParams:
    """The DBM of two pretrained RBMs (v -> h1, h1 -> h2); h1's bias is the mean of their two."""
    return DBMParams(W1=rbm1.W, W2=rbm2.W, b_vis=rbm1.b_vis, b_h1=0.5 * (rbm1.b_hid + rbm2.b_vis), b_h2=rbm2.b_hid)


def _train_cd(init_key, train_key, data, num_hidden, optimizer, num_epochs, batch_size, k, mesh, up, down) -> RBMParams:
    params = init_rbm(init_key, data.shape[1], num_hidden, data_mean=np.asarray(data.mean(0)))
    step = make_rbm_step(optimizer, method="cd", k=k, mesh=mesh, up_scale=up, down_scale=down)
    epoch = make_epoch(step, batch_size)
    opt_state = optimizer.init(params)
    for e in range(num_epochs):
        params, opt_state, _, _ = epoch(params, opt_state, None, data, jax.random.fold_in(train_key, e))
    return params


# ----------------------------------------------------------------------------- the harness family
#
# The loop of genjax_lab.core.loop trains one state pytree step by step. Here it is the
# parameters, the optimizer state, the persistent chains (checkpointed with the rest, so a
# resumed run continues the same Markov chains) and the step counter that the schedules
# read: momentum 0.5 -> 0.9, the learning rate, k of CD-k, and the DBM's phases. The DBM's
# greedy pretraining is steps of the same loop: phase 1 trains RBM 1 (v -> h1), phase 2
# RBM 2 (h1 -> h2) on p(h1 | v) of RBM 1, phase 3 the composed DBM jointly (`lax.switch`
# on the step), so pretraining is resumable like the rest.


@flax.struct.dataclass
class RBMTrainState:
    step: jax.Array  # int32 [], the loop's step
    params: RBMParams
    opt_state: Any
    chains: jax.Array  # [N, V] persistent chains (PCD); CD: [B, V] the latest k-step samples of the batch


@flax.struct.dataclass
class DBMTrainState:
    step: jax.Array  # int32 []
    params: DBMParams  # trained in phase 3; set from compose_dbm(rbm1, rbm2) at its first step
    opt_state: Any
    chains: DBMChains  # [N, V], [N, H2]
    rbm1: RBMParams  # phase 1: v -> h1, doubled bottom-up input
    rbm1_opt: Any
    rbm2: RBMParams  # phase 2: h1 -> h2, doubled top-down input
    rbm2_opt: Any


def make_optimizer(optim: ml_collections.ConfigDict, steps_per_epoch: int, num_steps: int,
                   learning_rate: float | None = None) -> optax.GradientTransformation:
    """SGD with momentum and L2 weight decay on the weight matrices (Hinton's practical guide).

    Momentum optim.momentum for the first optim.momentum_epochs epochs, then
    optim.final_momentum; the learning rate (optim.learning_rate unless given) falls
    linearly to optim.final_lr_fraction of itself over `num_steps` updates (1: constant).
    Both read the optimizer's own update count, so each DBM phase has its own schedule.
    """
    _check_sgd(optim.learning_rate if learning_rate is None else learning_rate, optim.momentum, optim.weight_decay,
               "config.optim.")
    checks.check_number("config.optim.final_momentum", optim.final_momentum, low=0.0, high=1.0, high_open=True)
    checks.check_number("config.optim.final_lr_fraction", optim.final_lr_fraction, low=0.0)
    rate = float(optim.learning_rate if learning_rate is None else learning_rate)
    switch = int(round(optim.momentum_epochs * steps_per_epoch))
    first, final = float(optim.momentum), float(optim.final_momentum)
    decay_weights_only = functools.partial(jax.tree.map, lambda x: x.ndim == 2)
    return optax.chain(
        optax.add_decayed_weights(float(optim.weight_decay), mask=decay_weights_only),
        optax.inject_hyperparams(optax.sgd)(
            learning_rate=optax.linear_schedule(rate, rate * float(optim.final_lr_fraction), max(num_steps, 1)),
            momentum=lambda count: jnp.where(count < switch, first, final),
        ),
    )


def sweeps_at(step: jax.Array, k: int, k_start: int, ramp_steps: int) -> jax.Array:
    """k of CD-k at `step`: rises linearly from k_start to k over `ramp_steps` steps: int32 []."""
    if ramp_steps <= 0 or k_start >= k:
        return jnp.asarray(k, jnp.int32)
    fraction = jnp.minimum(step.astype(jnp.float32) / ramp_steps, 1.0)
    return (k_start + jnp.floor((k - k_start) * fraction)).astype(jnp.int32)


def _unit_range(images: np.ndarray) -> np.ndarray:
    """Each image scaled to [0, 1] by its own min and max (filters have arbitrary scale)."""
    lo = images.min(axis=tuple(range(1, images.ndim)), keepdims=True)
    hi = images.max(axis=tuple(range(1, images.ndim)), keepdims=True)
    return (images - lo) / np.maximum(hi - lo, 1e-12)


@dataclasses.dataclass(frozen=True)
class BoltzmannFamily:
    """Binds a config to the loop's Family functions, for an RBM (`model.kind='rbm'`) or a DBM."""

    config: ml_collections.ConfigDict
    image_shape: tuple[int, ...]  # [H, W, C]
    data_mean: np.ndarray  # [V] training pixel means: initial visible biases and AIS base rate
    steps_per_epoch: int
    num_steps: int

    # -- shapes and schedules

    @property
    def is_dbm(self) -> bool:
        return self.config.model.kind == "dbm"

    @property
    def num_visible(self) -> int:
        return int(np.prod(self.image_shape))

    @property
    def num_chains(self) -> int:
        return int(self.config.model.num_chains or self.config.batch_size)

    @property
    def pretrain_steps(self) -> int:
        """Steps of each greedy pretraining phase (DBM)."""
        return int(round(self.config.pretrain.epochs * self.steps_per_epoch)) if self.is_dbm else 0

    def _epochs_to_steps(self, epochs: float) -> int:
        return int(round(epochs * self.steps_per_epoch))

    def _sweeps(self, step: jax.Array, phase_start: int = 0) -> jax.Array:
        m = self.config.model
        return sweeps_at(step - phase_start, int(m.k), int(m.k_start), self._epochs_to_steps(m.k_ramp_epochs))

    def _optimizer(self) -> optax.GradientTransformation:
        return make_optimizer(self.config.optim, self.steps_per_epoch, self.num_steps - 2 * self.pretrain_steps)

    def _pretrain_optimizer(self) -> optax.GradientTransformation:
        return make_optimizer(self.config.optim, self.steps_per_epoch, self.pretrain_steps,
                              learning_rate=self.config.pretrain.learning_rate)

    def _visible(self, batch, key) -> jax.Array:
        """Binary visible vectors of a batch: [B, V] (dynamic binarization draws them with `key`)."""
        x = vae.prepare_images(batch["image"], self.config.data.binarize, key)
        return x.reshape(x.shape[0], -1)

    def current_dbm(self, state: DBMTrainState) -> DBMParams:
        """The DBM of the state: the composed pretrained RBMs until joint training has begun."""
        pretrained = compose_dbm(state.rbm1, state.rbm2)
        return jax.tree.map(lambda a, b: jnp.where(state.step <= 2 * self.pretrain_steps, a, b),
                            pretrained, state.params)

    # -- the loop's functions

    def init(self, key, batch) -> RBMTrainState | DBMTrainState:
        m = self.config.model
        params_key, chains_key, rbm2_key = jax.random.split(key, 3)
        step = jnp.zeros((), jnp.int32)
        if not self.is_dbm:
            params = init_rbm(params_key, self.num_visible, m.num_hidden, data_mean=self.data_mean,
                              weight_scale=m.weight_scale)
            num_chains = self.num_chains if m.method == "pcd" else self.config.batch_size
            chains = init_rbm_chains(chains_key, num_chains, self.num_visible)
            return RBMTrainState(step=step, params=params, opt_state=self._optimizer().init(params), chains=chains)
        params = init_dbm(params_key, self.num_visible, m.num_hidden, m.num_hidden2, data_mean=self.data_mean,
                          weight_scale=m.weight_scale)
        rbm1 = init_rbm(params_key, self.num_visible, m.num_hidden, data_mean=self.data_mean,
                        weight_scale=m.weight_scale)
        rbm2 = init_rbm(rbm2_key, m.num_hidden, m.num_hidden2, weight_scale=m.weight_scale)
        pretrain = self._pretrain_optimizer()
        return DBMTrainState(step=step, params=params, opt_state=self._optimizer().init(params),
                             chains=init_dbm_chains(chains_key, self.num_chains, params),
                             rbm1=rbm1, rbm1_opt=pretrain.init(rbm1), rbm2=rbm2, rbm2_opt=pretrain.init(rbm2))

    def train_step(self, state, batch, key):
        binarize_key, chain_key = jax.random.split(key)
        x = self._visible(batch, binarize_key)
        data = {"x": x, "mask": batch["mask"]}
        if self.is_dbm:
            state, metrics = self._dbm_step(state, data, chain_key)
        else:
            state, metrics = self._rbm_step(state, data, chain_key)
        return state.replace(step=state.step + 1), metrics

    def _rbm_step(self, state: RBMTrainState, data, key):
        m = self.config.model
        step = make_rbm_step(self._optimizer(), method=m.method, k=int(m.k), mesh=mesh_lib.data_mesh(),
                             keep_negatives=True)
        sweeps = self._sweeps(state.step)
        params, opt_state, chains, metrics = step(state.params, state.opt_state, state.chains, data, key, sweeps)
        metrics = {**metrics, "k": sweeps.astype(jnp.float32)}
        return state.replace(params=params, opt_state=opt_state, chains=chains), metrics

    def _dbm_step(self, state: DBMTrainState, data, key):
        m, mesh, p = self.config.model, mesh_lib.data_mesh(), self.pretrain_steps
        pretrain = self._pretrain_optimizer()
        k_pretrain = int(self.config.pretrain.k)
        zero = jnp.zeros((), jnp.float32)

        def rbm_metrics(metrics):
            return {**metrics, "unnormalized_bound": zero}

        def first(state):  # RBM 1 on v; h1 hears v twice, standing in for the missing top-down input
            step = make_rbm_step(pretrain, method="cd", k=k_pretrain, mesh=mesh, up_scale=2.0)
            rbm1, opt, _, metrics = step(state.rbm1, state.rbm1_opt, None, data, key)
            return state.replace(rbm1=rbm1, rbm1_opt=opt), rbm_metrics(metrics)

        def second(state):  # RBM 2 on p(h1 | v) of RBM 1; h1 hears h2 twice
            h1 = jax.nn.sigmoid(hidden_logits(state.rbm1, data["x"], 2.0))
            step = make_rbm_step(pretrain, method="cd", k=k_pretrain, mesh=mesh, down_scale=2.0)
            rbm2, opt, _, metrics = step(state.rbm2, state.rbm2_opt, None, {"x": h1, "mask": data["mask"]}, key)
            return state.replace(rbm2=rbm2, rbm2_opt=opt), rbm_metrics(metrics)

        def joint(state):
            step = make_dbm_step(self._optimizer(), k=int(m.k), mean_field_iters=int(m.mean_field_iters), mesh=mesh)
            params, opt, chains, metrics = step(self.current_dbm(state), state.opt_state, state.chains, data, key,
                                                self._sweeps(state.step, 2 * p))
            return (state.replace(params=params, opt_state=opt, chains=chains),
                    {"free_energy_data": zero, "free_energy_chains": zero, **metrics})

        phase = (state.step >= p).astype(jnp.int32) + (state.step >= 2 * p).astype(jnp.int32)
        state, metrics = jax.lax.switch(phase, (first, second, joint), state)
        return state, {**metrics, "phase": phase.astype(jnp.float32) + 1.0}

    def eval_step(self, state, batch, key):
        """Mask-weighted sums: free energy (RBM) or minus the unnormalised mean-field bound
        (DBM), and the squared error of a mean-field reconstruction v -> h -> E[v | h]."""
        x, mask = self._visible(batch, key), batch["mask"]
        if self.is_dbm:
            params = self.current_dbm(state)
            mu1, mu2 = mean_field(params, x, int(self.config.model.mean_field_iters))
            recon = jax.nn.sigmoid(params.b_vis + mu1 @ params.W1.T)
            score = {"neg_unnormalized_bound": -jnp.sum(dbm_unnormalized_bound(params, x, mu1, mu2) * mask)}
        else:
            recon = visible_mean(state.params, hidden_probs(state.params, x))
            score = {"free_energy": jnp.sum(free_energy(state.params, x) * mask)}
        return {**score, "recon_error": jnp.sum(jnp.sum((x - recon) ** 2, -1) * mask)}

    def report(self, state, step: int, workdir: pathlib.Path, key) -> dict:
        """PNG grids: Gibbs samples from random starts, filters (first-layer weights), and
        the chains of the state (persistent chains; CD: the latest negatives)."""
        if jax.process_index() != 0:
            return {}
        out, shape = pathlib.Path(workdir) / "images", (-1, *self.image_shape)
        e = self.config.eval
        state = mesh_lib.host_copy(state)
        means = np.asarray(_sample_means(state, self.is_dbm, self.current_dbm if self.is_dbm else None, key,
                                         int(e.num_samples), int(e.sample_sweeps)))
        images_lib.save_grid(out / f"samples_{step:07d}.png", means.reshape(shape))
        W = state.params.W if not self.is_dbm else self.current_dbm(state).W1
        filters = _unit_range(np.asarray(W).T[: e.num_filters].reshape(shape))
        images_lib.save_grid(out / f"filters_{step:07d}.png", filters)
        chains = state.chains.v if self.is_dbm else state.chains
        images_lib.save_grid(out / f"chains_{step:07d}.png", np.asarray(chains)[: e.num_samples].reshape(shape))
        return {}

    def as_family(self) -> Family:
        return Family(init=self.init, train_step=self.train_step, eval_step=self.eval_step, report=self.report)


def _sample_means(state, is_dbm: bool, current_dbm, key, num: int, sweeps: int) -> jax.Array:
    """E[v | h] after `sweeps` Gibbs sweeps of `num` chains started from uniform bits: [num, V]."""
    start_key, chain_key = jax.random.split(key)
    if is_dbm:
        params = current_dbm(state)
        _, means = jax.jit(dbm_gibbs_chain, static_argnums=3)(params, init_dbm_chains(start_key, num, params),
                                                              chain_key, sweeps)
        return means
    v0 = init_rbm_chains(start_key, num, state.params.W.shape[0])
    _, means = jax.jit(gibbs_chain, static_argnums=3)(state.params, v0, chain_key, sweeps)
    return means


def family_for(config: ml_collections.ConfigDict, dataset: data_lib.Dataset) -> BoltzmannFamily:
    """The RBM or DBM family for `config`, shaped by the training images; validates the config."""
    m = config.model
    if m.kind not in ("rbm", "dbm"):
        raise ValueError(f"config.model.kind must be 'rbm' or 'dbm', got {m.kind!r}")
    if m.method not in METHODS:
        raise ValueError(f"config.model.method must be one of {METHODS}, got {m.method!r}")
    if m.kind == "dbm" and m.method != "pcd":
        raise ValueError("config.model.method must be 'pcd' for a DBM (its negative phase uses persistent chains)")
    if m.k < 1 or not 1 <= m.k_start:
        raise ValueError(f"config.model.k and config.model.k_start must be at least 1, got {m.k}, {m.k_start}")
    if config.data.binarize == "none":
        raise ValueError("config.data.binarize must be 'static' or 'dynamic': the visible units are binary")
    train = dataset["train"]["image"]
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    num_steps = (int(config.num_steps) if config.num_steps > 0
                 else max(1, math.ceil(config.num_epochs * steps_per_epoch)))
    family = BoltzmannFamily(config=config, image_shape=tuple(train.shape[1:]),
                             data_mean=data_lib.column_mean(train).reshape(-1) / 255.0,
                             steps_per_epoch=steps_per_epoch, num_steps=num_steps)
    if family.num_chains % jax.device_count():
        raise ValueError(f"config.model.num_chains={family.num_chains} must be a multiple of the device count "
                         f"{jax.device_count()}")
    if 2 * family.pretrain_steps > num_steps:
        raise ValueError(f"config.pretrain.epochs={config.pretrain.epochs} gives 2 x {family.pretrain_steps} "
                         f"pretraining steps, more than the run's {num_steps} steps")
    return family


def log_likelihood(family: BoltzmannFamily, state, dataset: data_lib.Dataset, config) -> dict[str, float]:
    """AIS log Z, then the mean log p(v) in nats of the test split and of the first
    config.eval.train_examples training examples (DBM: the mean-field lower bound).

    AIS: config.eval.ais_runs runs over config.eval.ais_temperatures steps of the paper's
    piecewise schedule, from the base-rate model of the training pixel means. Where the
    smaller layer has at most config.eval.exact_max_bits units, log Z is also enumerated
    (`log_z_exact`, and the log-likelihoods from it).
    """
    from genjax_lab.inference import ais  # ais imports this module

    e, mesh = config.eval, mesh_lib.data_mesh()
    key = jax.random.fold_in(jax.random.key(config.seed), 20_000)
    base = visible_bias_from_mean(family.data_mean)
    betas = ais.piecewise_schedule(int(e.ais_temperatures))
    runs_mesh = mesh if e.ais_runs % jax.device_count() == 0 else None
    start = time.perf_counter()
    if family.is_dbm:
        params = family.current_dbm(state)
        result = ais.dbm_ais_log_z(params, betas, key, int(e.ais_runs), base_vis_bias=base, mesh=runs_mesh)
        as_rbm = dbm_as_rbm(params)
    else:
        params = state.params
        result = ais.ais_log_z(params, betas, key, int(e.ais_runs), base_vis_bias=base, mesh=runs_mesh)
        as_rbm = params
    ais_seconds = time.perf_counter() - start

    def unnormalized_sums(state, batch, key):  # log p(v) + log Z, summed with the mask
        x = family._visible(batch, key)
        if family.is_dbm:
            score = dbm_lower_bound(family.current_dbm(state), x, 0.0, int(config.model.mean_field_iters))
        else:
            score = -free_energy(state.params, x)
        return {"score": jnp.sum(score * batch["mask"])}

    score_fn = jax.jit(unnormalized_sums)
    train = {k: v[: int(e.train_examples)] for k, v in dataset["train"].items()}
    scores = {split: evaluate(score_fn, state, mesh, arrays, int(e.ll_batch_size), jax.random.fold_in(key, i))["score"]
              for i, (split, arrays) in enumerate((("test", dataset["test"]), ("train", train)))}
    metrics = {"log_z_ais": result.log_z, "log_z_ais_lower": result.log_z_lower, "log_z_ais_upper": result.log_z_upper,
               "log_z_ais_std": result.log_z_std, "ais_seconds": ais_seconds,
               "test_log_likelihood": scores["test"] - result.log_z,
               "train_log_likelihood": scores["train"] - result.log_z}
    if min(as_rbm.W.shape) <= e.exact_max_bits:
        exact = float(ais.exact_log_z(as_rbm))
        metrics.update(log_z_exact=exact, test_log_likelihood_exact=scores["test"] - exact)
    return metrics


def default_config() -> ml_collections.ConfigDict:
    """The Boltzmann family's keys, with an RBM PCD-1 on the 8x8 digits; configs adjust them."""
    config = base_config()
    config.batch_size = 100
    config.num_epochs = 10.0
    config.log_every = 100
    config.eval_every = 0
    config.eval_batch_size = 1000
    config.checkpoint.every = 600
    config.data = image_data_config("digits", "static")
    config.model = ml_collections.ConfigDict({
        "kind": "rbm",  # or "dbm"
        "num_hidden": 500,  # DBM: h1
        "num_hidden2": 1000,  # DBM only
        "method": "pcd",  # "cd" or "pcd" (RBM); the DBM is always persistent
        "k": 1,  # Gibbs sweeps per step
        "k_start": 1,  # k rises linearly from k_start to k over k_ramp_epochs (0: k throughout)
        "k_ramp_epochs": 0.0,
        "num_chains": 0,  # persistent chains; 0: batch_size
        "mean_field_iters": 10,  # DBM positive phase and bound
        "weight_scale": 0.01,
    })
    config.optim = ml_collections.ConfigDict({
        "learning_rate": 0.05, "final_lr_fraction": 1.0, "momentum": 0.5, "final_momentum": 0.9,
        "momentum_epochs": 5.0, "weight_decay": 2e-4,
    })
    config.pretrain = ml_collections.ConfigDict({"epochs": 0.0, "learning_rate": 0.05, "k": 1})  # DBM: per layer
    config.eval = ml_collections.ConfigDict({
        "ais_runs": 100, "ais_temperatures": 14_500, "exact_max_bits": 20, "train_examples": 10_000,
        "ll_batch_size": 1000, "num_samples": 100, "sample_sweeps": 1000, "num_filters": 100,
    })
    return config
