"""The input pipeline: batches are a function of (seed, step), split across hosts exactly."""

import numpy as np
import pytest

from genjax_lab.core import data as data_lib
from genjax_lab.data.idx import load_mnist_split
from tests.helpers import shared_data


def _arrays(n=103):
    return {"x": np.arange(n, dtype=np.int64) * 10, "label": np.arange(n, dtype=np.int32) % 7}


@pytest.mark.parametrize("hosts", [2, 4])
def test_host_shares_concatenate_to_the_one_host_batch(monkeypatch, hosts):
    """What each of `hosts` processes reads, put together, is what one process reads."""
    single = data_lib.EpochBatcher(_arrays(), 16, seed=3)
    expected = [single.batch(step) for step in range(20)]
    monkeypatch.setattr(data_lib.jax, "process_count", lambda: hosts)
    shares = []
    for host in range(hosts):
        monkeypatch.setattr(data_lib.jax, "process_index", lambda host=host: host)
        batcher = data_lib.EpochBatcher(_arrays(), 16, seed=3)
        shares.append([batcher.batch(step) for step in range(20)])
    for step in range(20):
        for name in ("x", "label", "mask"):
            joined = np.concatenate([shares[h][step][name] for h in range(hosts)])
            np.testing.assert_array_equal(joined, expected[step][name])


def test_every_example_once_per_epoch_and_padding_masked():
    batcher = data_lib.EpochBatcher(_arrays(), 16, seed=0)
    assert batcher.steps_per_epoch == 7
    for epoch in range(2):
        batches = [batcher.batch(epoch * 7 + i) for i in range(7)]
        seen = np.concatenate([b["x"][b["mask"] > 0] for b in batches])
        assert sorted(seen.tolist()) == sorted(_arrays()["x"].tolist())
        assert batches[-1]["mask"].sum() == 103 - 6 * 16
    assert not np.array_equal(batcher.batch(0)["x"], batcher.batch(7)["x"])  # reshuffled
    again = data_lib.EpochBatcher(_arrays(), 16, seed=0)
    np.testing.assert_array_equal(again.batch(9)["x"], batcher.batch(9)["x"])
    assert batcher.position(9) == (1, 32)


def test_eval_batches_cover_the_split_once():
    batches = list(data_lib.eval_batches(_arrays(), 40))
    seen = np.concatenate([b["x"][b["mask"] > 0] for b in batches])
    np.testing.assert_array_equal(seen, _arrays()["x"])


def test_batch_size_must_divide_over_devices():
    with pytest.raises(ValueError, match="config.batch_size=12 .* device count 8"):
        data_lib.EpochBatcher(_arrays(), 12, seed=0)


def test_mnist_idx_files_read_with_their_published_shapes():
    images, labels = load_mnist_split(shared_data("mnist"), "test")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist()[:3] == [980, 1135, 1032]
