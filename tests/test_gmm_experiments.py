"""experiments/gmm.py: the tiny MNIST run end to end in process (summary keys, BIC falling from
K = 1, imputation beating the mean image, decodable PNGs), the pixel imputation against a
float64 NumPy conditioning of the joint Gaussian of (z, x_o), and a missing MNIST folder
naming its config key."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from scipy.stats import multivariate_normal

from experiments.configs import gmm_mnist
from genjax_lab.core import replication as rep
from genjax_lab.models import gmm
from tests.helpers import shared_data

gx = rep.load_module("experiments/gmm.py")  # a script: its functions


def _png(path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()  # decodes every pixel
        return image.size


def test_tiny_mnist_in_process(tmp_path):
    config = gmm_mnist.get_config("tiny")
    config.data.mnist_dir = str(shared_data("mnist"))
    gx.main(config, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    for k in (1, 4):
        for key in ("bic", "aic", "train_loglik", "test_loglik", "seconds"):
            assert math.isfinite(summary[f"{key}_k{k}"]), (key, k)
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
    width, height = _png(tmp_path / "samples.png")
    assert width == 10 * 58 and height == 2 * 58  # 20 samples, 10 per row, 2x scale + border
    _, height = _png(tmp_path / "imputation.png")
    assert height > 3 * 58  # original, occluded and imputed rows
    _png(tmp_path / "bic_vs_k.png")


def _numpy_conditioning(weights, means, covs, mean, basis, noise_var, x, observed):
    """E[x | x_o] and p(k | x_o) of z ~ GMM, x = mean + basis z + N(0, noise_var I), by forming
    each component's joint Gaussian of (z, x_o) and conditioning it (float64)."""
    o, h = observed, ~observed
    w_o = basis[o]
    imputed, resp = [], []
    for row in x:
        log_joint, z_means = [], []
        for w, mu, cov in zip(weights, means, covs):
            m_x = mean[o] + w_o @ mu
            c_zx = cov @ w_o.T
            c_xx = w_o @ cov @ w_o.T + noise_var * np.eye(o.sum())
            log_joint.append(np.log(w) + multivariate_normal(m_x, c_xx).logpdf(row[o]))
            z_means.append(mu + c_zx @ np.linalg.solve(c_xx, row[o] - m_x))
        log_joint = np.array(log_joint)
        r = np.exp(log_joint - log_joint.max())
        r /= r.sum()
        z = r @ np.array(z_means)
        out = row.copy()
        out[h] = mean[h] + basis[h] @ z
        imputed.append(out)
        resp.append(r)
    return np.array(imputed), np.array(resp)


def test_impute_pixels_matches_joint_gaussian_conditioning():
    rng = np.random.default_rng(0)
    num_pixels, d, k, n = 7, 3, 3, 5
    basis = np.linalg.qr(rng.normal(size=(num_pixels, d)))[0]
    mean = rng.normal(size=num_pixels)
    weights = np.array([0.5, 0.3, 0.2])
    means = rng.normal(size=(k, d)) * 2
    factors = rng.normal(size=(k, d, d))
    covs = factors @ np.swapaxes(factors, 1, 2) + 0.3 * np.eye(d)
    noise_var = 0.2
    codes = means[rng.integers(0, k, n)] + rng.normal(size=(n, d))
    x = mean + codes @ basis.T + rng.normal(size=(n, num_pixels)) * 0.4
    observed = np.array([True, True, False, True, False, True, False])
    expected, expected_resp = _numpy_conditioning(
        weights, means, covs, mean, basis, noise_var, x, observed
    )
    assert expected_resp.max(1).min() < 0.99  # several components matter
    with jax.enable_x64(True):
        params = gmm.from_covariances(jnp.asarray(weights), jnp.asarray(means), jnp.asarray(covs))
        imputed, log_resp = gx.impute_pixels(
            params,
            jnp.asarray(mean),
            jnp.asarray(basis),
            jnp.float64(noise_var),
            jnp.asarray(x),
            jnp.asarray(observed),
        )
        assert imputed.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(imputed), expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(np.exp(np.asarray(log_resp)), expected_resp, rtol=1e-8, atol=1e-10)


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
