"""Naive Bayes: Gaussian, Bernoulli, multinomial and categorical class-conditional models.

Model, C classes, D features: y ~ Categorical(pi), x_d | y ~ p_d(. | theta_{y,d}) independently.
  gaussian     x_d | y=c ~ N(mean_cd, var_cd)
  bernoulli    b_d = [x_d > binarize] ~ Bernoulli(p_cd)
  multinomial  x ~ Multinomial(n, theta_c) (counts; the multinomial coefficient is dropped from
               log_joint because it does not depend on the class, as in scikit-learn)
  categorical  x_d in {0..M_d - 1} ~ Categorical(theta_cd)

Fitting is by sufficient statistics: `sufficient_statistics(x, y, mask, num_classes, kind)` is a
mask-weighted reduction over the batch axis, so under jit with the batch sharded over the 'data'
mesh axis it is a cross-device reduction, and statistics of streamed batches combine with
`add_statistics(s1, s2)`. `from_statistics(stats, smoothing=...)` then gives the parameters,
with scikit-learn's estimators:
  gaussian     mean_cd, var = M2_cd / n_c + epsilon, where M2 is the sum of squared deviations
               from the class mean and epsilon = var_smoothing * max_d var_d(all data)
               (GaussianNB: the variance of all training data pooled over classes, not per
               class; default var_smoothing 1e-9). The statistics are central moments (class
               count, mean, M2), computed in two passes over a batch and combined across batches
               pairwise (Chan, Golub & LeVeque 1979): raw moments E[x^2] - E[x]^2 cancel every
               digit when |mean| >> sd (mean 1e3, sd 1e-4: a 10% variance error even in float64).
  bernoulli    p_cd = (N_cd + alpha) / (n_c + 2 alpha)                      (BernoulliNB)
  multinomial  theta_cd = (N_cd + alpha) / (sum_d N_cd + D alpha)           (MultinomialNB)
  categorical  theta_cdm = (N_cdm + alpha) / (n_c + M_d alpha), M_d = largest category of
               feature d seen in training + 1 unless given                  (CategoricalNB)
Class priors are the class frequencies (fit_prior=True), uniform (fit_prior=False) or given.

Prediction is Bayes' rule in log space: log p(y | x) = log_joint - logsumexp_c log_joint.
Missing features (NaN entries, or `observed` False) are marginalised out: for the Gaussian,
Bernoulli and categorical models that drops their factors; for the multinomial it restricts
the word distribution to the observed features, theta_cd / sum_{d observed} theta_cd. Both equal
the model refit on the observed features only (for the Gaussian while epsilon is unchanged,
i.e. while the feature of largest variance is observed).

A class with no training examples: the discrete models give it smoothed (uniform) feature
probabilities and, with fitted priors, log prior -inf, so it is never predicted (as
scikit-learn); the Gaussian model raises, since its mean and variance are undefined.

Validation (NaN, labels out of range, ...) runs host-side when the arrays are concrete; inside
jit the functions are pure array code.
"""
import functools
import math
import operator
from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.sharding import NamedSharding, PartitionSpec

from genjax_lab.core import checks
from genjax_lab.core import data as data_lib
from genjax_lab.core import mesh as mesh_lib

Kind = Literal["gaussian", "bernoulli", "multinomial", "categorical"]
KINDS = ("gaussian", "bernoulli", "multinomial", "categorical")


# ----------------------------------------------------------------------------- sharded sums
def batch_einsum(subscripts: str, *operands: jax.Array, precision=None) -> jax.Array:
    """`jnp.einsum` that contracts the (possibly sharded) batch axis to a replicated result.

    On a mesh with Explicit axes (the default of `jax.make_mesh`) a contraction over a sharded
    axis needs its output sharding stated; this states "replicated", which makes XLA reduce the
    per-device partial sums across devices. Elsewhere it is plain einsum.
    """
    for operand in operands:
        if is_batch_sharded(operand):
            mesh = jax.typeof(operand).sharding.mesh
            return jnp.einsum(subscripts, *operands, precision=precision,
                              out_sharding=NamedSharding(mesh, PartitionSpec()))
    return jnp.einsum(subscripts, *operands, precision=precision)


def is_batch_sharded(x: jax.Array) -> bool:
    """Whether x's leading axis is split over an Explicit mesh axis (as seen while tracing)."""
    spec = jax.typeof(x).sharding.spec
    return bool(spec) and spec[0] is not None


# ----------------------------------------------------------------------------- statistics
@struct.dataclass
class GaussianStats:
    """class_count [C] = n_c = sum_n w_nc; mean [C, D] = sum_n w_nc x_n / n_c (0 for an empty
    class); m2 [C, D] = sum_n w_nc (x_n - mean_c)^2, w_nc the mask-weighted one-hot labels."""

    class_count: jax.Array
    mean: jax.Array
    m2: jax.Array

    @property
    def sum(self) -> jax.Array:
        """sum_n w_nc x_n [C, D], for callers that pool classes themselves."""
        return self.class_count[:, None] * self.mean

    @property
    def sum_sq(self) -> jax.Array:
        """sum_n w_nc x_n^2 [C, D]: raw, so differences of it lose the digits that m2 keeps."""
        return self.m2 + self.class_count[:, None] * self.mean**2


@struct.dataclass
class CountStats:
    """class_count [C] and feature_count [C, D] (bernoulli: sum of binarized x; multinomial:
    sum of counts) or [C, D, M] (categorical: occurrences of category m of feature d)."""

    class_count: jax.Array
    feature_count: jax.Array
    kind: str = struct.field(pytree_node=False)
    binarize: float | None = struct.field(pytree_node=False, default=None)


Stats = GaussianStats | CountStats


def _one_hot_weights(y: jax.Array, mask: jax.Array | None, num_classes: int, dtype) -> jax.Array:
    weights = jax.nn.one_hot(y, num_classes, dtype=dtype)
    return weights if mask is None else weights * mask.astype(dtype)[:, None]


def _validate_training(x, y, mask, num_classes: int, kind: str, binarize, num_categories: int | None) -> None:
    checks.check_choice("kind", kind, KINDS)
    checks.check_count("num_classes", num_classes)
    if binarize is not None:
        checks.check_number("binarize", binarize)
    if num_categories is not None:
        checks.check_count("num_categories", num_categories)
    # Finiteness is checked below on the real rows only: padding rows may hold anything.
    x_np = checks.check_array("x", x, ("B", "D"), finite=False)
    y_np = checks.check_array("y", y, (x_np.shape[0],), kinds=checks.INTEGER)
    if mask is not None:
        checks.check_array("mask", mask, (x_np.shape[0],), nonnegative=True)
    if y_np.size and (y_np.min() < 0 or y_np.max() >= num_classes):
        raise ValueError(f"y must be class indices in [0, num_classes={num_classes}), got range "
                         f"[{y_np.min()}, {y_np.max()}]")
    real = x_np if mask is None else x_np[np.asarray(mask) > 0]
    if np.issubdtype(real.dtype, np.floating) and not np.all(np.isfinite(real)):
        row, col = np.argwhere(~np.isfinite(real))[0]
        raise ValueError(f"x must be finite for training, x[{row}, {col}] = {real[row, col]} "
                         "(missing features are only allowed at prediction)")
    if kind == "multinomial" and real.size and real.min() < 0:
        raise ValueError(f"x must be non-negative counts for kind='multinomial', min is {real.min()}")
    if kind == "categorical" and real.size:
        if np.any(real != np.round(real)) or real.min() < 0:
            raise ValueError("x must be integer categories >= 0 for kind='categorical'")
        if num_categories is not None and real.max() >= num_categories:
            raise ValueError(f"x has category {int(real.max())} but num_categories={num_categories}")


def sufficient_statistics(
    x: jax.Array,
    y: jax.Array,
    mask: jax.Array | None,
    num_classes: int,
    kind: Kind = "gaussian",
    *,
    binarize: float | None = 0.0,
    num_categories: int | None = None,
) -> Stats:
    """Mask-weighted sufficient statistics of a batch, summed over the batch axis.

    x: [B, D] (categorical: integer categories), y: int [B], mask: [B] or None (all real).
    binarize: bernoulli threshold (x > binarize is 1; None: x is already 0/1).
    num_categories: categorical only, the size M of the category axis (static; inferred from x
    when concrete and None).
    Returns GaussianStats or CountStats; combine two batches' with `add_statistics(a, b)`.
    """
    if checks.is_checkable(x, y, mask):
        _validate_training(x, y, mask, num_classes, kind, binarize, num_categories)
        if kind == "categorical" and num_categories is None:
            num_categories = int(np.max(np.asarray(x))) + 1
        x = _on_device(x)
    if kind == "categorical" and num_categories is None:
        raise ValueError("num_categories must be given for kind='categorical' under jit")
    return _statistics_impl(x, y, mask, num_classes, kind, binarize, num_categories)


def _on_device(x):
    """x as a device array, copied once on the host first where that is the faster way in.

    XLA's CPU client takes a host array without a copy when its data are 64-byte aligned, but
    copies a misaligned one element by element, about 5x slower than numpy's copy (MNIST train
    images, 188 MB: 100 ms against 20 ms); large numpy arrays are usually only 16-byte aligned.
    """
    if (not isinstance(x, np.ndarray) or jax.default_backend() != "cpu" or x.ctypes.data % 64 == 0
            or x.dtype != jax.dtypes.canonicalize_dtype(x.dtype)):
        return x
    buffer = np.empty(x.nbytes + 64, np.uint8)
    start = -buffer.ctypes.data % 64
    aligned = buffer[start:start + x.nbytes].view(x.dtype).reshape(x.shape)
    np.copyto(aligned, x)
    return jax.device_put(aligned)


def _gaussian_statistics(x: jax.Array, y: jax.Array, labels: jax.Array, weights: jax.Array,
                         real: jax.Array | None) -> GaussianStats:
    # Two passes: the class means, then sums of the deviations r from them; the first pass's
    # rounding error in the mean is removed by sum(w r) / n (the corrected two-pass algorithm),
    # so float32 keeps the variance of data whose mean is 1e4 sds from zero. Matmuls at full
    # precision: on GPUs and TPUs the default rounds float32 operands to TF32 or bfloat16.
    full = jax.lax.Precision.HIGHEST
    class_count = weights.sum(1)
    safe_count = jnp.where(class_count > 0, class_count, 1.0)[:, None]
    rough_mean = batch_einsum("cb,bd->cd", weights, x, precision=full) / safe_count
    if is_batch_sharded(x):
        # A gather from the replicated means would need its output sharding stated; the
        # one-hot product shards like x by itself (and is exact: one nonzero term).
        row_means = jnp.einsum("cb,cd->bd", labels, rough_mean, precision=full)
    else:
        row_means = jnp.take(rough_mean, y, axis=0, mode="clip")
    deviation = x - row_means
    if real is not None:
        deviation = jnp.where(real[:, None], deviation, 0.0)
    first = batch_einsum("cb,bd->cd", weights, deviation, precision=full)
    second = batch_einsum("cb,bd->cd", weights, deviation * deviation, precision=full)
    return GaussianStats(class_count, rough_mean + first / safe_count,
                         jnp.maximum(second - first * first / safe_count, 0.0))


@functools.partial(jax.jit, static_argnums=(3, 4, 5, 6))
def _statistics_impl(x, y, mask, num_classes: int, kind: str, binarize, num_categories) -> Stats:
    x, y = jnp.asarray(x), jnp.asarray(y)
    dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32
    real = None if mask is None else jnp.asarray(mask) > 0
    if real is not None:  # padding rows may hold anything; keep it out of the sums
        x = jnp.where(real[:, None], x, jnp.zeros((), x.dtype))
    if kind != "categorical":  # e.g. uint8 pixels: square and sum in floating point
        x = x.astype(dtype)
    if kind == "gaussian":
        # Labels along the rows ([C, B]): XLA's CPU matmul is several times faster this way
        # round than contracting the leading axis of a [B, C] one-hot.
        labels = (jnp.arange(num_classes)[:, None] == y[None, :]).astype(dtype)
        weights = labels if mask is None else labels * jnp.asarray(mask, dtype)
        return _gaussian_statistics(x, y, labels, weights, real)
    weights = _one_hot_weights(y, mask, num_classes, dtype)
    class_count = weights.sum(0)
    if kind == "categorical":
        x = jax.nn.one_hot(x.astype(jnp.int32), num_categories, dtype=dtype)
        return CountStats(class_count, batch_einsum("bc,bdm->cdm", weights, x), kind)
    if kind == "bernoulli":
        x = _binarized(x, binarize)
    return CountStats(class_count, batch_einsum("bc,bd->cd", weights, x), kind,
                      binarize if kind == "bernoulli" else None)


def add_statistics(a: Stats, b: Stats) -> Stats:
    """Statistics of the union of two batches: counts add; Gaussian means and M2 combine
    pairwise (Chan et al.), exact however the rows were split."""
    if not isinstance(a, GaussianStats):
        return jax.tree.map(operator.add, a, b)
    return _add_gaussian(a, b)


@jax.jit
def _add_gaussian(a: GaussianStats, b: GaussianStats) -> GaussianStats:
    count = a.class_count + b.class_count
    share_b = (b.class_count / jnp.where(count > 0, count, 1.0))[:, None]
    delta = b.mean - a.mean
    return GaussianStats(count, a.mean + delta * share_b,
                         a.m2 + b.m2 + delta * delta * a.class_count[:, None] * share_b)


def _binarized(x: jax.Array, binarize: float | None) -> jax.Array:
    return x if binarize is None else (x > binarize).astype(jnp.result_type(x.dtype, jnp.float32))


# ----------------------------------------------------------------------------- parameters
@struct.dataclass
class GaussianNB:
    """class_log_prior [C], mean [C, D], var [C, D] (smoothed)."""

    class_log_prior: jax.Array
    mean: jax.Array
    var: jax.Array


@struct.dataclass
class BernoulliNB:
    """class_log_prior [C], log_prob [C, D] = log p(b_d = 1 | c), log_neg_prob [C, D] = log(1 - p)."""

    class_log_prior: jax.Array
    log_prob: jax.Array
    log_neg_prob: jax.Array
    binarize: float | None = struct.field(pytree_node=False, default=0.0)


@struct.dataclass
class MultinomialNB:
    """class_log_prior [C], log_prob [C, D] = log theta_cd (rows sum to 1 in prob space)."""

    class_log_prior: jax.Array
    log_prob: jax.Array


@struct.dataclass
class CategoricalNB:
    """class_log_prior [C], log_prob [C, D, M] = log theta_cdm; -inf for m >= num_categories[d]."""

    class_log_prior: jax.Array
    log_prob: jax.Array
    num_categories: jax.Array


Params = GaussianNB | BernoulliNB | MultinomialNB | CategoricalNB


def _class_log_prior(class_count: jax.Array, class_prior, fit_prior: bool) -> jax.Array:
    num_classes = class_count.shape[0]
    if class_prior is not None:
        prior = np.asarray(class_prior, dtype=np.float64)
        if prior.shape != (num_classes,) or not np.all(prior >= 0) or not math.isclose(prior.sum(), 1.0, rel_tol=1e-6):
            raise ValueError(f"class_prior must be [{num_classes}] non-negative summing to 1, got {class_prior}")
        return jnp.log(jnp.asarray(prior, class_count.dtype))
    if not fit_prior:
        return jnp.full((num_classes,), -math.log(num_classes), class_count.dtype)
    return jnp.log(class_count) - jnp.log(class_count.sum())


def _gaussian_params(stats: GaussianStats, var_smoothing: float, class_log_prior) -> GaussianNB:
    count = stats.class_count[:, None]
    total = stats.class_count.sum()
    # The classes pooled: within-class M2 plus the spread of the class means about their mean.
    grand_mean = jnp.sum(count * stats.mean, 0) / total
    pooled_m2 = stats.m2.sum(0) + jnp.sum(count * (stats.mean - grand_mean) ** 2, 0)
    var = stats.m2 / count + var_smoothing * jnp.max(pooled_m2 / total)
    return GaussianNB(class_log_prior, stats.mean, var)


def _check_gaussian(stats: GaussianStats, params: GaussianNB | None, var_smoothing: float) -> None:
    if params is None:
        empty = np.flatnonzero(np.asarray(stats.class_count) <= 0)
        if empty.size:
            raise ValueError(f"y has no examples of class {empty[0]} (stats.class_count[{empty[0]}] = 0): "
                             "the Gaussian naive Bayes mean and variance of that class are undefined")
    elif np.any(np.asarray(params.var) <= 0):
        c, d = np.argwhere(np.asarray(params.var) <= 0)[0]
        raise ValueError(f"feature {d} of class {c} has variance 0 and var_smoothing={var_smoothing} adds "
                         "nothing (all data constant?): use var_smoothing > 0 and non-constant data")


def _count_params(stats: CountStats, alpha: float, class_log_prior, num_categories) -> Params:
    fc, cc = stats.feature_count, stats.class_count
    if stats.kind == "bernoulli":
        log_total = jnp.log(cc + 2 * alpha)[:, None]
        return BernoulliNB(class_log_prior, jnp.log(fc + alpha) - log_total,
                           jnp.log(cc[:, None] - fc + alpha) - log_total, stats.binarize)
    if stats.kind == "multinomial":
        smoothed = fc + alpha
        return MultinomialNB(class_log_prior, jnp.log(smoothed) - jnp.log(smoothed.sum(1, keepdims=True)))
    size = fc.shape[2]
    if num_categories is None:  # scikit-learn: largest category seen in training + 1
        seen = fc.sum(0) > 0
        num_categories = jnp.max(jnp.where(seen, jnp.arange(size) + 1, 0), axis=1)
    num_categories = jnp.broadcast_to(jnp.asarray(num_categories, jnp.int32), fc.shape[1:2])
    supported = jnp.arange(size)[None, :] < num_categories[:, None]  # [D, M]
    denom = cc[:, None] + alpha * num_categories[None, :]
    log_prob = jnp.where(supported, jnp.log(fc + alpha) - jnp.log(denom)[:, :, None], -jnp.inf)
    return CategoricalNB(class_log_prior, log_prob, num_categories)


def from_statistics(
    stats: Stats,
    *,
    smoothing: float | None = None,
    class_prior: jax.Array | None = None,
    fit_prior: bool = True,
    num_categories: int | jax.Array | None = None,
) -> Params:
    """Parameters from summed statistics.

    smoothing: var_smoothing for the Gaussian (default 1e-9), alpha (pseudo-count, default 1.0)
    for the discrete models, as in scikit-learn. class_prior [C]: fixed priors; otherwise the
    class frequencies (fit_prior) or uniform. num_categories (categorical): M_d, int or [D];
    default the largest category seen + 1.
    """
    if isinstance(stats, GaussianStats):
        smoothing = checks.check_number("smoothing (var_smoothing)", 1e-9 if smoothing is None else smoothing, low=0.0)
        check = checks.is_checkable(stats)
        if check:
            _check_gaussian(stats, None, smoothing)
        params = jax.jit(_gaussian_params)(stats, smoothing, _class_log_prior(stats.class_count, class_prior, True))
        if check:
            _check_gaussian(stats, params, smoothing)
        return params
    smoothing = checks.check_number("smoothing (alpha)", 1.0 if smoothing is None else smoothing, low=0.0, low_open=True)
    if num_categories is not None and np.any(np.asarray(num_categories) > stats.feature_count.shape[-1]):
        raise ValueError(f"num_categories must be <= {stats.feature_count.shape[-1]} (the statistics' category axis)")
    return jax.jit(_count_params)(stats, smoothing, _class_log_prior(stats.class_count, class_prior, fit_prior),
                                  num_categories)


def fit(
    x: jax.Array,
    y: jax.Array,
    num_classes: int,
    kind: Kind = "gaussian",
    *,
    mask: jax.Array | None = None,
    smoothing: float | None = None,
    class_prior: jax.Array | None = None,
    fit_prior: bool = True,
    binarize: float | None = 0.0,
    num_categories: int | None = None,
) -> Params:
    """One-shot fit: `from_statistics(sufficient_statistics(...))`."""
    stats = sufficient_statistics(x, y, mask, num_classes, kind, binarize=binarize, num_categories=num_categories)
    return from_statistics(stats, smoothing=smoothing, class_prior=class_prior, fit_prior=fit_prior)


def fit_split(
    split: data_lib.Split,
    num_classes: int,
    kind: Kind = "gaussian",
    *,
    features: Callable[[dict[str, jax.Array]], jax.Array] = lambda batch: batch["x"],
    labels: str = "y",
    batch_size: int = 4096,
    mesh=None,
    smoothing: float | None = None,
    class_prior: jax.Array | None = None,
    fit_prior: bool = True,
    binarize: float | None = 0.0,
    num_categories: int | None = None,
) -> Params:
    """`fit` on a split read `batch_size` rows at a time: in memory, or streamed from
    ArrayRecord files (`streaming.RecordColumn`s) when it does not fit in host memory.

    Each global batch is sharded over the `data` mesh (default: every device of every host)
    and its statistics are summed across devices inside the compiled step, then over the
    batches; `features(batch)` gives x [B, D] from the split's columns (e.g. flattened,
    scaled pixels) and `labels` names y. Equals `fit` on the whole split up to the order of
    float summation. num_categories (categorical) must be given: the split is never whole.
    """
    if kind == "categorical" and num_categories is None:
        raise ValueError("num_categories must be given for kind='categorical' on a split read in batches")
    mesh = mesh_lib.data_mesh() if mesh is None else mesh

    stats = None
    # Not loop_lib.sum_over_split: Gaussian statistics combine pairwise, not by addition.
    for local in data_lib.eval_batches(split, batch_size):
        batch = mesh_lib.global_batch(mesh, local)
        batch_stats = sufficient_statistics(features(batch), batch[labels], batch["mask"],
                                            num_classes, kind, binarize=binarize,
                                            num_categories=num_categories)
        stats = batch_stats if stats is None else add_statistics(stats, batch_stats)
    return from_statistics(stats, smoothing=smoothing, class_prior=class_prior, fit_prior=fit_prior)


# ----------------------------------------------------------------------------- scoring
def _observed(x: jax.Array, observed: jax.Array | None) -> jax.Array:
    present = jnp.ones(x.shape, bool) if not jnp.issubdtype(x.dtype, jnp.floating) else ~jnp.isnan(x)
    return present if observed is None else present & jnp.asarray(observed, bool)


def _gaussian_log_lik(params: GaussianNB, x, observed):
    # Elementwise (x - mean)^2 / var, not the expanded matmul form: exact in float32, and with
    # few classes XLA fuses it into one pass over [B, C, D]; the log-determinant is a matmul.
    obs = observed.astype(params.var.dtype)
    x = jnp.where(observed, x, 0.0)[:, None, :]
    quad = jnp.sum(obs[:, None, :] * (x - params.mean) ** 2 * (1.0 / params.var), axis=2)
    return -0.5 * (quad + obs @ jnp.log(2 * jnp.pi * params.var).T)


def _bernoulli_log_lik(params: BernoulliNB, x, observed):
    obs = observed.astype(params.log_prob.dtype)
    b = _binarized(jnp.where(observed, x, 0.0), params.binarize).astype(obs.dtype)
    return b @ (params.log_prob - params.log_neg_prob).T + obs @ params.log_neg_prob.T


def _multinomial_log_lik(params: MultinomialNB, x, observed):
    obs = observed.astype(params.log_prob.dtype)
    counts = jnp.where(observed, x, 0.0).astype(obs.dtype)
    # Renormalise theta over the observed features: log(sum_{d obs} theta_cd) is 0 when all are.
    log_observed_mass = jnp.log(obs @ jnp.exp(params.log_prob).T)
    return counts @ params.log_prob.T - counts.sum(1, keepdims=True) * log_observed_mass


def _categorical_log_lik(params: CategoricalNB, x, observed):
    index = jnp.where(observed, x, 0).astype(jnp.int32)  # [B, D]
    table = jnp.transpose(params.log_prob, (1, 2, 0))  # [D, M, C]
    per_feature = table[jnp.arange(x.shape[1])[None, :], index]  # [B, D, C]
    return jnp.sum(jnp.where(observed[:, :, None], per_feature, 0.0), axis=1)


_LOG_LIK: dict[type, Callable] = {
    GaussianNB: _gaussian_log_lik,
    BernoulliNB: _bernoulli_log_lik,
    MultinomialNB: _multinomial_log_lik,
    CategoricalNB: _categorical_log_lik,
}


def _validate_prediction(params: Params, x, observed) -> None:
    num_features = params.log_prob.shape[1] if not isinstance(params, GaussianNB) else params.mean.shape[1]
    # NaN marks a missing feature (marginalised out); inf is no value at all.
    x_np = checks.check_array("x", x, ("B", num_features), allow_nan=True)
    if observed is not None:
        checks.check_array("observed", observed, x_np.shape)
    if isinstance(params, CategoricalNB):
        present = ~np.isnan(x_np) if np.issubdtype(x_np.dtype, np.floating) else np.ones(x_np.shape, bool)
        if observed is not None:
            present &= np.asarray(observed, bool)
        limit = np.broadcast_to(np.asarray(params.num_categories), x_np.shape)
        bad = present & ((x_np < 0) | (x_np >= limit))
        if np.any(bad):
            row, col = np.argwhere(bad)[0]
            raise ValueError(f"x[{row}, {col}] = {x_np[row, col]} is not a category of feature {col} "
                             f"(0..{limit[row, col] - 1} seen in training)")


def log_joint(params: Params, x: jax.Array, observed: jax.Array | None = None) -> jax.Array:
    """log p(x_observed, y = c) for every class: [B, C].

    x: [B, D]; NaN entries, and entries where `observed` [B, D] is False, are marginalised out.
    """
    if checks.is_checkable(x, observed):
        _validate_prediction(params, x, observed)
    return _log_joint_impl(params, x, observed)


@jax.jit
def _log_joint_impl(params: Params, x: jax.Array, observed: jax.Array | None) -> jax.Array:
    observed = _observed(x, observed)
    return params.class_log_prior + _LOG_LIK[type(params)](params, x, observed)


def predict_log_proba(params: Params, x: jax.Array, observed: jax.Array | None = None) -> jax.Array:
    """log p(y = c | x_observed) by Bayes' rule (logsumexp normaliser): [B, C]."""
    joint = log_joint(params, x, observed)
    return joint - jax.nn.logsumexp(joint, axis=1, keepdims=True)


def predict_proba(params: Params, x: jax.Array, observed: jax.Array | None = None) -> jax.Array:
    """p(y = c | x_observed): [B, C]."""
    return jnp.exp(predict_log_proba(params, x, observed))


def predict(params: Params, x: jax.Array, observed: jax.Array | None = None) -> jax.Array:
    """Most probable class: int [B]."""
    return jnp.argmax(log_joint(params, x, observed), axis=1)


# ----------------------------------------------------------------------------- sampling
def _check_total_count(params: Params, total_count) -> None:
    if isinstance(params, MultinomialNB):
        checks.check_array("total_count (draws per sample)", total_count, nonnegative=True)


def _check_sample_given_y(params: Params, y, total_count, **_) -> None:
    num_classes = params.class_log_prior.shape[0]
    labels = checks.check_array("y", y, ("N",), kinds=checks.INTEGER)
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"y must be class indices in [0, {num_classes}), got range [{labels.min()}, {labels.max()}]")
    _check_total_count(params, total_count)


def _check_sample(num_samples, params: Params, total_count, **_) -> None:
    checks.check_count("num_samples", num_samples)
    _check_total_count(params, total_count)


@checks.validated(_check_sample_given_y)
@jax.jit
def sample_given_y(key: jax.Array, params: Params, y: jax.Array, *, total_count=None) -> jax.Array:
    """x ~ p(x | y) for each label: [N, D] (bernoulli: 0/1; categorical: int32 categories).

    total_count (multinomial only): the number of draws n per sample, scalar or [N].
    """
    y = jnp.asarray(y)
    if isinstance(params, GaussianNB):
        noise = jax.random.normal(key, (y.shape[0], params.mean.shape[1]), params.mean.dtype)
        return params.mean[y] + jnp.sqrt(params.var[y]) * noise
    if isinstance(params, BernoulliNB):
        return jax.random.bernoulli(key, jnp.exp(params.log_prob[y])).astype(params.log_prob.dtype)
    if isinstance(params, MultinomialNB):
        if total_count is None:
            raise ValueError("total_count (draws per sample) is required to sample a multinomial model")
        n = jnp.broadcast_to(jnp.asarray(total_count, params.log_prob.dtype), y.shape)
        return jax.random.multinomial(key, n, jnp.exp(params.log_prob[y]))
    return jax.random.categorical(key, params.log_prob[y], axis=-1).astype(jnp.int32)


@checks.validated(_check_sample)
@functools.partial(jax.jit, static_argnames=("num_samples",))
def sample(key: jax.Array, params: Params, num_samples: int, *, total_count=None) -> tuple[jax.Array, jax.Array]:
    """(x [N, D], y int [N]) ~ p(x, y): y from the class prior, then x | y."""
    label_key, x_key = jax.random.split(key)
    y = jax.random.categorical(label_key, params.class_log_prior, shape=(num_samples,))
    return sample_given_y(x_key, params, y, total_count=total_count), y


__all__ = [
    "KINDS", "GaussianStats", "CountStats", "GaussianNB", "BernoulliNB", "MultinomialNB", "CategoricalNB",
    "batch_einsum", "is_batch_sharded", "sufficient_statistics", "add_statistics", "from_statistics", "fit",
    "log_joint", "predict_log_proba", "predict_proba", "predict", "sample", "sample_given_y",
]
