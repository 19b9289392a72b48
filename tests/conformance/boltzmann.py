"""An RBM with 12 visible and 8 hidden units on noisy copies of four binary patterns: small
enough that `log_prob(params, x)` enumerates log Z (2^8 hidden states) inside, so the case is
exact. (AIS, the DBM and its bound go through the same verbs in tests/test_boltzmann.py.)"""

import jax
import jax.numpy as jnp

from genjax_lab.models import boltzmann
from tests.conformance import Case

PATTERNS = jnp.array([[1] * 6 + [0] * 6, [0] * 6 + [1] * 6, [1, 0] * 6, [0, 1] * 6], jnp.float32)


def _make_data(key):
    pick_key, flip_key = jax.random.split(key)
    x = PATTERNS[jax.random.randint(pick_key, (240,), 0, len(PATTERNS))]
    flips = jax.random.bernoulli(flip_key, 0.05, x.shape)
    x = jnp.where(flips, 1.0 - x, x)
    return {"x": x[:200]}, {"x": x[200:]}


def _config():
    config = boltzmann.default_config()
    config.batch_size, config.num_epochs = 20, 5.0
    config.model.num_hidden, config.model.num_chains = 8, 20
    config.optim.learning_rate = 0.1
    return config


CASE = Case(
    family="boltzmann", make_data=_make_data, config=_config(), likelihood="exact", labelled=False
)
