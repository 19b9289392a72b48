"""Text to padded sparse bags of words: reading, tokenizing, vocabulary, bags.

A corpus is a list of documents (strings). `tokenize` lower-cases, keeps runs of letters
(Unicode letters, so stemmed or accented words survive) of at least two characters and
drops stop words. `build_vocabulary` keeps frequent words that are not in too many
documents; `bag_of_words` turns token lists into a padded sparse layout,

  ids    int32   [D, L]   word ids of the distinct words of each document,
  counts float32 [D, L]   how often each occurs; padding slots hold id 0 with count 0,

with L the largest number of distinct words in a document (or `max_unique`). A documents x
vocabulary matrix is never formed: memory is D * L, not D * V. Models weight every slot
by its count, so padding needs no mask.

Rules for awkward input: blank lines are not documents (`read_corpus` skips them); words
outside the vocabulary are dropped; a document left with no words is an all-padding row
(count 0: it contributes nothing to fits or perplexities).
"""

import collections
import gzip
import pathlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import scipy.sparse

# Function words of English: frequent everywhere, so they carry no topic.
ENGLISH_STOP_WORDS: frozenset[str] = frozenset(
    """
a about above after again against ago all almost along already also although always am
among an and another any anyone anything are around as at away back be became because
become been before being below between both but by can cannot could did do does doing
done down during each either else enough even ever every few for from further get gets
got had has have having he her here hers herself him himself his how however i if in
into is it its itself just last least less let like made make many may me might mine
more most much must my myself neither never no nor not now of off often on once one only
or other others our ours ourselves out over own per perhaps quite rather really said same
say says see seem seemed seems several shall she should since so some still such than
that the their theirs them themselves then there these they this those though through
thus to too toward towards under until up upon us very was we well were what whatever
when where whether which while who whom whose why will with within without would yet you
your yours yourself yourselves
""".split()
)

# Runs of letters: [^\W\d_] is "a word character that is neither a digit nor '_'".
_LETTERS = re.compile(r"[^\W\d_]+")
_MIN_TOKEN_LENGTH = 2


def read_corpus(path: str | pathlib.Path) -> list[str]:
    """One document per line of a UTF-8 text file (gzip-compressed if it ends in .gz).

    Blank lines are skipped; surrounding whitespace is stripped.
    """
    path = pathlib.Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def tokenize(text: str, stop_words: frozenset[str] = ENGLISH_STOP_WORDS) -> list[str]:
    """Lower-cased runs of letters of length >= 2, stop words removed, in text order."""
    return [
        t
        for t in _LETTERS.findall(text.lower())
        if len(t) >= _MIN_TOKEN_LENGTH and t not in stop_words
    ]


@dataclass(frozen=True)
class Vocabulary:
    """Words in id order; `index` maps a word to its id."""

    words: tuple[str, ...]
    index: Mapping[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if len(set(self.words)) != len(self.words):
            raise ValueError("Vocabulary words must be distinct")
        object.__setattr__(self, "index", {w: i for i, w in enumerate(self.words)})

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self.index

    def ids(self, tokens: Iterable[str]) -> list[int]:
        """Ids of the tokens in the vocabulary, others dropped."""
        return [self.index[t] for t in tokens if t in self.index]


class BagOfWords(NamedTuple):
    """Padded sparse bags: ids int32 [D, L], counts float32 [D, L] (padding: id 0, count 0)."""

    ids: np.ndarray
    counts: np.ndarray

    @property
    def num_docs(self) -> int:
        return self.ids.shape[0]

    def doc_lengths(self) -> np.ndarray:
        """Words per document, float32 [D]."""
        return self.counts.sum(axis=1)

    def subset(self, rows) -> "BagOfWords":
        """The documents `rows` (an index array, slice or boolean mask)."""
        return BagOfWords(self.ids[rows], self.counts[rows])


def build_vocabulary(
    token_lists: Sequence[Sequence[str]],
    min_count: int = 1,
    max_doc_fraction: float = 1.0,
    max_size: int | None = None,
) -> Vocabulary:
    """Words occurring >= `min_count` times in all, in <= `max_doc_fraction` of documents.

    Ordered by decreasing total count, ties alphabetically; the `max_size` most frequent
    are kept when given.
    """
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    if not 0.0 < max_doc_fraction <= 1.0:
        raise ValueError(f"max_doc_fraction must be in (0, 1], got {max_doc_fraction}")
    if max_size is not None and max_size < 1:
        raise ValueError(f"max_size must be >= 1 or None, got {max_size}")
    if not token_lists:
        raise ValueError("token_lists is empty: no documents to build a vocabulary from")
    total = collections.Counter()
    doc_freq = collections.Counter()
    for tokens in token_lists:
        total.update(tokens)
        doc_freq.update(set(tokens))
    max_docs = max_doc_fraction * len(token_lists)
    kept = [w for w, c in total.items() if c >= min_count and doc_freq[w] <= max_docs]
    kept.sort(key=lambda w: (-total[w], w))
    if max_size is not None:
        kept = kept[:max_size]
    if not kept:
        raise ValueError(
            f"no word passes min_count={min_count} and max_doc_fraction={max_doc_fraction} "
            f"({len(total)} distinct words in {len(token_lists)} documents)"
        )
    return Vocabulary(tuple(kept))


def bag_of_ids(id_lists: Sequence[Sequence[int]], max_unique: int | None = None) -> BagOfWords:
    """Padded sparse bags from lists of word ids (repeats allowed).

    Each row holds a document's distinct ids in increasing order. A document with more than
    `max_unique` distinct words keeps its `max_unique` most frequent ones (ties: smaller
    id) - the rule that bounds memory on very long documents.
    """
    if max_unique is not None and max_unique < 1:
        raise ValueError(f"max_unique must be >= 1 or None, got {max_unique}")
    bags = []
    for doc in id_lists:
        unique, counts = np.unique(np.asarray(doc, dtype=np.int64), return_counts=True)
        if max_unique is not None and len(unique) > max_unique:
            keep = np.sort(np.lexsort((unique, -counts))[:max_unique])
            unique, counts = unique[keep], counts[keep]
        bags.append((unique, counts))
    width = max([len(u) for u, _ in bags] + [1])
    ids = np.zeros((len(bags), width), np.int32)
    counts = np.zeros((len(bags), width), np.float32)
    for d, (u, c) in enumerate(bags):
        ids[d, : len(u)] = u
        counts[d, : len(u)] = c
    return BagOfWords(ids, counts)


def bag_of_words(
    token_lists: Sequence[Sequence[str]], vocab: Vocabulary, max_unique: int | None = None
) -> BagOfWords:
    """Padded sparse bags [D, L] of token lists; out-of-vocabulary tokens are dropped."""
    return bag_of_ids([vocab.ids(tokens) for tokens in token_lists], max_unique)


def to_dense(bags: BagOfWords, vocab_size: int) -> np.ndarray:
    """Documents x vocabulary counts, float32 [D, V]: for small tests and reference libraries
    only."""
    dense = np.zeros((bags.num_docs, vocab_size), np.float32)
    rows = np.repeat(np.arange(bags.num_docs), bags.ids.shape[1])
    np.add.at(dense, (rows, bags.ids.reshape(-1)), bags.counts.reshape(-1))
    return dense


def to_sparse(bags: BagOfWords, vocab_size: int) -> scipy.sparse.csr_array:
    """Documents x vocabulary counts as a CSR matrix [D, V] (float32; CountVectorizer's
    layout, whose counts are int64): what naive Bayes fits without ever making it dense."""
    words = bags.counts.reshape(-1) != 0  # the padding slots
    rows = np.repeat(np.arange(bags.num_docs), bags.ids.shape[1])[words]
    return scipy.sparse.csr_array(
        (bags.counts.reshape(-1)[words], (rows, bags.ids.reshape(-1)[words])),
        shape=(bags.num_docs, vocab_size),
        dtype=np.float32,
    )


def from_dense(matrix: np.ndarray) -> BagOfWords:
    """Padded sparse bags of a documents x vocabulary count matrix [D, V] (integer counts)."""
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or (matrix < 0).any() or (matrix != np.round(matrix)).any():
        raise ValueError("matrix must be a 2-D array of non-negative integer counts")
    return bag_of_ids(
        [np.repeat(np.arange(matrix.shape[1]), row.astype(np.int64)) for row in matrix]
    )
