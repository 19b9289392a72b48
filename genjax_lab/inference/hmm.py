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
alpha_t = p(x_t | y_{0:t}), and each step multiplies pred_t = alpha_{t-1} A by the
likelihoods scaled to a maximum of one, exp(ll_t - max ll_t) (computed for all steps at
once, outside the sequential loop), adding the log of the normaliser to the log-likelihood;
the per-step log normalisers are summed after the scan (a tree reduction, not a running
float sum that drifts over long sequences). The smoother runs backwards on posteriors:
  gamma_t = alpha_t * (A (gamma_{t+1} / pred_{t+1})),
  xi_t(i, j) = alpha_t(i) A_ij gamma_{t+1}(j) / pred_{t+1}(j),
which needs no separately scaled beta. Viterbi runs in log space (max-plus).
Fixed-lag smoothing takes the same backward step, given only y_{0:t}, from each filter
alpha_t back lag steps: a scan over the lag, each iteration vectorised over every t, so
its estimates p(x_{t-lag} | y_{0:t}) stay normalised and need no scaling either.

Numerics. In probability space a state whose probability falls below the float range
(1e-38 in float32: ~87 nats below the best state) is flushed to zero and never comes back.
That is harmless when every column of A has min / max >= 1e-6 (a flushed state's future is
then at most 1e6 times anyone's, so the relative error it leaves is ~1e-12 K per step; see
`_scaled_is_exact`), and there the fast recursions run. With structural zeros (a
left-to-right chain) the flushed state may be the only way to a later observation, so the
same recursions run in log space instead: log alpha is carried, and each prediction
log sum_i exp(log alpha_{t-1}(i) + log A_ij) is shifted by its own largest term per column
j, so no state is lost however far (1,000 nats, or more) it lies below the others. The
choice is one `lax.cond` per call (under vmap both run: a batched cond is a select);
`hmm_smoother_with_passes` runs one kind of pass alone, the scaled ones flagging when they
were not exact, for programs that compile only what they need (a first EM fit). Either
way float32 log-likelihoods agree with a float64 log-space reference to 1e-5 relative (or
1e-3 nats) and posteriors to 1e-4 (tests/test_hmm_numerics.py, a property test over
left-to-right and ergodic chains with 1,000-nat outliers). Outputs follow the inputs' dtype
(float64 under jax_enable_x64).

Parallel versions (`parallel=True`) use `jax.lax.associative_scan` over time, O(log T)
depth (Sarkka & Garcia-Fernandez 2021): the filter composes the matrices
M_t(i, j) = A_ij p(y_t | x_t = j) (M_0 has rows pi_j p(y_0 | j)), kept as (matrix scaled to
max 1, log scale) where A passes the same test, else as log matrices composed by a
log-sum-exp matrix product; the smoother multiplies the prefix products with reversed suffix
products (backward messages); Viterbi composes the same elements in the max-plus semiring
for the prefix maxima delta_t, takes every back-pointer at once, and backtracks by composing
the back-pointer maps in a reverse associative scan. Padded steps are identity elements.
Parallel work is O(T K^3) against O(T K^2): the win is depth, on accelerators or long
single sequences.
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


class FixedLagResult(NamedTuple):
    """Fixed-lag smoothing with lag L (`hmm_fixed_lag_smoother`), t = 0 .. T - 1 indexing
    the newest observation y_t:
      log_likelihood [B]: log p(y_{0:n-1}) of each whole sequence (n its length);
      filtered_probs [B, T, K]: p(x_t | y_{0:t}), the estimate at lag 0;
      smoothed_probs [B, T, K]: p(x_{t-L} | y_{0:t}), the estimate of the state L steps
        back once y_t has arrived; zero for t < L (there is no state x_{t-L});
      window_probs [B, T, L + 1, K] or None (unless asked for): at [b, t, i],
        p(x_{t-L+i} | y_{0:t}), every state in the window from x_{t-L} (i = 0, as
        smoothed_probs) to x_t (i = L, as filtered_probs); zero where t - L + i < 0.
    Every output is zero on padding (t >= n)."""

    log_likelihood: Array
    filtered_probs: Array
    smoothed_probs: Array
    window_probs: Array | None


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


def _log_normalise(logits: Array) -> tuple[Array, Array]:
    """(logits - log sum exp(logits), log sum exp(logits)) over the last axis; an all -inf
    row stays all -inf (not NaN)."""
    m = jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    logc = _safe_log(jnp.sum(jnp.exp(logits - m), axis=-1, keepdims=True)) + m
    finite = jnp.isfinite(logc)
    return jnp.where(finite, logits - jnp.where(finite, logc, 0.0), -jnp.inf), logc[..., 0]


def _log_sum_exp(terms: Array) -> Array:
    """log sum exp over the last axis, each row shifted by its own largest term (so no term
    is lost however far below the others it lies); a row with no finite term gives -inf with
    a zero gradient. The last axis is the contiguous one: XLA vectorises it best."""
    m = jax.lax.stop_gradient(jnp.max(terms, axis=-1, keepdims=True))
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    return _safe_log(jnp.sum(jnp.exp(terms - m), axis=-1)) + m[..., 0]


def _log_matmul(x: Array, y: Array) -> Array:
    """log(exp(x) @ exp(y)) for [..., I, K] and [..., K, J], exact in the sense of
    `_log_sum_exp` for every output entry."""
    return _log_sum_exp(x[..., :, None, :] + jnp.swapaxes(y, -1, -2)[..., None, :, :])


def _scaled_is_exact(log_transition: Array) -> Array:
    """Whether the fast recursions in probability space are exact to float rounding for this
    transition matrix: every column's smallest entry is at least _MIN_COLUMN_RATIO of its
    largest (module docstring). A scalar bool; False where a column mixes zeros and nonzeros
    (structural zeros: a state that some states can enter and others cannot)."""
    trans = jnp.exp(log_transition)
    top = jnp.max(trans, axis=0)
    ratio = jnp.where(top > 0, jnp.min(trans, axis=0) / jnp.where(top > 0, top, 1.0), 1.0)
    return jnp.min(ratio) >= _MIN_COLUMN_RATIO


# Probability-space recursions flush to zero what falls below the float range. A state
# flushed at step t (its filtered probability at most eps_t) changes p(y) by at most
# eps_t * beta_t(j) / sum_i alpha_t(i) beta_t(i) relative, and when every column of A has
# min / max >= r, beta_t(j) <= beta_t(i) / r for all i, j, so by at most eps_t / r. With
# r >= 1e-6 and normalisers >= 1e-20, eps_t <= K * 1e-38 / 1e-20 and the bound is ~1e-12 K
# per step: negligible. Otherwise (structural zeros, left-to-right chains) a flushed state
# may be the only way to a later observation, and the log-space recursions run instead.
_MIN_COLUMN_RATIO = 1e-6
_MIN_NORMALISER = 1e-20
# The sequential smoother's choices of passes (`hmm_smoother_with_passes`).
PASSES = ("auto", "scaled", "log")


# ------------------------------------------------------------------------- sequential


def _forward_scaled(log_initial, log_transition, ll_tm, valid, unroll, filters: bool = True):
    """The fast forward pass in probability space, time-major: (alphas [T, B, K] or None,
    log normalisers [T, B], predictions alpha_t A [T - 1, B, K] or None, exact) where exact
    says it lost nothing (`_scaled_is_exact` and every real step's normaliser
    >= _MIN_NORMALISER). It multiplies each prediction by the likelihoods scaled to a
    maximum of 1, exp(ll_t - max ll_t), computed for all steps at once outside the
    sequential loop, which therefore holds no exp or log; filters=False skips writing the
    alphas and predictions."""
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
    exact = _scaled_is_exact(log_transition) & jnp.all(totals >= _MIN_NORMALISER)
    logcs = jnp.where(valid, _safe_log(totals) + peak, 0.0)
    return (jnp.concatenate([alpha0[None], alphas]) if filters else None), logcs, preds, exact


def _fast_forward(log_initial, log_transition, ll_tm, valid, unroll, filters: bool = True):
    """`_forward_scaled` where `_scaled_is_exact`, else zeros with exact=False: a chain with
    structural zeros goes straight to the log-space pass (outside vmap, where a batched cond
    runs both branches anyway)."""
    args = (log_initial, log_transition, ll_tm, valid, unroll, filters)

    def skipped():
        # Zeros like the inputs, so they carry the same sharding as the pass's outputs.
        zeros = jnp.zeros_like(ll_tm, dtype=jnp.result_type(log_initial, log_transition, ll_tm))
        kept = (zeros, zeros[1:]) if filters else (None, None)
        return kept[0], zeros[..., 0], kept[1], jnp.zeros((), bool)

    return jax.lax.cond(_scaled_is_exact(log_transition), lambda: _forward_scaled(*args), skipped)


def _forward_log(log_initial, log_transition, ll_tm, valid, unroll, filters: bool = True):
    """The forward pass in log space, exact for any model: (log alphas [T, B, K], log
    normalisers [T, B], log predictions [T - 1, B, K]); the first and last None when
    filters=False. Each prediction log sum_i exp(log alpha_{t-1}(i) + log A_ij) is shifted
    per column j, so a state far below the others (or below the float range) is kept."""
    la0, logc0 = _log_normalise(log_initial + ll_tm[0])

    def step(la, inputs):
        ll_t, valid_t = inputs
        log_pred = _log_sum_exp(la[:, None, :] + log_transition.T)
        la_t, logc_t = _log_normalise(log_pred + ll_t)
        # Padded steps keep the last real filter, so the final carry is alpha_{L-1}.
        la = jnp.where(valid_t[:, None], la_t, la)
        kept = (la_t, log_pred) if filters else (None, None)
        return la, (*kept, jnp.where(valid_t, logc_t, 0.0))

    _, (las, log_preds, logcs) = jax.lax.scan(step, la0, (ll_tm[1:], valid[1:]), unroll=unroll)
    logcs = jnp.concatenate([jnp.where(valid[0], logc0, 0.0)[None], logcs])
    return (jnp.concatenate([la0[None], las]) if filters else None), logcs, log_preds


def _filter(log_initial, log_transition, ll_tm, valid, unroll):
    """(alphas [T, B, K], log normalisers [T, B]): the fast pass where it is exact, else the
    log-space pass. Under vmap both run (a batched cond is a select)."""
    alphas, logcs, _, exact = _fast_forward(log_initial, log_transition, ll_tm, valid, unroll)

    def in_log_space():
        las, logcs_, _ = _forward_log(log_initial, log_transition, ll_tm, valid, unroll)
        return jnp.exp(las), logcs_

    return jax.lax.cond(exact, lambda: (alphas, logcs), in_log_space)


def _log_likelihood(log_initial, log_transition, ll_tm, valid, unroll):
    potentials = (log_initial, log_transition, ll_tm, valid, unroll)
    _, logcs, _, exact = _fast_forward(*potentials, filters=False)
    logcs = jax.lax.cond(exact, lambda: logcs, lambda: _forward_log(*potentials, filters=False)[1])
    return jnp.sum(logcs, axis=0)


def _normalised(gamma):
    # The exact value sums to one; rounding would otherwise accumulate. An all-zero row
    # (a padded step after impossible observations) stays zero.
    total = jnp.sum(gamma, axis=-1, keepdims=True)
    return gamma / jnp.where(total > 0, total, 1.0)


def _backward_step(gamma_next, alpha_t, inv_pred_next, trans_transposed):
    """One smoothing step backwards on posteriors given the same observations y_{0:s}:
    (alpha_t * (r A^T), r) with r = gamma_{t+1} / pred_{t+1}, the unnormalised
    p(x_t | y_{0:s}) from p(x_{t+1} | y_{0:s}). Any leading axes; a zero alpha_t or
    1 / pred_{t+1} gives zero."""
    ratio = gamma_next * inv_pred_next
    return alpha_t * (ratio @ trans_transposed), ratio


def _log_backward_step(lg_next, la_t, log_pred_next, log_transition):
    """`_backward_step` in log space: (log alpha_t + log (r A^T), log r), where a -inf
    log prediction (a state that cannot occur, or a step to skip) gives log r = -inf."""
    usable = jnp.isfinite(log_pred_next)
    log_ratio = jnp.where(usable, lg_next - jnp.where(usable, log_pred_next, 0.0), -jnp.inf)
    return la_t + _log_sum_exp(log_transition + log_ratio[..., None, :]), log_ratio


def _backward_posteriors(log_transition, alphas, preds, valid, unroll):
    """Backward pass on posteriors in probability space, time-major, from the fast forward
    pass's filters and predictions. Returns gamma [T, B, K] (zero on padding) and r_{t+1} =
    gamma_{t+1} / pred_{t+1} [T - 1, B, K] (zero where step t + 1 is padding), so that the
    pairwise posterior is p(x_t = i, x_{t+1} = j | y) = alpha_t[i] A[i, j] r_{t+1}[j]."""
    trans_transposed = jnp.exp(log_transition).T
    valid_next = valid[1:]
    # 1 / pred_{t+1} for every step at once, outside the sequential loop; zero on padding and
    # where the prediction is exactly zero (then so is gamma_{t+1}).
    usable = valid_next[..., None] & (preds > 0)
    inv_preds = jnp.where(usable, 1.0 / jnp.where(usable, preds, 1.0), 0.0)

    def step(gamma_next, inputs):
        alpha_t, inv_pred_next, valid_n = inputs
        gamma, ratio = _backward_step(gamma_next, alpha_t, inv_pred_next, trans_transposed)
        gamma = _normalised(jnp.where(valid_n[:, None], gamma, alpha_t))
        return gamma, (gamma, ratio)

    last = _normalised(alphas[-1])
    _, (gammas, ratios) = jax.lax.scan(
        step, last, (alphas[:-1], inv_preds, valid_next), reverse=True, unroll=unroll
    )
    gammas = jnp.concatenate([gammas, last[None]])
    return jnp.where(valid[..., None], gammas, 0.0), ratios


def _backward_log(log_transition, las, log_preds, valid, unroll):
    """`_backward_posteriors` in log space, from `_forward_log`'s outputs: (log gamma
    [T, B, K], log r_{t+1} [T - 1, B, K]), -inf on padding."""
    valid_next = valid[1:]

    def step(lg_next, inputs):
        la_t, log_pred_next, valid_n = inputs
        log_pred_next = jnp.where(valid_n[:, None], log_pred_next, -jnp.inf)
        lg, log_ratio = _log_backward_step(lg_next, la_t, log_pred_next, log_transition)
        lg = _log_normalise(jnp.where(valid_n[:, None], lg, la_t))[0]
        return lg, (lg, log_ratio)

    last = _log_normalise(las[-1])[0]
    _, (lgs, log_ratios) = jax.lax.scan(
        step, last, (las[:-1], log_preds, valid_next), reverse=True, unroll=unroll
    )
    lgs = jnp.concatenate([lgs, last[None]])
    return jnp.where(valid[..., None], lgs, -jnp.inf), log_ratios


def _smooth(log_initial, log_transition, ll_tm, valid, unroll, pairwise: bool, passes="auto"):
    """Forward-backward: (log-likelihood [B], gamma [T, B, K], the pairwise posteriors
    [T - 1, B, K, K] if pairwise else their sums over t, the transition counts [B, K, K],
    exact). passes (static): "auto" runs the probability-space passes where they are exact,
    else the log-space ones (one lax.cond); "log" only the log-space passes; "scaled" only
    the probability-space ones. exact is False only for "scaled" where they were not exact:
    then the results are not to be used."""
    trans = jnp.exp(log_transition)

    def scaled(alphas, logcs, preds):
        gammas, ratios = _backward_posteriors(log_transition, alphas, preds, valid, unroll)
        if pairwise:
            return logcs, gammas, alphas[:-1, :, :, None] * trans * ratios[:, :, None, :]
        # Batch axis first: the einsum then keeps its sharding, as the other branch's sum does
        # (both branches must give the same type).
        outer = jnp.einsum(
            "bti,btj->bij", jnp.swapaxes(alphas[:-1], 0, 1), jnp.swapaxes(ratios, 0, 1)
        )
        return logcs, gammas, trans * outer

    def in_log_space():
        las, logcs_, log_preds = _forward_log(log_initial, log_transition, ll_tm, valid, unroll)
        lgs, log_ratios = _backward_log(log_transition, las, log_preds, valid, unroll)
        xi = jnp.exp(las[:-1, :, :, None] + log_transition + log_ratios[:, :, None, :])
        return logcs_, jnp.exp(lgs), xi if pairwise else jnp.sum(xi, axis=0)

    if passes == "log":
        logcs, gammas, xi = in_log_space()
        return jnp.sum(logcs, axis=0), gammas, xi, jnp.ones((), bool)
    if passes == "scaled":
        alphas, logcs, preds, exact = _forward_scaled(
            log_initial, log_transition, ll_tm, valid, unroll
        )
        logcs, gammas, xi = scaled(alphas, logcs, preds)
        return jnp.sum(logcs, axis=0), gammas, xi, exact
    if passes != "auto":
        raise ValueError(f"passes must be one of {PASSES}, got {passes!r}")
    alphas, logcs, preds, exact = _fast_forward(log_initial, log_transition, ll_tm, valid, unroll)
    logcs, gammas, xi = jax.lax.cond(exact, lambda: scaled(alphas, logcs, preds), in_log_space)
    return jnp.sum(logcs, axis=0), gammas, xi, jnp.ones((), bool)


def _shifted(x: Array, fill: float) -> Array:
    """x one step later along time (axis 0): [fill, x_0, ..., x_{T-2}]."""
    return jnp.concatenate([jnp.full_like(x[:1], fill), x[:-1]])


def _fixed_lag(log_initial, log_transition, ll_tm, valid, unroll, lag: int, window: bool):
    """Fixed-lag smoothing, time-major: (log normalisers [T, B], filters alpha_t [T, B, K],
    p(x_{t-lag} | y_{0:t}) [T, B, K] (zero for t < lag), and when window the estimates
    p(x_{t-j} | y_{0:t}) for offsets j = 1 .. steps as [steps, T, B, K], else None).

    Every window end t at once: starting from alpha_t, each of `steps` iterations takes all
    the estimates p(x_{t-j} | y_{0:t}) one state back (`_backward_step`) with the filter
    alpha_{t-j-1} and the prediction pred_{t-j}. Those live in arrays shifted one step along
    time per iteration, so an end t <= j meets a zero filter (-inf in log space) and its
    estimate becomes zero: x_{t-j-1} does not exist. A scan over the lag, not over time:
    O(steps T K^2) work, depth steps. Probability space where `_fast_forward` is exact,
    else log space, as `_smooth` chooses."""
    num_steps = ll_tm.shape[0]
    reachable = lag < num_steps
    # With lag >= T no state is lag steps back: only the window needs the steps.
    steps = lag if reachable else (num_steps - 1 if window else 0)
    alphas, logcs, preds, exact = _fast_forward(log_initial, log_transition, ll_tm, valid, unroll)

    def backwards(filters, later, fill, step):
        """`steps` iterations from the filters [T, B, K]; later[t] is pred_t as the step
        takes it (1 / pred_t, or log pred_t), shifted along time as the filters are."""

        def body(carry, _):
            estimates, earlier, later = carry
            estimates = step(estimates, earlier, later)
            carry = (estimates, _shifted(earlier, fill), _shifted(later, fill))
            return carry, estimates if window else None

        init = (filters, _shifted(filters, fill), later)
        (estimates, _, _), offsets = jax.lax.scan(body, init, length=steps, unroll=unroll)
        return estimates if reachable else jnp.full_like(estimates, fill), offsets

    def scaled():
        trans_transposed = jnp.exp(log_transition).T
        inv_preds = jnp.where(preds > 0, 1.0 / jnp.where(preds > 0, preds, 1.0), 0.0)
        lagged, offsets = backwards(
            alphas,
            jnp.concatenate([jnp.zeros_like(alphas[:1]), inv_preds]),
            0.0,
            lambda g, a, inv: _normalised(_backward_step(g, a, inv, trans_transposed)[0]),
        )
        return logcs, alphas, lagged, offsets

    def in_log_space():
        las, logcs_, log_preds = _forward_log(log_initial, log_transition, ll_tm, valid, unroll)
        lagged, offsets = backwards(
            las,
            jnp.concatenate([jnp.full_like(las[:1], -jnp.inf), log_preds]),
            -jnp.inf,
            lambda lg, la, lp: _log_normalise(_log_backward_step(lg, la, lp, log_transition)[0])[0],
        )
        return logcs_, jnp.exp(las), jnp.exp(lagged), None if offsets is None else jnp.exp(offsets)

    return jax.lax.cond(exact, scaled, in_log_space)


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


def _log_elements(log_initial, log_transition, ll_tm, valid):
    """Time-major filter elements log M_t [T, B, K, K], log identity on padding."""
    k = log_transition.shape[0]
    first = jnp.broadcast_to((log_initial + ll_tm[0])[:, None, :], ll_tm.shape[1:2] + (k, k))
    logits = jnp.concatenate([first[None], log_transition + ll_tm[1:, :, None, :]])
    log_eye = jnp.where(jnp.eye(k, dtype=bool), 0.0, -jnp.inf).astype(logits.dtype)
    return jnp.where(valid[..., None, None], logits, log_eye)


def _parallel_log_messages(log_initial, log_transition, ll_tm, valid, backward: bool):
    """Prefix products of the elements (log alpha_t unnormalised, [T, B, K]) and, when
    backward, the suffix products' row sums (log beta_t, [T, B, K]), as (log matrix, log
    scale) pairs: scaled to max 1 where `_scaled_is_exact` says that loses nothing,
    else in log space. Also the elements themselves, in log space."""
    logits = _log_elements(log_initial, log_transition, ll_tm, valid)

    def scaled():
        m = jnp.max(logits, axis=(-2, -1))
        m = jnp.where(jnp.isfinite(m), m, 0.0)
        elems = (jnp.exp(logits - m[..., None, None]), m)
        pm, ps = jax.lax.associative_scan(_scaled_matmul, elems)
        la = _safe_log(pm[..., 0, :]) + ps[..., None]
        if not backward:
            return la, None
        sm, ss = jax.lax.associative_scan(
            lambda late, early: _scaled_matmul(early, late), elems, reverse=True
        )
        return la, _safe_log(jnp.sum(sm, axis=-1)) + ss[..., None]

    def in_log_space():
        la = jax.lax.associative_scan(_log_matmul, logits)[..., 0, :]
        if not backward:
            return la, None
        suffix = jax.lax.associative_scan(
            lambda late, early: _log_matmul(early, late), logits, reverse=True
        )
        return la, jax.nn.logsumexp(suffix, axis=-1)

    la, lb = jax.lax.cond(_scaled_is_exact(log_transition), scaled, in_log_space)
    return la, lb, logits


def _parallel_filter(log_initial, log_transition, ll_tm, valid):
    la, _, _ = _parallel_log_messages(log_initial, log_transition, ll_tm, valid, backward=False)
    # Every row of M_0 is the same, so row 0 of a prefix product is the unnormalised alpha.
    alphas, logz = _normalise_log(la)
    return alphas, logz


def _parallel_smoother(log_initial, log_transition, ll_tm, valid):
    la, lb_suffix, logits = _parallel_log_messages(
        log_initial, log_transition, ll_tm, valid, backward=True
    )
    # beta_t = M_{t+1} ... M_{T-1} 1, and beta_{T-1} = 1.
    lb = jnp.concatenate([lb_suffix[1:], jnp.zeros_like(la[:1])])
    gammas = _log_normalise(la + lb)[0]
    gammas = jnp.where(valid[..., None], jnp.exp(gammas), 0.0)
    logxi = la[:-1, :, :, None] + logits[1:] + lb[1:, :, None, :]
    b, k = logxi.shape[1], logxi.shape[-1]
    logxi = _log_normalise(logxi.reshape(-1, b, k * k))[0].reshape(logxi.shape)
    counts = jnp.sum(jnp.where(valid[1:, :, None, None], jnp.exp(logxi), 0.0), axis=0)
    return _normalise_log(la[-1])[1], gammas, counts


def _maxplus(a, b):
    return jnp.max(a[..., :, :, None] + b[..., None, :, :], axis=-2)


def _compose(f: Array, g: Array) -> Array:
    """Maps as index arrays [..., K]: (f o g)[s] = f[g[s]], written as a one-hot sum because
    XLA compiles gathers inside a deep associative scan very slowly. The sum is taken in
    f's dtype: jnp.sum would widen int32 to int64 under x64."""
    hits = g[..., :, None] == jnp.arange(f.shape[-1], dtype=g.dtype)
    return jnp.sum(jnp.where(hits, f[..., None, :], 0), axis=-1, dtype=f.dtype)


def _parallel_viterbi(log_initial, log_transition, ll_tm, valid):
    k = log_transition.shape[0]
    elems = _log_elements(log_initial, log_transition, ll_tm, valid)
    deltas = jax.lax.associative_scan(_maxplus, elems)[..., 0, :]  # [T, B, K]
    # Back-pointers of every step at once, then the path by composing them as maps
    # (state at t+1 -> state at t) in a reverse associative scan: a consistent path, with
    # the sequential tie-breaking, instead of the argmax of max-marginals.
    identity = jnp.arange(k, dtype=jnp.int32)
    ptrs = jnp.argmax(deltas[:-1, :, :, None] + log_transition, axis=2).astype(jnp.int32)
    ptrs = jnp.where(valid[1:, :, None], ptrs, identity)
    maps = jax.lax.associative_scan(
        lambda later, earlier: _compose(earlier, later), ptrs, reverse=True
    )
    last = jnp.argmax(deltas[-1], axis=-1).astype(jnp.int32)
    states = _compose(maps, last[None, :, None])[..., 0]
    states = jnp.concatenate([states, last[None]])
    return jnp.where(valid, states, -1), jnp.max(deltas[-1], axis=-1)


# ----------------------------------------------------------------------------- public


def _check_potentials(log_initial, log_transition, log_likelihoods, lengths=None, **_) -> None:
    k = checks.check_array(
        "log_initial", log_initial, ("K",), kinds=checks.FLOAT, finite=False
    ).shape[0]
    checks.check_array("log_transition", log_transition, (k, k), kinds=checks.FLOAT, finite=False)
    batched = np.ndim(log_likelihoods) != 2
    ll = checks.check_array(
        "log_likelihoods",
        log_likelihoods,
        ("B", "T", k) if batched else ("T", k),
        kinds=checks.FLOAT,
        finite=False,
    )
    for name, value in (
        ("log_initial", log_initial),
        ("log_transition", log_transition),
        ("log_likelihoods", ll),
    ):
        checks.check_finite_tree(name, value, allow_neg_inf=True)
    if (
        lengths is None or not batched
    ):  # lengths with unbatched input: refused by _batch while tracing
        return
    steps = checks.check_array(
        "lengths", lengths, (ll.shape[0],), kinds=checks.INTEGER, nonempty=False
    )
    if steps.size and (steps.min() < 1 or steps.max() > ll.shape[1]):
        raise ValueError(
            f"lengths must lie in [1, T = {ll.shape[1]}], got range [{steps.min()}, {steps.max()}]"
        )


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
        alphas, logz = _parallel_filter(log_initial, log_transition, ll_tm, valid)
        loglik = logz[-1]
    else:
        alphas, logcs = _filter(log_initial, log_transition, ll_tm, valid, unroll)
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
    loglik = _log_likelihood(log_initial, log_transition, ll_tm, valid, unroll)
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
        loglik, gammas, counts, _ = _smooth(
            log_initial, log_transition, ll_tm, valid, unroll, pairwise=False
        )
    return _unbatch(SmootherResult(loglik, jnp.swapaxes(gammas, 0, 1), counts), unbatched)


@checks.validated(_check_potentials)
@functools.partial(jax.jit, static_argnames=("passes", "unroll"))
def hmm_smoother_with_passes(
    log_initial: Array,
    log_transition: Array,
    log_likelihoods: Array,
    lengths: Array | None = None,
    *,
    passes: str = "auto",
    unroll: int = 1,
) -> tuple[SmootherResult, Array]:
    """The sequential `hmm_smoother` on the passes named, and whether its result is exact
    (a scalar bool). "auto" is `hmm_smoother` (always exact); "log" runs only the log-space
    passes (exact for any chain; what "auto" picks for chains with structural zeros);
    "scaled" only the probability-space ones, exact where "auto" would have picked them,
    and otherwise flagged False: the result is then not to be used. A program holding one
    kind of pass compiles in about half the time of one holding both (a first small EM fit
    is mostly compilation), so a caller can compile "scaled" (or "log" for a left-to-right
    chain) and fall back to "auto" only when the flag asks for it."""
    ll, lengths, unbatched = _batch(log_likelihoods, lengths)
    ll_tm, valid = _time_major(ll, lengths)
    loglik, gammas, counts, exact = _smooth(
        log_initial, log_transition, ll_tm, valid, unroll, pairwise=False, passes=passes
    )
    result = SmootherResult(loglik, jnp.swapaxes(gammas, 0, 1), counts)
    return _unbatch(result, unbatched), exact


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
    _, _, xi, _ = _smooth(log_initial, log_transition, ll_tm, valid, unroll, pairwise=True)
    xi = jnp.swapaxes(jnp.where(valid[1:, :, None, None], xi, 0.0), 0, 1)
    return xi[0] if unbatched else xi


def _check_fixed_lag(lag, **potentials) -> None:
    checks.check_count("lag", lag, minimum=0)
    _check_potentials(**potentials)


@checks.validated(_check_fixed_lag)
@functools.partial(jax.jit, static_argnames=("lag", "window", "unroll"))
def hmm_fixed_lag_smoother(
    log_initial: Array,
    log_transition: Array,
    log_likelihoods: Array,
    lag: int,
    lengths: Array | None = None,
    *,
    window: bool = False,
    unroll: int = 1,
) -> FixedLagResult:
    """Fixed-lag smoothing, the online smoother: at every step t, p(x_{t-lag} | y_{0:t})
    (and the filter p(x_t | y_{0:t})), each using only the observations up to t, so the
    estimate for x_s is final once y_{s+lag} has arrived. lag = 0 is the filter; at the
    last step t = n - 1, window_probs with lag >= n - 1 holds the full smoother
    p(x_s | y_{0:n-1}). Returns FixedLagResult (its docstring defines every output; shapes
    of the inputs in the module docstring). `lag` is a static int >= 0; window=True also
    returns the whole window, B T (lag + 1) K numbers. Cost: O(T K^2 min(lag, T)).

    dynamax's `hmm_fixed_lag_smoother(pi, A, log_likelihoods, window_size)` on one sequence
    is this with lag = window_size - 1 and window=True: its smoothed_probs [T, W, K] is
    window_probs, its filtered_probs[:, -1] is filtered_probs; its marginal_loglik[t] is
    log p(y_{t-lag:t} | y_{0:t-lag-1}), the last window's share of log_likelihood."""
    ll, lengths, unbatched = _batch(log_likelihoods, lengths)
    ll_tm, valid = _time_major(ll, lengths)
    logcs, filters, lagged, offsets = _fixed_lag(
        log_initial, log_transition, ll_tm, valid, unroll, lag, window
    )
    real = valid[..., None]
    filters = jnp.where(real, filters, 0.0)
    window_probs = None
    if window:
        # Window slot i holds offset lag - i: the offsets beyond T - 1 (no such state),
        # then the computed offsets from the farthest, then the filter.
        t, b, k = filters.shape
        missing = jnp.zeros((lag - offsets.shape[0], t, b, k), filters.dtype)
        stacked = jnp.concatenate([missing, offsets[::-1], filters[None]])
        window_probs = jnp.transpose(jnp.where(real, stacked, 0.0), (2, 1, 0, 3))
    result = FixedLagResult(
        jnp.sum(logcs, axis=0),
        jnp.swapaxes(filters, 0, 1),
        jnp.swapaxes(jnp.where(real, lagged, 0.0), 0, 1),
        window_probs,
    )
    return _unbatch(result, unbatched)


@checks.validated(_check_potentials)
@functools.partial(jax.jit, static_argnames=("parallel", "unroll"))
def hmm_marginal_mode(
    log_initial: Array,
    log_transition: Array,
    log_likelihoods: Array,
    lengths: Array | None = None,
    *,
    parallel: bool = False,
    unroll: int = 1,
) -> Array:
    """Posterior-marginal (MAP per step) decoding, hmmlearn's decode(algorithm="map"):
    argmax_k p(x_t = k | y) for every t, [B, T] int32, -1 on padding; ties go to the lowest
    state. Each step's state is the likeliest on its own, which minimises the expected
    number of wrong states, but the path as a whole may be impossible (a zero transition
    between consecutive modes), unlike `hmm_viterbi`'s. (dynamax's `hmm_posterior_mode` is
    Viterbi, not this.)"""
    ll, lengths, unbatched = _batch(log_likelihoods, lengths)
    posteriors = hmm_smoother(
        log_initial, log_transition, ll, lengths, parallel=parallel, unroll=unroll
    ).posteriors
    real = jnp.arange(ll.shape[1])[None, :] < lengths[:, None]
    states = jnp.where(real, jnp.argmax(posteriors, axis=-1).astype(jnp.int32), -1)
    return states[0] if unbatched else states


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
    # Log filters: a state below the float range may be the only way to x_{t+1}.
    alphas, _, _, exact = _fast_forward(log_initial, log_transition, ll_tm, valid, unroll)
    las = jax.lax.cond(
        exact,
        lambda: _safe_log(alphas),
        lambda: _forward_log(log_initial, log_transition, ll_tm, valid, unroll)[0],
    )
    last = jnp.arange(ll_tm.shape[0])[:, None] == lengths[None, :] - 1
    gumbels = jax.random.gumbel(key, las.shape, las.dtype)

    def step(next_state, inputs):
        la_t, is_last, valid_t, g = inputs
        # Row next_state of A^T is the column A[:, x_{t+1}] for each sequence.
        log_weights = jnp.where(is_last[:, None], la_t, la_t + log_transition.T[next_state])
        state = jnp.argmax(log_weights + g, axis=-1).astype(jnp.int32)
        state = jnp.where(valid_t, state, -1)
        return jnp.where(valid_t, state, next_state), state

    init = jnp.zeros(las.shape[1], jnp.int32)
    _, states = jax.lax.scan(step, init, (las, last, valid, gumbels), reverse=True, unroll=unroll)
    states = jnp.swapaxes(states, 0, 1)
    return states[0] if unbatched else states
