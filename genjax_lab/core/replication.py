"""Replications: a published number, the run that reproduces it, and the check between them.

A replication is a config module `experiments/replications/<name>.py` whose docstring names
the paper and the table or figure, and which defines

  REPLICATION = Replication(experiment="hmm", paper="...", rows=(Row(...), ...), runs=(...))
  def get_config(arg: str) -> ml_collections.ConfigDict   # arg: "SCHEDULE" or "RUN,SCHEDULE"

Each run is launched as `experiments/<experiment>.py --config=<module>:<arg>` in its own
workdir and writes `summary.json`; each row reads one metric from one run's summary and
passes when it lies within the schedule's tolerance of the published value.

Passing is not replicating. Only the `full` schedule follows the paper's protocol, and its
tolerance is the paper's own uncertainty (its standard error or, where it gives none, the
spread of reproductions), so a row's verdict is "replicated" only there. Shorter schedules
check that the pipeline runs and say how far it got: "smoke: pipeline runs, gap N".
"""

import dataclasses
import importlib.util
import json
import math
import pathlib
import types
from collections.abc import Sequence

import ml_collections

SCHEDULES = ("tiny", "quick", "full")
REPO = pathlib.Path(__file__).resolve().parents[2]
REGISTRY = REPO / "experiments" / "replications"


@dataclasses.dataclass(frozen=True)
class Row:
    """One published number.

    label: what the row is ("IWAE, 1 layer, k=50").
    metric: key in the run's summary.json.
    published: the paper's value.
    tolerance: allowed |ours - published| per schedule ("tiny", "quick", "full"); a schedule
      missing from it (or inf) does not check the row ("tiny" often only tests the pipeline).
      The "full" tolerance is the paper's own uncertainty: the verdict "replicated" rests on it.
    run: which of the replication's runs reports the metric.
    better: "lower" or "higher" when beating the published value always passes.
    """

    label: str
    metric: str
    published: float
    tolerance: dict[str, float]
    run: str = "main"
    better: str | None = None

    def checked(self, schedule: str) -> bool:
        return self.tolerance.get(schedule, math.inf) < math.inf

    def passes(self, ours: float, schedule: str) -> bool:
        gap = ours - self.published
        if (self.better == "lower" and gap <= 0) or (self.better == "higher" and gap >= 0):
            return True
        return abs(gap) <= self.tolerance[schedule]


def conservative_rows(model: str, published: float) -> tuple[Row, Row]:
    """The unchecked rows of a Boltzmann replication's RAISE reading (eval.raise_examples):
    RAISE's lower bound and AIS on the same test images, beside the published number."""
    return (
        Row(
            label=f"{model}: RAISE test log p(v), first eval.raise_examples images (conservative)",
            metric="test_log_likelihood_raise",
            published=published,
            tolerance={},
        ),
        Row(
            label=f"{model}: AIS test log p(v), the same images",
            metric="test_log_likelihood_ais_same_images",
            published=published,
            tolerance={},
        ),
    )


@dataclasses.dataclass(frozen=True)
class Replication:
    """experiment: the script `experiments/<experiment>.py` that runs each config.
    paper: citation with table or figure. estimator: how the metric is computed.
    runs: names of the configs this replication trains (passed as "RUN,SCHEDULE").
    data: config keys that name data, and their path under the runner's --data_dir
      ({"data.mnist_dir": "mnist"}); set on every run's command line.
    caveat: what a reader must know before trusting the number (shown in the report)."""

    experiment: str
    paper: str
    estimator: str
    rows: tuple[Row, ...]
    runs: tuple[str, ...] = ("main",)
    data: dict[str, str] = dataclasses.field(default_factory=dict)
    caveat: str = ""

    def config_arg(self, run: str, schedule: str) -> str:
        return schedule if self.runs == ("main",) else f"{run},{schedule}"


def parse_arg(arg: str, runs: tuple[str, ...] = ("main",)) -> tuple[str, str]:
    """'quick' -> ('main', 'quick'); 'vae_k1,quick' -> ('vae_k1', 'quick'); checks both names."""
    run, _, schedule = arg.rpartition(",")
    run = run or "main"
    if schedule not in SCHEDULES:
        raise ValueError(f"config argument {arg!r}: schedule must be one of {SCHEDULES}")
    if run not in runs:
        raise ValueError(f"config argument {arg!r}: run must be one of {runs}")
    return run, schedule


def load_module(path: str | pathlib.Path) -> types.ModuleType:
    """Imports a config file by path (config files are not a package)."""
    path = pathlib.Path(path)
    if not path.is_absolute():
        path = REPO / path
    if not path.is_file():
        raise FileNotFoundError(f"no config file {path}")
    spec = importlib.util.spec_from_file_location(f"_genjax_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def experiment_config(path: str, arg: str) -> ml_collections.ConfigDict:
    """`get_config(arg)` of an experiment config file, e.g.
    ('experiments/configs/vae_mnist.py', 'vae_k1')."""
    return load_module(path).get_config(arg)


def names(registry: pathlib.Path = REGISTRY) -> list[str]:
    return sorted(p.stem for p in registry.glob("*.py") if not p.stem.startswith("_"))


def load(name: str, registry: pathlib.Path = REGISTRY) -> tuple[Replication, types.ModuleType]:
    path = registry / f"{name}.py"
    if not path.is_file():
        raise ValueError(f"unknown replication {name!r}; known: {', '.join(names(registry))}")
    module = load_module(path)
    replication = getattr(module, "REPLICATION", None)
    if not isinstance(replication, Replication):
        raise ValueError(f"{path} defines no REPLICATION = Replication(...)")
    return replication, module


def read_summary(workdir: pathlib.Path) -> dict | None:
    path = workdir / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else None


def runs_for(replication: Replication, module: types.ModuleType, schedule: str) -> tuple[str, ...]:
    """The runs a schedule trains: `module.runs_for(schedule)` where a module defines it
    (a quick schedule may train a subset), else all of them."""
    chosen = tuple(module.runs_for(schedule)) if hasattr(module, "runs_for") else replication.runs
    unknown = set(chosen) - set(replication.runs)
    if unknown:
        raise ValueError(
            f"{module.__file__}: runs_for({schedule!r}) names unknown runs {sorted(unknown)}"
        )
    return chosen


def run_command(
    python: str,
    replication: Replication,
    module_path: pathlib.Path,
    run: str,
    schedule: str,
    workdir: pathlib.Path,
    data_dir: pathlib.Path | None,
) -> list[str]:
    """The command line that trains and scores one run in `workdir`."""
    command = [
        python,
        str(REPO / "experiments" / f"{replication.experiment}.py"),
        f"--config={module_path}:{replication.config_arg(run, schedule)}",
        f"--workdir={workdir}",
    ]
    if replication.data:
        if data_dir is None:
            raise ValueError(
                f"--data_dir is needed: {module_path.stem} reads "
                f"{sorted(replication.data.values())}"
            )
        command += [f"--config.{key}={data_dir / sub}" for key, sub in replication.data.items()]
    return command


PAPER_SCHEDULE = "full"


def verdict(status: str, gap: float | None, schedule: str) -> str:
    """What a row shows, in words a reader can quote: "replicated" only for a paper-schedule
    row within the paper's uncertainty; any shorter schedule is a smoke test with its gap."""
    if gap is None:
        return "no number: the run failed" if status == "fail" else "not run on this schedule"
    if schedule != PAPER_SCHEDULE:
        outcome = "fails its pipeline check" if status == "fail" else "pipeline runs"
        return f"smoke: {outcome}, gap {gap:+.4g}"
    if status == "pass":
        return "replicated"
    return f"not replicated, gap {gap:+.4g}" if status == "fail" else f"unchecked, gap {gap:+.4g}"


IN_PROGRESS = "in progress"


def _row_verdict(run, status, gap, schedule, stopped, not_started) -> str:
    if status == IN_PROGRESS:
        return f"{IN_PROGRESS}: stopped at step {stopped[run]:,}; relaunch to resume"
    if run in not_started:
        return f"not started: `--runs={run}` trains it"
    return verdict(status, gap, schedule)


# What `./launch.sh replicate` records of each run it launched (command, exit code, wall).
RUN_STAMP = "replicate_run.json"


def stopped_at(workdir: pathlib.Path) -> int | None:
    """The newest checkpoint's step of a run that exited cleanly without its summary (a
    preemption: SIGTERM saved it, and the same command resumes it), else None."""
    stamp = workdir / RUN_STAMP
    checkpoints = workdir / "checkpoints"
    if not stamp.is_file() or json.loads(stamp.read_text()).get("exit_code") != 0:
        return None
    steps = (
        [int(p.name) for p in checkpoints.iterdir() if p.name.isdigit()]
        if checkpoints.is_dir()
        else []
    )
    return max(steps, default=None)


def earlier_runs(root: pathlib.Path, runs: Sequence[str]) -> tuple[dict[str, dict], dict[str, int]]:
    """What earlier invocations left of `runs` in their workdirs `root/<run>`: the summaries
    of the finished ones, and the newest checkpoint's step of those stopped to resume; so a
    `--runs` invocation keeps the rows of the runs another one trained."""
    summaries = {run: s for run in runs if (s := read_summary(root / run)) is not None}
    stopped = {
        run: step
        for run in runs
        if run not in summaries and (step := stopped_at(root / run)) is not None
    }
    return summaries, stopped


def check(
    replication: Replication,
    summaries: dict[str, dict | None],
    schedule: str,
    stopped: dict[str, int] | None = None,
    not_started: Sequence[str] = (),
) -> list[dict]:
    """One record per row. `summaries` holds the runs this schedule trained (None: no summary,
    the run failed); `stopped` maps a run that stopped early to resume later (preempted: no
    summary yet) to its newest checkpoint's step; `not_started` names the runs the schedule
    trains that this invocation left out (`--runs`). A row of a run not trained on this
    schedule, or whose metric a finished run did not compute where the schedule does not
    check it, is marked skipped.
    status: "pass" | "fail" | "skipped" | "unchecked" (ran, but the schedule sets no tolerance)
    | "in progress"; verdict: see `verdict` ("replicated" only on the paper's schedule)."""
    stopped = stopped or {}
    records = []
    for row in replication.rows:
        ours = None
        if summaries.get(row.run) is None and row.run in stopped:
            status = IN_PROGRESS
        elif row.run in summaries:
            summary = summaries[row.run]
            value = (summary or {}).get(row.metric)
            ours = None if value is None else float(value)
            if ours is None:
                # A reading the schedule does not check may not be computed on it (a
                # conservative estimate only the full schedule pays for): not a failure.
                unneeded = summary is not None and not row.checked(schedule)
                status = "skipped" if unneeded else "fail"
            elif not row.checked(schedule):
                status = "unchecked"
            else:
                status = "pass" if row.passes(ours, schedule) else "fail"
        else:
            status = "skipped"
        gap = None if ours is None else ours - row.published
        records.append(
            {
                "label": row.label,
                "run": row.run,
                "metric": row.metric,
                "published": row.published,
                "ours": ours,
                "gap": gap,
                "tolerance": row.tolerance[schedule] if row.checked(schedule) else None,
                "better": row.better,
                "status": status,
                "schedule": schedule,
                "verdict": _row_verdict(row.run, status, gap, schedule, stopped, not_started),
            }
        )
    return records
