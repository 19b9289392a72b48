"""Every family through the shared verbs (genjax_lab.api): fit, score, sample, posterior,
classify, save and load. Cases live in tests/conformance/<family>.py."""

import importlib
import pkgutil

import jax
import numpy as np
import pytest

from genjax_lab import saving
from tests import conformance

CASES = {
    info.name: importlib.import_module(f"tests.conformance.{info.name}").CASE
    for info in pkgutil.iter_modules(conformance.__path__)
}
SCORE = {"exact": "log_prob", "bound": "log_prob_bound", "estimate": "log_prob_estimate"}


def _score(model, case, x, key):
    verb = SCORE[case.likelihood]
    return model.log_prob(x) if verb == "log_prob" else getattr(model, verb)(key, x)


def _leading(tree) -> int:
    return jax.tree_util.tree_leaves(tree)[0].shape[0]


@pytest.mark.parametrize("name", sorted(CASES))
def test_family_speaks_the_shared_vocabulary(name, tmp_path):
    case = CASES[name]
    family = saving.family_module(case.family)
    key_data, key_fit, key_score, key_sample = jax.random.split(jax.random.key(0), 4)
    train, test = case.make_data(key_data)
    params, history = family.fit(key_fit, train, case.config)
    assert history is not None

    meta = family.meta_from_data(train, case.config)
    model = saving.Model(case.family, case.config, meta, params)
    num_test = _leading(test["x"])
    if case.likelihood == "none":
        with pytest.raises(NotImplementedError, match="Parzen"):
            model.log_prob(test["x"])
    else:
        scores = np.asarray(_score(model, case, test["x"], key_score))
        assert scores.shape == (num_test,) and np.all(np.isfinite(scores)), scores

    samples = model.sample(key_sample, 5, **case.sample_kwargs)
    assert _leading(samples) == 5
    if case.labelled:
        labels = np.array([0, 1, 0, 1, 1])
        given = model.sample(key_sample, 5, y=labels, **case.sample_kwargs)
        assert _leading(given) == 5
        classifier = model.classifier()
        key = key_score if classifier.stochastic else None
        predictions = np.asarray(classifier.predict(train["x"], key))
        accuracy = np.mean(predictions == np.asarray(train["y"]))
        assert accuracy >= case.min_train_accuracy, accuracy
        log_proba = np.asarray(classifier.predict_log_proba(test["x"], key))
        np.testing.assert_allclose(np.exp(log_proba).sum(-1), 1.0, rtol=1e-4)
    if case.posterior:
        posterior = model.posterior(test["x"])
        assert _leading(posterior) == num_test

    saving.save(tmp_path, case.family, case.config, meta, params)
    loaded = saving.load(tmp_path)
    for saved_leaf, loaded_leaf in zip(
        jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(loaded.params)
    ):
        np.testing.assert_array_equal(np.asarray(saved_leaf), np.asarray(loaded_leaf))
    if case.likelihood != "none":
        np.testing.assert_array_equal(
            _score(loaded, case, test["x"], key_score), _score(model, case, test["x"], key_score)
        )
    np.testing.assert_array_equal(
        jax.tree_util.tree_leaves(loaded.sample(key_sample, 5, **case.sample_kwargs))[0],
        jax.tree_util.tree_leaves(samples)[0],
    )
