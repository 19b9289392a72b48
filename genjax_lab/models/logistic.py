"""Multinomial logistic regression: the discriminative baseline p(y | x) = softmax(x W + b).

Objective, as scikit-learn's LogisticRegression (penalty='l2', intercept not penalised):
  sklearn:  C * sum_n CE_n + |W|^2 / 2,
  here:     (sum_n mask_n CE_n) / (sum_n mask_n) + l2 |W|^2 / 2,   l2 = 1 / (C * N_train),
the same minimiser divided by C N_train (`l2_from_c`). The loss is a mask-weighted batch mean,
so with the batch sharded over the 'data' mesh axis its gradient is reduced across devices
inside jit. Fitted full batch by L-BFGS (optax.lbfgs with its zoom line search; needs the value
function, hence `linesearch=True` in `make_step`) or by Adam on minibatches.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import PartitionSpec as P

from genjax_lab.core import checks
from genjax_lab.core.mesh import is_batch_sharded


class LogisticParams(NamedTuple):
    """weights [D, C], bias [C]."""

    weights: jax.Array
    bias: jax.Array


def init(num_features: int, num_classes: int, dtype=jnp.float32) -> LogisticParams:
    """Zero parameters (the objective is convex: the start does not matter)."""
    checks.check_count("num_features", num_features)
    checks.check_count("num_classes", num_classes)
    return LogisticParams(
        jnp.zeros((num_features, num_classes), dtype), jnp.zeros((num_classes,), dtype)
    )


def l2_from_c(c: float, num_train: int) -> float:
    """The per-example L2 strength equivalent to scikit-learn's inverse regularisation C."""
    c, num_train = checks.check_number("C", c), checks.check_number("num_train", num_train)
    if c <= 0 or num_train <= 0:
        raise ValueError(f"C and num_train must be > 0, got C={c}, num_train={num_train}")
    return 1.0 / (c * num_train)


def _check_features(params: LogisticParams, x, **_) -> None:
    checks.check_finite_tree("params", params)
    checks.check_array("x", x, ("B", np.shape(params.weights)[0]))


@checks.validated(_check_features)
def logits(params: LogisticParams, x: jax.Array) -> jax.Array:
    """x [B, D] -> [B, C]."""
    return x @ params.weights + params.bias


def _masked_sums(params: LogisticParams, x, y, mask) -> tuple[jax.Array, jax.Array]:
    log_probs = jax.nn.log_softmax(logits(params, x))
    nll = -jnp.take_along_axis(log_probs, y[:, None], axis=1)[:, 0]
    mask = mask.astype(nll.dtype)
    return jnp.sum(nll * mask), jnp.sum(mask)


def loss(params: LogisticParams, batch: dict, l2: float) -> jax.Array:
    """Mask-weighted mean cross-entropy + l2 |W|^2 / 2. batch: x [B, D], y int [B], mask [B].

    With x split over an Explicit mesh axis the sums run per device under shard_map and are
    psum'd (the weight gradient contracts the sharded batch axis, which Explicit sharding
    will not do without being told the output sharding).
    """
    x, y, mask = batch["x"], batch["y"], batch["mask"]
    if is_batch_sharded(x):
        axis = jax.typeof(x).sharding.spec[0]

        def device_sums(params, x, y, mask):
            return jax.tree.map(lambda v: jax.lax.psum(v, axis), _masked_sums(params, x, y, mask))

        sums = jax.shard_map(
            device_sums,
            mesh=jax.typeof(x).sharding.mesh,
            in_specs=(P(), P(axis), P(axis), P(axis)),
            out_specs=P(),
        )(params, x, y, mask)
    else:
        sums = _masked_sums(params, x, y, mask)
    return sums[0] / sums[1] + 0.5 * l2 * jnp.sum(params.weights**2)


def make_optimizer(
    name: str = "lbfgs", learning_rate: float = 1e-2
) -> optax.GradientTransformation:
    """'lbfgs' (full batch, line search) or 'adam' (minibatches, `learning_rate`)."""
    if name == "lbfgs":
        return optax.lbfgs()
    if name == "adam":
        return optax.adam(checks.check_positive("learning_rate", learning_rate))
    raise ValueError(f"optimizer name must be 'lbfgs' or 'adam', got {name!r}")


def make_step(optimizer: optax.GradientTransformation, l2: float, *, linesearch: bool) -> Callable:
    """Jittable `(params, opt_state, batch) -> (params, opt_state, loss)`; linesearch=True
    for L-BFGS."""

    def step(params, opt_state, batch):
        def value_fn(p):
            return loss(p, batch, l2)

        if linesearch:
            value, grad = optax.value_and_grad_from_state(value_fn)(params, state=opt_state)
            updates, opt_state = optimizer.update(
                grad, opt_state, params, value=value, grad=grad, value_fn=value_fn
            )
        else:
            value, grad = jax.value_and_grad(value_fn)(params)
            updates, opt_state = optimizer.update(grad, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return step


def fit(
    x: jax.Array,
    y: jax.Array,
    num_classes: int,
    *,
    c: float = 1.0,
    num_steps: int = 100,
    mask: jax.Array | None = None,
) -> tuple[LogisticParams, jax.Array]:
    """Full-batch L-BFGS fit on x [N, D], y int [N]: (params, loss before each step [num_steps])."""
    checks.check_count("num_classes", num_classes)
    checks.check_count("num_steps", num_steps)
    x_np = checks.check_array("x", x, finite=False)
    if x_np.ndim != 2 or not np.all(np.isfinite(x_np)):
        raise ValueError(f"x must be a finite [N, D] array, got shape {x_np.shape}")
    y_np = checks.check_array("y", y, kinds=checks.INTEGER, nonempty=False)
    if y_np.shape != x_np.shape[:1] or y_np.min() < 0 or y_np.max() >= num_classes:
        raise ValueError(f"y must be [N] class indices in [0, num_classes={num_classes})")
    if mask is not None:
        checks.check_array("mask", mask, x_np.shape[:1], nonnegative=True)
    mask = jnp.ones(len(x_np), jnp.float32) if mask is None else jnp.asarray(mask, jnp.float32)
    batch = {"x": jnp.asarray(x_np, jnp.float32), "y": jnp.asarray(y_np, jnp.int32), "mask": mask}
    optimizer = make_optimizer("lbfgs")
    step = make_step(optimizer, l2_from_c(c, int(np.sum(np.asarray(mask)))), linesearch=True)
    params = init(x_np.shape[1], num_classes)

    @jax.jit
    def run(params):
        def body(carry, _):
            params, state = carry
            params, state, value = step(params, state, batch)
            return (params, state), value

        return jax.lax.scan(body, (params, optimizer.init(params)), length=num_steps)

    (params, _), losses = run(params)
    return params, losses


def predict_log_proba(params: LogisticParams, x: jax.Array) -> jax.Array:
    """log p(y = c | x): [B, C]."""
    return jax.nn.log_softmax(logits(params, x))


def predict_proba(params: LogisticParams, x: jax.Array) -> jax.Array:
    """p(y = c | x): [B, C]."""
    return jax.nn.softmax(logits(params, x))


def predict(params: LogisticParams, x: jax.Array) -> jax.Array:
    """Most probable class: int [B]."""
    return jnp.argmax(logits(params, x), axis=1)
