"""LDA features of the reference libraries (issue #21, #19): scipy.sparse and CountVectorizer
input, online VB's corpus size (scikit-learn's total_samples), scikit-learn's perplexity
stopping rule, and gensim's UMass and NPMI topic coherence."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse
from sklearn.decomposition import LatentDirichletAllocation
from sklearn.feature_extraction.text import CountVectorizer

from genjax_lab.data import synthetic, text
from genjax_lab.models import lda

NAMES = [f"word{i:02d}" for i in range(25)]  # CountVectorizer keeps words of 2+ characters


@pytest.fixture(scope="module")
def corpus():
    """80 documents of 12 to 50 words from the bars topics: (word ids per document, the
    CountVectorizer matrix of their text, CSR int64 [80, 25])."""
    rng = np.random.default_rng(0)
    topics = synthetic.bars_topics()
    words = [
        rng.choice(25, p=topics[rng.integers(10)], size=rng.integers(12, 51)).tolist()
        for _ in range(80)
    ]
    texts = [" ".join(NAMES[w] for w in doc) for doc in words]
    matrix = CountVectorizer(vocabulary=NAMES).fit_transform(texts)
    return words, matrix


def sklearn_initial_state() -> lda.VBState:
    """scikit-learn's initial lambda for random_state=0, gamma(100, 1/100) [10, 25]."""
    lam = np.random.RandomState(0).gamma(100.0, 1.0 / 100.0, (10, 25))
    return lda.VBState(
        jnp.asarray(lam, jnp.float32), jnp.full(10, 1.0), jnp.float32(0.1), jnp.int32(0)
    )


def _config(method: str, num_iters: int, **overrides):
    config = lda.default_config()
    config.update(num_topics=10, alpha=1.0, eta=0.1, method=method, num_iters=num_iters)
    config.update(overrides)
    return config


# ----------------------------------------------------------------------------- sparse input


def test_sparse_and_count_vectorizer_input_give_the_dense_and_bag_numbers(corpus):
    """CountVectorizer's CSR matrix, its CSC, COO (duplicates unsummed) and float32 forms and
    the dense matrix become bitwise the padded bags of the word ids (the sparse ones straight
    from their indices, the caller's matrix left as it was), also as Gibbs's token slots; so
    a batch VB fit, ELBOs, proportions and perplexity on CSR are bitwise those on the bags
    and on the dense matrix."""
    words, csr = corpus
    assert scipy.sparse.issparse(csr) and csr.dtype == np.int64
    bags = text.bag_of_ids(words)
    dense = csr.toarray()
    coo = scipy.sparse.coo_array(  # one entry per token: duplicates left to sum
        (
            np.ones(sum(map(len, words)), np.int32),
            (np.repeat(np.arange(len(words)), list(map(len, words))), np.concatenate(words)),
        ),
        shape=dense.shape,
    )
    before = csr.copy()
    for name, x in {
        "csr": csr,
        "dense": dense,
        "csc": csr.tocsc(),
        "coo": coo,
        "float32": csr.astype(np.float32),
    }.items():
        ids, counts = lda.check_documents(x, 25)
        np.testing.assert_array_equal(ids, bags.ids, err_msg=name)
        np.testing.assert_array_equal(counts, bags.counts, err_msg=name)
        assert (ids.dtype, counts.dtype) == (np.int32, np.float32)
    assert (csr != before).nnz == 0
    for got, want in zip(lda.tokens_from_bags(csr, 25), lda.tokens_from_bags(bags, 25)):
        np.testing.assert_array_equal(got, want)
    config = _config("batch", 3)
    params, history = lda.fit(jax.random.key(1), {"x": csr}, config)
    assert params.lam.shape == (10, 25)  # the vocabulary is the matrix's width
    model = lda.lda_config(config, 25)
    for x in (bags, dense):
        other, other_history = lda.fit(jax.random.key(1), {"x": x, "vocab_size": 25}, config)
        np.testing.assert_array_equal(other.lam, params.lam)
        np.testing.assert_array_equal(other_history["objective"], history["objective"])
        np.testing.assert_array_equal(
            lda.log_prob_bound(None, params, x), lda.log_prob_bound(None, params, csr)
        )
        np.testing.assert_array_equal(lda.posterior(params, x), lda.posterior(params, csr))
        assert lda.perplexity(params, x, model) == lda.perplexity(params, csr, model)


def test_bad_sparse_counts_are_refused_naming_the_argument(corpus):
    _, csr = corpus
    params = lda.init_vb(jax.random.key(0), lda.LDAConfig(10, 25))
    negative = csr.astype(np.float64)
    negative.data[3] = -1.0
    with pytest.raises(ValueError, match="x: a documents x vocabulary matrix .* >= 0"):
        lda.posterior(params, negative)
    with pytest.raises(ValueError, match=r"data\['x'\]: .*whole word counts"):
        lda.fit(jax.random.key(0), {"x": csr * 0.5}, _config("batch", 1))
    with pytest.raises(ValueError, match=r"bags: .*whole word counts"):
        lda.perplexity(params, csr / 3.0, lda.LDAConfig(10, 25))
    with pytest.raises(ValueError, match=r"x must be \[B, 25\], got shape \(80, 24\)"):
        lda.log_prob_bound(None, params, csr[:, :24])
    nan = csr.astype(np.float32)
    nan.data[0] = np.nan
    with pytest.raises(ValueError, match=r"x \(its stored counts\) must be finite"):
        lda.posterior(params, nan)


# ----------------------------------------------------------------------------- online VB's D


def test_online_updates_given_the_corpus_size_are_sklearns_partial_fit(corpus):
    """Two online updates (minibatches of 40 of the 80 documents) scaled to a corpus of
    D = 1000 documents, from scikit-learn's initial lambda: lambda equals scikit-learn's
    partial_fit with total_samples=1000 to 2e-5 relative (measured 1.1e-5, float32; both
    fixed points run to convergence). Without total_docs, D is the 80 documents fitted: far
    from it."""
    _, csr = corpus
    sk = LatentDirichletAllocation(
        n_components=10,
        doc_topic_prior=1.0,
        topic_word_prior=0.1,
        learning_method="online",
        learning_offset=10.0,
        learning_decay=0.7,
        batch_size=40,
        total_samples=1000,
        max_doc_update_iter=1000,
        mean_change_tol=1e-10,
        random_state=0,
    )
    sk.partial_fit(csr.astype(np.float64))
    config = _config(
        "online",
        1,
        batch_size=40,
        shuffle=False,
        learning_offset=10.0,
        max_doc_iter=1000,
        mean_change_tol=0.0,
        total_docs=1000,
    )
    params, _ = lda.fit(jax.random.key(0), {"x": csr}, config, init=sklearn_initial_state())
    np.testing.assert_allclose(np.asarray(params.lam), sk.components_, rtol=2e-5)
    config.total_docs = None
    fitted, _ = lda.fit(jax.random.key(0), {"x": csr}, config, init=sklearn_initial_state())
    assert np.abs(np.asarray(fitted.lam) - sk.components_).max() > 10.0
    with pytest.raises(ValueError, match="total_docs must be >= 1"):
        lda.fit_vb(jax.random.key(0), text.bag_of_ids([[1]]), lda.LDAConfig(2, 5), total_docs=0)


def test_online_minibatches_are_padded_to_their_own_bucket(monkeypatch):
    """Online VB pads a minibatch to a bucket of its longest document (16 slots here, below
    the corpus's 25 by more than a quarter) or, close to it, to the corpus width; the fit is
    the one with every minibatch padded to the corpus width (float rounding only)."""
    rng = np.random.default_rng(2)
    short = [rng.choice(25, 6).tolist() for _ in range(16)]  # at most 6 distinct words
    full = [rng.permutation(25).tolist() + rng.choice(25, 20).tolist() for _ in range(48)]
    bags = text.bag_of_ids(short + full)
    assert bags.ids.shape[1] == 25
    widths = []
    step = lda.vb._online_step

    def spy(state, ids, *args, **kwargs):
        widths.append(ids.shape[1])
        return step(state, ids, *args, **kwargs)

    monkeypatch.setattr(lda.vb, "_online_step", spy)
    config = lda.LDAConfig(10, 25, alpha=1.0, eta=0.1, learning_offset=10.0)
    fit = functools.partial(
        lda.fit_vb,
        jax.random.key(3),
        bags,
        config,
        method="online",
        num_iters=1,
        batch_size=16,
        shuffle=False,
    )
    bucketed, _ = fit()
    monkeypatch.setattr(lda.vb, "_minibatch_width", lambda longest, width: width)
    padded, _ = fit()
    assert widths == [16, 25, 25, 25] + [25] * 4  # bucketed, then padded as before
    np.testing.assert_allclose(np.asarray(bucketed.lam), np.asarray(padded.lam), rtol=1e-5)


# ----------------------------------------------------------------------------- perp_tol


@pytest.mark.parametrize("evaluate_every, perp_tol", [(1, 0.1), (2, 0.5)])
def test_perp_tol_stops_batch_vb_where_sklearn_stops(corpus, evaluate_every, perp_tol):
    """scikit-learn's rule: every evaluate_every passes the training perplexity is evaluated
    and the fit stops once it moved by less than perp_tol. Same data and initial lambda: we
    stop after the same pass (scikit-learn's n_iter_ leaves out the pass its loop breaks on)
    with its lambda to 1%, and the last two evaluations are the ones that stopped it."""
    _, csr = corpus
    sk = LatentDirichletAllocation(
        n_components=10,
        doc_topic_prior=1.0,
        topic_word_prior=0.1,
        learning_method="batch",
        max_iter=60,
        evaluate_every=evaluate_every,
        perp_tol=perp_tol,
        max_doc_update_iter=200,
        mean_change_tol=1e-4,
        random_state=0,
    )
    sk.fit(csr.astype(np.float64))
    config = _config(
        "batch",
        60,
        max_doc_iter=200,
        mean_change_tol=1e-4,
        perp_tol=perp_tol,
        evaluate_every=evaluate_every,
    )
    params, history = lda.fit(jax.random.key(0), {"x": csr}, config, init=sklearn_initial_state())
    assert history["converged"] and history["num_iters"] < 60
    assert history["num_iters"] == sk.n_iter_ + 1
    ppl = history["perplexity"]
    assert len(ppl) == history["num_iters"] // evaluate_every
    assert abs(ppl[-1] - ppl[-2]) < perp_tol <= np.abs(np.diff(ppl[:-1])).min()
    np.testing.assert_allclose(np.asarray(params.lam), sk.components_, rtol=0.01, atol=0.01)


# ----------------------------------------------------------------------------- coherence


def test_umass_and_npmi_coherence_are_gensims(corpus):
    """gensim's CoherenceModel (u_mass over the documents, c_npmi over sliding windows of 10
    tokens, one process) on the same topics' top 6 words and the same corpus, also an empty
    and a short text: every topic's value to 1e-5. The top words of perturbed bars topics
    repeat within windows, where gensim's sliding counts differ from the windows' sets."""
    gensim = pytest.importorskip("gensim")
    words, csr = corpus
    texts = words + [[], [5, 5, 5]]
    rng = np.random.default_rng(1)
    topics = np.asarray(synthetic.bars_topics()) + rng.uniform(0, 0.05, (10, 25))
    top = np.argsort(-topics, axis=1, kind="stable")[:, :6]
    dictionary = gensim.corpora.Dictionary([NAMES])
    tokens = [[NAMES[w] for w in doc] for doc in texts]

    def reference(measure, **data):
        return gensim.models.CoherenceModel(
            topics=[[NAMES[w] for w in row] for row in top],
            dictionary=dictionary,
            coherence=measure,
            topn=6,
            processes=1,
            **data,
        ).get_coherence_per_topic()

    umass = reference("u_mass", corpus=[dictionary.doc2bow(t) for t in tokens])
    np.testing.assert_allclose(
        lda.umass_coherence(topics, text.bag_of_ids(texts), top_n=6), umass, atol=1e-5
    )
    np.testing.assert_array_equal(  # CountVectorizer's matrix of the same documents
        lda.umass_coherence(topics, csr, top_n=6),
        lda.umass_coherence(topics, text.bag_of_ids(words), top_n=6),
    )
    npmi = reference("c_npmi", texts=tokens)
    np.testing.assert_allclose(lda.npmi_coherence(topics, texts, top_n=6), npmi, atol=1e-5)
    with pytest.raises(ValueError, match="top_n"):
        lda.npmi_coherence(topics, texts, top_n=26)
    with pytest.raises(ValueError, match=r"texts must hold word ids in \[0, vocab_size=25\)"):
        lda.npmi_coherence(topics, [[1, 25]])
