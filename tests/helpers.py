"""Helpers shared by tests: real data beside the repo (skipped with a reason when absent),
and experiments run as real processes."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from genjax_lab.core import metrics as metrics_lib

REPO = pathlib.Path(__file__).resolve().parents[1]

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_data(relative: str) -> pathlib.Path:
    """Path under ../shared/data, or skip the calling test saying where it looked."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real data not found at {path} (the ../shared folder beside the repo)")
    return path


def process_env(tfds_dir: pathlib.Path) -> dict[str, str]:
    """Environment of an experiment subprocess: one CPU device, a private TFDS folder."""
    env = dict(os.environ)
    env.update(TFDS_DATA_DIR=str(tfds_dir), XLA_FLAGS="", JAX_PLATFORMS="cpu")
    return env


def experiment_command(
    experiment: str, config: str, workdir: pathlib.Path, *flags: str
) -> list[str]:
    """`python experiments/<experiment>.py --config=experiments/configs/<config> --workdir=...`."""
    return [
        sys.executable,
        str(REPO / "experiments" / f"{experiment}.py"),
        f"--config={REPO}/experiments/configs/{config}",
        f"--workdir={workdir}",
        *flags,
    ]


def run_experiment(env, experiment: str, config: str, workdir, *flags: str, timeout: int = 300):
    return subprocess.run(
        experiment_command(experiment, config, workdir, *flags),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def assert_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, (
        f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )


def checkpoint_steps(workdir) -> list[int]:
    checkpoints = pathlib.Path(workdir) / "checkpoints"
    return (
        sorted(int(p.name) for p in checkpoints.glob("*") if p.name.isdigit())
        if checkpoints.exists()
        else []
    )


def final_state(workdir):
    """(newest checkpoint step, its state hash, every metrics record) of a workdir."""
    step = checkpoint_steps(workdir)[-1]
    meta = json.loads(
        (pathlib.Path(workdir) / "checkpoints" / str(step) / "meta" / "metadata").read_text()
    )
    return step, meta["state_sha256"], metrics_lib.read_metrics(workdir)


def kill_after_checkpoint(
    env, experiment: str, config: str, workdir, min_step: int, *flags: str
) -> int:
    """Starts an experiment and SIGKILLs it once a checkpoint at step >= min_step exists.

    Returns the newest checkpoint step left behind; fails if the run ended on its own.
    """
    process = subprocess.Popen(
        experiment_command(experiment, config, workdir, *flags),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        steps = checkpoint_steps(workdir)
        if steps and steps[-1] >= min_step:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    assert process.wait(timeout=60) == -signal.SIGKILL, "the run ended before it could be killed"
    return checkpoint_steps(workdir)[-1]
