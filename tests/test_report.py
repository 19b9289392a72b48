"""docs/results.md and the README headline: each part is regenerated from its own result.json
files, and a part with none behind it in this run is kept, not emptied (`./launch.sh bench`
alone on a fresh clone must not erase the replication rows)."""

import json
import pathlib

from genjax_lab import report


def _replication(root: pathlib.Path, ours: float, schedule: str = "quick") -> None:
    """A result.json of replication `demo` under root/<schedule>/demo/, written before rows
    carried verdicts (the report computes them)."""
    row = {
        "label": "row A",
        "published": 1.0,
        "ours": ours,
        "gap": ours - 1.0,
        "tolerance": 0.5,
        "better": "",
        "status": "pass" if abs(ours - 1.0) <= 0.5 else "fail",
        "metric": "a",
    }
    result = {
        "name": "demo",
        "paper": "A paper",
        "estimator": "e",
        "schedule": schedule,
        "hardware": "cpu",
        "wall_s": 1.0,
        "command": "c",
        "runs": {},
        "rows": [row],
        "passed": row["status"] == "pass",
    }
    (root / schedule / "demo").mkdir(parents=True)
    (root / schedule / "demo" / "result.json").write_text(json.dumps(result))


def _benchmark(root: pathlib.Path, speedup: float) -> None:
    record = {
        "name": "step",
        "ours_s": 1.0,
        "reference": "lib",
        "reference_version": "1",
        "reference_s": speedup,
        "speedup": speedup,
    }
    (root / "demo").mkdir(parents=True)
    (root / "demo" / "result.json").write_text(
        json.dumps(
            {"name": "demo", "records": [record], "command": "b", "wall_s": 2.0, "hardware": "cpu"}
        )
    )


def test_a_part_without_results_is_kept_from_the_previous_report(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.README_BEGIN}\n{report.README_END}\nrest\n")
    path, empty = tmp_path / "docs" / "results.md", tmp_path / "empty"
    _replication(tmp_path / "rep", ours=1.2)
    _benchmark(tmp_path / "bench1", speedup=3.0)
    report.write(
        path, replicate_root=tmp_path / "rep", bench_root=tmp_path / "bench1", readme=readme
    )
    assert (
        "| demo | quick | row A | 1 | 1.2 |" in path.read_text() and "| 3.00x |" in path.read_text()
    )

    _benchmark(tmp_path / "bench2", speedup=5.0)  # bench alone: the replication rows stay
    report.write(path, replicate_root=empty, bench_root=tmp_path / "bench2", readme=readme)
    text, headline = path.read_text(), readme.read_text()
    assert (
        "| demo | quick | row A | 1 | 1.2 |" in text
        and "| 5.00x |" in text
        and "| 3.00x |" not in text
    )
    assert "| demo | quick | row A | 1 | 1.2 | 0.2 | smoke: pipeline runs, gap +0.2 |" in headline
    assert "| demo | step | lib | 5.00x |" in headline
    assert headline.startswith("intro\n") and headline.endswith(f"{report.README_END}\nrest\n")

    _replication(tmp_path / "rep2", ours=1.4)  # replicate alone: the benchmark rows stay
    report.write(path, replicate_root=tmp_path / "rep2", bench_root=empty, readme=readme)
    text, headline = path.read_text(), readme.read_text()
    assert (
        "| demo | quick | row A | 1 | 1.4 |" in text
        and "| 1.2 |" not in text
        and "| 5.00x |" in text
    )
    assert "| demo | step | lib | 5.00x |" in headline


def test_the_headline_shows_the_longest_schedule_and_replicates_only_on_full(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"{report.README_BEGIN}\n{report.README_END}\n")
    path, root = tmp_path / "results.md", tmp_path / "rep"
    _replication(root, ours=1.2, schedule="quick")  # within its tolerance: still only a smoke test
    report.write(path, replicate_root=root, bench_root=tmp_path / "none", readme=readme)
    assert "smoke test (quick schedule): pipeline runs, nothing replicated yet" in path.read_text()
    assert (
        "| demo | quick | row A | 1 | 1.2 | 0.2 | smoke: pipeline runs, gap +0.2 |"
        in readme.read_text()
    )

    _replication(root, ours=1.3, schedule="full")
    report.write(path, replicate_root=root, bench_root=tmp_path / "none", readme=readme)
    headline = readme.read_text()
    assert "| demo | full | row A | 1 | 1.3 | 0.3 | replicated |" in headline
    assert "| quick |" not in headline  # the longest schedule run stands for the replication
    assert "### demo (full): replicated" in path.read_text()
    assert "### demo (quick): smoke test" in path.read_text()  # both runs stay in the report

    (root / "full" / "demo" / "result.json").unlink()
    _replication(root / "again", ours=2.0, schedule="full")
    report.write(path, replicate_root=root / "again", bench_root=tmp_path / "none", readme=readme)
    assert "| demo | full | row A | 1 | 2 | 1 | not replicated, gap +1 |" in readme.read_text()
    assert "### demo (full): not replicated" in path.read_text()


def test_cold_start_records_get_their_own_table(tmp_path):
    def times(median):
        return {"median": median, "min": median * 0.9, "max": median * 1.2}

    record = {
        "name": "cold gmm_full: fresh process to fitted model",
        "ours_s": 1.5,
        "reference": "scikit-learn",
        "reference_version": "1.9",
        "reference_s": 1.0,
        "speedup": 1 / 1.5,
        "times": {
            "first": times(3.0),
            "second": times(1.5),
            "reference": times(1.0),
            "first_fit": times(1.2),
            "second_fit": times(0.2),
            "reference_fit": times(0.05),
        },
        "second_within_3x": True,
        "first_fit_within_1s": False,
    }
    (tmp_path / "bench" / "cold").mkdir(parents=True)
    (tmp_path / "bench" / "cold" / "result.json").write_text(
        json.dumps(
            {
                "name": "cold",
                "records": [record],
                "command": "./launch.sh bench cold",
                "wall_s": 9.0,
                "hardware": "cpu",
            }
        )
    )
    path = tmp_path / "results.md"
    report.write(path, replicate_root=tmp_path / "none", bench_root=tmp_path / "bench", readme=None)
    text = path.read_text()
    assert "### Cold start" in text
    assert (
        "| gmm_full | 3 (2.7-3.6) [1.2] | 1.5 (1.35-1.8) [0.2] | 1 (0.9-1.2) [0.05] | "
        "scikit-learn 1.9 | 1.50x | met / missed |"
    ) in text


def test_cold_benchmark_times_a_fresh_process():
    import os

    from benchmarks import cold

    script = "start = time.perf_counter()\ntime.sleep(0.2)\nsum(range(10**7))\n"
    wall, fit, cpu = cold.run_script(script, dict(os.environ))
    assert 0.2 <= fit < wall
    assert 0.0 < cpu  # the child's CPU (the sum, the interpreter's start), not the sleep
    assert {"gmm_iris", "naive_bayes", "lda"} <= set(cold.CASES)


def test_benchmark_families_not_rerun_keep_their_rows(tmp_path):
    """In docs/results.md and in the README headline alike."""
    path, readme = tmp_path / "results.md", tmp_path / "README.md"
    readme.write_text(f"{report.README_BEGIN}\n{report.README_END}\n")
    for name, speedup in (("alpha", 2.0), ("beta", 3.0)):
        _benchmark(tmp_path / "all", speedup)
        (tmp_path / "all" / "demo").rename(tmp_path / "all" / name)
        result = json.loads((tmp_path / "all" / name / "result.json").read_text())
        (tmp_path / "all" / name / "result.json").write_text(json.dumps({**result, "name": name}))
    report.write(path, replicate_root=tmp_path / "none", bench_root=tmp_path / "all", readme=readme)
    _benchmark(tmp_path / "one", 5.0)  # only beta rerun
    (tmp_path / "one" / "demo").rename(tmp_path / "one" / "beta")
    result = json.loads((tmp_path / "one" / "beta" / "result.json").read_text())
    (tmp_path / "one" / "beta" / "result.json").write_text(json.dumps({**result, "name": "beta"}))
    report.write(path, replicate_root=tmp_path / "none", bench_root=tmp_path / "one", readme=readme)
    text = path.read_text()
    assert "| alpha | step | 1 | lib 1 | 2 | 2.00x |" in text
    assert "| beta | step | 1 | lib 1 | 5 | 5.00x |" in text and "3.00x" not in text
    assert text.count("- alpha: `b`") == 1 and text.count("- beta: `b`") == 1
    headline = readme.read_text()
    assert "| alpha | step | lib | 2.00x |\n| beta | step | lib | 5.00x |" in headline
    assert "3.00x" not in headline and headline.count(report._BENCH_HEADLINE) == 1


def test_each_run_gets_its_learning_curve_from_its_logged_metrics(tmp_path):
    """The report draws every metric a run logged against step; a relaunch's second record of
    a step replaces the first, and a line cut by a kill is skipped."""
    workdir = tmp_path / "run"
    workdir.mkdir()
    lines = [
        {"step": 10, "split": "train", "loss": 3.0},
        {"step": 20, "split": "train", "loss": 2.0},
        {"step": 20, "split": "test", "nll": 90.0},
        {"step": 20, "split": "train", "loss": 1.5},  # the relaunch after a kill at step 25
    ]
    text = "\n".join(json.dumps(line) for line in lines) + '\n{"step": 30, "spl'
    (workdir / "metrics.jsonl").write_text(text)
    assert report.learning_curve_records(workdir) == [
        {"step": 10, "train loss": 3.0},
        {"step": 20, "test nll": 90.0},
        {"step": 20, "train loss": 1.5},
    ]
    root = tmp_path / "rep"
    _replication(root, ours=1.2, schedule="full")
    result_path = root / "full" / "demo" / "result.json"
    result = json.loads(result_path.read_text())
    result["runs"] = {"main": {"ok": True, "wall_s": 1.0, "workdir": str(workdir), "command": "c"}}
    result_path.write_text(json.dumps(result))
    path = tmp_path / "docs" / "results.md"
    report.write(path, replicate_root=root, bench_root=tmp_path / "none", readme=None)
    figure = path.parent / "figures" / "demo" / "full" / "main-learning_curve.png"
    assert figure.stat().st_size > 0
    assert "(figures/demo/full/main-learning_curve.png)" in path.read_text()
    assert report.learning_curve_records(tmp_path / "no_run") == []


def test_a_paper_run_in_progress_is_listed_beside_the_finished_shorter_one(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"{report.README_BEGIN}\n{report.README_END}\n")
    path, root = tmp_path / "results.md", tmp_path / "rep"
    _replication(root, ours=1.2, schedule="quick")
    _replication(root, ours=0.0, schedule="full")
    result_path = root / "full" / "demo" / "result.json"
    result = json.loads(result_path.read_text())
    verdict = "in progress: stopped at step 55,101; relaunch to resume"
    result["rows"][0].update(ours=None, gap=None, status="in progress", verdict=verdict)
    result_path.write_text(json.dumps(result))
    report.write(path, replicate_root=root, bench_root=tmp_path / "none", readme=readme)
    headline = readme.read_text()
    assert "| demo | quick | row A | 1 | 1.2 | 0.2 | smoke: pipeline runs, gap +0.2 |" in headline
    assert f"|  | full | row A | 1 | — | — | {verdict} |" in headline
    assert "### demo (full): in progress (full schedule): relaunch the command to resume" in (
        path.read_text()
    )
    # A paper run of some of its runs (replicate --runs): its other rows are skipped, and it
    # still yields to the finished shorter run.
    result["rows"].append(dict(result["rows"][0], label="row B", status="skipped"))
    result_path.write_text(json.dumps(result))
    report.write(path, replicate_root=root, bench_root=tmp_path / "none", readme=readme)
    assert "| demo | quick | row A | 1 | 1.2 | 0.2 |" in readme.read_text()
