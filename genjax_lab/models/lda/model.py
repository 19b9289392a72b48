"""LDA's verbs (genjax_lab.api) and what a fitted model answers: bounds, perplexities,
topic proportions, new documents, topic matching.

Perplexity = exp(-ELBO / number of words). This is exactly the estimator of scikit-learn's
`LatentDirichletAllocation.perplexity` (topic term included, also on held-out documents), so
the two are comparable number for number. `completion_perplexity` is the document-completion
estimator (Wallach et al. 2009): theta inferred from one part of each held-out document,
perplexity = exp(-sum log sum_k theta_dk beta_kw / words) of the other part, with point
topics beta = E[beta] (VB) or the Gibbs estimate.
"""

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh
from scipy.optimize import linear_sum_assignment

from genjax_lab.core import checks
from genjax_lab.data.text import BagOfWords, bag_of_ids, to_dense
from genjax_lab.models.lda import gibbs, vb
from genjax_lab.models.lda.maths import (
    _TINY,
    Documents,
    LDAConfig,
    VBState,
    _check_alpha,
    _inverse_cdf,
    _mix,
    check_documents,
    check_state,
    check_topics,
    dirichlet_expectation,
    document_bounds,
    e_step,
    initial_gamma,
    topic_bound,
)


def _infer_gamma(log_beta, alpha, ids, counts, config: LDAConfig):
    mask = jnp.ones(ids.shape[:1], jnp.float32)
    return e_step(
        log_beta,
        alpha,
        ids,
        counts,
        mask,
        initial_gamma(alpha, counts),
        config.max_doc_iter,
        config.mean_change_tol,
    ).gamma


def _point_log_topics(topics):
    return jnp.log(jnp.maximum(topics, _TINY))


@functools.partial(jax.jit, static_argnames="config")
def _proportions(log_beta, alpha, ids, counts, config: LDAConfig):
    gamma = _infer_gamma(log_beta, alpha, ids, counts, config)
    return gamma / gamma.sum(-1, keepdims=True)


@functools.partial(jax.jit, static_argnames="config")
def _elbo(state: VBState, ids, counts, config: LDAConfig):
    log_beta = dirichlet_expectation(state.lam)
    gamma = _infer_gamma(log_beta, state.alpha, ids, counts, config)
    return document_bounds(log_beta, state.alpha, ids, counts, gamma).sum() + topic_bound(
        state.lam, state.eta
    )


def _total_words(counts: np.ndarray) -> float:
    total = float(counts.sum())
    if total <= 0:
        raise ValueError("bags hold no words: perplexity is undefined")
    return total


def elbo(state: VBState, bags: Documents, config: LDAConfig) -> float:
    """ELBO of the documents (bags of words, or a dense or scipy.sparse count matrix [D, V])
    under the fitted q(beta), gamma fitted from scratch."""
    check_state(state, config)
    ids, counts = check_documents(bags, config.vocab_size, "bags")
    return float(_elbo(state, ids, counts, config))


def perplexity(state: VBState, bags: Documents, config: LDAConfig) -> float:
    """exp(-ELBO / words): scikit-learn's LatentDirichletAllocation.perplexity estimator
    (documents as `elbo` takes them)."""
    check_state(state, config)
    ids, counts = check_documents(bags, config.vocab_size, "bags")
    return float(np.exp(-float(_elbo(state, ids, counts, config)) / _total_words(counts)))


def topic_word(state: VBState) -> jax.Array:
    """E[beta] = lambda / row sums: [K, V]."""
    return state.lam / state.lam.sum(-1, keepdims=True)


def posterior(
    params: VBState, x: Documents, *, max_doc_iter: int = 100, mean_change_tol: float = 1e-3
) -> jax.Array:
    """Topic proportions E_q[theta] [B, K] of (new) documents x under q(beta) (scikit-learn's
    `transform`), the document fixed point run to `mean_change_tol` or `max_doc_iter`."""
    config = _params_config(params, max_doc_iter, mean_change_tol)
    ids, counts = check_documents(x, config.vocab_size)
    return _proportions(dirichlet_expectation(params.lam), params.alpha, ids, counts, config)


def posterior_given_topics(
    topics: jax.Array, alpha: jax.Array, bags: Documents, config: LDAConfig
) -> jax.Array:
    """Topic proportions E_q[theta] [D, K] of documents given point topics [K, V] (rows sum
    to 1) and alpha, as document completion and a Gibbs fit's topics need."""
    check_topics(topics, alpha, config)
    ids, counts = check_documents(bags, config.vocab_size, "bags")
    return _proportions(
        _point_log_topics(jnp.asarray(topics, jnp.float32)),
        jnp.asarray(alpha, jnp.float32),
        ids,
        counts,
        config,
    )


def split_bags(
    bags: BagOfWords, seed: int, heldout_fraction: float = 0.5
) -> tuple[BagOfWords, BagOfWords]:
    """Splits every document's words at random: (observed, held out), each token held out
    with probability `heldout_fraction` (a binomial draw per word slot)."""
    checks.check_number(
        "heldout_fraction", heldout_fraction, low=0.0, high=1.0, low_open=True, high_open=True
    )
    counts = checks.check_array("counts", bags.counts, nonempty=False, nonnegative=True)
    if (counts != np.round(counts)).any():
        raise ValueError("counts must be whole numbers to split words")
    heldout = (
        np.random.default_rng(seed)
        .binomial(counts.astype(np.int64), heldout_fraction)
        .astype(np.float32)
    )
    return BagOfWords(bags.ids, counts - heldout), BagOfWords(bags.ids, heldout)


def completion_perplexity(
    topics: jax.Array,
    alpha: jax.Array,
    observed: Documents,
    heldout: Documents,
    config: LDAConfig,
) -> float:
    """Document completion: theta from `observed`, exp(-sum log p(heldout word) / heldout words).

    topics [K, V] point topics (rows sum to 1); p(w | d) = sum_k theta_dk topics_kw.
    """
    check_topics(topics, alpha, config)
    ids, counts = check_documents(heldout, config.vocab_size, "heldout")
    obs_ids, obs_counts = check_documents(observed, config.vocab_size, "observed")
    topics, alpha = jnp.asarray(topics, jnp.float32), jnp.asarray(alpha, jnp.float32)
    log_lik = float(_completion_log_lik(topics, alpha, obs_ids, obs_counts, ids, counts, config))
    return float(np.exp(-log_lik / _total_words(counts)))


@functools.partial(jax.jit, static_argnames="config")
def _completion_log_lik(topics, alpha, obs_ids, obs_counts, ids, counts, config: LDAConfig):
    theta = _proportions(_point_log_topics(topics), alpha, obs_ids, obs_counts, config)
    p = _mix(topics.T[ids], theta)
    return (counts * jnp.log(jnp.maximum(p, _TINY))).sum()


def top_words(topics: jax.Array, words: Sequence[str], n: int = 10) -> list[list[str]]:
    """The n most probable words of each topic [K, V], most probable first."""
    order = np.argsort(-np.asarray(topics), axis=-1, kind="stable")[:, :n]
    return [[words[i] for i in row] for row in order]


class SyntheticCorpus(NamedTuple):
    words: jax.Array  # int32 [D, N]
    topics: jax.Array  # int32 [D, N] the topic that drew each word
    theta: jax.Array  # [D, K]


def _check_sample_documents(topics, alpha, num_docs: int, doc_length: int, **_) -> None:
    num_topics = checks.check_array("topics", topics, ("K", "V")).shape[0]
    checks.check_simplex("topics", topics, atol=1e-4)
    _check_alpha(alpha, num_topics)
    checks.check_count("num_docs", num_docs)
    checks.check_count("doc_length", doc_length)


@checks.validated(_check_sample_documents)
@functools.partial(jax.jit, static_argnames=("num_docs", "doc_length"))
def sample_documents(
    key: jax.Array, topics: jax.Array, alpha: jax.Array, num_docs: int, doc_length: int
) -> SyntheticCorpus:
    """The generative process: theta_d ~ Dirichlet(alpha), z ~ theta_d, w ~ topics[z].

    topics [K, V] rows sum to 1; alpha [K] or scalar (symmetric).
    """
    topics = jnp.asarray(topics)
    alpha = jnp.broadcast_to(jnp.asarray(alpha, jnp.float32), topics.shape[:1])
    theta_key, z_key, w_key = jax.random.split(key, 3)
    theta = jax.random.dirichlet(theta_key, alpha, (num_docs,))
    z = _inverse_cdf(
        jax.random.uniform(z_key, (num_docs, doc_length)), jnp.cumsum(theta, -1)[:, None, :]
    )
    w = _inverse_cdf(jax.random.uniform(w_key, (num_docs, doc_length)), jnp.cumsum(topics, -1)[z])
    return SyntheticCorpus(w, z, theta)


def topic_match_score(true_topics: np.ndarray, recovered: np.ndarray) -> float:
    """Mean cosine similarity of true topics [K, V] to recovered topics [K', V] under the
    one-to-one matching that maximises it (Hungarian); K' >= K."""
    a = np.asarray(true_topics, np.float64)
    b = np.asarray(recovered, np.float64)
    cos = (a / np.linalg.norm(a, axis=1, keepdims=True)) @ (
        b / np.linalg.norm(b, axis=1, keepdims=True)
    ).T
    rows, cols = linear_sum_assignment(-cos)
    return float(cos[rows, cols].mean())


# ----------------------------------------------------------------------------- the verbs

METHODS = ("batch", "online", "gibbs")


def default_config() -> ml_collections.ConfigDict:
    """The model part of an LDA run's config: what `init`, `fit` and the loaded model read.

    alpha, eta: symmetric Dirichlet priors (None: 1 / num_topics). method: "batch" or
    "online" VB, or "gibbs" (collapsed Gibbs, priors fixed). num_iters: batch passes, online
    epochs, or Gibbs sweeps. tol: batch VB stops when the relative ELBO gain falls below it.
    batch_size, learning_offset (tau0), learning_decay (kappa), shuffle: online VB.
    num_restarts, warm_start: batch VB (see `fit_vb`). total_docs: online VB's corpus size D
    (scikit-learn's `total_samples`; None: the documents fitted). perp_tol, evaluate_every:
    scikit-learn's stopping rule for batch VB (see `fit_vb`), off while perp_tol is None.
    """
    return ml_collections.ConfigDict(
        {
            "num_topics": 10,
            "alpha": None,
            "eta": None,
            "learn_alpha": False,
            "learn_eta": False,
            "learning_offset": 1024.0,
            "learning_decay": 0.7,
            "max_doc_iter": 100,
            "mean_change_tol": 1e-3,
            "method": "batch",
            "num_iters": 100,
            "tol": None,
            "batch_size": 64,
            "num_restarts": 1,
            "warm_start": False,
            "shuffle": True,
            "total_docs": None,
            "perp_tol": None,
            "evaluate_every": 1,
        }
    )


def _optional_float(value) -> float | None:
    return None if value is None else float(value)


def lda_config(config: ml_collections.ConfigDict, vocab_size: int) -> LDAConfig:
    """The hyperparameters the compiled steps take (static and hashable) from `config`."""
    return LDAConfig(
        int(config.num_topics),
        int(vocab_size),
        alpha=_optional_float(config.alpha),
        eta=_optional_float(config.eta),
        learn_alpha=bool(config.learn_alpha),
        learn_eta=bool(config.learn_eta),
        learning_offset=float(config.learning_offset),
        learning_decay=float(config.learning_decay),
        max_doc_iter=int(config.max_doc_iter),
        mean_change_tol=float(config.mean_change_tol),
    )


def _documents(data: dict) -> Documents:
    if not isinstance(data, dict) or "x" not in data:
        raise ValueError(
            "data must be {'x': BagOfWords(ids [D, L], counts [D, L]) or a documents x "
            "vocabulary count matrix [D, V], dense or scipy.sparse} (optionally with 'vocab_size')"
        )
    return data["x"]


def meta_from_data(data: dict, config: ml_collections.ConfigDict) -> dict:
    """{'num_topics', 'vocab_size'}: data['vocab_size'] if given, else a count matrix's
    columns or the bags' largest id + 1."""
    if isinstance(data, dict) and "vocab_size" in data:
        vocab_size = checks.check_count("data['vocab_size']", data["vocab_size"])
    elif isinstance(x := _documents(data), BagOfWords):
        vocab_size = int(np.asarray(x.ids).max(initial=0)) + 1
    else:
        vocab_size = checks.check_count("data['x'].shape[1] (the vocabulary)", np.shape(x)[-1])
    return {"num_topics": int(config.num_topics), "vocab_size": int(vocab_size)}


def init(key: jax.Array, config: ml_collections.ConfigDict, meta: dict) -> VBState:
    """Fresh parameters: lambda ~ about Gamma(100, 1/100), the priors from `config`."""
    return vb.init_vb(key, lda_config(config, meta["vocab_size"]))


def fit(
    key: jax.Array,
    data: dict,
    config: ml_collections.ConfigDict,
    init: VBState | None = None,
    *,
    mesh: Mesh | None = None,
) -> tuple[VBState, dict]:
    """Fits LDA to data = {'x': documents} by config.method; returns (params, history).

    The documents are bags of words, or a documents x vocabulary count matrix [D, V], dense or
    scipy.sparse (CSR, CSC, COO: scikit-learn's CountVectorizer output), as `check_documents`
    reads them.

    params is a VBState for every method: a Gibbs fit gives q(beta_k) = Dirichlet(n_kw + eta),
    the topics' posterior given the last sweep's assignments, so E[beta] is the usual Gibbs
    estimate. history: 'objective' (batch: the ELBO each pass's E-step reached, before its
    M-step; online: the minibatch estimate of the ELBO per word after each update; gibbs:
    log p(w | z) after each sweep),
    'num_iters' (passes, epochs or sweeps run) and, for VB, 'converged' (batch VB stopped by
    config.tol or config.perp_tol) and, with perp_tol, 'perplexity' (each evaluation's).
    `init` continues VB from given parameters; Gibbs refuses it. With a `mesh`,
    documents are sharded over its 'data' axis.
    """
    model = lda_config(config, meta_from_data(data, config)["vocab_size"])
    bags = BagOfWords(*check_documents(_documents(data), model.vocab_size, "data['x']"))
    num_iters = checks.check_count("config.num_iters", config.num_iters)
    if config.method == "gibbs":
        if init is not None:
            raise ValueError("init: collapsed Gibbs starts from random assignments; pass None")
        state, _, log_probs = gibbs.fit_gibbs(key, bags, model, num_iters=num_iters, mesh=mesh)
        params = gibbs.gibbs_params(state, model, num_iters)
        return params, {"objective": np.asarray(log_probs), "num_iters": num_iters}
    if config.method not in METHODS:
        raise ValueError(f"config.method must be one of {METHODS}, got {config.method!r}")
    params, history = vb.fit_vb(
        key,
        bags,
        model,
        method=config.method,
        num_iters=num_iters,
        batch_size=int(config.batch_size),
        mesh=mesh,
        tol=_optional_float(config.tol),
        state=init,
        shuffle=bool(config.shuffle),
        num_restarts=int(config.num_restarts),
        warm_start=bool(config.warm_start),
        total_docs=None if config.total_docs is None else int(config.total_docs),
        perp_tol=_optional_float(config.perp_tol),
        evaluate_every=int(config.evaluate_every),
    )
    passes = len(history.bounds) if config.method == "batch" else num_iters
    result = {
        "objective": np.asarray(history.bounds),
        "num_iters": passes,
        "converged": history.converged,
    }
    if history.perplexities is not None:
        result["perplexity"] = np.asarray(history.perplexities)
    return params, result


def _params_config(params: VBState, max_doc_iter: int, mean_change_tol: float) -> LDAConfig:
    """The sizes `params` fix, with the document fixed point's budget; checks params."""
    lam = checks.check_array("params.lam", params.lam, ("K", "V"), positive=True)
    config = LDAConfig(*lam.shape, max_doc_iter=max_doc_iter, mean_change_tol=mean_change_tol)
    check_state(params, config)
    return config


@functools.partial(jax.jit, static_argnames="config")
def _document_bounds(params: VBState, ids, counts, config: LDAConfig):
    log_beta = dirichlet_expectation(params.lam)
    gamma = _infer_gamma(log_beta, params.alpha, ids, counts, config)
    return document_bounds(log_beta, params.alpha, ids, counts, gamma)


def log_prob_bound(
    key: jax.Array,
    params: VBState,
    x: Documents,
    *,
    max_doc_iter: int = 100,
    mean_change_tol: float = 1e-3,
) -> jax.Array:
    """A lower bound on each document's log probability [B] (nats): the ELBO of
    log integral p(w_d | beta) q(beta) dbeta, the predictive under the fitted q(beta), with
    q(theta_d) fitted from scratch. log p(w_d) itself is intractable. Summed over a corpus
    and plus `topic_bound` it is `elbo`. The key is unused (the bound is deterministic)."""
    del key
    config = _params_config(params, max_doc_iter, mean_change_tol)
    ids, counts = check_documents(x, config.vocab_size)
    return _document_bounds(params, ids, counts, config)


def sample(
    key: jax.Array,
    params: VBState,
    num: int,
    *,
    y: Any = None,
    length: int = 100,
    as_counts: bool = False,
) -> BagOfWords | np.ndarray:
    """`num` new documents of `length` words each from the generative process with the topics
    E[beta]: bags of words [num, <= length], or with `as_counts` a documents x vocabulary
    count matrix [num, V] (the command line's text layout). `sample_documents` also returns
    z and theta."""
    if y is not None:
        raise ValueError("y: LDA has no label to sample given; pass y=None")
    checks.check_count("num", num)
    checks.check_count("length", length)
    corpus = sample_documents(key, topic_word(params), params.alpha, num, length)
    bags = bag_of_ids(np.asarray(corpus.words))
    return to_dense(bags, params.lam.shape[1]) if as_counts else bags
