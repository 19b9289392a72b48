"""The 2014 GAN code's training rule (gan_mnist.py:mlp_paper): its rate and momentum
schedules and the simultaneous heavy-ball update against float64 by hand, the default step
unchanged, model selection on the held-out split, and a killed paper-rule run resumed
bitwise."""

import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import load_digits

from experiments.configs import gan_mnist
from experiments.replications import gan_parzen
from genjax_lab.core.data import Dataset
from genjax_lab.models import gan
from genjax_lab.models.gan import family as gan_family
from tests.helpers import assert_ok, final_state, kill_after_checkpoint, process_env, run_experiment


def _digits() -> Dataset:
    digits = load_digits()
    images = np.round(digits.images * 255 / 16).astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int32)
    return Dataset(
        {
            "train": {"image": images[:1400], "label": labels[:1400]},
            "test": {"image": images[1400:], "label": labels[1400:]},
        }
    )


def test_rate_and_momentum_schedules_equal_the_formulas_in_float64():
    """pylearn2's ExponentialDecay (0.1 / 1.000004^t, floor 1e-6 from t ~ 2.88M) and
    MomentumAdjustor (0.5 -> 0.7, epochs 1..250 of 500 updates) at chosen updates t."""
    optim = gan_mnist.get_config("mlp_paper").optim
    rate = gan_family.learning_rate_schedule(optim.g_learning_rate, optim)
    for t in (0, 1, 500, 125_000, 250_000, 2_000_000, 2_878_000, 2_879_000, 5_000_000):
        expected = max(0.1 / 1.000004**t, 1e-6)
        np.testing.assert_allclose(float(rate(jnp.int32(t))), expected, rtol=2e-6, err_msg=t)
    assert float(rate(jnp.int32(5_000_000))) == np.float32(1e-6)
    momentum = gan_family.momentum_schedule(optim, 500)
    for t in (0, 499, 500, 1_000, 62_250, 124_499, 124_500, 250_000):
        expected = 0.5 + 0.2 * min(max((t // 500) / 249, 0.0), 1.0)
        np.testing.assert_allclose(float(momentum(jnp.int32(t))), expected, rtol=1e-6, err_msg=t)
    # the constant-rate default is the number itself, not a schedule (Adam's state unchanged)
    assert gan_family.learning_rate_schedule(2e-4, gan.default_config().optim) == 2e-4


def _tiny_paper_family() -> gan.GANFamily:
    """mlp_paper's rule on a G without hidden layers and a linear D (no dropout) over 2x2
    images, one batch of 4 an epoch; the rate decays by 1.5 an update and momentum reaches
    its final 0.7 at epoch 3, so two updates see both schedules move."""
    config = gan_mnist.get_config("tiny_mlp_paper")
    config.batch_size = 4
    config.model.update(g_hidden=(), d_hidden=(), d_input_dropout=0.0, d_dropout=0.0, noise_dim=3)
    config.optim.update(lr_decay_factor=1.5, momentum_saturate=3)
    config.eval.select_on_validation = False
    images = np.random.default_rng(0).integers(0, 256, (4, 2, 2, 1), dtype=np.uint8)
    return gan.family_for(config, Dataset({"train": {"image": images}}))


def _hand_step(g, d, v_g, v_d, z, x, rate, mu):
    """One simultaneous heavy-ball update in float64: both gradients at the old (g, d).
    g = (A [3, 4], c [4]): s = sigmoid(z A + c); d = (w [4], b): logit = x w + b."""
    (a, c), (w, b) = g, d
    sigmoid = lambda u: 1 / (1 + np.exp(-u))
    s = sigmoid(z @ a + c)
    real, fake = x @ w + b, s @ w + b
    n = len(x)
    # d of 0.5 * mean(softplus(-real) + softplus(fake)); G: d of mean(softplus(-fake))
    d_real, d_fake = -sigmoid(-real) / n * 0.5, sigmoid(fake) / n * 0.5
    grad_d = (x.T @ d_real + s.T @ d_fake, d_real.sum() + d_fake.sum())
    delta = (-sigmoid(-fake) / n)[:, None] * w[None, :] * s * (1 - s)
    grad_g = (z.T @ delta, delta.sum(0))
    v_g = tuple(mu * v - rate * gr for v, gr in zip(v_g, grad_g))
    v_d = tuple(mu * v - rate * gr for v, gr in zip(v_d, grad_d))
    return (
        tuple(p + v for p, v in zip(g, v_g)),
        tuple(p + v for p, v in zip(d, v_d)),
        v_g,
        v_d,
    )


def test_simultaneous_update_equals_a_hand_computed_float64_update():
    family = _tiny_paper_family()
    state = family.init(jax.random.key(0), None)
    x_uint8 = np.random.default_rng(1).integers(0, 256, (4, 2, 2, 1), dtype=np.uint8)
    batch = {"image": x_uint8, "mask": np.ones(4, np.float32)}
    x = x_uint8.reshape(4, -1) / 255.0
    as64 = lambda v: np.asarray(v, np.float64)
    g_out = state.g_params["params"]["out"]
    (d_dense,) = state.d_params["params"].values()
    g = (as64(g_out["kernel"]), as64(g_out["bias"]))
    d = (as64(d_dense["kernel"][:, 0]), as64(d_dense["bias"][0]))
    v_g, v_d = (np.zeros_like(g[0]), np.zeros_like(g[1])), (np.zeros_like(d[0]), 0.0)
    step = jax.jit(family.train_step)
    for t in range(2):
        key = jax.random.key(10 + t)
        z = as64(family.noise(jax.random.split(key, 3)[0], 4))
        # update t: rate 0.1 / 1.5^t; momentum 0.5 in epoch 1, 0.6 in epoch 2 (of 3)
        g, d, v_g, v_d = _hand_step(g, d, v_g, v_d, z, x, 0.1 / 1.5**t, 0.5 + 0.1 * t)
        state, metrics = step(state, batch, key)
        g_out = state.g_params["params"]["out"]
        (d_dense,) = state.d_params["params"].values()
        np.testing.assert_allclose(g_out["kernel"], g[0], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(g_out["bias"], g[1], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(d_dense["kernel"][:, 0], d[0], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(d_dense["bias"][0], d[1], rtol=1e-5, atol=1e-7)
    assert int(state.g_opt_state.count) == int(state.d_opt_state.count) == 2
    # the hand update would differ had G's gradient seen the updated D (alternating)
    assert set(metrics) == {"d_loss", "d_real", "d_fake", "g_loss"}


# sha256 of (state, metrics) after 3 steps of the default rule, recorded from the code
# before the paper rule existed (XLA on CPU): the new options at their defaults change no bit
_DEFAULT_DIGESTS = {
    "tiny_mlp": "055f74d1e83cc99d3ad7be2bdc69df2c2952f2526b7cbbb84a2639f0523c3b42",
    "tiny_dcgan": "ea97c0c8c2d319b9557fd3bd0d155d2f6c3f305feb09c5249f00ae059f9ebb86",
}


@pytest.mark.parametrize(
    "variant", ["tiny_mlp", pytest.param("tiny_dcgan", marks=pytest.mark.slow)]
)
def test_default_step_is_bitwise_unchanged(variant):
    dataset = _digits()
    family = gan.family_for(gan_mnist.get_config(variant), dataset)
    train = dataset["train"]
    batch = {"image": train["image"][:32], "label": train["label"][:32]}
    batch["mask"] = np.ones(32, np.float32)
    state = family.init(jax.random.key(0), None)
    step = jax.jit(family.train_step)
    for i in range(3):
        state, metrics = step(state, batch, jax.random.key(i + 1))
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves((state, metrics)):
        digest.update(np.ascontiguousarray(leaf).tobytes())
    assert digest.hexdigest() == _DEFAULT_DIGESTS[variant]


def test_selection_takes_the_best_validation_step_and_its_test_estimate():
    logged = [
        {"step": 10, "parzen_validation_log_likelihood": 5.0, "parzen_log_likelihood": 1.0},
        {"step": 20, "parzen_validation_log_likelihood": 7.0, "parzen_log_likelihood": 2.0},
        # a record of a step the resumed run evaluates again does not count twice
        {"step": 30, "parzen_validation_log_likelihood": 99.0, "parzen_log_likelihood": 9.0},
        {"step": 5, "d_accuracy_real": 0.5},  # an evaluation without the estimate
    ]
    for r in logged:
        r.setdefault("parzen_stderr", 0.1)
    now = {"parzen_validation_log_likelihood": 6.0, "parzen_log_likelihood": 3.0}
    selected = gan_family.select_by_validation(logged, 30, {**now, "parzen_stderr": 0.2})
    assert selected == {
        "selected_step": 20,
        "parzen_selected_validation": 7.0,
        "parzen_selected_log_likelihood": 2.0,
        "parzen_selected_stderr": 0.1,
    }
    best_now = {**now, "parzen_validation_log_likelihood": 8.0, "parzen_stderr": 0.2}
    assert gan_family.select_by_validation(logged, 30, best_now)["selected_step"] == 30


def test_selection_needs_the_held_out_split_and_the_parzen_estimate():
    config = gan_mnist.get_config("tiny_mlp_paper")
    with pytest.raises(ValueError, match="config.eval.select_on_validation"):
        gan.family_for(config, _digits())  # no 'validation' split: not from split_holdout
    config.eval.parzen_samples = 0
    with pytest.raises(ValueError, match="config.eval.parzen_samples"):
        gan.check_config(config)
    config = gan_mnist.get_config("tiny_mlp_paper")
    config.model.n_critic = 2
    with pytest.raises(ValueError, match="config.optim.update_order"):
        gan.check_config(config)


def test_paper_schedule_is_the_original_codes():
    config = gan_parzen.get_config("full")
    assert config.num_steps == 250_000 and config.batch_size == 100
    assert config.eval_every == 12_500 and config.eval.select_on_validation
    assert not config.eval.use_ema and config.model.noise == "uniform"
    assert (config.optim.optimizer, config.optim.update_order) == ("momentum", "simultaneous")
    assert config.data.holdout == 10_000
    (published,) = [r for r in gan_parzen.REPLICATION.rows if r.published == 225.0]
    assert published.metric == "parzen_selected_log_likelihood"


@pytest.mark.slow  # three experiment processes: 3.5 minutes on the loaded 2-core CPU
def test_paper_rule_run_resumes_bitwise_after_sigkill(tmp_path):
    """The heavy-ball state (velocity, update count) and the selection survive a kill."""
    env = process_env(tmp_path / "tfds")
    flags = ("--config.eval_every=10",)
    config = "gan_mnist.py:tiny_mlp_paper"
    assert_ok(run_experiment(env, "gan", config, tmp_path / "straight", *flags))
    killed_at = kill_after_checkpoint(env, "gan", config, tmp_path / "killed", 10, *flags)
    resumed = run_experiment(env, "gan", config, tmp_path / "killed", *flags)
    assert_ok(resumed)
    assert killed_at < 30 and "resumed from" in resumed.stdout
    assert final_state(tmp_path / "killed") == final_state(tmp_path / "straight")
    records = [r for r in final_state(tmp_path / "straight")[2] if r["split"] == "test"]
    assert [r["step"] for r in records] == [10, 20, 30]
    best = max(records, key=lambda r: r["parzen_validation_log_likelihood"])
    assert records[-1]["selected_step"] == best["step"]
    assert records[-1]["parzen_selected_log_likelihood"] == best["parzen_log_likelihood"]
