"""log Z of RBMs, DBMs and classification RBMs, the scoring verbs built on it, the
pseudo-log-likelihood (which needs no log Z) and the classification RBM's classifier.

AIS (Salakhutdinov & Murray, ICML 2008) runs on genjax_lab.inference.ais along
`RBMAnnealing`: with the base-rate model A (zero weights, zero hidden biases, visible biases
b_A fit to the training data's pixel means) and the target B = (W, b, c), the intermediate
models at inverse temperature beta are
    log p*_beta(v) = (1 - beta) b_A.v + beta b.v + sum_j softplus(beta (c_j + (v W)_j))
(Gaussian visible units: -(1 - beta) |v - b_A|^2 / 2 - beta |v - b|^2 / 2 in place of the
linear terms), so p_0 = A with log Z_A = sum_i softplus(b_A,i) + H log 2 (Gaussian:
V/2 log 2 pi + H log 2) and p_1 = B. The transition at beta is one Gibbs sweep
h ~ p(h | v; beta), v ~ p(v | h; beta).

DBM: given h1, v and h2 are independent, so a 2-layer DBM is the RBM with hidden h1 and
visible [v, h2] (`dbm_as_rbm`). Its log Z is that RBM's: AIS anneals the DBM's joint with
h1 sampled and both v and h2 summed out analytically in the weights; the base model fits
b_A to the pixel means for v and is uniform (b_A = 0) for h2.

RAISE (Burda, Grosse & Salakhutdinov 2015; genjax_lab.inference.ais) scores test images along
the same paths without log Z (`raise_log_prob`): a stochastic lower bound on log p_ann(v),
beside AIS's log p which errs high when its chains mix badly. The DBM's reverse chains run
on [v, h2] (`DBMAnnealing`), h2 started from the mean-field posterior. `ais_log_z_by_length`
lengthens AIS until log Z_hat stops moving, the other check of a badly mixing model.

Exact log Z enumerates the smaller layer (Bernoulli; Gaussian visible units: always the
hidden layer, integrating v in closed form), in chunks of `chunk_size` states.

The parameters carry no log Z: `log_prob(params, x)` enumerates it (`log_partition`, small
models) unless given `log_z`; `log_prob_estimate(key, params, x)` takes it from AIS. A DBM's
log p(v) is intractable even given log Z: `log_prob_bound` gives the mean-field bound.

Pseudo-log-likelihood (Besag 1975; scikit-learn's BernoulliRBM.score_samples):
sum_i log p(v_i | v_-i) with p(v_i | v_-i) = sigmoid(F(v~i) - F(v)), v~i being v with bit i
flipped. `pseudo_log_likelihood` sums all V terms; `pseudo_log_likelihood_estimate` is
scikit-learn's V log sigmoid(F(v~) - F(v)) for one uniformly drawn bit.

Classification RBM: p(y | x) = softmax_y -F(x, y) is exact; log Z_y (per label) comes from
the same enumeration as log Z, with the label kept as an axis.
"""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import xlogy
from jax.sharding import Mesh

from genjax_lab import api
from genjax_lab.core import checks
from genjax_lab.inference import ais
from genjax_lab.models.boltzmann.model import (
    ClassRBMParams,
    DBMParams,
    RBMParams,
    check_labels,
    check_visible,
    dbm_as_rbm,
    dbm_lower_bound,
    free_energy_given_label,
    label_free_energies,
    mean_field,
    rbm_log_prob,
    sample_bernoulli,
    sample_visible,
    visible_batch,
    visible_bias_from_mean,
)

_LOG_2PI = math.log(2 * math.pi)
MAX_ENUMERATION_BITS = 26


# ----------------------------------------------------------------------------- AIS


def _linear_terms(v, bias, visible: str):
    """The beta-independent visible part of log p*: b.v or -|v - b|^2 / 2: [M]."""
    return v @ bias if visible == "bernoulli" else -0.5 * jnp.sum((v - bias) ** 2, -1)


@dataclasses.dataclass(frozen=True)
class RBMAnnealing:
    """The path from the base-rate RBM to the target RBM; theta = (RBMParams, b_A [V]), the
    state of M runs their visible vectors [M, V]."""

    visible: str = "bernoulli"

    def sample_base(self, theta, keys):
        _, base_bias = theta
        probs_or_mean = jnp.broadcast_to(base_bias, (keys.shape[0], base_bias.shape[0]))
        if self.visible == "bernoulli":
            probs_or_mean = jax.nn.sigmoid(probs_or_mean)
        return sample_visible(keys, probs_or_mean, self.visible)

    def log_ratio(self, theta, v, beta_prev, beta):
        params, base_bias = theta
        logits = v @ params.W + params.b_hid
        gap = _linear_terms(v, params.b_vis, self.visible) - _linear_terms(
            v, base_bias, self.visible
        )
        hidden = jax.nn.softplus(beta * logits) - jax.nn.softplus(beta_prev * logits)
        return (beta - beta_prev) * gap + jnp.sum(hidden, -1)

    def transition(self, theta, keys, v, beta):
        params, base_bias = theta
        logits = v @ params.W + params.b_hid
        pairs = jax.vmap(jax.random.split)(keys)
        h = sample_bernoulli(pairs[:, 0], jax.nn.sigmoid(beta * logits))
        field = (1.0 - beta) * base_bias + beta * (params.b_vis + h @ params.W.T)
        if self.visible == "bernoulli":
            field = jax.nn.sigmoid(field)
        return sample_visible(pairs[:, 1], field, self.visible)

    def base_log_prob(self, theta, v):
        _, base_bias = theta
        if self.visible == "bernoulli":
            return v @ base_bias - jnp.sum(jax.nn.softplus(base_bias))
        return _linear_terms(v, base_bias, self.visible) - 0.5 * base_bias.shape[0] * _LOG_2PI

    def start(self, theta, keys, v):
        # h is summed out of the state, so the chain starts at the data itself: no proposal.
        return v, jnp.zeros(v.shape[0], v.dtype)


@dataclasses.dataclass(frozen=True)
class DBMAnnealing:
    """The DBM's path over the states [v, h2], h1 summed out: `RBMAnnealing` along the
    equivalent RBM (`dbm_as_rbm`); theta = (DBMParams, b_A [V + H2]). RAISE starts a chain at
    [v, h2] with h2 drawn from the mean-field posterior q(h2 | v) of `num_iters` iterations."""

    num_iters: int = 10

    def _rbm(self, theta):
        params, base_bias = theta
        return dbm_as_rbm(params), base_bias

    def sample_base(self, theta, keys):
        return RBMAnnealing().sample_base(self._rbm(theta), keys)

    def log_ratio(self, theta, x, beta_prev, beta):
        return RBMAnnealing().log_ratio(self._rbm(theta), x, beta_prev, beta)

    def transition(self, theta, keys, x, beta):
        return RBMAnnealing().transition(self._rbm(theta), keys, x, beta)

    def base_log_prob(self, theta, x):
        return RBMAnnealing().base_log_prob(self._rbm(theta), x)

    def start(self, theta, keys, v):
        params, _ = theta
        _, mu2 = mean_field(params, v, self.num_iters)
        h2 = sample_bernoulli(keys, mu2)
        log_q = jnp.sum(xlogy(h2, mu2) + xlogy(1.0 - h2, 1.0 - mu2), -1)
        return jnp.concatenate([v, h2], -1), log_q


def base_rate_bias(data, *, visible: str = "bernoulli", eps: float = 1e-3) -> np.ndarray:
    """b_A of the base-rate model from training data [N, ...]: logit of clipped pixel means
    (Bernoulli) or the means (Gaussian): [V]."""
    check_visible(visible)
    data = np.asarray(data, np.float64)
    return visible_bias_from_mean(data.reshape(data.shape[0], -1).mean(0), visible, eps)


def _check_base_bias(params: RBMParams, base_vis_bias) -> np.ndarray:
    """base_vis_bias as finite float64 [V] (None: zeros)."""
    num_visible = params.W.shape[0]
    base = np.zeros(num_visible) if base_vis_bias is None else np.asarray(base_vis_bias, np.float64)
    if base.shape != (num_visible,):
        raise ValueError(f"base_vis_bias must have shape ({num_visible},), got {base.shape}")
    if not np.all(np.isfinite(base)):
        raise ValueError("base_vis_bias must be finite (clip the pixel means before taking logits)")
    return base


def ais_log_z(
    params: RBMParams,
    betas,
    key: jax.Array,
    num_runs: int = 100,
    *,
    base_vis_bias=None,
    visible: str = "bernoulli",
    mesh: Mesh | None = None,
) -> ais.AISResult:
    """AIS estimate of log Z for an RBM (Salakhutdinov & Murray 2008).

    params: W [V, H], b_vis [V], b_hid [H]. betas: [K + 1] from 0 to 1
    (`ais.paper_schedule()` or `ais.piecewise_schedule(K)`). base_vis_bias: [V] b_A
    (`base_rate_bias(train_data)`); None: zeros (uniform base for Bernoulli, N(0, I) for
    Gaussian). mesh: shard the runs over its 'data' axis (num_runs a multiple of its size);
    results equal the unsharded run.
    """
    check_visible(visible)
    num_visible, num_hidden = params.W.shape
    base = _check_base_bias(params, base_vis_bias)
    if visible == "bernoulli":
        log_z_base = np.sum(np.logaddexp(0.0, base)) + num_hidden * math.log(2)
    else:
        log_z_base = 0.5 * num_visible * _LOG_2PI + num_hidden * math.log(2)
    dtype = params.W.dtype
    return ais.annealed_importance_sampling(
        RBMAnnealing(visible),
        (params, jnp.asarray(base, dtype)),
        betas,
        key,
        num_runs,
        log_z_base=log_z_base,
        dtype=dtype,
        mesh=mesh,
    )


def _dbm_base_bias(params: DBMParams, base_vis_bias) -> np.ndarray:
    """b_A of the DBM's base over [v, h2]: base_vis_bias [V] (None: zeros) for v, 0 for h2."""
    num_visible, num_h2 = params.b_vis.shape[0], params.b_h2.shape[0]
    base_v = (
        np.zeros(num_visible) if base_vis_bias is None else np.asarray(base_vis_bias, np.float64)
    )
    if base_v.shape != (num_visible,):
        raise ValueError(f"base_vis_bias must have shape ({num_visible},), got {base_v.shape}")
    return np.concatenate([base_v, np.zeros(num_h2)])


def dbm_ais_log_z(
    params: DBMParams,
    betas,
    key: jax.Array,
    num_runs: int = 100,
    *,
    base_vis_bias=None,
    mesh: Mesh | None = None,
) -> ais.AISResult:
    """AIS log Z of a 2-layer DBM, annealing the equivalent RBM (hidden h1, visible [v, h2]).

    base_vis_bias: [V] b_A for v (pixel means); h2's base is uniform.
    """
    return ais_log_z(
        dbm_as_rbm(params),
        betas,
        key,
        num_runs,
        base_vis_bias=_dbm_base_bias(params, base_vis_bias),
        mesh=mesh,
    )


def ais_log_z_by_length(
    key: jax.Array,
    params: RBMParams | DBMParams,
    lengths=(14_500, 50_000, 100_000),
    num_runs: int = 100,
    *,
    base_vis_bias=None,
) -> dict[int, ais.AISResult]:
    """AIS log Z of an RBM or a DBM at each number of temperatures in `lengths` (the paper's
    piecewise schedule rescaled), with the same key: {K: AISResult}.

    log Z_hat errs low when the chains mix badly, and less so as K grows, so an estimate that
    still rises from one length to the next was an underestimate; one that stops moving
    (within its log_z_std) is the lengthened-AIS check of a log-likelihood.
    """
    for length in lengths:
        checks.check_count("lengths", length)
    return {
        int(length): _ais_result(
            key, params, num_runs, ais.piecewise_schedule(int(length)), base_vis_bias
        )
        for length in lengths
    }


def raise_log_prob(
    key: jax.Array,
    params: RBMParams | DBMParams,
    x: jax.Array,
    betas,
    num_chains: int = 1,
    *,
    base_vis_bias=None,
    num_iters: int = 10,
    visible: str = "bernoulli",
    first_item: int = 0,
) -> ais.RAISEResult:
    """RAISE (Burda, Grosse & Salakhutdinov 2015): for each x [B, ...], the log-mean of
    num_chains reverse-AIS weights, a stochastic lower bound on log p_ann(x) (the annealing
    model of forward AIS along the same path, which tends to p as the schedule lengthens);
    no log Z: RAISEResult(log_prob [B], log_weights [B, num_chains]).

    betas: [K + 1] from 0 to 1, as for `ais_log_z` (forward AIS with the same betas and base
    anneals along the same path). base_vis_bias: [V] b_A (`base_rate_bias(train_data)`;
    None: zeros). RBM: each chain starts at v, h summed out (the first sweep draws h from
    p(h | v)). DBM: h1 summed out, h2 drawn from the mean-field posterior q(h2 | v) of
    num_iters iterations, log q in the weight. first_item: the index of x[0] in a larger set
    scored in slices (keys follow an item's global index). Cost: K sweeps per chain.
    """
    if isinstance(params, ClassRBMParams):
        raise NotImplementedError(
            "raise_log_prob scores an RBM or a DBM; a classification RBM's log p(x) is exact "
            "(log_prob)"
        )
    v = visible_batch(params, x)
    if isinstance(params, DBMParams):
        path, base = DBMAnnealing(num_iters), _dbm_base_bias(params, base_vis_bias)
    else:
        check_visible(visible)
        path, base = RBMAnnealing(visible), _check_base_bias(params, base_vis_bias)
    dtype = v.dtype
    return ais.reverse_annealed_importance_sampling(
        path,
        (params, jnp.asarray(base, dtype)),
        betas,
        key,
        v,
        num_chains,
        first_item=first_item,
        dtype=dtype,
    )


# ----------------------------------------------------------------------------- enumeration


def _states(start, num: int, bits: int, dtype) -> jax.Array:
    """The binary expansions of integers start .. start + num - 1: [num, bits]."""
    ints = start + jnp.arange(num, dtype=jnp.int32)
    return ((ints[:, None] >> jnp.arange(bits, dtype=jnp.int32)) & 1).astype(dtype)


def _log_terms_over_hidden(params: RBMParams | ClassRBMParams, h, visible: str):
    """log sum_v exp(-E(v, h)) for each h [S, H]: [S] (a classification RBM: for each label
    too, [S, C])."""
    field = params.b_vis + h @ params.W.T
    if isinstance(params, ClassRBMParams):
        own = h @ params.b_hid + jnp.sum(jax.nn.softplus(field), -1)
        return own[:, None] + params.b_label + h @ params.U.T
    if visible == "bernoulli":
        return h @ params.b_hid + jnp.sum(jax.nn.softplus(field), -1)
    num_visible = params.b_vis.shape[0]
    return (
        h @ params.b_hid
        + 0.5 * jnp.sum(field**2, -1)
        - 0.5 * jnp.sum(params.b_vis**2)
        + 0.5 * num_visible * _LOG_2PI
    )


def _log_terms_over_visible(params: RBMParams | ClassRBMParams, v, visible: str):
    """log sum_h exp(-E(v, h)) = -F(v) for each binary v [S, V]: [S] (a classification RBM:
    -F(v, y) for each label too, [S, C])."""
    if isinstance(params, ClassRBMParams):
        return -label_free_energies(params, v)
    return v @ params.b_vis + jnp.sum(jax.nn.softplus(v @ params.W + params.b_hid), -1)


@functools.partial(jax.jit, static_argnames=("side", "visible", "chunk_size"))
def _enumerate(params: RBMParams | ClassRBMParams, side: str, visible: str, chunk_size: int):
    """logsumexp over the 2^n states of one layer of `terms`: [] ([C] with a label axis)."""
    bits = params.W.shape[1] if side == "hidden" else params.W.shape[0]
    total = 2**bits
    chunk = min(chunk_size, total)
    terms = _log_terms_over_hidden if side == "hidden" else _log_terms_over_visible

    def chunk_lse(start):
        states = _states(start, chunk, bits, params.W.dtype)
        valid = start + jnp.arange(chunk) < total  # the last chunk may run past 2^bits
        values = terms(params, states, visible)
        valid = valid.reshape(valid.shape + (1,) * (values.ndim - 1))
        return jax.nn.logsumexp(jnp.where(valid, values, -jnp.inf), axis=0)

    starts = jnp.arange(0, total, chunk, dtype=jnp.int32)
    return jax.nn.logsumexp(jax.lax.map(chunk_lse, starts), axis=0)


def exact_log_z(
    params: RBMParams,
    *,
    visible: str = "bernoulli",
    chunk_size: int = 4096,
    side: str | None = None,
) -> jax.Array:
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
        raise ValueError(
            "side='visible' needs binary visible units; Gaussian ones are integrated out instead"
        )
    _check_enumerable("exact_log_z", num_hidden if side == "hidden" else num_visible, side)
    checks.check_count("chunk_size", chunk_size)
    return _enumerate(params, side, visible, chunk_size)


def _check_enumerable(name: str, bits: int, side: str) -> None:
    if bits > MAX_ENUMERATION_BITS:
        raise ValueError(
            f"{name} would enumerate 2^{bits} {side} states; at most "
            f"2^{MAX_ENUMERATION_BITS} allowed"
        )


def label_log_partition(params: ClassRBMParams, *, chunk_size: int = 4096) -> jax.Array:
    """log Z_y = log sum_{v, h} exp(-E(v, y, h)) of a classification RBM for every label, by
    enumerating its smaller layer (hidden or visible), the rest summed out analytically:
    [C]. log Z = logsumexp_y log Z_y, and log p(y) = log Z_y - log Z."""
    side = "hidden" if params.W.shape[1] <= params.W.shape[0] else "visible"
    _check_enumerable("label_log_partition", min(params.W.shape), side)
    checks.check_count("chunk_size", chunk_size)
    return _enumerate(params, side, "bernoulli", chunk_size)


def dbm_exact_log_z(params: DBMParams, *, chunk_size: int = 4096) -> jax.Array:
    """log Z of a 2-layer DBM by enumeration of h1 (or of [v, h2] if smaller): []."""
    return exact_log_z(dbm_as_rbm(params), chunk_size=chunk_size)


# ----------------------------------------------------------------------------- the verbs


def log_partition(
    params: RBMParams | DBMParams | ClassRBMParams, *, chunk_size: int = 4096
) -> jax.Array:
    """Exact log Z of a Bernoulli RBM, a DBM or a classification RBM by enumeration (the
    smaller layer of the RBM or of the DBM's RBM form must have at most MAX_ENUMERATION_BITS
    units): []."""
    if isinstance(params, ClassRBMParams):
        return jax.nn.logsumexp(label_log_partition(params, chunk_size=chunk_size))
    if isinstance(params, DBMParams):
        return dbm_exact_log_z(params, chunk_size=chunk_size)
    return exact_log_z(params, chunk_size=chunk_size)


def _ais_result(key, params, num_runs: int, betas, base_vis_bias) -> ais.AISResult:
    betas = ais.paper_schedule() if betas is None else betas
    if isinstance(params, DBMParams):
        return dbm_ais_log_z(params, betas, key, num_runs, base_vis_bias=base_vis_bias)
    return ais_log_z(params, betas, key, num_runs, base_vis_bias=base_vis_bias)


def _ais_log_z(key, params, num_runs: int, betas, base_vis_bias) -> float:
    return _ais_result(key, params, num_runs, betas, base_vis_bias).log_z


def log_prob(params: RBMParams | ClassRBMParams, x: jax.Array, y=None, *, log_z=None) -> jax.Array:
    """Exact log p(v) = -F(v) - log Z of a Bernoulli RBM, in nats: x [B, ...] -> [B].

    log_z: the RBM's log partition function; None: enumerated here by `log_partition`
    (small models only: pass an AIS estimate, or use `log_prob_estimate`, for large ones).
    A classification RBM: log p(x | y) = -F(x, y) - log Z_y for labels y [B], or the
    marginal log p(x) = logsumexp_y -F(x, y) - log Z with y None; log_z is then the [C]
    per-label log Z_y of `label_log_partition` (None: enumerated).
    """
    if isinstance(params, DBMParams):
        raise NotImplementedError(
            "a DBM's log p(v) is intractable even given log Z: use "
            "log_prob_bound (the mean-field lower bound)"
        )
    if isinstance(params, ClassRBMParams):
        v = visible_batch(params, x)
        label_log_z = label_log_partition(params) if log_z is None else jnp.asarray(log_z)
        if y is None:
            return jax.nn.logsumexp(-label_free_energies(params, v), -1) - jax.nn.logsumexp(
                label_log_z
            )
        y = check_labels(params, y, v.shape[0])
        return -free_energy_given_label(params, v, y) - label_log_z[y]
    if y is not None:
        raise ValueError(
            "y: this RBM has no label units (a classification RBM, "
            "config.model.kind='class_rbm', has them)"
        )
    if log_z is None:
        if min(params.W.shape) > MAX_ENUMERATION_BITS:
            # Exact is out of reach, not wrong input: callers fall back to an estimate.
            raise NotImplementedError(
                f"log Z of an RBM with {min(params.W.shape)} units in its smaller layer "
                "cannot be enumerated: pass log_z, or use log_prob_estimate (AIS)"
            )
        log_z = log_partition(params)
    return rbm_log_prob(params, visible_batch(params, x), log_z)


def log_prob_estimate(
    key: jax.Array,
    params: RBMParams,
    x: jax.Array,
    *,
    num_runs: int = 100,
    betas=None,
    base_vis_bias=None,
) -> jax.Array:
    """log p(v) of a Bernoulli RBM with log Z estimated by AIS: x [B, ...] -> [B].

    num_runs AIS runs along `betas` (None: the paper's 14,500-step schedule) from the
    base-rate model `base_vis_bias` [V] (`base_rate_bias(train_x)`; None: uniform).
    """
    if isinstance(params, DBMParams):
        raise NotImplementedError(
            "a DBM's log p(v) is intractable even given log Z: use "
            "log_prob_bound (the mean-field lower bound)"
        )
    v = visible_batch(params, x)  # refuse a bad x before the AIS runs
    return rbm_log_prob(params, v, _ais_log_z(key, params, num_runs, betas, base_vis_bias))


def log_prob_bound(
    key: jax.Array,
    params: DBMParams,
    x: jax.Array,
    log_z=None,
    *,
    num_iters: int = 10,
    num_runs: int = 100,
    betas=None,
    base_vis_bias=None,
) -> jax.Array:
    """The DBM's mean-field lower bound on log p(v) in nats: x [B, ...] -> [B].

    log_z: the DBM's log partition function; None: estimated by AIS with `key` (num_runs,
    betas and base_vis_bias as in `log_prob_estimate`), which makes the result an estimate
    of the bound (AIS underestimates log Z on average).
    """
    if isinstance(params, RBMParams):
        raise NotImplementedError(
            "an RBM's log p(v) is exact given log Z: use log_prob (or "
            "log_prob_estimate with an AIS log Z)"
        )
    v = visible_batch(params, x)
    if log_z is None:
        log_z = _ais_log_z(key, params, num_runs, betas, base_vis_bias)
    return dbm_lower_bound(params, v, log_z, num_iters)


# ----------------------------------------------------------------------------- pseudo-likelihood


def _require_bernoulli_rbm(params, name: str) -> None:
    if not isinstance(params, RBMParams):
        raise NotImplementedError(
            f"{name} is defined here for an RBM (RBMParams): a DBM's p(v) needs h2 summed out "
            "(use log_prob_bound), a classification RBM's has log_prob"
        )


def _flip_gaps(params: RBMParams, v, logits, bits):
    """F(v with bit i flipped) - F(v) for the bits [B, K] of each row: [B, K].

    Flipping bit i moves the hidden logits by +-W_i, so each flip costs one row of W.
    """
    values = jnp.take_along_axis(v, bits, axis=1)
    sign = 1.0 - 2.0 * values  # +1 turns the bit on, -1 off
    flipped = logits[:, None, :] + sign[..., None] * params.W[bits]  # [B, K, H]
    hidden = jnp.sum(jax.nn.softplus(flipped), -1) - jnp.sum(jax.nn.softplus(logits), -1)[:, None]
    return -sign * params.b_vis[bits] - hidden


@jax.jit
def _pll_terms(params: RBMParams, v) -> jax.Array:
    def one_row(row):  # [V, H] at a time, not [B, V, H]
        logits = row @ params.W + params.b_hid
        bits = jnp.arange(row.shape[0])[None]
        return jax.nn.log_sigmoid(_flip_gaps(params, row[None], logits[None], bits))[0]

    return jax.lax.map(one_row, v, batch_size=16)


def pseudo_log_likelihood_terms(params: RBMParams, x: jax.Array) -> jax.Array:
    """log p(x_i | x_-i) = log sigmoid(F(x~i) - F(x)) for every visible unit i, where x~i is x
    with bit i flipped, exact: x [B, ...] -> [B, V]."""
    _require_bernoulli_rbm(params, "pseudo_log_likelihood_terms")
    return _pll_terms(params, visible_batch(params, x))


def pseudo_log_likelihood(params: RBMParams, x: jax.Array) -> jax.Array:
    """The exact pseudo-log-likelihood sum_i log p(x_i | x_-i) of a Bernoulli RBM in nats,
    all V bits flipped in turn (deterministic; no log Z needed): x [B, ...] -> [B]."""
    return jnp.sum(pseudo_log_likelihood_terms(params, x), axis=-1)


@jax.jit
def _one_bit_estimate(params: RBMParams, v, bits) -> jax.Array:
    logits = v @ params.W + params.b_hid
    gaps = _flip_gaps(params, v, logits, bits[:, None])[:, 0]
    return v.shape[1] * jax.nn.log_sigmoid(gaps)


def pseudo_log_likelihood_estimate(
    key: jax.Array, params: RBMParams, x: jax.Array, *, bits=None
) -> jax.Array:
    """scikit-learn's BernoulliRBM.score_samples: V log sigmoid(F(x~) - F(x)) with one bit
    of each row flipped, drawn uniformly (an unbiased one-term estimate of
    `pseudo_log_likelihood`, V times cheaper): x [B, ...] -> [B].

    bits: [B] the bit to flip in each row instead of drawing them with `key` (scikit-learn
    draws them as `np.random.RandomState(random_state).randint(0, V, B)`).
    """
    _require_bernoulli_rbm(params, "pseudo_log_likelihood_estimate")
    v = visible_batch(params, x)
    num, num_visible = v.shape
    if bits is None:
        bits = jax.random.randint(key, (num,), 0, num_visible)
    else:
        bits = checks.check_array("bits", bits, (num,), kinds=checks.INTEGER)
        if bits.min() < 0 or bits.max() >= num_visible:
            raise ValueError(f"bits must lie in [0, {num_visible}), got {bits.min()}..{bits.max()}")
    return _one_bit_estimate(params, v, jnp.asarray(bits, jnp.int32))


# ----------------------------------------------------------------------------- classification

CLASSIFIER_ENUMERATION_BITS = 20  # above this, `classifier` leaves log Z out (see there)


def classifier(params: ClassRBMParams, label_log_z=None) -> api.BayesClassifier:
    """The classification RBM's Bayes-rule classifier: P(y | x) = softmax_y -F(x, y), exact
    (the hidden units summed out analytically; log Z cancels).

    label_log_z: the per-label log Z_y [C] (`label_log_partition`), which makes log_joint
    log p(x, y) and log_marginal log p(x) in nats. None: enumerated where the smaller layer
    has at most CLASSIFIER_ENUMERATION_BITS units; above that unknown, and the classifier is
    unnormalised: predict_proba, predict_log_proba and predict stay exact (log Z cancels),
    log_joint and log_marginal raise.
    """
    if not isinstance(params, ClassRBMParams):
        raise NotImplementedError(
            "the boltzmann family has no classifier for an RBM or a DBM (no label units); "
            "a classification RBM (config.model.kind='class_rbm', fit on x and y) has one"
        )
    num_classes = params.b_label.shape[0]
    if label_log_z is None and min(params.W.shape) <= CLASSIFIER_ENUMERATION_BITS:
        label_log_z = label_log_partition(params)
    normalised = label_log_z is not None
    if label_log_z is None:
        label_log_z, log_prior = jnp.zeros(num_classes), jnp.zeros(num_classes)
    else:
        label_log_z = jnp.asarray(
            checks.check_array("label_log_z", label_log_z, (num_classes,)), jnp.float32
        )
        log_prior = label_log_z - jax.nn.logsumexp(label_log_z)
    return api.from_conditional(
        log_prior, (params, label_log_z), _log_prob_given_label, normalised=normalised
    )


def _log_prob_given_label(shared, x, y) -> jax.Array:
    """log p(x | y) = -F(x, y) - log Z_y for x [B, ...] and labels y [B]: [B]."""
    params, label_log_z = shared
    v = visible_batch(params, x)
    return -free_energy_given_label(params, v, y) - label_log_z[y]
