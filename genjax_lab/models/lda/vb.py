"""LDA by variational Bayes: the batch and online steps and their fits.

Batch VB splits the corpus into a few groups of similar length (`length_groups`), each
padded only to its own longest document: the E-step's cost is then close to the number of
words rather than documents x longest document (on wiki250, 142k slots instead of 389k for
103k distinct document words, with 4 groups). Topic statistics s_kw = sum_d mask_d c_dw
phi_dwk are a sum over the batch axis: with the batch sharded over the 'data' mesh axis
under jit, XLA reduces them across devices inside the compiled step (this needs a mesh with
Auto axes, as genjax_lab.core.mesh.data_mesh makes; under jax.make_mesh's default Explicit
axes the word gather is refused). M-step:
  batch:   lambda = eta + s
  online:  lambda <- (1 - rho_t) lambda + rho_t (eta + (D / B) s),  rho_t = (tau0 + t)^-kappa,
with t = 1, 2, ... (scikit-learn's convention), tau0 = `learning_offset` (default 1024,
Hoffman et al.; scikit-learn's default is 10) and kappa = `learning_decay` (0.7).
alpha [K] and the symmetric eta can be learned by Newton's method (Minka 2000): in batch
mode Newton iterations to the optimum given gamma (resp. lambda), online one Newton step
damped by rho_t. With gamma warm started from the previous pass, every batch update is
coordinate ascent on the bound, so the bound provably never decreases (tested, also with
learned priors). The default restarts each pass's document fixed point at alpha + N_d / K,
as Hoffman et al. and scikit-learn do: documents can then leave a poor mode (on wiki250
this reaches a 10% lower perplexity), and with fixed priors the bound still never
decreased in our tests (bars, wiki250), though that is observed, not proven.
"""

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import digamma, polygamma
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from genjax_lab.core import checks, compilation
from genjax_lab.core.checks import NonFiniteError
from genjax_lab.data.text import BagOfWords
from genjax_lab.models.lda.maths import (
    LDAConfig,
    VBState,
    _pad_rows,
    _put,
    check_documents,
    check_state,
    dirichlet_expectation,
    e_step,
    initial_gamma,
    topic_bound,
)

_NEWTON_ITERS = 20


def init_vb(key: jax.Array, config: LDAConfig) -> VBState:
    """lambda ~ Gamma(100, 1/100) elementwise (as Hoffman et al. and scikit-learn), fixed priors.

    The draw is Marsaglia & Tsang's proposal d (1 + n / sqrt(9 d))^3 / 100, d = 100 - 1/3,
    without its rejection step (which rejects < 1% at shape 100): close to Gamma(100, 1/100)
    and, unlike jax.random.gamma, quick to compile. Any positive noise breaks the symmetry.
    The priors are traced: another alpha or eta reuses the compiled draw.
    """
    return _init_vb(
        key, config.alpha0, config.eta0, num_topics=config.num_topics, vocab_size=config.vocab_size
    )


@compilation.fast_compiling_jit(static_argnames=("num_topics", "vocab_size"))
def _init_vb(
    key: jax.Array, alpha: jax.Array, eta: jax.Array, *, num_topics: int, vocab_size: int
) -> VBState:
    d = 100.0 - 1.0 / 3.0
    n = jax.random.normal(key, (num_topics, vocab_size))
    lam = d * jnp.maximum(1.0 + n / jnp.sqrt(9.0 * d), 0.1) ** 3 / 100.0
    alpha = jnp.full((num_topics,), alpha, jnp.float32)
    return VBState(lam, alpha, jnp.asarray(eta, jnp.float32), jnp.int32(0))


def _newton_alpha(
    alpha: jax.Array, e_theta_sum: jax.Array, num_docs: jax.Array, iters: int, rate=1.0
):
    """Newton steps (Minka 2000) on n [lnG(sum a) - sum lnG(a)] + sum_k a_k s_k,
    s = sum_d E log theta_d.

    The Hessian is diagonal plus a constant, so the step is O(K) (Sherman-Morrison).
    `rate` < 1 damps each step (online updates). Coordinates that would leave (0, inf) are halved.
    """

    def step(a, _):
        g = num_docs * (digamma(a.sum()) - digamma(a)) + e_theta_sum
        q = -num_docs * polygamma(1, a)
        z = num_docs * polygamma(1, a.sum())
        b = (g / q).sum() / (1.0 / z + (1.0 / q).sum())
        new = a - rate * (g - b) / q
        return jnp.where(new > 0, new, a / 2), None

    return jax.lax.scan(step, alpha, None, length=iters)[0]


def _newton_eta(
    eta: jax.Array, e_beta_sum: jax.Array, shape: tuple[int, int], iters: int, rate=1.0
):
    """Newton steps on K [lnG(V eta) - V lnG(eta)] + eta sum_kv E log beta_kv (symmetric eta)."""
    num_topics, vocab_size = shape

    def step(e, _):
        g = num_topics * vocab_size * (digamma(vocab_size * e) - digamma(e)) + e_beta_sum
        h = num_topics * vocab_size * (vocab_size * polygamma(1, vocab_size * e) - polygamma(1, e))
        new = e - rate * g / h
        return jnp.where(new > 0, new, e / 2), None

    return jax.lax.scan(step, eta, None, length=iters)[0]


def _learn_priors(state: VBState, lam, gamma, mask, config: LDAConfig, iters: int, rate=1.0):
    alpha, eta = state.alpha, state.eta
    if config.learn_alpha:
        e_theta_sum = (mask[:, None] * dirichlet_expectation(gamma)).sum(0)
        alpha = _newton_alpha(alpha, e_theta_sum, jnp.maximum(mask.sum(), 1.0), iters, rate)
    if config.learn_eta:
        eta = _newton_eta(eta, dirichlet_expectation(lam).sum(), lam.shape, iters, rate)
    return alpha, eta


class DocBatch(NamedTuple):
    """Padded bags of one length group: ids int32 [B, L], counts float32 [B, L], mask [B]."""

    ids: jax.Array
    counts: jax.Array
    mask: jax.Array


def _compiled_config(config: LDAConfig) -> LDAConfig:
    """The static part of a compiled batch step: `config` with its plain numbers fixed (the
    priors live in the state; the fixed-point count and tolerance are passed traced), so
    another alpha, eta, max_doc_iter or mean_change_tol reuses the compiled step."""
    return dataclasses.replace(config, alpha=None, eta=None, max_doc_iter=1, mean_change_tol=0.0)


def vb_batch_step(
    state: VBState,
    gammas: tuple[jax.Array, ...] | None,
    groups: tuple[DocBatch, ...],
    config: LDAConfig,
) -> tuple[VBState, tuple[jax.Array, ...], jax.Array]:
    """One batch VB iteration over the whole corpus, given as length groups (the corpus's
    documents split by length, each group padded to its own longest document): an E-step per
    group started at its gamma [B_g, K] (warm from the last pass), or if `gammas` is None at
    alpha + N_d / K, then lambda = eta + the summed statistics, then alpha / eta by Newton if
    learned.

    Returns (state, gammas, ELBO []): the ELBO the E-step reached, at the new gammas and
    the pass's starting topics and priors, i.e. before the M-step (lda-c's convention; the
    topic update raises it further). Evaluated there it costs almost nothing (the E-step's
    last mixture), where the bound after the M-step would need a pass over every word slot.
    """
    return _batch_step(
        state,
        gammas,
        groups,
        _compiled_config(config),
        config.max_doc_iter,
        config.mean_change_tol,
        problem_size=sum(g.ids.size for g in groups),
    )


# Word slots up to which the batch step compiles quickly. The Lee corpus (300 documents,
# 35,904 slots in two length groups): compiling takes 0.5 s on the quick tier against 2.4 s
# on the optimised one, each pass about 17 ms longer, so the saving lasts ~100 passes; the
# penalty grows with the slots (the bars corpus, 47,104 slots: 14 ms against 9 ms a pass).
SMALL_BATCH_SLOTS = 5 * 2**13


@compilation.size_tiered_jit(small_problem_size=SMALL_BATCH_SLOTS, static_argnames="config")
def _batch_step(
    state: VBState,
    gammas,
    groups: tuple[DocBatch, ...],
    config: LDAConfig,
    max_doc_iter: jax.Array,
    mean_change_tol: jax.Array,
) -> tuple[VBState, tuple[jax.Array, ...], jax.Array]:
    log_beta = dirichlet_expectation(state.lam)
    if gammas is None:
        gammas = [initial_gamma(state.alpha, g.counts) for g in groups]
    estimates = [
        e_step(log_beta, state.alpha, g.ids, g.counts, g.mask, gamma, max_doc_iter, mean_change_tol)
        for g, gamma in zip(groups, gammas)
    ]
    lam = state.eta + sum(est.sstats for est in estimates)
    all_gamma = jnp.concatenate([est.gamma for est in estimates])
    all_mask = jnp.concatenate([g.mask for g in groups])
    alpha, eta = _learn_priors(state, lam, all_gamma, all_mask, config, _NEWTON_ITERS)
    bound = sum((g.mask * est.bounds).sum() for g, est in zip(groups, estimates))
    new = VBState(lam, alpha, eta, state.step + 1)
    bound = bound + topic_bound(state.lam, state.eta, log_beta)
    return new, tuple(est.gamma for est in estimates), bound


def vb_online_step(
    state: VBState,
    ids: jax.Array,
    counts: jax.Array,
    mask: jax.Array,
    total_docs: int | jax.Array,
    config: LDAConfig,
) -> tuple[VBState, dict[str, jax.Array]]:
    """One online VB update from a minibatch (jittable; `config` static, the corpus size
    `total_docs` D traced, so another D reuses the compiled step). The minibatch's statistics
    are scaled by D / B, B its unmasked documents: D is the corpus the minibatch is drawn from
    (scikit-learn's `total_samples`), which need not be the documents at hand (a stream).

    metrics: rho, E-step iterations, and `bound_per_word`: the minibatch estimate of the
    corpus ELBO per word (documents scaled by D / B, as scikit-learn's sub-sampled bound).
    """
    log_beta = dirichlet_expectation(state.lam)
    est = e_step(
        log_beta,
        state.alpha,
        ids,
        counts,
        mask,
        initial_gamma(state.alpha, counts),
        config.max_doc_iter,
        config.mean_change_tol,
    )
    num_docs = jnp.maximum(mask.sum(), 1.0)
    scale = total_docs / num_docs
    rho = (config.learning_offset + state.step.astype(jnp.float32) + 1.0) ** -config.learning_decay
    lam = (1.0 - rho) * state.lam + rho * (state.eta + scale * est.sstats)
    alpha, eta = _learn_priors(state, lam, est.gamma, mask, config, 1, rate=rho)
    docs = (mask * est.bounds).sum()
    words = jnp.maximum((mask[:, None] * counts).sum(), 1.0)
    bound = (docs + topic_bound(state.lam, state.eta, log_beta) / scale) / words
    metrics = {"rho": rho, "e_step_iterations": est.iterations, "bound_per_word": bound}
    return VBState(lam, alpha, eta, state.step + 1), metrics


_online_step = jax.jit(vb_online_step, static_argnames="config")


def make_online_step(config: LDAConfig, total_docs: int):
    """`step(state, batch, key) -> (state, metrics)` for the training loop.

    batch = {"ids": [B, L], "counts": [B, L], "mask": [B]}; the key is unused (VB is deterministic).
    """
    checks.check_count("total_docs", total_docs)

    def step(state, batch, key):
        del key
        return vb_online_step(
            state, batch["ids"], batch["counts"], batch["mask"], total_docs, config
        )

    return step


class FitHistory(NamedTuple):
    bounds: list[float]  # batch: each pass's ELBO before its M-step; online: estimate per word
    gamma: np.ndarray | None  # batch: [D, K] of the last iteration
    converged: bool = False  # batch: stopped early by tol or perp_tol
    perplexities: list[float] | None = None  # batch with perp_tol: each evaluation's


@functools.partial(jax.jit, static_argnames="config")
def _groups_bound(
    state: VBState,
    groups: tuple[DocBatch, ...],
    config: LDAConfig,
    max_doc_iter: jax.Array,
    mean_change_tol: jax.Array,
) -> jax.Array:
    """The ELBO of `state` over the groups' documents, their fixed point run afresh: []."""
    log_beta = dirichlet_expectation(state.lam)
    bound = topic_bound(state.lam, state.eta, log_beta)
    for g in groups:
        gamma0 = initial_gamma(state.alpha, g.counts)
        est = e_step(
            log_beta, state.alpha, g.ids, g.counts, g.mask, gamma0, max_doc_iter, mean_change_tol
        )
        bound += (g.mask * est.bounds).sum()
    return bound


def fit_vb(
    key: jax.Array,
    bags: BagOfWords,
    config: LDAConfig,
    *,
    method: str = "batch",
    num_iters: int = 100,
    batch_size: int = 64,
    mesh: Mesh | None = None,
    tol: float | None = None,
    state: VBState | None = None,
    shuffle: bool = True,
    num_restarts: int = 1,
    warm_start: bool = False,
    total_docs: int | None = None,
    perp_tol: float | None = None,
    evaluate_every: int = 1,
) -> tuple[VBState, FitHistory]:
    """Fits LDA by batch or online VB, from `state` if given (else `init_vb(key)`).

    batch: `num_iters` passes over the corpus, stopping early when the relative ELBO
    gain falls below `tol` (if given), or by scikit-learn's rule when `perp_tol` is given:
    after every `evaluate_every`-th pass the perplexity of the documents (`perplexity`,
    their fixed point run afresh: the extra E-step scikit-learn also pays) is evaluated, and
    the fit stops once it changed by less than `perp_tol` since the last evaluation. Each
    pass starts the document fixed point afresh at alpha + N_d / K (as Hoffman et al. and
    scikit-learn) unless `warm_start`, which continues from the last pass's gamma: cheaper
    per pass and provably monotone, but documents then stay in the mode they first found (on
    wiki250, 10% worse perplexity after 20 passes); with `num_restarts` > 1, fits from
    init_vb(fold_in(key, r)) for r < num_restarts and keeps the highest final ELBO (VB has
    local optima: on the bars corpus about half of single starts merge two bars).
    online: `num_iters` epochs of minibatches of `batch_size` documents in a fresh random
    order per epoch (key folded with the epoch), or in corpus order if not `shuffle` (as
    scikit-learn does); each
    update scales the minibatch to `total_docs` documents (scikit-learn's `total_samples`,
    Hoffman et al.'s D; default: the documents in `bags`). A minibatch is padded to a
    bucket of its longest document (`_minibatch_width`), not to the corpus's longest.
    With a mesh, documents are padded with masked rows to a multiple of its device count
    and sharded over 'data'.
    """
    if method not in ("batch", "online"):
        raise ValueError(f"method must be 'batch' or 'online', got {method!r}")
    if checks.check_count("num_restarts", num_restarts) > 1 and (
        method != "batch" or state is not None
    ):
        raise ValueError(
            f"num_restarts must be 1 unless method='batch' without state; got {num_restarts}"
        )
    checks.check_count("num_iters", num_iters)
    checks.check_count("batch_size", batch_size)
    if tol is not None:
        checks.check_number("tol", tol, low=0.0)
    if total_docs is not None:
        checks.check_count("total_docs", total_docs)
    checks.check_count("evaluate_every", evaluate_every)
    if perp_tol is not None:
        checks.check_number("perp_tol", perp_tol, low=0.0)
        if method != "batch" or warm_start:
            raise ValueError("perp_tol: scikit-learn's rule stops batch VB without warm_start")
    if state is not None:
        check_state(state, config)
    ids, counts = check_documents(bags, config.vocab_size, "bags")
    if ids.shape[0] == 0:
        raise ValueError("bags hold no documents")
    stop = None if perp_tol is None else (perp_tol, evaluate_every)
    if method == "online":
        init_key, order_key = jax.random.split(key)
        state = init_vb(init_key, config) if state is None else state
        return _fit_online(
            state,
            ids,
            counts,
            config,
            order_key,
            num_iters,
            batch_size,
            mesh,
            shuffle,
            ids.shape[0] if total_docs is None else total_docs,
        )
    if num_restarts == 1:
        state = _batch_start(key, None, config) if state is None else state
        return _fit_batch(state, ids, counts, config, num_iters, mesh, tol, warm_start, stop)
    fits = [
        _fit_batch(
            _batch_start(key, r, config),
            ids,
            counts,
            config,
            num_iters,
            mesh,
            tol,
            warm_start,
            stop,
        )
        for r in range(num_restarts)
    ]
    return max(fits, key=lambda fit: fit[1].bounds[-1])


def _batch_start(key: jax.Array, restart: int | None, config: LDAConfig) -> VBState:
    """init_vb(split(key)[0]), folded with the restart number when given: one program, where
    the same key operations run eagerly compiled three (0.2-0.3 s of a first fit)."""
    return _batch_start_program(
        key,
        restart or 0,
        config.alpha0,
        config.eta0,
        fold=restart is not None,
        num_topics=config.num_topics,
        vocab_size=config.vocab_size,
    )


@compilation.fast_compiling_jit(static_argnames=("fold", "num_topics", "vocab_size"))
def _batch_start_program(key, restart, alpha, eta, *, fold, num_topics, vocab_size) -> VBState:
    init_key = jax.random.split(key)[0]
    if fold:
        init_key = jax.random.fold_in(init_key, restart)
    return _init_vb(init_key, alpha, eta, num_topics=num_topics, vocab_size=vocab_size)


def _replicate(state: VBState, mesh: Mesh | None) -> VBState:
    # Replicated from the start, so the step compiles once.
    return state if mesh is None else jax.device_put(state, NamedSharding(mesh, P()))


def _finite_bound(bound, iteration: int, method: str) -> float:
    """The bound as a float, or NonFiniteError naming the iteration (1-based) and the value."""
    value = float(bound)
    if not math.isfinite(value):
        raise NonFiniteError(f"non-finite {method} VB bound {value} at iteration {iteration}")
    return value


def length_groups(
    counts: np.ndarray, max_groups: int, multiple: int = 1, group_cost: int = 0
) -> list[np.ndarray]:
    """Document indices [D] split into at most `max_groups` groups of similar length (the
    number of slots with words), shortest first, cut where the padded work, sum over groups of
    rows (rounded up to `multiple`) x longest length, plus `group_cost` slots per group, is
    least. Cuts are searched among 64 length quantiles, so the search costs
    O(max_groups 64^2) for any corpus size.
    """
    lengths = (counts > 0).sum(1)
    order = np.argsort(lengths, kind="stable")
    sorted_lengths = np.maximum(lengths[order], 1)
    cuts = np.unique(np.linspace(0, len(order), 65).round().astype(int))

    def work(i, j):  # documents order[cuts[i]:cuts[j]] as one group
        rows = -(-(cuts[j] - cuts[i]) // multiple) * multiple
        return rows * sorted_lengths[cuts[j] - 1]

    n = len(cuts) - 1
    best = [work(0, j) if j else 0 for j in range(n + 1)]  # one group for order[:cuts[j]]
    layers = [(best, [0] * (n + 1))]  # per number of groups: (least work, last cut)
    for _ in range(1, max_groups):
        row, back = best[:], [0] * (n + 1)
        for j in range(1, n + 1):
            for i in range(1, j):
                cost = best[i] + work(i, j)
                if cost < row[j]:
                    row[j], back[j] = cost, i
        best = row
        layers.append((row, back))
    used = min(range(max_groups), key=lambda g: layers[g][0][n] + g * group_cost)
    bounds, j = [n], n
    for _, back in reversed(layers[1 : used + 1]):
        if back[j]:
            j = back[j]
            bounds.append(j)
    bounds.append(0)
    return [order[cuts[a] : cuts[b]] for a, b in zip(bounds[::-1], bounds[-2::-1])]


def batch_length_groups(counts: np.ndarray, devices: int) -> list[np.ndarray]:
    """The length groups of a batch fit's documents (`length_groups`): one for a corpus of
    at most ONE_GROUP_SLOTS slots; fewer, at GROUP_COST_SLOTS each, where the step then
    compiles on the quick tier; else up to MAX_LENGTH_GROUPS."""
    if _is_one_group(counts):
        return length_groups(counts, 1, devices)
    few = length_groups(counts, MAX_LENGTH_GROUPS, devices, GROUP_COST_SLOTS)
    slots = sum(math.prod(_padded_shape(counts[rows], devices, _LARGE_BUCKETS)) for rows in few)
    return few if slots <= SMALL_BATCH_SLOTS else length_groups(counts, MAX_LENGTH_GROUPS, devices)


def _is_one_group(counts: np.ndarray) -> bool:
    """Whether a batch fit takes documents `counts` [B, L] as one group on coarse buckets."""
    return counts.shape[0] * longest_document(counts) <= ONE_GROUP_SLOTS


def longest_document(counts: np.ndarray) -> int:
    """The slots with words of the longest document of counts [B, L], at least 1."""
    return int((counts > 0).sum(1).max(initial=1))


def _padded_shape(counts: np.ndarray, multiple: int, buckets: tuple[int, int]) -> tuple[int, int]:
    """(rows, slots) a group of documents `counts` [B, L] pads to: the bucket of each, rows
    also rounded up to `multiple` (the device count)."""
    rows = compilation.bucket_size(counts.shape[0], *buckets)
    width = compilation.bucket_size(longest_document(counts), *buckets)
    return -(-rows // multiple) * multiple, width


def _group_batches(ids, counts, rows_per_group, multiple: int, mesh, buckets: tuple[int, int]):
    """The documents of each group with their words moved to the front, trimmed to the
    group's longest document and padded with masked rows and empty slots to bucket sizes
    (`buckets` = (minimum, sizes per doubling); rows also to `multiple`): DocBatch each. The
    buckets let corpora of nearby sizes share the compiled step."""
    batches = []
    for rows in rows_per_group:
        g_ids, g_counts = ids[rows], counts[rows]
        front = np.argsort(g_counts <= 0, axis=1, kind="stable")  # slots with words first, in order
        width = longest_document(g_counts)
        padded_rows, padded_width = _padded_shape(g_counts, multiple, buckets)
        g_ids = np.take_along_axis(g_ids, front, 1)[:, :width]
        g_counts = np.take_along_axis(g_counts, front, 1)[:, :width]
        slots = padded_width - width
        g_ids = np.pad(g_ids, ((0, 0), (0, slots)))
        g_counts = np.pad(g_counts, ((0, 0), (0, slots)))
        (g_ids, g_counts), mask = _pad_rows([g_ids, g_counts], padded_rows)
        batches.append(DocBatch(*_put([g_ids, g_counts, mask], mesh)))
    return tuple(batches)


MAX_LENGTH_GROUPS = 4
# A length group costs about as much as this many word slots of E-step work per fit in
# tracing, lowering and compiling its code (about 0.15 s on the quick tier): the Lee
# corpus's 300 documents take two groups (35,904 slots) rather than four (27,736), a first
# fit 0.5 s faster. On the optimised tier several smaller groups run faster per slot (the
# bars corpus: 4 groups 8.5 ms a pass, one 12 ms), so there every group is kept.
GROUP_COST_SLOTS = 2**13
# A corpus of up to this many word slots (documents x longest document) is one group padded
# to coarse buckets (from 32, eight sizes per doubling): its passes take well under a
# millisecond, so sharing one compiled step across nearby corpus sizes matters more than the
# padding. A larger corpus is split into length groups, each padded to fine buckets (sixteen
# sizes per doubling, at most 6.25% per axis), so the warm pass time stays as it was.
ONE_GROUP_SLOTS = 2**13
_SMALL_BUCKETS, _LARGE_BUCKETS = (32, 8), (8, 16)


def _fit_batch(
    state, ids, counts, config, num_iters, mesh, tol, warm_start, stop
) -> tuple[VBState, FitHistory]:
    devices = 1 if mesh is None else mesh.devices.size
    rows_per_group = batch_length_groups(counts, devices)
    buckets = _SMALL_BUCKETS if _is_one_group(counts) else _LARGE_BUCKETS
    groups = _group_batches(ids, counts, rows_per_group, devices, mesh, buckets)
    state, bounds = _replicate(state, mesh), []
    gammas, converged, perplexities = None, False, None if stop is None else []
    words = float(counts.sum())
    for _ in range(num_iters):
        state, gammas, bound = vb_batch_step(state, gammas if warm_start else None, groups, config)
        bounds.append(_finite_bound(bound, len(bounds) + 1, "batch"))
        if tol is not None and len(bounds) > 1:
            converged = abs(bounds[-1] - bounds[-2]) < tol * abs(bounds[-2])
        if stop is not None and len(bounds) % stop[1] == 0:
            fresh = _groups_bound(
                state, groups, _compiled_config(config), config.max_doc_iter, config.mean_change_tol
            )
            perplexities.append(math.exp(-_finite_bound(fresh, len(bounds), "batch") / words))
            converged = len(perplexities) > 1 and abs(perplexities[-1] - perplexities[-2]) < stop[0]
        if converged:
            break
    gamma = np.empty((ids.shape[0], config.num_topics), np.float32)
    for rows, g in zip(rows_per_group, gammas):
        gamma[rows] = np.asarray(g)[: len(rows)]
    return state, FitHistory(bounds, gamma, converged, perplexities)


# An online minibatch is padded to a bucket of its longest document, two sizes per doubling
# from 16, rather than to the corpus's longest: the E-step's cost is rows x width. A bucket
# within 25% of the corpus width pads to the corpus width instead, so only minibatches that
# gain much add a compiled program. On wiki250 in corpus order (batch 64) the minibatches'
# longest documents are near the corpus's (896-1555 of 1555 slots), so little changes there;
# on corpora whose longest document is an outlier, every other minibatch is narrower.
_ONLINE_BUCKETS = (16, 2)


def _minibatch_width(longest: int, corpus_width: int) -> int:
    width = compilation.bucket_size(longest, *_ONLINE_BUCKETS)
    return corpus_width if 4 * width > 3 * corpus_width else width


def _fit_online(state, ids, counts, config, key, num_epochs, batch_size, mesh, shuffle, total_docs):
    devices = 1 if mesh is None else mesh.devices.size
    if batch_size % devices:
        raise ValueError(
            f"batch_size ({batch_size}) must be a multiple of the mesh's {devices} devices"
        )
    num_docs = ids.shape[0]
    front = np.argsort(counts <= 0, axis=1, kind="stable")  # slots with words first, in order
    ids, counts = np.take_along_axis(ids, front, 1), np.take_along_axis(counts, front, 1)
    lengths = (counts > 0).sum(1)
    state, bounds = _replicate(state, mesh), []
    for epoch in range(num_epochs):
        order = (
            np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch), num_docs))
            if shuffle
            else np.arange(num_docs)
        )
        for start in range(0, num_docs, batch_size):
            rows = order[start : start + batch_size]
            width = _minibatch_width(int(lengths[rows].max()), ids.shape[1])
            (b_ids, b_counts), mask = _pad_rows(
                [ids[rows, :width], counts[rows, :width]], batch_size
            )
            state, metrics = _online_step(
                state, *_put([b_ids, b_counts, mask], mesh), total_docs, config=config
            )
            bounds.append(_finite_bound(metrics["bound_per_word"], len(bounds) + 1, "online"))
    return state, FitHistory(bounds, None)
