"""The harness end to end, through real processes: resume after SIGKILL, determinism,
two processes forming one JAX cluster, and bad input that must fail loudly."""

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest

from genjax_lab.core import metrics as metrics_lib
from tests.helpers import (
    REPO,
    assert_ok,
    final_state,
    kill_after_checkpoint,
    process_env,
    run_experiment,
)
from tests.test_cli import assert_refused

TINY = "vae_digits.py:tiny"


@pytest.fixture(scope="session")
def run_env(tmp_path_factory):
    return process_env(tmp_path_factory.mktemp("tfds"))


def run_vae(env, workdir, *flags):
    return run_experiment(env, "vae", TINY, workdir, *flags)


@pytest.fixture(scope="session")
def straight_run(run_env, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("straight")
    assert_ok(run_vae(run_env, workdir))
    return workdir


def test_run_leaves_its_artifacts(straight_run):
    for name in ("config.json", "metrics.jsonl", "summary.json"):
        assert (straight_run / name).is_file(), name
    assert list((straight_run / "tensorboard").glob("events.out.tfevents.*"))
    images = {p.name.split("_0")[0] for p in (straight_run / "images").glob("*.png")}
    assert images == {"samples", "samples_by_label", "reconstructions"}


def test_same_seed_gives_identical_metrics(run_env, straight_run, tmp_path):
    assert_ok(run_vae(run_env, tmp_path))
    assert final_state(tmp_path) == final_state(straight_run)
    other_seed = tmp_path / "seed1"
    assert_ok(run_vae(run_env, other_seed, "--config.seed=1"))
    assert final_state(other_seed)[1] != final_state(straight_run)[1]


def test_relaunching_a_finished_run_changes_nothing(run_env, straight_run, tmp_path):
    """A relaunch (a requeue after the end, a kill after the last save) repeats neither the
    final estimates nor their records, and summary.json keeps every number."""
    shutil.copytree(straight_run, tmp_path / "run")
    summary = (straight_run / "summary.json").read_text()
    relaunched = run_vae(run_env, tmp_path / "run")
    assert_ok(relaunched)
    assert "resumed from" in relaunched.stdout
    assert final_state(tmp_path / "run") == final_state(straight_run)
    assert (tmp_path / "run" / "summary.json").read_text() == summary


@pytest.mark.slow  # 55 s; test_faults' SIGKILL-anywhere case covers the VAE in CI
@pytest.mark.fault(
    "SIGKILL once a checkpoint past the middle exists (VAE): the relaunch ends bitwise equal"
)
def test_resume_after_sigkill_is_bitwise_exact(run_env, straight_run, tmp_path):
    """Kill -9 once a checkpoint past the middle exists; the relaunch must end identically."""
    steps = 200
    flags = (f"--config.num_steps={steps}", "--config.checkpoint.every=5", "--config.log_every=5")
    reference = tmp_path / "reference"
    assert_ok(run_vae(run_env, reference, *flags))
    killed = tmp_path / "killed"
    killed_at = kill_after_checkpoint(run_env, "vae", TINY, killed, steps // 2, *flags)
    assert killed_at < steps
    resumed = run_vae(run_env, killed, *flags)
    assert_ok(resumed)
    assert "resumed from" in resumed.stdout
    assert final_state(killed) == final_state(reference)


def test_two_processes_match_one_process(run_env, straight_run, tmp_path):
    """./launch.sh --processes 2: one JAX cluster of 2 processes; same numbers up to
    reduction order (two devices sum the batch in two halves)."""
    env = dict(run_env, GENJAX_DIE_GRACE_S="10", VIRTUAL_ENV=sys.prefix)
    result = subprocess.run(
        [
            str(REPO / "launch.sh"),
            "--processes",
            "2",
            "vae",
            f"--config={REPO}/experiments/configs/{TINY}",
            f"--workdir={tmp_path}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert_ok(result)
    log = (tmp_path / "logs" / "process_1.log").read_text()
    assert "process 1 of 2" in log or result.returncode == 0
    one = {r["step"]: r for r in metrics_lib.read_metrics(straight_run, "test")}
    two = {r["step"]: r for r in metrics_lib.read_metrics(tmp_path, "test")}
    assert one.keys() == two.keys()
    for step in one:
        for name in ("neg_elbo", "nll_iwae5"):
            np.testing.assert_allclose(two[step][name], one[step][name], rtol=2e-3)


@pytest.mark.fault("an unknown flag or config key: exit 2 with the flag named")
def test_unknown_flag_and_config_key_are_refused(run_env, tmp_path):
    assert_refused(run_vae(run_env, tmp_path, "--no_such_flag=1"), "bad flag", "no_such_flag")
    assert_refused(
        run_vae(run_env, tmp_path, "--config.model.no_such_key=3"), "--config.model.no_such_key"
    )
    assert not tmp_path.joinpath("config.json").exists()


@pytest.mark.fault("a missing data folder: exit 2 with the flag and path named")
def test_missing_data_folder_is_named(run_env, tmp_path):
    missing = tmp_path / "nowhere"
    result = run_vae(
        run_env, tmp_path / "w", "--config.data.name=mnist", f"--config.data.mnist_dir={missing}"
    )
    assert result.returncode == 2
    assert "config.data.mnist_dir" in result.stderr and str(missing) in result.stderr


@pytest.mark.fault("a checkpoint of another config in the workdir: refused by name")
def test_mismatched_checkpoint_is_refused_by_name(run_env, straight_run, tmp_path):
    workdir = tmp_path / "w"
    shutil.copytree(straight_run, workdir)
    before = final_state(workdir)
    config_before = (workdir / "config.json").read_text()
    result = run_vae(run_env, workdir, "--config.model.latent_dim=5")
    assert result.returncode == 2
    assert "model.latent_dim" in result.stderr and "refusing to resume" in result.stderr
    assert final_state(workdir) == before
    # The refused config does not overwrite the config of the run that owns the workdir.
    assert (workdir / "config.json").read_text() == config_before


@pytest.mark.fault(
    "the newest checkpoint truncated or overwritten in place: reported by name, the run falls "
    "back to the newest intact one"
)
def test_corrupt_checkpoint_is_reported_and_older_ones_survive(run_env, straight_run, tmp_path):
    """Bytes overwritten in place restore silently in Orbax: the stored hash catches it."""
    workdir = tmp_path / "w"
    shutil.copytree(straight_run, workdir)
    newest, _, _ = final_state(workdir)
    data_files = sorted((workdir / "checkpoints" / str(newest) / "state").rglob("d/*"))
    assert data_files, "no array data files found to corrupt"
    target = max(data_files, key=lambda p: p.stat().st_size)
    raw = bytearray(target.read_bytes())
    middle = len(raw) // 2
    raw[middle : middle + 16] = bytes(16)
    target.write_bytes(bytes(raw))
    result = run_vae(run_env, workdir, "--config.num_steps=50")
    assert result.returncode == 2
    assert f"checkpoints/{newest}" in result.stderr and (
        "corrupt" in result.stderr or "cannot be read" in result.stderr
    )
    older = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert len(older) >= 2
    fallback = run_vae(run_env, workdir, "--config.checkpoint.on_corrupt=fallback")
    assert_ok(fallback)
    assert f"resumed from {workdir / 'checkpoints' / str(older[-2])}" in fallback.stdout


@pytest.mark.fault(
    "a non-finite loss: the run stops naming the step and the quantity, last good checkpoint kept"
)
def test_non_finite_loss_stops_with_the_step_and_keeps_checkpoints(run_env, tmp_path):
    # From step 15 the learning rate is 1e27: the parameters blow up, then the loss.
    result = run_vae(
        run_env, tmp_path, "--config.optim.boundaries=(15,)", "--config.optim.scales=(1e30,)"
    )
    assert result.returncode == 2
    assert "non-finite loss" in result.stderr and "at step" in result.stderr
    saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert saved and max(saved) <= 20
    step, digest, _ = final_state(tmp_path)  # the newest checkpoint is finite and intact
    assert digest


# The profile window and the parameter table are tested in process on every CI run
# (tests/test_loop_policy.py); this whole VAE run (20 s) checks them end to end with --runslow.
@pytest.mark.slow
def test_a_profiled_run_leaves_a_trace_and_logs_its_parameter_table(run_env, tmp_path):
    """config.profile traces a window of steps into the workdir; every run logs its parameter
    table first, whose total is the count of the checkpoint's parameter arrays."""
    result = run_vae(
        run_env,
        tmp_path,
        "--config.num_steps=12",
        "--config.profile.start_step=4",
        "--config.profile.num_steps=3",
    )
    assert_ok(result)
    profile = tmp_path / "profile"
    assert list(profile.rglob("*.xplane.pb")) and list(profile.rglob("perfetto_trace.json.gz"))
    assert "profile of steps 4-6 in" in result.stdout
    shapes = json.loads((tmp_path / "checkpoints" / "12" / "meta" / "metadata").read_text())[
        "shapes"
    ]
    count = sum(
        math.prod(shape) for path, (shape, _) in shapes.items() if path.startswith(".params")
    )
    assert count > 1000
    table = result.stdout.split("parameters by module:")[1].split("\n\n")[0]
    assert f"\nparameters: {count:,} ({count * 4 / 1024:.1f} KiB)" in table, result.stdout[:3000]
