"""experiments/hmm.py: the tiny casino and FSDD runs end to end (summary + PNG), resumable
EM (a resumed run ends where an uninterrupted one does), class bucketing, label alignment,
bad input naming the config key, and the replication modules."""

import json
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

from genjax_lab.core import checkpoint as ckpt_lib
from genjax_lab.core import checks
from genjax_lab.core import replication as rep
from tests.helpers import assert_ok, process_env, run_experiment, shared_data

hx = rep.load_module("experiments/hmm.py")  # a script: its functions


def _summary_and_png(workdir: pathlib.Path, png: str) -> dict:
    summary = json.loads((workdir / "summary.json").read_text())
    with Image.open(workdir / png) as image:
        assert image.format == "PNG" and image.width > 100
    return summary


def test_tiny_casino_end_to_end(tmp_path):
    result = run_experiment(
        process_env(tmp_path / "tfds"), "hmm", "hmm_casino.py:tiny", tmp_path / "run"
    )
    assert_ok(result)
    summary = _summary_and_png(tmp_path / "run", "casino_posterior.png")
    replication, _ = rep.load("hmm_casino")
    for row in replication.rows:  # the tiny schedule's own checks pass
        assert row.passes(summary[row.metric], "tiny"), (row.label, summary[row.metric])
    assert summary["em_iterations"] == 20
    assert 0.6 < summary["viterbi_accuracy"] <= 1 and 0.6 < summary["posterior_accuracy"] <= 1


def test_tiny_fsdd_end_to_end(tmp_path):
    tarball = shared_data("fsdd/recordings.tar.gz")
    result = run_experiment(
        process_env(tmp_path / "tfds"),
        "hmm",
        "hmm_fsdd.py:tiny",
        tmp_path / "run",
        f"--config.data.fsdd_path={tarball}",
    )
    assert_ok(result)
    summary = _summary_and_png(tmp_path / "run", "fsdd_confusion.png")
    assert summary["num_test"] == 30 and summary["num_train"] == 30
    assert summary["test_accuracy"] >= 0.8  # 3 digits, 2 speakers: well above chance (1/3)
    confusion = np.array(json.loads((tmp_path / "run" / "confusion.json").read_text()))
    assert confusion.sum() == 30 and np.trace(confusion) == round(30 * summary["test_accuracy"])


def _counter_config(num_steps: int, every: int) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            "seed": 0,
            "num_steps": num_steps,
            "checkpoint": {"every": every, "keep": 2, "on_corrupt": "fail"},
            "model": {"rate": 0.5},
        }
    )


def _chunk(state, n):
    """A stand-in EM: a contraction, the sum of the state as its objective."""

    def body(s, _):
        s = {"x": 0.5 * s["x"] + 1.0}
        return s, jnp.sum(s["x"])

    return jax.lax.scan(body, state, length=n)


def test_resumable_em_resumes_to_the_same_state(tmp_path):
    start = {"x": jnp.arange(3.0)}
    whole = hx.resumable_em(_counter_config(6, 2), tmp_path / "a", start, _chunk)
    hx.resumable_em(_counter_config(4, 2), tmp_path / "b", start, _chunk)  # "killed" after 4
    resumed = hx.resumable_em(_counter_config(6, 2), tmp_path / "b", start, _chunk)
    assert resumed.resumed_from == 4 and whole.resumed_from == 0
    np.testing.assert_array_equal(resumed.state["x"], whole.state["x"])
    np.testing.assert_array_equal(resumed.objectives, whole.objectives)
    assert len(whole.objectives) == 6
    other = _counter_config(6, 2)
    other.model.rate = 0.25
    with pytest.raises(ckpt_lib.CheckpointMismatch, match="model.rate"):
        hx.resumable_em(other, tmp_path / "b", start, _chunk)


@pytest.mark.fault(
    "a non-finite EM objective (HMM): stopped naming the iteration, last good checkpoint kept"
)
def test_a_non_finite_objective_stops_em_naming_the_iteration(tmp_path):
    """A stand-in EM whose objective turns NaN at iteration 5: the error names iteration 5,
    and checkpoints hold only the finite iterations (chunks of 2: up to iteration 4)."""

    def diverging(state, n):
        def body(s, _):
            s = {"x": s["x"] + 1.0}
            return s, jnp.where(s["x"][0] >= 5.0, jnp.nan, jnp.sum(s["x"]))

        return jax.lax.scan(body, state, length=n)

    with pytest.raises(
        checks.NonFiniteError, match=r"non-finite EM objective nan at iteration 5;.*iteration 4\)"
    ):
        hx.resumable_em(_counter_config(10, 2), tmp_path, {"x": jnp.zeros(3)}, diverging)
    assert ckpt_lib.Checkpointer(tmp_path / "checkpoints", every=2, keep=2).steps() == [2, 4]


def test_group_by_class_buckets_every_recording_once():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 30, 23).astype(np.int32)
    labels = rng.integers(0, 3, 23)
    feats = np.zeros((23, 30, 2), np.float32)
    for i, n in enumerate(lengths):
        feats[i, :n] = i + 1  # each recording's frames carry its id
    buckets = hx.group_by_class(feats, lengths, labels, 3, num_buckets=3)
    seen = []
    for b in buckets:
        obs, lens, mask = (np.asarray(b[k]) for k in ("obs", "lengths", "mask"))
        assert obs.shape[2] == lens[mask > 0].max()  # padded to the bucket's own longest
        for c, i in zip(*np.nonzero(mask)):
            ident = int(obs[c, i, 0, 0]) - 1
            assert labels[ident] == c and lengths[ident] == lens[c, i]
            seen.append(ident)
    assert sorted(seen) == list(range(23))


def test_align_states_undoes_a_relabelling():
    b = hx.CASINO_EMISSIONS
    assert hx._align_states(b[[1, 0]], b) == (1, 0)
    assert hx._align_states(b, b) == (0, 1)


def test_missing_tarball_names_the_config_key(tmp_path):
    config = rep.experiment_config("experiments/configs/hmm_fsdd.py", "tiny")
    config.data.fsdd_path = str(tmp_path / "nowhere.tar.gz")
    with pytest.raises(FileNotFoundError, match=r"config\.data\.fsdd_path"):
        hx.load_fsdd(config)
    with pytest.raises(ValueError, match="unknown variant"):
        rep.experiment_config("experiments/configs/hmm_fsdd.py", "huge")


@pytest.mark.parametrize("name", ["hmm_casino", "fsdd_digits"])
def test_replication_modules(name):
    replication, module = rep.load(name)
    assert replication.experiment == "hmm"
    for schedule in rep.SCHEDULES:
        config = module.get_config(schedule)
        assert config.task in hx.TASKS
    with pytest.raises(ValueError, match="schedule"):
        module.get_config("medium")
