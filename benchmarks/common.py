"""Shared pieces of the benchmark scripts: timing and the result records."""
import json
import pathlib
import statistics
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
