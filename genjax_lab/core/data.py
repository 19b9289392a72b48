"""Input pipeline: the batch at a step is a pure function of (seed, step).

The order of epoch e is `permutation(seed, e)` over the whole dataset; the global batch at
step s is the slice s % steps_per_epoch of that order, padded with masked rows to the
global batch size; each host takes its contiguous share of the rows. The result does
not depend on the number of devices or hosts, and resume needs only the step.

A split maps feature names to columns [N, ...]: numpy arrays held in memory, or
`streaming.RecordColumn`s that read records from ArrayRecord files on demand. Each host
indexes only the rows of its own share, so both kinds give the same batches and a
streaming split never holds more than one host batch.
"""
import dataclasses
import math
from collections.abc import Iterator, Mapping
from typing import Protocol

import jax
import numpy as np

MASK = "mask"


class Column(Protocol):
    """One feature of a split, [N, ...]: `column[rows]` with int rows [R] gives [R, ...]."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def __len__(self) -> int: ...

    def __getitem__(self, rows: np.ndarray) -> np.ndarray: ...


Split = Mapping[str, Column]


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Columns by split: `{'train': {'image': [N, ...], ...}, ...}`, in memory or streamed."""

    splits: Mapping[str, Split]

    def __post_init__(self):
        for split, arrays in self.splits.items():
            sizes = {name: len(value) for name, value in arrays.items()}
            if len(set(sizes.values())) != 1:
                raise ValueError(f"split {split!r}: arrays disagree on length: {sizes}")

    def __getitem__(self, split: str) -> Split:
        if split not in self.splits:
            raise KeyError(f"no split {split!r}; the dataset has {sorted(self.splits)}")
        return self.splits[split]


def num_examples(arrays: Split) -> int:
    return len(next(iter(arrays.values())))


def column_mean(column: Column, chunk: int = 4096) -> np.ndarray:
    """The float64 mean over the first axis of column [N, ...], read `chunk` rows at a time,
    so a streaming column is never held whole: [...]."""
    total = np.zeros(column.shape[1:], np.float64)
    for start in range(0, len(column), chunk):
        total += column[np.arange(start, min(start + chunk, len(column)))].sum(0, dtype=np.float64)
    return total / len(column)


def _check_batch_size(global_batch_size: int) -> None:
    devices, hosts = jax.device_count(), jax.process_count()
    if global_batch_size <= 0 or global_batch_size % devices:
        raise ValueError(
            f"config.batch_size={global_batch_size} must be a positive multiple of the "
            f"device count {devices} (over {hosts} host(s))"
        )


def _host_batch(arrays: Split, rows: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """This host's share of the global batch `rows` [<= size] padded to `size` rows.

    Padding rows repeat row 0 with mask 0. Returns every column's rows [size / hosts, ...]
    and `mask` [size / hosts]; only this host's rows are indexed, so a streaming split
    reads nothing that another host uses.
    """
    real = len(rows)
    padded_rows = np.concatenate([rows, np.zeros(size - real, dtype=rows.dtype)])
    share = size // jax.process_count()
    start = jax.process_index() * share
    local_rows = padded_rows[start : start + share]
    batch = {name: value[local_rows] for name, value in arrays.items()}
    batch[MASK] = (np.arange(start, start + share) < real).astype(np.float32)
    return batch


class EpochBatcher:
    """Shuffled training batches over epochs; `batch(step)` is this host's share.

    The same code serves in-memory and streaming splits: over `streaming.RecordColumn`s
    each step reads only the records of this host's rows, and `position(step)` is what a
    checkpoint stores either way.
    """

    def __init__(self, arrays: Split, global_batch_size: int, seed: int):
        _check_batch_size(global_batch_size)
        self.arrays = arrays
        self.global_batch_size = global_batch_size
        self.seed = seed
        self.size = num_examples(arrays)
        if self.size == 0:
            raise ValueError("the training split is empty")
        self.steps_per_epoch = math.ceil(self.size / global_batch_size)
        self._order_epoch, self._order = -1, None

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, index of the first example within that epoch's order) at `step`."""
        epoch, batch_index = divmod(step, self.steps_per_epoch)
        return epoch, batch_index * self.global_batch_size

    def _epoch_order(self, epoch: int) -> np.ndarray:
        if epoch != self._order_epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._order_epoch, self._order = epoch, rng.permutation(self.size)
        return self._order

    def batch(self, step: int) -> dict[str, np.ndarray]:
        epoch, start = self.position(step)
        rows = self._epoch_order(epoch)[start : start + self.global_batch_size]
        return _host_batch(self.arrays, rows, self.global_batch_size)


def eval_batches(arrays: Split, global_batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """The whole split in order, once, as this host's share of padded global batches."""
    _check_batch_size(global_batch_size)
    size = num_examples(arrays)
    for start in range(0, size, global_batch_size):
        rows = np.arange(start, min(start + global_batch_size, size))
        yield _host_batch(arrays, rows, global_batch_size)
