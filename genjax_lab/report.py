"""The results report, docs/results.md, generated from the `result.json` files that
`./launch.sh replicate` and `./launch.sh bench` leave in their workdirs; never edited by hand.
The README's headline rows (between its `results` markers) are regenerated with it. A part
with no result.json files behind it in this run (the replications after `./launch.sh bench`
alone on a fresh clone, or the benchmarks after `replicate`) is kept from the previous report
and headline rather than emptied; so are the rows of the benchmark families not rerun (and the
cold-start table when `cold` is not rerun)."""

import json
import math
import os
import pathlib
import platform
import re
import shutil

from genjax_lab.core import plots as plots_lib
from genjax_lab.core import replication as rep

REPO = pathlib.Path(__file__).resolve().parents[1]
README_BEGIN, README_END = "<!-- results:begin -->", "<!-- results:end -->"


def hardware() -> str:
    """CPU model, cores, and the JAX backend's devices, e.g.
    'AMD EPYC 7B13, 2 cores; jax cpu x1'."""
    model = platform.processor() or platform.machine()
    cpuinfo = pathlib.Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        model = names[0] if names else model
    import jax

    devices = jax.devices()
    return (
        f"{model}, {os.cpu_count()} cores; jax {jax.__version__} {devices[0].platform} "
        f"x{len(devices)} ({devices[0].device_kind})"
    )


def _number(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and math.isinf(value):
        return "∞"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _tolerance(row: dict) -> str:
    if row["tolerance"] is None:
        return "not checked on this schedule"
    tolerance = "± " + _number(row["tolerance"])
    return tolerance + {"lower": ", lower passes", "higher": ", higher passes"}.get(
        row["better"], ""
    )


def row_line(row: dict) -> str:
    """'pass  IWAE, 1 layer, k=50: ours 85.9, published 84.78 (gap 1.12, tolerance ± 3)'."""
    return (
        f"{row['status']:7s} {row['label']}: ours {_number(row['ours'])}, "
        f"published {_number(row['published'])} "
        f"(gap {_number(row['gap'])}, tolerance {_tolerance(row)})"
    )


def _load(root: pathlib.Path) -> list[dict]:
    return (
        [json.loads(p.read_text()) for p in sorted(root.glob("*/result.json"))]
        if root.is_dir()
        else []
    )


def _schedule_rank(result: dict) -> int:
    return rep.SCHEDULES.index(result["schedule"]) if result["schedule"] in rep.SCHEDULES else -1


def _load_replications(root: pathlib.Path) -> list[dict]:
    """Every replication result under root/<schedule>/<name>/, by name, the paper's schedule
    first; each row carries its verdict (computed for results written before verdicts)."""
    results = (
        [json.loads(p.read_text()) for p in root.glob("*/*/result.json")] if root.is_dir() else []
    )
    for result in results:
        for row in result["rows"]:
            row.setdefault("verdict", rep.verdict(row["status"], row["gap"], result["schedule"]))
    return sorted(results, key=lambda r: (r["name"], -_schedule_rank(r)))


def _in_progress(result: dict) -> bool:
    """No row has a number yet: some wait on a run that stopped early (preempted) and resumes
    when relaunched, the rest on runs not trained yet (`replicate --runs`)."""
    statuses = {row["status"] for row in result["rows"]}
    return rep.IN_PROGRESS in statuses and statuses <= {rep.IN_PROGRESS, "skipped"}


def _best_per_replication(results: list[dict]) -> list[dict]:
    """The result of the longest schedule run of each replication (full, then quick, tiny)
    with a number to show: a paper-schedule run still in progress yields to a finished
    shorter one (the headline lists it beside)."""
    best = {}
    for result in results:
        rank = (not _in_progress(result), _schedule_rank(result))
        held = best.get(result["name"])
        if held is None or rank > (not _in_progress(held), _schedule_rank(held)):
            best[result["name"]] = result
    return [best[name] for name in sorted(best)]


def replication_verdict(result: dict) -> str:
    """A replication's verdict in words: replicated only when every row is."""
    verdicts = [row["verdict"] for row in result["rows"]]
    replicated = verdicts.count("replicated")
    if _in_progress(result):
        return f"{rep.IN_PROGRESS} ({result['schedule']} schedule): relaunch the command to resume"
    if result["schedule"] != rep.PAPER_SCHEDULE:
        return f"smoke test ({result['schedule']} schedule): pipeline runs, nothing replicated yet"
    if replicated == len(verdicts):
        return "replicated"
    return f"replicated {replicated} of {len(verdicts)} rows" if replicated else "not replicated"


def _run_figures(workdir: pathlib.Path) -> list[pathlib.Path]:
    """The PNGs at the top of a workdir, and the newest of each kind the training loop wrote
    to images/ (<kind>_<step>.png)."""
    newest = {}
    for png in sorted((workdir / "images").glob("*.png")):
        newest[png.stem.rpartition("_")[0] or png.stem] = png  # sorted: the last is the newest step
    return sorted(workdir.glob("*.png")) + list(newest.values())


def learning_curve_records(workdir: pathlib.Path) -> list[dict]:
    """The run's logged metrics (metrics.jsonl) as {"step", "<split> <name>": value} records,
    one a (split, step): a relaunch after a kill logs again the steps since its checkpoint, and
    the later record is the one the finished run kept."""
    path = workdir / "metrics.jsonl"
    if not path.is_file():
        return []
    latest = {}
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a kill mid-write
            continue
        split = record.get("split", "train")
        values = {
            f"{split} {name}": float(value)
            for name, value in record.items()
            if name not in ("step", "split") and isinstance(value, (int, float))
        }
        if "step" in record and values:
            latest[(int(record["step"]), split)] = values
    return [{"step": step, **values} for (step, _), values in sorted(latest.items())]


def _copy_figures(result: dict, figures: pathlib.Path) -> list[pathlib.Path]:
    """Copies each run's figures to figures/<name>/<schedule>/<run>-<file>.png (one folder a
    schedule: a report of tiny and quick runs keeps both) and draws its learning curve
    (<run>-learning_curve.png, every logged metric against step); returns the figures."""
    target = figures / result["name"] / result["schedule"]
    shutil.rmtree(target, ignore_errors=True)
    copies = []
    for run, info in result["runs"].items():
        workdir = pathlib.Path(info["workdir"])
        records = learning_curve_records(workdir)
        if records:
            target.mkdir(parents=True, exist_ok=True)
            copies.append(target / f"{run}-learning_curve.png")
            plots_lib.plot_metrics(copies[-1], records)
        for png in _run_figures(workdir):
            target.mkdir(parents=True, exist_ok=True)
            copies.append(target / f"{run}-{png.name}")
            shutil.copyfile(png, copies[-1])
    return copies


def _replication_table(results: list[dict]) -> list[str]:
    lines = [
        "| replication | schedule | row | published | ours | gap | tolerance | check | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for result in results:
        for row in result["rows"]:
            lines.append(
                f"| {result['name']} | {result['schedule']} | {row['label']} | "
                f"{_number(row['published'])} | {_number(row['ours'])} | {_number(row['gap'])} | "
                f"{_tolerance(row)} | {row['status']} | {row['verdict']} |"
            )
    return lines


def _replication_sections(results: list[dict], report_dir: pathlib.Path) -> list[str]:
    lines = []
    for result in results:
        lines += [
            f"### {result['name']} ({result['schedule']}): {replication_verdict(result)}",
            "",
            f"- pipeline check: {'PASS' if result['passed'] else 'FAIL'}",
            f"- paper: {result['paper']}",
            f"- estimator: {result['estimator']}",
            f"- schedule: `{result['schedule']}` (its definition: the docstring of "
            f"`experiments/replications/{result['name']}.py`)",
            f"- hardware: {result['hardware']}",
            f"- wall time: {result['wall_s']:.0f} s (training and evaluation, summed over runs)",
            f"- command: `{result['command']}`",
        ]
        if result.get("caveat"):
            lines.append(f"- caveat: {result['caveat']}")
        failed = [run for run, info in result["runs"].items() if not info["ok"]]
        if failed:
            lines.append(f"- runs that failed (see their .log): {', '.join(failed)}")
        for figure in _copy_figures(result, report_dir / "figures"):
            lines += ["", f"![{result['name']} {figure.stem}]({figure.relative_to(report_dir)})"]
        lines.append("")
    return lines


_COLD = "### Cold start"
_BENCH_HEADLINE = "| benchmark | measurement | reference | speedup (its time / ours) |"
_BENCH_TABLE_HEADER = "| family | measurement | ours (s) | reference | reference (s) | speedup |"


def _benchmark_rows(benchmarks: list[dict]) -> list[tuple[str, str]]:
    return [
        (
            bench["name"],
            f"| {bench['name']} | {r['name']} | {r['ours_s']:.4g} | {r['reference']} "
            f"{r['reference_version']} | {r['reference_s']:.4g} | {r['speedup']:.2f}x |",
        )
        for bench in benchmarks
        for r in bench["records"]
    ]


def _kept_benchmarks(
    previous: str, rerun: set[str]
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(table rows, command lines) of the previous report's benchmark families not in `rerun`,
    each as (family, line): `./launch.sh bench gmm` alone keeps the other families' rows."""
    part = _previous_part(previous, _BENCHMARKS, None) or []
    start = part.index(_BENCH_TABLE_HEADER) + 2 if _BENCH_TABLE_HEADER in part else len(part)
    rows, commands = [], []
    for line in part[start:]:
        if not line.startswith("| "):
            break
        rows.append((line[2:].split(" | ", 1)[0], line))
    for line in part:
        command = re.match(r"- ([\w-]+): `", line)
        if command:
            commands.append((command.group(1), line))
    return (
        [row for row in rows if row[0] not in rerun],
        [command for command in commands if command[0] not in rerun],
    )


def _range(times: dict) -> str:
    return f"{times['median']:.3g} ({times['min']:.3g}-{times['max']:.3g})"


def _cold_table(benchmarks: list[dict]) -> list[str]:
    """The cold-start records (those with per-process `times`): seconds from a fresh process to
    a fitted model, median (range) over rounds, ours with an empty and a warm compilation cache."""
    records = [r for bench in benchmarks for r in bench["records"] if "times" in r]
    if not records:
        return []
    lines = [
        _COLD,
        "",
        "Seconds from a fresh process to a fitted model (`./launch.sh bench cold`), median",
        "(range) over interleaved rounds; in brackets the part after the imports (data and fit,",
        "compilation included). First process: empty compilation cache; second: the cache the",
        "first left.",
        "Targets: second process within 3x the reference, first process's fit within 1 s.",
        "",
        (
            "| case | first process | second process | reference | reference library | "
            "second / reference | targets (3x, 1 s) |"
        ),
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in records:
        t = r["times"]
        case = r["name"].removeprefix("cold ").split(":")[0]
        targets = " / ".join(
            "met" if r[key] else "missed" for key in ("second_within_3x", "first_fit_within_1s")
        )
        lines.append(
            f"| {case} | {_range(t['first'])} [{t['first_fit']['median']:.3g}] | "
            f"{_range(t['second'])} [{t['second_fit']['median']:.3g}] | "
            f"{_range(t['reference'])} [{t['reference_fit']['median']:.3g}] | "
            f"{r['reference']} {r['reference_version']} | {1 / r['speedup']:.2f}x | "
            f"{targets} |"
        )
    return [*lines, ""]


def _headline(results: list[dict], benchmarks: list[dict]) -> list[str]:
    """Per replication, the longest schedule run: each row's published number, ours, the gap
    and the verdict in words; then one line per benchmark record."""
    lines = [
        "| replication | best schedule run | row | published | ours | gap | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for best in _best_per_replication(results):
        longer = [
            r
            for r in results
            if r["name"] == best["name"] and _schedule_rank(r) > _schedule_rank(best)
        ]
        for result in (best, *longer):
            for index, row in enumerate(result["rows"]):
                name = best["name"] if result is best and index == 0 else ""
                schedule = result["schedule"] if index == 0 else ""
                lines.append(
                    f"| {name} | {schedule} | {row['label']} | {_number(row['published'])} | "
                    f"{_number(row['ours'])} | {_number(row['gap'])} | {row['verdict']} |"
                )
    if benchmarks:
        lines += ["", _BENCH_HEADLINE, "| --- | --- | --- | --- |"]
        for bench in benchmarks:
            lines += [
                f"| {bench['name']} | {r['name']} | {r['reference']} | {r['speedup']:.2f}x |"
                for r in bench["records"]
            ]
    return lines


_REPLICATIONS, _BENCHMARKS = "## Replications", "## Benchmarks"


def _previous_part(text: str, start: str, end: str | None) -> list[str] | None:
    """The lines of `text` from the one starting with `start` up to the one starting with
    `end` (the end of text if None), or None when `text` has no such part."""
    lines = text.splitlines()
    begin = next((i for i, line in enumerate(lines) if line.startswith(start)), None)
    if begin is None:
        return None
    stop = next(
        (i for i, line in enumerate(lines) if end and i > begin and line.startswith(end)),
        len(lines),
    )
    return lines[begin:stop]


def write(
    path: pathlib.Path,
    replicate_root: pathlib.Path,
    bench_root: pathlib.Path = REPO / "runs" / "bench",
    readme: pathlib.Path | None = REPO / "README.md",
) -> None:
    """Writes the report at `path` from the result.json files under the two roots, and the
    headline rows into `readme` between its results markers (when it has them). A root
    without results keeps its part of the previous report and headline."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = path.read_text() if path.is_file() else ""
    results = _load_replications(pathlib.Path(replicate_root))
    benchmarks = _load(pathlib.Path(bench_root))
    schedules = sorted({r["schedule"] for r in results}, key=rep.SCHEDULES.index)
    replications = [
        f"{_REPLICATIONS} (schedules run: {', '.join(schedules) or 'none'})",
        "",
        "Verdicts: a row is **replicated** only on the `full` schedule (the paper's protocol) and",
        "within the paper's own uncertainty (its standard error or, where it gives none, the",
        "spread of reproductions: about 1 nat for the IWAE, RBM and DBM tables, 2 for the GAN",
        "Parzen estimate). A shorter schedule is a **smoke** test: the pipeline runs, and the gap",
        "says how far it got. The check column is the schedule's own pipeline tolerance",
        "(`./launch.sh replicate` exits 1 when it fails); each replication's docstring says why.",
        "",
        *_replication_table(results),
        "",
        *_replication_sections(results, path.parent),
    ]
    if not results:
        replications = _previous_part(previous, _REPLICATIONS, _BENCHMARKS) or replications
    bench_part = [
        _BENCHMARKS,
        "",
        "Speedup = the reference library's time / ours, measured in the same run on the same data",
        "(above 1: we are faster).",
        "",
    ]
    if benchmarks:
        kept_rows, kept_commands = _kept_benchmarks(previous, {b["name"] for b in benchmarks})
        rows = sorted(kept_rows + _benchmark_rows(benchmarks), key=lambda row: row[0])
        commands = sorted(
            kept_commands
            + [
                (
                    b["name"],
                    f"- {b['name']}: `{b['command']}`, {b['wall_s']:.0f} s, {b['hardware']}",
                )
                for b in benchmarks
            ],
            key=lambda command: command[0],
        )
        cold = _cold_table(benchmarks) or _previous_part(previous, _COLD, "- ") or []
        bench_part += [
            _BENCH_TABLE_HEADER,
            "| --- | --- | --- | --- | --- | --- |",
            *(line for _, line in rows),
            "",
            *cold,
            *(line for _, line in commands),
        ]
    else:
        bench_part = _previous_part(previous, _BENCHMARKS, None) or [
            *bench_part,
            "Not run yet: `./launch.sh bench`.",
        ]
    lines = [
        "# Results",
        "",
        # Each parenthesised pair is one line of the page, split only to fit the source width.
        (
            "Generated by `./launch.sh replicate` and `./launch.sh bench` from the `result.json` "
            "files of"
        ),
        (
            "their workdirs (`genjax_lab/report.py`); do not edit by hand. Per-family notes with "
            "longer"
        ),
        (
            "runs and discussion: [vae](vae.md), [boltzmann](boltzmann.md), [gan](gan.md), "
            "[hmm](hmm.md),"
        ),
        "[naive bayes and gmm](naive_bayes.md), [lda](lda.md).",
        "",
        *replications,
        *bench_part,
    ]
    path.write_text("\n".join(lines) + "\n")
    if readme is not None and readme.is_file():
        _write_headline(
            readme,
            _headline(results, benchmarks),
            keep_replications=not results,
        )


def _merged_benchmark_rows(old: list[str], new: list[str]) -> list[str]:
    """The headline's benchmark table (header lines, then one row a record): `new`'s rows with
    the `old` rows of the families `new` lacks, by family."""

    def rows(table: list[str]) -> list[str]:
        return [line for line in table[2:] if line.startswith("| ")]

    def family(row: str) -> str:
        return row[2:].split(" | ", 1)[0]

    rerun = {family(row) for row in rows(new)}
    merged = sorted([row for row in rows(old) if family(row) not in rerun] + rows(new), key=family)
    return [_BENCH_HEADLINE, "| --- | --- | --- | --- |", *merged] if merged else []


def _write_headline(
    readme: pathlib.Path,
    lines: list[str],
    keep_replications: bool = False,
) -> None:
    """Replaces the rows between the README's markers; the replication table (the lines
    before the benchmark table) is kept from the old rows when asked, and the benchmark
    table keeps the old rows of every family `lines` has none of (`./launch.sh bench cold`
    alone keeps the other families' rows, as docs/results.md does)."""
    text = readme.read_text()
    if README_BEGIN not in text or README_END not in text:
        return
    head, rest = text.split(README_BEGIN, 1)
    old, tail = rest.split(README_END, 1)

    def halves(rows: list[str]) -> tuple[list[str], list[str]]:
        cut = rows.index(_BENCH_HEADLINE) if _BENCH_HEADLINE in rows else len(rows)
        return rows[:cut], rows[cut:]

    new_replications, new_benchmarks = halves(lines)
    old_replications, old_benchmarks = halves(old.strip("\n").splitlines())
    if keep_replications:
        new_replications = old_replications
    new_benchmarks = _merged_benchmark_rows(old_benchmarks, new_benchmarks)
    if new_benchmarks and (not new_replications or new_replications[-1] != ""):
        new_replications = [*new_replications, ""]
    rows = [*new_replications, *new_benchmarks]
    readme.write_text(
        head + README_BEGIN + "\n" + "\n".join(rows).strip("\n") + "\n" + README_END + tail
    )
