"""Shared pieces of the benchmark scripts: timing, the result records, and how close a step
comes to the machine (FLOPs from the compiled program, the float32 matmul peak measured in
the same run, and a per-op profile of where the step's time goes)."""

import collections
import gzip
import json
import pathlib
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence


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


def record(
    name: str, ours_s: float, reference: str, reference_version: str, reference_s: float, **extra
) -> dict:
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


def _spread_text(s: dict | None, scale: float = 1.0, unit: str = "") -> str:
    if not s:
        return ""
    return f"{s['median'] * scale:.2f}{unit} [{s['min'] * scale:.2f}-{s['max'] * scale:.2f}]"


def report(records: list[dict], out: str | None) -> None:
    """Prints a table (with the utilisation lines, where a record has them) and writes
    `{"records": [...]}` to `out` when given."""
    print(
        f"{'measurement':48s} {'ours (s)':>10s} {'reference':>22s} {'ref (s)':>10s} {'speedup':>8s}"
    )
    for r in records:
        reference = f"{r['reference']} {r['reference_version']}"
        print(
            f"{r['name']:48s} {r['ours_s']:10.4f} {reference:>22s} "
            f"{r['reference_s']:10.4f} {r['speedup']:7.2f}x"
        )
        if "speedup_spread" in r:
            print(
                f"    per-round speedup, median [min-max] over {r['rounds_count']} rounds: "
                f"{_spread_text(r['speedup_spread'], unit='x')}"
            )
        if "ours_utilisation" in r:
            print(
                f"    peak {_spread_text(r['peak_flops_per_s'], 1e-9, ' GFLOP/s')}; "
                f"ours {r['flops_per_step'] / 1e6:.1f} MFLOP/step, "
                f"{_spread_text(r['ours_flops_per_s'], 1e-9, ' GFLOP/s')}, "
                f"{_spread_text(r['ours_utilisation'], 100, '%')} of the round's peak "
                f"({_spread_text(r['ours_utilisation_of_best_peak'], 100, '%')} of the best); "
                f"reference {r['reference_flops_per_step'] / 1e6:.1f} MFLOP/step, "
                f"{_spread_text(r['reference_utilisation'], 100, '%')} "
                f"({_spread_text(r['reference_utilisation_of_best_peak'], 100, '%')})"
            )
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


# ------------------------------------------------------------------------- the machine's ceiling


def matmul_peak_flops(size: int = 2048, repeats: int = 5) -> float:
    """The float32 matrix-multiply peak, FLOP/s: the best of `repeats` jitted square matmuls.

    Best, not median: the peak is what the cores can do when nothing else runs; the
    interleaved rounds give its spread as the machine's load moves.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = (jnp.asarray(rng.standard_normal((size, size), np.float32)) for _ in range(2))
    matmul = jax.jit(jnp.matmul)
    matmul(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best


def compiled_flops(compiled) -> float:
    """FLOPs of one call of a compiled program (`jax.jit(f).lower(...).compile()`), as XLA's
    cost analysis counts them. A loop body is counted once, whatever its trip count."""
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):  # older JAX: one dict per device program
        cost = cost[0]
    return float(cost["flops"])


def dense_train_flops(
    batch: int, layers: Sequence[tuple[int, int]], input_grad_of_first: bool = False
) -> float:
    """Matmul FLOPs of a forward and backward pass through dense layers [(fan_in, fan_out)]:
    2 * batch * fan_in * fan_out for the forward product, the same for the weight gradient,
    and the same for the input gradient of every layer but the first (unless asked: the
    first layer's input gradient is needed only when the input itself is differentiated)."""
    macs = sum(3 * n_in * n_out for n_in, n_out in layers)
    if not input_grad_of_first:
        macs -= layers[0][0] * layers[0][1]
    return 2.0 * batch * macs


def dense_forward_flops(batch: int, layers: Sequence[tuple[int, int]]) -> float:
    return 2.0 * batch * sum(n_in * n_out for n_in, n_out in layers)


def spread(values: Sequence[float]) -> dict:
    """Median, min and max of per-round values (rounds interleave the contenders)."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def interleaved_rounds(
    contenders: dict[str, Callable[[], float]], num_rounds: int
) -> dict[str, list[float]]:
    """Seconds per step of each contender (`contenders[name]()` measures and returns it),
    in `num_rounds` interleaved rounds, with the float32 matmul peak measured just before
    each contender: the machine is shared and its load moves within a round, so the
    round's peak ('peak') is the best of those samples. Returns the per-round lists."""
    rounds = {"peak": [], **{name: [] for name in contenders}}
    for i in range(num_rounds):
        samples = []
        for name, measure in contenders.items():
            samples.append(matmul_peak_flops())
            rounds[name].append(measure())
        rounds["peak"].append(max(samples))
        print(
            f"round {i}: peak {rounds['peak'][-1] / 1e9:.1f} GFLOP/s, "
            + ", ".join(f"{name} {rounds[name][-1] * 1e3:.2f} ms" for name in contenders),
            flush=True,
        )
    return rounds


def ceiling_fields(
    rounds: dict[str, list[float]], ours: str, reference: str, flops: float, reference_flops: float
) -> dict:
    """The record's fields on speed and the ceiling, from `interleaved_rounds`: the
    per-round ratio reference / ours, and each side's FLOP rate and its share of the
    round's peak ('utilisation') and of the best peak of the whole run ('..._of_best_peak':
    what the cores can do when the machine is quiet)."""
    peaks = rounds["peak"]
    best = max(peaks)
    ours_rate = [flops / s for s in rounds[ours]]
    ref_rate = [reference_flops / s for s in rounds[reference]]
    return {
        "rounds_count": len(peaks),
        "speedup_spread": spread([r / o for r, o in zip(rounds[reference], rounds[ours])]),
        "peak_flops_per_s": spread(peaks),
        "ours_flops_per_s": spread(ours_rate),
        "ours_utilisation": spread([r / p for r, p in zip(ours_rate, peaks)]),
        "ours_utilisation_of_best_peak": spread([r / best for r in ours_rate]),
        "reference_flops_per_s": spread(ref_rate),
        "reference_utilisation": spread([r / p for r, p in zip(ref_rate, peaks)]),
        "reference_utilisation_of_best_peak": spread([r / best for r in ref_rate]),
    }


# ----------------------------------------------------------------------------- where the time goes

_INSTRUCTION = re.compile(
    r"^\s*(?:ROOT )?%([\w.\-]+) = .*?\b(dot|convolution|fusion|custom-call)\("
)
_COMPUTATION = re.compile(r"^%([\w.\-]+) \(")
_CALLS = re.compile(r"calls=%([\w.\-]+)")


def matmul_ops(hlo_text: str) -> set[str]:
    """Names of the compiled program's instructions that multiply matrices: dots and
    convolutions, and fusions or custom calls whose computation contains one."""
    has_matmul, calls, direct = set(), {}, set()
    computation = None
    for line in hlo_text.splitlines():
        if m := _COMPUTATION.match(line) or re.match(r"^ENTRY %([\w.\-]+) \(", line):
            computation = m.group(1)
            continue
        m = _INSTRUCTION.match(line)
        if not m:
            continue
        name, op = m.groups()
        if op in ("dot", "convolution"):
            direct.add(name)
            has_matmul.add(computation)
        elif c := _CALLS.search(line):
            calls[name] = c.group(1)
    return direct | {name for name, called in calls.items() if called in has_matmul}


_SHAPE = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = \w+\[([\d,]*)\]")
_DOT = re.compile(r"= \w+\[([\d,]*)\]\S* dot\(%([\w.\-]+), .*lhs_contracting_dims=\{([\d,]*)\}")


def hlo_matmul_flops(hlo_text: str) -> float:
    """2 * (output elements) * (contracted length), summed over the program's dots: the
    matmul FLOPs the compiled program runs per call (a loop body counted once)."""
    shapes = {
        m.group(1): [int(d) for d in m.group(2).split(",") if d]
        for line in hlo_text.splitlines()
        if (m := _SHAPE.match(line))
    }
    total = 0.0
    for line in hlo_text.splitlines():
        if m := _DOT.search(line):
            out, lhs, contracting = m.groups()
            contracted = 1
            for d in contracting.split(","):
                contracted *= shapes[lhs][int(d)]
            out_size = 1
            for d in out.split(","):
                out_size *= int(d) if d else 1
            total += 2.0 * out_size * contracted
    return total


def _union_length(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total


def op_profile(run: Callable[[int], object], steps: int, hlo_text: str, top: int = 8) -> dict:
    """Where a step's wall time goes, from a jax.profiler trace of `run(steps)`: microseconds
    per step in the compiled program's matmul ops and in its other ops (elementwise
    fusions, reductions, random bits, copies), summed over threads; `busy_us` is the wall
    time during which at least one op ran, so `wall_us - busy_us` is dispatch and host
    work (argument handling, Python, the loop) with no op running. `top` ops by time."""
    import jax

    names = {
        m.group(1)
        for line in hlo_text.splitlines()
        if (m := re.match(r"^\s*(?:ROOT )?%([\w.\-]+) = ", line))
    }
    matmuls = matmul_ops(hlo_text)
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
            start = time.perf_counter()
            run(steps)
            wall = time.perf_counter() - start
        (trace_file,) = pathlib.Path(trace_dir).rglob("perfetto_trace.json.gz")
        with gzip.open(trace_file) as f:
            events = json.load(f)
    events = events["traceEvents"] if isinstance(events, dict) else events
    per_op, intervals = collections.Counter(), []
    for e in events:
        if e.get("ph") == "X" and e.get("name") in names:
            per_op[e["name"]] += e["dur"]
            intervals.append((e["ts"], e["ts"] + e["dur"]))
    matmul_us = sum(t for n, t in per_op.items() if n in matmuls)
    return {
        "steps": steps,
        "wall_us": wall * 1e6 / steps,
        "busy_us": _union_length(intervals) / steps,
        "matmul_us": matmul_us / steps,
        "other_ops_us": (sum(per_op.values()) - matmul_us) / steps,
        "top_ops": [
            {"op": n, "us": t / steps, "matmul": n in matmuls} for n, t in per_op.most_common(top)
        ],
    }


def print_profile(title: str, profile: dict) -> None:
    print(
        f"{title}: wall {profile['wall_us']:.0f} us/step, "
        f"ops running {profile['busy_us']:.0f} us "
        f"(matmul {profile['matmul_us']:.0f} us, other ops {profile['other_ops_us']:.0f} us, "
        f"summed over threads), nothing running {profile['wall_us'] - profile['busy_us']:.0f} us"
    )
    for op in profile["top_ops"]:
        print(f"    {op['us']:8.0f} us  {op['op']}{'  (matmul)' if op['matmul'] else ''}")
