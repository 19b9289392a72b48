"""experiments/iwae_batched.py: the table's runs grouped into vmapped ensembles, each member
equal to the run its config trains alone, resumable; on CPU at a tiny size."""

import dataclasses
import pathlib
import shutil

import jax
import numpy as np
import pytest
from sklearn.datasets import load_digits

from experiments import iwae_batched
from genjax_lab.core import data as data_lib
from genjax_lab.core import loop as loop_lib
from genjax_lab.core import replication as rep
from genjax_lab.models import vae
from genjax_lab.models.vae.family import ensemble_for
from tests.helpers import checkpoint_steps


@pytest.fixture(scope="module")
def dataset() -> data_lib.Dataset:
    digits = load_digits()
    images = np.round(digits.images * 255 / 16).astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int32)
    return data_lib.Dataset(
        {
            "train": {"image": images[:400], "label": labels[:400]},
            "test": {"image": images[1700:1740], "label": labels[1700:1740]},
        }
    )


def _tiny(run: str):
    """The replication's tiny config of `run`, shrunk to seconds: 6 steps, 3 a call."""
    config = iwae_batched.run_configs("tiny", None)[run]
    config.model.update(encoder_hidden=(16,), decoder_hidden=(16,), latent_dim=4)
    config.batch_size, config.num_steps, config.log_every = 16, 6, 1
    config.checkpoint.every, config.steps_per_call = 3, 3
    config.eval.iwae_samples, config.eval.nll_samples, config.eval.nll_examples = 5, 10, 16
    config.eval.nll_batch_size = 16
    return config


def test_the_ten_runs_fall_into_six_groups_of_one_architecture_and_k():
    grouped = iwae_batched.groups(iwae_batched.run_configs("tiny", None))
    assert {name: list(members) for name, members in grouped.items()} == {
        "l1_k1": ["vae_k1"],
        "l1_k5": ["vae_k5", "iwae_k5"],
        "l1_k50": ["vae_k50", "iwae_k50"],
        "l2_k1": ["vae2_k1"],
        "l2_k5": ["vae2_k5", "iwae2_k5"],
        "l2_k50": ["vae2_k50", "iwae2_k50"],
    }


def test_an_ensemble_refuses_members_that_differ_beyond_the_objective(dataset):
    other = _tiny("iwae_k5")
    other.optim.learning_rate = 1e-2
    with pytest.raises(ValueError, match="optim.learning_rate"):
        ensemble_for({"vae_k5": _tiny("vae_k5"), "iwae_k5": other}, dataset)


@pytest.mark.slow  # 1-4 min; test_loop_policy's multi-step tests cover the shared loop in CI
def test_a_batched_group_equals_its_runs_alone_and_resumes_bitwise(tmp_path, dataset):
    """VAE and IWAE at k = 5 trained as one vmapped program, 3 steps a compiled call: each
    member's parameters equal those of its run trained alone to float tolerance, each gets a
    test -log p(x); a run killed after step 5 (checkpoint 6 lost) resumes bitwise."""
    members = {run: _tiny(run) for run in ("vae_k5", "iwae_k5")}
    summaries = iwae_batched.train_group(members, dataset, tmp_path / "batched")
    assert set(summaries) == set(members)
    for summary in summaries.values():
        assert np.isfinite(summary["test_nll"]) and summary["test_nll_examples"] == 16
    group = tmp_path / "batched" / "l1_k5"
    assert checkpoint_steps(group) == [3, 6]
    batched = loop_lib.train_and_evaluate(
        members["vae_k5"], group, ensemble_for(members, dataset).as_family(), dataset
    )
    ensemble = ensemble_for(members, dataset)
    for index, (run, config) in enumerate(members.items()):
        family = dataclasses.replace(vae.family_for(config, dataset).as_family(), report=None)
        train_only = data_lib.Dataset({"train": dataset["train"]})  # no evaluation to compile
        alone = loop_lib.train_and_evaluate(config, tmp_path / run, family, train_only)
        mine = ensemble.member(batched.state, index)
        for a, b in zip(jax.tree.leaves(alone.state), jax.tree.leaves(mine), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=run)
        assert summaries[run]["train_loss"] == pytest.approx(alone.metrics["train_loss"], 1e-5)
    assert summaries["vae_k5"]["train_loss"] != summaries["iwae_k5"]["train_loss"]

    shutil.rmtree(group / "checkpoints" / "6")
    resumed = loop_lib.train_and_evaluate(members["vae_k5"], group, ensemble.as_family(), dataset)
    assert resumed.step == 6
    for a, b in zip(jax.tree.leaves(batched.state), jax.tree.leaves(resumed.state), strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_full_schedule_runs_several_steps_a_call_on_mnist_from_data_dir():
    """Calls end at checkpoint and evaluation steps; steps_per_call divides every interval,
    so every call of the paper's 9.84 million steps is a whole one."""
    configs = iwae_batched.run_configs("full", pathlib.Path("DIR"))
    assert len(configs) == 10
    for config in configs.values():
        assert config.steps_per_call == rep.load("iwae_table1")[1].FULL_STEPS_PER_CALL > 1
        assert config.data.mnist_dir == str(pathlib.Path("DIR") / "mnist")
        intervals = (config.log_every, config.checkpoint.every, config.eval_every)
        assert all(every % config.steps_per_call == 0 for every in intervals)
        assert config.num_epochs * 60_000 / config.batch_size == 3280 * 3000
    with pytest.raises(ValueError, match="--data_dir"):
        iwae_batched.run_configs("full", None)
