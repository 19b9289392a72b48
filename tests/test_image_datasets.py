"""Fashion-MNIST and CIFAR-10 through the path users take: tiny files in the original
distribution formats, written here, prepared by TFDS from a local folder (offline) or
downloaded from a local HTTP server (online), then loaded by `load_images`."""

import functools
import gzip
import http.server
import io
import json
import math
import pickle
import shutil
import tarfile
import threading

import jax
import ml_collections
import numpy as np
import pytest

from genjax_lab.core.data import EpochBatcher
from genjax_lab.data import builders, images
from genjax_lab.data.idx import MNIST_FILES

_CIFAR_TRAIN_PER_BATCH, _TEST = 2, 3  # CIFAR: 5 train batches -> 10 train images


def _split_arrays(rng, shape, sizes: dict[str, int]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {
        split: (
            rng.integers(0, 256, (n, *shape), dtype=np.uint8),
            rng.integers(0, 10, n, dtype=np.uint8),
        )
        for split, n in sizes.items()
    }


def _idx_bytes(array: np.ndarray) -> bytes:
    """The IDX format: two zero bytes, type 0x08 (uint8), ndim, big-endian int32 sizes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(side).to_bytes(4, "big") for side in array.shape
    )
    return header + array.tobytes()


def _write_idx_folder(folder, splits) -> None:
    folder.mkdir()
    for split, (image_stem, label_stem) in MNIST_FILES.items():
        pixels, labels = splits[split]
        (folder / f"{image_stem}.gz").write_bytes(gzip.compress(_idx_bytes(pixels)))
        (folder / f"{label_stem}.gz").write_bytes(gzip.compress(_idx_bytes(labels)))


def _cifar_batches(splits) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    train_x, train_y = splits["train"]
    batches = {
        f"data_batch_{i + 1}": (train_x[i::5], train_y[i::5]) for i in range(5)
    }  # published order: batch 1 first; the loaded split is batches 1..5 concatenated
    return {**batches, "test_batch": splits["test"]}


def _cifar_expected(splits):
    batches = _cifar_batches(splits)
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    return {
        "train": tuple(np.concatenate(column) for column in zip(*train)),
        "test": splits["test"],
    }


def _write_cifar_archive(path, splits, binary: bool) -> None:
    """An archive as the CIFAR-10 page distributes it: pixels channel by channel (1,024 red
    bytes, rows first, then green, then blue); binary records are a label byte then those
    3,072 bytes; Python batches are pickled dicts of data [N, 3072] and a list of labels."""
    folder = "cifar-10-batches-bin" if binary else "cifar-10-batches-py"
    members = {}
    for name, (pixels, labels) in _cifar_batches(splits).items():
        planar = pixels.transpose(0, 3, 1, 2).reshape(len(pixels), -1)
        if binary:
            members[f"{name}.bin"] = np.concatenate([labels[:, None], planar], axis=1).tobytes()
        else:
            batch = {b"batch_label": name.encode(), b"labels": labels.tolist(), b"data": planar}
            members[name] = pickle.dumps(batch, protocol=2)
    members["batches.meta.txt" if binary else "batches.meta"] = b"airplane\n"
    with tarfile.open(path, "w:gz") as archive:
        for name, raw in members.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(raw)
            archive.addfile(info, io.BytesIO(raw))


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    """Tiny Fashion-MNIST and CIFAR-10 in their original formats, and the arrays written."""
    root = tmp_path_factory.mktemp("originals")
    rng = np.random.default_rng(0)
    fashion = _split_arrays(rng, (28, 28), {"train": 16, "test": _TEST})
    _write_idx_folder(root / "fashion", fashion)
    cifar = _split_arrays(rng, (32, 32, 3), {"train": 5 * _CIFAR_TRAIN_PER_BATCH, "test": _TEST})
    for version, binary in (("binary", True), ("python", False)):
        (root / version).mkdir()
        _write_cifar_archive(root / version / f"cifar-10-{version}.tar.gz", cifar, binary)
    return {"root": root, "fashion": fashion, "cifar": _cifar_expected(cifar)}


def _data_config(name: str, tfds_dir, binarize: str = "none", **dirs) -> ml_collections.ConfigDict:
    return images.image_data_config(name, binarize, tfds_dir=str(tfds_dir), **dirs)


def _sorted_rows(pixels: np.ndarray, labels: np.ndarray) -> list[bytes]:
    """The examples as a sorted list: TFDS stores them in an order of its own."""
    return sorted(bytes([int(y)]) + x.tobytes() for x, y in zip(pixels, labels))


def _assert_holds(dataset, written, channels: int) -> None:
    for split in ("train", "test"):
        pixels, labels = written[split]
        loaded = dataset[split]
        assert loaded["image"].dtype == np.uint8 and loaded["label"].dtype == np.int32
        assert loaded["image"].shape == (len(pixels), *pixels.shape[1:3], channels)
        assert _sorted_rows(loaded["image"].reshape(pixels.shape), loaded["label"]) == (
            _sorted_rows(pixels, labels)
        )


def test_fashion_mnist_from_its_idx_files_round_trips_in_a_seeded_order(originals, tmp_path):
    """Every pixel and label comes back; two preparations give the same order, and the
    training batches of one seed are the same over both (another seed: another order)."""
    folder = str(originals["root"] / "fashion")
    loads = [
        images.load_images(_data_config("fashion_mnist", tmp_path / d, fashion_mnist_dir=folder))
        for d in ("a", "b")
    ]
    _assert_holds(loads[0], originals["fashion"], channels=1)
    for split in ("train", "test"):
        for column in ("image", "label"):
            np.testing.assert_array_equal(loads[0][split][column], loads[1][split][column])

    def first_batches(dataset, seed):
        batcher = EpochBatcher(dataset["train"], 8, seed=seed)
        return np.concatenate([batcher.batch(step)["image"] for step in range(4)])

    np.testing.assert_array_equal(first_batches(loads[0], 7), first_batches(loads[1], 7))
    orders = {first_batches(loads[0], seed).tobytes() for seed in range(4)}
    assert len(orders) > 1


def test_cifar10_binary_and_python_archives_load_the_same_colour_images(originals, tmp_path):
    """Both official archives give every image channels last, exactly, in the same order."""
    loads = {
        version: images.load_images(
            _data_config(
                "cifar10", tmp_path / version, cifar10_dir=str(originals["root"] / version)
            )
        )
        for version in ("binary", "python")
    }
    _assert_holds(loads["binary"], originals["cifar"], channels=3)
    for split in ("train", "test"):
        for column in ("image", "label"):
            np.testing.assert_array_equal(
                loads["binary"][split][column], loads["python"][split][column]
            )


def test_read_cifar10_keeps_the_published_order_and_channel_layout(originals, tmp_path):
    """The reader alone, on the archive and on the folder it unpacks to: batches 1..5 in
    order, and byte k of a record's pixels is channel k // 1024, row (k % 1024) // 32."""
    archive = originals["root"] / "binary" / "cifar-10-binary.tar.gz"
    with tarfile.open(archive) as opened:
        opened.extractall(tmp_path, filter="data")
    for source in (archive, tmp_path / "cifar-10-batches-bin"):
        splits = builders.read_cifar10(source)
        for split in ("train", "test"):
            for got, want in zip(splits[split], originals["cifar"][split]):
                np.testing.assert_array_equal(got, want)
    raw = (tmp_path / "cifar-10-batches-bin" / "test_batch.bin").read_bytes()
    image = builders.read_cifar10(tmp_path / "cifar-10-batches-bin")["test"][0][0]
    assert image[0, 1, 2] == raw[1 + 2 * 1024 + 0 * 32 + 1]  # blue of row 0, column 1


def test_a_python_batch_naming_any_other_callable_is_refused(tmp_path):
    """A pickle runs whatever function it names: only NumPy's array rebuild is let through."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps(functools.partial(print, "ran"), protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="may not name functools.partial"):
        builders.read_cifar10(folder)


def test_missing_files_name_the_flag_and_the_expected_files(originals, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    config = _data_config("cifar10", tmp_path / "tfds", cifar10_dir=str(empty))
    with pytest.raises(
        FileNotFoundError,
        match=r"config\.data\.cifar10_dir=.*cifar-10-binary\.tar\.gz or cifar-10-python\.tar\.gz",
    ):
        images.load_images(config)
    (empty / "train-images-idx3-ubyte.gz").write_bytes(b"")
    config = _data_config("fashion_mnist", tmp_path / "tfds", fashion_mnist_dir=str(empty))
    with pytest.raises(
        FileNotFoundError, match=r"config\.data\.fashion_mnist_dir=.*t10k-labels-idx1-ubyte"
    ) as refused:
        images.load_images(config)
    assert "train-images" not in str(refused.value)


def test_offline_without_a_folder_names_the_flag_and_the_files(monkeypatch, tmp_path):
    """Unprepared, no folder and the download server unreachable (a closed local port): a
    message at once, instead of TFDS retrying the download for minutes."""
    monkeypatch.setattr(
        builders.Cifar10Files, "download_url", classmethod(lambda cls: "http://127.0.0.1:9/")
    )
    with pytest.raises(
        FileNotFoundError,
        match=r"config\.data\.name='cifar10'.* cannot be reached; offline, put "
        r"cifar-10-binary\.tar\.gz .* --config\.data\.cifar10_dir=FOLDER",
    ):
        images.load_images(_data_config("cifar10", tmp_path))


def test_colour_images_refuse_binarization_and_keep_8_bit_levels(originals, tmp_path):
    folder = str(originals["root"] / "binary")
    for binarize in ("dynamic", "static"):
        config = _data_config("cifar10", tmp_path, binarize, cifar10_dir=folder)
        with pytest.raises(
            ValueError, match=r"config\.data\.binarize=.* 3 colour channels.*binarize='none'"
        ):
            images.load_images(config)
    pixels = originals["cifar"]["test"][0]
    scaled = images.prepare_images(pixels, "none", jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(scaled) * 255.0, pixels.astype(np.float32))


def _serve(folder):
    """An HTTP server of `folder`'s files on a free local port; returns (server, url)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}/"


_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.mark.parametrize(
    "name, served, written",
    [
        ("mnist", "fashion", "fashion"),  # the same four IDX files
        ("fashion_mnist", "fashion", "fashion"),
        ("cifar10", "binary", "cifar"),
    ],
)
def test_without_a_folder_the_files_are_downloaded_through_tfds(
    monkeypatch, originals, tmp_path, name, served, written
):
    """No `<name>_dir`: TFDS downloads the original files from the dataset's address (here a
    local server standing in for it) and the same reader prepares them. TFDS's default
    manual folder, shared by every dataset, is passed over when it holds another's files."""
    for variable in _PROXY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
        monkeypatch.delenv(variable.upper(), raising=False)
    server, url = _serve(originals["root"] / served)
    builder_cls = {
        "mnist": builders.MnistIdx,
        "fashion_mnist": builders.FashionMnistIdx,
        "cifar10": builders.Cifar10Files,
    }
    if name == "cifar10":
        url += "cifar-10-binary.tar.gz"
    monkeypatch.setattr(builder_cls[name], "download_url", classmethod(lambda cls: url))
    other = originals["root"] / ("fashion" if name == "cifar10" else "binary")
    shutil.copytree(other, tmp_path / "downloads" / "manual")
    try:
        dataset = images.load_images(_data_config(name, tmp_path))
    finally:
        server.shutdown()
    _assert_holds(dataset, originals[written], channels=3 if name == "cifar10" else 1)


def test_a_tiny_vae_on_cifar10_trains_to_a_finite_bits_per_dim(originals, tmp_path):
    """The experiment entry on the tiny CIFAR-10 files, offline: a few steps of the
    discretized-logistic VAE end with test -log p(x) in bits per dimension."""
    from experiments import vae as vae_experiment
    from experiments.configs import vae_cifar10

    config = vae_cifar10.get_config("tiny")
    config.data.cifar10_dir = str(originals["root"] / "python")
    config.data.tfds_dir = str(tmp_path / "tfds")
    vae_experiment.main(config, tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    for score in ("neg_elbo", "nll_iwae2", "test_nll"):
        bits = summary[f"{score}_bits_per_dim"]
        assert math.isfinite(bits) and bits > 0
        assert bits == pytest.approx(summary[score] / (32 * 32 * 3 * math.log(2)), rel=1e-12)


def test_colour_grids_are_drawn(originals, tmp_path):
    """A colour VAE's report draws its samples and reconstructions as colour PNG grids."""
    from PIL import Image

    from genjax_lab.core import plots

    pixels = originals["cifar"]["test"][0]
    plots.save_grid(tmp_path / "grid.png", pixels / 255.0, rows=1, scale=1, pad=0)
    with Image.open(tmp_path / "grid.png") as grid:
        np.testing.assert_array_equal(np.asarray(grid.convert("RGB")), np.hstack(list(pixels)))
