"""A conditional VAE on 8x8 binary images of two classes (the left half lit, or the top
half), scored by importance sampling; the unconditional VAE and the bounds go through the
same verbs in tests/test_vae.py."""

import jax
import jax.numpy as jnp

from genjax_lab.models import vae
from tests.conformance import Case

_ROWS, _COLS = jnp.meshgrid(jnp.arange(8), jnp.arange(8), indexing="ij")
# P(pixel on) per class: 0.9 on the lit half, 0.1 elsewhere
_PROBS = jnp.stack([jnp.where(_COLS < 4, 0.9, 0.1), jnp.where(_ROWS < 4, 0.9, 0.1)])[..., None]


def _make_data(key):
    label_key, pixel_key = jax.random.split(key)
    y = jax.random.bernoulli(label_key, 0.4, (200,)).astype(jnp.int32)
    x = jax.random.bernoulli(pixel_key, _PROBS[y]).astype(jnp.float32)
    return {"x": x[:160], "y": y[:160]}, {"x": x[160:], "y": y[160:]}


def _config():
    config = vae.default_config()
    config.data.binarize, config.data.num_classes = "none", 2  # the pixels are binary already
    config.model.update(conditional=True, encoder_hidden=(32,), decoder_hidden=(32,), latent_dim=2)
    config.num_steps, config.batch_size = 150, 32
    return config


CASE = Case(
    family="vae",
    make_data=_make_data,
    config=_config(),
    likelihood="estimate",
    labelled=True,
    min_train_accuracy=0.8,
)
