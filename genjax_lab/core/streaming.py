"""Streaming splits: columns read by index from a random-access record source on demand.

`record_columns(source, features)` gives a split `{name: RecordColumn}` that the input
pipeline (`data.EpochBatcher`, `data.eval_batches`) indexes exactly like in-memory arrays,
so it yields the same batches (same permutation per epoch, same padding, same host share,
same dtypes and shapes) while reading only the records of this host's rows of each batch.
A source is anything with `__len__` and `__getitem__(int) -> {name: value}`, such as
`tfds.data_source(...)` over ArrayRecord files; its optional `__getitems__(indices)` reads
many records in one call. `read_rows(split, rows)` is the pipeline's read stage: the
columns of one source read each record once for all features. Nothing here keeps state
between reads, so the pipeline's read-ahead threads share the columns.
"""

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import DTypeLike

# Records per read when a whole column is asked for: bounds the transient memory.
_CHUNK = 4096


class RecordSource(Protocol):
    """Random access to records: `source[i]` is a mapping from feature name to value."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Mapping[str, Any]: ...


@dataclasses.dataclass(frozen=True)
class Feature:
    """Shape of one record's value and the dtype its column holds (values are cast to it)."""

    shape: tuple[int, ...]
    dtype: np.dtype

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        object.__setattr__(self, "dtype", np.dtype(self.dtype))


class _Reader:
    """Reads records by index into columns, each distinct record once per call.

    It keeps no state between calls, so the input pipeline's threads may share it.
    """

    def __init__(self, source: RecordSource, features: Mapping[str, Feature]):
        self.source = source
        self.features = dict(features)

    def read(self, indices: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
        """The features `names` of the records `indices` [R] (int64): {name: [R, *shape]}."""
        # Sorted distinct indices: padding repeats row 0, and sorted reads are local.
        unique, inverse = np.unique(indices, return_inverse=True)
        records = self._fetch(unique.tolist())
        return {name: self._column(records, name, self.features[name])[inverse] for name in names}

    def _fetch(self, indices: list[int]) -> Sequence[Mapping[str, Any]]:
        getitems = getattr(self.source, "__getitems__", None)
        return getitems(indices) if getitems else [self.source[i] for i in indices]

    @staticmethod
    def _column(records: Sequence[Mapping[str, Any]], name: str, feature: Feature) -> np.ndarray:
        column = np.empty((len(records), *feature.shape), feature.dtype)
        for i, record in enumerate(records):
            value = np.asarray(record[name])
            if value.shape != feature.shape:  # assignment would broadcast it silently
                raise ValueError(
                    f"feature {name!r} of a record has shape {value.shape}, "
                    f"expected {feature.shape}"
                )
            column[i] = value
        return column


class RecordColumn:
    """One feature of a record source as a read-only array [N, *shape] read on demand.

    `column[rows]` (int or int array) reads those records; `column[a:b]` is a view that
    reads nothing; `np.asarray(column)` reads the whole column, in chunks (fine for labels,
    but for images it holds the whole split in memory, which streaming exists to avoid).
    """

    def __init__(self, reader: _Reader, name: str, rows: range):
        self._reader, self.name, self._rows = reader, name, rows
        self._feature = reader.features[name]

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self._rows), *self._feature.shape)

    @property
    def dtype(self) -> np.dtype:
        return self._feature.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: int | slice | np.ndarray) -> "np.ndarray | RecordColumn":
        if isinstance(index, slice):
            return RecordColumn(self._reader, self.name, self._rows[index])
        positions = np.asarray(index)
        if positions.dtype.kind not in "iu":
            raise TypeError(f"a RecordColumn is indexed by ints or a slice, got {index!r}")
        size = len(self)
        if np.any((positions < -size) | (positions >= size)):
            raise IndexError(f"index out of range for a column of {size} records")
        positions = np.where(positions < 0, positions + size, positions).astype(np.int64)
        values = self._reader.read(self._indices(positions.reshape(-1)), [self.name])[self.name]
        return values.reshape(*positions.shape, *self._feature.shape)

    def _indices(self, positions: np.ndarray) -> np.ndarray:
        """The source's record indices of this column's rows `positions` [R] (int64, >= 0)."""
        return self._rows.start + self._rows.step * positions

    def __array__(self, dtype: DTypeLike | None = None, copy: bool | None = None) -> np.ndarray:
        if copy is False:
            raise ValueError("a RecordColumn is read from its source: it has no array to view")
        column = np.empty(self.shape, self.dtype)
        for start in range(0, len(self), _CHUNK):
            stop = min(start + _CHUNK, len(self))
            column[start:stop] = self[np.arange(start, stop)]
        return column if dtype is None else column.astype(dtype)

    def __repr__(self) -> str:
        return f"RecordColumn({self.name!r}, shape={self.shape}, dtype={self.dtype})"


def record_columns(
    source: RecordSource, features: Mapping[str, Feature]
) -> dict[str, RecordColumn]:
    """A streaming split over `source`: {name: RecordColumn [len(source), *shape]}.

    The columns share one reader, so a batch that indexes all of them with the same rows
    reads each of those records once.
    """
    reader = _Reader(source, features)
    rows = range(len(source))
    return {name: RecordColumn(reader, name, rows) for name in features}


def read_rows(split: Mapping[str, Any], rows: np.ndarray) -> dict[str, np.ndarray]:
    """Every column of `split` at `rows` [R] (ints in range): {name: [R, ...]}.

    The RecordColumns over one source and the same records (those of `record_columns`) read
    each record once for all their features; other columns are indexed as arrays.
    """
    batch, groups = {}, {}
    for name, column in split.items():
        if isinstance(column, RecordColumn):
            groups.setdefault((id(column._reader), column._rows), []).append((name, column))
        else:
            batch[name] = column[rows]
    for members in groups.values():
        first = members[0][1]
        if len(rows) and (rows.min() < 0 or rows.max() >= len(first)):
            raise IndexError(f"rows out of range for a column of {len(first)} records")
        values = first._reader.read(
            first._indices(np.asarray(rows, np.int64)), [column.name for _, column in members]
        )
        batch.update({name: values[column.name] for name, column in members})
    return {name: batch[name] for name in split}
