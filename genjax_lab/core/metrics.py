"""Metrics to a JSON-lines file and TensorBoard event files (no TensorFlow needed)."""
import json
import math
import pathlib
import sys
import time
from collections.abc import Callable, Mapping

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

            self._tensorboard = SummaryWriter(str(pathlib.Path(workdir) / "tensorboard"))

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


def write_summary(workdir: pathlib.Path, metrics: Mapping[str, float]) -> None:
    """The run's final numbers as `summary.json`, for reports and replications."""
    if jax.process_index() == 0:
        (pathlib.Path(workdir) / "summary.json").write_text(json.dumps(dict(metrics), indent=2, sort_keys=True))


def logged_record(workdir: pathlib.Path, step: int, split: str) -> dict[str, float] | None:
    """The values of the newest `split` record at `step` in metrics.jsonl, or None."""
    records = [r for r in read_metrics(workdir, split) if r["step"] == step]
    return {k: v for k, v in records[-1].items() if k not in ("step", "split")} if records else None


def final_metrics(workdir: pathlib.Path, step: int, compute: Callable[[], Mapping[str, float]]) -> dict[str, float]:
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
            f"step {step}/{self.total_steps}  {shown}  {rate:,.0f} ex/s  "
            f"ETA {_duration(remaining)}"
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
