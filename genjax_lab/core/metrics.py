"""Metrics to a JSON-lines file and TensorBoard event files (no TensorFlow needed)."""

import json
import math
import os
import pathlib
import struct
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils


class MetricWriter:
    """Appends `{"step": s, "split": ..., name: value}` lines; only process 0 writes."""

    def __init__(self, workdir: pathlib.Path):
        self.enabled = jax.process_index() == 0
        self.path = pathlib.Path(workdir) / "metrics.jsonl"
        self._tensorboard = None
        if self.enabled:
            from tensorboardX import SummaryWriter

            # tensorboardX names its file by the second and opens it "wb": without a unique
            # suffix a relaunch within the same second would truncate the resumed run's events.
            self._tensorboard = SummaryWriter(
                str(pathlib.Path(workdir) / "tensorboard"), filename_suffix=f".{time.time_ns()}"
            )

    def write(self, step: int, split: str, metrics: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": step, "split": split, **{k: float(v) for k, v in metrics.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        for name, value in metrics.items():
            self._tensorboard.add_scalar(f"{split}/{name}", float(value), step)
        self._tensorboard.flush()

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()


def cut_back(workdir: pathlib.Path, step: int) -> None:
    """Drops what a killed run logged after `step`, its newest checkpoint, from metrics.jsonl
    and the TensorBoard event files, so the resumed run's logs read as one run."""
    workdir = pathlib.Path(workdir)
    path = workdir / "metrics.jsonl"
    if path.exists():
        kept = [r for r in read_metrics(workdir) if r["step"] <= step]
        path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    for events in (workdir / "tensorboard").glob("events.out.tfevents.*"):
        _cut_events(events, step)


def _event_records(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(offset, payload) of each whole TFRecord in `data`; a record torn by a kill ends it.
    Framing: length (u64), its masked CRC (u32), payload, the payload's masked CRC (u32)."""
    offset = 0
    while offset + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, offset)
        end = offset + 16 + length
        if end > len(data):
            return
        yield offset, data[offset + 12 : end - 4]
        offset = end


def _cut_events(path: pathlib.Path, step: int) -> None:
    """Truncates an event file before its first event past `step`, or a torn last record. A
    file is written by one writer in the order of its steps, so what follows is later too."""
    from tensorboardX.proto.event_pb2 import Event

    data = path.read_bytes()
    keep = 0
    for offset, payload in _event_records(data):
        if Event.FromString(payload).step > step:
            break
        keep = offset + 16 + len(payload)
    if keep < len(data):
        os.truncate(path, keep)


def path_name(path) -> str:
    """A pytree path as `a/b/0`: attribute names, dict keys and indices joined by '/'."""
    parts = []
    for entry in path:
        for field in ("name", "key", "idx"):
            if hasattr(entry, field):
                parts.append(str(getattr(entry, field)))
                break
    return "/".join(parts)


def _bytes(count: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def parameter_table(params, state: Any) -> str:
    """Per module (a pytree path less its last key): each leaf's shape and dtype, the count of
    numbers and their bytes; then the totals, and the whole training state's bytes (arrays
    or ShapeDtypeStructs alike)."""
    modules: dict[str, list] = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        *module, name = path_name(path).split("/")
        modules.setdefault("/".join(module) or ".", []).append((name, leaf))
    rows = []
    for module, leaves in modules.items():
        shapes = ", ".join(f"{name} {tuple(leaf.shape)} {leaf.dtype}" for name, leaf in leaves)
        count = sum(math.prod(leaf.shape) for _, leaf in leaves)
        size = sum(math.prod(leaf.shape) * leaf.dtype.itemsize for _, leaf in leaves)
        rows.append((module, shapes, count, size))
    width = max(len(module) for module, *_ in rows)
    lines = ["parameters by module:"]
    lines += [
        f"  {module:<{width}}  {count:>12,}  {_bytes(size):>10}  {shapes}"
        for module, shapes, count, size in rows
    ]
    state_leaves = jax.tree.leaves(state)
    state_bytes = sum(math.prod(x.shape) * x.dtype.itemsize for x in state_leaves)
    lines.append(
        f"parameters: {sum(r[2] for r in rows):,} ({_bytes(sum(r[3] for r in rows))}); "
        f"training state "
        f"(with optimizer states and chains): {len(state_leaves)} arrays, {_bytes(state_bytes)}"
    )
    return "\n".join(lines)


def write_summary(workdir: pathlib.Path, metrics: Mapping[str, float]) -> None:
    """The run's final numbers as `summary.json`, for reports and replications."""
    if jax.process_index() == 0:
        (pathlib.Path(workdir) / "summary.json").write_text(
            json.dumps(dict(metrics), indent=2, sort_keys=True)
        )


def logged_record(workdir: pathlib.Path, step: int, split: str) -> dict[str, float] | None:
    """The values of the newest `split` record at `step` in metrics.jsonl, or None."""
    records = [r for r in read_metrics(workdir, split) if r["step"] == step]
    return {k: v for k, v in records[-1].items() if k not in ("step", "split")} if records else None


def final_metrics(
    workdir: pathlib.Path, step: int, compute: Callable[[], Mapping[str, float]]
) -> dict[str, float]:
    """The run's final numbers at `step`: `compute()`, logged as the `final` record, or the
    record a previous launch logged, so relaunching a finished run repeats neither the final
    estimates nor their record (a kill before it was written leaves none: computed again)."""
    logged = logged_record(workdir, step, "final")
    if jax.process_count() > 1:
        # compute() may hold collectives that every process must join: process 0 decides.
        if not multihost_utils.broadcast_one_to_all(np.int32(logged is not None)):
            logged = None
        elif logged is None:
            logged = {}  # the numbers are process 0's, which alone writes the summary
    if logged is not None:
        return logged
    metrics = dict(compute())
    MetricWriter(workdir).write(step, "final", metrics)
    return metrics


def read_metrics(workdir: pathlib.Path, split: str | None = None) -> list[dict]:
    """The records of metrics.jsonl, optionally of one split."""
    path = pathlib.Path(workdir) / "metrics.jsonl"
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if split is None or r["split"] == split]


class Progress:
    """One line per log step: step, metrics, examples/s, ETA."""

    def __init__(self, total_steps: int, examples_per_step: int, first_step: int):
        self.total_steps = total_steps
        self.examples_per_step = examples_per_step
        self._last_step, self._last_time = first_step, time.perf_counter()

    def rate(self, step: int) -> float:
        """Examples/s since the previous call."""
        now = time.perf_counter()
        elapsed = max(now - self._last_time, 1e-9)
        rate = (step - self._last_step) * self.examples_per_step / elapsed
        self._last_step, self._last_time = step, now
        return rate

    def line(self, step: int, metrics: Mapping[str, float], rate: float) -> str:
        remaining = (self.total_steps - step) * self.examples_per_step / max(rate, 1e-9)
        shown = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        return (
            f"step {step}/{self.total_steps}  {shown}  {rate:,.0f} ex/s  ETA {_duration(remaining)}"
        )


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


def say(message: str) -> None:
    """Progress for people, on process 0 only (absl logging goes to stderr for all)."""
    if jax.process_index() == 0:
        print(message, file=sys.stdout, flush=True)
