"""Gaussian naive Bayes on two well-separated classes in 4 dimensions (the other event
models go through the same verbs in tests/test_naive_bayes.py)."""

import jax
import jax.numpy as jnp

from genjax_lab.models import naive_bayes
from tests.conformance import Case


def _make_data(key):
    label_key, noise_key = jax.random.split(key)
    y = jax.random.bernoulli(label_key, 0.4, (160,)).astype(jnp.int32)
    x = jax.random.normal(noise_key, (160, 4)) + 2.5 * y[:, None] * jnp.array([1.0, -1.0, 0.5, 0])
    train, test = slice(0, 120), slice(120, 160)
    return {"x": x[train], "y": y[train]}, {"x": x[test], "y": y[test]}


CASE = Case(
    family="naive_bayes",
    make_data=_make_data,
    config=naive_bayes.default_config(),
    likelihood="exact",
    labelled=True,
    posterior=False,
    min_train_accuracy=0.85,
)
