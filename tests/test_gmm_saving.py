"""A fitted variational Bayesian mixture (gmm.bayesian) is saved and loaded as every family
is (genjax_lab.saving.save / load): the loaded model gives the fit's numbers bitwise."""

import jax
import numpy as np
import pytest

from genjax_lab import saving
from genjax_lab.models.gmm import bayesian


def _clusters() -> np.ndarray:
    rng = np.random.default_rng(0)
    centres = np.array([[-4.0, 0.0, 1.0], [4.0, 1.0, 0.0], [0.0, 5.0, -1.0]])
    return (centres[rng.integers(0, 3, 150)] + rng.normal(size=(150, 3))).astype(np.float32)


def _config(covariance_type: str, weight_prior_type: str):
    config = bayesian.default_config()
    config.update(
        num_components=5,
        covariance_type=covariance_type,
        weight_concentration_prior_type=weight_prior_type,
        num_iters=30,
    )
    return config


def test_saved_bayesian_mixture_loads_with_the_same_numbers(tmp_path):
    """Save, load from the workdir alone, and every verb answers as the fit did."""
    covariance_type, weight_prior_type = "full", "dirichlet_process"
    x = _clusters()
    config = _config(covariance_type, weight_prior_type)
    params, _ = bayesian.fit(jax.random.key(0), {"x": x}, config)
    meta = bayesian.meta_from_data({"x": x}, config)
    saving.save(tmp_path / "run", "bayesian_gmm", config, meta, params)

    model = saving.load(tmp_path / "run")
    assert isinstance(model.params, bayesian.BayesianGMM)
    assert (model.params.covariance_type, model.params.weight_prior_type) == (
        covariance_type,
        weight_prior_type,
    )
    for saved, loaded in zip(jax.tree.leaves(params), jax.tree.leaves(model.params)):
        assert saved.dtype == loaded.dtype
        np.testing.assert_array_equal(saved, loaded)
    key = jax.random.key(1)
    np.testing.assert_array_equal(model.log_prob(x), bayesian.log_prob(params, x))
    np.testing.assert_array_equal(
        model.log_prob_bound(key, x), bayesian.log_prob_bound(key, params, x)
    )
    np.testing.assert_array_equal(model.posterior(x), bayesian.posterior(params, x))
    predicted = model.family.predict(model.params, x)
    np.testing.assert_array_equal(predicted, bayesian.predict(params, x))
    np.testing.assert_array_equal(predicted, np.argmax(bayesian.posterior(params, x), axis=1))
    np.testing.assert_array_equal(model.sample(key, 7), bayesian.sample(key, params, 7))
    with pytest.raises(NotImplementedError, match="bayesian_gmm family has no classifier"):
        model.classifier()


# Every covariance layout (the prior's and the precisions' shapes differ; tied has one nu)
# under both weight priors (the sticks' [2, K] concentration against the Dirichlet's [K]).
@pytest.mark.parametrize(
    "covariance_type, weight_prior_type",
    [
        ("full", "dirichlet_distribution"),
        ("tied", "dirichlet_process"),
        ("diag", "dirichlet_distribution"),
        ("spherical", "dirichlet_process"),
    ],
)
def test_init_has_the_structure_of_a_fit(covariance_type, weight_prior_type):
    """load restores into init's shapes and dtypes: they are those of a fit's M-step."""
    x = _clusters()
    config = _config(covariance_type, weight_prior_type)
    meta = bayesian.meta_from_data({"x": x}, config)
    built = jax.eval_shape(lambda key: bayesian.init(key, config, meta), jax.random.key(0))
    prior = bayesian.prior_from_data(x, config)
    resp = np.full((len(x), 5), 0.2, np.float32)
    fitted = jax.eval_shape(
        lambda: bayesian._m_step(
            prior, x, resp, covariance_type, weight_prior_type, config.reg_covar
        )
    )
    assert jax.tree.structure(built) == jax.tree.structure(fitted)
    assert jax.tree.leaves(built) == jax.tree.leaves(fitted)
