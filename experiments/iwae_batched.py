"""The ten runs of IWAE Table 1 (experiments/replications/iwae_table1.py) as six compiled
programs, for a machine with an accelerator:

  ./launch.sh iwae_batched --schedule=full --data_dir=DIR    # DIR holds mnist/

Runs that share the architecture (1 or 2 stochastic layers) and the number of samples k
share every array shape and the data order; they differ only in the objective. Each such
group (k = 1: the VAE alone; k = 5 and 50: VAE and IWAE) trains as one `VAEEnsemble`: the
members' states stacked, their steps vmapped, `config.steps_per_call` steps scanned per
compiled call. Groups of another k are not padded into one program: the noise of a k-sample
draw is not a prefix of a 50-sample draw, so a padded member would no longer be the run the
table names, and a k = 1 member would pay for 50 decoder passes. The groups run one after
another, each on the core loop in `<workdir>/<group>/` (Orbax checkpoints; a relaunch
resumes, a finished group is not trained again); then each member's test -log p(x) is
estimated as in the replication and written to `<workdir>/<run>/summary.json`, and the
table's rows, checked as `./launch.sh replicate` checks them, to `<workdir>/result.json`.

Cost and the projected wall time on one GPU: docs/vae.md ("All ten runs batched").
"""

import dataclasses
import json
import os
import pathlib
import shutil
import time
from unittest import mock

import ml_collections
import numpy as np
from absl import app, flags

from genjax_lab.core import data as data_lib
from genjax_lab.core import loop as loop_lib
from genjax_lab.core import metrics as metrics_lib
from genjax_lab.core import replication as rep
from genjax_lab.data.images import load_images
from genjax_lab.models import vae
from genjax_lab.models.vae.family import ensemble_for

_NAME = "iwae_table1"
FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command's flags, defined by the script only: tests import this module beside
    other experiments that define flags of the same names (workdir, data_dir, schedule)."""
    flags.DEFINE_enum("schedule", "quick", list(rep.SCHEDULES), "the replication's schedule")
    flags.DEFINE_string("workdir", None, "default runs/iwae_batched/<schedule>")
    flags.DEFINE_string(
        "data_dir",
        os.environ.get("GENJAX_DATA_DIR"),
        "folder holding mnist/ (default $GENJAX_DATA_DIR, else ../shared/data beside the "
        "repository)",
    )
    flags.DEFINE_integer(
        "steps_per_call", 0, "training steps per compiled call; 0: the schedule's own"
    )
    flags.DEFINE_list(
        "time_steps_per_call",
        [],
        "instead of training: time a training step of each run in --time_runs on the core loop at "
        "these steps per call (e.g. 1,10,50), interleaved rounds; writes <workdir>/step_time.json",
    )
    flags.DEFINE_list("time_runs", ["vae_k1", "iwae_k5"], "the runs --time_* measures")
    flags.DEFINE_integer("rounds", 3, "rounds of --time_steps_per_call")


def group_name(config: ml_collections.ConfigDict) -> str:
    """'l<stochastic layers>_k<samples>': the runs that can share one compiled program."""
    layers = 1 + len(config.model.upper_latent_dims)
    return f"l{layers}_k{config.model.num_samples}"


def run_configs(
    schedule: str, data_dir: pathlib.Path | None
) -> dict[str, ml_collections.ConfigDict]:
    """Every run of the table with its replication config on `schedule` (all ten: the tiny
    schedule too), the data folder filled in where the data is MNIST."""
    replication, module = rep.load(_NAME)
    configs = {}
    for run in replication.runs:
        config = module.get_config(f"{run},{schedule}")
        if config.data.name == "mnist":
            if data_dir is None:
                raise ValueError(f"--data_dir is needed: {_NAME} reads mnist/ on {schedule}")
            for key, sub in replication.data.items():
                parent, leaf = key.rsplit(".", 1)
                config[parent][leaf] = str(data_dir / sub)
        configs[run] = config
    return configs


def groups(
    configs: dict[str, ml_collections.ConfigDict],
) -> dict[str, dict[str, ml_collections.ConfigDict]]:
    """The runs by `group_name`, in the table's order."""
    grouped: dict[str, dict[str, ml_collections.ConfigDict]] = {}
    for run, config in configs.items():
        grouped.setdefault(group_name(config), {})[run] = config
    return grouped


def train_group(
    members: dict[str, ml_collections.ConfigDict], dataset, workdir: pathlib.Path
) -> dict[str, dict[str, float]]:
    """Trains one group in `workdir/<group>` (resumable) and scores each member: {run:
    summary} with test_nll, the last training loss and the final evaluation's numbers."""
    ensemble = ensemble_for(members, dataset)
    first = next(iter(members.values()))
    group_dir = workdir / group_name(first)
    result = loop_lib.train_and_evaluate(first, group_dir, ensemble.as_family(), dataset)
    if result.preempted:
        return {}
    summaries = {}
    for index, (run, config) in enumerate(members.items()):
        state = ensemble.member(result.state, index)
        (workdir / run).mkdir(parents=True, exist_ok=True)
        mine = {
            name.removesuffix(f"_{run}"): value
            for name, value in result.metrics.items()
            if name.endswith(f"_{run}")
        }
        summary = metrics_lib.final_metrics(
            workdir / run,
            result.step,
            lambda state=state, config=config, mine=mine: {
                **mine,
                **vae.test_nll(ensemble.family, state, dataset, config),
            },
        )
        metrics_lib.write_summary(workdir / run, summary)
        summaries[run] = summary
    return summaries


def time_steps(
    configs: dict[str, ml_collections.ConfigDict],
    steps_per_call: list[int],
    dataset,
    workdir: pathlib.Path,
    rounds: int,
    num_steps: int = 3000,
    log_every: int = 500,
) -> dict[str, list[float]]:
    """Seconds per training step of each run at each steps-per-call on the core loop: one
    run of `num_steps` per contender and round, timed between its progress lines (every
    `log_every` steps, written once the call's metrics are back from the devices), the first
    interval, which holds the compilation, left out. Contenders are interleaved within each
    round, so a machine whose speed drifts slows them alike. Wall and process CPU seconds
    (all threads): on a machine shared with other jobs the CPU time is the steadier measure
    of the work a step costs.
    Returns {"<run> x<steps per call> wall|cpu": [median over a run's intervals, per round]}.
    """
    train_only = data_lib.Dataset({"train": dataset["train"]})  # no evaluation to time
    times: dict[str, list[float]] = {}
    say = metrics_lib.say
    for round_ in range(rounds):
        for run, config in configs.items():
            for count in steps_per_call:
                family = dataclasses.replace(
                    vae.family_for(config, train_only).as_family(), report=None
                )
                timed = config.copy_and_resolve_references()
                timed.num_steps, timed.steps_per_call = num_steps, count
                timed.log_every, timed.checkpoint.every = log_every, num_steps
                stamps = []

                def stamp(line: str, stamps: list = stamps) -> None:
                    if line.startswith("step "):
                        stamps.append((time.perf_counter(), time.process_time()))
                    say(line)

                run_dir = workdir / f"round{round_}_{run}_x{count}"
                with mock.patch.object(metrics_lib, "say", stamp):
                    loop_lib.train_and_evaluate(timed, run_dir, family, train_only)
                shutil.rmtree(run_dir)
                intervals = np.diff(np.array(stamps), axis=0)[1:] / log_every
                for clock, name in enumerate(("wall", "cpu")):
                    per_step = float(np.median(intervals[:, clock]))
                    times.setdefault(f"{run} x{count} {name}", []).append(per_step)
                    say(f"round {round_} {run} x{count}: {per_step * 1e3:.2f} ms/step {name}")
    return times


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    schedule = FLAGS.schedule
    workdir = pathlib.Path(FLAGS.workdir or f"runs/iwae_batched/{schedule}")
    data_dir = pathlib.Path(FLAGS.data_dir) if FLAGS.data_dir else rep.REPO.parent / "shared/data"
    configs = run_configs(schedule, data_dir)
    if FLAGS.steps_per_call:
        for config in configs.values():
            config.steps_per_call = FLAGS.steps_per_call
    dataset = load_images(next(iter(configs.values())).data)
    if FLAGS.time_steps_per_call:
        counts = [int(c) for c in FLAGS.time_steps_per_call]
        chosen = {run: configs[run] for run in FLAGS.time_runs}
        times = time_steps(chosen, counts, dataset, workdir / "step_time", FLAGS.rounds)
        (workdir / "step_time.json").write_text(json.dumps(times, indent=1))
        for name, values in times.items():
            ms = np.array(values) * 1e3
            metrics_lib.say(
                f"{name}: {np.median(ms):.2f} ms/step [{ms.min():.2f}-{ms.max():.2f}] over "
                f"{len(ms)} rounds"
            )
        return
    summaries = {}
    for members in groups(configs).values():
        summaries.update(train_group(members, dataset, workdir))
    if len(summaries) < len(configs):
        metrics_lib.say("preempted: relaunch the same command to resume")
        return
    replication, _ = rep.load(_NAME)
    rows = rep.check(replication, summaries, schedule)
    (workdir / "result.json").write_text(json.dumps({"rows": rows}, indent=1))
    for row in rows:
        metrics_lib.say(f"{row['label']}: ours {row['ours']:.2f}, published {row['published']}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
