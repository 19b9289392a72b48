"""GANs: losses against NumPy, the 8-device step against 1 device, padding rows carry no
weight, and the tiny variants end to end through real processes (incl. SIGKILL resume)."""

import json
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import load_digits

from experiments.configs import gan_mnist
from genjax_lab.core import mesh as mesh_lib
from genjax_lab.core.data import Dataset, EpochBatcher
from genjax_lab.models import gan
from tests.helpers import (
    REPO,
    assert_ok,
    experiment_command,
    final_state,
    kill_after_checkpoint,
    process_env,
    run_experiment,
)


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


def _family(variant: str, **model_overrides) -> gan.GANFamily:
    config = gan_mnist.get_config(variant)
    config.model.update(model_overrides)
    return gan.family_for(config, _digits_dataset())


def test_losses_equal_numpy():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=7) * 3, rng.normal(size=7) * 3
    softplus = lambda v: np.logaddexp(0.0, v)
    expected = {
        "nonsaturating": (softplus(-real) + softplus(fake), softplus(-fake)),
        "hinge": (np.maximum(0, 1 - real) + np.maximum(0, 1 + fake), -fake),
        "wgan-gp": (fake - real, -fake),
    }
    for loss, (d_expected, g_expected) in expected.items():
        d_loss = gan.discriminator_loss(loss, jnp.float32(real), jnp.float32(fake))
        np.testing.assert_allclose(d_loss, d_expected, rtol=1e-5)
        np.testing.assert_allclose(
            gan.generator_loss(loss, jnp.float32(fake)), g_expected, rtol=1e-5
        )


def test_gradient_penalty_of_a_known_critic():
    """critic(x) = sum(w * x^2 / 2): grad at x_hat is w * x_hat, per example."""
    rng = np.random.default_rng(1)
    w = jnp.asarray(rng.normal(size=(1, 3, 3, 1)), jnp.float32)
    real, fake = (jnp.asarray(rng.random((5, 3, 3, 1)), jnp.float32) for _ in range(2))
    key = jax.random.key(3)
    got = gan.gradient_penalty(lambda x: jnp.sum(w * x**2 / 2, axis=(1, 2, 3)), real, fake, key)
    t = np.asarray(jax.random.uniform(key, (5, 1, 1, 1)))
    x_hat = t * np.asarray(real) + (1 - t) * np.asarray(fake)
    norms = np.sqrt(((np.asarray(w) * x_hat) ** 2).reshape(5, -1).sum(-1))
    np.testing.assert_allclose(got, (norms - 1) ** 2, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("variant", ["tiny_mlp", "tiny_dcgan"])
def test_paper_initialisation_bounds_every_kernel(variant):
    """g/d_init_range: every kernel uniform within its range and spread across it, biases
    zero except G's output bias (the pixel means' logits); 0 keeps LeCun normal."""
    family = _family(variant, g_init_range=0.05, d_init_range=0.005)
    state = family.init(jax.random.key(0), None)
    for params, bound in ((state.g_params, 0.05), (state.d_params, 0.005)):
        flat = jax.tree_util.tree_flatten_with_path(params)[0]
        names = [(jax.tree_util.keystr(path), v) for path, v in flat]
        kernels = np.concatenate([np.ravel(v) for name, v in names if "kernel" in name])
        assert np.abs(kernels).max() <= bound and np.abs(kernels).max() > 0.9 * bound
        assert abs(kernels.std() - bound / np.sqrt(3)) < 0.05 * bound  # uniform, not normal
        biases = [v for name, v in names if "bias" in name and "out" not in name]
        assert all(not np.any(b) for b in biases)
    default = _family(variant, g_init_range=0.0, d_init_range=0.0).init(jax.random.key(0), None)
    assert np.abs(np.asarray(default.d_params["params"]["Dense_0"]["kernel"])).max() > 0.005
    with pytest.raises(ValueError, match="g_init_range"):
        _family(variant, g_init_range=-1.0)


def test_ema_warm_up():
    assert float(gan.ema_decay(0.999, jnp.int32(0))) == pytest.approx(0.1)
    assert float(gan.ema_decay(0.999, jnp.int32(100_000))) == pytest.approx(0.999)


@pytest.mark.parametrize(
    "variant,overrides",
    [
        ("tiny_mlp", {}),  # maxout D with dropout, nonsaturating loss
        # conv, labels, scan, penalty
        ("tiny_cgan", {"arch": "dcgan", "loss": "wgan-gp", "n_critic": 2}),
        # batch statistics over the global batch, power iterations, clipping
        (
            "tiny_dcgan",
            {"batch_norm": True, "spectral_norm": True, "loss": "wgan", "weight_clip": 0.01},
        ),
    ],
)
def test_train_step_on_8_devices_equals_1_device(variant, overrides):
    """Same global batch and key: 8-way data parallel vs one device, after two steps.
    Metrics agree to 1e-5; parameters to 1e-5 absolute, because Adam divides each update
    by its own gradient scale, which turns reduction-order noise (about 1e-7) on
    near-zero gradients into parameter differences of up to about 2e-6."""
    family = _family(variant, **overrides)
    batch_np = EpochBatcher(_digits_dataset()["train"], 32, seed=0).batch(3)
    results = []
    for devices in (jax.devices()[:1], jax.devices()[:8]):
        mesh = mesh_lib.data_mesh(devices)
        batch = mesh_lib.global_batch(mesh, batch_np)
        init = jax.jit(family.init, out_shardings=mesh_lib.replicated(mesh))
        state = init(jax.random.key(0), batch)
        step = jax.jit(family.train_step, out_shardings=mesh_lib.replicated(mesh))
        state, metrics = step(state, batch, jax.random.key(5))
        state, metrics = step(state, batch, jax.random.key(6))
        results.append((jax.tree.map(np.asarray, state), {k: float(v) for k, v in metrics.items()}))
    (state_1, metrics_1), (state_8, metrics_8) = results
    assert len(jax.devices()) == 8 and int(state_8.updates) == 2
    for name in metrics_1:
        np.testing.assert_allclose(
            metrics_8[name], metrics_1[name], rtol=1e-5, atol=1e-6, err_msg=name
        )
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), state_8, state_1
    )


def test_padded_rows_do_not_change_the_step():
    """Rows with mask 0 carry no weight, whatever they hold (the D and G losses, and the
    wgan-gp penalty, are mask-weighted per example)."""
    family = _family("tiny_cgan", loss="wgan-gp")
    batch = EpochBatcher(_digits_dataset()["train"], 16, seed=0).batch(0)
    batch["mask"][12:] = 0.0
    states = []
    step = jax.jit(family.train_step)
    for fill in (0, 255):
        filled = dict(batch, image=batch["image"].copy())
        filled["image"][12:] = fill
        state = family.init(jax.random.key(0), None)
        states.append(jax.tree.map(np.asarray, step(state, filled, jax.random.key(2))[0]))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), *states)


@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
def test_conditional_discriminator_projects_the_label_onto_its_features(arch):
    """logit(x, y) = w . phi(x) + b + e_y . phi(x): zero embeddings remove the label's effect,
    and the label's part is linear in them (doubling e doubles it)."""
    family = _family("tiny_cgan", arch=arch)
    discriminator = family.models[1]
    d_params = family.init(jax.random.key(0), None).d_params
    images = jnp.asarray(_digits_dataset()["test"]["image"][:4], jnp.float32) / 255.0

    def logits(params):  # [10 labels, 4 images]
        return np.stack(
            [
                np.asarray(discriminator.apply(params, images, jax.nn.one_hot(jnp.full(4, k), 10)))
                for k in range(10)
            ]
        )

    def scaled_embedding(factor):
        projection = d_params["params"]["label_projection"]
        scaled = {"kernel": factor * projection["kernel"]}
        return {"params": {**d_params["params"], "label_projection": scaled}}

    base = logits(scaled_embedding(0.0))
    np.testing.assert_allclose(base, np.broadcast_to(base[:1], base.shape), rtol=1e-6)
    label_part = logits(scaled_embedding(100.0)) - base  # scaled up: the initial embedding is tiny
    assert np.abs(label_part).max() > 1e-3
    np.testing.assert_allclose(
        logits(scaled_embedding(200.0)) - base, 2.0 * label_part, rtol=1e-3, atol=1e-6
    )


def test_fixed_grid_puts_one_label_per_row_and_shares_noise_per_column():
    family = _family("tiny_cgan")
    z, labels, rows = family.fixed_grid_inputs()
    assert rows == 10 and z.shape == (100, family.config.model.noise_dim)
    np.testing.assert_array_equal(
        np.asarray(labels).reshape(10, 10), np.repeat(np.arange(10), 10).reshape(10, 10)
    )
    np.testing.assert_array_equal(np.asarray(z[:10]), np.asarray(z[90:]))
    z_again, _, _ = family.fixed_grid_inputs()
    np.testing.assert_array_equal(np.asarray(z), np.asarray(z_again))


# ----------------------------------------------------------------------------- processes


@pytest.fixture(scope="module")
def variant_runs(tmp_path_factory):
    """The three tiny variants, run at the same time (each with its own TFDS folder), and
    a tiny_mlp run killed with SIGKILL after a checkpoint, then relaunched."""
    root = tmp_path_factory.mktemp("gan_runs")
    processes = {}
    for variant in ("tiny_mlp", "tiny_dcgan", "tiny_cgan"):
        env = process_env(root / f"tfds_{variant}")
        processes[variant] = subprocess.Popen(
            experiment_command("gan", f"gan_mnist.py:{variant}", root / variant),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
    env = process_env(root / "tfds_killed")
    killed_at = kill_after_checkpoint(env, "gan", "gan_mnist.py:tiny_mlp", root / "killed", 10)
    resumed = run_experiment(env, "gan", "gan_mnist.py:tiny_mlp", root / "killed")
    results = {}
    for variant, process in processes.items():
        stdout, stderr = process.communicate(timeout=300)
        results[variant] = subprocess.CompletedProcess(
            process.args, process.returncode, stdout, stderr
        )
    return root, results, killed_at, resumed


@pytest.mark.parametrize("variant", ["tiny_mlp", "tiny_dcgan", "tiny_cgan"])
def test_tiny_variant_runs_and_writes_its_sample_grid(variant_runs, variant):
    root, results, _, _ = variant_runs
    assert_ok(results[variant])
    workdir = root / variant
    assert (workdir / "images" / "samples_0000030.png").is_file()
    assert (workdir / "images" / "metrics.png").is_file()
    summary = json.loads((workdir / "summary.json").read_text())
    assert np.isfinite(summary["parzen_log_likelihood"]) and summary["parzen_stderr"] > 0
    assert 0.0 <= summary["d_accuracy_real"] <= 1.0
    # the sample metrics are those of the last evaluation, logged with it (for the curves)
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    last_eval = [r for r in records if r["split"] == "test"][-1]
    assert last_eval["step"] == 30
    assert last_eval["parzen_log_likelihood"] == summary["parzen_log_likelihood"]


def test_resume_after_sigkill_is_bitwise_exact(variant_runs):
    root, results, killed_at, resumed = variant_runs
    assert_ok(results["tiny_mlp"])
    assert_ok(resumed)
    assert killed_at < 30 and "resumed from" in resumed.stdout
    assert final_state(root / "killed") == final_state(root / "tiny_mlp")


# ----------------------------------------------------------------------------- the shared verbs


def _digits_data(conditional: bool) -> dict:
    train = _digits_dataset()["train"]
    return {"x": train["image"][:96], **({"y": train["label"][:96]} if conditional else {})}


def test_init_has_the_structure_fit_returns_and_fit_runs_the_loop_step():
    """saving.load rebuilds params through init: the trees must match leaf for leaf; fit's
    history is that of the loop's train_step (its metric names, one value per step)."""
    config = gan_mnist.get_config("tiny_cgan")
    config.num_steps = 3
    data = _digits_data(conditional=True)
    meta = gan.meta_from_data(data, config)
    assert meta == {"image_shape": [8, 8, 1], "num_classes": 10}
    params, history = gan.fit(jax.random.key(0), data, config)
    fresh = gan.init(jax.random.key(1), config, meta)
    shapes = lambda tree: jax.tree.map(lambda v: (v.shape, v.dtype), tree)
    assert jax.tree.structure(fresh) == jax.tree.structure(params)
    assert shapes(fresh) == shapes(params)
    assert history["num_iters"] == 3 and history["g_loss"].shape == (3,)
    assert set(history) == {"num_iters", "d_loss", "d_real", "d_fake", "g_loss"}
    assert np.all(np.isfinite(history["d_loss"]))
    with pytest.raises(ValueError, match=r"data\['y'\]"):
        gan.meta_from_data({"x": data["x"]}, config)


def test_conditional_samples_follow_the_label_and_plain_ones_refuse_it():
    """x given y: one key gives every row the same z, so rows asked for the same label are
    equal and rows asked for another label differ; the result is G(z, onehot(y))."""
    config = gan_mnist.get_config("tiny_cgan")
    params = gan.init(jax.random.key(0), config, {"image_shape": [8, 8, 1], "num_classes": 10})
    key = jax.random.key(4)
    labels = np.array([0, 1, 2, 3], np.int32)
    given = gan.sample(key, params, 4, y=labels)
    same = gan.sample(key, params, 4, y=np.zeros(4, np.int32))
    assert given.shape == (4, 8, 8, 1) and 0 < given.min() and given.max() < 1
    np.testing.assert_array_equal(given[0], same[0])
    assert all(np.abs(given[i] - same[i]).max() > 1e-4 for i in (1, 2, 3))
    z = gan.draw_noise("normal", config.model.noise_dim, jax.random.fold_in(key, 0), 4)
    expected = params.spec.generator.apply(params.generator, z, jax.nn.one_hot(labels, 10))
    np.testing.assert_allclose(given, expected, rtol=1e-5, atol=1e-6)
    assert gan.sample(key, params, 7).shape == (7, 8, 8, 1)  # labels drawn from the prior
    with pytest.raises(ValueError, match="y must lie"):
        gan.sample(key, params, 2, y=np.array([0, 10]))
    plain = gan.init(
        jax.random.key(0),
        gan_mnist.get_config("tiny_mlp"),
        {"image_shape": [8, 8, 1], "num_classes": 10},
    )
    with pytest.raises(ValueError, match="not conditional"):
        gan.sample(key, plain, 2, y=np.array([0, 1]))


def test_log_prob_names_the_parzen_estimate_which_is_the_window_on_samples():
    config = gan_mnist.get_config("tiny_mlp")
    params = gan.init(jax.random.key(0), config, {"image_shape": [8, 8, 1], "num_classes": 10})
    images = _digits_dataset()["test"]["image"][:6]
    with pytest.raises(NotImplementedError, match="parzen_log_prob"):
        gan.log_prob(params, images)
    key, sigma = jax.random.key(3), 0.3
    got = gan.parzen_log_prob(key, params, images, num_samples=50, sigma=sigma)
    mu = gan.sample(key, params, 50).reshape(50, -1).astype(np.float64)
    x = images.reshape(6, -1) / 255.0
    sq = ((x[:, None] - mu[None]) ** 2).sum(-1)
    expected = (
        np.logaddexp.reduce(-sq / (2 * sigma**2), axis=1)
        - np.log(50)
        - x.shape[1] * np.log(sigma * np.sqrt(2 * np.pi))
    )
    assert got.shape == (6,)
    np.testing.assert_allclose(got, expected, rtol=1e-4)
