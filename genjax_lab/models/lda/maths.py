"""LDA's shared maths: the hyperparameters, the variational state, input checks, the
document E-step and the bound, and the categorical draw the sampler and Gibbs share.

Variational Bayes (Hoffman, Blei & Bach 2010). q(beta_k) = Dirichlet(lambda_k),
q(theta_d) = Dirichlet(gamma_d), q(z_dn) = phi_dn. E-step, per document, to a fixed point:
  phi_dwk  ∝ exp(E[log theta_dk] + E[log beta_kw]),   gamma_dk = alpha_k + sum_w c_dw phi_dwk,
each document until its mean |change in gamma| < tol, or max_doc_iter (a `lax.while_loop`
over the batch, then over its last few moving documents).

The E-step works in a shifted exp form: exp(E log theta - max_k) and exp(E log beta -
max_k per word) are <= 1 with a maximum of 1, so products do not overflow; the per-word
normaliser is floored at the smallest normal float32, so a word whose every topic weight
underflows (only when alpha < ~0.01) is dropped from gamma rather than producing NaN.
Bounds are computed with logsumexp.

Variational bound. ELBO(data) = sum_d [E log p(w_d, theta_d, z_d | beta) -
E log q(theta_d, z_d)] + sum_k [E log p(beta_k) - E log q(beta_k)], with q(theta) fitted by
the E-step: `document_bounds` is the first sum's terms, `topic_bound` the second sum.
"""

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from genjax_lab.core import checks
from genjax_lab.core.mesh import DATA_AXIS
from genjax_lab.data.text import BagOfWords

_TINY = float(jnp.finfo(jnp.float32).tiny)


@dataclasses.dataclass(frozen=True)
class LDAConfig:
    """Hyperparameters; hashable, so jitted functions take it as a static argument.

    alpha, eta: symmetric Dirichlet priors, default 1 / num_topics (Hoffman et al.,
    scikit-learn). learning_offset = tau0, learning_decay = kappa of the online rate.
    """

    num_topics: int
    vocab_size: int
    alpha: float | None = None
    eta: float | None = None
    learn_alpha: bool = False
    learn_eta: bool = False
    learning_offset: float = 1024.0
    learning_decay: float = 0.7
    max_doc_iter: int = 100
    mean_change_tol: float = 1e-3

    def __post_init__(self):
        checks.check_count("num_topics", self.num_topics)
        checks.check_count("vocab_size", self.vocab_size)
        for name in ("alpha", "eta"):
            if getattr(self, name) is not None:
                checks.check_positive(name, getattr(self, name))
        # (0.5, 1]: the Robbins-Monro conditions under which online VB converges
        checks.check_number(
            "learning_decay (kappa)", self.learning_decay, low=0.5, high=1.0, low_open=True
        )
        checks.check_number("learning_offset (tau0)", self.learning_offset, low=0.0)
        checks.check_count("max_doc_iter", self.max_doc_iter)
        checks.check_number("mean_change_tol", self.mean_change_tol, low=0.0)

    @property
    def alpha0(self) -> float:
        return 1.0 / self.num_topics if self.alpha is None else self.alpha

    @property
    def eta0(self) -> float:
        return 1.0 / self.num_topics if self.eta is None else self.eta


class VBState(NamedTuple):
    lam: jax.Array  # [K, V] variational Dirichlet parameters of the topics
    alpha: jax.Array  # [K]
    eta: jax.Array  # []
    step: jax.Array  # [] int32, updates done (t of the online rate is step + 1)


class EStep(NamedTuple):
    gamma: jax.Array  # [B, K] variational Dirichlet parameters of the documents
    sstats: jax.Array  # [K, V] mask-weighted expected topic-word counts
    iterations: jax.Array  # [] fixed-point iterations run
    bounds: jax.Array  # [B] `document_bounds` at the E-step's log_beta and its gamma (unmasked)


# ----------------------------------------------------------------------------- validation


def check_bags(ids, counts, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Host-side check of padded bags; returns them as int32 / float32 numpy arrays."""
    ids = checks.check_array("ids", ids, kinds=checks.INTEGER, nonempty=False)
    counts = checks.check_array("counts", counts, finite=False, nonempty=False)
    if ids.ndim != 2 or ids.shape != counts.shape:
        raise ValueError(f"ids and counts must both be [D, L], got {ids.shape} and {counts.shape}")
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        d = int(np.argwhere((ids < 0) | (ids >= vocab_size))[0, 0])
        raise ValueError(
            f"ids must be in [0, vocab_size={vocab_size}); document {d} has an id outside"
        )
    if not np.isfinite(counts).all() or (counts < 0).any():
        raise ValueError("counts must be finite and >= 0")
    return ids.astype(np.int32), counts.astype(np.float32)


Documents = BagOfWords | np.ndarray | scipy.sparse.sparray | scipy.sparse.spmatrix


def check_documents(
    x: Documents, vocab_size: int, name: str = "x"
) -> tuple[np.ndarray, np.ndarray]:
    """Checked (ids int32 [D, L], counts float32 [D, L]) of documents given as padded bags
    (BagOfWords), or as a documents x vocabulary count matrix [D, V]: a NumPy array or any
    scipy.sparse matrix or array (CSR, CSC, COO, ...: scikit-learn's CountVectorizer output),
    of any integer or floating dtype. A matrix must hold whole, non-negative word counts.

    A sparse matrix becomes the padded layout straight from its CSR indices, never dense: each
    row's words in increasing id order, L its most words in a row, as `text.from_dense` lays out
    the dense matrix, so both give the same bags and the verbs the same numbers.
    """
    if isinstance(x, BagOfWords):
        return check_bags(x.ids, x.counts, vocab_size)
    if not scipy.sparse.issparse(x):
        dense = checks.check_array(name, x, ("B", vocab_size), nonempty=False)
        x = scipy.sparse.csr_array(dense)
    elif x.ndim != 2 or x.shape[1] != vocab_size:
        raise ValueError(f"{name} must be [B, {vocab_size}], got shape {x.shape}")
    # A copy: canonicalising in place would reorder the caller's matrix.
    csr = scipy.sparse.csr_array(x, copy=True)
    csr.sum_duplicates()
    data = checks.check_array(f"{name} (its stored counts)", csr.data, nonempty=False)
    data = data.astype(np.float64)
    if (data < 0).any() or (data != np.round(data)).any():
        raise ValueError(
            f"{name}: a documents x vocabulary matrix must hold whole word counts >= 0"
        )
    csr.eliminate_zeros()
    lengths = np.diff(csr.indptr)
    rows = np.repeat(np.arange(csr.shape[0]), lengths)
    slots = np.arange(csr.nnz) - csr.indptr[:-1][rows]
    ids = np.zeros((csr.shape[0], max(int(lengths.max(initial=0)), 1)), np.int32)
    counts = np.zeros(ids.shape, np.float32)
    ids[rows, slots] = csr.indices
    counts[rows, slots] = csr.data
    return ids, counts


def _check_alpha(alpha, num_topics: int) -> None:
    """A Dirichlet parameter over topics: a scalar (symmetric) or [K], finite and > 0."""
    dims = () if np.ndim(alpha) == 0 else (num_topics,)
    checks.check_array("alpha", alpha, dims, positive=True)


def check_topics(topics, alpha, config: LDAConfig) -> None:
    """Point topics [K, V] (rows on the simplex) and alpha (scalar or [K]) for `config`."""
    checks.check_simplex("topics", topics, (config.num_topics, config.vocab_size), atol=1e-4)
    _check_alpha(alpha, config.num_topics)


def check_state(state: VBState, config: LDAConfig) -> None:
    """A VB state for `config`: lam [K, V] and alpha [K] finite and positive, eta > 0."""
    checks.check_array(
        "state.lam", state.lam, (config.num_topics, config.vocab_size), positive=True
    )
    checks.check_array("state.alpha", state.alpha, (config.num_topics,), positive=True)
    checks.check_array("state.eta", state.eta, (), positive=True)


def _floating(x) -> tuple[jax.Array, Callable[[float], np.ndarray]]:
    """x as an array of its float dtype (integers as JAX's default float), and a maker of
    constants in that dtype: lax neither promotes nor takes float64 Python numbers for float32
    operands when jax_enable_x64 is on."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(jnp.result_type(float))
    return x, functools.partial(np.asarray, dtype=x.dtype)


def digamma_positive(x: jax.Array) -> jax.Array:
    """digamma for x > 0, about 10x cheaper on CPU than jax.scipy.special.digamma (it is
    the E-step's inner cost): psi(x) = psi(x + 6) - sum_{i<6} 1 / (x + i), then the
    asymptotic series at x + 6 >= 6 (truncation error < 1e-8). Written in lax primitives:
    a fit traces it some twenty times, and jnp's operators cost 4x as much to trace."""
    x, c = _floating(x)
    shifted = lax.add(x, c(6.0))
    inv = lax.div(c(1.0), shifted)
    inv2 = lax.mul(inv, inv)
    tail = lax.mul(
        inv2, lax.sub(c(1.0 / 12), lax.mul(inv2, lax.sub(c(1.0 / 120), lax.div(inv2, c(252.0)))))
    )
    series = lax.sub(lax.sub(lax.log(shifted), lax.mul(c(0.5), inv)), tail)
    recurrence = lax.div(c(1.0), x)
    for i in range(1, 6):
        recurrence = lax.add(recurrence, lax.div(c(1.0), lax.add(x, c(i))))
    return lax.sub(series, recurrence)


# Stirling's series at z >= 8: its truncation error is below 1 / (1680 z^7) < 3e-10.
_GAMMALN_SHIFT = 8
_HALF_LOG_2PI = 0.5 * float(np.log(2 * np.pi))


def gammaln_positive(x: jax.Array) -> jax.Array:
    """log Gamma(x) for normal x > 0 (XLA's CPU flushes denormals): Stirling's series at
    z = x, or at z = x + 8 less log(x (x+1) ... (x+7)) where x < 8, that product taken as
    u (u+6) (u+10) (u+12) with u = x (x+7). The bound takes it over every lambda entry each
    pass: a sixth of the operations of jax.scipy.special.gammaln (whose reflection formula
    serves negative x), so quicker to compile and to run; within 1e-5 + 4e-7 |log Gamma(x)|,
    as jax's own float32 gammaln."""
    x, c = _floating(x)
    small = lax.lt(x, c(_GAMMALN_SHIFT))
    z = lax.select(small, lax.add(x, c(_GAMMALN_SHIFT)), x)
    inv = lax.div(c(1.0), z)
    inv2 = lax.mul(inv, inv)
    tail = lax.mul(
        inv, lax.sub(c(1.0 / 12), lax.mul(inv2, lax.sub(c(1.0 / 360), lax.div(inv2, c(1260.0)))))
    )
    stirling = lax.add(
        lax.sub(lax.mul(lax.sub(z, c(0.5)), lax.log(z)), z), lax.add(tail, c(_HALF_LOG_2PI))
    )
    # The product at 1 where x >= 8: finite, so the unused branch's gradient is too.
    near = lax.select(small, x, lax.full_like(x, 1.0))
    u = lax.mul(near, lax.add(near, c(7.0)))
    rising = lax.mul(
        lax.mul(u, lax.add(u, c(6.0))), lax.mul(lax.add(u, c(10.0)), lax.add(u, c(12.0)))
    )
    return lax.sub(stirling, lax.select(small, lax.log(rising), lax.full_like(x, 0.0)))


def dirichlet_expectation(param: jax.Array) -> jax.Array:
    """E[log x] for x ~ Dirichlet(param) along the last axis: [..., K] -> [..., K]."""
    return digamma_positive(param) - digamma_positive(param.sum(-1, keepdims=True))


def initial_gamma(alpha: jax.Array, counts: jax.Array) -> jax.Array:
    """alpha + N_d / K: the words spread evenly over topics, [B, K]."""
    return alpha + counts.sum(-1, keepdims=True) / alpha.shape[0]


def _word_columns(log_beta: jax.Array, ids: jax.Array) -> tuple[jax.Array, jax.Array]:
    """exp(log_beta - max over topics) of each document word, [B, L, K], and the max, [B, L].

    Shifted and exponentiated on [V, K] before the gather: V K exps instead of B L K.
    """
    shift = log_beta.max(0)  # [V]
    return jnp.exp(log_beta - shift).T[ids], shift[ids]


def _theta_weights(e_theta: jax.Array) -> tuple[jax.Array, jax.Array]:
    """exp(E log theta - max over topics), [B, K], and the max, [B], from E log theta [B, K]
    (`dirichlet_expectation(gamma)`; the fixed point passes digamma(gamma) alone, whose
    shift differs by digamma(sum gamma) and whose weights are the same)."""
    shift = e_theta.max(-1)
    return jnp.exp(e_theta - shift[:, None]), shift


def _mix(beta: jax.Array, theta: jax.Array) -> jax.Array:
    """sum_k theta_bk beta_blk: [B, L, K], [B, K] -> [B, L]. Written as a product and a sum,
    which XLA fuses into one loop: on CPU about 1.4x faster than the batched-matvec einsum."""
    return (beta * theta[:, None, :]).sum(-1)


# The fixed point runs over the whole batch while more than 1/STRAGGLER_FRACTION of its
# documents are still moving, then over just those (gathered into a batch that size): on
# the Lee corpus documents take 14 updates on average and the slowest 100, so the slow few
# no longer hold every document's work for 100 updates. Vectorised either way, with no
# per-document loop for a device to run one by one.
STRAGGLER_FRACTION = 8


def e_step(
    log_beta: jax.Array,
    alpha: jax.Array,
    ids: jax.Array,
    counts: jax.Array,
    mask: jax.Array,
    gamma0: jax.Array,
    max_iter: int,
    tol: float,
) -> EStep:
    """Document fixed point for a batch. log_beta [K, V] (E[log beta] for VB, log beta for
    point topics), alpha [K], ids/counts [B, L], mask [B], gamma0 [B, K].

    Each document stops on its own (scikit-learn's rule): its gamma is the first update
    that moved it by less than `tol` (mean over topics), or its `max_iter`-th. So a
    document's gamma does not depend on the batch it came in, to float rounding (one that
    finishes among the last movers runs in a smaller program). `iterations` is the most any
    document ran, [].
    """
    beta, word_shift = _word_columns(log_beta, ids)
    stragglers = -(-ids.shape[0] // STRAGGLER_FRACTION)
    gamma, running, iterations = _fixed_point(
        alpha, beta, counts, (gamma0, mask > 0, jnp.int32(0)), max_iter, tol, stragglers
    )

    def finish_stragglers(gamma, running, iterations):
        rows = jnp.argsort(~running, stable=True)[:stragglers]  # every running document
        done, _, iterations = _fixed_point(
            alpha, beta[rows], counts[rows], (gamma[rows], running[rows], iterations), max_iter, tol
        )
        return gamma.at[rows].set(done), iterations

    gamma, iterations = jax.lax.cond(
        running.any() & (iterations < max_iter),
        finish_stragglers,
        lambda gamma, _, iterations: (gamma, iterations),
        gamma,
        running,
        iterations,
    )
    e_theta = dirichlet_expectation(gamma)
    theta, theta_shift = _theta_weights(e_theta)
    mix = _mix(beta, theta)
    resp = (
        beta * theta[:, None, :] * (counts / jnp.maximum(mix, _TINY) * mask[:, None])[..., None]
    )  # c phi, [B, L, K]
    # Row scatter into [V, K] (contiguous K-vectors) is about twice as fast as into [K, V].
    sstats = (
        jnp.zeros(log_beta.shape[::-1], log_beta.dtype)
        .at[ids.reshape(-1)]
        .add(resp.reshape(-1, resp.shape[-1]))
        .T
    )
    # The bound at this fixed point comes almost free: the word term's mixture is the one the
    # statistics just used.
    bounds = _word_term(mix, counts, word_shift, theta_shift) + _theta_kl(alpha, gamma, e_theta)
    return EStep(gamma, sstats, iterations, bounds)


def _word_weights(beta: jax.Array, counts: jax.Array, theta: jax.Array) -> jax.Array:
    """c_dw / sum_k theta_k beta_kw, [B, L]."""
    return counts / jnp.maximum(_mix(beta, theta), _TINY)


def _fixed_point(alpha, beta, counts, start, max_iter, tol, until_running=0):
    """Updates documents until at most `until_running` still move by `tol` or more, or
    `max_iter` updates: beta [B, L, K], counts [B, L], start = (gamma [B, K], running [B]
    (False: stopped, or a padding row), updates so far []) -> the same three."""

    def update(gamma):
        theta = _theta_weights(digamma_positive(gamma))[0]
        return alpha + theta * (_word_weights(beta, counts, theta)[..., None] * beta).sum(1)

    def cond(carry):
        _, running, i = carry
        return (i < max_iter) & (running.sum() > until_running)

    def body(carry):
        gamma, running, i = carry
        new = update(gamma)
        gamma_next = jnp.where(running[:, None], new, gamma)
        return gamma_next, running & (jnp.abs(new - gamma).mean(-1) >= tol), i + 1

    return jax.lax.while_loop(cond, body, start)


def document_bounds(
    log_beta: jax.Array, alpha: jax.Array, ids: jax.Array, counts: jax.Array, gamma: jax.Array
) -> jax.Array:
    """Per-document part of the ELBO with phi optimal given gamma: [B].

    The word term log sum_k exp(E log theta_k + E log beta_kw) is evaluated with both parts
    shifted by their maxima (exact unless every topic term of a word underflows float32).
    """
    e_theta = dirichlet_expectation(gamma)
    beta, word_shift = _word_columns(log_beta, ids)
    theta, theta_shift = _theta_weights(e_theta)
    return _word_term(_mix(beta, theta), counts, word_shift, theta_shift) + _theta_kl(
        alpha, gamma, e_theta
    )


def _word_term(mix: jax.Array, counts: jax.Array, word_shift: jax.Array, theta_shift: jax.Array):
    """sum_w c_dw log sum_k exp(E log theta_dk + E log beta_kw), [B], from the shifted
    mixture sum_k theta_k beta_kw [B, L] and the shifts taken out of each factor."""
    words = jnp.log(jnp.maximum(mix, _TINY)) + word_shift + theta_shift[:, None]
    return (counts * words).sum(-1)


def _theta_kl(alpha: jax.Array, gamma: jax.Array, e_theta: jax.Array) -> jax.Array:
    """E log p(theta_d | alpha) - E log q(theta_d | gamma_d), [B]."""
    return (
        ((alpha - gamma) * e_theta + gammaln_positive(gamma) - gammaln_positive(alpha)).sum(-1)
        + gammaln_positive(alpha.sum())
        - gammaln_positive(gamma.sum(-1))
    )


def topic_bound(lam: jax.Array, eta: jax.Array, e_beta: jax.Array | None = None) -> jax.Array:
    """E log p(beta) - E log q(beta), summed over topics: [] (e_beta: E log beta,
    `dirichlet_expectation(lam)`, where the caller has it)."""
    e_beta = dirichlet_expectation(lam) if e_beta is None else e_beta
    num_topics, vocab_size = lam.shape
    return (
        ((eta - lam) * e_beta + gammaln_positive(lam)).sum()
        - lam.size * gammaln_positive(eta)
        + num_topics * gammaln_positive(vocab_size * eta)
        - gammaln_positive(lam.sum(-1)).sum()
    )


def _inverse_cdf(u: jax.Array, cdf: jax.Array) -> jax.Array:
    """Categorical draws from uniforms u [...] and unnormalised CDFs cdf [..., K]: int32 [...].

    One uniform per draw: on CPU far cheaper than jax.random.categorical's K Gumbel variates.
    """
    drawn = (cdf < u[..., None] * cdf[..., -1:]).sum(-1)
    return jnp.minimum(drawn, cdf.shape[-1] - 1).astype(jnp.int32)


def _pad_rows(arrays: Sequence[np.ndarray], multiple: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Appends zero rows so the leading axis is a multiple; returns arrays and mask [D']."""
    d = arrays[0].shape[0]
    padded = -(-d // multiple) * multiple
    mask = np.zeros(padded, np.float32)
    mask[:d] = 1.0
    return [
        np.concatenate([a, np.zeros((padded - d, *a.shape[1:]), a.dtype)]) for a in arrays
    ], mask


def _put(arrays, mesh: Mesh | None):
    # device_put, not jnp.asarray: in jax 0.10 the latter compiles a program per shape, three
    # per length group of a fit (12 of a first Lee fit's 18 programs).
    if mesh is None:
        return jax.device_put(list(arrays))
    return jax.device_put(list(arrays), NamedSharding(mesh, P(DATA_AXIS)))
