"""Text pipeline: tokenizer rules, vocabulary filters, padded sparse bags against brute force."""

import collections
import gzip

import numpy as np
import pytest

from genjax_lab.data import text
from tests.helpers import shared_data


def test_tokenize_rules():
    tokens = text.tokenize("Hello, World! It's 2024: the CAFÉ's naïve dog_house x y")
    # lower-cased letter runs; digits, '_' and 1-letter runs split/dropped; stop words gone
    assert tokens == ["hello", "world", "café", "naïve", "dog", "house"]
    assert text.tokenize("the dog", stop_words=frozenset()) == ["the", "dog"]
    assert {"the", "and", "of", "is"} <= text.ENGLISH_STOP_WORDS


def test_read_corpus_plain_and_gzip_skip_blank_lines(tmp_path):
    lines = "first doc here\n\n  second doc  \n\nthird\n"
    (tmp_path / "c.txt").write_text(lines, encoding="utf-8")
    with gzip.open(tmp_path / "c.txt.gz", "wt", encoding="utf-8") as f:
        f.write(lines)
    expected = ["first doc here", "second doc", "third"]
    assert text.read_corpus(tmp_path / "c.txt") == expected
    assert text.read_corpus(str(tmp_path / "c.txt.gz")) == expected


def test_build_vocabulary_filters_and_order():
    docs = [["a1", "b2", "b2", "cc"], ["b2", "cc", "dd"], ["b2", "ee", "ee", "ee"]]
    vocab = text.build_vocabulary(docs)
    # decreasing count (b2: 4, ee: 3, cc: 2), ties alphabetical
    assert vocab.words == ("b2", "ee", "cc", "a1", "dd")
    assert vocab.index["cc"] == 2 and "zz" not in vocab and len(vocab) == 5
    assert text.build_vocabulary(docs, min_count=2).words == ("b2", "ee", "cc")
    # b2 is in 3/3 documents, cc in 2/3
    assert text.build_vocabulary(docs, max_doc_fraction=0.5).words == ("ee", "a1", "dd")
    assert text.build_vocabulary(docs, max_size=2).words == ("b2", "ee")
    with pytest.raises(ValueError, match="min_count"):
        text.build_vocabulary(docs, min_count=0)
    with pytest.raises(ValueError, match="max_doc_fraction"):
        text.build_vocabulary(docs, max_doc_fraction=0.0)
    with pytest.raises(ValueError, match="no word passes"):
        text.build_vocabulary(docs, min_count=100)
    with pytest.raises(ValueError, match="token_lists is empty"):
        text.build_vocabulary([])
    with pytest.raises(ValueError, match="distinct"):
        text.Vocabulary(("a", "a"))


def test_bag_of_words_matches_brute_force_counts():
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(30)]
    docs = [list(rng.choice(words, size=rng.integers(0, 40))) for _ in range(50)] + [["oov", "oov"]]
    vocab = text.Vocabulary(tuple(words[:20]))  # w20..w29 and "oov" are out of vocabulary
    bags = text.bag_of_words(docs, vocab)
    assert bags.ids.dtype == np.int32 and bags.counts.dtype == np.float32
    assert bags.ids.shape == bags.counts.shape and bags.ids.shape[0] == len(docs)
    for d, doc in enumerate(docs):
        expected = collections.Counter(vocab.index[t] for t in doc if t in vocab)
        got = {int(i): float(c) for i, c in zip(bags.ids[d], bags.counts[d]) if c > 0}
        assert got == expected
        # padding: id 0 with count 0, after the real slots
        n = len(expected)
        assert (bags.ids[d, n:] == 0).all() and (bags.counts[d, n:] == 0).all()
    assert bags.counts[-1].sum() == 0  # only OOV words: an empty row, by rule
    dense = text.to_dense(bags, len(vocab))
    assert dense.shape == (len(docs), 20) and dense.sum() == bags.counts.sum()
    back = text.from_dense(dense)
    np.testing.assert_array_equal(text.to_dense(back, 20), dense)
    sparse = text.to_sparse(bags, len(vocab))  # CountVectorizer's layout: no padding stored
    assert sparse.dtype == np.float32 and sparse.nnz == int((bags.counts > 0).sum())
    np.testing.assert_array_equal(sparse.toarray(), dense)


def test_bag_of_ids_max_unique_keeps_most_frequent():
    bags = text.bag_of_ids([[5, 5, 5, 1, 1, 9, 3, 3]], max_unique=2)
    # 1 and 3 tie at two counts: the smaller id wins
    assert bags.ids.tolist() == [[1, 5]] and bags.counts.tolist() == [[2.0, 3.0]]
    with pytest.raises(ValueError, match="max_unique"):
        text.bag_of_ids([[1]], max_unique=0)
    empty = text.bag_of_ids([[], []])
    assert empty.ids.shape == (2, 1) and empty.counts.sum() == 0


def test_real_corpus_pipeline_is_sparse():
    docs = text.read_corpus(shared_data("text/lee_background.cor"))
    assert len(docs) == 300  # the last line has no newline
    tokens = [text.tokenize(d) for d in docs]
    vocab = text.build_vocabulary(tokens, min_count=2, max_doc_fraction=0.5)
    bags = text.bag_of_words(tokens, vocab)
    in_vocab = sum(t in vocab for doc in tokens for t in doc)
    assert bags.counts.sum() == in_vocab
    # the padded layout is far smaller than documents x vocabulary
    assert bags.ids.size * 10 < len(docs) * len(vocab)
    assert set(vocab.words).isdisjoint(text.ENGLISH_STOP_WORDS)
