"""experiments/naive_bayes.py: the tiny spam and learning-curve runs end to end through their
replication configs (summary keys, accuracies well above chance, our naive Bayes equal to
scikit-learn's, PNGs), the finished spam workdir used by the CLI in process (classify, score,
sample), the filter's counting fit on the loop resumed bitwise, the helpers against
brute-force references, and bad input naming the config key."""

import json
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image
from sklearn import metrics as sk_metrics

from genjax_lab import cli, saving
from genjax_lab.core import data as data_lib
from genjax_lab.core import metrics as metrics_lib
from genjax_lab.core import replication as rep
from genjax_lab.data import text
from tests.helpers import REPO, assert_ok, checkpoint_steps, process_env, shared_data

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


@pytest.fixture(scope="module")
def spam_run(tmp_path_factory):
    """The finished tiny spam run (the replication's tiny config), in process."""
    config = rep.load_module("experiments/replications/spam_nb.py").get_config("tiny")
    config.data.spam_path = str(shared_data("text/SMSSpamCollection"))
    workdir = tmp_path_factory.mktemp("spam") / "run"
    nbx.main(config, workdir)
    return workdir


def test_tiny_spam_end_to_end(spam_run):
    summary = _summary_and_png(spam_run, "spam_roc.png")
    assert summary["num_train"] == 1200 and summary["num_test"] == 300
    # Spam is 13%: chance-level accuracy is 0.87.
    assert summary["nb_accuracy"] > 0.95 and summary["nb_auc"] > 0.97
    assert summary["logistic_accuracy"] > 0.93 and summary["logistic_auc"] > 0.97
    # Our multinomial naive Bayes, counted on the loop (1,200 messages, 512 a step), is
    # scikit-learn's on the same counts.
    assert summary["nb_fit_steps"] == 3 and checkpoint_steps(spam_run / "fit") == [3]
    assert summary["nb_sklearn_prediction_agreement"] == 1.0
    for metric in ("accuracy", "precision", "recall", "auc"):
        assert summary[f"nb_{metric}"] == pytest.approx(summary[f"sklearn_nb_{metric}"], abs=1e-6)
    replication, _ = rep.load("spam_nb")
    for row in replication.rows:
        assert row.passes(summary[row.metric], "tiny"), (row.label, summary[row.metric])


SPAM = "WINNER!! You have won a FREE prize. Call now to claim your cash award"
HAM = "Are we still meeting for lunch tomorrow? I can bring the notes"


def test_the_finished_spam_workdir_classifies_scores_and_samples(spam_run, tmp_path, capsys):
    """classify names spam and ham with P(label | message); score prints log p(message) of
    the counts over the saved vocabulary (what the loaded model gives); sample --label=1
    prints messages of 12 vocabulary words."""
    messages = tmp_path / "messages.txt"
    messages.write_text(f"{SPAM}\n{HAM}\n")
    capsys.readouterr()
    assert cli.main(["classify", f"--workdir={spam_run}", f"--input={messages}"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [row[1] for row in rows] == ["spam", "ham"]
    assert all(float(row[2]) > 0.9 for row in rows)
    assert cli.main(["score", f"--workdir={spam_run}", f"--input={messages}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "# log p(x) in nats (exact)"
    model = saving.load(spam_run)
    vocabulary = text.Vocabulary(tuple(model.meta["input"]["vocabulary"]))
    counts = text.to_dense(
        text.bag_of_words([text.tokenize(m) for m in (SPAM, HAM)], vocabulary), len(vocabulary)
    )
    np.testing.assert_allclose(
        [float(line.split("\t")[1]) for line in lines[1:]], model.log_prob(counts), atol=1e-3
    )
    assert cli.main(["sample", f"--workdir={spam_run}", "--num=3", "--label=1"]) == 0
    drawn = capsys.readouterr().out.splitlines()
    assert len(drawn) == 3
    for line in drawn:  # "word" once, "wordxN" N times
        total = 0
        for token in line.split():
            word, _, times = token.rpartition("x")
            if token in vocabulary.words:
                total += 1
            else:
                assert word in vocabulary.words and times.isdigit(), token
                total += int(times)
        assert total == 12


def _counts() -> data_lib.Dataset:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 150).astype(np.int32)
    x = rng.poisson(1.0 + 2.0 * y[:, None] * (np.arange(9) < 3), (150, 9)).astype(np.float32)
    return data_lib.Dataset(
        {"train": {"x": x[:110], "y": y[:110]}, "test": {"x": x[110:], "y": y[110:]}}
    )


def test_a_killed_filter_fit_resumes_bitwise_and_a_finished_one_counts_no_more(
    tmp_path, monkeypatch
):
    """The counting fit stopped after 3 of its 7 steps (a shorter loop, as a kill leaves
    it) and relaunched ends with the uninterrupted fit's counts, bitwise; relaunching the
    finished fit counts nothing again and rewrites nothing."""
    config = rep.load_module("experiments/replications/spam_nb.py").get_config("tiny")
    config.nb.batch_size = 16
    dataset = _counts()
    _, whole, result = nbx.fit_filter(config, tmp_path / "whole", dataset)
    assert result.step == 7 and result.metrics["train_examples"] == 110
    loop_config = nbx.nb.loop_config

    def stopped_after_3(*args):
        run = loop_config(*args)
        run.num_steps = 3
        return run

    with monkeypatch.context() as patch:
        patch.setattr(nbx.nb, "loop_config", stopped_after_3)
        _, _, stopped = nbx.fit_filter(config, tmp_path / "resumed", dataset)
    assert stopped.step == 3 and stopped.metrics["train_examples"] == 48
    _, resumed, again = nbx.fit_filter(config, tmp_path / "resumed", dataset)
    assert again.step == 7
    for a, b in zip(
        jax.tree.leaves((whole, result.state)), jax.tree.leaves((resumed, again.state))
    ):
        np.testing.assert_array_equal(a, b)
    logged = metrics_lib.read_metrics(tmp_path / "whole" / "fit")
    _, relaunched, final = nbx.fit_filter(config, tmp_path / "whole", dataset)
    assert final.step == 7 and final.metrics == result.metrics
    assert checkpoint_steps(tmp_path / "whole" / "fit") == [4, 7]
    assert metrics_lib.read_metrics(tmp_path / "whole" / "fit") == logged
    for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(relaunched)):
        np.testing.assert_array_equal(a, b)


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
