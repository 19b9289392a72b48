"""experiments/gmm.py: the tiny MNIST run end to end in process (summary keys, BIC falling from
K = 1, imputation beating the mean image, decodable PNGs), its finished workdir used as a model
of 28x28 images by the CLI (sample, score of .npy and PNG images, classify refused), a killed
K-fit resumed bitwise on the loop, and a missing MNIST folder naming its config key."""

import json
import math

import jax
import numpy as np
import pytest
from PIL import Image

from experiments.configs import gmm_mnist
from genjax_lab import cli, saving
from genjax_lab.core import data as data_lib
from genjax_lab.core import metrics as metrics_lib
from genjax_lab.core import replication as rep
from genjax_lab.data import idx
from genjax_lab.models import gmm
from tests.helpers import checkpoint_steps, shared_data

gx = rep.load_module("experiments/gmm.py")  # a script: its functions


def _png(path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()  # decodes every pixel
        return image.size


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """(config, workdir) of the finished tiny MNIST run."""
    config = gmm_mnist.get_config("tiny")
    config.data.mnist_dir = str(shared_data("mnist"))
    workdir = tmp_path_factory.mktemp("gmm") / "run"
    gx.main(config, workdir)
    return config, workdir


def test_tiny_mnist_in_process(tiny_run):
    config, workdir = tiny_run
    summary = json.loads((workdir / "summary.json").read_text())
    for k in (1, 4):
        for key in ("bic", "aic", "train_loglik", "test_loglik", "seconds"):
            assert math.isfinite(summary[f"{key}_k{k}"]), (key, k)
        assert 1 <= summary[f"iterations_k{k}"] <= config.num_iters
        assert checkpoint_steps(workdir / f"k{k}")[-1] == summary[f"iterations_k{k}"]
    # One Gaussian: EM's second iteration changes nothing, the tol rule stops it there.
    assert summary["iterations_k1"] == 2.0
    # A single Gaussian is a poor fit to ten digit classes: BIC falls by far more than noise.
    assert summary["bic_k4"] < 0.95 * summary["bic_k1"]
    assert summary["best_k_bic"] == 4.0 and summary["best_k_aic"] == 4.0
    assert summary["test_loglik_k4"] > summary["test_loglik_k1"]
    # BIC - AIC = p (log N - 2), p the free parameters of a full GMM on 20-dim codes.
    d, n = config.pca_dim, config.num_train
    p = 4 * d * (d + 1) // 2 + 4 * d + 3
    assert summary["bic_k4"] - summary["aic_k4"] == pytest.approx(p * (math.log(n) - 2), rel=1e-4)
    # Imputation beats the mean image clearly but cannot beat the PCA reconstruction that sees
    # the hidden half.
    assert summary["imputation_mse"] < 0.95 * summary["imputation_mse_mean_baseline"]
    assert summary["imputation_mse"] > summary["pca_reconstruction_mse_hidden"]
    assert summary["num_impute"] == 200.0
    width, height = _png(workdir / "samples.png")
    assert width == 10 * 58 and height == 2 * 58  # 20 samples, 10 per row, 2x scale + border
    _, height = _png(workdir / "imputation.png")
    assert height > 3 * 58  # original, occluded and imputed rows
    _png(workdir / "bic_vs_k.png")


def test_the_finished_run_samples_and_scores_digit_images(tiny_run, tmp_path, capsys):
    """The saved best-BIC model lives in PCA space but takes and gives pixels: sample writes
    a PNG grid of digits, score reads .npy and PNG images and prints log p(x) of the pixels
    (the same for both forms, and what the loaded model computes), classify refuses."""
    config, workdir = tiny_run
    model = saving.load(workdir)
    assert isinstance(model.params, gmm.SubspaceGMM)
    assert model.params.codes.num_components == 4 and model.params.num_features == 784
    out = tmp_path / "drawn.png"
    assert cli.main(["sample", f"--workdir={workdir}", "--num=6", f"--out={out}"]) == 0
    width, height = _png(out)
    assert width > 2 * 28 and height > 28
    images, _ = idx.load_mnist_split(config.data.mnist_dir, "test")
    np.save(tmp_path / "digits.npy", images[:3])
    Image.fromarray(images[0]).save(tmp_path / "digit.png")
    capsys.readouterr()
    assert cli.main(["score", f"--workdir={workdir}", f"--input={tmp_path / 'digits.npy'}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "# log p(x) in nats (exact)"
    scores = np.array([float(line.split("\t")[1]) for line in lines[1:]])
    expected = model.log_prob(images[:3].reshape(3, -1).astype(np.float32) / 255.0)
    np.testing.assert_allclose(scores, expected, atol=1e-3)
    # A digit is far more likely than noise of the same range under a model of digits.
    noise = np.random.default_rng(0).uniform(0, 1, (1, 784)).astype(np.float32)
    assert float(model.log_prob(noise)[0]) < scores.min() - 1000
    assert cli.main(["score", f"--workdir={workdir}", f"--input={tmp_path / 'digit.png'}"]) == 0
    png_score = float(capsys.readouterr().out.splitlines()[1].split("\t")[1])
    assert png_score == pytest.approx(scores[0], abs=1e-3)
    assert cli.main(["classify", f"--workdir={workdir}", f"--input={tmp_path / 'digit.png'}"]) == 2
    assert "unlabelled Gaussian mixture" in capsys.readouterr().err


def _codes() -> data_lib.Dataset:
    # Five overlapping clusters for three components: EM needs tens of iterations.
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(5, 4))
    spread = rng.uniform(0.5, 1.5, (301, 1))
    x = (centres[rng.integers(0, 5, 301)] + rng.normal(size=(301, 4)) * spread).astype(np.float32)
    return data_lib.Dataset({"train": {"x": x[:250]}, "test": {"x": x[250:]}})


def _fit(workdir, num_iters: int):
    config = gmm_mnist.get_config("tiny")
    config.update(num_iters=num_iters, num_inits=2, tol=1e-5)
    return gx.fit_k(config, workdir, _codes(), 3)


def test_a_killed_fit_resumes_bitwise_and_a_finished_one_trains_no_more(tmp_path):
    """A K-fit stopped at iteration 4 (a shorter cap stands in for the kill: the loop keeps
    the same checkpoint) and relaunched ends where the uninterrupted fit does, bitwise; a
    relaunch of the finished fit trains nothing and rewrites nothing."""
    whole, result = _fit(tmp_path / "whole", num_iters=60)
    assert 4 < result.step < 60 and result.metrics["train_converged"] == 1.0
    _, stopped = _fit(tmp_path / "resumed", num_iters=4)
    assert stopped.step == 4 and checkpoint_steps(tmp_path / "resumed" / "k3") == [4]
    resumed, again = _fit(tmp_path / "resumed", num_iters=60)
    assert again.step == result.step
    for a, b in zip(jax.tree.leaves(result.state), jax.tree.leaves(again.state)):
        np.testing.assert_array_equal(a, b)
    logged = metrics_lib.read_metrics(tmp_path / "whole" / "k3")
    steps = checkpoint_steps(tmp_path / "whole" / "k3")
    relaunched, final = _fit(tmp_path / "whole", num_iters=60)
    assert final.step == result.step and final.metrics == result.metrics
    assert checkpoint_steps(tmp_path / "whole" / "k3") == steps
    assert metrics_lib.read_metrics(tmp_path / "whole" / "k3") == logged
    for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(relaunched)):
        np.testing.assert_array_equal(a, b)


def test_pca_noise_is_mean_discarded_eigenvalue():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 6)) * np.array([3.0, 2.0, 1.0, 0.5, 0.4, 0.3])
    pca = gx.fit_pca(x, 2)
    eig = np.sort(np.linalg.eigvalsh(np.cov(x.T, bias=True)))[::-1]
    assert pca.noise_var == pytest.approx(eig[2:].mean(), rel=1e-10)
    np.testing.assert_allclose(pca.basis.T @ pca.basis, np.eye(2), atol=1e-12)


def test_missing_mnist_dir_names_the_flag(tmp_path):
    config = gmm_mnist.get_config("tiny")
    config.data.mnist_dir = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="config.data.mnist_dir"):
        gx.main(config, tmp_path / "run")
