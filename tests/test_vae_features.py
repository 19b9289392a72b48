"""The VAE's inverse autoregressive flow, beta-VAE / KL warm-up and latent interpolation,
each against the paper's equations in float64 NumPy on data the test generates."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax_lab.core.state import TrainState
from genjax_lab.models import vae

_SHAPE = (4, 4, 1)
_LATENT = 3


def _config(**model):
    config = vae.default_config()
    config.data.binarize = "none"  # the tests' pixels are binary floats already
    config.model.update(encoder_hidden=(16,), decoder_hidden=(16,), latent_dim=_LATENT)
    config.model.update(model)
    return config


def _iaf_config(**model):
    return _config(iaf_steps=2, iaf_hidden=(8,), iaf_context_dim=4, **model)


def _params(config, seed=0, num_classes=0):
    meta = {"image_shape": list(_SHAPE), "num_classes": num_classes}
    return vae.init(jax.random.key(seed), config, meta)


def _images(seed, num=6):
    return (np.random.default_rng(seed).random((num, *_SHAPE)) < 0.4).astype(np.float32)


@pytest.fixture(scope="module")
def iaf_params():
    """An IAF VAE whose flow weights are spread out, so every mask and gate matters."""
    params = _params(_iaf_config())
    leaves, tree = jax.tree.flatten(params.variables)
    keys = jax.random.split(jax.random.key(3), len(leaves))
    noisy = [leaf + 0.5 * jax.random.normal(k, leaf.shape) for leaf, k in zip(leaves, keys)]
    return params.replace(variables=jax.tree.unflatten(tree, noisy))


# ----------------------------------------------------------------------------- the flow


def _numpy_made_masks(dim, widths):
    """MADE masks written out from Germain et al. 2015, eq. 12-13: hidden unit k of
    degree m(k) sees input d when m(k) >= d, output d sees unit k when d > m(k)."""
    degrees_in = list(range(1, dim + 1))
    masks = []
    for width in widths:
        degrees = [1 + k % max(dim - 1, 1) for k in range(width)]
        masks.append(np.array([[m >= d for m in degrees] for d in degrees_in], np.float64))
        degrees_in = degrees
    masks.append(np.array([[d > m for d in range(1, dim + 1)] for m in degrees_in], np.float64))
    return masks


def _numpy_iaf_posterior(params, x, eps):
    """h1 and log q(h1 | x) in float64 by Kingma et al. 2016, eq. 10-14 and Algorithm 1."""
    p = jax.tree.map(np.float64, params.variables["params"])
    enc = p["encoder"]
    h = np.tanh(x.reshape(len(x), -1) @ enc["Dense_0"]["kernel"] + enc["Dense_0"]["bias"])
    mean, log_std, context = (
        h @ enc[n]["kernel"] + enc[n]["bias"] for n in ("mean", "log_std", "context")
    )
    z = mean + np.exp(log_std) * eps
    log_q = np.sum(-0.5 * eps**2 - 0.5 * math.log(2 * math.pi) - log_std, -1)
    for t in range(2):
        step = p[f"flow_{t}"]
        if t:
            z = z[..., ::-1]
        hidden_mask, out_mask = _numpy_made_masks(_LATENT, (8,))
        hidden = np.tanh(
            z @ (step["hidden_0"]["kernel"] * hidden_mask)
            + step["hidden_0"]["bias"]
            + context @ step["context"]["kernel"]
        )
        m = hidden @ (step["shift"]["kernel"] * out_mask) + step["shift"]["bias"]
        s = hidden @ (step["gate"]["kernel"] * out_mask) + step["gate"]["bias"]
        sigma = 1.0 / (1.0 + np.exp(-s))
        z = sigma * z + (1.0 - sigma) * m
        log_q = log_q - np.sum(np.log(sigma), -1)
    return z, log_q


def test_iaf_posterior_and_its_density_equal_float64_numpy(iaf_params):
    x, key, k = _images(1), jax.random.key(5), 4
    z, log_q = vae.sample_posterior(key, iaf_params, x, num_samples=k)
    eps = np.float64(jax.random.normal(key, (k, len(x), _LATENT)))
    want_z, want_log_q = _numpy_iaf_posterior(iaf_params, np.float64(x), eps)
    np.testing.assert_allclose(z, want_z, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(log_q, want_log_q, rtol=1e-5, atol=1e-4)
    # and the flow moved z: the density is not the Gaussian's
    gaussian = np.sum(-0.5 * eps**2 - 0.5 * math.log(2 * math.pi), -1)
    assert np.abs(want_log_q - gaussian).min() > 1e-2


def test_each_iaf_step_has_a_lower_triangular_jacobian_with_the_reported_log_det(iaf_params):
    model, variables = iaf_params.model, iaf_params.variables
    x = _images(2, num=1)
    mean, _, context = model.apply(variables, x, method=vae.VAE.encode_context)
    z0 = mean[0] + 0.3
    for t in range(len(model.flow)):

        def step(z, t=t):
            out, log_det = model.apply(
                variables, z[None], context, method=lambda m, z, c: m.flow[t](z, c)
            )
            return out[0], log_det[0]

        jacobian = np.asarray(jax.jacfwd(lambda z: step(z)[0])(z0), np.float64)
        assert np.all(np.triu(jacobian, 1) == 0.0)
        assert np.abs(np.tril(jacobian, -1)).max() > 1e-3  # autoregressive, not diagonal
        np.testing.assert_allclose(
            step(z0)[1], np.sum(np.log(np.abs(np.diag(jacobian)))), rtol=1e-5
        )
    # the whole flow (the order reversed between steps): log|det| of its full Jacobian

    def flow(z):
        return model.apply(variables, z[None], context, method=vae.VAE.flow_forward)

    full = np.asarray(jax.jacfwd(lambda z: flow(z)[0][0])(z0), np.float64)
    np.testing.assert_allclose(flow(z0)[1][0], np.linalg.slogdet(full)[1], rtol=1e-5)


def test_made_masks_make_output_i_see_only_inputs_before_i():
    for dim, widths in ((1, (4,)), (3, ()), (5, (7, 6))):
        connected = np.eye(dim, dtype=bool)
        for mask in vae.made_masks(dim, widths):
            connected = (connected.astype(int) @ mask.astype(int)) > 0
        np.testing.assert_array_equal(connected, np.tril(np.ones((dim, dim), bool), -1).T)


@pytest.fixture(scope="module")
def trained_iaf():
    """An IAF VAE fitted on two classes of 4x4 images (the left half lit, or the top)."""
    rng = np.random.default_rng(0)
    rows, cols = np.meshgrid(np.arange(4), np.arange(4), indexing="ij")
    probs = np.stack([np.where(cols < 2, 0.9, 0.1), np.where(rows < 2, 0.9, 0.1)])[..., None]
    x = (rng.random((256, *_SHAPE)) < probs[rng.integers(0, 2, 256)]).astype(np.float32)
    config = _iaf_config()
    config.num_steps, config.batch_size = 300, 32
    params, history = vae.fit(jax.random.key(0), {"x": x}, config)
    return params, x[:64], history


def test_a_trained_iaf_elbo_stays_below_the_iwae_bound(trained_iaf):
    params, x, history = trained_iaf
    assert history["loss"][-20:].mean() < history["loss"][:20].mean() - 1.0
    elbo = float(vae.elbo(jax.random.key(1), params, x, num_samples=200).mean())
    iwae = float(vae.log_prob_bound(jax.random.key(2), params, x, num_samples=200).mean())
    assert elbo < iwae < 0.0


# ----------------------------------------------------------------------------- KL warm-up


def _jit_loss(key, params, batch, config):
    """The loss compiled whole (op by op it is slow), as a function of (variables, step)."""
    return jax.jit(
        lambda variables, step: vae.loss(
            key, variables, batch, model=params.model, config=config, step=step
        )
    )


def _batch(x, masked_row=True):
    mask = np.ones(len(x), np.float32)
    if masked_row:
        mask[-1] = 0.0
    return {"image": jnp.asarray(x), "label": jnp.zeros(len(x), jnp.int32), "mask": mask}


@pytest.mark.parametrize("step", [0, 3, 10, 25])
def test_kl_warmup_loss_is_the_beta_weighted_elbo(step):
    beta, warmup, k = 4.0, 10, 3
    config = _config(beta=beta, warmup_steps=warmup, num_samples=k)
    params, x, key = _params(config), _images(3), jax.random.key(4)
    batch = _batch(x)
    got = _jit_loss(key, params, batch, config)(params.variables, step)
    terms = vae.log_weight_terms(jax.random.split(key)[1], params, x, None, k)
    log_px, log_pz, log_qz = (np.float64(t) for t in terms)
    weight = min(1.0, step / warmup) * beta
    per_example = np.mean(log_px - weight * (log_qz - log_pz), axis=0)
    want = -np.sum(per_example * batch["mask"]) / batch["mask"].sum()
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_the_default_loss_is_the_elbo_and_the_terms_sum_to_the_log_weights():
    config = _config()
    params, x, key = _params(config), _images(4), jax.random.key(6)
    got = _jit_loss(key, params, _batch(x, False), config)(params.variables, 0)
    sample_key = jax.random.split(key)[1]
    assert float(got) == float(jax.jit(lambda p: -jnp.mean(vae.elbo(sample_key, p, x)))(params))
    log_px, log_pz, log_qz = vae.log_weight_terms(key, params, x, None, 5)
    np.testing.assert_array_equal(
        log_px + log_pz - log_qz, vae.log_weights(key, params, x, None, 5)
    )


def test_the_kl_term_estimates_the_gaussian_kl():
    params, x = _params(_config()), _images(5)
    _, log_pz, log_qz = vae.log_weight_terms(jax.random.key(0), params, x, None, 20_000)
    estimate = np.float64(log_qz - log_pz)
    mean, log_std = (np.float64(a) for a in vae.posterior(params, x))
    exact = np.sum(0.5 * (np.exp(2 * log_std) + mean**2 - 1.0) - log_std, -1)
    np.testing.assert_allclose(estimate.mean(0), exact, atol=4 * estimate.std(0).max() / 140)


def test_train_step_reads_the_warmup_step_from_adams_count():
    config = _config(warmup_steps=4, beta=2.0)
    params, x, key = _params(config), _images(6), jax.random.key(8)
    batch, optimizer = _batch(x), vae.make_optimizer(config.optim)
    state = TrainState.create(params.variables, optimizer)
    loss = _jit_loss(key, params, batch, config)
    train_step = jax.jit(
        lambda state: vae.train_step(key, state, batch, model=params.model, config=config)
    )
    for step in range(3):
        want = loss(state.params, step)
        state, metrics = train_step(state)
        assert float(metrics["loss"]) == float(want)


def test_kl_schedule_keys_are_checked():
    with pytest.raises(ValueError, match="config.model.beta"):
        vae.fit(jax.random.key(0), {"x": _images(0)}, _config(beta=2.0, objective="iwae"))
    with pytest.raises(ValueError, match="config.model.warmup_steps"):
        vae.fit(jax.random.key(0), {"x": _images(0)}, _config(warmup_steps=-1))


# ----------------------------------------------------------------------------- interpolation


def _decoded_mean(params, h):
    decoded = params.model.apply(
        params.variables, jnp.asarray(h, jnp.float32), method=vae.VAE.decode
    )
    return np.asarray(vae.decoder_mean(params.model.decoder.likelihood, decoded))


@pytest.mark.parametrize("slerp", [False, True])
def test_interpolation_decodes_the_path_between_the_posterior_means(slerp):
    params = _params(_config(), seed=2)
    x_a, x_b = _images(7, 3), _images(8, 3)
    grid = np.asarray(vae.interpolate(params, x_a, x_b, 5, slerp=slerp))
    assert grid.shape == (3, 5, *_SHAPE)
    mean_a, mean_b = (np.float64(vae.posterior(params, x).mean) for x in (x_a, x_b))
    np.testing.assert_allclose(grid[:, 0], _decoded_mean(params, mean_a), atol=1e-6)
    np.testing.assert_allclose(grid[:, -1], _decoded_mean(params, mean_b), atol=1e-6)
    if slerp:
        omega = np.arccos(
            np.sum(mean_a * mean_b, -1)
            / (np.linalg.norm(mean_a, axis=-1) * np.linalg.norm(mean_b, axis=-1))
        )[:, None]
        middle = (np.sin(omega / 2) * (mean_a + mean_b)) / np.sin(omega)
    else:
        middle = (mean_a + mean_b) / 2
    np.testing.assert_allclose(grid[:, 2], _decoded_mean(params, middle), atol=1e-5)


def test_iaf_interpolation_ends_at_the_reconstructions(iaf_params):
    x_a, x_b = _images(9, 2), _images(10, 2)
    grid = vae.interpolate(iaf_params, x_a, x_b, 3)
    np.testing.assert_allclose(grid[:, 0], vae.reconstruct(iaf_params, x_a), atol=1e-6)
    np.testing.assert_allclose(grid[:, -1], vae.reconstruct(iaf_params, x_b), atol=1e-6)


def test_a_conditional_interpolation_needs_labels_and_pairs():
    params = _params(_config(conditional=True), num_classes=2)
    x = _images(11, 2)
    with pytest.raises(ValueError, match="y: a conditional VAE"):
        vae.interpolate(params, x, x, 3)
    with pytest.raises(ValueError, match="x_a and x_b"):
        vae.interpolate(params, x, x[:1], 3, y=np.zeros(2, np.int32))
    y = np.array([0, 1], np.int32)
    assert vae.interpolate(params, x, x, 3, y=y).shape == (2, 3, *_SHAPE)
