"""A tiny MLP GAN on 6x6 images of four bars (noisy copies), a few steps: a GAN has no
likelihood (log_prob raises and names the Parzen estimate), no latent posterior and no
Bayes-rule classifier; samples and their save/load round trip go through the shared verbs.
(x given y for the conditional GAN is tested in tests/test_gan.py.)"""

import jax
import jax.numpy as jnp

from genjax_lab.models import gan
from tests.conformance import Case


def _bars() -> jax.Array:
    """Four 6x6 images: a horizontal or vertical bar, two pixels thick, in two places."""
    rows = jnp.arange(6)[:, None] * jnp.ones((1, 6))
    horizontal = [(rows // 2 == k).astype(jnp.float32) for k in (0, 2)]
    return jnp.stack([*horizontal, *(h.T for h in horizontal)])[..., None]


def _make_data(key):
    pick_key, noise_key = jax.random.split(key)
    x = _bars()[jax.random.randint(pick_key, (96,), 0, 4)]
    x = jnp.clip(x + 0.1 * jax.random.normal(noise_key, x.shape), 0.0, 1.0)
    return {"x": x[:80]}, {"x": x[80:]}


def _config():
    config = gan.default_config()
    config.num_epochs, config.num_steps, config.batch_size = -1, 6, 16
    config.model.update(g_hidden=(16,), d_hidden=(16,), noise_dim=4)
    return config


CASE = Case(
    family="gan",
    make_data=_make_data,
    config=_config(),
    likelihood="none",
    labelled=False,
    posterior=False,
)
