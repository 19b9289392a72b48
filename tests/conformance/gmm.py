"""A class-conditional Gaussian mixture (two full-covariance components per class) on two
classes in 2-D; the unlabelled mixture goes through the same verbs in tests/test_gmm.py."""

import jax
import jax.numpy as jnp

from genjax_lab.models import gmm
from tests.conformance import Case

# Class 0: blobs at (3, 0) and (-3, 0); class 1: blobs at (0, 3) and (0, -3).
CENTRES = jnp.array([[[3.0, 0.0], [-3.0, 0.0]], [[0.0, 3.0], [0.0, -3.0]]])


def _make_data(key):
    label_key, blob_key, noise_key = jax.random.split(key, 3)
    y = jax.random.bernoulli(label_key, 0.4, (200,)).astype(jnp.int32)
    blob = jax.random.bernoulli(blob_key, 0.5, (200,)).astype(jnp.int32)
    x = CENTRES[y, blob] + 0.7 * jax.random.normal(noise_key, (200, 2))
    return {"x": x[:160], "y": y[:160]}, {"x": x[160:], "y": y[160:]}


def _config():
    config = gmm.default_config()
    config.class_conditional, config.num_iters = True, 30
    return config


CASE = Case(
    family="gmm",
    make_data=_make_data,
    config=_config(),
    likelihood="exact",
    labelled=True,
    min_train_accuracy=0.95,
)
