"""TFDS builders that prepare without TensorFlow (ArrayRecord files).

- `sklearn_digits`: the 1,797 8x8 grey-level digits that scikit-learn ships, so a newcomer
  trains on real digits with no download. Split by a fixed permutation: 1,437 train /
  360 test.
- `mnist_idx`, `fashion_mnist_idx`: MNIST and Fashion-MNIST from their four IDX files.
- `cifar10_files`: CIFAR-10 from its official archive, the binary version that TFDS's own
  `cifar10` downloads (cifar-10-binary.tar.gz) or the Python one (cifar-10-python.tar.gz).

The last three read the original files from `download_config.manual_dir` when it holds
them (machines without internet) and otherwise download them from the address TFDS's own
builder of that name uses: the catalog's builders cannot prepare without TensorFlow, which
they need to encode `tfds.features.Image`. Every builder stores images as `Tensor(uint8)`
[H, W, C]. `record_columns` reads a prepared split without loading it (the streaming input
path).
"""

import fcntl
import io
import pathlib
import pickle
import tarfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow_datasets as tfds
from numpy.typing import DTypeLike

from genjax_lab.core import streaming
from genjax_lab.data import idx

_DIGITS_TEST_SIZE = 360
_DIGITS_SPLIT_SEED = 0


def _image_label_info(
    builder: tfds.core.DatasetBuilder,
    shape: tuple[int, int, int],
    description: str,
    label_names: Sequence[str] | None = None,
):
    label = (
        tfds.features.ClassLabel(names=list(label_names))
        if label_names
        else tfds.features.ClassLabel(num_classes=10)
    )
    return tfds.core.DatasetInfo(
        builder=builder,
        description=description,
        features=tfds.features.FeaturesDict(
            {"image": tfds.features.Tensor(shape=shape, dtype=np.uint8), "label": label}
        ),
        supervised_keys=("image", "label"),
    )


class _ImageLabelBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    def _generate_examples(self, images: np.ndarray, labels: np.ndarray):
        """images [N, H, W] (grey levels, given a channel axis) or [N, H, W, C], labels [N]."""
        if images.ndim == 3:
            images = images[..., None]
        for i, (image, label) in enumerate(zip(images, labels)):
            yield i, {"image": image, "label": int(label)}


class SklearnDigits(_ImageLabelBuilder):
    """8x8 handwritten digits (UCI optdigits test set, as bundled with scikit-learn)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return _image_label_info(
            self, (8, 8, 1), "8x8 digits, grey levels 0..16 rescaled to 0..255."
        )

    def _split_generators(self, dl_manager):
        from sklearn.datasets import load_digits  # the data ships inside scikit-learn

        digits = load_digits()
        # 0..16 grey levels -> 0..255 so every image dataset shares one pixel scale.
        images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
        order = np.random.default_rng(_DIGITS_SPLIT_SEED).permutation(len(images))
        test, train = order[:_DIGITS_TEST_SIZE], order[_DIGITS_TEST_SIZE:]
        return {
            "train": self._generate_examples(images[train], digits.target[train]),
            "test": self._generate_examples(images[test], digits.target[test]),
        }


def _manual_folder(dl_manager, builder) -> pathlib.Path | None:
    """The manual_dir when it holds `builder`'s original files, else None (download them).

    TFDS answers `dl_manager.manual_dir` with an AssertionError when the folder (given, or
    its default DATA_DIR/downloads/manual, which other datasets' files may share) is absent
    or empty.
    """
    try:
        folder = pathlib.Path(dl_manager.manual_dir)
    except AssertionError:
        return None
    return None if builder.missing_files(folder) else folder


def _paired(images: np.ndarray, labels: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    if len(images) != len(labels):
        raise ValueError(f"{where}: {len(images)} images but {len(labels)} labels")
    return images, labels.astype(np.int64)


class _OriginalFilesBuilder(_ImageLabelBuilder, skip_registration=True):
    """A dataset prepared from the files its authors distribute: read from manual_dir when
    it holds them, else downloaded from `download_url()`, the address TFDS's own builder of
    the dataset downloads from. `ORIGINAL_FILES` says in words what a manual_dir holds;
    `missing_files(folder)` lists what `folder` lacks (empty when it can be prepared from)."""

    VERSION = tfds.core.Version("1.0.0")


class MnistIdx(_OriginalFilesBuilder):
    """MNIST from its four IDX files (gzipped or not)."""

    CATALOG_NAME = "mnist"
    DESCRIPTION = "MNIST handwritten digits from IDX files."
    LABEL_NAMES: tuple[str, ...] = ()  # the digits 0..9
    ORIGINAL_FILES = (
        "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (or unzipped)"
    )
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"Put {ORIGINAL_FILES} in manual_dir."

    @classmethod
    def download_url(cls) -> str:
        return tfds.builder_cls(cls.CATALOG_NAME).URL

    @classmethod
    def missing_files(cls, folder: str | pathlib.Path) -> list[str]:
        return [f"{stem}[.gz]" for stem in idx.missing_mnist_files(folder)]

    def _info(self):
        return _image_label_info(self, (28, 28, 1), self.DESCRIPTION, self.LABEL_NAMES)

    def _split_generators(self, dl_manager):
        folder = _manual_folder(dl_manager, self)
        splits = {}
        for split, stems in idx.MNIST_FILES.items():
            if folder is not None:
                images, labels = idx.load_mnist_split(folder, split)
            else:
                base = self.download_url()
                paths = dl_manager.download([urllib.parse.urljoin(base, f"{s}.gz") for s in stems])
                images, labels = _paired(*map(idx.read_idx, paths), f"{base} ({split})")
            splits[split] = self._generate_examples(images, labels)
        return splits


class FashionMnistIdx(MnistIdx):
    """Fashion-MNIST (Xiao et al. 2017) from its four IDX files, named as MNIST's."""

    CATALOG_NAME = "fashion_mnist"
    DESCRIPTION = "Fashion-MNIST: 28x28 grey-level images of 10 kinds of clothing."
    LABEL_NAMES = (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    )  # fmt: skip


# The two official CIFAR-10 archives and the folder each unpacks to, whose batch files end
# with the suffix given. TFDS's own `cifar10` downloads the binary one.
CIFAR10_ARCHIVES = {
    "cifar-10-binary.tar.gz": ("cifar-10-batches-bin", ".bin"),
    "cifar-10-python.tar.gz": ("cifar-10-batches-py", ""),
}
_CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
_CIFAR10_BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
_CIFAR10_SIDE = 32
_CIFAR10_PIXELS = _CIFAR10_SIDE * _CIFAR10_SIDE * 3


def cifar10_source(folder: str | pathlib.Path) -> pathlib.Path | None:
    """The CIFAR-10 archive in `folder`, or the folder it unpacks to; None if none is there."""
    folder = pathlib.Path(folder)
    candidates = [folder / name for name in CIFAR10_ARCHIVES]
    candidates += [folder / unpacked for unpacked, _ in CIFAR10_ARCHIVES.values()]
    return next((path for path in candidates if path.exists()), None)


def read_cifar10(source: str | pathlib.Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """CIFAR-10's splits from an official archive (binary or Python version, told apart by
    the folder inside) or the folder it unpacks to.

    Returns {"train", "test": (images uint8 [N, 32, 32, 3], labels int64 [N])}, the batches
    in their published order. Pixels are stored channel by channel (1,024 red, then green,
    then blue bytes, rows first); the images come back channels last.
    """
    source = pathlib.Path(source)
    batches = _cifar10_batch_bytes(source)
    splits = {}
    for split, names in _CIFAR10_BATCHES.items():
        parts = [_parse_cifar10_batch(*batches[name], f"{source}: {name}") for name in names]
        images, labels = (np.concatenate(columns) for columns in zip(*parts))
        splits[split] = images, labels
    return splits


def _cifar10_batch_bytes(source: pathlib.Path) -> dict[str, tuple[bytes, bool]]:
    """{batch name: (its bytes, whether it is the binary version)} of every batch."""
    names = [name for split in _CIFAR10_BATCHES.values() for name in split]
    layouts = dict(CIFAR10_ARCHIVES.values())
    if source.is_dir():
        if source.name not in layouts:
            raise ValueError(f"{source}: a CIFAR-10 folder is named one of {sorted(layouts)}")
        suffix = layouts[source.name]
        return {name: ((source / f"{name}{suffix}").read_bytes(), bool(suffix)) for name in names}
    with tarfile.open(source) as archive:
        members = set(archive.getnames())
        found = [
            (folder, suffix)
            for folder, suffix in layouts.items()
            if f"{folder}/test_batch{suffix}" in members
        ]
        if not found:
            raise ValueError(
                f"{source} is not a CIFAR-10 archive: it holds neither "
                + " nor ".join(f"{folder}/test_batch{suffix}" for folder, suffix in layouts.items())
            )
        folder, suffix = found[0]
        batches = {}
        for name in names:
            member = f"{folder}/{name}{suffix}"
            if member not in members:
                raise ValueError(f"{source} lacks {member}")
            batches[name] = archive.extractfile(member).read(), bool(suffix)
        return batches


def _parse_cifar10_batch(raw: bytes, binary: bool, where: str) -> tuple[np.ndarray, np.ndarray]:
    if binary:  # records of one label byte then the pixels
        if len(raw) % (_CIFAR10_PIXELS + 1):
            raise ValueError(
                f"{where}: {len(raw)} bytes is not a whole number of "
                f"{_CIFAR10_PIXELS + 1}-byte records (a label byte, then 32x32x3 pixels)"
            )
        records = np.frombuffer(raw, np.uint8).reshape(-1, _CIFAR10_PIXELS + 1)
        labels, pixels = records[:, 0], records[:, 1:]
    else:
        batch = _CifarUnpickler(io.BytesIO(raw), encoding="bytes").load()
        if not isinstance(batch, dict) or not {b"data", b"labels"} <= batch.keys():
            raise ValueError(f"{where}: not a CIFAR-10 Python batch (a dict of data and labels)")
        pixels, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
        if pixels.dtype != np.uint8 or pixels.ndim != 2 or pixels.shape[1] != _CIFAR10_PIXELS:
            raise ValueError(
                f"{where}: data must be uint8 [N, {_CIFAR10_PIXELS}], "
                f"got {pixels.dtype} {list(pixels.shape)}"
            )
    side = _CIFAR10_SIDE
    images = pixels.reshape(-1, 3, side, side).transpose(0, 2, 3, 1)
    return _paired(images, labels, where)


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles what CIFAR-10's Python batches hold (dicts, lists, NumPy arrays) and
    nothing else: a pickle may call any function it names, and these files come from users."""

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("_codecs", "encode"),  # bytes, as Python 3 writes them under pickle protocol 2
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"a CIFAR-10 batch may not name {module}.{name}")
        return super().find_class(module, name)


class Cifar10Files(_OriginalFilesBuilder):
    """CIFAR-10 (Krizhevsky 2009): 60,000 32x32 colour images in 10 classes."""

    LABEL_NAMES = (
        "airplane", "automobile", "bird", "cat", "deer",
        "dog", "frog", "horse", "ship", "truck",
    )  # fmt: skip
    ORIGINAL_FILES = (
        "cifar-10-binary.tar.gz (the archive TFDS's cifar10 downloads) or "
        "cifar-10-python.tar.gz, or the folder either unpacks to"
    )
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"Put {ORIGINAL_FILES} in manual_dir."

    @classmethod
    def download_url(cls) -> str:
        return _CIFAR10_URL

    @classmethod
    def missing_files(cls, folder: str | pathlib.Path) -> list[str]:
        if cifar10_source(folder) is not None:
            return []
        return [" or ".join(CIFAR10_ARCHIVES) + " (or the folder it unpacks to)"]

    def _info(self):
        shape = (_CIFAR10_SIDE, _CIFAR10_SIDE, 3)
        return _image_label_info(self, shape, self.__doc__, self.LABEL_NAMES)

    def _split_generators(self, dl_manager):
        folder = _manual_folder(dl_manager, self)
        if folder is None:
            source = dl_manager.download(self.download_url())
        else:
            source = cifar10_source(folder)
        return {
            split: self._generate_examples(images, labels)
            for split, (images, labels) in read_cifar10(source).items()
        }


def prepare(builder: tfds.core.DatasetBuilder, download_config=None) -> None:
    """`download_and_prepare` under a lock file in the data folder, so that independent jobs
    sharing one TFDS folder (a job array, parallel replications) prepare a dataset once
    instead of racing to rename the same folder."""
    data_dir = pathlib.Path(builder.data_dir_root)
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / f".{builder.name}.lock", "w") as lock:  # closing it releases the lock
        fcntl.flock(lock, fcntl.LOCK_EX)
        builder.download_and_prepare(download_config=download_config)


def reachable(url: str, timeout_s: float = 5.0) -> bool:
    """Whether the server of `url` answers a HEAD request (any HTTP status) within timeout_s,
    through the proxies the environment names, as a download would go. The request runs in
    a thread because urllib's timeout does not bound the name lookup, which on a machine
    without a network can stall for minutes."""
    answers = []

    def probe():
        try:
            request = urllib.request.Request(url, method="HEAD")
            urllib.request.urlopen(request, timeout=timeout_s).close()
            answers.append(True)
        except urllib.error.HTTPError:  # the server answered, with an error status
            answers.append(True)
        except (OSError, ValueError):
            answers.append(False)

    # daemon: a lookup still stalled after the timeout must not keep the process alive
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout_s)
    return answers == [True]


def record_columns(
    builder: tfds.core.DatasetBuilder, split: str, dtypes: Mapping[str, DTypeLike]
) -> dict[str, streaming.RecordColumn]:
    """The prepared `split` as a streaming split over its ArrayRecord files.

    Returns {name: RecordColumn [N, *shape]} for each name in `dtypes`, with the shapes of
    the builder's features and values cast to `dtypes[name]`; records are read only when
    the input pipeline indexes them.
    """
    features = builder.info.features
    spec = {name: streaming.Feature(features[name].shape, dtype) for name, dtype in dtypes.items()}
    return streaming.record_columns(builder.as_data_source(split), spec)
