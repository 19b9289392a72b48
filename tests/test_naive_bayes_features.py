"""Issue #21's naive Bayes and per-class mixture features against their references: the
marginal log p(x) of every naive Bayes kind against float64 SciPy densities; ComplementNB
against scikit-learn (hypothesis over shapes, alpha and norm), fitted from the multinomial's
count statistics, with no density; and x sampled given the class, for naive Bayes, the
per-class GMM and the per-class HMM, against each class's model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.special import logsumexp
from sklearn import naive_bayes as sk
from sklearn.feature_extraction.text import CountVectorizer

from genjax_lab import saving
from genjax_lab.models import gmm, hmm
from genjax_lab.models import naive_bayes as nb

C = 3


def _counts(n: int = 90, d: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % C
    return rng.poisson(1.0 + y[:, None] + np.arange(d) % 3, size=(n, d)).astype(float), y


def _fit(kind: str, x, y, **fields):
    config = nb.default_config()
    config.update({"kind": kind, "num_classes": C, "alpha": 0.5, "binarize": 1.0, **fields})
    return nb.fit(jax.random.key(0), {"x": x, "y": y}, config)[0]


# ----------------------------------------------------------------------------- log p(x)
def _scipy_log_joint(kind: str, params, x: np.ndarray) -> np.ndarray:
    """log p(x, y = c) [N, C] from scipy.stats, one class and feature at a time."""
    columns = []
    for c in range(C):
        if kind == "gaussian":
            sd = np.sqrt(np.asarray(params.var[c]))
            log_px = stats.norm.logpdf(x, np.asarray(params.mean[c]), sd).sum(1)
        elif kind == "bernoulli":
            log_px = stats.bernoulli.logpmf(x > 1.0, np.exp(params.log_prob[c])).sum(1)
        elif kind == "multinomial":
            theta = np.exp(np.asarray(params.log_prob[c]))
            log_px = stats.multinomial.logpmf(x, x.sum(1), theta / theta.sum())
        else:
            table = np.exp(np.asarray(params.log_prob[c]))  # [D, M]
            log_px = sum(
                stats.rv_discrete(values=(np.arange(table.shape[1]), table[d])).logpmf(x[:, d])
                for d in range(x.shape[1])
            )
        columns.append(log_px + float(params.log_prior[c]))
    return np.stack(columns, 1)


@pytest.mark.parametrize("kind", nb.KINDS)
def test_marginal_log_prob_is_the_scipy_mixture_over_classes(kind):
    """log_prob(params, x) without y is logsumexp_c of scipy's log p(x | c) + log P(c), in
    float64 to 1e-10 (multinomial: the coefficient n! / prod x_d! included, as scipy's
    multinomial pmf has it), and it equals the classifier's log_marginal but for that
    coefficient, which the classifier leaves out as scikit-learn's joint log-likelihood does."""
    x, y = _counts()
    if kind == "gaussian":
        x = x + np.random.default_rng(1).normal(size=x.shape)
    if kind == "categorical":
        x = np.minimum(x, 4.0)
    with jax.enable_x64(True):
        params = _fit(kind, x, y)
        reference = logsumexp(_scipy_log_joint(kind, params, x), axis=1)
        np.testing.assert_allclose(nb.log_prob(params, x), reference, rtol=1e-10)
        coefficient = stats.multinomial.logpmf(x, x.sum(1), np.full(x.shape[1], 1 / x.shape[1]))
        coefficient = coefficient + x.sum(1) * np.log(x.shape[1])  # log n! / prod x_d!
        missing = coefficient if kind == "multinomial" else 0.0
        np.testing.assert_allclose(
            nb.classifier(params).log_marginal(x) + missing, reference, rtol=1e-10
        )


# ----------------------------------------------------------------------------- ComplementNB
@settings(max_examples=12, deadline=None)
@given(
    num_rows=st.integers(3, 40),
    # From 2: with one feature, norm divides 0 by 0 (NaN weights in scikit-learn too).
    num_features=st.integers(2, 9),
    num_classes=st.integers(1, 4),
    alpha=st.floats(1e-3, 10.0),
    norm=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_complement_nb_matches_sklearn(num_rows, num_features, num_classes, alpha, norm, seed):
    """feature_log_prob_, predict_log_proba and predict of scikit-learn's ComplementNB, float64,
    to 1e-9 (every class present in y, as scikit-learn's classes_ then line up)."""
    num_classes = min(num_classes, num_rows)
    rng = np.random.default_rng(seed)
    x = rng.poisson(rng.uniform(0.2, 3.0, num_features), (num_rows, num_features)).astype(float)
    y = rng.permutation(np.arange(num_rows) % num_classes)
    config = nb.default_config()
    config.update(kind="complement", alpha=alpha, norm=norm)
    reference = sk.ComplementNB(alpha=alpha, norm=norm).fit(x, y)
    with jax.enable_x64(True):
        params = nb.fit(jax.random.key(0), {"x": x, "y": y}, config)[0]
        classifier = nb.classifier(params)
        np.testing.assert_allclose(params.weights, reference.feature_log_prob_, rtol=1e-9)
        np.testing.assert_allclose(
            params.log_prior, reference.class_log_prior_, rtol=1e-9, atol=1e-12
        )
        log_proba = np.asarray(classifier.predict_log_proba(x))
        np.testing.assert_allclose(log_proba, reference.predict_log_proba(x), rtol=1e-9, atol=1e-10)
        top_two = np.sort(log_proba, axis=1)[:, -2:] if num_classes > 1 else None
        decided = np.ones(num_rows, bool) if top_two is None else np.diff(top_two)[:, 0] > 1e-9
        np.testing.assert_array_equal(
            np.asarray(classifier.predict(x))[decided], reference.predict(x)[decided]
        )


def test_complement_nb_counts_are_the_multinomial_statistics_streamed(tmp_path):
    """The complement fit reads the multinomial's count statistics: the same class and feature
    counts, and two batches added give the one-shot parameters; the loop family evaluates its
    accuracy only; a saved model loads and predicts the same; no density, no samples, no
    log p(x, y): NotImplementedError naming ComplementNB."""
    x, y = _counts()
    config = nb.default_config()
    config.update(kind="complement", num_classes=C, norm=True)
    multinomial = config.copy_and_resolve_references()
    multinomial.kind = "multinomial"
    meta = nb.meta_from_data({"x": x, "y": y}, config)
    halves = [{"x": x[part], "y": y[part]} for part in (slice(0, 40), slice(40, None))]
    streamed = nb.statistics_step(None, halves[0], config, meta)
    streamed = nb.statistics_step(streamed, halves[1], config, meta)
    counted = nb.statistics_step(None, {"x": x, "y": y}, multinomial, meta)
    np.testing.assert_allclose(streamed.feature_count, counted.feature_count)
    np.testing.assert_allclose(streamed.class_count, counted.class_count)
    one_shot = nb.fit(jax.random.key(0), {"x": x, "y": y}, config)[0]
    params = nb.from_statistics(streamed, config)
    assert isinstance(params, nb.ComplementNB)
    np.testing.assert_allclose(params.weights, one_shot.weights, rtol=1e-6)
    for call in (
        lambda: nb.log_prob(params, x),
        lambda: nb.sample(jax.random.key(0), params, 2, y=np.zeros(2, int)),
    ):
        with pytest.raises(NotImplementedError, match="ComplementNB is a classifier"):
            call()
    with pytest.raises(NotImplementedError, match="ComplementNB's class scores"):
        nb.classifier(params).log_marginal(x)
    predicted = np.asarray(nb.classifier(params).predict(x))
    batch = {"x": x, "y": y, "mask": np.ones(len(x))}
    metrics = nb.loop_family(config, meta).eval_step(streamed, batch, jax.random.key(0))
    assert set(metrics) == {"accuracy"}
    assert float(metrics["accuracy"]) == np.sum(predicted == y)
    saving.save(tmp_path, "naive_bayes", config, meta, params)
    loaded = saving.load(tmp_path)
    np.testing.assert_array_equal(nb.classifier(loaded.params).predict(x), predicted)


# ----------------------------------------------------------------------------- x given y
def test_naive_bayes_samples_x_given_y_from_that_class():
    """Mixed labels y: the draws of each class have that class's moments (Gaussian: mean
    within 0.05, variance within 5% on 6,000 draws a class; Bernoulli and categorical
    frequencies within 0.025); y out of range is refused naming y."""
    x, y = _counts(n=300)
    labels = np.repeat(np.arange(C), 6000)
    key = jax.random.key(3)
    for kind in ("gaussian", "bernoulli", "categorical"):
        data = np.minimum(x, 3.0) if kind == "categorical" else x
        params = _fit(kind, data, y)
        drawn = np.asarray(nb.sample(key, params, len(labels), y=labels))
        for c in range(C):
            rows = drawn[labels == c]
            if kind == "gaussian":
                np.testing.assert_allclose(rows.mean(0), params.mean[c], atol=0.05)
                np.testing.assert_allclose(rows.var(0), params.var[c], rtol=0.05)
            elif kind == "bernoulli":
                np.testing.assert_allclose(rows.mean(0), np.exp(params.log_prob[c]), atol=0.025)
            else:
                one_hot = rows[:, :, None] == np.arange(params.log_prob.shape[2])
                np.testing.assert_allclose(one_hot.mean(0), np.exp(params.log_prob[c]), atol=0.025)
        with pytest.raises(ValueError, match="y must be class indices in \\[0, 3\\)"):
            nb.sample(key, params, 2, y=np.array([0, C]))


def _class_mixture(rng, k: int = 2, d: int = 2) -> gmm.GMM:
    factors = rng.normal(size=(k, d, d)) * 0.5
    covs = factors @ np.swapaxes(factors, 1, 2) + 0.3 * np.eye(d)
    weights = rng.dirichlet(np.ones(k) * 3)
    return gmm.from_covariances(
        jnp.asarray(weights, jnp.float32),
        jnp.asarray(rng.normal(0, 3, (k, d)), jnp.float32),
        jnp.asarray(covs, jnp.float32),
    )


def test_labelled_gmm_samples_x_given_y_with_the_class_mixture_moments():
    """gmm.sample(key, labelled, num, y=...) draws each row from its class's mixture: per class
    the sample mean within 0.08 of the mixture's and each covariance entry within 6% of
    sqrt(var_i var_j) (10,000 draws a class: about 4 sd for a Gaussian, the measured worst was
    2.6%); y out of range is refused naming y."""
    rng = np.random.default_rng(0)
    mixtures = [_class_mixture(rng) for _ in range(C)]
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *mixtures)
    labelled = gmm.LabelledGMM(jnp.log(jnp.full((C,), 1.0 / C)), stacked)
    labels = np.tile(np.arange(C), 10_000)
    drawn = np.asarray(gmm.sample(jax.random.key(1), labelled, len(labels), y=labels))
    for c, mixture in enumerate(mixtures):
        w, mu = np.asarray(mixture.weights), np.asarray(mixture.means)
        covs = np.asarray(gmm.covariances(mixture))
        mean = w @ mu
        cov = np.einsum("k,kde->de", w, covs + mu[:, :, None] * mu[:, None, :])
        rows = drawn[labels == c]
        np.testing.assert_allclose(rows.mean(0), mean, atol=0.08)
        cov = cov - np.outer(mean, mean)
        scale = np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
        assert np.all(np.abs(np.cov(rows.T) - cov) <= 0.06 * scale)
    with pytest.raises(ValueError, match="y must hold class indices in \\[0, 3\\)"):
        gmm.sample(jax.random.key(1), labelled, 2, y=np.array([0, -1]))


def test_labelled_hmm_samples_sequences_given_y_from_that_class():
    """hmm.sample_with_states(..., y) runs each class's chain: first-state frequencies within
    0.04 of the class's initial probabilities (2,000 sequences a class; 3 sd = 0.033) and
    transition frequencies within 0.02 of its transition matrix (38,000 transitions);
    emissions follow the class's emission table within 0.02; y out of range refused naming y."""
    rng = np.random.default_rng(0)
    chains = [
        hmm.make_hmm(
            rng.dirichlet(np.ones(3)),
            rng.dirichlet(np.ones(3) * 2, 3),
            hmm.categorical_emission(rng.dirichlet(np.ones(4), 3)),
        )
        for _ in range(2)
    ]
    labelled = hmm.make_labelled(hmm.stack_hmms(chains), [0.5, 0.5])
    labels = np.tile([0, 1], 2000)
    states, emissions = hmm.sample_with_states(
        jax.random.key(2), labelled, len(labels), labels, length=20
    )
    states, emissions = np.asarray(states), np.asarray(emissions)
    for c, chain in enumerate(chains):
        z, obs = states[labels == c], emissions[labels == c]
        initial = jax.nn.softmax(chain.initial_logits)
        transition = jax.nn.softmax(chain.transition_logits, axis=-1)
        emission = jax.nn.softmax(chain.emission.logits, axis=-1)
        np.testing.assert_allclose(np.bincount(z[:, 0], minlength=3) / len(z), initial, atol=0.04)
        pairs = np.zeros((3, 3))
        np.add.at(pairs, (z[:, :-1].ravel(), z[:, 1:].ravel()), 1)
        np.testing.assert_allclose(pairs / pairs.sum(1, keepdims=True), transition, atol=0.02)
        seen = np.zeros((3, 4))
        np.add.at(seen, (z.ravel(), obs.ravel()), 1)
        np.testing.assert_allclose(seen / seen.sum(1, keepdims=True), emission, atol=0.02)
    with pytest.raises(ValueError, match="y must be class indices in \\[0, 2\\)"):
        hmm.sample(jax.random.key(2), labelled, 2, y=np.array([0, 2]), length=5)


# ----------------------------------------------------------------------------- sparse input
@pytest.mark.parametrize("kind", ["multinomial", "complement", "bernoulli"])
def test_count_kinds_take_countvectorizer_sparse_input_as_scikit_learn(kind):
    """CountVectorizer's CSR output fits and scores like its dense array, and like
    scikit-learn's estimator given the same sparse matrix."""
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(30)]
    texts = [
        " ".join(rng.choice(words[: 10 + 7 * (i % C)], rng.integers(3, 15))) for i in range(60)
    ]
    y = np.arange(60) % C
    x = CountVectorizer().fit_transform(texts)  # scipy.sparse CSR, int64
    params = _fit(kind, x, y, binarize=0.0)
    dense = _fit(kind, x.toarray(), y, binarize=0.0)
    reference = {
        "multinomial": sk.MultinomialNB(alpha=0.5),
        "complement": sk.ComplementNB(alpha=0.5),
        "bernoulli": sk.BernoulliNB(alpha=0.5, binarize=0.0),
    }[kind].fit(x, y)
    proba = np.asarray(nb.classifier(params).predict_proba(x))
    np.testing.assert_array_equal(
        proba, np.asarray(nb.classifier(dense).predict_proba(x.toarray()))
    )
    np.testing.assert_allclose(proba, reference.predict_proba(x), rtol=1e-4, atol=1e-6)
    if kind != "complement":
        np.testing.assert_allclose(
            np.asarray(nb.log_prob(params, x)),
            np.asarray(nb.log_prob(dense, x.toarray())),
            rtol=1e-6,
        )
        observed = x.toarray() < 3  # a sparse mask of the observed entries, CSC here
        np.testing.assert_allclose(
            np.asarray(nb.log_prob(params, x.tocoo(), observed=scipy.sparse.csc_matrix(observed))),
            np.asarray(nb.log_prob(dense, x.toarray(), observed=observed)),
            rtol=1e-6,
        )
    # the fit's own building blocks take it too
    stats = nb.sufficient_statistics(scipy.sparse.csr_array(x), y, None, C, kind, binarize=0.0)
    np.testing.assert_array_equal(
        np.asarray(stats.feature_count),
        np.asarray(nb.sufficient_statistics(x.toarray(), y, None, C, kind).feature_count),
    )


def test_fit_never_makes_sparse_x_dense(monkeypatch):
    """The statistics of a sparse x are taken sparse (a corpus of 100k documents x 50k words
    would be 20 GB dense), equal to the dense ones, checked as those are."""
    x, y = _counts()
    monkeypatch.setattr(
        scipy.sparse.csr_array, "toarray", lambda *_: pytest.fail("x was made dense")
    )
    monkeypatch.setattr(
        scipy.sparse.csr_matrix, "toarray", lambda *_: pytest.fail("x was made dense")
    )
    for kind in ("multinomial", "complement", "bernoulli"):
        sparse, dense = _fit(kind, scipy.sparse.csr_matrix(x), y), _fit(kind, x, y)
        for got, want in zip(jax.tree.leaves(sparse), jax.tree.leaves(dense)):
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    monkeypatch.undo()
    # Masked rows stay out, whatever they hold; bad real rows are named as in the dense x.
    padded = np.vstack([x, np.full((2, x.shape[1]), np.nan, np.float32)])
    labels, mask = np.concatenate([y, [0, 0]]), np.concatenate([np.ones(len(y)), [0, 0]])
    stats = nb.sufficient_statistics(
        scipy.sparse.csr_matrix(padded), labels, mask, C, "multinomial"
    )
    np.testing.assert_array_equal(
        np.asarray(stats.feature_count),
        np.asarray(nb.sufficient_statistics(x, y, None, C, "multinomial").feature_count),
    )
    with pytest.raises(ValueError, match=r"x must be finite for training, x\[90, 0\] = nan"):
        nb.sufficient_statistics(scipy.sparse.csr_matrix(padded), labels, None, C, "multinomial")
    negative = scipy.sparse.csr_matrix(-x)
    with pytest.raises(ValueError, match="non-negative counts for kind='multinomial'"):
        _fit("multinomial", negative, y)
    with pytest.raises(ValueError, match=r"y must be class indices in \[0, num_classes=3\)"):
        _fit("multinomial", scipy.sparse.csr_matrix(x), y + 1)
    with pytest.raises(ValueError, match=r"x must not be empty, got shape \(0, 5\)"):
        nb.sufficient_statistics(scipy.sparse.csr_matrix((0, 5)), y[:0], None, C, "multinomial")


def test_sparse_statistics_meet_the_dense_path_at_its_edges():
    """Entries stored twice sum (as their dense value), subnormal entries are zero (XLA's CPU
    flushes them), complex x is refused, and a bad entry behind masked rows is named by its
    row in x, dense or sparse."""
    y = np.array([0, 1])
    twice = scipy.sparse.csr_matrix(
        (np.array([-1.0, 2.0]), np.array([0, 0]), np.array([0, 2, 2])), shape=(2, 2)
    )
    stats = nb.sufficient_statistics(twice, y, None, C, "multinomial")
    np.testing.assert_array_equal(np.asarray(stats.feature_count)[0], [1.0, 0.0])
    assert twice.nnz == 2  # the caller's matrix is left as it was
    tiny = np.array([[1e-40, 1.0], [0.0, 2.0]], np.float32)
    for x in (tiny, scipy.sparse.csr_matrix(tiny)):
        stats = nb.sufficient_statistics(x, y, None, C, "bernoulli", binarize=0.0)
        np.testing.assert_array_equal(np.asarray(stats.feature_count)[:2], [[0, 1], [0, 1]])
    with pytest.raises(TypeError, match="x must be real"):
        nb.sufficient_statistics(
            scipy.sparse.csr_matrix(tiny.astype(complex)), y, None, C, "multinomial"
        )
    bad = np.array([[np.nan, 1], [1, 1], [1, np.inf]], np.float32)
    for x in (bad, scipy.sparse.csr_matrix(bad)):
        with pytest.raises(ValueError, match=r"x\[2, 1\] = inf"):
            nb.sufficient_statistics(
                x, np.array([0, 1, 0]), np.array([0.0, 1, 1]), C, "multinomial"
            )


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 30),
    cols=st.integers(1, 12),
    density=st.floats(0.0, 1.0),
    binarize=st.floats(-1.0, 3.0),
    seed=st.integers(0, 2**16),
)
def test_sparse_statistics_are_the_dense_ones(rows, cols, density, binarize, seed):
    """Over sparse matrices of any shape and fill, real-valued (tf-idf-like) or counts, with
    masked rows: the statistics of each count kind equal the dense path's to float32 rounding."""
    rng = np.random.default_rng(seed)
    values = rng.exponential(2.0, (rows, cols)).astype(np.float32)
    x = np.where(rng.random((rows, cols)) < density, values, 0.0).astype(np.float32)
    y, mask = rng.integers(0, C, rows), (rng.random(rows) < 0.8).astype(np.float32)
    for kind in ("multinomial", "complement", "bernoulli"):
        got = nb.sufficient_statistics(
            scipy.sparse.csr_matrix(x), y, mask, C, kind, binarize=binarize
        )
        want = nb.sufficient_statistics(x, y, mask, C, kind, binarize=binarize)
        np.testing.assert_array_equal(np.asarray(got.class_count), np.asarray(want.class_count))
        np.testing.assert_allclose(
            np.asarray(got.feature_count), np.asarray(want.feature_count), rtol=1e-5, atol=1e-5
        )
        assert got.binarize == want.binarize


def test_gaussian_and_categorical_refuse_sparse_input_naming_x():
    x, y = _counts()
    for kind in ("gaussian", "categorical"):
        with pytest.raises(TypeError, match="x is a scipy.sparse matrix.*dense"):
            _fit(kind, scipy.sparse.csr_matrix(x), y)
    params = _fit("gaussian", x, y)
    with pytest.raises(TypeError, match="GaussianNB"):
        nb.log_prob(params, scipy.sparse.csr_matrix(x))
