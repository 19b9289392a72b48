"""Image datasets through TFDS: uint8 arrays held in memory, or streamed from the prepared
ArrayRecord files (`data.streaming`) when a split does not fit in host memory.

`digits` is the embedded default (scikit-learn's 8x8 digits, prepared offline). `mnist`,
`fashion_mnist` (28x28 grey levels) and `cifar10` (32x32 colour) are prepared from their
original files: downloaded from where TFDS's builder of that name downloads them, or, with
`config.data.<name>_dir` set (`mnist_dir`, `fashion_mnist_dir`, `cifar10_dir`), read from
that folder, for machines without internet.
"""

import math
import os
import pathlib
import urllib.parse
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from jax.experimental import multihost_utils

from genjax_lab.core import checks
from genjax_lab.core.data import Dataset
from genjax_lab.data import builders
from genjax_lab.data.builders import SklearnDigits, prepare, reachable, record_columns

# The datasets prepared from their original files, by `config.data.name`.
_FILES_BUILDERS = {
    "mnist": builders.MnistIdx,
    "fashion_mnist": builders.FashionMnistIdx,
    "cifar10": builders.Cifar10Files,
}
DATASETS = ("digits", *_FILES_BUILDERS)
BINARIZATIONS = ("dynamic", "static", "none")
_STATIC_BINARIZATION_SEED = 1234  # one fixed sample, the same on every run and host
_DTYPES = {"image": np.uint8, "label": np.int32}


def default_tfds_dir() -> pathlib.Path:
    return pathlib.Path(
        os.environ.get("TFDS_DATA_DIR", pathlib.Path.home() / "tensorflow_datasets")
    )


def image_data_config(name: str, binarize: str, **extra) -> ml_collections.ConfigDict:
    """The `config.data` of an image family: dataset `name` (DATASETS), `binarize`
    (BINARIZATIONS), `<name>_dir` (the original files, offline: `mnist_dir`,
    `fashion_mnist_dir`, `cifar10_dir`), `tfds_dir` (default: $TFDS_DATA_DIR or
    ~/tensorflow_datasets), `streaming` (read the splits batch by batch instead of loading
    them) and the family's `extra` keys."""
    return ml_collections.ConfigDict(
        {
            "name": name,
            "binarize": binarize,
            **{files_dir_key(dataset): "" for dataset in _FILES_BUILDERS},
            "tfds_dir": "",
            "streaming": False,
            **extra,
        }
    )


def files_dir_key(name: str) -> str:
    """The `config.data` key of the folder holding dataset `name`'s original files."""
    return f"{name}_dir"


def _files_dir(data_config: ml_collections.ConfigDict) -> str:
    # .get: configs written before a dataset existed lack its key
    return data_config.get(files_dir_key(data_config.name), "")


def _builder(data_config: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
    data_dir = data_config.tfds_dir or str(default_tfds_dir())
    if data_config.name == "digits":
        return SklearnDigits(data_dir=data_dir, file_format="array_record")
    if data_config.name not in _FILES_BUILDERS:
        raise ValueError(f"config.data.name must be one of {DATASETS}, got {data_config.name!r}")
    builder_cls = _FILES_BUILDERS[data_config.name]
    folder = _files_dir(data_config)
    if folder:
        flag = f"config.data.{files_dir_key(data_config.name)}={folder!r}"
        if not pathlib.Path(folder).is_dir():
            raise FileNotFoundError(f"{flag}: no such folder")
        missing = builder_cls.missing_files(folder)
        if missing:
            raise FileNotFoundError(f"{flag}: the folder lacks {', '.join(missing)}")
    return builder_cls(data_dir=data_dir, file_format="array_record")


def _prepare(builder, data_config) -> None:
    download_config = None
    folder = _files_dir(data_config)
    if folder:
        download_config = tfds.download.DownloadConfig(manual_dir=folder)
    # data_path is what download_and_prepare looks for before it downloads; offline, it
    # would retry the download for minutes without a word.
    elif (
        data_config.name in _FILES_BUILDERS
        and not builder.data_path.exists()
        and not reachable(builder.download_url())
    ):
        name = data_config.name
        server = urllib.parse.urlsplit(builder.download_url()).netloc
        raise FileNotFoundError(
            f"config.data.name={name!r}: {name} is not prepared in {builder.data_dir_root} and "
            f"its download server ({server}) cannot be reached; offline, put "
            f"{builder.ORIGINAL_FILES} in a folder and pass "
            f"--config.data.{files_dir_key(name)}=FOLDER"
        )
    prepare(builder, download_config)


def _read_split(builder, split: str) -> dict[str, np.ndarray]:
    source = builder.as_data_source(split)
    records = source.__getitems__(range(len(source)))
    return {
        name: np.stack([r[name] for r in records]).astype(dtype) for name, dtype in _DTYPES.items()
    }


def load_images(data_config: ml_collections.ConfigDict) -> Dataset:
    """Train and test splits: image uint8 [N, H, W, C] (C = 1, or 3 for cifar10), label
    int32 [N]. A colour dataset takes `binarize='none'` only.

    Process 0 prepares the TFDS files; the others wait, then every host reads them: whole,
    or with `streaming` as `streaming.RecordColumn`s that the input pipeline reads batch by
    batch, each host only its rows (the same batches, bitwise). With `binarize='static'`
    pixels are sampled once, with a fixed seed, to {0, 255}: that needs the split in memory.
    """
    if data_config.binarize not in BINARIZATIONS:
        raise ValueError(
            f"config.data.binarize must be one of {BINARIZATIONS}, got {data_config.binarize!r}"
        )
    streaming = bool(data_config.get("streaming", False))
    if streaming and data_config.binarize == "static":
        raise ValueError(
            "config.data.streaming=True needs config.data.binarize 'dynamic' or 'none': a static "
            "binarization is sampled over the whole split in memory"
        )
    tfds.disable_progress_bar()
    builder = _builder(data_config)
    channels = builder.info.features["image"].shape[-1]
    if channels != 1 and data_config.binarize != "none":
        raise ValueError(
            f"config.data.binarize={data_config.binarize!r} turns grey levels into black and "
            f"white, but config.data.name={data_config.name!r} has {channels} colour channels: "
            "use config.data.binarize='none' (8-bit pixels, as the VAE's discretized-logistic "
            "likelihood, config.model.likelihood='logistic', takes them)"
        )
    if jax.process_index() == 0:
        _prepare(builder, data_config)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("tfds prepared")
    builder = _builder(data_config)  # made after preparation, so it sees the splits
    if streaming:
        return Dataset(
            {split: record_columns(builder, split, _DTYPES) for split in ("train", "test")}
        )
    splits = {split: _read_split(builder, split) for split in ("train", "test")}
    if data_config.binarize == "static":
        rng = np.random.default_rng(_STATIC_BINARIZATION_SEED)
        for arrays in splits.values():
            probs = arrays["image"] / 255.0
            arrays["image"] = np.where(rng.random(probs.shape) < probs, 255, 0).astype(np.uint8)
    return Dataset(splits)


def bits_per_dim(nats: float, image_shape: Sequence[int]) -> float:
    """-log p(x) of one image in nats -> bits per dimension (one colour value of a pixel),
    the unit of colour-image likelihoods: nats / (H * W * C * ln 2)."""
    return float(nats) / (math.prod(image_shape) * math.log(2))


def label_log_prior(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """log p(y) from label frequencies, [num_classes]; absent classes get one pseudo-count."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    counts[counts == 0] = 1.0
    return np.log(counts / counts.sum()).astype(np.float32)


def _check_pixels(images, binarize: str = "dynamic", **_) -> None:
    checks.check_choice("binarize", binarize, BINARIZATIONS)
    dtype = np.asarray(images).dtype
    if dtype != np.uint8:
        raise checks.DTypeError(f"images must be uint8 pixels (0..255), got {dtype}")


@checks.validated(_check_pixels)
def prepare_images(images: jax.Array, binarize: str, key: jax.Array) -> jax.Array:
    """uint8 [B, H, W, C] -> float32 in [0, 1]; 'dynamic' draws fresh binary pixels per pass."""
    if binarize == "dynamic":
        return bernoulli_pixels(key, images)
    return images.astype(jnp.float32) / 255.0  # 'static' was binarized at load; 'none': grey


def bernoulli_pixels(key: jax.Array, images: jax.Array) -> jax.Array:
    """x ~ Bernoulli(images / 255) per pixel, float32 {0, 1}, for uint8 images [B, ...].

    Draws 16-bit uniforms, two from each 32-bit word, because random bits dominate the
    cost of a small model's step on a CPU: half the bits of `jax.random.bernoulli`. The
    probability is p = round(v * 65536 / 255) / 65536, within 8e-6 of v / 255. The bits
    are laid out per example, so they do not depend on how the batch is sharded.
    """
    flat = images.reshape(images.shape[0], -1)
    pixels = flat.shape[1]
    words = jax.random.bits(key, (flat.shape[0], (pixels + 1) // 2), jnp.uint32)
    halves = jax.lax.bitcast_convert_type(words, jnp.uint16)
    uniform16 = halves.reshape(flat.shape[0], -1)[:, :pixels]
    threshold = (flat.astype(jnp.uint32) * 65536 + 127) // 255
    return (uniform16.astype(jnp.uint32) < threshold).astype(jnp.float32).reshape(images.shape)
