"""A saved model loads without its data, gives the same numbers, and refuses damage."""

import json
import sys
import types
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from genjax_lab import saving
from genjax_lab.core import checkpoint as checkpoint_lib


class ToyParams(NamedTuple):
    mean: jax.Array
    log_sd: jax.Array


def _toy_family() -> types.ModuleType:
    """A diagonal Gaussian answering to the shared verbs."""
    module = types.ModuleType("toy_family")

    def init(key, config, meta):
        del key
        dim = meta["num_features"]
        return ToyParams(jnp.zeros(dim, config.dtype), jnp.zeros(dim, config.dtype))

    def log_prob(params, x):
        return jnp.sum(jax.scipy.stats.norm.logpdf(x, params.mean, jnp.exp(params.log_sd)), -1)

    module.init, module.log_prob = init, log_prob
    return module


@pytest.fixture
def toy(monkeypatch):
    sys.modules["toy_family"] = _toy_family()
    monkeypatch.setitem(saving.FAMILIES, "toy", "toy_family")
    yield
    del sys.modules["toy_family"]


def test_saved_model_loads_without_data_and_scores_the_same(tmp_path, toy):
    config = ml_collections.ConfigDict({"dtype": "float32"})
    params = ToyParams(jnp.array([1.0, -2.0, 0.5]), jnp.array([0.1, 0.0, -0.3]))
    saving.save(tmp_path, "toy", config, {"num_features": 3}, params)
    model = saving.load(tmp_path)
    assert isinstance(model.params, ToyParams)
    x = np.random.default_rng(0).normal(size=(7, 3))
    np.testing.assert_array_equal(model.log_prob(x), model.family.log_prob(params, x))
    assert model.config.dtype == "float32" and model.meta == {"num_features": 3}
    with pytest.raises(NotImplementedError, match="toy family has no sample"):
        model.sample(jax.random.key(0), 4)


def test_load_reports_a_missing_model_and_damaged_parameters(tmp_path, toy):
    with pytest.raises(FileNotFoundError, match="no finished model here"):
        saving.load(tmp_path)
    config = ml_collections.ConfigDict({"dtype": "float32"})
    params = ToyParams(jnp.arange(4.0), jnp.zeros(4))
    directory = saving.save(tmp_path, "toy", config, {"num_features": 4}, params)
    record = json.loads((directory / "model.json").read_text())
    record["sha256"] = "0" * 64  # as if the parameters had changed since
    (directory / "model.json").write_text(json.dumps(record))
    with pytest.raises(checkpoint_lib.CorruptCheckpoint, match="do not hash"):
        saving.load(tmp_path)
    with pytest.raises(ValueError, match="unknown family 'nope'"):
        saving.save(tmp_path / "other", "nope", config, {}, params)
