"""Runs the replications in experiments/replications/, checks them against the published
numbers and regenerates the report (docs/results.md).

  ./launch.sh replicate                              # all of them, quick schedule
  ./launch.sh replicate iwae_table1 lda_bars --schedule=full --data_dir=/data
  ./launch.sh replicate iwae_table1 --schedule=full --runs=vae_k1,iwae_k5   # two of its runs
  sbatch --array=0-8 launch.sh replicate --schedule=full   # one replication per array task

Each run trains in `<workdir>/<schedule>/<name>/<run>/` (resumable: a rerun continues from
its checkpoints, a run with a summary.json and the same command is not repeated) and logs
to `<run>.log` beside it; `<workdir>/<schedule>/<name>/result.json` holds the rows. Exits 1
when a row falls outside its tolerance or a run fails, and on bad flags or names (with a
line saying which, after the usage).
"""

import concurrent.futures
import json
import os
import pathlib
import platform
import shlex
import signal
import subprocess
import sys
import threading
import time

from absl import app, flags, logging

from genjax_lab import report
from genjax_lab.core import replication as rep

_SCHEDULE = flags.DEFINE_enum(
    "schedule", "quick", rep.SCHEDULES, "tiny: CI-sized; quick: a 2-core CPU; full: the papers'."
)
_WORKDIR = flags.DEFINE_string("workdir", "runs/replicate", "Root of the per-replication workdirs.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir",
    os.environ.get("GENJAX_DATA_DIR"),
    "Folder holding mnist/, fsdd/, text/ (default $GENJAX_DATA_DIR, else ../shared/data "
    "beside the repository if present).",
)
_REGISTRY = flags.DEFINE_string(
    "registry", str(rep.REGISTRY), "Folder of replication config modules."
)
_REPORT = flags.DEFINE_string(
    "report", "docs/results.md", "Report to regenerate after the runs ('' for none)."
)
_README = flags.DEFINE_string(
    "readme",
    "README.md",
    "README whose headline rows are regenerated with the report ('' for none).",
)
_RUNS = flags.DEFINE_list(
    "runs",
    [],
    "Train only these runs of the named replications (default: every run its schedule "
    "trains); the rows of the others are reported as skipped.",
)
_PARALLEL = flags.DEFINE_integer(
    "parallel", 1, "Runs trained at the same time (one per accelerator is sensible)."
)

_children: set[subprocess.Popen] = set()
_children_lock = threading.Lock()


def _data_dir() -> pathlib.Path | None:
    if _DATA_DIR.value:
        path = pathlib.Path(_DATA_DIR.value)
        if not path.is_dir():
            raise app.UsageError(f"--data_dir={path}: no such folder")
        return path.resolve()
    beside = rep.REPO.parent / "shared" / "data"
    return beside if beside.is_dir() else None


def _selected(argv: list[str], registry: pathlib.Path) -> list[str]:
    known = rep.names(registry)
    if len(argv) > 1:
        unknown = [n for n in argv[1:] if n not in known]
        if unknown:
            raise app.UsageError(f"unknown replication(s) {unknown}; known: {' '.join(known)}")
        return argv[1:]
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    if task is not None:
        if not 0 <= int(task) < len(known):
            raise app.UsageError(
                f"SLURM_ARRAY_TASK_ID={task}: there are {len(known)} replications "
                f"({' '.join(known)})"
            )
        return [known[int(task)]]
    return known


def _train(command: list[str], workdir: pathlib.Path, label: str) -> tuple[bool, float]:
    """Runs one experiment unless its workdir already holds its result; (ok, wall seconds)."""
    stamp = workdir / rep.RUN_STAMP
    done = json.loads(stamp.read_text()) if stamp.is_file() else {}
    if done.get("command") == command and done.get("ok") and rep.read_summary(workdir) is not None:
        print(f"  {label}: done before ({done['wall_s']:.0f} s)", flush=True)
        return True, done["wall_s"]
    print(f"  {label}: started, log {workdir.with_suffix('.log')}", flush=True)
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(workdir.with_suffix(".log"), "a") as log:
        log.write(f"$ {shlex.join(command)}\n")
        log.flush()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        with _children_lock:
            _children.add(process)
        code = process.wait()
        with _children_lock:
            _children.discard(process)
    wall = done.get("wall_s", 0.0) + time.perf_counter() - start  # summed over resumptions
    ok = code == 0 and rep.read_summary(workdir) is not None
    stamp.write_text(
        json.dumps({"command": command, "ok": ok, "exit_code": code, "wall_s": wall}, indent=1)
    )
    if ok:
        outcome = "finished"
    elif code == 0:  # a preempted experiment saves and exits cleanly, without a summary
        outcome = "stopped before its last step (relaunch to resume)"
    else:
        outcome = f"FAILED (exit code {code})"
    print(f"  {label}: {outcome} after {wall:.0f} s", flush=True)
    return ok, wall


def _check_runs(names: list[str], registry: pathlib.Path) -> None:
    """--runs names only runs that one of the selected replications has."""
    known = {run for name in names for run in rep.load(name, registry)[0].runs}
    unknown = sorted(set(_RUNS.value) - known)
    if unknown:
        raise app.UsageError(
            f"--runs: no run {unknown} in {' '.join(names)}; their runs: {' '.join(sorted(known))}"
        )


def _forward_sigterm(signum, frame) -> None:
    # The experiments save a checkpoint on SIGTERM; a requeued job resumes them.
    with _children_lock:
        for process in _children:
            process.send_signal(signum)
    print("replicate: SIGTERM forwarded to the running experiments; rerun to resume", flush=True)


def _submit(
    name: str, registry: pathlib.Path, root: pathlib.Path, schedule: str, data_dir, pool
) -> dict:
    """Queues the runs of one replication on the pool; returns what `_finish` needs."""
    replication, module = rep.load(name, registry)
    scheduled = rep.runs_for(replication, module, schedule)
    runs = tuple(run for run in scheduled if run in _RUNS.value) if _RUNS.value else scheduled
    workdirs = {run: root / schedule / name / run for run in runs}
    commands = {
        run: rep.run_command(
            sys.executable,
            replication,
            registry / f"{name}.py",
            run,
            schedule,
            workdirs[run],
            data_dir,
        )
        for run in runs
    }
    futures = {
        run: pool.submit(_train, commands[run], workdirs[run], f"{name}/{run}") for run in runs
    }
    return {
        "name": name,
        "replication": replication,
        "workdirs": workdirs,
        "commands": commands,
        "futures": futures,
        "not_started": tuple(run for run in scheduled if run not in runs),
    }


def _finish(job: dict, root: pathlib.Path, schedule: str) -> dict:
    """Waits for a replication's runs, checks its rows and writes its result.json."""
    name, replication, workdirs = job["name"], job["replication"], job["workdirs"]
    outcomes = {run: future.result() for run, future in job["futures"].items()}
    summaries = {
        run: rep.read_summary(workdirs[run]) if ok else None for run, (ok, _) in outcomes.items()
    }
    stopped = {
        run: step
        for run, (ok, _) in outcomes.items()
        if not ok and (step := rep.stopped_at(workdirs[run])) is not None
    }
    left_out = job["not_started"]
    before, stopped_before = rep.earlier_runs(root / schedule / name, left_out)
    summaries, stopped = {**before, **summaries}, {**stopped_before, **stopped}
    not_started = [run for run in left_out if run not in before and run not in stopped]
    rows = rep.check(replication, summaries, schedule, stopped, not_started)
    result = {
        "name": name,
        "paper": replication.paper,
        "estimator": replication.estimator,
        "caveat": replication.caveat,
        "schedule": schedule,
        "experiment": replication.experiment,
        "hardware": report.hardware(),
        "wall_s": sum(wall for _, wall in outcomes.values()),
        "runs": {
            run: {
                "ok": ok,
                **({"stopped_at_step": stopped[run]} if run in stopped else {}),
                "wall_s": wall,
                "workdir": str(workdirs[run]),
                "command": shlex.join(job["commands"][run]),
            }
            for run, (ok, wall) in outcomes.items()
        },
        "command": f"./launch.sh replicate {name} --schedule={schedule}"
        + (f" --runs={','.join(job['futures'])}" if _RUNS.value else ""),
        "rows": rows,
        "passed": all(ok for ok, _ in outcomes.values())
        and all(r["status"] != "fail" for r in rows),
    }
    (root / schedule / name / "result.json").write_text(json.dumps(result, indent=1))
    return result


def main(argv: list[str]) -> None:
    logging.set_verbosity(logging.WARNING)
    registry = pathlib.Path(_REGISTRY.value).resolve()
    names = _selected(argv, registry)
    _check_runs(names, registry)
    root, schedule, data_dir = pathlib.Path(_WORKDIR.value).resolve(), _SCHEDULE.value, _data_dir()
    signal.signal(signal.SIGTERM, _forward_sigterm)
    print(
        f"replicate: {len(names)} replication(s), schedule {schedule}, "
        f"workdirs under {root / schedule}, data {data_dir or '(none)'}, on {platform.node()}",
        flush=True,
    )
    failed, stopped = [], []
    with concurrent.futures.ThreadPoolExecutor(max(1, _PARALLEL.value)) as pool:
        jobs = [_submit(name, registry, root, schedule, data_dir, pool) for name in names]
        for index, job in enumerate(jobs, 1):
            result = _finish(job, root, schedule)
            statuses = {row["status"] for row in result["rows"]}
            outcome = "PASS" if result["passed"] else "FAIL"
            if not result["passed"] and statuses <= {rep.IN_PROGRESS, "skipped"}:
                outcome = "STOPPED (relaunch to resume)"
                stopped.append(job["name"])
            elif not result["passed"]:
                failed.append(job["name"])
            print(
                f"[{index}/{len(jobs)}] {job['name']}: {outcome} "
                f"({result['wall_s']:.0f} s of training and evaluation)",
                flush=True,
            )
            for row in result["rows"]:
                print(f"    {report.row_line(row)}", flush=True)
    if _REPORT.value:
        report.write(
            pathlib.Path(_REPORT.value),
            replicate_root=root,
            readme=pathlib.Path(_README.value) if _README.value else None,
        )
        print(f"replicate: report written to {_REPORT.value}", flush=True)
    if stopped:
        # As the experiments do on a preemption: exit 0, and the same command resumes.
        print(f"replicate: stopped early, relaunch to resume: {' '.join(stopped)}", flush=True)
    if failed:
        print(f"replicate: outside tolerance or failed: {' '.join(failed)}", flush=True)
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
