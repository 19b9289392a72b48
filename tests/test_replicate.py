"""The replication registry, its tolerance check, `./launch.sh replicate` end to end and the
report."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from genjax_lab.core import replication as rep
from tests.helpers import REPO

ROW = rep.Row(label="nll", metric="nll", published=86.0, tolerance={"quick": 1.0}, better="lower")


@pytest.mark.parametrize(
    "ours, schedule, status",
    [
        (86.5, "quick", "pass"),
        (87.5, "quick", "fail"),
        (80.0, "quick", "pass"),
        (87.5, "tiny", "unchecked"),
    ],
)
def test_row_status_follows_tolerance_and_direction(ours, schedule, status):
    replication = rep.Replication(experiment="vae", paper="p", estimator="e", rows=(ROW,))
    [record] = rep.check(replication, {"main": {"nll": ours}}, schedule)
    assert record["status"] == status
    assert record["gap"] == pytest.approx(ours - 86.0)


@pytest.mark.parametrize(
    "ours, schedule, verdict",
    [
        (86.5, "full", "replicated"),
        (80.0, "full", "replicated"),
        (88.0, "full", "not replicated, gap +2"),
        # A quick row within its (loose) tolerance is still only a smoke test.
        (86.5, "quick", "smoke: pipeline runs, gap +0.5"),
        (123.7, "quick", "smoke: fails its pipeline check, gap +37.7"),
        (87.5, "tiny", "smoke: pipeline runs, gap +1.5"),
    ],
)
def test_only_the_paper_schedule_within_its_uncertainty_is_replicated(ours, schedule, verdict):
    row = rep.Row(
        label="nll",
        metric="nll",
        published=86.0,
        tolerance={"quick": 1.0, "full": 1.0},
        better="lower",
    )
    replication = rep.Replication(experiment="vae", paper="p", estimator="e", rows=(row,))
    [record] = rep.check(replication, {"main": {"nll": ours}}, schedule)
    assert record["verdict"] == verdict
    assert record["schedule"] == schedule


def _runs_a_and_b(tolerance_a: dict, tolerance_b: dict) -> rep.Replication:
    """Two runs, a and b, each with one row reading its "nll" against a published 1.0."""
    return rep.Replication(
        experiment="vae",
        paper="p",
        estimator="e",
        runs=("a", "b"),
        rows=(
            rep.Row("a", "nll", 1.0, tolerance_a, run="a"),
            rep.Row("b", "nll", 1.0, tolerance_b, run="b"),
        ),
    )


def test_missing_metric_fails_and_untrained_run_is_skipped():
    replication = _runs_a_and_b({"quick": 1.0}, {"quick": 1.0})
    a, b = rep.check(replication, {"a": {"other": 1.0}}, "quick")
    assert (a["status"], a["ours"]) == ("fail", None)
    assert a["verdict"] == "no number: the run failed"
    assert b["status"] == "skipped"
    assert b["verdict"] == "not run on this schedule"
    # Left out by --runs, where the schedule trains it: not started, and how to start it.
    _, b = rep.check(replication, {"a": {"nll": 1.0}}, "quick", not_started=("b",))
    assert b["status"] == "skipped"
    assert b["verdict"] == "not started: `--runs=b` trains it"


def test_runs_left_out_keep_what_an_earlier_invocation_left(tmp_path):
    """`--runs=b` after `--runs=a`: a's finished summary and c's resumable checkpoint stay
    in the rows; only a run with neither is not started."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "summary.json").write_text(json.dumps({"nll": 1.2}))
    (tmp_path / "c" / "checkpoints" / "120").mkdir(parents=True)
    (tmp_path / "c" / rep.RUN_STAMP).write_text(json.dumps({"exit_code": 0}))
    summaries, stopped = rep.earlier_runs(tmp_path, ("a", "c", "d"))
    assert summaries == {"a": {"nll": 1.2}} and stopped == {"c": 120}


def test_a_reading_the_schedule_does_not_check_may_be_absent():
    replication = rep.Replication(
        experiment="vae",
        paper="p",
        estimator="e",
        rows=(
            rep.Row("checked", "nll", 1.0, {"quick": 1.0}),
            rep.Row("full only", "raise", 1.0, {"full": 1.0}),
        ),
    )
    checked, full_only = rep.check(replication, {"main": {"nll": 1.5}}, "quick")
    assert (checked["status"], full_only["status"]) == ("pass", "skipped")
    assert full_only["verdict"] == "not run on this schedule"
    # A run that failed fails every row; on the schedule that checks it, an absent reading fails.
    assert [r["status"] for r in rep.check(replication, {"main": None}, "quick")] == ["fail"] * 2
    _, absent = rep.check(replication, {"main": {"nll": 1.5}}, "full")
    assert absent["status"] == "fail"


def test_a_run_stopped_to_resume_is_in_progress_not_failed(tmp_path):
    """A preempted run (exit 0, its checkpoint saved, no summary yet) leaves its rows "in
    progress" with the step the relaunch resumes from; a run that crashed still fails."""
    replication = _runs_a_and_b({"full": 1.0}, {})
    a, b = rep.check(replication, {"a": None, "b": None}, "full", stopped={"a": 55_101})
    assert (a["status"], a["ours"]) == (rep.IN_PROGRESS, None)
    assert a["verdict"] == "in progress: stopped at step 55,101; relaunch to resume"
    assert (b["status"], b["verdict"]) == ("fail", "no number: the run failed")

    for name, code, steps in (
        ("preempted", 0, (500, 1000)),
        ("crashed", 1, (500,)),
        ("new", 0, ()),
    ):
        workdir = tmp_path / name
        for step in steps:
            (workdir / "checkpoints" / str(step)).mkdir(parents=True)
        (workdir / "checkpoints" / "1500.orbax-checkpoint-tmp-3").mkdir(parents=True)
        (workdir / rep.RUN_STAMP).write_text(json.dumps({"exit_code": code}))
    assert rep.stopped_at(tmp_path / "preempted") == 1000
    assert rep.stopped_at(tmp_path / "crashed") is None  # a crash is a failure
    assert rep.stopped_at(tmp_path / "new") is None  # killed before its first save
    assert rep.stopped_at(tmp_path / "never_launched") is None


def test_config_argument_names_schedule_and_run():
    assert rep.parse_arg("quick") == ("main", "quick")
    assert rep.parse_arg("k5,full", runs=("k1", "k5")) == ("k5", "full")
    with pytest.raises(ValueError, match="schedule must be one of"):
        rep.parse_arg("fast")
    with pytest.raises(ValueError, match="run must be one of"):
        rep.parse_arg("k50,quick", runs=("k1",))


def test_every_registered_replication_loads_with_a_tiny_config():
    assert set(rep.names()) >= {
        "iwae_table1",
        "gan_parzen",
        "rbm_ais",
        "dbm_ais",
        "lda_bars",
        "hmm_casino",
        "fsdd_digits",
        "spam_nb",
        "ng_jordan",
    }  # the names issue #8 fixes
    for name in rep.names():
        replication, module = rep.load(name)
        assert replication.rows, name
        assert module.__doc__ and "./launch.sh replicate" in module.__doc__, name
        for run in rep.runs_for(replication, module, "tiny"):
            assert module.get_config(replication.config_arg(run, "tiny")) is not None


def _replicate(tmp_path: pathlib.Path, registry: pathlib.Path) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        VIRTUAL_ENV=sys.prefix,
        XLA_FLAGS="",
        JAX_PLATFORMS="cpu",
        TFDS_DATA_DIR=str(tmp_path / "tfds"),
    )
    env.pop("CONDA_PREFIX", None)
    command = [
        str(REPO / "launch.sh"),
        "replicate",
        "rbm_ais",
        "--schedule=tiny",
        f"--registry={registry}",
        f"--workdir={tmp_path / 'runs'}",
        f"--report={tmp_path / 'results.md'}",
        "--readme=",
    ]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def _registry_with(tmp_path: pathlib.Path, published: float) -> pathlib.Path:
    """A copy of rbm_ais whose tiny schedule is checked against `published` within 1 nat."""
    source = (rep.REGISTRY / "rbm_ais.py").read_text()
    # The first row (the published number); the RAISE readings' rows stay unchecked.
    edited = source.replace("published=-86.34", f"published={published!r}", 1).replace(
        'tolerance={"quick"', 'tolerance={"tiny": 1.0, "quick"'
    )
    assert edited.count(repr(published)) == 1 and '"tiny": 1.0' in edited
    registry = tmp_path / "registry"
    registry.mkdir(exist_ok=True)
    (registry / "rbm_ais.py").write_text(edited)
    return registry


def test_replicate_end_to_end_fails_on_a_wrong_published_number(tmp_path):
    wrong = _replicate(tmp_path, _registry_with(tmp_path, published=1000.0))
    assert wrong.returncode == 1, wrong.stdout + wrong.stderr
    assert "rbm_ais: FAIL" in wrong.stdout
    result = json.loads((tmp_path / "runs/tiny/rbm_ais/result.json").read_text())
    row, *readings = result["rows"]
    assert row["status"] == "fail" and row["published"] == 1000.0
    assert [r["status"] for r in readings] == ["skipped", "skipped"]  # RAISE: full only
    report = (tmp_path / "results.md").read_text()
    assert "| rbm_ais | tiny | RBM 500 hidden, CD-25: test log p(v) | 1000 |" in report
    assert "smoke: fails its pipeline check" in report
    assert (tmp_path / "figures" / "rbm_ais").is_dir()

    # The same run checked against its own number passes, without training again.
    right = _replicate(tmp_path, _registry_with(tmp_path, published=round(row["ours"], 1)))
    assert right.returncode == 0, right.stdout + right.stderr
    assert "done before" in right.stdout
    row, *_ = json.loads((tmp_path / "runs/tiny/rbm_ais/result.json").read_text())["rows"]
    assert row["status"] == "pass"
    assert "| pass |" in (tmp_path / "results.md").read_text()


def test_runs_flag_refuses_a_run_the_replication_does_not_have(tmp_path):
    """--runs trains a subset of a replication's runs (the paper-grade IWAE rows, one at a
    time); a name none of the selected replications has is refused before anything runs."""
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "experiments" / "replicate.py"),
            "iwae_table1",
            "--schedule=tiny",
            "--runs=vae_k1,vae_k7",
            f"--workdir={tmp_path / 'runs'}",
            "--report=",
            "--readme=",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    said = result.stdout + result.stderr
    assert "--runs: no run ['vae_k7'] in iwae_table1" in said
    assert "iwae_k5" in said and not (tmp_path / "runs").exists()
