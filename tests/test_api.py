"""The shared Bayes-rule classifier against a float64 NumPy computation of Bayes' rule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from genjax_lab import api


def _gaussian_log_prob(params, x):
    """A class-conditional model: independent Gaussians, params = (mean [D], sd [D])."""
    mean, sd = params
    return jnp.sum(jax.scipy.stats.norm.logpdf(x, mean, sd), axis=-1)


MEANS = np.array([[0.0, 0.0], [1.5, -1.0], [3.0, 2.0]])
SDS = np.array([[1.0, 0.5], [0.7, 1.2], [2.0, 1.0]])
PRIOR = np.array([0.5, 0.3, 0.2])


def _oracle_posterior(x):
    log_joint = np.log(PRIOR) + np.stack(
        [stats.norm.logpdf(x, m, s).sum(-1) for m, s in zip(MEANS, SDS)], axis=-1
    )
    return log_joint - np.logaddexp.reduce(log_joint, axis=-1, keepdims=True), log_joint


def test_class_conditional_classifier_is_bayes_rule():
    x = np.random.default_rng(0).normal(size=(50, 2)) * 2
    clf = api.from_class_conditionals(
        np.log(PRIOR), (jnp.asarray(MEANS), jnp.asarray(SDS)), _gaussian_log_prob
    )
    log_post, log_joint = _oracle_posterior(x)
    np.testing.assert_allclose(clf.predict_log_proba(x), log_post, atol=1e-5)
    np.testing.assert_allclose(clf.log_marginal(x), np.logaddexp.reduce(log_joint, -1), rtol=1e-6)
    np.testing.assert_array_equal(clf.predict(x), log_post.argmax(-1))
    np.testing.assert_allclose(clf.predict_proba(x).sum(-1), 1.0, rtol=1e-6)
    assert clf.num_classes == 3
    # A pytree: it crosses jit as an argument.
    np.testing.assert_array_equal(jax.jit(lambda c, x: c.predict(x))(clf, x), clf.predict(x))


def test_conditional_model_gives_the_same_classifier():
    def log_prob_given_y(params, x, y):
        mean, sd = params
        return _gaussian_log_prob((mean[y], sd[y]), x)

    x = np.random.default_rng(1).normal(size=(20, 2))
    clf = api.from_conditional(
        np.log(PRIOR), (jnp.asarray(MEANS), jnp.asarray(SDS)), log_prob_given_y
    )
    np.testing.assert_allclose(clf.predict_log_proba(x), _oracle_posterior(x)[0], atol=1e-5)


def test_estimated_likelihoods_need_a_key_and_share_it_across_classes():
    def noisy_log_prob(key, params, x, y):
        mean, sd = params
        noise = jax.random.normal(key, (x.shape[0],))  # the same for every class
        return _gaussian_log_prob((mean[y], sd[y]), x) + noise

    x = np.random.default_rng(2).normal(size=(10, 2))
    clf = api.from_conditional(
        np.log(PRIOR), (jnp.asarray(MEANS), jnp.asarray(SDS)), noisy_log_prob, stochastic=True
    )
    with pytest.raises(ValueError, match="key="):
        clf.predict(x)
    # Common random numbers cancel in P(y | x): the posterior is the exact one.
    np.testing.assert_allclose(
        clf.predict_log_proba(x, jax.random.key(0)), _oracle_posterior(x)[0], atol=1e-5
    )


def test_an_unnormalised_classifier_predicts_exactly_and_refuses_log_p():
    """Class likelihoods known only up to one constant shared by the classes (an RBM whose
    log Z is not computed): P(y | x) is still Bayes' rule, but log p(x, y) and log p(x)
    would be off by that constant, so asking for them is an error, not a shifted number."""
    x = np.random.default_rng(3).normal(size=(7, 2)).astype(np.float32)
    shifted = lambda params, x, y: _gaussian_log_prob((params[0][y], params[1][y]), x) + 40.0
    clf = api.from_conditional(
        jnp.log(PRIOR), (jnp.asarray(MEANS), jnp.asarray(SDS)), shifted, normalised=False
    )
    oracle, _ = _oracle_posterior(x)
    np.testing.assert_allclose(clf.predict_log_proba(x), oracle, atol=1e-5)
    np.testing.assert_array_equal(clf.predict(x), oracle.argmax(-1))
    for method in (clf.log_joint, clf.log_marginal):
        with pytest.raises(ValueError, match="unnormalised"):
            method(x)
