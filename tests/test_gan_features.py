"""Spectral normalisation, the weight-clipping WGAN and the DCGAN's batch norm, each
against its paper's equations in float64 NumPy on images the test generates."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax_lab.models import gan

_SHAPE = (8, 8, 1)


def _family(**model) -> gan.GANFamily:
    config = gan.default_config()
    config.model.update(g_hidden=(16,), d_hidden=(16, 8), noise_dim=4)
    config.model.update(model)
    return gan.GANFamily(config=config, image_shape=_SHAPE, num_classes=10)


def _family_with(optim=None, **model) -> gan.GANFamily:
    family = _family(**model)
    if optim:
        family.config.optim.update(optim)
    gan.check_config(family.config)
    return family


def _batch(seed: int, num: int = 16, padded: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    mask = np.ones(num, np.float32)
    mask[num - padded :] = 0.0
    return {
        "image": rng.integers(0, 256, (num, *_SHAPE)).astype(np.uint8),
        "label": rng.integers(0, 10, num).astype(np.int32),
        "mask": mask,
    }


def _leaky_relu(h):
    return np.where(h >= 0, h, 0.2 * h)


# ----------------------------------------------------------------------------- spectral norm


def _power_iterated(discriminator, variables, x, num: int):
    """D's variables after `num` training passes, each one power iteration."""

    def one(variables, _):
        return gan.apply_train(discriminator, variables, x)[1], None

    return jax.jit(lambda v: jax.lax.scan(one, v, None, length=num)[0])(variables)


@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
def test_spectral_norm_divides_each_weight_by_its_largest_singular_value(arch):
    family = _family(arch=arch, spectral_norm=True)
    discriminator = family.models[1]
    x = jnp.asarray(np.random.default_rng(0).random((4, *_SHAPE)), jnp.float32)
    variables = discriminator.init(jax.random.key(0), x)
    variables = _power_iterated(discriminator, variables, x, 200)
    # batch_stats: SpectralNorm_i: {"<layer>/kernel/u", "<layer>/kernel/sigma"}
    sigmas = {
        key.removesuffix("/kernel/sigma"): float(value)
        for stats in variables["batch_stats"].values()
        for key, value in stats.items()
        if key.endswith("/sigma")
    }
    assert len(sigmas) == 3  # two hidden layers and the logit
    for name, sigma in sigmas.items():
        kernel = np.float64(variables["params"][name]["kernel"])
        matrix = kernel.reshape(-1, kernel.shape[-1])  # a conv's kernel as Miyato et al.
        largest = np.linalg.svd(matrix, compute_uv=False)[0]
        assert sigma == pytest.approx(largest, rel=1e-4), name
        assert np.linalg.svd(matrix / sigma, compute_uv=False)[0] == pytest.approx(1.0, rel=1e-4)


def _leaves(tree):
    return jax.tree_util.tree_flatten_with_path(tree)[0]


def test_spectrally_normalised_mlp_critic_equals_float64_numpy():
    family = _family(arch="mlp", spectral_norm=True)
    discriminator = family.models[1]
    x = np.random.default_rng(1).random((5, *_SHAPE))
    variables = discriminator.init(jax.random.key(1), jnp.float32(x))
    variables = _power_iterated(discriminator, variables, jnp.float32(x), 200)
    h = x.reshape(5, -1)
    for name in ("Dense_0", "Dense_1", "Dense_2"):  # the hidden layers, then the logit
        dense = variables["params"][name]
        kernel = np.float64(dense["kernel"])
        h = h @ (kernel / np.linalg.svd(kernel, compute_uv=False)[0]) + np.float64(dense["bias"])
        if name != "Dense_2":
            h = _leaky_relu(h)
    got = discriminator.apply(variables, jnp.float32(x))  # eval: the stored vectors
    np.testing.assert_allclose(got, h[:, 0], rtol=1e-4, atol=1e-5)


def test_a_training_step_advances_the_power_iteration():
    family = _family_with(arch="mlp", spectral_norm=True)
    state = family.init(jax.random.key(0), None)
    new, _ = jax.jit(family.train_step)(state, _batch(0), jax.random.key(1))
    before, after = (
        {jax.tree_util.keystr(p): np.asarray(v) for p, v in _leaves(s.d_params["batch_stats"])}
        for s in (state, new)
    )
    assert before.keys() == after.keys()
    assert all(not np.array_equal(before[k], after[k]) for k in before)


# ----------------------------------------------------------------------------- weight clipping


def _wgan_family(n_critic: int = 5) -> gan.GANFamily:
    """The paper's settings: clip 0.01, n_critic 5, RMSProp 5e-5."""
    return _family_with(
        optim={"optimizer": "rmsprop", "d_learning_rate": 5e-5, "g_learning_rate": 5e-5},
        loss="wgan",
        weight_clip=0.01,
        n_critic=n_critic,
    )


def test_after_a_wgan_step_every_critic_weight_lies_in_the_clip_range():
    family = _wgan_family()
    state = family.init(jax.random.key(0), None)
    weights = np.concatenate([np.ravel(w) for w in jax.tree.leaves(state.d_params["params"])])
    assert np.abs(weights).max() > 0.01  # LeCun-normal weights start outside
    new, metrics = jax.jit(family.train_step)(state, _batch(1, padded=3), jax.random.key(2))
    weights = np.concatenate([np.ravel(w) for w in jax.tree.leaves(new.d_params["params"])])
    assert np.abs(weights).max() <= 0.01
    assert np.mean(np.abs(weights) == np.float32(0.01)) > 0.3  # many sit on the boundary
    # the critic loss is E[D(G(z))] - E[D(x)], over the unmasked rows
    np.testing.assert_allclose(metrics["d_loss"], metrics["d_fake"] - metrics["d_real"], atol=1e-7)


def test_a_critic_update_is_rmsprop_then_the_clip():
    family = _wgan_family(n_critic=1)
    discriminator = family.models[1]
    state = family.init(jax.random.key(3), None)
    batch = _batch(4, padded=2)
    real = gan.model.pixels(jnp.asarray(batch["image"]))
    fake = jnp.asarray(np.random.default_rng(5).random((16, *_SHAPE)), jnp.float32)
    mask = jnp.asarray(batch["mask"])
    d_vars, _, metrics = jax.jit(
        lambda v, o: family._critic_update(v, o, real, fake, None, mask, jax.random.key(6))
    )(state.d_params, state.d_opt_state)

    def wgan_loss(params):
        def critic(x):
            return discriminator.apply({"params": params}, x)

        return jnp.sum((critic(fake) - critic(real)) * mask) / jnp.sum(mask)

    weights = state.d_params["params"]
    grads = jax.grad(wgan_loss)(weights)
    assert float(metrics["d_loss"]) == pytest.approx(float(wgan_loss(weights)), rel=1e-5)
    for path, w in _leaves(weights):
        g = np.float64(_at(grads, path))
        rms = np.sqrt(0.01 * g**2)  # RMSProp's first average: (1 - 0.99) g^2
        want = np.clip(np.float64(w) - 5e-5 * g / (rms + 1e-8), -0.01, 0.01)
        np.testing.assert_allclose(_at(d_vars["params"], path), want, atol=1e-7)


def _at(tree, path):
    for key in path:
        tree = tree[key.key]
    return tree


def test_wgan_needs_a_clip_and_batch_norm_refuses_the_gradient_penalty():
    with pytest.raises(ValueError, match="config.model.weight_clip"):
        _family_with(loss="wgan")
    with pytest.raises(ValueError, match="config.model.batch_norm"):
        _family_with(arch="dcgan", loss="wgan-gp", batch_norm=True)
    with pytest.raises(ValueError, match="config.model.batch_norm"):
        gan.make_models(_family(arch="mlp", batch_norm=True).config.model, _SHAPE)
    with pytest.raises(ValueError, match="config.optim.optimizer"):
        _family_with(optim={"optimizer": "sgd"})


# ----------------------------------------------------------------------------- batch norm


@pytest.fixture(scope="module")
def batch_norm_family():
    family = _family_with(arch="dcgan", batch_norm=True)
    return family, family.init(jax.random.key(0), None)


def test_batch_norm_sits_where_radford_et_al_put_it(batch_norm_family):
    family, state = batch_norm_family
    # G: after the projection and the hidden deconv, not the output; D: after the
    # second conv, not the input layer's and not the logit
    assert set(state.g_params["batch_stats"]) == {"bn_project", "bn_deconv"}
    assert set(state.d_params["batch_stats"]) == {"bn_conv1"}
    plain = _family_with(arch="dcgan").init(jax.random.key(0), None)
    assert "batch_stats" not in plain.g_params and "batch_stats" not in plain.d_params
    # and the layers batch norm follows have no bias (its mean would cancel it)
    assert "bias" not in state.g_params["params"]["Dense_0"]
    assert "bias" not in state.g_params["params"]["ConvTranspose_0"]
    assert "bias" not in state.d_params["params"]["Conv_1"]
    assert "bias" in state.d_params["params"]["Conv_0"]


def _normalised(h, rows):
    """Batch norm in float64 over the rows: biased variance, eps 1e-5 (Flax's and
    PyTorch's), per channel; and the batch mean and variance."""
    h, data = np.float64(h), np.float64(h)[rows]
    mean, var = data.mean((0, 1, 2)), data.var((0, 1, 2))
    return (h - mean) / np.sqrt(var + 1e-5), mean, var


def test_discriminator_batch_norm_in_training_and_evaluation(batch_norm_family):
    family, state = batch_norm_family
    discriminator = family.models[1]
    batch = _batch(7, padded=4)
    x, mask = gan.model.pixels(jnp.asarray(batch["image"])), jnp.asarray(batch["mask"])
    rows = batch["mask"] > 0
    _, captured = discriminator.apply(
        state.d_params,
        x,
        train=True,
        mask=mask,
        capture_intermediates=True,
        mutable=["batch_stats", "intermediates"],
    )
    seen = captured["intermediates"]
    conv0, conv1 = seen["Conv_0"]["__call__"][0], seen["Conv_1"]["__call__"][0]
    normalised = seen["bn_conv1"]["__call__"][0]
    # the input layer is not normalised: its activations feed the next conv as they are
    conv = nn.Conv(128, (4, 4), strides=(2, 2), padding="SAME", use_bias=False)
    next_conv = conv.apply(
        {"params": state.d_params["params"]["Conv_1"]}, nn.leaky_relu(conv0, 0.2)
    )
    np.testing.assert_allclose(next_conv, conv1, rtol=1e-5, atol=1e-6)
    want, mean, var = _normalised(conv1, rows)
    np.testing.assert_allclose(normalised, want, rtol=1e-4, atol=1e-4)
    stats = captured["batch_stats"]["bn_conv1"]
    np.testing.assert_allclose(stats["mean"], 0.1 * mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stats["var"], 0.9 + 0.1 * var, rtol=1e-4)
    # evaluation normalises by the running averages, whatever the batch
    running = {**state.d_params, "batch_stats": captured["batch_stats"]}
    _, evaluated = discriminator.apply(
        running, x[:3], capture_intermediates=True, mutable=["intermediates"]
    )
    conv1_eval = evaluated["intermediates"]["Conv_1"]["__call__"][0]
    want_eval = (np.float64(conv1_eval) - np.float64(stats["mean"])) / np.sqrt(
        np.float64(stats["var"]) + 1e-5
    )
    got_eval = evaluated["intermediates"]["bn_conv1"]["__call__"][0]
    np.testing.assert_allclose(got_eval, want_eval, rtol=1e-4, atol=1e-4)


def test_generator_batch_norm_and_its_unnormalised_output(batch_norm_family):
    family, state = batch_norm_family
    generator = family.models[0]
    z = family.noise(jax.random.key(8), 12)
    images, captured = generator.apply(
        state.g_params,
        z,
        train=True,
        capture_intermediates=True,
        mutable=["batch_stats", "intermediates"],
    )
    seen = captured["intermediates"]
    for bn, before in (("bn_project", "Dense_0"), ("bn_deconv", "ConvTranspose_0")):
        h = np.float64(seen[before]["__call__"][0]).reshape(seen[bn]["__call__"][0].shape)
        want, _, _ = _normalised(h, np.ones(12, bool))
        np.testing.assert_allclose(seen[bn]["__call__"][0], want, rtol=1e-4, atol=1e-4)
    # the output layer is not normalised: the images are the sigmoid of its activations
    out = np.float64(seen["out"]["__call__"][0])
    np.testing.assert_allclose(images, 1.0 / (1.0 + np.exp(-out)), rtol=1e-5, atol=1e-6)
    # sampling (evaluation mode) treats every example alone
    params = gan.GANParams(state.g_params, state.d_params, family.spec)
    one = generator.apply(params.generator, z[:1])
    np.testing.assert_allclose(one, generator.apply(params.generator, z)[:1], atol=1e-6)


def test_padded_rows_do_not_change_a_batch_norm_step(batch_norm_family):
    family, state = batch_norm_family
    batch = _batch(9, padded=5)
    step = jax.jit(family.train_step)
    states = []
    for fill in (0, 255):
        filled = dict(batch, image=batch["image"].copy())
        filled["image"][11:] = fill
        states.append(jax.tree.map(np.asarray, step(state, filled, jax.random.key(2))[0]))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6), *states)
    assert not np.array_equal(
        states[0].d_params["batch_stats"]["bn_conv1"]["mean"],
        state.d_params["batch_stats"]["bn_conv1"]["mean"],
    )
