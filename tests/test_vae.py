"""VAE bounds against float64 NumPy, and the data-parallel step against one device."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import load_digits

from experiments.configs import vae_digits
from genjax_lab import saving
from genjax_lab.core import mesh as mesh_lib
from genjax_lab.core.data import Dataset, EpochBatcher
from genjax_lab.data.images import bernoulli_pixels
from genjax_lab.models import vae


def _digits_dataset() -> Dataset:
    digits = load_digits()
    images = np.round(digits.images * 255 / 16).astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int32)
    return Dataset(
        {
            "train": {"image": images[:1400], "label": labels[:1400]},
            "test": {"image": images[1400:], "label": labels[1400:]},
        }
    )


def _family(variant="tiny", **model_overrides):
    config = vae_digits.get_config(variant)
    config.model.update(model_overrides)
    return vae.family_for(config, _digits_dataset())


def _numpy_mlp(layers, h, activation=np.tanh):
    """Dense layers in float64: `layers` is a list of (kernel, bias); last one linear."""
    for i, (kernel, bias) in enumerate(layers):
        h = h @ np.float64(kernel) + np.float64(bias)
        if i < len(layers) - 1:
            h = activation(h)
    return h


def _numpy_log_weights(params, x, y_onehot, eps):
    """log p(x|z,y) + log p(z) - log q(z|x,y) in float64, for a 1-hidden-layer MLP VAE."""
    enc, dec = params.variables["params"]["encoder"], params.variables["params"]["decoder"]
    h = np.concatenate([x.reshape(len(x), -1), y_onehot], -1)
    h = np.tanh(h @ np.float64(enc["Dense_0"]["kernel"]) + np.float64(enc["Dense_0"]["bias"]))
    mean = h @ np.float64(enc["mean"]["kernel"]) + np.float64(enc["mean"]["bias"])
    log_std = h @ np.float64(enc["log_std"]["kernel"]) + np.float64(enc["log_std"]["bias"])
    z = mean + np.exp(log_std) * eps  # [K, B, L]
    hz = np.concatenate([z, np.broadcast_to(y_onehot, (*z.shape[:2], y_onehot.shape[-1]))], -1)
    logits = _numpy_mlp(
        [
            (dec["Dense_0"]["kernel"], dec["Dense_0"]["bias"]),
            (dec["Dense_1"]["kernel"], dec["Dense_1"]["bias"]),
        ],
        hz,
    )
    xf = x.reshape(1, len(x), -1)
    log_px = np.sum(xf * logits - np.logaddexp(0.0, logits), -1)
    log_pz = np.sum(-0.5 * z**2 - 0.5 * math.log(2 * math.pi), -1)
    log_qz = np.sum(-0.5 * eps**2 - 0.5 * math.log(2 * math.pi) - log_std, -1)
    return log_px + log_pz - log_qz


def _numpy_gaussian_layer(layer, h):
    """Mean and log std of a one-hidden-layer tanh Gaussian MLP, float64."""
    hidden = np.tanh(
        h @ np.float64(layer["Dense_0"]["kernel"]) + np.float64(layer["Dense_0"]["bias"])
    )
    return tuple(
        hidden @ np.float64(layer[n]["kernel"]) + np.float64(layer[n]["bias"])
        for n in ("mean", "log_std")
    )


def _numpy_normal_log_density(z, mean, log_std):
    return np.sum(
        -0.5 * ((z - mean) * np.exp(-log_std)) ** 2 - 0.5 * math.log(2 * math.pi) - log_std, -1
    )


def _numpy_two_layer_log_weights(params, x, y_onehot, eps1, eps2):
    """log p(x|h1,y) + log p(h1|h2) + log p(h2) - log q(h1|x,y) - log q(h2|h1) in float64."""
    p = params.variables["params"]
    mean1, log_std1 = _numpy_gaussian_layer(
        p["encoder"], np.concatenate([x.reshape(len(x), -1), y_onehot], -1)
    )
    h1 = mean1 + np.exp(log_std1) * eps1  # [K, B, L1]
    mean2, log_std2 = _numpy_gaussian_layer(p["upper_encoders_0"], h1)
    h2 = mean2 + np.exp(log_std2) * eps2  # [K, B, L2]
    prior_mean1, prior_log_std1 = _numpy_gaussian_layer(p["upper_priors_0"], h2)
    dec = p["decoder"]
    hz = np.concatenate([h1, np.broadcast_to(y_onehot, (*h1.shape[:2], y_onehot.shape[-1]))], -1)
    logits = _numpy_mlp(
        [
            (dec["Dense_0"]["kernel"], dec["Dense_0"]["bias"]),
            (dec["Dense_1"]["kernel"], dec["Dense_1"]["bias"]),
        ],
        hz,
    )
    xf = x.reshape(1, len(x), -1)
    log_px = np.sum(xf * logits - np.logaddexp(0.0, logits), -1)
    log_p = (
        log_px
        + _numpy_normal_log_density(h1, prior_mean1, prior_log_std1)
        + _numpy_normal_log_density(h2, 0.0, 0.0)
    )
    return (
        log_p
        - _numpy_normal_log_density(h1, mean1, log_std1)
        - _numpy_normal_log_density(h2, mean2, log_std2)
    )


@pytest.fixture(scope="module")
def fixed_problem():
    family = _family()
    params = family.params(family.init(jax.random.key(1), None).params)
    rng = np.random.default_rng(0)
    x = (rng.random((6, 8, 8, 1)) < 0.4).astype(np.float32)
    y = np.arange(6, dtype=np.int32) % 10
    return params, x, y, jax.random.key(7)


def _eps(key, k, batch, latent):
    return np.float64(jax.random.normal(key, (k, batch, latent)))


def test_elbo_and_iwae_equal_float64_numpy(fixed_problem):
    params, x, y, key = fixed_problem
    k = 5
    eps = _eps(key, k, len(x), params.model.encoder.latent_dim)
    reference = _numpy_log_weights(
        jax.tree.map(np.asarray, params), np.float64(x), np.eye(10)[y], eps
    )
    elbo_ref = reference.mean(0)
    iwae_ref = np.logaddexp.reduce(reference, axis=0) - math.log(k)
    np.testing.assert_allclose(
        vae.elbo(key, params, x, y, num_samples=k), elbo_ref, rtol=2e-5, atol=2e-4
    )
    np.testing.assert_allclose(
        vae.log_prob_bound(key, params, x, y, num_samples=k), iwae_ref, rtol=2e-5, atol=2e-4
    )
    assert np.all(iwae_ref >= elbo_ref - 1e-9)  # Jensen: the IWAE bound is the tighter one


def test_chunked_importance_sampling_equals_one_logsumexp(fixed_problem):
    params, x, y, key = fixed_problem
    chunks, chunk = 4, 5
    keys = jax.random.split(key, chunks)
    latent = params.model.encoder.latent_dim
    weights = np.concatenate(
        [
            _numpy_log_weights(
                jax.tree.map(np.asarray, params),
                np.float64(x),
                np.eye(10)[y],
                _eps(k, chunk, len(x), latent),
            )
            for k in keys
        ]
    )
    expected = np.logaddexp.reduce(weights, axis=0) - math.log(chunks * chunk)
    got = vae.log_prob_estimate(key, params, x, y, num_samples=chunks * chunk, chunk=chunk)
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-4)


@pytest.fixture(scope="module")
def two_layer_problem():
    """A conditional 64-32-4 / 4-5-3 tanh model with 2 stochastic layers (h1: 4, h2: 3)."""
    family = _family(upper_latent_dims=(3,), upper_hidden=(5,))
    rng = np.random.default_rng(1)
    x = (rng.random((6, 8, 8, 1)) < 0.4).astype(np.float32)
    params = family.params(family.init(jax.random.key(2), None).params)
    return params, x, np.arange(6, dtype=np.int32) % 10, jax.random.key(9)


def test_two_layer_bounds_equal_float64_numpy(two_layer_problem):
    params, x, y, key = two_layer_problem
    k = 5
    assert params.model.latent_dims == (4, 3)
    eps = _eps(key, k, len(x), 7)  # one draw split between the layers, h1 first
    reference = _numpy_two_layer_log_weights(
        jax.tree.map(np.asarray, params), np.float64(x), np.eye(10)[y], eps[..., :4], eps[..., 4:]
    )
    np.testing.assert_allclose(
        vae.log_weights(key, params, x, y, k), reference, rtol=2e-5, atol=2e-4
    )
    np.testing.assert_allclose(
        vae.elbo(key, params, x, y, num_samples=k), reference.mean(0), rtol=2e-5, atol=2e-4
    )
    iwae_ref = np.logaddexp.reduce(reference, axis=0) - math.log(k)
    np.testing.assert_allclose(
        vae.log_prob_bound(key, params, x, y, num_samples=k), iwae_ref, rtol=2e-5, atol=2e-4
    )


@pytest.mark.parametrize("upper", [(), (3,)])
def test_iwae_bound_with_one_sample_is_the_elbo(upper):
    family = _family(upper_latent_dims=upper, upper_hidden=(5,))
    params = family.params(family.init(jax.random.key(3), None).params)
    x = (np.random.default_rng(2).random((6, 8, 8, 1)) < 0.4).astype(np.float32)
    y, key = np.arange(6, dtype=np.int32), jax.random.key(4)
    np.testing.assert_allclose(
        vae.log_prob_bound(key, params, x, y), vae.elbo(key, params, x, y), rtol=1e-6, atol=1e-5
    )


def test_two_layer_samples_come_through_the_prior_layers(two_layer_problem):
    """Samples vary with the key and lie in [0, 1]; reconstructions have the image's shape."""
    params, x, y, _ = two_layer_problem
    draws = [np.asarray(vae.sample(jax.random.key(s), params, 4, y=y[:4])) for s in (0, 1)]
    assert draws[0].shape == (4, 8, 8, 1) and np.all((draws[0] >= 0) & (draws[0] <= 1))
    assert not np.allclose(draws[0], draws[1])
    assert vae.reconstruct(params, x, y).shape == (6, 8, 8, 1)


@pytest.mark.parametrize("likelihood", ["gaussian", "logistic"])
def test_grey_level_likelihoods_are_normalised(likelihood):
    """Discretized logistic: the 256 bin probabilities sum to 1. Gaussian: matches scipy."""
    rng = np.random.default_rng(3)
    decoded = jnp.asarray(
        np.stack([rng.normal(0.3, 0.5, (4,)), rng.normal(-2, 0.5, (4,))], -1), jnp.float32
    )
    if likelihood == "logistic":
        levels = jnp.arange(256, dtype=jnp.float32) / 255.0
        per_bin = jax.vmap(
            lambda v: vae.decoder_log_prob(
                "logistic", decoded[:, None, None, None, :], jnp.full((4, 1, 1, 1), v)
            )
        )(levels)
        np.testing.assert_allclose(np.exp(np.float64(per_bin)).sum(0), 1.0, rtol=1e-4)
    else:
        from scipy.stats import norm

        x = jnp.asarray(rng.random(4), jnp.float32)
        got = vae.decoder_log_prob(
            "gaussian", decoded[:, None, None, None, :], x[:, None, None, None]
        )
        expected = norm.logpdf(
            np.float64(x), np.float64(decoded[:, 0]), np.exp(np.float64(decoded[:, 1]))
        )
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_bayes_classifier_is_bayes_rule_over_the_estimates(fixed_problem):
    """P(y | x) is normalised and equals softmax(log p(x | y) + log p(y)), every label's
    estimate drawn with the classifier's one key."""
    params, x, _, key = fixed_problem
    params = params.replace(log_prior=jnp.log(jnp.linspace(1.0, 2.0, 10) / 15.0))
    classifier = vae.classifier(params, num_samples=4, chunk=2)
    assert classifier.stochastic
    log_post, predicted = jax.jit(
        lambda c, x, key: (c.predict_log_proba(x, key), c.predict(x, key))
    )(classifier, x, key)
    log_post = np.float64(log_post)
    assert log_post.shape == (len(x), 10)
    np.testing.assert_allclose(np.exp(log_post).sum(-1), 1.0, rtol=1e-5)
    estimate = jax.jit(
        lambda label: vae.log_prob_estimate(
            key, params, x, jnp.full(len(x), label), num_samples=4, chunk=2
        )
    )
    joint = np.stack([estimate(c) for c in range(10)], -1) + np.asarray(params.log_prior)
    np.testing.assert_allclose(
        log_post, joint - np.logaddexp.reduce(joint, -1, keepdims=True), rtol=1e-4, atol=1e-4
    )
    np.testing.assert_array_equal(predicted, np.argmax(joint, -1))
    with pytest.raises(ValueError, match="key"):
        classifier.predict(x)


@pytest.mark.parametrize("conv", [False, True])
def test_train_step_on_8_devices_equals_1_device(conv):
    """Same global batch and key: 8-way data parallel vs one device, to 1e-6 after a step."""
    family = _family(conv=conv)
    data = _digits_dataset()
    batch_np = EpochBatcher(data["train"], 32, seed=0).batch(3)
    results = []
    for devices in (jax.devices()[:1], jax.devices()[:8]):
        mesh = mesh_lib.data_mesh(devices)
        batch = mesh_lib.global_batch(mesh, batch_np)
        state = jax.jit(family.init, out_shardings=mesh_lib.replicated(mesh))(
            jax.random.key(0), batch
        )
        step = jax.jit(family.train_step, out_shardings=mesh_lib.replicated(mesh))
        state, metrics = step(state, batch, jax.random.key(5))
        state, metrics = step(state, batch, jax.random.key(6))
        results.append((jax.tree.map(np.asarray, state.params), float(metrics["loss"])))
    (params_1, loss_1), (params_8, loss_8) = results
    assert len(jax.devices()) == 8
    np.testing.assert_allclose(loss_8, loss_1, rtol=1e-6)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), params_8, params_1
    )


def test_two_layer_gradient_on_8_devices_equals_1_device():
    """The IWAE loss and gradient of a 2-layer model: 8-way data parallel vs one device.

    The gradient alone (no optimiser step) keeps compilation cheap; the 1-layer tests
    above cover the step.
    """
    family = _family(upper_latent_dims=(3,), upper_hidden=(5,), objective="iwae", num_samples=3)
    params = family.init(jax.random.key(0), None).params
    batch_np = EpochBatcher(_digits_dataset()["train"], 32, seed=0).batch(3)

    def loss(variables, batch, key):
        return vae.loss(key, variables, batch, model=family.model, config=family.config)

    results = []
    for devices in (jax.devices()[:1], jax.devices()[:8]):
        mesh = mesh_lib.data_mesh(devices)
        loss_and_grad = jax.jit(jax.value_and_grad(loss), out_shardings=mesh_lib.replicated(mesh))
        batch = mesh_lib.global_batch(mesh, batch_np)
        results.append(jax.tree.map(np.asarray, loss_and_grad(params, batch, jax.random.key(5))))
    assert len(jax.devices()) == 8
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), results[1], results[0]
    )


def test_padded_rows_do_not_change_the_loss():
    """Rows with mask 0 (the padding of a last batch) carry no weight, whatever they hold."""
    family = _family()
    params = family.init(jax.random.key(0), None).params
    batch = EpochBatcher(_digits_dataset()["train"], 16, seed=0).batch(0)
    batch["mask"][12:] = 0.0
    zeros, whites = dict(batch), dict(batch)
    zeros["image"] = batch["image"].copy()
    zeros["image"][12:] = 0
    whites["image"] = batch["image"].copy()
    whites["image"][12:] = 255
    key = jax.random.key(2)
    losses = [
        vae.loss(key, params, b, model=family.model, config=family.config) for b in (zeros, whites)
    ]
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-6)


def test_bernoulli_pixels_have_the_pixel_intensity_as_probability():
    levels = np.array([0, 1, 64, 128, 200, 254, 255], np.uint8)
    images = np.broadcast_to(levels, (4000, 7)).copy()
    draws = np.asarray(bernoulli_pixels(jax.random.key(0), jnp.asarray(images)))
    expected = levels / 255.0
    stderr = np.sqrt(expected * (1 - expected) / 4000) + 1e-12
    assert np.all(np.abs(draws.mean(0) - expected) <= 4 * stderr + 1e-9)
    assert draws[:, 0].max() == 0 and draws[:, -1].min() == 1  # 0 and 255 are exact


# ----------------------------------------------------------------------------- the shared verbs


def _verb_config(conditional: bool):
    config = vae_digits.get_config("tiny" if conditional else "vae")
    config.model.update(encoder_hidden=(32,), decoder_hidden=(32,), latent_dim=4)
    config.num_steps, config.batch_size = 30, 32
    return config


@pytest.fixture(scope="module")
def fitted():
    """A conditional VAE fitted on the digits' uint8 pixels through `fit`."""
    train = _digits_dataset()["train"]
    data = {"x": train["image"][:320], "y": train["label"][:320]}
    config = _verb_config(conditional=True)
    params, history = vae.fit(jax.random.key(0), data, config)
    return config, data, params, history


def test_fit_has_the_structure_of_init_and_lowers_the_loss(fitted):
    config, data, params, history = fitted
    meta = vae.meta_from_data(data, config)
    assert meta == {"image_shape": [8, 8, 1], "num_classes": 10}
    fresh = jax.eval_shape(lambda key: vae.init(key, config, meta), jax.random.key(1))
    assert jax.tree.structure(fresh) == jax.tree.structure(params)
    jax.tree.map(
        lambda a, b: (a.shape, a.dtype) == (b.shape, b.dtype) or pytest.fail(), fresh, params
    )
    losses = np.asarray(history["loss"])
    assert history["num_steps"] == 30 and losses.shape == (30,)
    assert losses[-5:].mean() < losses[:5].mean() - 2.0, losses
    frequencies = np.bincount(data["y"], minlength=10) / len(data["y"])
    np.testing.assert_allclose(np.exp(params.log_prior), frequencies, rtol=1e-5)


def test_fit_takes_float_pixels_only_unbinarized():
    x = (np.random.default_rng(0).random((40, 8, 8, 1)) < 0.3).astype(np.float32)
    config = _verb_config(conditional=False)
    config.num_steps = 3
    with pytest.raises(ValueError, match="config.data.binarize='dynamic' needs uint8"):
        vae.fit(jax.random.key(0), {"x": x}, config)
    config.data.binarize = "none"
    params, history = vae.fit(jax.random.key(0), {"x": x}, config)
    assert params.log_prior is None and np.isfinite(history["loss"]).all()


def test_sample_given_labels_and_from_the_label_prior(fitted):
    _, _, params, _ = fitted
    key = jax.random.key(3)
    labels = np.array([1, 7, 7], np.int32)
    given = np.asarray(vae.sample(key, params, 3, y=labels))
    assert given.shape == (3, 8, 8, 1)
    # the same noise decoded under the other label differs: the label drives the image
    assert not np.allclose(given[0], np.asarray(vae.sample(key, params, 3, y=labels[::-1]))[0])
    one_class = params.replace(log_prior=jnp.log(jax.nn.one_hot(7, 10) + 1e-30))
    np.testing.assert_array_equal(
        vae.sample(key, one_class, 3), vae.sample(key, params, 3, y=np.full(3, 7, np.int32))
    )
    with pytest.raises(ValueError, match="y"):
        vae.sample(key, params, 3, y=np.array([0, 10, 1]))


def test_posterior_is_the_encoders_gaussian_under_each_label(fitted):
    _, data, params, _ = fitted
    x = np.float32(data["x"][:6] > 127)
    every = vae.posterior(params, x)
    assert every.mean.shape == every.log_std.shape == (6, 10, 4)
    given = vae.posterior(params, x, np.full(6, 3, np.int32))
    assert given.mean.shape == (6, 4)
    np.testing.assert_allclose(every.mean[:, 3], given.mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(every.log_std[:, 3], given.log_std, rtol=1e-5, atol=1e-6)


def test_an_unconditional_vae_saves_and_loads_to_the_same_bound(tmp_path):
    config = _verb_config(conditional=False)
    meta = {"image_shape": [8, 8, 1], "num_classes": 0}
    params = vae.init(jax.random.key(0), config, meta)
    with pytest.raises(ValueError, match="conditional"):
        vae.classifier(params)
    saving.save(tmp_path, "vae", config, meta, params)
    loaded = saving.load(tmp_path)
    x = (np.random.default_rng(1).random((5, 8, 8, 1)) < 0.5).astype(np.float32)
    key = jax.random.key(2)
    np.testing.assert_array_equal(
        loaded.log_prob_bound(key, x, num_samples=3),
        vae.log_prob_bound(key, params, x, num_samples=3),
    )
    assert vae.posterior(params, x).mean.shape == (5, 4)
