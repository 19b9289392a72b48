"""Reader of the IDX format that MNIST ships in (LeCun et al.), gzipped or raw."""

import gzip
import pathlib

import numpy as np

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | pathlib.Path) -> np.ndarray:
    """Reads one IDX file (`.gz` or not) into an array of the shape its header states."""
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"IDX file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {raw[:4]!r})")
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - offset != expected:
        raise ValueError(
            f"{path}: header promises shape {shape} ({expected} bytes) "
            f"but {len(raw) - offset} bytes follow"
        )
    return (
        np.frombuffer(raw, dtype=dtype, offset=offset)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def load_mnist_split(mnist_dir: str | pathlib.Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """MNIST `split` ('train' or 'test') from a folder of the canonical IDX files.

    Returns (images uint8 [N, 28, 28], labels int64 [N]). Accepts `.gz` or plain files.
    """
    mnist_dir = pathlib.Path(mnist_dir)
    if not mnist_dir.is_dir():
        raise FileNotFoundError(f"MNIST folder not found: {mnist_dir}")
    if split not in MNIST_FILES:
        raise ValueError(f"split must be one of {sorted(MNIST_FILES)}, got {split!r}")
    arrays = []
    for stem in MNIST_FILES[split]:
        found = _mnist_file(mnist_dir, stem)
        if found is None:
            raise FileNotFoundError(f"{stem}[.gz] not found in MNIST folder {mnist_dir}")
        arrays.append(read_idx(found))
    images, labels = arrays
    if len(images) != len(labels):
        raise ValueError(f"{mnist_dir}: {len(images)} {split} images but {len(labels)} labels")
    return images, labels.astype(np.int64)


def _mnist_file(mnist_dir: pathlib.Path, stem: str) -> pathlib.Path | None:
    """The file `stem`, gzipped or raw, in mnist_dir; None if neither is there."""
    return next((c for c in (mnist_dir / f"{stem}.gz", mnist_dir / stem) if c.is_file()), None)


def missing_mnist_files(mnist_dir: str | pathlib.Path) -> list[str]:
    """The canonical MNIST files (train and test) that mnist_dir lacks, `.gz` or raw."""
    return [
        stem
        for stems in MNIST_FILES.values()
        for stem in stems
        if _mnist_file(pathlib.Path(mnist_dir), stem) is None
    ]
