"""Training RBMs and DBMs: the CD-k / PCD-k steps, DBM pretraining and joint step, the
optimizer, and the `fit` verb.

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

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from genjax_lab.core import checks
from genjax_lab.core.mesh import DATA_AXIS
from genjax_lab.models.boltzmann.model import (
    ClassRBMParams,
    DBMChains,
    DBMParams,
    RBMParams,
    chain_keys,
    check_visible,
    class_rbm_as_rbm,
    class_rbm_from_rbm_layout,
    compose_dbm,
    dbm_as_rbm,
    dbm_from_rbm_layout,
    dbm_unnormalized_bound,
    free_energy_from_logits,
    hidden_logits,
    init_class_rbm,
    init_dbm,
    init_dbm_chains,
    init_rbm,
    init_rbm_chains,
    label_log_probs,
    mean_field,
    run_chains,
)

METHODS = ("cd", "pcd")
KINDS = ("rbm", "dbm")  # what the loop (experiments/boltzmann.py) trains
FIT_KINDS = (*KINDS, "class_rbm")  # what `fit` trains in memory


class _Stats(NamedTuple):
    """Weighted sums over examples or chains; divided by `weight` they are expectations."""

    vh: jax.Array  # [V, H]
    v: jax.Array  # [V]
    h: jax.Array  # [H]
    weight: jax.Array  # []
    free_energy: jax.Array  # []


def _check_sgd(learning_rate, momentum, weight_decay, prefix: str = "") -> None:
    checks.check_positive(f"{prefix}learning_rate", learning_rate)
    checks.check_number(f"{prefix}momentum", momentum, low=0.0, high=1.0, high_open=True)
    checks.check_number(f"{prefix}weight_decay", weight_decay, low=0.0)


def rbm_optimizer(
    learning_rate: float = 0.1, momentum: float = 0.5, weight_decay: float = 0.0
) -> optax.GradientTransformation:
    """SGD with momentum and L2 decay on the weight matrices only (Hinton's practical guide)."""
    _check_sgd(learning_rate, momentum, weight_decay)
    decay_weights_only = functools.partial(jax.tree.map, lambda x: x.ndim == 2)
    return optax.chain(
        optax.add_decayed_weights(weight_decay, mask=decay_weights_only),
        optax.sgd(learning_rate, momentum=momentum if momentum else None),
    )


def _phase_stats(vis, hid, weights, free_energies) -> _Stats:
    weighted = vis * weights[:, None]
    return _Stats(
        vh=weighted.T @ hid,
        v=weighted.sum(0),
        h=weights @ hid,
        weight=weights.sum(),
        free_energy=weights @ free_energies,
    )


def _per_device(fn: Callable, mesh: Mesh | None, num_sharded: int) -> Callable:
    """`fn(params, *sharded, key, sweeps)` per device under shard_map over 'data' (as is if
    mesh is None).

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


def _negative_phase(
    params: RBMParams,
    start,
    weights,
    key,
    *,
    k,
    visible: str,
    up: float,
    down: float,
    mesh: Mesh | None,
    labels: int = 0,
):
    """Advances this device's chains `start` [n, V] by k sweeps: (chains, their local weighted
    _Stats). labels: the trailing softmax group of a classification RBM (`run_chains`)."""
    keys = chain_keys(key, _chain_offset(mesh, start.shape[0]), start.shape[0])
    v, _ = run_chains(params, start, keys, k, visible, up, down, labels=labels)
    logits = hidden_logits(params, v, up)
    free_energies = free_energy_from_logits(params, v, logits, visible)
    return v, _phase_stats(v, jax.nn.sigmoid(logits), weights, free_energies)


def _descent_direction(pos: _Stats, neg: _Stats) -> RBMParams:
    """Minus the log-likelihood gradient, <.>_model - <.>_data, for optax's minimisation."""
    pw, nw = jnp.maximum(pos.weight, 1.0), jnp.maximum(neg.weight, 1.0)
    return RBMParams(
        W=neg.vh / nw - pos.vh / pw, b_vis=neg.v / nw - pos.v / pw, b_hid=neg.h / nw - pos.h / pw
    )


def _check_step_args(method: str, k: int, visible: str, mesh: Mesh | None) -> None:
    check_visible(visible)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if k < 1:
        raise ValueError(f"k (Gibbs sweeps per step) must be at least 1, got {k}")
    if mesh is not None and DATA_AXIS not in mesh.axis_names:
        raise ValueError(f"mesh must have a {DATA_AXIS!r} axis, got axes {mesh.axis_names}")


def make_rbm_step(
    optimizer: optax.GradientTransformation,
    *,
    method: str = "pcd",
    k: int = 1,
    visible: str = "bernoulli",
    mesh: Mesh | None = None,
    up_scale: float = 1.0,
    down_scale: float = 1.0,
    keep_negatives: bool = False,
    labels: int = 0,
    discriminative_weight: float = 0.0,
) -> Callable:
    """The CD-k / PCD-k step `(params, opt_state, chains, batch, key, num_sweeps=None) ->
    (params, opt_state, chains, metrics)`.

    batch: {"x": [B, ...] visible data (flattened to [B, V]), "mask": [B]}. chains: [N, V]
    persistent fantasy particles for 'pcd' (N a multiple of the device count when sharded),
    ignored and returned unchanged for 'cd' (whose chains start at the batch, weighted by
    its mask), unless keep_negatives: then 'cd' returns the batch's k-step samples [B, V]
    in their place (a training state can hold CD's latest negatives, to display them).
    key: fresh per step (e.g. fold_in(base, step)). mesh: None runs on one device; a mesh
    with a 'data' axis runs the chains under shard_map. up_scale/down_scale multiply W in
    p(h | v) / p(v | h): 2 and 1 give the doubled-input RBM of DBM pretraining (the
    gradient is then used up to a factor of 2, absorbed by the step size).
    metrics: mean free energy of the data and of the chains (their gap tracks overfitting).
    num_sweeps: an int32 [] that replaces k at this call (a schedule of k, e.g. CD-1 rising
    to CD-25); None: k.
    labels: C > 0 trains a classification RBM in its RBM form (`class_rbm_as_rbm`): the last
    C columns of batch["x"] (and of the chains) are the one-hot label, which the negative
    phase draws as one softmax group (Larochelle & Bengio 2008's generative CD); metrics then
    also hold the batch's mean exact log p(y | x), `label_log_likelihood`.
    discriminative_weight: lambda >= 0 adds lambda times the exact gradient of -log p(y | x)
    (Larochelle & Bengio's hybrid training; their L_disc + alpha L_gen is lambda = 1 / alpha
    with the learning rate times alpha). Needs labels.
    """
    _check_step_args(method, k, visible, mesh)
    checks.check_count("labels", labels, minimum=0)
    if labels and visible != "bernoulli":
        raise ValueError("labels: a classification RBM has Bernoulli visible units")
    checks.check_number("discriminative_weight", discriminative_weight, low=0.0)
    if discriminative_weight and not labels:
        raise ValueError("discriminative_weight needs label units (labels > 0)")

    def label_log_likelihood(params, x, mask):
        """sum_b mask_b log p(y_b | x_b), params and x in the RBM form [x, one-hot y]."""
        v, y = x[:, :-labels], x[:, -labels:]
        class_params = class_rbm_from_rbm_layout(params, v.shape[1])
        return jnp.sum(mask * jnp.sum(y * label_log_probs(class_params, v), -1))

    checks.check_positive("up_scale", up_scale)
    checks.check_positive("down_scale", down_scale)

    def phases(params, x, mask, chains, key, sweeps):
        logits = hidden_logits(params, x, up_scale)
        free_energies = free_energy_from_logits(params, x, logits, visible)
        pos = _phase_stats(x, jax.nn.sigmoid(logits), mask, free_energies)
        # built here, per device, so that every sharded argument arrives already split
        if method == "cd":
            start, weights = x, mask
        else:
            start, weights = chains, jnp.ones(chains.shape[0], x.dtype)
        chains, neg = _negative_phase(
            params,
            start,
            weights,
            key,
            k=sweeps,
            visible=visible,
            up=up_scale,
            down=down_scale,
            mesh=mesh,
            labels=labels,
        )
        if not labels:
            return chains, _reduce((pos, neg, None), mesh)
        if discriminative_weight:
            conditional = jax.value_and_grad(label_log_likelihood)(params, x, mask)
        else:
            conditional = (label_log_likelihood(params, x, mask), None)
        return chains, _reduce((pos, neg, conditional), mesh)

    phases = _per_device(phases, mesh, num_sharded=3)

    def step(params: RBMParams, opt_state, chains, batch, key, num_sweeps=None):
        checks.check_mapping("batch", batch, ("x", "mask"))
        x, mask = _flat(batch["x"]), batch["mask"]
        sweeps = jnp.asarray(k if num_sweeps is None else num_sweeps, jnp.int32)
        start = x if method == "cd" else chains
        new_chains, (pos, neg, conditional) = phases(params, x, mask, start, key, sweeps)
        weight = jnp.maximum(pos.weight, 1.0)
        direction = _descent_direction(pos, neg)
        if discriminative_weight:
            direction = jax.tree.map(
                lambda g, d: g - discriminative_weight * d / weight, direction, conditional[1]
            )
        updates, opt_state = optimizer.update(direction, opt_state, params)
        metrics = {
            "free_energy_data": pos.free_energy / weight,
            "free_energy_chains": neg.free_energy / jnp.maximum(neg.weight, 1.0),
        }
        if labels:
            metrics["label_log_likelihood"] = conditional[0] / weight
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
        padding = jnp.zeros(num_batches * batch_size - n, jnp.int32)
        order = jnp.concatenate([jax.random.permutation(order_key, n), padding])
        mask = (jnp.arange(num_batches * batch_size) < n).astype(data.dtype)

        def body(carry, i):
            rows = jax.lax.dynamic_slice_in_dim(order, i * batch_size, batch_size)
            batch = {
                "x": data[rows],
                "mask": jax.lax.dynamic_slice_in_dim(mask, i * batch_size, batch_size),
            }
            params, opt_state, chains, metrics = step(
                *carry, batch, jax.random.fold_in(step_key, i)
            )
            return (params, opt_state, chains), metrics

        (params, opt_state, chains), metrics = jax.lax.scan(
            body, (params, opt_state, chains), jnp.arange(num_batches)
        )
        return params, opt_state, chains, jax.tree.map(jnp.mean, metrics)

    return epoch


def make_dbm_step(
    optimizer: optax.GradientTransformation,
    *,
    k: int = 1,
    mean_field_iters: int = 10,
    mesh: Mesh | None = None,
) -> Callable:
    """The DBM step `(params, opt_state, chains: DBMChains, batch, key, num_sweeps=None) ->
    (params, opt_state, chains, metrics)`.

    Positive phase: mean-field posteriors of the batch (mask-weighted); negative phase: k
    block-Gibbs sweeps of the persistent chains (per-device under shard_map when `mesh` is
    given, keys by global chain index). metrics: the mean unnormalised bound of the batch,
    E_q[-E] + H(q) (the bound on log p(v) is this minus log Z). num_sweeps: as in
    `make_rbm_step`.
    """
    _check_step_args("pcd", k, "bernoulli", mesh)
    checks.check_count("mean_field_iters", mean_field_iters, minimum=0)

    def phases(params, x, mask, start, key, sweeps):
        mu1, mu2 = mean_field(params, x, mean_field_iters)
        # the bound rides in the free-energy slot (as minus itself) to be reduced with the rest
        bounds = dbm_unnormalized_bound(params, x, mu1, mu2)
        pos = _phase_stats(jnp.concatenate([x, mu2], axis=1), mu1, mask, -bounds)
        state, neg = _negative_phase(
            dbm_as_rbm(params),
            start,
            jnp.ones(start.shape[0], x.dtype),
            key,
            k=sweeps,
            visible="bernoulli",
            up=1.0,
            down=1.0,
            mesh=mesh,
        )
        return state, _reduce((pos, neg), mesh)

    phases = _per_device(phases, mesh, num_sharded=3)

    def step(params: DBMParams, opt_state, chains: DBMChains, batch, key, num_sweeps=None):
        checks.check_mapping("batch", batch, ("x", "mask"))
        x, mask = _flat(batch["x"]), batch["mask"]
        num_visible = x.shape[1]
        sweeps = jnp.asarray(k if num_sweeps is None else num_sweeps, jnp.int32)
        start = jnp.concatenate([chains.v, chains.h2], axis=1)
        state, (pos, neg) = phases(params, x, mask, start, key, sweeps)
        grads = dbm_from_rbm_layout(_descent_direction(pos, neg), num_visible)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        new_chains = DBMChains(v=state[:, :num_visible], h2=state[:, num_visible:])
        metrics = {"unnormalized_bound": -pos.free_energy / jnp.maximum(pos.weight, 1.0)}
        return optax.apply_updates(params, updates), opt_state, new_chains, metrics

    return step


class PretrainResult(NamedTuple):
    params: DBMParams
    rbm1: RBMParams  # v -> h1, trained with doubled bottom-up input
    rbm2: RBMParams  # h1 -> h2, trained with doubled top-down input


def pretrain_dbm(
    key: jax.Array,
    data: jax.Array,
    num_hidden1: int,
    num_hidden2: int,
    *,
    num_epochs: int = 10,
    batch_size: int = 100,
    learning_rate: float = 0.05,
    momentum: float = 0.5,
    k: int = 1,
    mesh: Mesh | None = None,
) -> PretrainResult:
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
    train = functools.partial(
        _train_cd, optimizer=optimizer, num_epochs=num_epochs, batch_size=batch_size, k=k, mesh=mesh
    )
    rbm1 = train(keys[0], keys[1], data, num_hidden1, up=2.0, down=1.0)
    h1_data = jax.nn.sigmoid(hidden_logits(rbm1, data, 2.0))
    rbm2 = train(keys[2], keys[3], h1_data, num_hidden2, up=1.0, down=2.0)
    return PretrainResult(params=compose_dbm(rbm1, rbm2), rbm1=rbm1, rbm2=rbm2)


def _train_cd(
    init_key, train_key, data, num_hidden, *, optimizer, num_epochs, batch_size, k, mesh, up, down
) -> RBMParams:
    params = init_rbm(init_key, data.shape[1], num_hidden, data_mean=np.asarray(data.mean(0)))
    step = make_rbm_step(optimizer, method="cd", k=k, mesh=mesh, up_scale=up, down_scale=down)
    epoch = make_epoch(step, batch_size)
    opt_state = optimizer.init(params)
    for e in range(num_epochs):
        params, opt_state, _, _ = epoch(
            params, opt_state, None, data, jax.random.fold_in(train_key, e)
        )
    return params


def make_optimizer(
    optim: ml_collections.ConfigDict,
    steps_per_epoch: int,
    num_steps: int,
    learning_rate: float | None = None,
    final_lr_fraction: float | None = None,
    k_step_every: int = 0,
) -> optax.GradientTransformation:
    """SGD with momentum and L2 weight decay on the weight matrices (Hinton's practical guide).

    Momentum optim.momentum for the first optim.momentum_epochs epochs, then
    optim.final_momentum; the learning rate (optim.learning_rate unless given) falls
    linearly to final_lr_fraction (default optim.final_lr_fraction) of itself over
    `num_steps` updates (1: constant). k_step_every > 0 divides the rate by
    k = `stepped_sweeps(count, k_step_every)`, as rbm_l2.m pairs CD-k with 0.05 / k.
    All read the optimizer's own update count, so each DBM phase has its own schedule.
    """
    rate = optim.learning_rate if learning_rate is None else learning_rate
    _check_sgd(rate, optim.momentum, optim.weight_decay, "config.optim.")
    rate = float(rate)
    checks.check_number(
        "config.optim.final_momentum", optim.final_momentum, low=0.0, high=1.0, high_open=True
    )
    fraction = optim.final_lr_fraction if final_lr_fraction is None else final_lr_fraction
    checks.check_number("config.optim.final_lr_fraction", fraction, low=0.0)
    switch = round(optim.momentum_epochs * steps_per_epoch)
    first, final = float(optim.momentum), float(optim.final_momentum)
    decay_weights_only = functools.partial(jax.tree.map, lambda x: x.ndim == 2)
    schedule = optax.linear_schedule(rate, rate * float(fraction), max(num_steps, 1))
    if k_step_every > 0:
        linear = schedule

        def schedule(count):
            return linear(count) / stepped_sweeps(count, k_step_every)

    return optax.chain(
        optax.add_decayed_weights(float(optim.weight_decay), mask=decay_weights_only),
        optax.inject_hyperparams(optax.sgd)(
            learning_rate=schedule,
            momentum=lambda count: jnp.where(count < switch, first, final),
        ),
    )


def sweeps_at(step: jax.Array, k: int, k_start: int, ramp_steps: int) -> jax.Array:
    """k of CD-k at `step`: rises linearly from k_start to k over `ramp_steps` steps: int32 []."""
    if ramp_steps <= 0 or k_start >= k:
        return jnp.asarray(k, jnp.int32)
    fraction = jnp.minimum(step.astype(jnp.float32) / ramp_steps, 1.0)
    return (k_start + jnp.floor((k - k_start) * fraction)).astype(jnp.int32)


def stepped_sweeps(step: jax.Array, every_steps: int) -> jax.Array:
    """k of CD-k raised by one every `every_steps` steps from 1: int32 []. With every_steps
    = 20 epochs this is rbm_l2.m's CD = ceil(epoch / 20), epochs counted from 1."""
    return (jnp.asarray(step) // every_steps + 1).astype(jnp.int32)


def check_model_config(model: ml_collections.ConfigDict, kinds: tuple[str, ...] = KINDS) -> None:
    """config.model names a kind (one of `kinds`), a method and sweep counts this family has."""
    if model.kind not in kinds:
        fit_only = " ('class_rbm' is trained by boltzmann.fit)" if kinds == KINDS else ""
        raise ValueError(f"config.model.kind must be one of {kinds}{fit_only}, got {model.kind!r}")
    if model.method not in METHODS:
        raise ValueError(f"config.model.method must be one of {METHODS}, got {model.method!r}")
    if model.kind == "dbm" and model.method != "pcd":
        raise ValueError(
            "config.model.method must be 'pcd' for a DBM (its negative phase uses "
            "persistent chains)"
        )
    if model.get("discriminative_weight", 0.0) and model.kind != "class_rbm":
        raise ValueError(
            "config.model.discriminative_weight is for a classification RBM "
            f"(config.model.kind='class_rbm'), got kind {model.kind!r}"
        )
    if model.k < 1 or not 1 <= model.k_start:
        raise ValueError(
            "config.model.k and config.model.k_start must be at least 1, got "
            f"{model.k}, {model.k_start}"
        )


# ----------------------------------------------------------------------------- the verbs


def meta_from_data(data: Mapping[str, Any], config: ml_collections.ConfigDict) -> dict:
    """The sizes `data["x"]` [N, ...] fixes: num_visible (V) and the example shape; for a
    classification RBM also num_classes, from the labels `data["y"]` [N] (the largest + 1)."""
    shape = tuple(int(d) for d in np.shape(data["x"])[1:])
    meta = {"num_visible": int(np.prod(shape)), "image_shape": list(shape)}
    if config.model.kind == "class_rbm":
        checks.check_mapping("data", data, ("x", "y"))
        labels = checks.check_array("data['y']", data["y"], (len(data["x"]),), kinds=checks.INTEGER)
        if labels.min() < 0:
            raise ValueError(f"data['y'] must hold labels >= 0, got {labels.min()}")
        meta["num_classes"] = max(int(labels.max()) + 1, 2)
    return meta


def init(key: jax.Array, config: ml_collections.ConfigDict, meta: Mapping[str, Any]):
    """Fresh parameters: RBMParams (config.model.kind 'rbm'), DBMParams ('dbm') or
    ClassRBMParams ('class_rbm'), small random weights and zero biases (`fit` sets the
    visible biases from the data's means)."""
    m = config.model
    check_model_config(m, FIT_KINDS)
    if m.kind == "rbm":
        return init_rbm(key, meta["num_visible"], m.num_hidden, weight_scale=m.weight_scale)
    if m.kind == "class_rbm":
        return init_class_rbm(
            key, meta["num_visible"], meta["num_classes"], m.num_hidden, weight_scale=m.weight_scale
        )
    return init_dbm(
        key, meta["num_visible"], m.num_hidden, m.num_hidden2, weight_scale=m.weight_scale
    )


def _whole_epochs(name: str, value) -> int:
    checks.check_number(name, value, low=0.0)
    if value != int(value):
        raise ValueError(f"{name} must be a whole number of epochs for fit, got {value}")
    return int(value)


def fit(
    key: jax.Array,
    data: Mapping[str, Any],
    config: ml_collections.ConfigDict,
    init: RBMParams | DBMParams | ClassRBMParams | None = None,
) -> tuple[Any, dict]:
    """Trains an RBM (CD-k or PCD-k), a DBM (greedy pretraining, then joint PCD) or a
    classification RBM (config.model.kind 'class_rbm': CD-k or PCD-k on the joint of x and
    its one-hot label, Larochelle & Bengio 2008) in memory.

    data: {"x": [N, ...] visible vectors in [0, 1] (binary, already binarized), and for a
    classification RBM "y": [N] integer labels}. config: the
    family's whole config (`default_config()`): model, optim, pretrain, batch_size and
    num_epochs (whole epochs; a DBM spends 2 x pretrain.epochs of them pretraining, as in
    the loop). Each epoch is one `make_epoch` scan of `make_rbm_step` / `make_dbm_step` on
    one device; k stays config.model.k (the loop's `BoltzmannFamily` ramps it). init: start
    from these parameters instead (a DBM then skips pretraining).
    Returns (params, history): history holds each epoch's mean step metrics [num_epochs'] and
    num_iters, the number of steps taken.
    """
    m = config.model
    check_model_config(m, FIT_KINDS)
    if m.k_ramp_epochs > 0 and m.k_start < m.k:
        raise ValueError(
            "config.model.k_ramp_epochs > 0: fit keeps k fixed; ramp k with the "
            "loop (experiments/boltzmann.py) or set k_ramp_epochs=0"
        )
    x = checks.check_array("data['x']", data["x"])
    x = jnp.asarray(x, jnp.float32).reshape(x.shape[0], -1)
    num_epochs = _whole_epochs("config.num_epochs", config.num_epochs)
    pretrain_epochs = _whole_epochs("config.pretrain.epochs", config.pretrain.epochs)
    if m.kind != "dbm" or init is not None:
        pretrain_epochs = 0
    joint_epochs = num_epochs - 2 * pretrain_epochs
    if joint_epochs < 1:
        raise ValueError(
            f"config.num_epochs={config.num_epochs} leaves no training epoch "
            f"after 2 x config.pretrain.epochs={pretrain_epochs}"
        )
    batch_size = int(config.batch_size)
    steps_per_epoch = math.ceil(x.shape[0] / batch_size)
    init_key, chain_key, train_key = jax.random.split(key, 3)
    data_mean = np.asarray(x.mean(0))
    optimizer = make_optimizer(config.optim, steps_per_epoch, joint_epochs * steps_per_epoch)
    num_chains = int(m.num_chains or batch_size)
    if m.kind == "rbm":
        params = (
            init
            if init is not None
            else init_rbm(
                init_key, x.shape[1], m.num_hidden, data_mean=data_mean, weight_scale=m.weight_scale
            )
        )
        step = make_rbm_step(optimizer, method=m.method, k=int(m.k))
        chains = init_rbm_chains(chain_key, num_chains, x.shape[1]) if m.method == "pcd" else None
    elif m.kind == "class_rbm":
        num_visible, num_classes = x.shape[1], meta_from_data(data, config)["num_classes"]
        if init is None:
            init = init_class_rbm(
                init_key,
                num_visible,
                num_classes,
                m.num_hidden,
                data_mean=data_mean,
                weight_scale=m.weight_scale,
            )
            frequencies = np.bincount(np.asarray(data["y"]), minlength=num_classes) + 1.0
            init = init._replace(b_label=jnp.asarray(np.log(frequencies / frequencies.sum())))
        # trained in its RBM form over [x, one-hot y], the label a softmax group in the chains
        params = class_rbm_as_rbm(init)
        x = jnp.concatenate([x, jax.nn.one_hot(jnp.asarray(data["y"]), num_classes)], axis=1)
        step = make_rbm_step(
            optimizer,
            method=m.method,
            k=int(m.k),
            labels=num_classes,
            discriminative_weight=float(m.discriminative_weight),
        )
        if m.method == "pcd":
            bits_key, labels_key = jax.random.split(chain_key)
            chains = jnp.concatenate(
                [
                    init_rbm_chains(bits_key, num_chains, num_visible),
                    jax.nn.one_hot(
                        jax.random.randint(labels_key, (num_chains,), 0, num_classes), num_classes
                    ),
                ],
                axis=1,
            )
        else:
            chains = None
    else:
        if init is not None:
            params = init
        elif pretrain_epochs:
            params = pretrain_dbm(
                init_key,
                x,
                m.num_hidden,
                m.num_hidden2,
                num_epochs=pretrain_epochs,
                batch_size=batch_size,
                learning_rate=config.pretrain.learning_rate,
                momentum=config.optim.momentum,
                k=int(config.pretrain.k),
            ).params
        else:
            params = init_dbm(
                init_key,
                x.shape[1],
                m.num_hidden,
                m.num_hidden2,
                data_mean=data_mean,
                weight_scale=m.weight_scale,
            )
        step = make_dbm_step(optimizer, k=int(m.k), mean_field_iters=int(m.mean_field_iters))
        chains = init_dbm_chains(chain_key, num_chains, params)
    epoch = make_epoch(step, batch_size)
    opt_state = optimizer.init(params)
    history = []
    for e in range(joint_epochs):
        params, opt_state, chains, metrics = epoch(
            params, opt_state, chains, x, jax.random.fold_in(train_key, e)
        )
        history.append(metrics)
    stacked = {name: np.asarray([float(h[name]) for h in history]) for name in history[0]}
    if m.kind == "class_rbm":
        params = class_rbm_from_rbm_layout(params, x.shape[1] - num_classes)
    return params, {**stacked, "num_iters": joint_epochs * steps_per_epoch}
