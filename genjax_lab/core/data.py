"""In-memory input pipeline: the batch at a step is a pure function of (seed, step).

The order of epoch e is `permutation(seed, e)` over the whole dataset; the global batch at
step s is the slice s % steps_per_epoch of that order, padded with masked rows to the
global batch size; each host takes its contiguous share of the rows. The result does
not depend on the number of devices or hosts, and resume needs only the step.
"""
import dataclasses
import math
from collections.abc import Iterator, Mapping

import jax
import numpy as np

MASK = "mask"


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Arrays held in host memory, by split: `{'train': {'image': [N, ...], ...}, ...}`."""

    splits: Mapping[str, Mapping[str, np.ndarray]]

    def __post_init__(self):
        for split, arrays in self.splits.items():
            sizes = {name: len(value) for name, value in arrays.items()}
            if len(set(sizes.values())) != 1:
                raise ValueError(f"split {split!r}: arrays disagree on length: {sizes}")

    def __getitem__(self, split: str) -> Mapping[str, np.ndarray]:
        if split not in self.splits:
            raise KeyError(f"no split {split!r}; the dataset has {sorted(self.splits)}")
        return self.splits[split]


def num_examples(arrays: Mapping[str, np.ndarray]) -> int:
    return len(next(iter(arrays.values())))


def _check_batch_size(global_batch_size: int) -> None:
    devices, hosts = jax.device_count(), jax.process_count()
    if global_batch_size <= 0 or global_batch_size % devices:
        raise ValueError(
            f"config.batch_size={global_batch_size} must be a positive multiple of the "
            f"device count {devices} (over {hosts} host(s))"
        )


def _take_padded(arrays: Mapping[str, np.ndarray], rows: np.ndarray, size: int) -> dict:
    """The rows `rows` of every array, padded to `size` rows with mask 0."""
    real = len(rows)
    padded_rows = np.concatenate([rows, np.zeros(size - real, dtype=rows.dtype)])
    batch = {name: value[padded_rows] for name, value in arrays.items()}
    batch[MASK] = (np.arange(size) < real).astype(np.float32)
    return batch


def _host_share(batch: dict) -> dict:
    share = len(batch[MASK]) // jax.process_count()
    start = jax.process_index() * share
    return {name: value[start : start + share] for name, value in batch.items()}


class EpochBatcher:
    """Shuffled training batches over epochs; `batch(step)` is this host's share."""

    def __init__(self, arrays: Mapping[str, np.ndarray], global_batch_size: int, seed: int):
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
        return _host_share(_take_padded(self.arrays, rows, self.global_batch_size))


def eval_batches(
    arrays: Mapping[str, np.ndarray], global_batch_size: int
) -> Iterator[dict[str, np.ndarray]]:
    """The whole split in order, once, as this host's share of padded global batches."""
    _check_batch_size(global_batch_size)
    size = num_examples(arrays)
    for start in range(0, size, global_batch_size):
        rows = np.arange(start, min(start + global_batch_size, size))
        yield _host_share(_take_padded(arrays, rows, global_batch_size))
