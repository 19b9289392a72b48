"""TFDS builders that prepare offline and read without TensorFlow (ArrayRecord files).

- `sklearn_digits`: the 1,797 8x8 grey-level digits that scikit-learn ships, so a newcomer
  trains on real digits with no download. Split by a fixed permutation: 1,437 train /
  360 test.
- `mnist_idx`: MNIST from a folder holding the canonical IDX files (manual_dir), for
  machines without internet. Same features as the catalog's `mnist`.

Both store images as `Tensor(uint8)`: `tfds.features.Image` needs TensorFlow to encode.
`record_columns` reads a prepared split without loading it (the streaming input path).
"""

import fcntl
import pathlib
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping

import numpy as np
import tensorflow_datasets as tfds
from numpy.typing import DTypeLike

from genjax_lab.core import streaming
from genjax_lab.data import idx

_DIGITS_TEST_SIZE = 360
_DIGITS_SPLIT_SEED = 0


def _image_label_info(builder: tfds.core.DatasetBuilder, side: int, description: str):
    return tfds.core.DatasetInfo(
        builder=builder,
        description=description,
        features=tfds.features.FeaturesDict(
            {
                "image": tfds.features.Tensor(shape=(side, side, 1), dtype=np.uint8),
                "label": tfds.features.ClassLabel(num_classes=10),
            }
        ),
        supervised_keys=("image", "label"),
    )


class _ImageLabelBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    def _generate_examples(self, images: np.ndarray, labels: np.ndarray):
        for i, (image, label) in enumerate(zip(images, labels)):
            yield i, {"image": image[..., None], "label": int(label)}


class SklearnDigits(_ImageLabelBuilder):
    """8x8 handwritten digits (UCI optdigits test set, as bundled with scikit-learn)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return _image_label_info(self, 8, "8x8 digits, grey levels 0..16 rescaled to 0..255.")

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


class MnistIdx(_ImageLabelBuilder):
    """MNIST read from the canonical IDX files in `download_config.manual_dir`."""

    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (or unzipped) in "
        "manual_dir, and name it with --config.data.mnist_dir."
    )

    def _info(self):
        return _image_label_info(self, 28, "MNIST handwritten digits from IDX files.")

    def _split_generators(self, dl_manager):
        return {
            split: self._generate_examples(*idx.load_mnist_split(dl_manager.manual_dir, split))
            for split in ("train", "test")
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
