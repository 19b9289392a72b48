"""Shared pieces of the benchmark scripts: timing and the result records."""
import json
import pathlib
import statistics
import tempfile
import time
from collections.abc import Callable


def median_seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of `fn()` over `repeats` calls after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def record(name: str, ours_s: float, reference: str, reference_version: str, reference_s: float, **extra) -> dict:
    """One measurement: speedup = reference time / our time (above 1: we are faster)."""
    return {
        "name": name,
        "ours_s": ours_s,
        "reference": reference,
        "reference_version": reference_version,
        "reference_s": reference_s,
        "speedup": reference_s / ours_s,
        **extra,
    }


def report(records: list[dict], out: str | None) -> None:
    """Prints a table and writes `{"records": [...]}` to `out` when given."""
    print(f"{'measurement':48s} {'ours (s)':>10s} {'reference':>22s} {'ref (s)':>10s} {'speedup':>8s}")
    for r in records:
        reference = f"{r['reference']} {r['reference_version']}"
        print(f"{r['name']:48s} {r['ours_s']:10.4f} {reference:>22s} {r['reference_s']:10.4f} {r['speedup']:7.2f}x")
    if out:
        pathlib.Path(out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(out).write_text(json.dumps({"records": records}, indent=2))


def harness_seconds_per_step(make_family: Callable, config, dataset, steps: int) -> float:
    """The whole harness per step: runs of N and 2N steps, so start-up and compilation
    cancel in the difference. `make_family(config, dataset)` gives the family adapter."""
    from genjax_lab.core.loop import train_and_evaluate

    times = []
    for n in (steps, 2 * steps):
        config.num_steps = n
        with tempfile.TemporaryDirectory() as workdir:
            start = time.perf_counter()
            train_and_evaluate(config, workdir, make_family(config, dataset).as_family(), dataset)
            times.append(time.perf_counter() - start)
    return (times[1] - times[0]) / steps


def seconds_per_step(run: Callable[[int], object], steps: int) -> float:
    """Wall time of `run(steps)` divided by `steps` (`run` blocks until done)."""
    start = time.perf_counter()
    run(steps)
    return (time.perf_counter() - start) / steps
