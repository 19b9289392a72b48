"""Topic coherence as gensim's CoherenceModel computes it: UMass (coherence='u_mass') and
NPMI (coherence='c_npmi'), per topic, from a topic-word matrix [K, V] and a corpus.

Each topic is its `top_n` most probable words w_1..w_n (most probable first; ties: smaller
id). With D(w) the number of counting units holding w, D(w, w') those holding both, N the
units and eps = 1e-12 (gensim's EPSILON), natural logs:

  UMass  units are documents (any word count > 0 is presence; every document counts in N,
         empty ones too). Mean over the pairs i > j of
           log((D(w_i, w_j) / N + eps) / (D(w_j) / N)),   0 where D(w_j) = 0 (as gensim).
  NPMI   units are sliding windows of `window_size` tokens over each text (gensim's boolean
         sliding window, default 10): a text of T >= W tokens gives the T - W + 1 windows
         starting at 0..T - W, a shorter one (also an empty one) is one window. Mean over
         the ordered pairs i != j of
           log((D(w_i, w_j) / N + eps) / (D(w_i) / N D(w_j) / N)) / -log(D(w_i, w_j) / N + eps).

gensim's window counts are reproduced exactly, including how its accumulator
(WordOccurrenceAccumulator) slides: it keeps a set of the window's words, and on each step
removes the token that left and adds the one that entered, so a word that leaves the window
while another occurrence of it is still inside is dropped until it enters again. So word w
counts in window t iff its last occurrence p in window t has no occurrence of w in
[p - W + 1, t - 1]; each occurrence p therefore counts in one interval of windows, and
co-occurrences are interval overlaps of occurrences less than W apart, counted without
forming the windows (O(tokens x W)). Only gensim's single-process accumulator is matched
(CoherenceModel(processes=1); its parallel one counts windows differently).

The counts are integers gathered on the host; the measures, over all topics at once, are one
jitted function of the top words' counts.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse

from genjax_lab.core import checks
from genjax_lab.models.lda.maths import Documents, check_documents

EPSILON = 1e-12  # gensim.topic_coherence.direct_confirmation_measure.EPSILON


def _top_words(topics, top_n: int) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct top words [R], each topic's top words as indices into them [K, n])."""
    topics = checks.check_array("topics", topics, ("K", "V"))
    checks.check_count("top_n", top_n)
    if top_n > topics.shape[1]:
        raise ValueError(f"top_n ({top_n}) must be <= the vocabulary ({topics.shape[1]} words)")
    top = np.argsort(-topics, axis=1, kind="stable")[:, :top_n]
    words, index = np.unique(top, return_inverse=True)
    return words, index.reshape(top.shape)


def _relevant(words: np.ndarray, vocab_size: int) -> np.ndarray:
    """Word id -> index among `words`, -1 for every other word: [V]."""
    lookup = np.full(vocab_size, -1, np.int64)
    lookup[words] = np.arange(len(words))
    return lookup


@jax.jit
def _umass(top: jax.Array, occurrences: jax.Array, co: jax.Array, units: jax.Array):
    n = top.shape[1]
    both = co[top[:, :, None], top[:, None, :]] / units  # [K, n, n]: (w_i, w_j)
    star = (occurrences[top] / units)[:, None, :]  # D(w_j) / N
    terms = jnp.where(star > 0, jnp.log((both + EPSILON) / jnp.where(star > 0, star, 1.0)), 0.0)
    below = jnp.tril(jnp.ones((n, n), bool), -1)
    return jnp.where(below, terms, 0.0).sum((1, 2)) / below.sum()


@jax.jit
def _npmi(top: jax.Array, occurrences: jax.Array, co: jax.Array, units: jax.Array):
    n = top.shape[1]
    both = co[top[:, :, None], top[:, None, :]] / units + EPSILON
    single = occurrences[top] / units
    npmi = jnp.log(both / (single[:, :, None] * single[:, None, :])) / -jnp.log(both)
    off = ~jnp.eye(n, dtype=bool)
    return jnp.where(off, npmi, 0.0).sum((1, 2)) / off.sum()


def _measure(fn, top, occurrences, co, units) -> np.ndarray:
    return np.asarray(
        fn(
            jnp.asarray(top, jnp.int32),
            jnp.asarray(occurrences, jnp.float32),
            jnp.asarray(co, jnp.float32),
            jnp.float32(units),
        )
    )


def umass_coherence(topics: jax.Array, x: Documents, *, top_n: int = 10) -> np.ndarray:
    """UMass coherence of each topic [K] (gensim's coherence='u_mass'): topics [K, V] (e.g.
    `topic_word(params)`), x the corpus (bags of words or a dense or scipy.sparse count
    matrix [D, V]) whose documents count co-occurrences."""
    words, top = _top_words(topics, top_n)
    vocab_size = np.shape(topics)[1]
    ids, counts = check_documents(x, vocab_size)
    column = _relevant(words, vocab_size)[ids]
    rows = np.broadcast_to(np.arange(ids.shape[0])[:, None], ids.shape)
    keep = (counts > 0) & (column >= 0)
    presence = scipy.sparse.csr_array(
        (np.ones(keep.sum()), (rows[keep], column[keep])), shape=(ids.shape[0], len(words))
    )
    presence.sum_duplicates()
    presence.data[:] = 1.0
    co = (presence.T @ presence).toarray()
    return _measure(_umass, top, np.diag(co), co, ids.shape[0])


def window_counts(
    texts: Sequence[Sequence[int]], words: np.ndarray, vocab_size: int, window_size: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """gensim's sliding-window counts of `words` [R] over texts (word ids in order):
    (windows holding each word [R], holding each pair [R, R] (diagonal: each word's), the
    number of windows), by occurrence intervals (see the module docstring)."""
    checks.check_count("window_size", window_size)
    lookup = _relevant(words, vocab_size)
    lengths = np.array([len(t) for t in texts], np.int64)
    tokens = np.concatenate([np.asarray(t, np.int64).reshape(-1) for t in texts] + [[]])
    tokens = tokens.astype(np.int64)  # an empty list concatenates as float
    if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab_size):
        raise ValueError(f"texts must hold word ids in [0, vocab_size={vocab_size})")
    windows = np.maximum(lengths - window_size + 1, 1)
    first_window = np.cumsum(windows) - windows
    doc = np.repeat(np.arange(len(lengths)), lengths)
    position = np.arange(tokens.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    word = lookup[tokens]
    keep = word >= 0
    doc, position, word = doc[keep], position[keep], word[keep]
    # Occurrences grouped by (text, word), in text order: the next one and the earliest one
    # less than window_size before each.
    group = doc * len(words) + word
    order = np.lexsort((position, group))
    group, position, doc, word = group[order], position[order], doc[order], word[order]
    stride = int(lengths.max(initial=0)) + 2 * window_size
    key = group * stride + position + window_size
    same = np.append(group[1:] == group[:-1], False)
    following = np.where(same, np.append(position[1:], 0), np.iinfo(np.int64).max // 4)
    earliest = position[np.searchsorted(key, group * stride + position + 1)]
    low = np.maximum(position - window_size + 1, 0)
    high = np.minimum(np.minimum(earliest, following - window_size), windows[doc] - 1)
    valid = low <= high
    low, high, doc, word, position = (a[valid] for a in (low, high, doc, word, position))
    low, high = low + first_window[doc], high + first_window[doc]
    num = len(words)
    occurrences = np.bincount(word, weights=high - low + 1, minlength=num)
    co = np.diag(occurrences)
    # Intervals overlap only for occurrences less than window_size apart in one text.
    order = np.lexsort((position, doc))
    low, high, doc, word, position = (a[order] for a in (low, high, doc, word, position))
    for k in range(1, window_size):
        a, b = slice(None, -k), slice(k, None)
        near = (doc[a] == doc[b]) & (position[b] - position[a] < window_size)
        overlap = np.minimum(high[a], high[b]) - np.maximum(low[a], low[b]) + 1
        pairs = near & (overlap > 0)
        cells = np.bincount(
            word[a][pairs] * num + word[b][pairs], weights=overlap[pairs], minlength=num * num
        ).reshape(num, num)
        co = co + cells + cells.T
    return occurrences, co, int(windows.sum())


def npmi_coherence(
    topics: jax.Array,
    texts: Sequence[Sequence[int]],
    *,
    top_n: int = 10,
    window_size: int = 10,
) -> np.ndarray:
    """NPMI coherence of each topic [K] (gensim's coherence='c_npmi'): topics [K, V], texts
    the corpus as word-id sequences in reading order (e.g. `Vocabulary.ids(tokens)` of each
    document), counted in sliding windows of `window_size` tokens. A top word that occurs in
    no window gives inf, as in gensim."""
    words, top = _top_words(topics, top_n)
    occurrences, co, units = window_counts(texts, words, np.shape(topics)[1], window_size)
    return _measure(_npmi, top, occurrences, co, units)
