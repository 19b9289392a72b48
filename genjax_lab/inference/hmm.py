"""Message passing for hidden Markov models over log-potentials, batched and masked.

Every function takes the same log-potentials of a K-state chain:
  log_initial      [K]        log p(x_0 = k)
  log_transition   [K, K]     log p(x_t = j | x_{t-1} = i) at [i, j]
  log_likelihoods  [B, T, K]  log p(y_t | x_t = k) of B sequences padded to length T
  lengths          [B] int    true lengths, 1 <= lengths <= T (None: all T)
An unbatched [T, K] input with `lengths=None` gives unbatched outputs. Steps t >= length
are padding: they do not change any result and their outputs are zero (posteriors) or
-1 (state paths). B sequences share one `lax.scan` over T (vectorised over B), so there is
no Python loop per sequence. The public functions are jitted (`parallel` and `unroll`
static) and can be called inside other jitted code; called from Python they first check
their inputs on the host (shapes, floating dtypes, no NaN or +inf; -inf is log 0) and
name the argument at fault.

Sequential recursions are scaled (Rabiner 1989): the filter carries the normalised
alpha_t = p(x_t | y_{0:t}), and each step computes log pred_t + log p(y_t | x_t) with
pred_t = alpha_{t-1} A, subtracts its maximum before exponentiating and adds the log of
the normaliser to the log-likelihood. So no probability is exponentiated from a large
negative log, there is no underflow however small the emission probabilities are, and the
per-step log normalisers are summed after the scan (a tree reduction, not a running float
sum that drifts over long sequences). The smoother runs backwards on posteriors:
  gamma_t = alpha_t * (A (gamma_{t+1} / pred_{t+1})),
  xi_t(i, j) = alpha_t(i) A_ij gamma_{t+1}(j) / pred_{t+1}(j),
which needs no separately scaled beta. Viterbi runs in log space (max-plus).

Parallel versions (`parallel=True`) use `jax.lax.associative_scan` over time, O(log T)
depth (Sarkka & Garcia-Fernandez 2021): the filter composes the matrices
M_t(i, j) = A_ij p(y_t | x_t = j) (M_0 has rows pi_j p(y_0 | j)) kept as (matrix scaled to
max 1, log scale); the smoother multiplies the prefix products with reversed suffix
products (backward messages); Viterbi composes the same elements in the max-plus semiring
for the prefix maxima delta_t, takes every back-pointer at once, and backtracks by composing
the back-pointer maps in a reverse associative scan. Padded steps are identity elements. Parallel work is
O(T K^3) against O(T K^2): the win is depth, on accelerators or long single sequences.
"""
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from genjax_lab.core import checks


class FilterResult(NamedTuple):
    """log_likelihood: [B] log p(y_{0:L-1}); filtered_probs: [B, T, K] p(x_t | y_{0:t})."""

    log_likelihood: Array
    filtered_probs: Array


class SmootherResult(NamedTuple):
    """log_likelihood: [B]; posteriors: [B, T, K] p(x_t | y); transition_counts: [B, K, K]
    sum_t p(x_t = i, x_{t+1} = j | y), the expected transition counts."""

    log_likelihood: Array
    posteriors: Array
    transition_counts: Array


class ViterbiResult(NamedTuple):
    """states: [B, T] int32 argmax_x p(x | y), -1 on padding; log_prob: [B] its log p(x, y)."""

    states: Array
    log_prob: Array


# ----------------------------------------------------------------------------- shapes


def _batch(log_likelihoods: Array, lengths: Array | None) -> tuple[Array, Array, bool]:
    """[B, T, K] log-likelihoods and [B] lengths; unbatched input gets a batch axis of 1."""
    unbatched = log_likelihoods.ndim == 2
    if unbatched:
        if lengths is not None:
            raise ValueError("lengths must be None for an unbatched [T, K] log_likelihoods")
        log_likelihoods = log_likelihoods[None]
    b, t, _ = log_likelihoods.shape
    if lengths is None:
        lengths = jnp.full((b,), t, jnp.int32)
    return log_likelihoods, jnp.asarray(lengths, jnp.int32), unbatched


def _unbatch(result, unbatched: bool):
    return jax.tree.map(lambda x: x[0], result) if unbatched else result


def _time_major(log_likelihoods: Array, lengths: Array) -> tuple[Array, Array]:
    """[T, B, K] log-likelihoods and the [T, B] validity mask t < length."""
    t = log_likelihoods.shape[1]
    valid = jnp.arange(t)[:, None] < lengths[None, :]
    return jnp.swapaxes(log_likelihoods, 0, 1), valid


def _safe_log(x: Array) -> Array:
    """log x with log 0 = -inf and a zero (not NaN) gradient there."""
    positive = x > 0
    return jnp.where(positive, jnp.log(jnp.where(positive, x, 1.0)), -jnp.inf)


def _normalise_log(logits: Array) -> tuple[Array, Array]:
    """probs = softmax(logits) over the last axis and log sum exp(logits), without overflow.
    A row that is all -inf (an impossible observation) gives zeros and -inf."""
    m = jnp.max(logits, axis=-1, keepdims=True)
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    w = jnp.exp(logits - m)
    c = jnp.sum(w, axis=-1, keepdims=True)
    probs = w / jnp.where(c > 0, c, 1.0)
    return probs, (jnp.log(c) + m)[..., 0]


# ------------------------------------------------------------------------- sequential


def _forward(log_initial, log_transition, ll_tm, valid, unroll, filters: bool = True):
    """Scaled forward pass, time-major. Returns filtered alpha_t [T, B, K], log normalisers
    [T, B] and the predictions alpha_t A [T - 1, B, K] of steps 1..T-1 (for the backward pass);
    with filters=False only the log normalisers (the others are None), which saves the
    sequential loop writing them.

    The fast recursion multiplies each prediction by the likelihoods scaled to a maximum of 1,
    exp(ll_t - max ll_t), computed for all steps at once outside the sequential loop. It
    underflows only when every state the chain can be in explains y_t far worse than the best
    state does (about 87 nats in float32); then the whole pass is redone in log space, which
    never underflows. Under vmap both run (a batched cond is a select).
    """
    fast = _forward_scaled(log_initial, log_transition, ll_tm, valid, unroll, filters)
    return jax.lax.cond(fast[3], lambda: _forward_log(log_initial, log_transition, ll_tm, valid, unroll, filters),
                        lambda: fast[:3])


def _forward_scaled(log_initial, log_transition, ll_tm, valid, unroll, filters: bool = True):
    """The fast forward pass: (alphas, log normalisers, predictions, underflowed) where
    underflowed says whether some real step's normaliser fell below the range in which the
    scaled products keep full precision. Exps and logs run outside the sequential loop."""
    trans = jnp.exp(log_transition)
    peak = jnp.max(ll_tm, axis=-1)
    peak = jnp.where(jnp.isfinite(peak), peak, 0.0)  # an all -inf row: scaled 0, caught below
    scaled = jnp.exp(ll_tm - peak[..., None])

    def condition(pred, scaled_t):
        joint = pred * scaled_t
        total = jnp.sum(joint, axis=-1)
        return joint / jnp.where(total > 0, total, 1.0)[:, None], total

    alpha0, total0 = condition(jnp.broadcast_to(jnp.exp(log_initial), scaled.shape[1:]), scaled[0])

    def step(alpha, inputs):
        scaled_t, valid_t = inputs
        pred = alpha @ trans
        alpha_t, total_t = condition(pred, scaled_t)
        alpha = jnp.where(valid_t[:, None], alpha_t, alpha)
        kept = (alpha_t, pred) if filters else (None, None)
        return alpha, (*kept, total_t)

    _, (alphas, preds, totals) = jax.lax.scan(step, alpha0, (scaled[1:], valid[1:]), unroll=unroll)
    totals = jnp.where(valid, jnp.concatenate([total0[None], totals]), 1.0)  # padding: log 1 = 0
    underflowed = jnp.any(totals <= jnp.finfo(totals.dtype).tiny / jnp.finfo(totals.dtype).eps)
    logcs = jnp.where(valid, jnp.log(totals) + peak, 0.0)
    return (jnp.concatenate([alpha0[None], alphas]) if filters else None), logcs, preds, underflowed


def _forward_log(log_initial, log_transition, ll_tm, valid, unroll, filters: bool = True):
    """The forward pass in log space (the fallback of `_forward`): same outputs."""
    trans = jnp.exp(log_transition)
    alpha0, logc0 = _normalise_log(log_initial + ll_tm[0])

    def step(alpha, inputs):
        ll_t, valid_t = inputs
        pred = alpha @ trans
        alpha_t, logc_t = _normalise_log(_safe_log(pred) + ll_t)
        # Padded steps keep the last real filter, so the final carry is alpha_{L-1}.
        alpha = jnp.where(valid_t[:, None], alpha_t, alpha)
        kept = (alpha_t, pred) if filters else (None, None)
        return alpha, (*kept, jnp.where(valid_t, logc_t, 0.0))

    _, (alphas, preds, logcs) = jax.lax.scan(step, alpha0, (ll_tm[1:], valid[1:]), unroll=unroll)
    logcs = jnp.concatenate([logc0[None], logcs])
    return (jnp.concatenate([alpha0[None], alphas]) if filters else None), logcs, preds


def _backward_posteriors(log_transition, alphas, preds, valid, unroll):
    """Backward pass on posteriors, time-major, from the forward pass's filters and
    predictions. Returns gamma [T, B, K] (zero on padding) and r_{t+1} = gamma_{t+1} /
    pred_{t+1} [T - 1, B, K] (zero where step t + 1 is padding), so that the pairwise
    posterior is p(x_t = i, x_{t+1} = j | y) = alpha_t[i] A[i, j] r_{t+1}[j]."""
    trans_transposed = jnp.exp(log_transition).T
    valid_next = valid[1:]
    # 1 / pred_{t+1} for every step at once, outside the sequential loop; zero on padding and
    # where the prediction is exactly zero (then so is gamma_{t+1}).
    usable = valid_next[..., None] & (preds > 0)
    inv_preds = jnp.where(usable, 1.0 / jnp.where(usable, preds, 1.0), 0.0)

    def normalised(gamma):
        # The exact value sums to one; rounding would otherwise accumulate. An all-zero row
        # (a padded step after impossible observations) stays zero.
        total = jnp.sum(gamma, axis=-1, keepdims=True)
        return gamma / jnp.where(total > 0, total, 1.0)

    def step(gamma_next, inputs):
        alpha_t, inv_pred_next, valid_n = inputs
        ratio = gamma_next * inv_pred_next
        gamma = normalised(jnp.where(valid_n[:, None], alpha_t * (ratio @ trans_transposed), alpha_t))
        return gamma, (gamma, ratio)

    last = normalised(alphas[-1])
    _, (gammas, ratios) = jax.lax.scan(step, last, (alphas[:-1], inv_preds, valid_next), reverse=True, unroll=unroll)
    gammas = jnp.concatenate([gammas, last[None]])
    return jnp.where(valid[..., None], gammas, 0.0), ratios


def _viterbi_sequential(log_initial, log_transition, ll_tm, valid, unroll):
    k = log_transition.shape[0]
    delta0 = log_initial + ll_tm[0]
    identity = jnp.arange(k, dtype=jnp.int32)

    def forward(delta, inputs):
        ll_t, valid_t = inputs
        scores = delta[:, :, None] + log_transition
        ptr = jnp.argmax(scores, axis=1).astype(jnp.int32)
        delta_t = jnp.max(scores, axis=1) + ll_t
        delta = jnp.where(valid_t[:, None], delta_t, delta)
        return delta, jnp.where(valid_t[:, None], ptr, identity)

    delta, ptrs = jax.lax.scan(forward, delta0, (ll_tm[1:], valid[1:]), unroll=unroll)
    last = jnp.argmax(delta, axis=-1).astype(jnp.int32)

    def backward(state, ptr):
        prev = jnp.take_along_axis(ptr, state[:, None], axis=1)[:, 0]
        return prev, prev

    _, states = jax.lax.scan(backward, last, ptrs, reverse=True, unroll=unroll)
    states = jnp.concatenate([states, last[None]])
    return jnp.where(valid, states, -1), jnp.max(delta, axis=-1)


# --------------------------------------------------------------------------- parallel


def _scaled_matmul(a, b):
    """(M1, s1) o (M2, s2) = (M1 M2 / n, s1 + s2 + log n), n = max entry of M1 M2."""
    m = a[0] @ b[0]
    n = jnp.max(m, axis=(-2, -1))
    n = jnp.where(n > 0, n, 1.0)
    return m / n[..., None, None], a[1] + b[1] + jnp.log(n)


def _scaled_elements(log_initial, log_transition, ll_tm, valid):
    """Time-major filter elements (M_t scaled to max 1, log scale), identity on padding."""
    k = log_transition.shape[0]
    logits = jnp.concatenate(
        [
            jnp.broadcast_to(log_initial + ll_tm[0], (1,) + ll_tm.shape[1:])[:, :, None, :]
            + jnp.zeros((k, 1)),
            log_transition + ll_tm[1:, :, None, :],
        ]
    )
    m = jnp.max(logits, axis=(-2, -1))
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    mats = jnp.exp(logits - m[..., None, None])
    eye = jnp.eye(k, dtype=mats.dtype)
    mats = jnp.where(valid[..., None, None], mats, eye)
    return mats, jnp.where(valid, m, 0.0)


def _parallel_filter(log_initial, log_transition, ll_tm, valid):
    mats, scales = _scaled_elements(log_initial, log_transition, ll_tm, valid)
    pm, ps = jax.lax.associative_scan(_scaled_matmul, (mats, scales))
    # Every row of M_0 is the same, so row 0 of a prefix product is the unnormalised alpha.
    alphas, logz = _normalise_log(_safe_log(pm[..., 0, :]))
    return alphas, logz + ps, mats


def _parallel_smoother(log_initial, log_transition, ll_tm, valid):
    alphas, logz, mats = _parallel_filter(log_initial, log_transition, ll_tm, valid)
    suffix, _ = jax.lax.associative_scan(
        lambda later, earlier: _scaled_matmul(earlier, later), (mats, jnp.zeros(mats.shape[:2])),
        reverse=True,
    )
    # beta_t = M_{t+1} ... M_{T-1} 1, and beta_{T-1} = 1.
    betas = jnp.concatenate([jnp.sum(suffix[1:], axis=-1), jnp.ones_like(alphas[:1])])
    gammas = alphas * betas
    gammas = gammas / jnp.sum(gammas, axis=-1, keepdims=True)
    gammas = jnp.where(valid[..., None], gammas, 0.0)
    xi = alphas[:-1, :, :, None] * mats[1:] * betas[1:, :, None, :]
    xi = xi / jnp.sum(xi, axis=(-2, -1), keepdims=True)
    counts = jnp.sum(jnp.where(valid[1:, :, None, None], xi, 0.0), axis=0)
    return logz[-1], gammas, counts


def _maxplus(a, b):
    return jnp.max(a[..., :, :, None] + b[..., None, :, :], axis=-2)


def _compose(f: Array, g: Array) -> Array:
    """Maps as index arrays [..., K]: (f o g)[s] = f[g[s]], written as a one-hot sum because
    XLA compiles gathers inside a deep associative scan very slowly."""
    hits = g[..., :, None] == jnp.arange(f.shape[-1], dtype=g.dtype)
    return jnp.sum(jnp.where(hits, f[..., None, :], 0), axis=-1)


def _parallel_viterbi(log_initial, log_transition, ll_tm, valid):
    k = log_transition.shape[0]
    first = jnp.broadcast_to((log_initial + ll_tm[0])[:, None, :], ll_tm.shape[1:2] + (k, k))
    elems = jnp.concatenate([first[None], log_transition + ll_tm[1:, :, None, :]])
    log_eye = jnp.where(jnp.eye(k, dtype=bool), 0.0, -jnp.inf).astype(elems.dtype)
    elems = jnp.where(valid[..., None, None], elems, log_eye)
    deltas = jax.lax.associative_scan(_maxplus, elems)[..., 0, :]  # [T, B, K]
    # Back-pointers of every step at once, then the path by composing them as maps
    # (state at t+1 -> state at t) in a reverse associative scan: a consistent path, with
    # the sequential tie-breaking, instead of the argmax of max-marginals.
    identity = jnp.arange(k, dtype=jnp.int32)
    ptrs = jnp.argmax(deltas[:-1, :, :, None] + log_transition, axis=2).astype(jnp.int32)
    ptrs = jnp.where(valid[1:, :, None], ptrs, identity)
    maps = jax.lax.associative_scan(lambda later, earlier: _compose(earlier, later), ptrs, reverse=True)
    last = jnp.argmax(deltas[-1], axis=-1).astype(jnp.int32)
    states = _compose(maps, last[None, :, None])[..., 0]
    states = jnp.concatenate([states, last[None]])
    return jnp.where(valid, states, -1), jnp.max(deltas[-1], axis=-1)


# ----------------------------------------------------------------------------- public


def _check_potentials(log_initial, log_transition, log_likelihoods, lengths=None, **_) -> None:
    k = checks.check_array("log_initial", log_initial, ("K",), kinds=checks.FLOAT, finite=False).shape[0]
    checks.check_array("log_transition", log_transition, (k, k), kinds=checks.FLOAT, finite=False)
    batched = np.ndim(log_likelihoods) != 2
    ll = checks.check_array("log_likelihoods", log_likelihoods, ("B", "T", k) if batched else ("T", k),
                            kinds=checks.FLOAT, finite=False)
    for name, value in (("log_initial", log_initial), ("log_transition", log_transition), ("log_likelihoods", ll)):
        checks.check_finite_tree(name, value, allow_neg_inf=True)
    if lengths is None or not batched:  # lengths with unbatched input: refused by _batch while tracing
        return
    steps = checks.check_array("lengths", lengths, (ll.shape[0],), kinds=checks.INTEGER, nonempty=False)
    if steps.size and (steps.min() < 1 or steps.max() > ll.shape[1]):
        raise ValueError(f"lengths must lie in [1, T = {ll.shape[1]}], got range [{steps.min()}, {steps.max()}]")




@checks.validated(_check_potentials)
@functools.partial(jax.jit, static_argnames=("parallel", "unroll"))
def hmm_filter(
    log_initial: Array,
    log_transition: Array,
    log_likelihoods: Array,
    lengths: Array | None = None,
    *,
    parallel: bool = False,
    unroll: int = 1,
) -> FilterResult:
    """Forward filtering. Shapes in the module docstring; returns FilterResult:
    log_likelihood [B] and filtered_probs [B, T, K] (zero on padding)."""
    ll, lengths, unbatched = _batch(log_likelihoods, lengths)
    ll_tm, valid = _time_major(ll, lengths)
    if parallel:
        alphas, logz, _ = _parallel_filter(log_initial, log_transition, ll_tm, valid)
        loglik = logz[-1]
    else:
        alphas, logcs, _ = _forward(log_initial, log_transition, ll_tm, valid, unroll)
        loglik = jnp.sum(logcs, axis=0)
    alphas = jnp.where(valid[..., None], alphas, 0.0)
    return _unbatch(FilterResult(loglik, jnp.swapaxes(alphas, 0, 1)), unbatched)


@checks.validated(_check_potentials)
@functools.partial(jax.jit, static_argnames=("unroll",))
def hmm_log_likelihood(
    log_initial: Array,
    log_transition: Array,
    log_likelihoods: Array,
    lengths: Array | None = None,
    *,
    unroll: int = 1,
) -> Array:
    """log p(y) only, [B] (or a scalar unbatched): the forward pass without its outputs."""
    ll, lengths, unbatched = _batch(log_likelihoods, lengths)
    ll_tm, valid = _time_major(ll, lengths)
    _, logcs, _ = _forward(log_initial, log_transition, ll_tm, valid, unroll, filters=False)
    loglik = jnp.sum(logcs, axis=0)
    return loglik[0] if unbatched else loglik


@checks.validated(_check_potentials)
@functools.partial(jax.jit, static_argnames=("parallel", "unroll"))
def hmm_smoother(
    log_initial: Array,
    log_transition: Array,
    log_likelihoods: Array,
    lengths: Array | None = None,
    *,
    parallel: bool = False,
    unroll: int = 1,
) -> SmootherResult:
    """Forward-backward. Returns SmootherResult: log_likelihood [B], posteriors [B, T, K],
    transition_counts [B, K, K] (sums of the pairwise posteriors over t)."""
    ll, lengths, unbatched = _batch(log_likelihoods, lengths)
    ll_tm, valid = _time_major(ll, lengths)
    if parallel:
        loglik, gammas, counts = _parallel_smoother(log_initial, log_transition, ll_tm, valid)
    else:
        alphas, logcs, preds = _forward(log_initial, log_transition, ll_tm, valid, unroll)
        gammas, ratios = _backward_posteriors(log_transition, alphas, preds, valid, unroll)
        counts = jnp.exp(log_transition) * jnp.einsum("tbi,tbj->bij", alphas[:-1], ratios)
        loglik = jnp.sum(logcs, axis=0)
    return _unbatch(SmootherResult(loglik, jnp.swapaxes(gammas, 0, 1), counts), unbatched)


@checks.validated(_check_potentials)
@functools.partial(jax.jit, static_argnames=("unroll",))
def hmm_pairwise_posteriors(
    log_initial: Array,
    log_transition: Array,
    log_likelihoods: Array,
    lengths: Array | None = None,
    *,
    unroll: int = 1,
) -> Array:
    """[B, T-1, K, K] p(x_t = i, x_{t+1} = j | y) (zero where t + 1 is padding); memory
    O(B T K^2), so EM uses the summed `hmm_smoother(...).transition_counts` instead."""
    ll, lengths, unbatched = _batch(log_likelihoods, lengths)
    ll_tm, valid = _time_major(ll, lengths)
    alphas, _, preds = _forward(log_initial, log_transition, ll_tm, valid, unroll)
    _, ratios = _backward_posteriors(log_transition, alphas, preds, valid, unroll)
    xi = alphas[:-1, :, :, None] * jnp.exp(log_transition) * ratios[:, :, None, :]
    xi = jnp.swapaxes(xi, 0, 1)
    return xi[0] if unbatched else xi


@checks.validated(_check_potentials)
@functools.partial(jax.jit, static_argnames=("parallel", "unroll"))
def hmm_viterbi(
    log_initial: Array,
    log_transition: Array,
    log_likelihoods: Array,
    lengths: Array | None = None,
    *,
    parallel: bool = False,
    unroll: int = 1,
) -> ViterbiResult:
    """Most probable state path. Returns ViterbiResult: states [B, T] (-1 on padding),
    log_prob [B] = log p(x*, y)."""
    ll, lengths, unbatched = _batch(log_likelihoods, lengths)
    ll_tm, valid = _time_major(ll, lengths)
    if parallel:
        states, log_prob = _parallel_viterbi(log_initial, log_transition, ll_tm, valid)
    else:
        states, log_prob = _viterbi_sequential(log_initial, log_transition, ll_tm, valid, unroll)
    return _unbatch(ViterbiResult(jnp.swapaxes(states, 0, 1), log_prob), unbatched)


@checks.validated(_check_potentials)
@functools.partial(jax.jit, static_argnames=("unroll",))
def hmm_posterior_sample(
    key: Array,
    log_initial: Array,
    log_transition: Array,
    log_likelihoods: Array,
    lengths: Array | None = None,
    *,
    unroll: int = 1,
) -> Array:
    """Forward-filtering backward-sampling: one exact draw x ~ p(x | y) per sequence,
    [B, T] int32 (-1 on padding). x_{L-1} ~ alpha_{L-1}, x_t ~ alpha_t(i) A[i, x_{t+1}]."""
    ll, lengths, unbatched = _batch(log_likelihoods, lengths)
    ll_tm, valid = _time_major(ll, lengths)
    alphas, _, _ = _forward(log_initial, log_transition, ll_tm, valid, unroll)
    last = (jnp.arange(ll_tm.shape[0])[:, None] == lengths[None, :] - 1)
    gumbels = jax.random.gumbel(key, alphas.shape, alphas.dtype)
    trans = jnp.exp(log_transition)

    def step(next_state, inputs):
        alpha_t, is_last, valid_t, g = inputs
        # Row next_state of A^T is the column A[:, x_{t+1}] for each sequence.
        weights = jnp.where(is_last[:, None], alpha_t, alpha_t * trans.T[next_state])
        state = jnp.argmax(_safe_log(weights) + g, axis=-1).astype(jnp.int32)
        state = jnp.where(valid_t, state, -1)
        return jnp.where(valid_t, state, next_state), state

    init = jnp.zeros(alphas.shape[1], jnp.int32)
    _, states = jax.lax.scan(step, init, (alphas, last, valid, gumbels), reverse=True,
                             unroll=unroll)
    states = jnp.swapaxes(states, 0, 1)
    return states[0] if unbatched else states
