"""The streaming input path: columns read from ArrayRecord files on demand give exactly the
batches of the in-memory path, read only this host's records, and resume like it."""

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from genjax_lab.core import data as data_lib
from genjax_lab.core import loop as loop_lib
from genjax_lab.core import streaming
from genjax_lab.data import builders
from genjax_lab.data.images import load_images
from tests.helpers import final_state

# The dtypes of the in-memory image splits (genjax_lab.data.images).
DTYPES = {"image": np.uint8, "label": np.int32}


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    """The embedded digits (1,437 train / 360 test) prepared as ArrayRecord files."""
    directory = tmp_path_factory.mktemp("tfds")
    builders.prepare(builders.SklearnDigits(data_dir=str(directory), file_format="array_record"))
    return directory


def _data_config(tfds_dir) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {"name": "digits", "binarize": "dynamic", "mnist_dir": "", "tfds_dir": str(tfds_dir)}
    )


def _streamed(tfds_dir) -> data_lib.Dataset:
    builder = builders.SklearnDigits(data_dir=str(tfds_dir), file_format="array_record")
    return data_lib.Dataset(
        {split: builders.record_columns(builder, split, DTYPES) for split in ("train", "test")}
    )


def _assert_same_batch(streamed: dict, in_memory: dict) -> None:
    assert streamed.keys() == in_memory.keys()
    for name, value in in_memory.items():
        assert streamed[name].dtype == value.dtype and streamed[name].shape == value.shape, name
        np.testing.assert_array_equal(streamed[name], value, err_msg=name)


class CountingSource:
    """Records {'x': [3] int64, 'label': int} by index, counting every read."""

    def __init__(self, size: int):
        self.size, self.reads = size, []

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        self.reads.append(index)
        return {"x": np.arange(3) + 10 * index, "label": index % 7}

    def arrays(self) -> dict[str, np.ndarray]:
        """The same data held in memory."""
        return {
            "x": np.arange(3)[None] + 10 * np.arange(self.size)[:, None],
            "label": (np.arange(self.size) % 7).astype(np.int32),
        }


def _counting_columns(source: CountingSource) -> dict[str, streaming.RecordColumn]:
    return streaming.record_columns(
        source, {"x": streaming.Feature((3,), np.int64), "label": streaming.Feature((), np.int32)}
    )


@pytest.mark.parametrize("hosts", [1, 2, 4])
def test_streamed_batches_equal_in_memory_batches(monkeypatch, tfds_dir, hosts):
    """Three epochs of 1,437 digits in global batches of 64 (the last one 29 real rows, so a
    host's whole share can be padding), then the test split in eval batches, on each host."""
    in_memory, streamed = load_images(_data_config(tfds_dir)), _streamed(tfds_dir)
    monkeypatch.setattr(data_lib.jax, "process_count", lambda: hosts)
    for host in range(hosts):
        monkeypatch.setattr(data_lib.jax, "process_index", lambda host=host: host)
        reference = data_lib.EpochBatcher(in_memory["train"], 64, seed=5)
        batcher = data_lib.EpochBatcher(streamed["train"], 64, seed=5)
        assert batcher.steps_per_epoch == reference.steps_per_epoch == 23
        for step in range(3 * 23):
            _assert_same_batch(batcher.batch(step), reference.batch(step))
        pairs = zip(
            data_lib.eval_batches(streamed["test"], 80),
            data_lib.eval_batches(in_memory["test"], 80),
            strict=True,
        )
        for streamed_batch, in_memory_batch in pairs:
            _assert_same_batch(streamed_batch, in_memory_batch)


def test_resume_from_a_saved_position_mid_epoch(tfds_dir):
    """A fresh batcher over freshly opened files, started at the step a checkpoint names
    (its position mid-epoch 1), continues with the batches of the uninterrupted one."""
    batcher = data_lib.EpochBatcher(_streamed(tfds_dir)["train"], 64, seed=1)
    uninterrupted = [batcher.batch(step) for step in range(40)]
    epoch, position = batcher.position(30)
    assert (epoch, position) == (1, 7 * 64)
    resumed = data_lib.EpochBatcher(_streamed(tfds_dir)["train"], 64, seed=1)
    step = epoch * resumed.steps_per_epoch + position // resumed.global_batch_size
    for offset in range(10):
        _assert_same_batch(resumed.batch(step + offset), uninterrupted[30 + offset])


def test_only_this_hosts_records_are_read(monkeypatch):
    """Each batch reads its host's rows once each (all features from one read), the padding
    row once; the whole epoch reads each record once over the hosts, never the dataset.
    (Read synchronously, so that the reads of a step are those made while it is asked for.)"""
    monkeypatch.setattr(data_lib.jax, "process_count", lambda: 2)
    reads_per_host = []
    synchronous = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)
    for host in range(2):
        monkeypatch.setattr(data_lib.jax, "process_index", lambda host=host: host)
        source = CountingSource(100)
        batcher = data_lib.EpochBatcher(
            _counting_columns(source), 16, seed=0, read_options=synchronous
        )
        reference = data_lib.EpochBatcher(source.arrays(), 16, seed=0)
        order = data_lib.index_shuffle(np.arange(100), 100, data_lib.epoch_seed(0, 0))
        for step in range(batcher.steps_per_epoch):
            source.reads.clear()
            _assert_same_batch(batcher.batch(step), reference.batch(step))
            rows = order[step * 16 : (step + 1) * 16][host * 8 : (host + 1) * 8]
            padding = [0] if len(rows) < 8 else []  # rows 96..99 are real, then padding
            assert sorted(source.reads) == sorted({*rows.tolist(), *padding}), step
            reads_per_host.append(rows)
    assert sorted(np.concatenate(reads_per_host).tolist()) == list(range(100))


def test_column_indexing_and_views():
    source = CountingSource(50)
    column = _counting_columns(source)["x"]
    assert column.shape == (50, 3) and column.dtype == np.int64 and len(column) == 50
    view = column[10:40:3]
    assert len(view) == 10 and not source.reads  # a slice reads nothing
    rows = np.array([[0, -1]])
    np.testing.assert_array_equal(view[rows], source.arrays()["x"][10:40:3][rows])
    np.testing.assert_array_equal(view[2], source.arrays()["x"][16])
    np.testing.assert_array_equal(np.asarray(view), source.arrays()["x"][10:40:3])
    with pytest.raises(IndexError):
        view[10]
    with pytest.raises(TypeError):
        view[np.array([0.5])]


def test_a_record_of_the_wrong_shape_is_named():
    columns = streaming.record_columns(CountingSource(5), {"x": streaming.Feature((4,), np.int64)})
    with pytest.raises(
        ValueError, match=r"feature 'x' of a record has shape \(3,\), expected \(4,\)"
    ):
        columns["x"][np.array([1])]


def test_a_training_run_streamed_ends_bitwise_equal_to_the_in_memory_run(tfds_dir, tmp_path):
    """The tiny conditional VAE of vae_digits.py (its family reads label frequencies and
    a preview from the splits), through the whole loop; the streamed run is also stopped
    at step 20 and resumed from its checkpoint."""
    from experiments.configs import vae_digits
    from genjax_lab.models import vae

    config = vae_digits.get_config("tiny")
    config.data.tfds_dir = str(tfds_dir)
    runs = {}
    for name, dataset in (
        ("in_memory", load_images(config.data)),
        ("streamed", _streamed(tfds_dir)),
    ):
        family = vae.family_for(config, dataset).as_family()
        if name == "streamed":
            config.num_steps = 20
            assert loop_lib.train_and_evaluate(config, tmp_path / name, family, dataset).step == 20
            config.num_steps = 40
        runs[name] = loop_lib.train_and_evaluate(config, tmp_path / name, family, dataset)
    assert runs["streamed"].step == runs["in_memory"].step == 40
    assert runs["streamed"].metrics == runs["in_memory"].metrics
    # (step, SHA-256 of the state's bytes) of the newest checkpoint
    assert final_state(tmp_path / "streamed")[:2] == final_state(tmp_path / "in_memory")[:2]


def test_load_images_streams_when_asked(tfds_dir):
    """`data.streaming` gives RecordColumns holding the in-memory arrays; a static
    binarization (sampled over a whole split) is refused naming both keys."""
    config = _data_config(tfds_dir)
    in_memory = load_images(config)
    config.streaming = True
    streamed = load_images(config)
    for split in ("train", "test"):
        for name, array in in_memory[split].items():
            column = streamed[split][name]
            assert isinstance(column, streaming.RecordColumn)
            assert column.dtype == array.dtype and column.shape == array.shape
            np.testing.assert_array_equal(np.asarray(column), array)
    config.binarize = "static"
    with pytest.raises(ValueError, match=r"config\.data\.streaming.*config\.data\.binarize"):
        load_images(config)


def test_gan_and_boltzmann_read_their_pixel_means_in_chunks(tfds_dir):
    """The families that set biases from the training pixel means get the same float64 means
    from a streamed split, read a chunk at a time, as from the array in memory."""
    from genjax_lab.models import boltzmann, gan

    in_memory, streamed = load_images(_data_config(tfds_dir)), _streamed(tfds_dir)
    column = streamed["train"]["image"]
    np.testing.assert_array_equal(
        data_lib.column_mean(column, chunk=100),
        in_memory["train"]["image"].mean(0, dtype=np.float64),
    )
    gan_config = gan.default_config()
    gan_config.data.name = "digits"
    gan_config.model.marginal_output_bias = True
    rbm_config = boltzmann.default_config()
    rbm_config.data.binarize = "dynamic"
    rbm_config.model.num_chains = 96  # a multiple of the 1 or 8 test devices
    for family_for, config, field in (
        (gan.family_for, gan_config, "pixel_means"),
        (boltzmann.family_for, rbm_config, "data_mean"),
    ):
        means = [
            np.asarray(getattr(family_for(config, dataset), field))
            for dataset in (in_memory, streamed)
        ]
        np.testing.assert_array_equal(*means)


def _pixels(batch):
    """Flattened pixels in [0, 1]: [B, 64]."""
    return batch["image"].reshape(batch["image"].shape[0], -1).astype(jnp.float32) / 255.0


@pytest.mark.parametrize("kind", ["gaussian", "bernoulli"])
def test_naive_bayes_fits_a_streamed_split_as_the_whole_array(tfds_dir, kind):
    """Statistics summed over streamed batches of 96 on the 8-device mesh (the last one
    padded) give the parameters of the one-shot fit on the array in memory."""
    from genjax_lab.models import naive_bayes

    in_memory = load_images(_data_config(tfds_dir))["train"]
    x = in_memory["image"].reshape(len(in_memory["image"]), -1).astype(np.float32) / 255.0
    config = naive_bayes.default_config()
    config.update(
        {"kind": kind, "num_classes": 10, "binarize": 0.5 if kind == "bernoulli" else 0.0}
    )
    whole, _ = naive_bayes.fit(jax.random.key(0), {"x": x, "y": in_memory["label"]}, config)
    streamed, _ = naive_bayes.fit_split(
        _streamed(tfds_dir)["train"], config, features=_pixels, labels="label", batch_size=96
    )
    for got, want in zip(jax.tree.leaves(streamed), jax.tree.leaves(whole), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_gmm_em_on_a_streamed_split_equals_em_on_the_whole_array(tfds_dir):
    from genjax_lab.models import gmm

    x = load_images(_data_config(tfds_dir))["train"]["image"]
    x = x.reshape(len(x), -1).astype(np.float32) / 255.0
    start = gmm.init_kmeans(jax.random.key(0), jnp.asarray(x), 5, "diag", reg_covar=1e-3)
    whole, whole_ll = gmm.em(start, jnp.asarray(x), num_iters=4, reg_covar=1e-3)
    streamed, streamed_ll = gmm.em_split(
        start,
        _streamed(tfds_dir)["train"],
        num_iters=4,
        features=_pixels,
        reg_covar=1e-3,
        batch_size=96,
    )
    np.testing.assert_allclose(streamed_ll, whole_ll, rtol=1e-5)
    # Pixels near 0 give components variances near reg_covar: the two runs' statistics, summed
    # in another order, can fall on either side of gmm.model.shared_centre_is_exact's limit,
    # and its shared-centre expansion is exact to eps * 1e3 (1.2e-4) relative.
    for got, want in zip(jax.tree.leaves(streamed), jax.tree.leaves(whole), strict=True):
        np.testing.assert_allclose(got, want, rtol=3e-4, atol=1e-5)
