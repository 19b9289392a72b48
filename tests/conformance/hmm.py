"""Class-conditional Gaussian HMMs: two classes of 2-D sequences whose two states sit at
different places (class 0: (2, 0) and (-2, 0); class 1: (0, 2) and (0, -2)), with lengths
that vary, so the labelled case goes through Sequences and the classifier."""

import jax
import jax.numpy as jnp

from genjax_lab.models import hmm
from tests.conformance import Case

MEANS = jnp.array([[[2.0, 0.0], [-2.0, 0.0]], [[0.0, 2.0], [0.0, -2.0]]])
NUM, LENGTH = 40, 12


def _make_data(key):
    label_key, state_key, noise_key, length_key = jax.random.split(key, 4)
    y = jax.random.bernoulli(label_key, 0.5, (NUM,)).astype(jnp.int32)
    # Sticky two-state chains: a state persists for a few steps.
    switches = jax.random.bernoulli(state_key, 0.2, (NUM, LENGTH)).astype(jnp.int32)
    states = jnp.cumsum(switches, axis=1) % 2
    obs = MEANS[y[:, None], states] + 0.5 * jax.random.normal(noise_key, (NUM, LENGTH, 2))
    lengths = jax.random.randint(length_key, (NUM,), LENGTH // 2, LENGTH + 1)
    x = hmm.Sequences(obs, lengths)
    train = {"x": jax.tree.map(lambda a: a[:30], x), "y": y[:30]}
    test = {"x": jax.tree.map(lambda a: a[30:], x), "y": y[30:]}
    return train, test


def _config():
    config = hmm.default_config()
    config.update(num_states=2, emission="diag", class_conditional=True, num_iters=20)
    return config


CASE = Case(
    family="hmm",
    make_data=_make_data,
    config=_config(),
    likelihood="exact",
    labelled=True,
    min_train_accuracy=0.95,
    sample_kwargs={"length": 8},
)
