"""experiments/naive_bayes.py: the tiny spam and learning-curve runs end to end through their
replication configs (summary keys, accuracies well above chance, our naive Bayes equal to
scikit-learn's, PNGs), the helpers against brute-force references, and bad input naming
the config key."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from sklearn import metrics as sk_metrics

from genjax_lab.core import replication as rep
from tests.helpers import REPO, assert_ok, process_env, shared_data

nbx = rep.load_module("experiments/naive_bayes.py")  # a script: its functions


def _run(tmp_path: pathlib.Path, config: str, *flags: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        str(REPO / "experiments" / "naive_bayes.py"),
        f"--config={REPO}/{config}",
        f"--workdir={tmp_path / 'run'}",
        *flags,
    ]
    return subprocess.run(
        command,
        env=process_env(tmp_path / "tfds"),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        check=False,
    )


def _summary_and_png(workdir: pathlib.Path, png: str) -> dict:
    summary = json.loads((workdir / "summary.json").read_text())
    with Image.open(workdir / png) as image:
        image.load()
        assert image.format == "PNG" and image.width > 200 and image.height > 200
    return summary


def test_tiny_spam_end_to_end(tmp_path):
    spam = shared_data("text/SMSSpamCollection")
    assert_ok(
        _run(
            tmp_path, "experiments/replications/spam_nb.py:tiny", f"--config.data.spam_path={spam}"
        )
    )
    summary = _summary_and_png(tmp_path / "run", "spam_roc.png")
    assert summary["num_train"] == 1200 and summary["num_test"] == 300
    # Spam is 13%: chance-level accuracy is 0.87.
    assert summary["nb_accuracy"] > 0.95 and summary["nb_auc"] > 0.97
    assert summary["logistic_accuracy"] > 0.93 and summary["logistic_auc"] > 0.97
    # Our multinomial naive Bayes is scikit-learn's on the same counts.
    assert summary["nb_sklearn_prediction_agreement"] == 1.0
    for metric in ("accuracy", "precision", "recall", "auc"):
        assert summary[f"nb_{metric}"] == pytest.approx(summary[f"sklearn_nb_{metric}"], abs=1e-6)
    replication, _ = rep.load("spam_nb")
    for row in replication.rows:
        assert row.passes(summary[row.metric], "tiny"), (row.label, summary[row.metric])


def test_tiny_learning_curves_end_to_end(tmp_path):
    assert_ok(_run(tmp_path, "experiments/replications/ng_jordan.py:bundled,tiny"))
    summary = _summary_and_png(tmp_path / "run", "learning_curves.png")
    curves = json.loads((tmp_path / "run" / "learning_curves.json").read_text())
    config = rep.load_module("experiments/replications/ng_jordan.py").get_config("bundled,tiny")
    for name in config.datasets.split(","):
        assert [r["size"] for r in curves[name]["rows"]] == list(config.curves[name].sizes)
        for key in (
            "nb_error_small",
            "lr_error_small",
            "nb_error_large",
            "lr_error_large",
            "crossing_size",
            "lr_minus_nb_error_small_n",
            "nb_minus_lr_error_large_n",
        ):
            assert np.isfinite(summary[f"{name}_{key}"]), (name, key)
        # More data helps both, and the largest training sets are far better than chance.
        assert summary[f"{name}_nb_error_large"] < summary[f"{name}_nb_error_small"]
        assert summary[f"{name}_lr_error_large"] < summary[f"{name}_lr_error_small"]
        assert summary[f"{name}_lr_error_large"] < 0.12 and summary[f"{name}_nb_error_large"] < 0.2
    replication, _ = rep.load("ng_jordan")
    for row in replication.rows:
        if row.run == "bundled" and row.checked("tiny"):
            assert row.passes(summary[row.metric], "tiny"), (row.label, summary[row.metric])


def test_bad_spam_input_names_the_config_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.data.spam_path"):
        nbx.read_spam(str(tmp_path / "nowhere"))
    bad = tmp_path / "bad.txt"
    bad.write_text("ham\thello\nspam no tab here\n")
    with pytest.raises(ValueError, match="config.data.spam_path: line 2"):
        nbx.read_spam(str(bad))
    bad.write_text("ham\thello\n\nspam\tWIN a prize\n")
    messages, y = nbx.read_spam(str(bad))
    assert messages == ["hello", "WIN a prize"] and y.tolist() == [0, 1]


def test_stratified_split_keeps_class_proportions():
    y = np.array([0] * 80 + [1] * 20)
    train, test = nbx.stratified_split(y, 0.25, seed=3)
    assert np.intersect1d(train, test).size == 0 and len(train) + len(test) == 100
    assert np.sum(y[test] == 1) == 5 and np.sum(y[test] == 0) == 20
    again = nbx.stratified_split(y, 0.25, seed=3)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], test)


def test_draw_indices_cover_every_class_and_hold_out_the_test_set():
    y = np.repeat(np.arange(4), [50, 30, 15, 5])
    train, test = nbx.draw_indices(y, 6, 20, 30, np.random.default_rng(0))
    assert train.shape == (20, 6) and test.shape == (20, 30)
    for tr, te in zip(train, test):
        assert np.intersect1d(tr, te).size == 0 and len(np.unique(tr)) == 6
        assert set(y[tr]) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="below the 4 classes"):
        nbx.draw_indices(y, 3, 2, 10, np.random.default_rng(0))


def test_binary_metrics_match_definitions():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    score = np.clip(0.3 * y + rng.uniform(0, 0.7, 200), 0, 1)
    got = nbx.binary_metrics(y, score)
    predicted = score > 0.5
    tp = np.sum(predicted & (y == 1))
    assert got["accuracy"] == pytest.approx(np.mean(predicted == y))
    assert got["precision"] == pytest.approx(tp / predicted.sum())
    assert got["recall"] == pytest.approx(tp / np.sum(y == 1))
    # AUC = P(score of a random positive > score of a random negative), by brute force.
    pos, neg = score[y == 1], score[y == 0]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert got["auc"] == pytest.approx(pairs) and got["auc"] == pytest.approx(
        sk_metrics.roc_auc_score(y, score)
    )


def test_crossing_size_and_size_buckets():
    rows = lambda nb, lr: [
        {"size": s, "nb_error": a, "lr_error": b} for s, a, b in zip((10, 20, 40, 80), nb, lr)
    ]
    assert (
        nbx.crossing_size(rows((0.2, 0.15, 0.1, 0.09), (0.3, 0.14, 0.11, 0.05))) == 80
    )  # 20 is not final
    assert nbx.crossing_size(rows((0.2, 0.15, 0.1, 0.09), (0.3, 0.16, 0.09, 0.05))) == 40
    assert (
        nbx.crossing_size(rows((0.2, 0.15, 0.1, 0.09), (0.3, 0.2, 0.12, 0.1))) == -1
    )  # never crosses
    assert (
        nbx.crossing_size(rows((0.3, 0.2, 0.1, 0.09), (0.2, 0.1, 0.05, 0.04))) == -1
    )  # LR better throughout
    assert nbx.size_buckets((4, 8, 16, 17, 100, 400, 401), 4.0) == [
        [4, 8, 16],
        [17],
        [100, 400],
        [401],
    ]


def test_shared_variance_gaussian_matches_pooled_numpy():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(60, 3)) * np.array([1.0, 5.0, 0.2]) + rng.integers(0, 2, (60, 1))
    y = rng.integers(0, 3, 60)
    mask = (np.arange(60) < 50).astype(np.float32)  # the last 10 rows are padding
    params = nbx.fit_naive_bayes(
        x.astype(np.float32), y.astype(np.int32), mask, 3, "gaussian_shared", 1e-2, 0.0
    )
    xr, yr = x[:50], y[:50]
    within = sum(((xr[yr == c] - xr[yr == c].mean(0)) ** 2).sum(0) for c in range(3)) / 50
    expected = within + 1e-2 * xr.var(0).max()
    np.testing.assert_allclose(np.asarray(params.var), np.broadcast_to(expected, (3, 3)), rtol=1e-4)
    np.testing.assert_allclose(
        np.asarray(params.mean), [xr[yr == c].mean(0) for c in range(3)], rtol=1e-4, atol=1e-5
    )


@pytest.mark.parametrize("name", ["spam_nb", "ng_jordan"])
def test_replication_configs_load_for_every_schedule(name):
    replication, module = rep.load(name)
    for run in replication.runs:
        for schedule in rep.SCHEDULES:
            config = module.get_config(replication.config_arg(run, schedule))
            assert config.kind in nbx.KINDS


def test_shared_variance_gaussian_keeps_its_digits_when_the_mean_dwarfs_the_spread():
    """Pooled from central moments: sum_sq - sum^2 / n in float32 cancels every digit of a
    variance of 1e-4 about a mean of 1e3 (issue #17's failure, in the experiment's pooling)."""
    rng = np.random.default_rng(4)
    y = np.arange(400) % 2
    x = 1e3 + 0.5 * y[:, None] + 1e-2 * rng.normal(size=(400, 3))
    mask = np.ones(400, np.float32)
    params = nbx.fit_naive_bayes(
        x.astype(np.float32), y.astype(np.int32), mask, 2, "gaussian_shared", 1e-9, 0.0
    )
    x32 = x.astype(np.float32).astype(np.float64)
    within = sum(((x32[y == c] - x32[y == c].mean(0)) ** 2).sum(0) for c in range(2)) / 400
    expected = within + 1e-9 * x32.var(0).max()
    np.testing.assert_allclose(np.asarray(params.var), np.broadcast_to(expected, (2, 3)), rtol=1e-3)
