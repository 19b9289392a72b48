"""LDA by collapsed Gibbs sampling (Griffiths & Steyvers 2004).

Each token's topic is resampled from
  p(z = k | rest) ∝ (n_dk + alpha_k) (n_kw + eta) / (n_k + V eta)   (counts without the token).
A sweep (`gibbs_step`) is a `lax.scan` over token positions with all documents of a device
sampled at once (vmap-like vectorisation over documents): every document's own counts n_dk
are exact, and the topic-word counts a document sees include all tokens up to the previous
position. So even on one device the sweep is the partially synchronous (AD-LDA, Newman et
al. 2009) sampler with one "processor" per document, not the exact sequential sampler -
exact only when one document is sampled at a time. Across devices (`jax.shard_map` over
'data'), each device sweeps its documents against its own copy of the topic-word counts,
keyed by fold_in(key, axis_index('data')), and the count deltas are `psum`'d at the end of
every sweep. After each sweep the counts equal the recount of the assignments exactly.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from genjax_lab.core import checks
from genjax_lab.core.mesh import DATA_AXIS
from genjax_lab.data.text import BagOfWords
from genjax_lab.models.lda.maths import (
    LDAConfig,
    VBState,
    _inverse_cdf,
    _pad_rows,
    _put,
    check_documents,
)


class Tokens(NamedTuple):
    """Documents as token slots: words int32 [D, N], mask float32 [D, N] (0 on padding slots)."""

    words: np.ndarray
    mask: np.ndarray


class GibbsState(NamedTuple):
    z: jax.Array  # int32 [D, N] topic of each token slot (padding slots: ignored)
    doc_topic: jax.Array  # int32 [D, K] n_dk
    topic_word: jax.Array  # int32 [K, V] n_kw (replicated)
    topic_total: jax.Array  # int32 [K] n_k (replicated)


def tokens_from_bags(bags: BagOfWords, vocab_size: int) -> Tokens:
    """Expands bags into token slots, N = longest document (counts must be integers)."""
    ids, counts = check_documents(bags, vocab_size, "bags")
    if (counts != np.round(counts)).any():
        raise ValueError("counts must be whole numbers for Gibbs sampling")
    reps = counts.astype(np.int64)
    lengths = reps.sum(1)
    words = np.zeros((ids.shape[0], max(int(lengths.max(initial=0)), 1)), np.int32)
    mask = np.zeros(words.shape, np.float32)
    for d in range(ids.shape[0]):
        words[d, : lengths[d]] = np.repeat(ids[d], reps[d])
        mask[d, : lengths[d]] = 1.0
    return Tokens(words, mask)


def _count(z, words, mask, num_topics: int, vocab_size: int):
    """(n_dk [D, K], n_kw [K, V], n_k [K]) of the assignments z [D, N]."""
    onehot = jax.nn.one_hot(z, num_topics, dtype=jnp.int32) * mask[..., None].astype(jnp.int32)
    doc_topic = onehot.sum(1)
    topic_word = (
        jnp.zeros((num_topics, vocab_size), jnp.int32)
        .at[:, words.reshape(-1)]
        .add(onehot.reshape(-1, num_topics).T)
    )
    return doc_topic, topic_word, doc_topic.sum(0)


def init_gibbs(key: jax.Array, tokens: Tokens, num_topics: int, vocab_size: int) -> GibbsState:
    """Uniformly random assignments and their counts."""
    checks.check_count("num_topics", num_topics)
    checks.check_count("vocab_size", vocab_size)
    return _init_gibbs(
        key, jnp.asarray(tokens.words), jnp.asarray(tokens.mask), num_topics, vocab_size
    )


@functools.partial(jax.jit, static_argnames=("num_topics", "vocab_size"))
def _init_gibbs(key, words, mask, num_topics: int, vocab_size: int) -> GibbsState:
    z = jax.random.randint(key, words.shape, 0, num_topics, jnp.int32)
    return GibbsState(z, *_count(z, words, mask, num_topics, vocab_size))


def gibbs_step(
    key: jax.Array, state: GibbsState, words: jax.Array, mask: jax.Array, alpha: float, eta: float
) -> GibbsState:
    """One sweep of this device's documents (words, mask [B, N]) against its copy of the
    topic-word counts."""
    num_topics, vocab_size = state.topic_word.shape

    def position(carry, xs):
        doc_topic, tw, tt = carry
        z_old, w, m, u = xs  # [B] each
        old = jax.nn.one_hot(z_old, num_topics, dtype=jnp.int32) * m.astype(jnp.int32)[:, None]
        weights = (
            ((doc_topic - old) + alpha) * ((tw.T[w] - old) + eta) / ((tt - old) + vocab_size * eta)
        )
        z_new = jnp.where(m > 0, _inverse_cdf(u, jnp.cumsum(weights, axis=-1)), z_old)
        delta = (
            jax.nn.one_hot(z_new, num_topics, dtype=jnp.int32) * m.astype(jnp.int32)[:, None] - old
        )
        return (doc_topic + delta, tw.at[:, w].add(delta.T), tt + delta.sum(0)), z_new

    uniforms = jax.random.uniform(key, words.shape[::-1])  # [N, B]
    xs = (state.z.T, words.T, mask.T, uniforms)
    (doc_topic, tw, tt), z = jax.lax.scan(
        position, (state.doc_topic, state.topic_word, state.topic_total), xs
    )
    return GibbsState(z.T, doc_topic, tw, tt)


def log_prob_given_assignments(state: GibbsState, eta: float) -> jax.Array:
    """log p(w | z) with the topics integrated out (Griffiths & Steyvers 2004, eq. 2): []."""
    num_topics, vocab_size = state.topic_word.shape
    return (
        num_topics * (gammaln(vocab_size * eta) - vocab_size * gammaln(eta))
        + gammaln(state.topic_word + eta).sum()
        - gammaln(state.topic_total + vocab_size * eta).sum()
    )


def make_sweep(alpha: float, eta: float, mesh: Mesh | None = None):
    """`sweep(state, words, mask, key) -> state`: one sweep of every document, traceable.

    With a mesh, each device sweeps its documents (sharded over 'data') keyed by
    fold_in(key, axis_index('data')) and the shared counts' changes are summed after the
    sweep (AD-LDA); without one, the one-device case (device index 0). `fit_gibbs` scans it;
    the training loop's Gibbs family (models/lda/family.py) runs it once a step.
    """
    checks.check_positive("alpha", alpha)
    checks.check_positive("eta", eta)

    def device_sweep(state, words, mask, key):
        if mesh is None:
            return gibbs_step(jax.random.fold_in(key, 0), state, words, mask, alpha, eta)
        device_key = jax.random.fold_in(key, jax.lax.axis_index(DATA_AXIS))
        # The device's copy of the shared counts diverges from the others during the sweep.
        local = state._replace(
            topic_word=jax.lax.pcast(state.topic_word, DATA_AXIS, to="varying"),
            topic_total=jax.lax.pcast(state.topic_total, DATA_AXIS, to="varying"),
        )
        new = gibbs_step(device_key, local, words, mask, alpha, eta)
        # AD-LDA: every device's changes to the shared counts, summed.
        tw = state.topic_word + jax.lax.psum(new.topic_word - state.topic_word, DATA_AXIS)
        tt = state.topic_total + jax.lax.psum(new.topic_total - state.topic_total, DATA_AXIS)
        return GibbsState(new.z, new.doc_topic, tw, tt)

    if mesh is None:
        return device_sweep
    specs = GibbsState(P(DATA_AXIS), P(DATA_AXIS), P(), P())
    return jax.shard_map(
        device_sweep,
        mesh=mesh,
        in_specs=(specs, P(DATA_AXIS), P(DATA_AXIS), P()),
        out_specs=specs,
    )


def make_gibbs_steps(alpha: float, eta: float, num_iters: int, mesh: Mesh | None = None):
    """Jitted `run(state, words, mask, key) -> (state, log p(w | z) per sweep [num_iters])`.

    Sweep s is `make_sweep`'s with fold_in(key, s).
    """
    checks.check_count("num_iters", num_iters)
    device_sweep = make_sweep(alpha, eta, mesh)

    @jax.jit
    def run(state, words, mask, key):
        def sweep(state, s):
            state = device_sweep(state, words, mask, jax.random.fold_in(key, s))
            return state, log_prob_given_assignments(state, eta)

        return jax.lax.scan(sweep, state, jnp.arange(num_iters))

    return run


def fit_gibbs(
    key: jax.Array,
    bags: BagOfWords,
    config: LDAConfig,
    *,
    num_iters: int = 200,
    mesh: Mesh | None = None,
) -> tuple[GibbsState, Tokens, jax.Array]:
    """Collapsed Gibbs from random assignments, symmetric priors config.alpha0 / eta0.

    With a mesh, documents are padded with empty rows to a multiple of its device count and
    sharded over 'data'. Returns (state, tokens incl. padding rows, log p(w | z) per sweep).
    """
    tokens = tokens_from_bags(bags, config.vocab_size)
    devices = 1 if mesh is None else mesh.devices.size
    (words, mask), _ = _pad_rows([tokens.words, tokens.mask], devices)
    init_key, sweep_key = jax.random.split(key)
    state = init_gibbs(init_key, Tokens(words, mask), config.num_topics, config.vocab_size)
    if mesh is not None:
        state = GibbsState(
            *_put([state.z, state.doc_topic], mesh),
            *jax.device_put([state.topic_word, state.topic_total], NamedSharding(mesh, P())),
        )
    words_d, mask_d = _put([words, mask], mesh)
    run = make_gibbs_steps(config.alpha0, config.eta0, num_iters, mesh)
    state, log_liks = run(state, words_d, mask_d, sweep_key)
    return state, Tokens(words, mask), log_liks


def gibbs_params(state: GibbsState, config: LDAConfig, num_sweeps) -> VBState:
    """The chain as the verbs' parameters: q(beta_k) = Dirichlet(n_kw + eta), the topics'
    posterior given the assignments (so E[beta] is the usual Gibbs estimate), fixed priors."""
    return VBState(
        (state.topic_word + config.eta0).astype(jnp.float32),
        jnp.full((config.num_topics,), config.alpha0, jnp.float32),
        jnp.float32(config.eta0),
        jnp.asarray(num_sweeps, jnp.int32),
    )


def gibbs_topics(state: GibbsState, eta: float) -> jax.Array:
    """Posterior-mean topics (n_kw + eta) / (n_k + V eta): [K, V]."""
    vocab_size = state.topic_word.shape[1]
    return (state.topic_word + eta) / (state.topic_total[:, None] + vocab_size * eta)


def gibbs_doc_topics(state: GibbsState, alpha: float) -> jax.Array:
    """Posterior-mean proportions (n_dk + alpha) / (N_d + K alpha): [D, K]."""
    num_topics = state.doc_topic.shape[1]
    return (state.doc_topic + alpha) / (state.doc_topic.sum(-1, keepdims=True) + num_topics * alpha)
