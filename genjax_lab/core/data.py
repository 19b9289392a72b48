"""Input pipeline on grain: the batch at a step is a pure function of (seed, step).

Both the training and the evaluation pipelines are grain `MapDataset`s indexed by step:

  range(steps per epoch), repeated over epochs (training only)
  -> the global batch's positions in the epoch, padded to the global batch size with a mask
  -> this host's contiguous share of them
  -> the rows at those positions: the epoch's permutation (training) or the identity
  -> the reads of those rows from the split's columns

and a grain iterator runs it ahead of the loop in a thread (`READ_OPTIONS`). The batch
does not depend on the number of devices or hosts, each host reads only its own rows, and
resume needs only the step.

Epoch e's order is the permutation of grain's index shuffle (a Simon block cipher with
cycle walking) keyed by a 32-bit seed drawn from (seed, e): the row at any position is
computed on its own, so no permutation is held in memory. `index_shuffle` computes it for a
whole host batch at once in NumPy, bitwise the result of grain's own (scalar)
`index_shuffle` wherever grain's gives a permutation. Grain's `MapDataset.shuffle` node is
not used for two measured reasons: it costs 20 to 40 us per example in Python, about what
the VAE step at batch 100 costs per example on a 2-core CPU (17 us), where this whole
pipeline costs 2 to 4 us (benchmarks/pipeline.py); and for sizes 2**k + 1 with even
k >= 16 (65,537 rows, ...) its block is one bit short, so one row repeats and another
never comes (tests/test_pipeline.py).

A split maps feature names to columns [N, ...]: numpy arrays held in memory, or
`streaming.RecordColumn`s that read records from ArrayRecord files on demand; the same
pipeline reads both, so they give bitwise the same batches and a streaming split never
holds more than the prefetched host batches.
"""

import dataclasses
import functools
import math
from collections.abc import Iterator, Mapping
from typing import Protocol

import grain
import jax
import numpy as np

from genjax_lab.core import streaming

MASK = "mask"

# One thread reads ahead up to 4 host batches: enough to hide a batch's reads behind a
# step; more threads only contend for the GIL with the loop (benchmarks/pipeline.py).
READ_OPTIONS = grain.ReadOptions(num_threads=1, prefetch_buffer_size=4)
# Grain's shuffle: 4 Feistel rounds, a block of at least 16 bits.
_ROUNDS = 4
_MIN_BLOCK_BITS = 16
_UINT32 = 0xFFFFFFFF


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


# ----------------------------------------------------------------------------- shuffle


def _round_keys(seed: int) -> list[int]:
    """Grain's round keys: C++ `std::seed_seq{seed}.generate` of `_ROUNDS` words, by the
    algorithm the C++ standard specifies ([rand.util.seedseq])."""
    n, entropy = _ROUNDS, [seed & _UINT32]
    keys = [0x8B8B8B8B] * n
    t = 11 if n >= 623 else 7 if n >= 68 else 5 if n >= 39 else 3 if n >= 7 else (n - 1) // 2
    p = (n - t) // 2
    q = p + t

    def mix(x: int) -> int:
        return x ^ (x >> 27)

    for k in range(max(len(entropy) + 1, n)):
        r1 = 1664525 * mix(keys[k % n] ^ keys[(k + p) % n] ^ keys[(k - 1) % n]) & _UINT32
        if k == 0:
            r2 = r1 + len(entropy)
        elif k <= len(entropy):
            r2 = r1 + k % n + entropy[k - 1]
        else:
            r2 = r1 + k % n
        r2 &= _UINT32
        keys[(k + p) % n] = (keys[(k + p) % n] + r1) & _UINT32
        keys[(k + q) % n] = (keys[(k + q) % n] + r2) & _UINT32
        keys[k % n] = r2
    start = max(len(entropy) + 1, n)
    for k in range(start, start + n):
        r3 = 1566083941 * mix((keys[k % n] + keys[(k + p) % n] + keys[(k - 1) % n]) & _UINT32)
        r3 &= _UINT32
        r4 = (r3 - k % n) & _UINT32
        keys[(k + p) % n] ^= r3
        keys[(k + q) % n] ^= r4
        keys[k % n] = r4
    return keys


def _simon(values: np.ndarray, keys: list[int], word_bits: int) -> np.ndarray:
    """The Simon cipher's rounds on blocks of 2 * word_bits: values [R] uint64 -> [R]."""
    mask = np.uint64((1 << word_bits) - 1)
    shifts = {r: (np.uint64(r), np.uint64(word_bits - r)) for r in (1, 2, 8)}

    def rotl(x, r):
        left, right = shifts[r]
        return ((x << left) | (x >> right)) & mask

    def f(x):
        return (rotl(x, 1) & rotl(x, 8)) ^ rotl(x, 2)

    left, right = values >> np.uint64(word_bits), values & mask
    for k1, k2 in zip(keys[::2], keys[1::2], strict=True):
        left = left ^ f(right) ^ (np.uint64(k1) & mask)
        right = right ^ f(left) ^ (np.uint64(k2) & mask)
    return (left << np.uint64(word_bits)) | right


@functools.lru_cache(maxsize=4)
def _smallest_block_permutation(size: int, seed: int) -> np.ndarray:
    """index_shuffle of every position of a dataset of `size` <= 2**16 rows: [2**16] int64
    (only the first `size` entries mean anything).

    Walking one position at a time through a block of 65,536 for a few hundred rows takes
    thousands of steps; here every position of the block walks at once, by repeated
    squaring of "the next value, or stay once inside": 16 squarings cover any cycle.
    """
    cipher = _simon(
        np.arange(1 << _MIN_BLOCK_BITS, dtype=np.uint64), _round_keys(seed), _MIN_BLOCK_BITS // 2
    ).astype(np.int64)
    landing = np.arange(1 << _MIN_BLOCK_BITS)
    landing[size:] = cipher[size:]
    for _ in range(_MIN_BLOCK_BITS):
        landing = landing[landing]
    return landing[cipher]


def index_shuffle(positions: np.ndarray, size: int, seed: int) -> np.ndarray:
    """The rows at `positions` [R] (ints in [0, size)) of a pseudorandom permutation of
    range(size) keyed by the 32-bit `seed`: [R] int64.

    Grain's index shuffle (a Simon cipher over the smallest even block of at least 16 bits
    that holds size - 1, applied again while the result is out of range), vectorized, with
    the block wide enough for every size: grain's misses size - 1 = 2**k for even k >= 16.
    Only a dataset of at most 65,536 rows holds a table (its block's, 512 KiB).
    """
    if size <= 1:
        return np.zeros(len(positions), np.int64)
    bits = max(int(size - 1).bit_length(), _MIN_BLOCK_BITS)
    bits += bits % 2
    if bits == _MIN_BLOCK_BITS:
        return _smallest_block_permutation(size, seed)[positions]
    keys = _round_keys(seed)
    rows = np.asarray(positions, np.uint64).copy()
    walking, values = np.arange(len(rows)), rows
    while len(walking):  # at most 4 passes expected: size - 1 fills over a quarter of the block
        values = _simon(values, keys, bits // 2)
        inside = values < size
        rows[walking[inside]] = values[inside]
        walking, values = walking[~inside], values[~inside]
    return rows.astype(np.int64)


def epoch_seed(seed: int, epoch: int) -> int:
    """The 32-bit key of epoch `epoch`'s permutation: independent across seeds and epochs
    (grain's own seed + epoch would make epoch 1 of seed 0 epoch 0 of seed 1)."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


# ----------------------------------------------------------------------------- pipeline


def _check_batch_size(global_batch_size: int) -> None:
    devices, hosts = jax.device_count(), jax.process_count()
    if global_batch_size <= 0 or global_batch_size % devices:
        raise ValueError(
            f"config.batch_size={global_batch_size} must be a positive multiple of the "
            f"device count {devices} (over {hosts} host(s))"
        )


@dataclasses.dataclass(frozen=True)
class _Plan:
    """The stages of a pipeline over `size` rows in global batches of `batch_size`, on host
    `host` of `hosts`; `seed` None reads the rows in order (evaluation)."""

    split: Split
    size: int
    batch_size: int
    seed: int | None
    host: int
    hosts: int

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.size / self.batch_size)

    def global_positions(self, step: int, batch_in_epoch: int) -> tuple[int, np.ndarray]:
        """(epoch, positions [batch_size] in the epoch's order; those >= size are padding)."""
        start = batch_in_epoch * self.batch_size
        return step // self.steps_per_epoch, np.arange(start, start + self.batch_size)

    def host_share(self, batch: tuple[int, np.ndarray]) -> tuple[int, np.ndarray]:
        epoch, positions = batch
        share = self.batch_size // self.hosts
        return epoch, positions[self.host * share : (self.host + 1) * share]

    def rows(self, batch: tuple[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(rows [share] to read, mask [share]): padding reads row 0 under mask 0."""
        epoch, positions = batch
        real = positions < self.size
        rows = np.where(real, positions, 0)
        if self.seed is not None:
            rows[real] = index_shuffle(positions[real], self.size, epoch_seed(self.seed, epoch))
        return rows, real.astype(np.float32)

    def read(self, batch: tuple[np.ndarray, np.ndarray]) -> dict[str, np.ndarray]:
        rows, mask = batch
        return {**streaming.read_rows(self.split, rows), MASK: mask}

    def dataset(self) -> grain.MapDataset:
        """The host batches by step: an epoch's (evaluation), or every epoch's (training)."""
        batches = grain.MapDataset.range(self.steps_per_epoch)
        if self.seed is not None:
            batches = batches.repeat()
        return (
            batches.map_with_index(self.global_positions)
            .map(self.host_share)
            .map(self.rows)
            .map(self.read)
        )


def _plan(arrays: Split, global_batch_size: int, seed: int | None) -> _Plan:
    _check_batch_size(global_batch_size)
    return _Plan(
        arrays,
        num_examples(arrays),
        global_batch_size,
        seed,
        jax.process_index(),
        jax.process_count(),
    )


class EpochBatcher:
    """Shuffled training batches over epochs; `batch(step)` is this host's share.

    The same pipeline serves in-memory and streaming splits: over `streaming.RecordColumn`s
    each step reads only the records of this host's rows, and `position(step)` is what a
    checkpoint stores either way. Consecutive steps come from a grain iterator that reads
    ahead; any other step restarts it there, with the same result.
    """

    def __init__(
        self,
        arrays: Split,
        global_batch_size: int,
        seed: int,
        read_options: grain.ReadOptions = READ_OPTIONS,
    ):
        self._plan = _plan(arrays, global_batch_size, seed)
        if self._plan.size == 0:
            raise ValueError("the training split is empty")
        self.arrays = arrays
        self.global_batch_size = global_batch_size
        self.seed = seed
        self.size = self._plan.size
        self.steps_per_epoch = self._plan.steps_per_epoch
        self.dataset = self._plan.dataset()
        self._read_options = read_options
        self._iterator, self._next_step = None, None

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, index of the first example within that epoch's order) at `step`."""
        epoch, batch_index = divmod(step, self.steps_per_epoch)
        return epoch, batch_index * self.global_batch_size

    def batch(self, step: int) -> dict[str, np.ndarray]:
        if step != self._next_step:
            self.close()
            self._iterator = iter(self.dataset[step:].to_iter_dataset(self._read_options))
        batch = next(self._iterator)
        self._next_step = step + 1
        return batch

    def batches(self, step: int, count: int, length: int) -> dict[str, np.ndarray]:
        """The batches of steps [step, step + count) stacked [length, host share, ...]; the
        `length - count` rows after them are zeros, so one compiled call of `length` steps
        serves every count (it runs only the first `count`)."""
        if not 0 < count <= length:
            raise ValueError(f"count={count} must be in [1, length={length}]")
        batches = [self.batch(step + i) for i in range(count)]
        return {
            name: np.stack([b[name] for b in batches] + [np.zeros_like(first)] * (length - count))
            for name, first in batches[0].items()
        }

    def close(self) -> None:
        """Stops the read-ahead (it also stops when the batcher is garbage collected)."""
        if self._iterator is not None:
            self._iterator.close()
        self._iterator, self._next_step = None, None


class FullBatch:
    """The whole training split as one batch at every step, in order: full-batch fits (EM, VB,
    Gibbs sweeps), where a step is an iteration over all the data. Padded to a multiple of the
    device count (mask 0 on the padding); `batch(step)` is this host's share."""

    steps_per_epoch = 1

    def __init__(self, arrays: Split):
        self.size = num_examples(arrays)
        if self.size == 0:
            raise ValueError("the training split is empty")
        self.global_batch_size = math.ceil(self.size / jax.device_count()) * jax.device_count()
        (self._batch,) = eval_batches(arrays, self.global_batch_size)

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, position) as `EpochBatcher.position`: every step is an epoch."""
        return step, 0

    def batch(self, step: int) -> dict[str, np.ndarray]:
        return self._batch

    def close(self) -> None:
        """Nothing reads ahead."""


def eval_batches(
    arrays: Split, global_batch_size: int, read_options: grain.ReadOptions = READ_OPTIONS
) -> Iterator[dict[str, np.ndarray]]:
    """The whole split in order, once, as this host's share of padded global batches."""
    iterator = iter(_plan(arrays, global_batch_size, None).dataset().to_iter_dataset(read_options))
    try:
        yield from iterator
    finally:
        iterator.close()
