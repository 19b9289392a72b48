"""Gaussian mixtures, the family: config, `meta_from_data`, `init`, the host-side `fit`, and
the class-conditional mixture's Bayes-rule `classifier`.

`fit(key, data, config)` fits, as scikit-learn's GaussianMixture, a k-means start then EM
until an iteration's mean log-likelihood gain falls below `config.tol` (absolute; 0: never) or
after `config.num_iters` iterations, keeping the best final log-likelihood of
`config.num_inits` starts. It runs as one compiled `lax.while_loop` whose counts and
tolerances are traced, on rows padded (masked) to a few bucket sizes
(genjax_lab.core.compilation.bucket_size), so a new dataset size, iteration count, tolerance
or number of starts reuses the compiled program. With `config.class_conditional` it fits
one mixture per class of data["y"] at once (vmapped over class masks) and the class prior:
a `LabelledGMM`, whose `classifier(params)` classifies by Bayes' rule.

A fit that produces a singular covariance (e.g. reg_covar=0 and a component on copies of one
point) raises ValueError telling to raise reg_covar, as scikit-learn does, or to check the data
for duplicated points, rather than returning NaN parameters.

On the training loop (`loop_family(config)`, core/loop.py): the same fit as a full-batch
`loop.Family` whose step is one EM iteration of every start (the starts side by side on a
leading axis of the state, `EMState`), so a run checkpoints, resumes bitwise and evaluates
like every other family. Each start stops on `config.tol` by the rule `fit` uses and is then
held; the run ends (the loop's `converged`) once every start has stopped, or after
`num_steps` iterations (`loop_config` sets it to config.num_iters). `best_start(state)` is the
start `fit` keeps, the highest final log-likelihood.
"""

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import struct

from genjax_lab import api
from genjax_lab.core import checks, compilation
from genjax_lab.core.loop import Family, base_config
from genjax_lab.models.gmm.em import _em_loop, _iteration_capacity, em_step, init_kmeans
from genjax_lab.models.gmm.model import (
    COVARIANCE_TYPES,
    GMM,
    LabelledGMM,
    SubspaceGMM,
    _check_mask,
    _check_params,
    _check_scoring,
    _covariance_shape,
    class_log_likelihoods,
    log_prob,
)


# ----------------------------------------------------------------------------- config
def default_config() -> ml_collections.ConfigDict:
    """The model's whole config.

    num_components: K per mixture. covariance_type: one of COVARIANCE_TYPES. num_iters: the
    most EM iterations; tol: stop after the first iteration whose mean log-likelihood gain is
    below it (0: run num_iters). num_inits: k-means starts, the best final log-likelihood
    kept. reg_covar: added to every covariance's diagonal. kmeans_iters: Lloyd iterations of
    each start. class_conditional: one mixture per class of data["y"] plus the class prior
    (a LabelledGMM); num_classes: C, 0 for the largest label + 1; class_prior: a fixed prior
    [C] (empty: the class frequencies).
    """
    return ml_collections.ConfigDict(
        {
            "num_components": 2,
            "covariance_type": "full",
            "num_iters": 100,
            "tol": 1e-3,
            "num_inits": 1,
            "reg_covar": 1e-6,
            "kmeans_iters": 20,
            "class_conditional": False,
            "num_classes": 0,
            "class_prior": (),
        }
    )


def _check_config(config: ml_collections.ConfigDict) -> None:
    checks.check_count("config.num_components", config.num_components)
    checks.check_choice("config.covariance_type", config.covariance_type, COVARIANCE_TYPES)
    checks.check_count("config.num_iters", config.num_iters)
    checks.check_number("config.tol", config.tol, low=0.0)
    checks.check_count("config.num_inits", config.num_inits)
    checks.check_number("config.reg_covar", config.reg_covar, low=0.0)
    checks.check_count("config.kmeans_iters", config.kmeans_iters, minimum=0)
    checks.check_count("config.num_classes", config.num_classes, minimum=0)


def _feature_meta(x) -> dict:
    """The sizes data x [N, D] fix for any mixture: num_features and the parameters' dtype."""
    x = checks.check_array("x", x, ("N", "D"), kinds=checks.FLOAT, finite=False)
    return {
        "num_features": int(x.shape[1]),
        "dtype": jnp.dtype(jax.dtypes.canonicalize_dtype(x.dtype)).name,
    }


def meta_from_data(data: Mapping[str, Any], config: ml_collections.ConfigDict) -> dict:
    """The sizes the data fix: num_features, dtype (of the parameters) and, class-conditional,
    num_classes."""
    _check_config(config)
    checks.check_mapping("data", data, ("x", "y") if config.class_conditional else ("x",))
    meta = _feature_meta(data["x"])
    if config.class_conditional:
        num_classes = config.num_classes
        if num_classes == 0:
            labels = checks.check_array("y", data["y"], (len(data["x"]),), kinds=checks.INTEGER)
            num_classes = int(labels.max()) + 1
        meta["num_classes"] = int(num_classes)
    return meta


def _fresh_mixture(key: jax.Array, config: ml_collections.ConfigDict, d: int, dtype) -> GMM:
    k, kind = config.num_components, config.covariance_type
    shape = _covariance_shape(kind, k, d)
    identity = (
        jnp.broadcast_to(jnp.eye(d, dtype=dtype), shape)
        if kind in ("full", "tied")
        else jnp.ones(shape, dtype)
    )
    means = jax.random.normal(key, (k, d), dtype)
    return GMM(jnp.full((k,), 1.0 / k, dtype), means, identity, kind)


def init(
    key: jax.Array, config: ml_collections.ConfigDict, meta: Mapping[str, Any]
) -> GMM | LabelledGMM | SubspaceGMM:
    """A fresh start of the structure a fit gives: equal weights, standard normal means and
    unit covariances (per class, with a uniform class prior, when class-conditional). With
    meta["observed_features"] = D, a SubspaceGMM whose codes have meta["num_features"] = d
    dimensions (zero mean, the first d unit vectors as basis, unit noise)."""
    _check_config(config)
    d, dtype = meta["num_features"], jnp.dtype(meta["dtype"])
    if "observed_features" in meta:
        observed = checks.check_count("meta observed_features", meta["observed_features"])
        return SubspaceGMM(
            _fresh_mixture(key, config, d, dtype),
            jnp.zeros((observed,), dtype),
            jnp.eye(observed, d, dtype=dtype),
            jnp.ones((), dtype),
        )
    if not config.class_conditional:
        return _fresh_mixture(key, config, d, dtype)
    c = meta["num_classes"]
    components = jax.vmap(lambda k: _fresh_mixture(k, config, d, dtype))(jax.random.split(key, c))
    return LabelledGMM(jnp.full((c,), -np.log(c), dtype), components)


# ----------------------------------------------------------------------------- host-side fit
def _validate_fit_inputs(x, mask, num_components: int, where: str = "x") -> None:
    x_np = checks.check_array("x", x, ("N", "D"), kinds=checks.FLOAT, finite=False)
    # Every row, padding too: the k-means start reads them all.
    if not np.all(np.isfinite(x_np)):
        row, col = np.argwhere(~np.isfinite(x_np))[0]
        raise ValueError(
            f"x must be finite to fit a GMM, x[{row}, {col}] = {x_np[row, col]} "
            "(use impute / condition for missing dimensions)"
        )
    _check_mask(mask, x_np.shape[0])
    real = x_np if mask is None else x_np[np.asarray(mask) > 0]
    if num_components > len(real):
        raise ValueError(
            f"config.num_components={num_components} must be in [1, number of real "
            f"points in {where} = {len(real)}]"
        )


def _finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]))


def _singular_remedy(reg_covar: float) -> str:
    # The usual cause is a component on copies of one point, whose covariance is zero but
    # for reg_covar: the message names the knob as scikit-learn does and the data to check.
    return (
        f"increase config.reg_covar (scikit-learn's reg_covar; now {reg_covar}), check x for "
        "duplicated points, or use fewer components"
    )


def _refuse_singular(finite: bool, reg_covar: float, what: str = "the mixture") -> None:
    if not finite:
        raise ValueError(
            f"fitting {what} gave a singular covariance (a component collapsed onto too few "
            f"distinct points): {_singular_remedy(reg_covar)}"
        )


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


def _converged(history: np.ndarray, tol: float) -> np.ndarray:
    """Whether the last iteration run gained less than tol: history [..., iterations], NaN
    past the iterations run."""
    runs = np.sum(~np.isnan(history), axis=-1)
    last, previous = (
        np.take_along_axis(history, np.maximum(runs - back, 0)[..., None], axis=-1)[..., 0]
        for back in (1, 2)
    )
    return (runs >= 2) & (np.abs(last - previous) < tol)


@compilation.size_tiered_jit(static_argnames=("num_components", "covariance_type", "capacity"))
def _fit_program(
    key,
    x,
    mask,
    init,
    start,
    max_iter,
    tol,
    reg_covar,
    kmeans_iters,
    *,
    num_components: int,
    covariance_type: str,
    capacity: int,
):
    """Start number `start` (init_kmeans(fold_in(key, start)) unless `init`), then `_em_loop`:
    (params, history, iterations, whether the start and the result are finite). Every number
    is traced."""
    if init is None:
        init = init_kmeans(
            jax.random.fold_in(key, start),
            x,
            num_components,
            covariance_type,
            mask,
            kmeans_iters=kmeans_iters,
            reg_covar=reg_covar,
        )
    params, history, iterations = _em_loop(init, x, mask, max_iter, tol, reg_covar, capacity)
    finite = {"the k-means initialisation": _finite(init), "the mixture": _finite(params)}
    return params, history, iterations, finite


@compilation.size_tiered_jit(static_argnames=("num_components", "covariance_type", "capacity"))
def _fit_classes_program(
    keys,
    x,
    class_masks,
    init,
    max_iter,
    tol,
    reg_covar,
    kmeans_iters,
    *,
    num_components: int,
    covariance_type: str,
    capacity: int,
):
    def one(key, mask, start):
        if start is None:
            start = init_kmeans(
                key,
                x,
                num_components,
                covariance_type,
                mask,
                kmeans_iters=kmeans_iters,
                reg_covar=reg_covar,
            )
        return _em_loop(start, x, mask, max_iter, tol, reg_covar, capacity)

    components, history, iterations = jax.vmap(one)(keys, class_masks, init)
    return components, history, iterations, _finite(components)


def _check_init(init: GMM, config: ml_collections.ConfigDict, d: int) -> None:
    _check_params(init, "init")
    if (init.num_features, init.num_components, init.covariance_type) != (
        d,
        config.num_components,
        config.covariance_type,
    ):
        raise ValueError(
            f"init must be a {config.covariance_type} GMM of config.num_components="
            f"{config.num_components} over D={d} features, got a {init.covariance_type} GMM "
            f"of {init.num_components} over {init.num_features}"
        )


def _fit_starts(
    program: Callable,
    key: jax.Array,
    x_np: np.ndarray,
    mask: np.ndarray | None,
    init: Any,
    config: ml_collections.ConfigDict,
    check_init: Callable[[Any, ml_collections.ConfigDict, int], None],
    args_of: Callable[[np.ndarray, np.ndarray], tuple] = lambda x, mask: (),
    **static: Any,
) -> tuple[Any, np.ndarray, int]:
    """A mixture's fit from config.num_inits starts (or `init`, checked by check_init(init,
    config, D)): the start with the highest final objective, the first of equals, as
    (params, history [iterations run], iterations).

    x [N, D] and mask are validated and padded (`_padded`); args_of(padded x, padded mask)
    gives the program's arguments between mask and init (the variational prior).
    program(key, x, mask, *args, init, start, num_iters, tol, reg_covar, kmeans_iters,
    num_components=, covariance_type=, capacity=, problem_size=, **static) returns (params,
    history, iterations, {what: finite}); a non-finite `what` is refused as singular.
    """
    _validate_fit_inputs(x_np, mask, config.num_components)
    if init is not None:
        check_init(init, config, x_np.shape[1])
        if config.num_inits != 1:
            raise ValueError(
                f"config.num_inits must be 1 with init (every start would be init), "
                f"got {config.num_inits}"
            )
    x_padded, mask_padded = _padded(x_np, None if mask is None else np.asarray(mask))
    args = args_of(x_padded, mask_padded)
    best = None
    for start in range(config.num_inits):
        params, history, iterations, finite = program(
            key,
            x_padded,
            mask_padded,
            *args,
            init,
            start,
            config.num_iters,
            config.tol,
            config.reg_covar,
            config.kmeans_iters,
            num_components=config.num_components,
            covariance_type=config.covariance_type,
            capacity=_iteration_capacity(config.num_iters),
            problem_size=x_padded.size,
            **static,
        )
        history, iterations, finite = jax.device_get((history, iterations, finite))
        for what, ok in finite.items():
            _refuse_singular(ok, config.reg_covar, what)
        history = history[:iterations]
        if best is None or history[-1] > best[1][-1]:
            best = params, history, int(iterations)
    return best


def _fit_mixture(key, x_np, mask, config, init: GMM | None) -> tuple[GMM, dict]:
    params, history, _ = _fit_starts(_fit_program, key, x_np, mask, init, config, _check_init)
    return params, {
        "log_likelihood": history,
        "num_iters": len(history),
        "converged": bool(_converged(history, config.tol)),
    }


def _fit_classes(key, x_np, y, mask, config, meta, init: LabelledGMM | None):
    num_classes = meta["num_classes"]
    if config.num_inits != 1:
        raise ValueError(
            f"config.num_inits must be 1 for a class-conditional fit (one k-means "
            f"start per class), got {config.num_inits}"
        )
    y_np = checks.check_array("y", y, (x_np.shape[0],), kinds=checks.INTEGER)
    mask_np = np.ones(len(x_np)) if mask is None else _check_mask(mask, len(x_np))
    if y_np.min() < 0 or y_np.max() >= num_classes:
        raise ValueError(f"y must be [N] class indices in [0, config.num_classes={num_classes})")
    if len(config.class_prior):
        checks.check_simplex("config.class_prior", config.class_prior, (num_classes,))
    for c in range(num_classes):
        _validate_fit_inputs(x_np, mask_np * (y_np == c), config.num_components, f"class {c} of y")
    components = None
    if init is not None:
        components = init.components
        _check_init(components, config, x_np.shape[1])
        if init.num_classes != num_classes:
            raise ValueError(f"init has {init.num_classes} classes, the data {num_classes}")
    x_padded, _ = _padded(x_np, None)
    class_masks = np.zeros((num_classes, x_padded.shape[0]), x_padded.dtype)
    class_masks[:, : len(x_np)] = (y_np[None, :] == np.arange(num_classes)[:, None]) * mask_np
    components, history, iterations, ok = _fit_classes_program(
        jax.random.split(key, num_classes),
        x_padded,
        jnp.asarray(class_masks),
        components,
        config.num_iters,
        config.tol,
        config.reg_covar,
        config.kmeans_iters,
        num_components=config.num_components,
        covariance_type=config.covariance_type,
        capacity=_iteration_capacity(config.num_iters),
        problem_size=x_padded.size,
    )
    history, iterations, ok = jax.device_get((history, iterations, ok))
    _refuse_singular(ok, config.reg_covar, "a class-conditional mixture")
    counts = class_masks.sum(1)
    if len(config.class_prior):
        log_prior = np.log(np.asarray(config.class_prior, x_padded.dtype))
    else:
        log_prior = np.log(counts) - np.log(counts.sum())
    history = history[:, : iterations.max()]
    params = LabelledGMM(jnp.asarray(log_prior, x_padded.dtype), components)
    return params, {
        "log_likelihood": history,
        "num_iters": iterations,
        "converged": _converged(history, config.tol),
        "class_count": counts,
    }


def fit(
    key: jax.Array,
    data: Mapping[str, Any],
    config: ml_collections.ConfigDict,
    init: GMM | LabelledGMM | None = None,
) -> tuple[GMM | LabelledGMM, dict]:
    """Fits a GMM to data["x"] [N, D] (rows weighted by data["mask"] [N], optional), or with
    config.class_conditional one mixture per class of data["y"] int [N] and the class prior.

    config: `default_config()`. Start i is init_kmeans(fold_in(key, i)), or `init` (then
    config.num_inits must be 1). Host-side: validates inputs, refuses a result with a
    singular covariance.
    history: "log_likelihood": the mean log-likelihood before each M-step [iterations run]
    (of the best start), "num_iters": the iterations run, "converged": whether EM stopped on
    tol. Class-conditional: per class, [C, most iterations run] (NaN past those a class ran),
    [C], [C], and "class_count" [C] (mask-weighted examples per class).
    """
    meta = meta_from_data(data, config)
    x_np, mask = np.asarray(data["x"]), data.get("mask")
    if not config.class_conditional:
        if "y" in data:
            raise ValueError(
                "data has 'y' but config.class_conditional is False: set it to fit "
                "one mixture per class, or leave 'y' out"
            )
        if init is not None and not isinstance(init, GMM):
            raise TypeError(f"init must be a GMM, got {type(init).__name__}")
        return _fit_mixture(key, x_np, mask, config, init)
    if init is not None and not isinstance(init, LabelledGMM):
        raise TypeError(
            f"init must be a LabelledGMM (config.class_conditional), got {type(init).__name__}"
        )
    return _fit_classes(key, x_np, data["y"], mask, config, meta, init)


# ----------------------------------------------------------------------------- classifier
_class_log_likelihoods = jax.jit(class_log_likelihoods)


def _classifier_log_likelihoods(components: GMM, x: jax.Array, key: jax.Array | None):
    del key  # exact
    if checks.is_checkable(x):
        _check_scoring(components, x)
    return _class_log_likelihoods(components, x)


def classifier(params: LabelledGMM) -> api.BayesClassifier:
    """Bayes' rule over the classes of a class-conditional mixture: log P(y) + log p(x | y).
    An unlabelled mixture (GMM, SubspaceGMM) has no classes: NotImplementedError, the error
    of a verb a model lacks (genjax_lab.saving.Model and the CLI report it as such)."""
    if isinstance(params, GMM | SubspaceGMM):
        raise NotImplementedError(
            f"an unlabelled Gaussian mixture ({type(params).__name__}) has components, not "
            "classes, so there is no classifier (fit with config.class_conditional for one)"
        )
    if not isinstance(params, LabelledGMM):
        raise TypeError(
            f"params: a classifier needs a class-conditional mixture (LabelledGMM, "
            f"from fit with config.class_conditional), got {type(params).__name__}"
        )
    checks.check_finite_tree("params.log_prior", params.log_prior, allow_neg_inf=True)
    return api.BayesClassifier(params.log_prior, params.components, _classifier_log_likelihoods)


# ----------------------------------------------------------------------------- the loop
@struct.dataclass
class EMState:
    """The training loop's state of an EM fit of S starts side by side.

    params: a GMM whose leaves carry a leading start axis [S, ...]. previous [S]: each
    start's mean log-likelihood at its last iteration (before that iteration's M-step;
    -inf before the first). done bool [S]: the start has stopped on config.tol and is held.
    iterations int32 [S]: the EM iterations each start ran.
    """

    params: GMM
    previous: jax.Array
    done: jax.Array
    iterations: jax.Array


def best_start(state: EMState) -> GMM:
    """The start with the highest final mean log-likelihood, the one `fit` keeps (the first
    of equals)."""
    best = jnp.argmax(state.previous)
    return jax.tree.map(lambda leaf: leaf[best], state.params)


def loop_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The training loop's config of an EM fit: the loop's keys (core/loop.base_config) and
    the model's `config` under `model`, but for num_iters, which becomes the loop's
    num_steps (the iteration cap: like any run's length, a relaunch may raise it and the fit
    goes on). Saved every 10 iterations, evaluated at the end."""
    _check_config(config)
    run = base_config()
    run.num_steps = config.num_iters
    run.log_every = 10
    run.eval_every = 0
    run.checkpoint.every = 10
    run.model = {key: value for key, value in config.items() if key != "num_iters"}
    return run


def loop_family(config: ml_collections.ConfigDict) -> Family:
    """The unlabelled fit of `config` (`default_config()`) as a full-batch loop family.

    Batches: {"x": [N, D], "mask": [N]} (core/data.FullBatch's padding masked). Init: the
    config.num_inits k-means++ starts of `fit` (start i from fold_in(key, i)) on the batch.
    Step metrics: log_likelihood, the best start's mean log-likelihood before this
    iteration's M-step, and converged (every start stopped). Evaluation: log_likelihood,
    the mask-weighted sum of log p(x) under `best_start` (the loop divides it by the split's
    size: the mean test log-likelihood).
    """
    _check_config(config)
    if config.class_conditional:
        raise ValueError(
            "config.class_conditional: the loop fits an unlabelled mixture; fit a "
            "class-conditional one with gmm.fit"
        )
    k, kind, starts = config.num_components, config.covariance_type, config.num_inits

    def init_state(key: jax.Array, batch) -> EMState:
        x, mask = batch["x"], batch["mask"]
        params = jax.vmap(
            lambda start: init_kmeans(
                jax.random.fold_in(key, start),
                x,
                k,
                kind,
                mask,
                kmeans_iters=config.kmeans_iters,
                reg_covar=config.reg_covar,
            )
        )(jnp.arange(starts))
        return EMState(
            params,
            jnp.full((starts,), -jnp.inf, x.dtype),
            jnp.zeros((starts,), bool),
            jnp.zeros((starts,), jnp.int32),
        )

    def train_step(state: EMState, batch, key: jax.Array):
        del key  # EM is deterministic

        def one(params, previous, done):
            new, mean_ll = em_step(params, batch["x"], batch["mask"], config.reg_covar)
            held = lambda old, fresh: jnp.where(done, old, fresh)
            stop = done | (jnp.abs(mean_ll - previous) < config.tol)
            return jax.tree.map(held, params, new), held(previous, mean_ll), stop

        params, previous, done = jax.vmap(one)(state.params, state.previous, state.done)
        iterations = state.iterations + (~state.done).astype(jnp.int32)
        metrics = {
            "log_likelihood": jnp.max(previous),
            "converged": jnp.all(done).astype(previous.dtype),
        }
        return EMState(params, previous, done, iterations), metrics

    def eval_step(state: EMState, batch, key: jax.Array):
        del key
        scores = log_prob(best_start(state), batch["x"])
        return {"log_likelihood": jnp.sum(jnp.where(batch["mask"] > 0, scores, 0.0))}

    return Family(
        init=init_state,
        train_step=train_step,
        eval_step=eval_step,
        full_batch=True,
        converged="converged",
        non_finite_hint="a singular covariance is the usual cause: "
        + _singular_remedy(config.reg_covar),
    )
