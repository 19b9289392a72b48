"""launch.sh under a real one-node SLURM: sbatch with two tasks, preemption by SIGTERM and
requeue, a task killed mid-run. Skipped, with the reason, where SLURM cannot start."""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from genjax_lab.core import metrics as metrics_lib
from tests import slurm_cluster
from tests.helpers import (
    REPO,
    assert_ok,
    checkpoint_steps,
    final_state,
    process_env,
    run_experiment,
)

TINY = f"--config={REPO}/experiments/configs/vae_digits.py:tiny"
# Two CPU processes all-reduce through gloo at about 30 steps/s: long enough to interrupt.
STEPS = 600
LONG = (f"--config.num_steps={STEPS}", "--config.checkpoint.every=50", "--config.log_every=50")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    try:
        started = slurm_cluster.start(tmp_path_factory.mktemp("slurm"))
    except (slurm_cluster.Unavailable, OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"SLURM cannot start here: {e}")
    yield started
    started.stop()


@pytest.fixture(scope="module")
def job_env(cluster, tmp_path_factory):
    env = process_env(tmp_path_factory.mktemp("tfds"))
    env.update(
        SLURM_CONF=cluster.env["SLURM_CONF"],
        VIRTUAL_ENV=sys.prefix,
        GENJAX_HEARTBEAT_TIMEOUT_S="10",
    )
    return env


def submit(cluster, env, workdir: pathlib.Path, *flags: str, tasks: int = 2) -> int:
    workdir.mkdir(parents=True, exist_ok=True)
    return int(
        subprocess.run(
            [
                "sbatch",
                "--parsable",
                "-n",
                str(tasks),
                f"--output={workdir}/slurm.out",
                "--open-mode=append",
                str(REPO / "launch.sh"),
                "vae",
                TINY,
                f"--workdir={workdir}",
                *flags,
            ],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        .stdout.strip()
        .split(";")[0]
    )


def job_log(workdir: pathlib.Path) -> str:
    parts = [(workdir / "slurm.out").read_text()] if (workdir / "slurm.out").exists() else []
    return "\n".join(parts)


def assert_one_cluster_of_two(log: str) -> None:
    """Both tasks of an `sbatch -n 2` job joined one JAX cluster, one device each."""
    for process in (0, 1):
        assert f"process {process} of 2, 1 local / 2 global devices" in log, log[-3000:]


@pytest.mark.slow  # 45 s
def test_sbatch_two_tasks_form_one_cluster_and_match_one_process(cluster, job_env, tmp_path):
    """In CI, test_a_killed_task_ends_the_job_with_a_named_failure checks the cluster an
    `sbatch -n 2` job forms, and tests/test_harness.py's test_two_processes_match_one_process
    the numbers two processes of one cluster reach against one process."""
    start = time.time()
    job = submit(cluster, job_env, tmp_path / "two")
    state = cluster.wait(job, timeout=300)
    log = job_log(tmp_path / "two")
    assert state == "COMPLETED", log[-3000:]
    assert_one_cluster_of_two(log)
    single = tmp_path / "one"
    assert_ok(run_experiment(job_env, "vae", "vae_digits.py:tiny", single))
    one = {r["step"]: r for r in metrics_lib.read_metrics(single, "test")}
    two = {r["step"]: r for r in metrics_lib.read_metrics(tmp_path / "two", "test")}
    assert one.keys() == two.keys()
    for step in one:
        np.testing.assert_allclose(two[step]["neg_elbo"], one[step]["neg_elbo"], rtol=2e-3)
    print(f"sbatch -n 2 job: {time.time() - start:.1f} s")


@pytest.mark.slow  # 150 s; the preemption path runs in CI through test_faults' 2-process case
@pytest.mark.fault(
    "SIGTERM to a 2-task SLURM job, then requeue: resumes to the uninterrupted result"
)
def test_sigterm_then_requeue_resumes_to_the_uninterrupted_result(cluster, job_env, tmp_path):
    start = time.time()
    reference = tmp_path / "reference"
    assert cluster.wait(submit(cluster, job_env, reference, *LONG), timeout=400) == "COMPLETED", (
        job_log(reference)[-3000:]
    )

    preempted = tmp_path / "preempted"
    job = submit(cluster, job_env, preempted, *LONG)
    deadline = time.time() + 300
    while not checkpoint_steps(preempted) or checkpoint_steps(preempted)[-1] < 100:
        assert time.time() < deadline and cluster.state(job) in ("PENDING", "RUNNING"), job_log(
            preempted
        )[-3000:]
        time.sleep(0.05)
    cluster.scancel("--signal=TERM", str(job))
    assert cluster.wait(job, timeout=120) == "COMPLETED", job_log(preempted)[-3000:]
    stopped = re.findall(r"preempted: saved step (\d+)", job_log(preempted))
    assert len(stopped) == 1, job_log(preempted)[-3000:]
    stop_step = int(stopped[0])
    assert stop_step < STEPS
    # Both tasks stop at JAX's preemption sync point: one agreed step, any step.
    stops = {
        int(step) for step in re.findall(r"process \d stopped at step (\d+)", job_log(preempted))
    }
    assert stops <= {stop_step}, job_log(preempted)[-3000:]
    assert checkpoint_steps(preempted)[-1] == stop_step

    cluster.scontrol("requeue", str(job))  # starts again after cred_expire (slurm_cluster)
    deadline = time.time() + 400
    while f"done: {STEPS} steps" not in job_log(preempted):
        assert time.time() < deadline, job_log(preempted)[-3000:]
        time.sleep(0.5)
    assert cluster.wait(job, timeout=120) == "COMPLETED"
    assert f"resumed from {preempted.absolute() / 'checkpoints' / str(stop_step)}" in job_log(
        preempted
    )
    assert final_state(preempted)[:2] == final_state(reference)[:2]
    print(f"preempted at step {stop_step}, resumed there; test took {time.time() - start:.1f} s")


def _task_pid(workdir: pathlib.Path, process_id: int) -> int | None:
    for pid in map(
        int,
        subprocess.run(
            ["pgrep", "-f", "experiments/vae.py"], capture_output=True, text=True
        ).stdout.split(),
    ):
        try:
            environ = pathlib.Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if (
            f"GENJAX_PROCESS_ID={process_id}".encode() in environ
            and str(workdir).encode() in cmdline
        ):
            return pid
    return None


@pytest.mark.fault("a SLURM task killed: the job ends with the task named")
def test_a_killed_task_ends_the_job_with_a_named_failure(cluster, job_env, tmp_path):
    """The two tasks form one cluster and checkpoint; a task then killed fails the job."""
    workdir = tmp_path / "dies"
    job = submit(cluster, job_env, workdir, *LONG)
    deadline = time.time() + 300
    while not checkpoint_steps(workdir):
        assert time.time() < deadline and cluster.state(job) in ("PENDING", "RUNNING"), job_log(
            workdir
        )[-3000:]
        time.sleep(0.05)
    pid = _task_pid(workdir, 1)
    assert pid, "task 1 not found"
    killed_at = time.time()
    os.kill(pid, signal.SIGKILL)
    state = cluster.wait(job, timeout=120)
    ended_after = time.time() - killed_at
    log = job_log(workdir)
    assert_one_cluster_of_two(log)
    assert state in ("FAILED", "CANCELLED"), log[-3000:]
    assert re.search(r"task 1: Killed", log), log[-3000:]
    steps = checkpoint_steps(workdir)
    assert steps and final_state(workdir)[1]  # the checkpoints left are readable
    print(f"job ended {ended_after:.1f} s after task 1 was killed; checkpoints kept: {steps}")


def test_replications_as_a_job_array_each_in_its_own_workdir(cluster, job_env, tmp_path):
    start = time.time()
    registry = tmp_path / "registry"
    registry.mkdir()
    names = ["dbm_ais", "rbm_ais"]  # array index i runs the i-th name in sorted order
    for name in names:
        (registry / f"{name}.py").write_text(
            (REPO / "experiments" / "replications" / f"{name}.py").read_text()
        )
    runs = tmp_path / "runs"
    job = int(
        subprocess.run(
            [
                "sbatch",
                "--parsable",
                "--array=0-1",
                "-n",
                "1",
                f"--output={tmp_path}/slurm-%A_%a.out",
                str(REPO / "launch.sh"),
                "replicate",
                "--schedule=tiny",
                f"--registry={registry}",
                f"--workdir={runs}",
                f"--report={tmp_path / 'results.md'}",
                "--readme=",
            ],
            env=job_env,
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        .stdout.strip()
        .split(";")[0]
    )
    logs = [tmp_path / f"slurm-{job}_{i}.out" for i in (0, 1)]
    deadline = time.time() + 300
    while subprocess.run(
        ["squeue", "-h", "-j", str(job)], env=job_env, capture_output=True, text=True
    ).stdout.strip():
        assert time.time() < deadline, "\n".join(p.read_text() for p in logs if p.exists())[-3000:]
        time.sleep(0.5)
    for index, name in enumerate(names):
        log = logs[index].read_text()
        assert f"[1/1] {name}: PASS" in log, log[-3000:]
        result = json.loads((runs / "tiny" / name / "result.json").read_text())
        assert result["runs"]["main"]["workdir"] == str(runs / "tiny" / name / "main")
        assert (runs / "tiny" / name / "main" / "summary.json").is_file()
    print(f"job array of 2 replications: {time.time() - start:.1f} s")
