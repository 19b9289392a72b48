"""The variational Bayesian Gaussian mixture (gmm.bayesian) against scikit-learn's
BayesianGaussianMixture from the same initial responsibilities, in float64: every fitted
attribute, the lower bound and the iteration count; the surplus components both switch off;
the scores, posterior and samples; bad input named (issue #21)."""

import jax
import numpy as np
import pytest
from sklearn.mixture import BayesianGaussianMixture

from genjax_lab.models import gmm
from genjax_lab.models.gmm import bayesian

K = 6


def _clusters(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [
            rng.normal(-4.0, 1.0, (100, 3)),
            rng.normal(4.0, 0.7, (80, 3)),
            rng.normal([0.0, 6.0, 0.0], 0.5, (60, 3)),
        ]
    )


def _config(**fields):
    config = bayesian.default_config()
    config.update({"num_components": K, **fields})
    return config


def _sklearn_from(resp: np.ndarray, **kwargs) -> BayesianGaussianMixture:
    """scikit-learn's mixture started from `resp`: its `_initialize(X, resp)` is the start
    its init_params would build, so both fits begin from one posterior."""

    class FromResponsibilities(BayesianGaussianMixture):
        def _initialize_parameters(self, X, random_state, xp=None):
            self._initialize(X, resp)

    return FromResponsibilities(**kwargs)


def _fit_both(x, resp, covariance_type, weight_prior_type, **fields):
    config = _config(
        covariance_type=covariance_type,
        weight_concentration_prior_type=weight_prior_type,
        num_iters=500,
        tol=1e-6,
        **fields,
    )
    params, history = bayesian.fit(
        jax.random.key(0), {"x": x}, config, init=bayesian.from_responsibilities(x, resp, config)
    )
    reference = _sklearn_from(
        resp,
        n_components=config.num_components,
        covariance_type=covariance_type,
        weight_concentration_prior_type=weight_prior_type,
        max_iter=500,
        tol=1e-6,
    ).fit(x)
    return params, history, reference


# Every covariance type, full and diag under both weight priors (one compilation each).
@pytest.mark.parametrize(
    ("covariance_type", "weight_prior_type"),
    [
        ("full", "dirichlet_process"),
        ("full", "dirichlet_distribution"),
        ("diag", "dirichlet_process"),
        ("diag", "dirichlet_distribution"),
        ("tied", "dirichlet_process"),
        ("spherical", "dirichlet_distribution"),
    ],
)
def test_matches_sklearn_from_the_same_responsibilities(covariance_type, weight_prior_type):
    """Every attribute scikit-learn fits, its lower_bound_ and n_iter_, and its
    score_samples / predict_proba, to 1e-7 relative (measured: 1e-12 at worst on the final
    fit, 1.1e-9 on an intermediate lower bound, a sum of terms of 1e3 that cancel)."""
    x = _clusters()
    resp = np.random.default_rng(1).dirichlet(np.ones(K), len(x))
    with jax.enable_x64(True):
        params, history, ref = _fit_both(x, resp, covariance_type, weight_prior_type)
        concentration = ref.weight_concentration_
        if weight_prior_type == "dirichlet_process":
            concentration = np.stack(concentration)
        pairs = {
            "weight_concentration": (params.weight_concentration, concentration),
            "mean_precision": (params.mean_precision, ref.mean_precision_),
            "means": (params.means, ref.means_),
            "degrees_of_freedom": (params.degrees_of_freedom, ref.degrees_of_freedom_),
            "covariances": (bayesian.covariances(params), ref.covariances_),
            "precision_cholesky": (params.precision_cholesky, ref.precisions_cholesky_),
            "weights": (bayesian.weights(params), ref.weights_),
            "lower_bound": (history["lower_bound"], np.ravel(ref.lower_bounds_)),
            "log_prob_bound": (bayesian.log_prob_bound(None, params, x), ref.score_samples(x)),
            "posterior": (bayesian.posterior(params, x), ref.predict_proba(x)),
        }
        for name, (ours, theirs) in pairs.items():
            np.testing.assert_allclose(ours, theirs, rtol=1e-7, atol=1e-12, err_msg=name)
        assert history["num_iters"] == ref.n_iter_
        assert history["converged"] == ref.converged_ is True
        # Coordinate ascent never lowers the bound.
        assert np.all(np.diff(history["lower_bound"]) > -1e-9)


def test_both_switch_off_the_same_surplus_components():
    """Three well-separated clusters, eight components from the same random start: the same
    three keep weight > 1e-2 in both fits; a k-means start of ours finds three as well, and
    a fit with another tol and num_iters runs the same compiled program."""
    x = _clusters(seed=2)
    resp = np.random.default_rng(3).dirichlet(np.ones(8), len(x))
    with jax.enable_x64(True):
        params, _, ref = _fit_both(
            x, resp, "full", "dirichlet_process", num_components=8, weight_concentration_prior=1e-3
        )
        active = np.flatnonzero(np.asarray(bayesian.weights(params)) > 1e-2)
        np.testing.assert_array_equal(active, np.flatnonzero(ref.weights_ > 1e-2))
        assert len(active) == 3
        config = _config(num_components=8, weight_concentration_prior=1e-3, num_inits=2)
        own, history = bayesian.fit(jax.random.key(4), {"x": x}, config)
        assert history["converged"]
        assert np.sum(np.asarray(bayesian.weights(own)) > 1e-2) == 3
        # tol and the iteration cap are traced: another value reuses the compiled loop.
        compiled = bayesian._fit_program.cache_size()
        config.update(tol=1e-1, num_iters=7)
        _, history = bayesian.fit(jax.random.key(4), {"x": x}, config)
        assert history["num_iters"] <= 7
        assert bayesian._fit_program.cache_size() == compiled


def test_scores_posterior_and_samples_are_the_expected_parameter_mixture():
    """log_prob is the exact density of the GMM of scikit-learn's weights_, means_ and
    covariances_ (the mixture its sample draws from); samples have its moments; a float32
    fit agrees with float64 to 1e-3."""
    x = _clusters()
    resp = np.random.default_rng(1).dirichlet(np.ones(K), len(x))
    with jax.enable_x64(True):
        params, _, ref = _fit_both(x, resp, "diag", "dirichlet_process")
        mixture = gmm.from_covariances(ref.weights_, ref.means_, ref.covariances_, "diag")
        np.testing.assert_allclose(bayesian.log_prob(params, x), gmm.log_prob(mixture, x), 1e-9)
        np.testing.assert_allclose(bayesian.posterior(params, x).sum(1), 1.0, rtol=1e-12)
        drawn = np.asarray(bayesian.sample(jax.random.key(5), params, 40_000))
    mean = ref.weights_ @ ref.means_
    second = ref.weights_ @ (ref.covariances_ + ref.means_**2)
    np.testing.assert_allclose(drawn.mean(0), mean, atol=0.06)  # sd <= 4.5 / sqrt(4e4) * 3
    np.testing.assert_allclose(drawn.var(0), second - mean**2, rtol=0.03)
    config = _config(covariance_type="diag", num_iters=500, tol=1e-6)
    single, _ = bayesian.fit(
        jax.random.key(0),
        {"x": x.astype(np.float32)},
        config,
        init=bayesian.from_responsibilities(x.astype(np.float32), resp.astype(np.float32), config),
    )
    assert single.means.dtype == np.float32
    np.testing.assert_allclose(single.means, params.means, rtol=1e-3, atol=1e-3)


def test_bad_input_is_refused_with_the_argument_named():
    x = _clusters()[:40].astype(np.float32)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="config.degrees_of_freedom_prior must be > D - 1 = 2"):
        bayesian.fit(key, {"x": x}, _config(degrees_of_freedom_prior=1.5))
    with pytest.raises(ValueError, match="config.weight_concentration_prior_type"):
        bayesian.fit(key, {"x": x}, _config(weight_concentration_prior_type="pitman_yor"))
    with pytest.raises(ValueError, match="config.covariance_prior must hold"):
        bayesian.fit(key, {"x": x}, _config(covariance_type="diag", covariance_prior=(1.0,)))
    with pytest.raises(ValueError, match="num_components=50"):
        bayesian.fit(key, {"x": x}, _config(num_components=50))
    with pytest.raises(ValueError, match="x must be finite"):
        bayesian.fit(key, {"x": np.where(np.eye(40, 3) > 0, np.nan, x)}, _config())
    start = bayesian.from_responsibilities(x, np.full((40, K), 1.0 / K, np.float32), _config())
    with pytest.raises(ValueError, match="init must be"):
        bayesian.fit(key, {"x": x}, _config(covariance_type="diag"), init=start)
    with pytest.raises(ValueError, match="resp must be"):
        bayesian.from_responsibilities(x, np.ones((40, K + 1), np.float32), _config())
    with pytest.raises(ValueError, match="y"):
        bayesian.sample(key, start, 3, y=np.zeros(3, int))
    with pytest.raises(ValueError, match="x must be"):
        bayesian.log_prob(start, x[:, :2])
