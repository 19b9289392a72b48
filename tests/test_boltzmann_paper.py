"""The DBM paper schedule (dbm_ais full, from Salakhutdinov's rbm.m / rbm_l2.m / dbm_mf.m) and
the RAISE reading of the final evaluation: layer 2's CD-k ramp and rate / k against their
formulas, the joint rate, the default steps bitwise unchanged, and RAISE beside AIS on tiny
trained models."""

import hashlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import load_digits

from experiments.configs import boltzmann_mnist
from experiments.replications import dbm_ais, rbm_ais
from genjax_lab.core import replication as rep
from genjax_lab.core.config import validate_config
from genjax_lab.core.data import Dataset
from genjax_lab.models.boltzmann import family as bf
from genjax_lab.models.boltzmann.fit import stepped_sweeps


def _digits() -> np.ndarray:
    """The 8x8 digits binarized at half intensity: uint8 [1797, 8, 8, 1] of 0 and 255."""
    return ((load_digits().images / 16) > 0.5).astype(np.uint8)[..., None] * 255


def test_layer2_k_is_ceil_of_epoch_over_20():
    """rbm_l2.m: CD = ceil(epoch / 20) for epochs 1..200 (k 1 -> 10), here by steps."""
    every = 20 * 600
    for step in (0, 599, 600, every - 1, every, 5 * every + 7, 200 * 600 - 1):
        epoch = step // 600 + 1
        assert int(stepped_sweeps(jnp.int32(step), every)) == math.ceil(epoch / 20), step


def _learning_rate(optimizer, params, count: int) -> float:
    """The rate of an SGD chain's update at `count` (momentum trace still zero, so the update
    of a bias with gradient 1 is minus the rate)."""
    state = optimizer.init(params)
    # every update counter (inject_hyperparams' own and each schedule's) set to `count`
    state = jax.tree.map(
        lambda leaf: jnp.full_like(leaf, count) if leaf.dtype == jnp.int32 else leaf, state
    )
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = optimizer.update(grads, state, params)
    bias = next(leaf for leaf in jax.tree.leaves(updates) if leaf.ndim == 1)
    return -float(bias[0])


def test_paper_schedule_phases_and_rates():
    """dbm_ais full on MNIST's 600 steps an epoch: layer 1 100 epochs at a constant 0.05,
    layer 2 200 epochs at 0.05 / k, then 500 joint epochs at 0.005 falling linearly to 0;
    AIS 100 runs x 20,000 uniform temperatures; RAISE on 1,000 test images."""
    config = dbm_ais.get_config("full")
    config.model.num_chains = 96  # a multiple of the test's 8 devices (the run uses 100)
    images = np.zeros((60_000, 1, 1, 1), np.uint8)  # one pixel: only the schedule matters
    family = bf.family_for(config, Dataset({"train": {"image": images}}))
    epoch = 600
    assert (family.pretrain_steps, family.pretrain2_steps) == (100 * epoch, 200 * epoch)
    assert family.joint_start == 300 * epoch and family.num_steps == 800 * epoch
    assert family.k2_every_steps == 20 * epoch
    state = family.init(jax.random.key(0), None)
    layer1, layer2 = family._pretrain_optimizer(1), family._pretrain_optimizer(2)
    for t in (0, epoch - 1, 50 * epoch, 100 * epoch - 1):
        np.testing.assert_allclose(_learning_rate(layer1, state.rbm1, t), 0.05, rtol=1e-6)
    for t in (0, 20 * epoch - 1, 20 * epoch, 95 * epoch, 200 * epoch - 1):
        k = math.ceil((t // epoch + 1) / 20)
        np.testing.assert_allclose(_learning_rate(layer2, state.rbm2, t), 0.05 / k, rtol=1e-6)
    joint, joint_steps = family._optimizer(), 500 * epoch
    for t in (0, 1, joint_steps // 2, joint_steps - 1, joint_steps):
        expected = 0.005 * (1 - t / joint_steps)
        np.testing.assert_allclose(
            _learning_rate(joint, state.params, t), expected, rtol=1e-5, atol=1e-10
        )
    e = config.eval
    assert (e.ais_runs, e.ais_temperatures, e.raise_examples) == (100, 20_000, 1000)
    np.testing.assert_array_equal(bf.ais_betas(e), np.linspace(0, 1, 20_001))
    assert (config.model.k, config.model.mean_field_iters, config.batch_size) == (5, 10, 100)


# sha256 of (state, step metrics, final scores) after 4 steps of the tiny defaults (the DBM
# passes through both pretraining phases into joint training), recorded from the code before
# per-layer epochs, the k ramp, the uniform AIS schedule and RAISE existed (XLA on CPU, 8
# devices); RAISE's own keys are left out, as it reads the trained state and changes nothing
_DEFAULT_DIGESTS = {
    "rbm_cd25,tiny": "8888ae37bd187f135729d1ffcc352c38eaee13c4a47e93cff2a33e5ff92729ef",
    "dbm,tiny": "a051ce75b5a357df188e7abb85f6336b75971eb0df00a9999dbcb9111ef41c1b",
}
_RAISE_KEYS = (
    "test_log_likelihood_raise",
    "test_log_likelihood_raise_se",
    "test_log_likelihood_ais_same_images",
    "test_log_likelihood_ais_same_images_se",
    "raise_examples",
)
_VARIANTS = ["rbm_cd25,tiny", pytest.param("dbm,tiny", marks=pytest.mark.slow)]  # DBM: ~60 s


@pytest.fixture(scope="module", params=_VARIANTS)
def trained(request):
    """4 steps of a tiny default config on 64 digits (the DBM: one step of each pretraining
    layer, then joint training), and its final scores with RAISE on 32 test images."""
    images = _digits()
    config = boltzmann_mnist.get_config(request.param)
    assert config.eval.raise_examples is None  # off unless asked for
    config.num_steps = 4
    config.eval.ais_runs, config.eval.ais_temperatures, config.eval.train_examples = 8, 100, 64
    config.eval.raise_examples, config.eval.raise_chains = 32, 2
    config.eval.raise_temperatures = 500
    dataset = Dataset({"train": {"image": images[:64]}, "test": {"image": images[64:128]}})
    family = bf.family_for(config, dataset)
    batch = {"image": images[:32], "mask": np.ones(32, np.float32)}
    state = jax.jit(family.init)(jax.random.key(0), batch)
    step = jax.jit(family.train_step)
    records = []
    for i in range(4):
        state, metrics = step(state, batch, jax.random.key(i + 1))
        records.append(metrics)
    scores = bf.final_scores(family, state, dataset, config)
    return request.param, family, state, records, dataset, scores


def test_default_steps_and_scores_are_bitwise_unchanged(trained):
    variant, _, state, records, _, scores = trained
    scores = {k: v for k, v in scores.items() if k not in _RAISE_KEYS and "seconds" not in k}
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves((state, records, scores)):
        digest.update(np.ascontiguousarray(leaf).tobytes())
    assert digest.hexdigest() == _DEFAULT_DIGESTS[variant]


def test_raise_reading_sits_at_or_below_ais_of_the_same_images(trained):
    """Tiny models, where AIS's log Z is exact to ~0.01 (log_z_exact): RAISE, a stochastic
    lower bound on log p_ann(v), is finite and at most the AIS number of the same 32 images
    (RBM: exact log p; DBM: the mean-field bound, tight for 16-8 units) within noise;
    measured within 0.02 nats. The same key gives the same reading."""
    _, family, state, _, dataset, scores = trained
    raise_ll = scores["test_log_likelihood_raise"]
    ais_ll = scores["test_log_likelihood_ais_same_images"]
    assert np.isfinite(raise_ll) and 0 < scores["test_log_likelihood_raise_se"] < 2
    assert scores["raise_examples"] == 32
    assert abs(scores["log_z_ais"] - scores["log_z_exact"]) < 0.05
    # 64 binary pixels: between -64 log 2 and 0
    assert -44.4 < raise_ll <= ais_ll + 0.1, scores
    assert raise_ll > ais_ll - 1.0, scores  # p_ann is near p for the tiny model
    params = family.current_dbm(state) if family.is_dbm else state.params
    e, log_z = family.config.eval, scores["log_z_ais"]
    first, again = (
        bf.raise_scores(family, params, dataset["test"], log_z, jax.random.key(7), e)
        for _ in range(2)
    )
    assert first["test_log_likelihood_raise"] == again["test_log_likelihood_raise"]


def test_raise_rows_are_unchecked_and_read_on_the_full_schedule():
    """dbm_ais's RAISE rows never decide a verdict; the full schedules of both replications
    compute the reading, the shorter ones leave it out and their rows are skipped."""
    rows = {r.metric: r for r in dbm_ais.REPLICATION.rows}
    for metric in ("test_log_likelihood_raise", "test_log_likelihood_ais_same_images"):
        assert not any(rows[metric].checked(s) for s in rep.SCHEDULES)
    records = rep.check(dbm_ais.REPLICATION, {"main": dict.fromkeys(rows, -84.0)}, "full")
    assert [r["status"] for r in records] == ["pass", "unchecked", "unchecked"]
    assert records[1]["verdict"] == "unchecked, gap +0.62"
    quick = rep.check(dbm_ais.REPLICATION, {"main": {"test_log_likelihood": -90.0}}, "quick")
    assert [r["status"] for r in quick] == ["pass", "skipped", "skipped"]
    for module in (rbm_ais, dbm_ais):
        for schedule in rep.SCHEDULES:
            config = module.get_config(schedule)
            validate_config(config)
            expected = 1000 if schedule == "full" else None
            assert config.eval.raise_examples == expected, (module, schedule)
