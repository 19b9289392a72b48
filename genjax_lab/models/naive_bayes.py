"""Naive Bayes: Gaussian, Bernoulli, multinomial and categorical class-conditional models.

Model, C classes, D features: y ~ Categorical(pi), x_d | y ~ p_d(. | theta_{y,d}) independently.
  gaussian     x_d | y=c ~ N(mean_cd, var_cd)
  bernoulli    b_d = [x_d > binarize] ~ Bernoulli(p_cd)
  multinomial  x ~ Multinomial(n, theta_c) (word counts)
  categorical  x_d in {0..M_d - 1} ~ Categorical(theta_cd)
and one classifier that is not a model of x (kind "complement", not in KINDS):
  complement   scikit-learn's ComplementNB (Rennie et al. 2003): class c scores counts x by
               weights learned from every other class's counts; a discriminative rule, with
               no p(x | y), so it has no log_prob and no sample (NotImplementedError).

The verbs (genjax_lab.api), on data {"x": [N, D], "y": int [N], optional "mask": [N]}
(categorical x: integer categories; a mask weighs rows, 0 for padding; the count kinds
also take x as a scipy.sparse matrix, CountVectorizer's output, made dense) and the config of
`default_config()` (the whole config is the model's):
  fit(key, data, config) -> (params, history)   closed form, from sufficient statistics:
      `statistics_step(stats, batch, config, meta)` adds a batch's statistics to a running
      total, then `from_statistics(stats, config)`; `fit_split` streams a split through it,
      and `loop_family` makes that step a training-loop family (one epoch of minibatches,
      the running statistics its state: checkpointed and resumable like any run).
  log_prob(params, x, y=None) -> [B]            exact log p(x | y), or log p(x) when y is None.
  sample(key, params, num, *, y=None)           x [num, D]; `sample_with_labels` keeps the y.
  classifier(params) -> genjax_lab.api.BayesClassifier (Bayes' rule; no latent, no posterior).

Statistics are mask-weighted reductions over the batch axis, so under jit with the batch
sharded over the 'data' mesh axis they are cross-device reductions, and the statistics of
streamed batches combine with `add_statistics(s1, s2)`. Estimators, as scikit-learn's:
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
               feature d seen in training + 1                               (CategoricalNB)
  complement   from the multinomial's counts: complement counts
               A_cd = sum_{c'} N_c'd + alpha - N_cd, l_cd = log(A_cd / sum_d A_cd), weights
               w_cd = -l_cd, or with config.norm l_cd / sum_d l_cd; class scores x . w_c, and
               P(y | x) their softmax (the class prior is not used, as scikit-learn's
               ComplementNB uses it only with a single class, where P(y | x) = 1)
                                                                              (ComplementNB)
Class log priors (`log_prior`) are the log class frequencies (fit_prior), uniform, or given.

Scoring: log_prob is exact, the multinomial coefficient n! / prod_d x_d! included. The
classifier's class log-likelihoods leave that coefficient out, as scikit-learn's joint
log-likelihood does: it is the same for every class, so Bayes' rule is unchanged, but the
classifier's `log_joint` / `log_marginal` of a multinomial model are log p up to it.
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
from collections.abc import Callable, Mapping
from typing import Any, Literal

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import scipy.sparse
from flax import struct

from genjax_lab import api
from genjax_lab.core import checks, compilation
from genjax_lab.core import data as data_lib
from genjax_lab.core import mesh as mesh_lib
from genjax_lab.core.loop import Family, base_config
from genjax_lab.core.mesh import batch_einsum, is_batch_sharded

Kind = Literal["gaussian", "bernoulli", "multinomial", "categorical", "complement"]
KINDS = ("gaussian", "bernoulli", "multinomial", "categorical")  # the generative models of x
CLASSIFIER_KINDS = (*KINDS, "complement")


# ----------------------------------------------------------------------------- config
def default_config() -> ml_collections.ConfigDict:
    """The model's whole config.

    kind: one of CLASSIFIER_KINDS. num_classes: C, 0 to take the largest label + 1 of the data
    (which must then be concrete: set it for a fit under jit). var_smoothing (gaussian) and
    alpha (the discrete kinds' pseudo-count) as scikit-learn's. fit_prior: class frequencies as
    the prior, else uniform; class_prior: a fixed prior [C] (empty: not fixed). binarize
    (bernoulli): x > binarize is 1. num_categories (categorical): the size M of the category
    axis, 0 for the largest category in the data + 1 (each feature's own M_d is always the
    largest category of that feature seen in training + 1). norm (complement): normalise each
    class's weights (scikit-learn's ComplementNB norm).
    """
    return ml_collections.ConfigDict(
        {
            "kind": "gaussian",
            "num_classes": 0,
            "var_smoothing": 1e-9,
            "alpha": 1.0,
            "fit_prior": True,
            "class_prior": (),
            "binarize": 0.0,
            "num_categories": 0,
            "norm": False,
        }
    )


def _check_config(config: ml_collections.ConfigDict) -> None:
    checks.check_choice("config.kind", config.kind, CLASSIFIER_KINDS)
    checks.check_count("config.num_classes", config.num_classes, minimum=0)
    checks.check_number("config.var_smoothing", config.var_smoothing, low=0.0)
    checks.check_number("config.alpha", config.alpha, low=0.0, low_open=True)
    checks.check_number("config.binarize", config.binarize)
    checks.check_count("config.num_categories", config.num_categories, minimum=0)


_DENSE_ONLY = {"gaussian": "GaussianNB", "categorical": "CategoricalNB"}


def _refuse_sparse_for_dense_kinds(x, kind: str, name: str = "x") -> None:
    if scipy.sparse.issparse(x) and kind in _DENSE_ONLY:
        raise TypeError(
            f"{name} is a scipy.sparse matrix, but kind={kind!r} takes a dense array [N, D] (as "
            f"scikit-learn's {_DENSE_ONLY[kind]}): pass {name}.toarray()"
        )


def _dense_counts(x, kind: str, name: str = "x"):
    """x, or a scipy.sparse count matrix [N, D] (CountVectorizer's output) as a dense float32
    array (an `observed` mask as a dense bool one), for scoring: the count kinds take it as
    scikit-learn's do. Dense, so the [N, D] float32 of a call must fit in memory (score large
    corpora in batches of rows); the fit never makes it dense (`_sparse_count_statistics`)."""
    if not scipy.sparse.issparse(x):
        return x
    _refuse_sparse_for_dense_kinds(x, kind, name)
    return x.astype(bool if name == "observed" else np.float32).toarray()


def _sparse_training_rows(x, y, mask, num_classes: int, kind: str):
    """The real rows of a scipy.sparse x [B, D] as float32 CSR, their labels and mask
    weights, checked as `_validate_training` checks a dense x (and naming the same entry)."""
    x = scipy.sparse.csr_array(x, copy=True)  # the caller's matrix is left as it was
    x.sum_duplicates()  # an entry stored twice is their sum, as its dense value
    rows = x.shape[0]
    if 0 in x.shape:
        raise ValueError(f"x must not be empty, got shape {x.shape}")
    if x.dtype.kind not in "biuf":
        raise checks.DTypeError(f"x must be real (bool, integer or float), got dtype {x.dtype}")
    y = checks.check_array("y", y, (rows,), kinds=checks.INTEGER)
    weights = np.ones(rows, np.float32)
    if mask is not None:
        weights = checks.check_array("mask", mask, (rows,), nonnegative=True).astype(np.float32)
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(
            f"y must be class indices in [0, num_classes={num_classes}), got range "
            f"[{y.min()}, {y.max()}]"
        )
    index = np.flatnonzero(weights > 0)  # padding rows may hold anything
    x = x[index]
    stored = x.tocoo()
    bad = ~np.isfinite(stored.data)
    if bad.any():
        at = np.flatnonzero(bad)[0]
        raise ValueError(
            f"x must be finite for training, x[{index[stored.row[at]]}, {stored.col[at]}] = "
            f"{stored.data[at]} (missing features are only allowed at prediction)"
        )
    if kind == "multinomial" and stored.data.size and stored.data.min() < 0:
        raise ValueError(
            f"x must be non-negative counts for kind='multinomial', min is {stored.data.min()}"
        )
    x = x.astype(np.float32)
    # XLA's CPU flushes subnormal floats to zero, so the dense path never sees them.
    x.data[np.abs(x.data) < np.finfo(np.float32).tiny] = 0.0
    x.eliminate_zeros()
    return x, y[index], weights[index]


def _sparse_count_statistics(
    x, y, mask, num_classes: int, kind: str, binarize: float
) -> "CountStats":
    """The count kinds' statistics of a scipy.sparse x [B, D] on the host, never dense: the
    class-weighted column sums W^T X (W [B, C] one-hot labels times the mask) as
    scikit-learn's MultinomialNB takes them, in O(nonzeros + C D) memory. Checked as the
    dense x is; float32, so integer counts sum exactly as the dense path does."""
    checks.check_choice("kind", kind, CLASSIFIER_KINDS)
    checks.check_count("num_classes", num_classes)
    checks.check_number("binarize", binarize)
    x, y, weights = _sparse_training_rows(x, y, mask, num_classes, kind)
    labelled = np.zeros((x.shape[0], num_classes), np.float32)
    labelled[np.arange(x.shape[0]), y] = weights
    class_count = labelled.sum(0)
    # The threshold the dense path compares with: float32, subnormals flushed to zero as
    # XLA's CPU does.
    threshold = np.float32(binarize)
    threshold = np.float32(0.0) if abs(threshold) < np.finfo(np.float32).tiny else threshold
    if kind != "bernoulli":
        feature_count = np.asarray(x.T @ labelled, np.float32).T
    elif threshold >= 0:
        feature_count = np.asarray((x > threshold).astype(np.float32).T @ labelled).T
    else:  # every implicit zero is above it: count the stored entries at or below instead
        below = np.asarray((x <= threshold).astype(np.float32).T @ labelled).T
        feature_count = class_count[:, None] - below
    return CountStats(
        jnp.asarray(class_count),
        jnp.asarray(np.ascontiguousarray(feature_count)),
        kind,
        binarize if kind == "bernoulli" else None,
    )


def meta_from_data(data: Mapping[str, Any], config: ml_collections.ConfigDict) -> dict:
    """The sizes the data fix: num_features, num_classes, dtype (of the fitted parameters)
    and, for the categorical model, num_categories (the category axis M)."""
    _check_config(config)
    checks.check_mapping("data", data, ("x", "y"))
    x, y = data["x"], data["y"]
    _refuse_sparse_for_dense_kinds(x, config.kind)
    if scipy.sparse.issparse(x):
        # A stand-in with its width and the parameters' dtype (and no rows if it has none, to
        # be refused as an empty x is): the fit keeps it sparse.
        x = np.zeros((min(x.shape[0], 1), x.shape[1]), np.float32)
    if checks.is_checkable(x):
        checks.check_array("x", x, ("N", "D"), finite=False)
    elif jnp.ndim(x) != 2:
        raise ValueError(f"x must be [N, D], got shape {jnp.shape(x)}")
    num_classes = config.num_classes
    if num_classes == 0:
        if not checks.is_checkable(y):
            raise ValueError("config.num_classes must be set (> 0) for a fit under jit")
        labels = checks.check_array("y", y, ("N",), kinds=checks.INTEGER)
        num_classes = int(labels.max()) + 1
    x_dtype = jnp.result_type(x)
    dtype = x_dtype if jnp.issubdtype(x_dtype, jnp.floating) else jnp.dtype(jnp.float32)
    meta = {
        "num_features": int(jnp.shape(x)[1]),
        "num_classes": int(num_classes),
        "dtype": jnp.dtype(dtype).name,
    }
    if config.kind == "categorical":
        num_categories = config.num_categories
        if num_categories == 0:
            if not checks.is_checkable(x):
                raise ValueError("config.num_categories must be set (> 0) for a fit under jit")
            num_categories = int(np.max(np.asarray(x))) + 1
        meta["num_categories"] = int(num_categories)
    return meta


# ----------------------------------------------------------------------------- statistics
@struct.dataclass
class GaussianStats:
    """class_count [C] = n_c = sum_n w_nc; mean [C, D] = sum_n w_nc x_n / n_c (0 for an empty
    class); m2 [C, D] = sum_n w_nc (x_n - mean_c)^2, w_nc the mask-weighted one-hot labels."""

    class_count: jax.Array
    mean: jax.Array
    m2: jax.Array


@struct.dataclass
class CountStats:
    """class_count [C] and feature_count [C, D] (bernoulli: sum of binarized x; multinomial
    and complement: sum of counts) or [C, D, M] (categorical: occurrences of category m of
    feature d)."""

    class_count: jax.Array
    feature_count: jax.Array
    kind: str = struct.field(pytree_node=False)
    binarize: float | None = struct.field(pytree_node=False, default=None)


Stats = GaussianStats | CountStats


def pooled_variance(stats: GaussianStats) -> jax.Array:
    """The variance of all the data, classes pooled [D]: within-class M2 plus the spread of
    the class means about their mean, over the total count."""
    count = stats.class_count[:, None]
    total = stats.class_count.sum()
    grand_mean = jnp.sum(count * stats.mean, 0) / total
    return (stats.m2.sum(0) + jnp.sum(count * (stats.mean - grand_mean) ** 2, 0)) / total


def _one_hot_weights(y: jax.Array, mask: jax.Array | None, num_classes: int, dtype) -> jax.Array:
    weights = jax.nn.one_hot(y, num_classes, dtype=dtype)
    return weights if mask is None else weights * mask.astype(dtype)[:, None]


def _validate_training(
    x, y, mask, num_classes: int, kind: str, binarize, num_categories: int | None
) -> None:
    checks.check_choice("kind", kind, CLASSIFIER_KINDS)
    checks.check_count("num_classes", num_classes)
    checks.check_number("binarize", binarize)
    if num_categories is not None:
        checks.check_count("num_categories", num_categories)
    # Finiteness is checked below on the real rows only: padding rows may hold anything.
    x_np = checks.check_array("x", x, ("B", "D"), finite=False)
    y_np = checks.check_array("y", y, (x_np.shape[0],), kinds=checks.INTEGER)
    if mask is not None:
        checks.check_array("mask", mask, (x_np.shape[0],), nonnegative=True)
    if y_np.size and (y_np.min() < 0 or y_np.max() >= num_classes):
        raise ValueError(
            f"y must be class indices in [0, num_classes={num_classes}), got range "
            f"[{y_np.min()}, {y_np.max()}]"
        )
    real = x_np if mask is None else x_np[np.asarray(mask) > 0]
    if np.issubdtype(real.dtype, np.floating) and not np.all(np.isfinite(real)):
        rows = np.arange(x_np.shape[0]) if mask is None else np.flatnonzero(np.asarray(mask) > 0)
        row, col = np.argwhere(~np.isfinite(real))[0]
        raise ValueError(
            f"x must be finite for training, x[{rows[row]}, {col}] = {real[row, col]} "
            "(missing features are only allowed at prediction)"
        )
    if kind == "multinomial" and real.size and real.min() < 0:
        raise ValueError(
            f"x must be non-negative counts for kind='multinomial', min is {real.min()}"
        )
    if kind == "categorical" and real.size:
        if np.any(real != np.round(real)) or real.min() < 0:
            raise ValueError("x must be integer categories >= 0 for kind='categorical'")
        if num_categories is not None and real.max() >= num_categories:
            raise ValueError(
                f"x has category {int(real.max())} but num_categories={num_categories}"
            )


def sufficient_statistics(
    x: jax.Array,
    y: jax.Array,
    mask: jax.Array | None,
    num_classes: int,
    kind: Kind = "gaussian",
    *,
    binarize: float = 0.0,
    num_categories: int | None = None,
) -> Stats:
    """Mask-weighted sufficient statistics of a batch, summed over the batch axis.

    x: [B, D] (categorical: integer categories), y: int [B], mask: [B] or None (all real).
    binarize: bernoulli threshold (x > binarize is 1).
    num_categories: categorical only, the size M of the category axis (static; inferred from x
    when concrete and None).
    Returns GaussianStats or CountStats; combine two batches' with `add_statistics(a, b)`.
    """
    _refuse_sparse_for_dense_kinds(x, kind)
    if scipy.sparse.issparse(x):
        return _sparse_count_statistics(x, y, mask, num_classes, kind, binarize)
    if checks.is_checkable(x, y, mask):
        _validate_training(x, y, mask, num_classes, kind, binarize, num_categories)
        if kind == "categorical" and num_categories is None:
            num_categories = int(np.max(np.asarray(x))) + 1
        x = mesh_lib.on_device(x)
    if kind == "categorical" and num_categories is None:
        raise ValueError("num_categories must be given for kind='categorical' under jit")
    return _statistics_impl(x, y, mask, num_classes, kind, binarize, num_categories)


def _gaussian_statistics(
    x: jax.Array, y: jax.Array, labels: jax.Array, weights: jax.Array, real: jax.Array | None
) -> GaussianStats:
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
    return GaussianStats(
        class_count,
        rough_mean + first / safe_count,
        jnp.maximum(second - first * first / safe_count, 0.0),
    )


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
    return CountStats(
        class_count,
        batch_einsum("bc,bd->cd", weights, x),
        kind,
        binarize if kind == "bernoulli" else None,
    )


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
    return GaussianStats(
        count,
        a.mean + delta * share_b,
        a.m2 + b.m2 + delta * delta * a.class_count[:, None] * share_b,
    )


def statistics_step(
    stats: Stats | None,
    batch: Mapping[str, jax.Array],
    config: ml_collections.ConfigDict,
    meta: Mapping[str, Any],
) -> Stats:
    """The fit's step: `stats` (None to start) plus the statistics of `batch` ({"x", "y",
    optional "mask"}), for the model of `config` with the sizes of `meta`."""
    batch_stats = sufficient_statistics(
        batch["x"],
        batch["y"],
        batch.get("mask"),
        meta["num_classes"],
        config.kind,
        binarize=config.binarize,
        num_categories=meta.get("num_categories"),
    )
    return batch_stats if stats is None else add_statistics(stats, batch_stats)


def _binarized(x: jax.Array, binarize: float) -> jax.Array:
    return (x > binarize).astype(jnp.result_type(x.dtype, jnp.float32))


# ----------------------------------------------------------------------------- parameters
@struct.dataclass
class GaussianNB:
    """log_prior [C], mean [C, D], var [C, D] (smoothed)."""

    log_prior: jax.Array
    mean: jax.Array
    var: jax.Array


@struct.dataclass
class BernoulliNB:
    """log_prior [C], log_prob [C, D] = log p(b_d = 1 | c), log_neg_prob [C, D] = log(1 - p)."""

    log_prior: jax.Array
    log_prob: jax.Array
    log_neg_prob: jax.Array
    binarize: float = struct.field(pytree_node=False, default=0.0)


@struct.dataclass
class MultinomialNB:
    """log_prior [C], log_prob [C, D] = log theta_cd (rows sum to 1 in prob space)."""

    log_prior: jax.Array
    log_prob: jax.Array


@struct.dataclass
class CategoricalNB:
    """log_prior [C], log_prob [C, D, M] = log theta_cdm (-inf for m >= num_categories[d]),
    num_categories int32 [D]."""

    log_prior: jax.Array
    log_prob: jax.Array
    num_categories: jax.Array


@struct.dataclass
class ComplementNB:
    """log_prior [C] (scikit-learn's class_log_prior_, not used by the decision), weights
    [C, D] (its feature_log_prob_: the complement weights of the module docstring), norm."""

    log_prior: jax.Array
    weights: jax.Array
    norm: bool = struct.field(pytree_node=False, default=False)


Params = GaussianNB | BernoulliNB | MultinomialNB | CategoricalNB | ComplementNB


def init(key: jax.Array, config: ml_collections.ConfigDict, meta: Mapping[str, Any]) -> Params:
    """Uniform parameters of the structure, shapes and dtypes a fit gives (key unused: the
    model has nothing random to start from)."""
    del key
    _check_config(config)
    c, d = meta["num_classes"], meta["num_features"]
    dtype = jnp.dtype(meta["dtype"])
    log_prior = jnp.full((c,), -math.log(c), dtype)
    if config.kind == "gaussian":
        return GaussianNB(log_prior, jnp.zeros((c, d), dtype), jnp.ones((c, d), dtype))
    if config.kind == "bernoulli":
        half = jnp.full((c, d), math.log(0.5), dtype)
        return BernoulliNB(log_prior, half, half, float(config.binarize))
    if config.kind == "multinomial":
        return MultinomialNB(log_prior, jnp.full((c, d), -math.log(d), dtype))
    if config.kind == "complement":
        return ComplementNB(log_prior, jnp.zeros((c, d), dtype), bool(config.norm))
    m = meta["num_categories"]
    return CategoricalNB(
        log_prior, jnp.full((c, d, m), -math.log(m), dtype), jnp.full((d,), m, jnp.int32)
    )


def _class_prior(num_classes: int, config: ml_collections.ConfigDict) -> np.ndarray | None:
    """config.class_prior checked, as float64 [C]; None when the prior is not fixed."""
    if not len(config.class_prior):
        return None
    prior = np.asarray(config.class_prior, dtype=np.float64)
    if (
        prior.shape != (num_classes,)
        or not np.all(prior >= 0)
        or not math.isclose(prior.sum(), 1.0, rel_tol=1e-6)
    ):
        raise ValueError(
            f"config.class_prior must be [{num_classes}] non-negative summing "
            f"to 1, got {tuple(config.class_prior)}"
        )
    return prior


def _log_prior(class_count: jax.Array, class_prior: jax.Array | None, fit_prior: bool) -> jax.Array:
    if class_prior is not None:
        return jnp.log(class_prior)
    if not fit_prior:
        return jnp.full(class_count.shape, -math.log(class_count.shape[0]), class_count.dtype)
    return jnp.log(class_count) - jnp.log(class_count.sum())


@compilation.fast_compiling_jit(static_argnames="fit_prior")
def _gaussian_params(
    stats: GaussianStats, var_smoothing: float, class_prior, fit_prior: bool
) -> GaussianNB:
    log_prior = _log_prior(stats.class_count, class_prior, fit_prior)
    var = stats.m2 / stats.class_count[:, None] + var_smoothing * jnp.max(pooled_variance(stats))
    return GaussianNB(log_prior, stats.mean, var)


def _check_gaussian(stats: GaussianStats, params: GaussianNB | None, var_smoothing: float) -> None:
    if params is None:
        empty = np.flatnonzero(np.asarray(stats.class_count) <= 0)
        if empty.size:
            raise ValueError(
                f"y has no examples of class {empty[0]} (stats.class_count"
                f"[{empty[0]}] = 0): the Gaussian naive Bayes mean and variance of "
                "that class are undefined"
            )
    elif np.any(np.asarray(params.var) <= 0):
        c, d = np.argwhere(np.asarray(params.var) <= 0)[0]
        raise ValueError(
            f"feature {d} of class {c} has variance 0 and config.var_smoothing="
            f"{var_smoothing} adds nothing (all data constant?): use "
            "var_smoothing > 0 and non-constant data"
        )


@compilation.fast_compiling_jit(static_argnames=("fit_prior", "norm"))
def _count_params(
    stats: CountStats, alpha: float, class_prior, fit_prior: bool, norm: bool
) -> Params:
    log_prior = _log_prior(stats.class_count, class_prior, fit_prior)
    fc, cc = stats.feature_count, stats.class_count
    if stats.kind == "complement":
        complement = fc.sum(0) + alpha - fc
        logged = jnp.log(complement) - jnp.log(complement.sum(1, keepdims=True))
        weights = logged / logged.sum(1, keepdims=True) if norm else -logged
        return ComplementNB(log_prior, weights, norm)
    if stats.kind == "bernoulli":
        log_total = jnp.log(cc + 2 * alpha)[:, None]
        return BernoulliNB(
            log_prior,
            jnp.log(fc + alpha) - log_total,
            jnp.log(cc[:, None] - fc + alpha) - log_total,
            stats.binarize,
        )
    if stats.kind == "multinomial":
        smoothed = fc + alpha
        return MultinomialNB(log_prior, jnp.log(smoothed) - jnp.log(smoothed.sum(1, keepdims=True)))
    size = fc.shape[2]
    seen = fc.sum(0) > 0  # scikit-learn: M_d is the largest category seen in training + 1
    num_categories = jnp.max(jnp.where(seen, jnp.arange(size) + 1, 0), axis=1).astype(jnp.int32)
    supported = jnp.arange(size)[None, :] < num_categories[:, None]  # [D, M]
    denom = cc[:, None] + alpha * num_categories[None, :]
    log_prob = jnp.where(supported, jnp.log(fc + alpha) - jnp.log(denom)[:, :, None], -jnp.inf)
    return CategoricalNB(log_prior, log_prob, num_categories)


def from_statistics(stats: Stats, config: ml_collections.ConfigDict) -> Params:
    """Parameters from summed statistics, with config's var_smoothing (Gaussian) or alpha
    (the discrete models) and class prior."""
    _check_config(config)
    # The prior is computed inside the one compiled program: each eager jnp operation on the
    # host compiles a program of its own (four here, 0.1-0.2 s each in a fresh process).
    class_prior = _class_prior(stats.class_count.shape[0], config)
    if class_prior is not None:
        class_prior = class_prior.astype(stats.class_count.dtype)
    if isinstance(stats, GaussianStats):
        check = checks.is_checkable(stats)
        if check:
            _check_gaussian(stats, None, config.var_smoothing)
        # GaussianNB always fits its prior, as scikit-learn's.
        params = _gaussian_params(stats, config.var_smoothing, class_prior, fit_prior=True)
        if check:
            _check_gaussian(stats, params, config.var_smoothing)
        return params
    # A config saved before ComplementNB existed has no norm key; only complement reads it.
    norm = bool(config.get("norm", False))
    fit_prior = bool(config.fit_prior)
    return _count_params(stats, config.alpha, class_prior, fit_prior=fit_prior, norm=norm)


def fit(
    key: jax.Array,
    data: Mapping[str, jax.Array],
    config: ml_collections.ConfigDict,
    init: Params | None = None,
) -> tuple[Params, dict]:
    """The closed-form fit: one `statistics_step` over the data, then `from_statistics`.

    key: unused (nothing random). init must be None: the estimate does not depend on a start.
    history: {"num_iters": 1, "class_count": [C] (mask-weighted examples per class)}.
    """
    del key
    if init is not None:
        raise ValueError(
            "init: naive Bayes is fitted in closed form from the data's "
            "statistics, there is no start to give (pass init=None)"
        )
    meta = meta_from_data(data, config)
    stats = statistics_step(None, data, config, meta)
    return from_statistics(stats, config), {"num_iters": 1, "class_count": stats.class_count}


def fit_split(
    split: data_lib.Split,
    config: ml_collections.ConfigDict,
    *,
    features: Callable[[dict[str, jax.Array]], jax.Array] = lambda batch: batch["x"],
    labels: str = "y",
    batch_size: int = 4096,
    mesh=None,
) -> tuple[Params, dict]:
    """`fit` on a split read `batch_size` rows at a time: in memory, or streamed from
    ArrayRecord files (`streaming.RecordColumn`s) when it does not fit in host memory.

    Each global batch is sharded over the `data` mesh (default: every device of every host)
    and its statistics are summed across devices inside the compiled step, then over the
    batches; `features(batch)` gives x [B, D] from the split's columns (e.g. flattened,
    scaled pixels) and `labels` names y. Equals `fit` on the whole split up to the order of
    float summation. config.num_classes (and, categorical, config.num_categories) must be
    set: the split is never whole.
    """
    _check_config(config)
    if config.num_classes == 0:
        raise ValueError("config.num_classes must be set (> 0) to fit a split read in batches")
    if config.kind == "categorical" and config.num_categories == 0:
        raise ValueError(
            "config.num_categories must be set (> 0) for kind='categorical' on a "
            "split read in batches"
        )
    meta = {"num_classes": config.num_classes}
    if config.kind == "categorical":
        meta["num_categories"] = config.num_categories
    mesh = mesh_lib.data_mesh() if mesh is None else mesh

    stats = None
    # Not loop_lib.sum_over_split: Gaussian statistics combine pairwise, not by addition.
    for local in data_lib.eval_batches(split, batch_size):
        batch = mesh_lib.global_batch(mesh, local)
        stats = statistics_step(
            stats, {"x": features(batch), "y": batch[labels], "mask": batch["mask"]}, config, meta
        )
    return from_statistics(stats, config), {"num_iters": 1, "class_count": stats.class_count}


# ----------------------------------------------------------------------------- the loop
def loop_config(config: ml_collections.ConfigDict, batch_size: int) -> ml_collections.ConfigDict:
    """The training loop's config of a counting fit: the loop's keys (core/loop.base_config),
    one epoch of `batch_size` rows a step, and the model's `config` under `model`. Saved
    every 4 steps and at the end, evaluated at the end."""
    _check_config(config)
    run = base_config()
    run.batch_size = checks.check_count("batch_size", batch_size)
    run.num_epochs = 1.0
    run.log_every = 4
    run.eval_every = 0
    run.checkpoint.every = 4
    run.model = config
    return run


def loop_family(config: ml_collections.ConfigDict, meta: Mapping[str, Any]) -> Family:
    """`fit` as a training-loop family: the state is the running sufficient statistics
    (zero at the start), a step adds those of a minibatch {"x", "y", "mask"}
    (`statistics_step`), so one epoch of the loop sums what `fit` sums, in another order:
    counts are exact, Gaussian moments agree to float rounding. The parameters are
    `from_statistics(state, config)`. Step metric: examples, the real rows counted so far.
    Evaluation sums (the loop divides by the split's size): log_prob, log p(x) per example,
    and accuracy of the Bayes-rule classifier (complement: accuracy only). `meta`: the
    data-fixed sizes (`meta_from_data`), num_classes among them.
    """
    _check_config(config)

    def init_state(key: jax.Array, batch) -> Stats:
        del key  # nothing random: the statistics start at zero
        return jax.tree.map(jnp.zeros_like, statistics_step(None, batch, config, meta))

    def train_step(stats: Stats, batch, key: jax.Array):
        del key
        stats = statistics_step(stats, batch, config, meta)
        return stats, {"examples": stats.class_count.sum()}

    def eval_step(stats: Stats, batch, key: jax.Array):
        del key
        params = from_statistics(stats, config)
        real = batch["mask"] > 0
        correct = classifier(params).predict(batch["x"]) == batch["y"]
        metrics = {
            "accuracy": jnp.sum(jnp.where(real, correct, False).astype(stats.class_count.dtype))
        }
        if not isinstance(params, ComplementNB):  # a classifier only: no log p(x)
            scores = log_prob(params, batch["x"])
            metrics["log_prob"] = jnp.sum(jnp.where(real, scores, 0.0))
        return metrics

    return Family(init=init_state, train_step=train_step, eval_step=eval_step)


# ----------------------------------------------------------------------------- scoring
def _observed(x: jax.Array, observed: jax.Array | None) -> jax.Array:
    floating = jnp.issubdtype(x.dtype, jnp.floating)
    present = ~jnp.isnan(x) if floating else jnp.ones(x.shape, bool)
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


def _complement_scores(params: ComplementNB, x, observed):
    # Not log-likelihoods: the classifier's scores, whose softmax is P(y | x).
    return jnp.where(observed, x, 0.0).astype(params.weights.dtype) @ params.weights.T


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
    ComplementNB: _complement_scores,
}


def _validate_scoring(params: Params, x, observed, y) -> None:
    if isinstance(params, GaussianNB):
        num_features = params.mean.shape[1]
    elif isinstance(params, ComplementNB):
        num_features = params.weights.shape[1]
    else:
        num_features = params.log_prob.shape[1]
    # NaN marks a missing feature (marginalised out); inf is no value at all.
    x_np = checks.check_array("x", x, ("B", num_features), allow_nan=True)
    if observed is not None:
        checks.check_array("observed", observed, x_np.shape)
    if y is not None:
        _check_labels(params, y, x_np.shape[0])
    if isinstance(params, CategoricalNB):
        floating = np.issubdtype(x_np.dtype, np.floating)
        present = ~np.isnan(x_np) if floating else np.ones(x_np.shape, bool)
        if observed is not None:
            present &= np.asarray(observed, bool)
        limit = np.broadcast_to(np.asarray(params.num_categories), x_np.shape)
        bad = present & ((x_np < 0) | (x_np >= limit))
        if np.any(bad):
            row, col = np.argwhere(bad)[0]
            raise ValueError(
                f"x[{row}, {col}] = {x_np[row, col]} is not a category of feature "
                f"{col} (0..{limit[row, col] - 1} seen in training)"
            )


def _check_labels(params: Params, y, num: int) -> None:
    num_classes = params.log_prior.shape[0]
    labels = checks.check_array("y", y, (num,), kinds=checks.INTEGER)
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(
            f"y must be class indices in [0, {num_classes}), got range "
            f"[{labels.min()}, {labels.max()}]"
        )


@jax.jit
def _class_log_likelihoods(params: Params, x: jax.Array, observed: jax.Array | None) -> jax.Array:
    """log p(x_observed | y = c) [B, C], the multinomial coefficient left out."""
    return _LOG_LIK[type(params)](params, x, _observed(x, observed))


def _log_multinomial_coefficient(x: jax.Array, observed: jax.Array) -> jax.Array:
    counts = jnp.where(observed, x, 0.0)
    return jax.lax.lgamma(counts.sum(1) + 1.0) - jnp.sum(jax.lax.lgamma(counts + 1.0), axis=1)


@jax.jit
def _log_prob(params: Params, x: jax.Array, y: jax.Array | None, observed) -> jax.Array:
    per_class = _class_log_likelihoods(params, x, observed)
    if y is None:
        scores = jax.nn.logsumexp(per_class + params.log_prior, axis=1)
    else:
        scores = jnp.take_along_axis(per_class, jnp.asarray(y)[:, None], axis=1)[:, 0]
    if isinstance(params, MultinomialNB):
        scores = scores + _log_multinomial_coefficient(
            x.astype(scores.dtype), _observed(x, observed)
        )
    return scores


def _params_kind(params: Params) -> str:
    kinds = {GaussianNB: "gaussian", CategoricalNB: "categorical"}
    return kinds.get(type(params), "count")


def log_prob(
    params: Params, x: jax.Array, y: jax.Array | None = None, *, observed: jax.Array | None = None
) -> jax.Array:
    """Exact log p(x_observed | y) [B] for labels y [B], or log p(x_observed) =
    logsumexp_c log p(x_observed, y = c) when y is None (nats; Bernoulli: of the binarized x).

    x: [B, D] (a scipy.sparse matrix for the count kinds); NaN entries, and entries where
    `observed` [B, D] is False, are marginalised out. A ComplementNB has no density:
    NotImplementedError.
    """
    _refuse_complement(params, "log_prob")
    x = _dense_counts(x, _params_kind(params))
    observed = _dense_counts(observed, _params_kind(params), "observed")
    if checks.is_checkable(x, observed, y):
        _validate_scoring(params, x, observed, y)
    return _log_prob(params, x, y, observed)


def _refuse_complement(params: Params, verb: str) -> None:
    if isinstance(params, ComplementNB):
        raise NotImplementedError(
            f"{verb}: ComplementNB is a classifier, not a generative model of x: it has no "
            "p(x | y) to score or sample (its class scores are complement-count weights); "
            "use classifier(params).predict_log_proba, or kind='multinomial' for a model"
        )


@struct.dataclass
class ComplementClassifier(api.BayesClassifier):
    """ComplementNB's classifier: predict_log_proba, predict_proba and predict as
    scikit-learn's; log_joint and log_marginal raise, since there is no p(x, y)."""

    def log_joint(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        raise NotImplementedError(
            "log_joint / log_marginal: ComplementNB's class scores are not log p(x, y = c) "
            "(it is not a generative model of x): only P(y | x) is available"
        )


def _classifier_log_likelihoods(params: Params, x: jax.Array, key: jax.Array | None) -> jax.Array:
    del key  # exact
    x = _dense_counts(x, _params_kind(params))
    if checks.is_checkable(x):
        _validate_scoring(params, x, None, None)
    return _class_log_likelihoods(params, x, None)


def classifier(params: Params) -> api.BayesClassifier:
    """Bayes' rule over the classes; NaN features are marginalised out. Its log_joint leaves
    out the multinomial coefficient (the same for every class; see the module docstring).
    A ComplementNB gives a `ComplementClassifier`: P(y | x) the softmax of its class scores,
    no log_joint; NaN features contribute nothing."""
    if isinstance(params, ComplementNB):
        uniform = jnp.zeros_like(params.log_prior)  # the prior is not part of the rule
        return ComplementClassifier(uniform, params, _classifier_log_likelihoods, normalised=False)
    return api.BayesClassifier(params.log_prior, params, _classifier_log_likelihoods)


# ----------------------------------------------------------------------------- sampling
def _check_sample(num, params: Params, y, total_count, **_) -> None:
    _refuse_complement(params, "sample")
    checks.check_count("num", num)
    if y is not None:
        _check_labels(params, y, num)
    if isinstance(params, MultinomialNB):
        if total_count is None:
            raise ValueError(
                "total_count (draws per sample) is required to sample a multinomial model"
            )
        checks.check_array("total_count (draws per sample)", total_count, nonnegative=True)


def _sample_given_y(key: jax.Array, params: Params, y: jax.Array, total_count) -> jax.Array:
    if isinstance(params, GaussianNB):
        noise = jax.random.normal(key, (y.shape[0], params.mean.shape[1]), params.mean.dtype)
        return params.mean[y] + jnp.sqrt(params.var[y]) * noise
    if isinstance(params, BernoulliNB):
        return jax.random.bernoulli(key, jnp.exp(params.log_prob[y])).astype(params.log_prob.dtype)
    if isinstance(params, MultinomialNB):
        n = jnp.broadcast_to(jnp.asarray(total_count, params.log_prob.dtype), y.shape)
        return jax.random.multinomial(key, n, jnp.exp(params.log_prob[y]))
    return jax.random.categorical(key, params.log_prob[y], axis=-1).astype(jnp.int32)


@checks.validated(_check_sample)
@functools.partial(jax.jit, static_argnames=("num",))
def sample_with_labels(
    key: jax.Array, params: Params, num: int, *, y: jax.Array | None = None, total_count=None
) -> tuple[jax.Array, jax.Array]:
    """(x [num, D], y int [num]) ~ p(x, y), or x ~ p(x | y) for given labels y [num].

    Bernoulli x: 0/1; categorical: int32 categories. total_count (multinomial only, required
    there): the number of draws n per sample, scalar or [num]. A ComplementNB has no p(x | y):
    NotImplementedError.
    """
    _refuse_complement(params, "sample")
    if y is None:
        label_key, key = jax.random.split(key)
        y = jax.random.categorical(label_key, params.log_prior, shape=(num,))
    y = jnp.asarray(y)
    return _sample_given_y(key, params, y, total_count), y


def sample(
    key: jax.Array, params: Params, num: int, *, y: jax.Array | None = None, total_count=None
) -> jax.Array:
    """x [num, D] ~ p(x) (labels from the class prior), or ~ p(x | y) given y [num]."""
    return sample_with_labels(key, params, num, y=y, total_count=total_count)[0]
