"""Bad input, fuzzed: every public model function and the flag parsing refuse malformed
input (wrong shapes and dtypes, NaN and inf, empty arrays, out-of-range hyperparameters)
with a ValueError or TypeError that names the argument, never a silent NaN or a crash
without a message; valid random input gives finite output.

Hypothesis profiles: "ci" (the default: few examples, derandomized, so a CI run is quick
and repeatable) and "full" (HYPOTHESIS_PROFILE=full: many examples, fresh ones each run).
Shapes stay fixed within a test, so the functions that run compile once per test; bad
input is refused on the host before anything compiles.
"""

import functools
import os
import re
import sys
from collections.abc import Sequence
from unittest import mock

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from absl import flags
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from experiments.configs import gan_mnist, vae_digits
from genjax_lab.core import config as config_lib
from genjax_lab.core.data import Dataset
from genjax_lab.data.text import BagOfWords
from genjax_lab.inference import hmm as hmm_inference
from genjax_lab.models import boltzmann, classifier, gan, gmm, hmm, lda, logistic, naive_bayes, vae

settings.register_profile(
    "ci",
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "full", max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
FUZZ = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

pytestmark = pytest.mark.fault("bad input, fuzzed (hypothesis): refused with the argument named")


# -------------------------------------------------------------------- strategies


def refused(name: str):
    """pytest.raises for an error whose message names `name` as a word."""
    return pytest.raises((ValueError, TypeError), match=rf"(?<![\w]){re.escape(name)}(?![\w])")


def _with_value(good: np.ndarray, value: float) -> st.SearchStrategy[np.ndarray]:
    def put(index):
        bad = good.astype(np.float64 if good.dtype.kind != "f" else good.dtype)
        bad[index] = value
        return bad

    return st.tuples(*(st.integers(0, n - 1) for n in good.shape)).map(put)


def _resized(good: np.ndarray, axis: int) -> st.SearchStrategy[np.ndarray]:
    """`good` with one more or one fewer entry along `axis` (never emptied: that is "empty")."""
    longer = np.concatenate([good, np.take(good, [0], axis=axis)], axis=axis)
    choices = [longer] + (
        [np.take(good, range(good.shape[axis] - 1), axis=axis)] if good.shape[axis] > 1 else []
    )
    return st.sampled_from(choices)


_FAULTS = {
    "ndim": lambda good: st.sampled_from([good[..., None], good[0]]),
    "width": lambda good: _resized(good, good.ndim - 1),
    "rows": lambda good: _resized(good, 0),
    "empty": lambda good: st.integers(0, good.ndim - 1).map(
        lambda axis: np.take(good, np.arange(0), axis=axis)
    ),
    "int": lambda good: st.just(np.round(good).astype(np.int64)),
    "float": lambda good: st.just(good.astype(np.float32)),
    "bool": lambda good: st.just(good > 0),
    "complex": lambda good: st.just(good + 1j),
    "str": lambda good: st.just(good.astype(str)),
    "nan": lambda good: _with_value(good, np.nan),
    "inf": lambda good: _with_value(good, np.inf),
    "-inf": lambda good: _with_value(good, -np.inf),
    "negative": lambda good: _with_value(good, -1.0),
}


def broken(good: np.ndarray, faults: Sequence[str]) -> st.SearchStrategy[np.ndarray]:
    """Copies of a valid array with one fault drawn from `faults` (keys of _FAULTS): ndim
    (an axis too many or too few), width / rows (the last / first axis one off), empty (an
    axis of length 0), a dtype (int, float, bool, complex, str), or one NaN, inf, -inf or
    -1 entry at a drawn position."""
    return st.sampled_from(list(faults)).flatmap(lambda fault: _FAULTS[fault](np.asarray(good)))


def bad_counts(minimum: int = 1) -> st.SearchStrategy:
    """Values that are not an integer >= minimum: too small, fractional, bool, NaN, text."""
    return st.one_of(
        st.integers(max(minimum - 10, -(10**6)), minimum - 1),
        st.floats(minimum, 100).filter(lambda v: v != int(v)),
        st.sampled_from([True, float("nan"), "3", None]),
    )


def bad_reals(
    low: float = -np.inf, high: float = np.inf, low_open: bool = False, high_open: bool = False
) -> st.SearchStrategy:
    """Numbers outside the interval from low to high (with the given open ends), NaN, inf and
    non-numbers."""
    outside = []
    if low > -np.inf:
        outside.append(
            st.floats(
                max_value=low, exclude_max=not low_open, allow_nan=False, allow_infinity=False
            )
        )
    if high < np.inf:
        outside.append(
            st.floats(
                min_value=high, exclude_min=not high_open, allow_nan=False, allow_infinity=False
            )
        )
    return st.one_of(
        *outside, st.sampled_from([float("nan"), float("inf"), -float("inf"), "0.5", None, 1j])
    )


RNG = np.random.default_rng(0)
X = RNG.normal(size=(12, 3)).astype(np.float32)
Y = np.arange(12, dtype=np.int32) % 2


# -------------------------------------------------------------------- naive Bayes


def _nb_config(kind: str = "gaussian", **fields) -> ml_collections.ConfigDict:
    config = naive_bayes.default_config()
    config.update({"kind": kind, **fields})
    return config


def _nb_fit(x, y, config):
    return naive_bayes.fit(jax.random.key(0), {"x": x, "y": y}, config)[0]


@pytest.fixture(scope="module")
def gaussian_nb():
    return _nb_fit(X, Y, _nb_config())


@FUZZ
@given(x=broken(X, ["ndim", "empty", "complex", "str", "nan", "inf"]))
def test_naive_bayes_fit_refuses_bad_x(x):
    with refused("x"):
        _nb_fit(x, Y, _nb_config(num_classes=2))


@FUZZ
@given(y=broken(Y, ["ndim", "rows", "float", "bool", "complex"]) | st.just(Y + 2) | st.just(Y - 1))
def test_naive_bayes_fit_refuses_bad_y(y):
    with refused("y"):
        _nb_fit(X, y, _nb_config(num_classes=2))


@FUZZ
@given(
    num_classes=bad_counts(minimum=0),
    smoothing=bad_reals(low=0.0, low_open=True).filter(lambda v: v is not None),
    kind=st.sampled_from(["gaussian", "multinomial"]),
)
def test_naive_bayes_refuses_bad_hyperparameters(num_classes, smoothing, kind):
    """num_classes 0 takes the labels' largest + 1; var_smoothing 0 is allowed (alpha 0 is not)."""
    counts = np.abs(np.round(X * 3))
    with refused("num_classes"):
        _nb_fit(counts, Y, _nb_config(kind, num_classes=num_classes))
    field = "var_smoothing" if kind == "gaussian" else "alpha"
    if kind == "gaussian" and isinstance(smoothing, float) and smoothing == 0.0:
        return
    with refused(field):
        _nb_fit(counts, Y, _nb_config(kind, **{field: smoothing}))


@FUZZ
@given(x=broken(X, ["ndim", "width", "empty", "complex", "str", "inf", "-inf"]))
def test_naive_bayes_scoring_refuses_bad_x(gaussian_nb, x):
    with refused("x"):
        naive_bayes.log_prob(gaussian_nb, x)
    with refused("x"):
        naive_bayes.classifier(gaussian_nb).predict_log_proba(x)


@FUZZ
@given(
    num=bad_counts(),
    y=st.sampled_from(
        [np.array([0, 2]), np.array([-1, 0]), np.array([0.0, 1.0]), np.zeros((2, 2), np.int32)]
    ),
)
def test_naive_bayes_sampling_refuses_bad_counts_and_labels(gaussian_nb, num, y):
    with refused("num"):
        naive_bayes.sample(jax.random.key(0), gaussian_nb, num)
    with refused("y"):
        naive_bayes.sample(jax.random.key(0), gaussian_nb, 2, y=y)


@FUZZ
@given(x=hnp.arrays(np.float32, (5, 3), elements=st.floats(-1e3, 1e3, width=32) | st.just(np.nan)))
def test_naive_bayes_valid_input_gives_finite_probabilities(gaussian_nb, x):
    """NaN marks a missing feature: marginalised out, not propagated."""
    assert np.isfinite(naive_bayes.classifier(gaussian_nb).predict_log_proba(x)).all()
    assert np.isfinite(naive_bayes.log_prob(gaussian_nb, x)).all()


# -------------------------------------------------------------------- GMM


def _gmm_config(**fields) -> ml_collections.ConfigDict:
    # A fresh ConfigDict takes any value's type, so bad values reach the fit's own checks.
    return ml_collections.ConfigDict({**gmm.default_config().to_dict(), **fields})


@pytest.fixture(scope="module")
def fitted_gmm():
    config = _gmm_config(covariance_type="diag", num_iters=5)
    return gmm.fit(jax.random.key(0), {"x": X}, config)[0]


@FUZZ
@given(x=broken(X, ["ndim", "empty", "int", "bool", "complex", "str", "nan", "inf"]))
def test_gmm_fit_refuses_bad_x(x):
    with refused("x"):
        gmm.fit(jax.random.key(0), {"x": x}, _gmm_config())


@FUZZ
@given(
    num_components=bad_counts() | st.integers(13, 100),
    reg_covar=bad_reals(low=0.0),
    num_iters=bad_counts(),
)
def test_gmm_fit_refuses_bad_hyperparameters(num_components, reg_covar, num_iters):
    with refused("config.num_components"):
        gmm.fit(jax.random.key(0), {"x": X}, _gmm_config(num_components=num_components))
    with refused("config.reg_covar"):
        gmm.fit(jax.random.key(0), {"x": X}, _gmm_config(reg_covar=reg_covar))
    with refused("config.num_iters"):
        gmm.fit(jax.random.key(0), {"x": X}, _gmm_config(num_iters=num_iters))


@FUZZ
@given(
    x=broken(X, ["ndim", "width", "empty", "int", "complex", "nan", "inf"]),
    function=st.sampled_from(
        [gmm.log_prob, gmm.posterior, gmm.score, gmm.predict, gmm.predict_proba]
    ),
)
def test_gmm_scoring_refuses_bad_x(fitted_gmm, x, function):
    with refused("x"):
        function(fitted_gmm, x)


@FUZZ
@given(means=broken(np.zeros((2, 3), np.float32), ["nan", "inf"]))
def test_gmm_scoring_refuses_non_finite_parameters(fitted_gmm, means):
    with refused("params.means"):
        gmm.log_prob(fitted_gmm.replace(means=means), X)


@FUZZ
@given(
    weights=broken(np.array([0.5, 0.5]), ["ndim", "rows", "nan", "negative"])
    | st.just(np.array([0.5, 0.6])),
    covariances=broken(np.stack([np.eye(3)] * 2), ["ndim", "width", "nan", "complex"])
    | st.just(np.stack([-np.eye(3)] * 2))
    | st.just(np.stack([np.triu(np.ones((3, 3)))] * 2)),
)
def test_gmm_construction_refuses_bad_parameters(weights, covariances):
    means = np.zeros((2, 3))
    with refused("weights"):
        gmm.from_covariances(weights, means, np.stack([np.eye(3)] * 2))
    with refused("covariances"):
        gmm.from_covariances(np.array([0.5, 0.5]), means, covariances)


@FUZZ
@given(x=hnp.arrays(np.float32, (4, 3), elements=st.floats(-1e3, 1e3, width=32) | st.just(np.nan)))
def test_gmm_valid_input_gives_finite_output(fitted_gmm, x):
    """Finite rows score finitely; NaN entries are missing dimensions that impute fills in."""
    complete = np.nan_to_num(x)
    assert np.isfinite(gmm.log_prob(fitted_gmm, complete)).all()
    assert np.isfinite(gmm.impute(fitted_gmm, x)).all()


# -------------------------------------------------------------------- HMM


@pytest.fixture(scope="module")
def casino():
    emission = hmm.categorical_emission([[1 / 6] * 6, [0.5] + [0.1] * 5])
    return hmm.make_hmm([0.5, 0.5], [[0.95, 0.05], [0.1, 0.9]], emission)


OBS = np.arange(10, dtype=np.int32).reshape(2, 5) % 6
LENGTHS = np.array([5, 3])


@FUZZ
@given(
    # Symbols as a trailing column [B, T, 1] are hmmlearn's layout, accepted (below).
    obs=broken(OBS, ["ndim", "float", "bool", "complex", "str"]).filter(
        lambda o: o.shape != (*OBS.shape, 1)
    )
    | st.just(np.stack([OBS, OBS], axis=-1))
    | st.just(OBS + 6)
    | st.just(OBS - 1)
)
def test_hmm_refuses_bad_observations(casino, obs):
    with refused("obs"):
        hmm.log_prob(casino, hmm.Sequences(obs, LENGTHS))


def test_hmm_takes_symbols_as_a_trailing_column(casino):
    column = hmm.log_prob(casino, hmm.Sequences(OBS[..., None], LENGTHS))
    np.testing.assert_array_equal(column, hmm.log_prob(casino, hmm.Sequences(OBS, LENGTHS)))


@FUZZ
@given(
    lengths=broken(LENGTHS, ["ndim", "rows", "float"])
    | st.just(np.array([5, 0]))
    | st.just(np.array([6, 1])),
    function=st.sampled_from([hmm.log_prob, hmm.smooth, hmm.most_likely_states]),
)
def test_hmm_refuses_bad_lengths(casino, lengths, function):
    with refused("lengths"):
        function(casino, hmm.Sequences(OBS, lengths))


@FUZZ
@given(
    probs=broken(
        np.array([[0.9, 0.1], [0.2, 0.8]]), ["ndim", "width", "nan", "negative", "complex"]
    )
    | hnp.arrays(np.float64, (2, 2), elements=st.floats(0, 2)).filter(
        lambda p: not np.allclose(p.sum(-1), 1.0)
    )
)
def test_hmm_refuses_probabilities_off_the_simplex(casino, probs):
    with refused("transition_probs"):
        hmm.make_hmm([0.5, 0.5], probs, casino.emission)


@FUZZ
@given(logits=broken(np.zeros((2, 2), np.float32), ["nan", "inf"]), length=bad_counts())
def test_hmm_refuses_bad_parameters_and_sizes(casino, logits, length):
    with refused("params.transition_logits"):
        hmm.log_prob(casino._replace(transition_logits=logits), hmm.Sequences(OBS, LENGTHS))
    with refused("length"):
        hmm.sample(jax.random.key(0), casino, 1, length=length)


LOG_LIKELIHOODS = np.log(RNG.dirichlet(np.ones(3), size=(2, 6))).astype(np.float32)


@FUZZ
@given(
    ll=broken(LOG_LIKELIHOODS, ["width", "empty", "int", "complex", "nan", "inf"]),
    function=st.sampled_from(
        [
            hmm_inference.hmm_filter,
            hmm_inference.hmm_smoother,
            hmm_inference.hmm_viterbi,
            hmm_inference.hmm_log_likelihood,
        ]
    ),
)
def test_message_passing_refuses_bad_log_likelihoods(ll, function):
    with refused("log_likelihoods"):
        function(jnp.log(jnp.ones(3) / 3), jnp.log(jnp.ones((3, 3)) / 3), ll)


@FUZZ
@given(
    lengths=broken(np.array([6, 2]), ["rows", "float"])
    | st.sampled_from([np.array([0, 2]), np.array([7, 2])]),
    transition=broken(np.zeros((3, 3), np.float32), ["ndim", "width", "nan", "inf"]),
)
def test_message_passing_refuses_bad_lengths_and_transitions(lengths, transition):
    uniform = jnp.log(jnp.ones(3) / 3)
    with refused("lengths"):
        hmm_inference.hmm_filter(uniform, jnp.zeros((3, 3)), LOG_LIKELIHOODS, lengths)
    with refused("log_transition"):
        hmm_inference.hmm_filter(uniform, transition, LOG_LIKELIHOODS)


@FUZZ
@given(
    ll=hnp.arrays(np.float32, (2, 6, 3), elements=st.floats(-50, 5, width=32) | st.just(-np.inf))
)
def test_message_passing_valid_input_gives_no_nan(ll):
    """-inf is log 0: an impossible observation makes log p(y) -inf, never NaN."""
    result = hmm_inference.hmm_smoother(jnp.log(jnp.ones(3) / 3), jnp.log(jnp.ones((3, 3)) / 3), ll)
    assert not np.isnan(result.log_likelihood).any()
    possible = np.isfinite(ll).any(-1).all(-1)  # no step whose every state has probability 0
    assert np.isfinite(result.log_likelihood[possible]).all()
    assert np.isfinite(result.posteriors[possible]).all()


# -------------------------------------------------------------------- LDA


@FUZZ
@given(field=st.sampled_from(["num_topics", "vocab_size", "max_doc_iter"]), value=bad_counts())
def test_lda_config_refuses_bad_counts(field, value):
    with refused(field):
        lda.LDAConfig(**{"num_topics": 2, "vocab_size": 5, field: value})


@FUZZ
@given(
    data=st.data(),
    field=st.sampled_from(["alpha", "eta", "learning_decay", "learning_offset", "mean_change_tol"]),
)
def test_lda_config_refuses_out_of_range_hyperparameters(data, field):
    interval = {
        "alpha": dict(low=0.0, low_open=True),
        "eta": dict(low=0.0, low_open=True),
        "learning_decay": dict(low=0.5, high=1.0, low_open=True),
        "learning_offset": dict(low=0.0),
        "mean_change_tol": dict(low=0.0),
    }[field]
    value = data.draw(bad_reals(**interval).filter(lambda v: v is not None))
    with refused(field):
        lda.LDAConfig(num_topics=2, vocab_size=5, **{field: value})


LDA_CONFIG = lda.LDAConfig(num_topics=2, vocab_size=5, max_doc_iter=20)
IDS = np.array([[0, 1, 2], [3, 4, 0]], np.int32)
COUNTS = np.array([[2.0, 1.0, 1.0], [1.0, 3.0, 0.0]], np.float32)


@FUZZ
@given(
    ids=broken(IDS, ["ndim", "width", "float", "complex", "str"])
    | st.just(IDS + 5)
    | st.just(IDS - 1),
    counts=broken(COUNTS, ["ndim", "width", "complex", "nan", "inf", "negative"]),
)
def test_lda_refuses_bad_bags(ids, counts):
    state = lda.init_vb(jax.random.key(0), LDA_CONFIG)
    with refused("ids"):
        lda.posterior(state, BagOfWords(ids, COUNTS), max_doc_iter=LDA_CONFIG.max_doc_iter)
    with refused("counts"):
        lda.posterior(state, BagOfWords(IDS, counts), max_doc_iter=LDA_CONFIG.max_doc_iter)


TOPICS = np.full((2, 5), 0.2, np.float32)


@FUZZ
@given(
    topics=broken(TOPICS, ["ndim", "width", "rows", "nan", "negative"]) | st.just(TOPICS * 2),
    alpha=st.sampled_from([0.0, -1.0, np.nan, np.inf, np.array([1.0, 0.0]), np.ones(3)]),
    num_docs=bad_counts(),
)
def test_lda_refuses_bad_topics_priors_and_sizes(topics, alpha, num_docs):
    bags = BagOfWords(IDS, COUNTS)
    with refused("topics"):
        lda.posterior_given_topics(topics, 0.5, bags, LDA_CONFIG)
    with refused("alpha"):
        lda.posterior_given_topics(TOPICS, alpha, bags, LDA_CONFIG)
    with refused("num_docs"):
        lda.sample_documents(jax.random.key(0), TOPICS, 0.5, num_docs, 4)


@FUZZ
@given(counts=hnp.arrays(np.float32, (2, 3), elements=st.integers(0, 50).map(float)))
def test_lda_valid_bags_give_finite_proportions(counts):
    state = lda.init_vb(jax.random.key(0), LDA_CONFIG)
    theta = np.asarray(lda.posterior(state, BagOfWords(IDS, counts), max_doc_iter=20))
    assert np.isfinite(theta).all()
    np.testing.assert_allclose(theta.sum(-1), 1.0, rtol=1e-5)


# -------------------------------------------------------------------- Boltzmann machines


RBM = boltzmann.init_rbm(jax.random.key(0), 6, 4)
V = (RNG.random((5, 6)) < 0.5).astype(np.float32)


@FUZZ
@given(
    v=broken(V, ["ndim", "width", "empty", "complex", "str", "nan", "inf"]),
    function=st.sampled_from([boltzmann.free_energy, boltzmann.hidden_probs]),
)
def test_rbm_refuses_bad_visible_units(v, function):
    with refused("v"):
        function(RBM, v)


@FUZZ
@given(
    x=broken(V, ["width", "empty", "complex", "str", "nan", "inf"]),
    verb=st.sampled_from([boltzmann.log_prob, boltzmann.posterior]),
)
def test_boltzmann_verbs_refuse_bad_data(x, verb):
    with refused("x"):
        verb(RBM, x)


@FUZZ
@given(
    num_hidden=bad_counts(),
    weight_scale=bad_reals(low=0.0),
    visible=st.text(max_size=8),
    data_mean=broken(np.full(6, 0.5), ["nan", "inf", "complex"]),
)
def test_rbm_refuses_bad_construction(num_hidden, weight_scale, visible, data_mean):
    key = jax.random.key(0)
    with refused("num_hidden"):
        boltzmann.init_rbm(key, 6, num_hidden)
    with refused("weight_scale"):
        boltzmann.init_rbm(key, 6, 4, weight_scale=weight_scale)
    if visible not in boltzmann.VISIBLE_TYPES:
        with refused("visible"):
            boltzmann.free_energy(RBM, V, visible)
    with refused("data_mean"):
        boltzmann.init_rbm(key, 6, 4, data_mean=data_mean)


@FUZZ
@given(
    learning_rate=bad_reals(low=0.0, low_open=True),
    momentum=bad_reals(low=0.0, high=1.0, high_open=True),
)
def test_rbm_optimizer_refuses_out_of_range_hyperparameters(learning_rate, momentum):
    with refused("learning_rate"):
        boltzmann.rbm_optimizer(learning_rate)
    with refused("momentum"):
        boltzmann.rbm_optimizer(0.1, momentum)


@FUZZ
@given(v=hnp.arrays(np.float32, (5, 6), elements=st.floats(-100, 100, width=32)))
def test_rbm_valid_input_gives_finite_free_energy(v):
    assert np.isfinite(boltzmann.free_energy(RBM, v, "gaussian")).all()
    assert np.isfinite(boltzmann.free_energy(RBM, (v > 0).astype(np.float32))).all()


# -------------------------------------------------------------------- VAE


def _digits(num: int = 40) -> Dataset:
    images = RNG.integers(0, 256, size=(num, 8, 8, 1), dtype=np.uint8)
    return Dataset(
        {
            "train": {"image": images, "label": np.arange(num, dtype=np.int32) % 10},
            "test": {"image": images[:8], "label": np.arange(8, dtype=np.int32)},
        }
    )


@pytest.fixture(scope="module")
def cvae():
    family = vae.family_for(vae_digits.get_config("tiny"), _digits())
    return family.params(family.init(jax.random.key(0), None).params)


PIXELS = (RNG.random((4, 8, 8, 1)) < 0.5).astype(np.float32)
LABELS = np.arange(4, dtype=np.int32)


@FUZZ
@given(
    x=broken(PIXELS, ["ndim", "width", "empty", "int", "complex", "nan", "inf", "negative"])
    | st.just(PIXELS * 255)
)
def test_vae_bounds_refuse_bad_images(cvae, x):
    with refused("x"):
        vae.elbo(jax.random.key(0), cvae, x, LABELS)


@FUZZ
@given(
    y=broken(LABELS, ["ndim", "rows", "float", "bool"])
    | st.just(LABELS + 10)
    | st.just(LABELS - 1),
    num_samples=bad_counts(),
    chunk=bad_counts().filter(lambda c: c is not None),
)  # None: all samples at once
def test_vae_refuses_bad_labels_and_sample_counts(cvae, y, num_samples, chunk):
    key = jax.random.key(0)
    with refused("y"):
        vae.log_prob_bound(key, cvae, PIXELS, y, num_samples=2)
    with refused("num_samples"):
        vae.log_prob_bound(key, cvae, PIXELS, LABELS, num_samples=num_samples)
    with refused("chunk"):
        vae.log_prob_estimate(key, cvae, PIXELS, LABELS, num_samples=4, chunk=chunk)
    with refused("num"):
        vae.sample(key, cvae, num_samples)
    with refused("num_samples"):
        vae.classifier(cvae, num_samples=num_samples)


@FUZZ
@given(x=hnp.arrays(np.float32, (4, 8, 8, 1), elements=st.floats(0, 1, width=32)))
def test_vae_valid_input_gives_finite_bounds(cvae, x):
    assert np.isfinite(vae.elbo(jax.random.key(0), cvae, x, LABELS)).all()


# -------------------------------------------------------------------- configs of the image families


@FUZZ
@given(
    data=st.data(),
    field=st.sampled_from(
        ["noise_dim", "d_maxout_pieces", "g_hidden", "d_dropout", "ema_decay", "noise", "loss"]
    ),
)
def test_gan_config_refuses_out_of_range_values(data, field):
    value = data.draw(
        {
            "noise_dim": bad_counts(),
            "d_maxout_pieces": bad_counts(minimum=0),
            "g_hidden": st.lists(bad_counts(), min_size=1, max_size=3).map(tuple),
            "d_dropout": bad_reals(low=0.0, high=1.0, high_open=True),
            "ema_decay": bad_reals(low=0.0, high=1.0),
            "noise": st.text(max_size=8).filter(lambda s: s not in gan.NOISES),
            "loss": st.text(max_size=8).filter(lambda s: s not in gan.LOSSES),
        }[field]
    )
    config = gan_mnist.get_config("tiny_mlp")
    # A fresh ConfigDict takes any type: a config file can set such values; an override cannot.
    config.model = ml_collections.ConfigDict({**config.model.to_dict(), field: value})
    with refused(field):
        gan.family_for(config, _digits())


@functools.cache
def _tiny_gan_params() -> gan.GANParams:
    meta = {"image_shape": [8, 8, 1], "num_classes": 10}
    return gan.init(jax.random.key(0), gan_mnist.get_config("tiny_mlp"), meta)


@FUZZ
@given(hidden=st.lists(bad_counts(), min_size=1, max_size=3).map(tuple), num=bad_counts())
def test_classifier_and_sampling_sizes_are_refused(hidden, num):
    config = classifier.default_config()
    config.model.hidden = hidden
    with refused("config.model.hidden"):
        classifier.family_for(config, _digits())
    with refused("num"):
        gan.sample(jax.random.key(0), _tiny_gan_params(), num)


# -------------------------------------------------------------------- logistic regression


@FUZZ
@given(
    x=broken(X, ["ndim", "empty", "complex", "str", "nan", "inf"]),
    y=broken(Y, ["ndim", "rows", "float", "bool", "empty"]) | st.just(Y + 2),
    c=bad_reals(low=0.0, low_open=True),
)
def test_logistic_fit_refuses_bad_input(x, y, c):
    with refused("x"):
        logistic.fit(x, Y, 2, num_steps=1)
    with refused("y"):
        logistic.fit(X, y, 2, num_steps=1)
    with refused("C"):
        logistic.fit(X, Y, 2, c=c, num_steps=1)


@FUZZ
@given(x=broken(X, ["ndim", "width", "complex", "nan", "inf"]))
def test_logistic_prediction_refuses_bad_x(x):
    with refused("x"):
        logistic.predict_proba(logistic.init(3, 2), x)


# -------------------------------------------------------------------- flags and config overrides


CONFIG_FILE = "experiments/configs/vae_digits.py:tiny"
_IDENTIFIER = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)


def _parse(*overrides: str) -> flags.FlagValues:
    """Parses `--config=CONFIG_FILE *overrides` into fresh flag values, as a script would."""
    flag_values = flags.FlagValues()
    config_lib.define_flags(CONFIG_FILE, "runs/fuzz", flag_values)
    argv = ["experiment.py", f"--config={CONFIG_FILE}", *overrides]
    with mock.patch.object(sys, "argv", argv):  # ml_collections reads the overrides from sys.argv
        config_lib.parse_flags(argv, flag_values)
    return flag_values


@FUZZ
@given(
    section=st.sampled_from(["", "model.", "data.", "optim.", "seed.", "model.latent_dim."]),
    key=_IDENTIFIER,
    value=st.integers(),
)
def test_override_of_an_unknown_key_names_it(section, key, value):
    parent = functools.reduce(getattr, section.split(".")[:-1], _parse().config)
    if isinstance(parent, ml_collections.ConfigDict) and key in parent:
        return
    flag = f"--config.{section}{key}"
    with refused(flag):
        _parse(f"{flag}={value}")


@pytest.mark.parametrize("keyword", ["or", "if", "lambda"])
def test_override_of_a_python_keyword_names_the_flag(keyword):
    """Found by the full hypothesis profile: a key that is a Python keyword is not an
    attribute path, and ml_collections' own message quoted only the key."""
    with refused(f"--config.{keyword}"):
        _parse(f"--config.{keyword}=0")


@FUZZ
@given(
    key=st.sampled_from(
        [
            "model.latent_dim",
            "num_steps",
            "seed",
            "batch_size",
            "model.conditional",
            "optim.learning_rate",
        ]
    ),
    value=st.text(alphabet="abcxyz[](),.", min_size=1, max_size=6),
)
def test_override_of_the_wrong_type_names_the_key(key, value):
    flag = f"--config.{key}"
    with refused(flag):
        _parse(f"{flag}={value}")


@FUZZ
@given(latent_dim=st.integers(1, 64), seed=st.integers(0, 2**31 - 1))
def test_valid_overrides_are_applied(latent_dim, seed):
    config = _parse(f"--config.model.latent_dim={latent_dim}", f"--config.seed={seed}").config
    assert (config.model.latent_dim, config.seed) == (latent_dim, seed)
