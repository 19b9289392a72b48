"""Gaussian mixtures on MNIST in a PCA space: model choice by BIC / AIC, samples, and
imputation of the occluded bottom half of test images.

  ./launch.sh gmm --config=experiments/configs/gmm_mnist.py [--config.data.mnist_dir=DIR]

mnist: pixels / 255; a PCA basis W [784, d] (top `pca_dim` eigenvectors of the float64 sample
covariance of the first `pca_train` training images, NumPy eigh); codes z = W^T (x - m) in float32.
For each K in `num_components_list` a GMM (`covariance_type`, the best of `num_inits` k-means++
starts, each followed by up to `num_iters` EM iterations stopping once the mean log-likelihood
gains less than `tol`, `reg_covar`) is fitted to the codes of the first `num_train` training images;
summary.json holds bic_kK / aic_kK (on those codes, lower is better), train_loglik_kK and
test_loglik_kK (mean log-density per image of the PCA codes, not of pixels), seconds_kK,
best_k_bic and best_k_aic. bic_vs_k.png plots BIC and AIC against K; samples.png shows
samples of the best-BIC model decoded as m + W z, clipped to [0, 1].

Imputation (`impute_pixels`, imputation.png): the best-BIC mixture is read as a generative
model of pixels, z ~ GMM, x = m + W z + e with e ~ N(0, s2 I) and s2 the PCA residual variance
per pixel (the mean of the discarded eigenvalues, probabilistic PCA's maximum-likelihood
noise). Given the observed pixels x_o (top half) this model is, per component k, linear
Gaussian, so the posterior is exact: with G = W_o^T W_o / s2 and Lambda_k = Sigma_k^-1,
  z | x_o, k ~ N(A_k^-1 (Lambda_k mu_k + W_o^T (x_o - m_o) / s2), A_k^-1),  A_k = Lambda_k + G,
  p(k | x_o) ∝ w_k N(x_o | m_o + W_o mu_k, W_o Sigma_k W_o^T + s2 I),
the marginal evaluated in d dimensions by Woodbury and the determinant lemma. The hidden
pixels are imputed as their posterior mean m_h + W_h E[z | x_o]. imputation_mse is the mean
squared error over the hidden pixels of `num_impute` test images (imputed values clipped to
[0, 1]); imputation_mse_mean_baseline imputes the training mean image instead, and
pca_reconstruction_mse_hidden is the floor of any imputation through this basis (the test
image's own PCA reconstruction, which sees the hidden half).

Resumability: every fit takes seconds, so nothing is checkpointed; a rerun starts over.
Times are wall seconds including compilation.
"""

import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import cho_solve

from genjax_lab.core import config as config_lib
from genjax_lab.core import metrics as metrics_lib
from genjax_lab.core import plots
from genjax_lab.data import idx
from genjax_lab.models import gmm

config_lib.define_flags(config_lib.beside(__file__, "configs/gmm_mnist.py"), "runs/gmm")

SIDE = 28


class PCA:
    """mean [D], basis [D, d] (orthonormal columns), noise_var: mean discarded eigenvalue."""

    def __init__(self, mean: np.ndarray, basis: np.ndarray, noise_var: float):
        self.mean, self.basis, self.noise_var = mean, basis, noise_var

    def encode(self, x: np.ndarray) -> np.ndarray:
        """x [N, D] -> codes [N, d] (float32)."""
        return ((x - self.mean) @ self.basis).astype(np.float32)

    def decode(self, z: np.ndarray) -> np.ndarray:
        """codes [N, d] -> pixels [N, D] (unclipped)."""
        return self.mean + np.asarray(z, np.float64) @ self.basis.T


def fit_pca(x: np.ndarray, dim: int) -> PCA:
    """PCA of x [N, D] by a float64 eigendecomposition of the sample covariance (divisor N; the
    D x D matrix is several times cheaper than an SVD of the N x D data when N >> D);
    noise_var = mean of the D - dim discarded eigenvalues."""
    if not 1 <= dim < min(x.shape):
        raise ValueError(f"config.pca_dim must be in [1, {min(x.shape) - 1}], got {dim}")
    x = np.asarray(x, np.float64)
    mean = x.mean(0)
    centred = x - mean
    eig, vectors = np.linalg.eigh(centred.T @ centred / len(x))  # ascending
    eig, vectors = np.maximum(eig[::-1], 0.0), vectors[:, ::-1]
    noise_var = float(eig[dim:].sum() / (x.shape[1] - dim))
    return PCA(mean, vectors[:, :dim], noise_var)


@jax.jit
def impute_pixels(
    params: gmm.GMM,
    mean: jax.Array,
    basis: jax.Array,
    noise_var: jax.Array,
    x: jax.Array,
    observed: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """Posterior mean of pixels given the observed ones under z ~ GMM,
    x = mean + basis z + N(0, noise_var I).

    params: a GMM over codes (d dims); mean [D], basis [D, d]; x [N, D] (missing entries any
    finite value); observed bool [D], the same set for every row. Returns (E[x | x_o] [N, D]
    with observed entries as given, log p(k | x_o) [N, K]).
    """
    obs = observed.astype(x.dtype)
    w_o = basis * obs[:, None]  # rows of hidden pixels zeroed: x_o only
    resid = (x - mean) * obs
    gram = w_o.T @ w_o / noise_var  # G [d, d]
    cov = gmm.full_covariances(params)  # [K, d, d]
    eye = jnp.eye(basis.shape[1], dtype=x.dtype)
    cov_chol = jnp.linalg.cholesky(cov)
    precision = jax.vmap(lambda c: cho_solve((c, True), eye))(cov_chol)
    a_chol = jnp.linalg.cholesky(precision + gram)  # A_k = Lambda_k + G

    def solve_a(b):  # A_k^-1 b for b [K, d, N]
        return jax.vmap(lambda c, v: cho_solve((c, True), v))(a_chol, b)

    proj = resid @ w_o / noise_var  # W_o^T (x_o - m_o) / s2: [N, d]
    rhs = jnp.einsum("kde,ke->kd", precision, params.means)[:, :, None] + proj.T[None]  # [K, d, N]
    z_mean = jnp.transpose(solve_a(rhs), (2, 0, 1))  # [N, K, d]
    # log N(x_o | m_o + W_o mu_k, W_o Sigma_k W_o^T + s2 I) in d dimensions (Woodbury,
    # determinant lemma).
    r = resid[:, None, :] - (params.means @ w_o.T)[None]  # [N, K, D]
    g = jnp.einsum("nkp,pd->kdn", r, w_o) / noise_var  # W_o^T r / s2: [K, d, N]
    quad = jnp.sum(r * r, axis=2) / noise_var - jnp.einsum("kdn,kdn->nk", g, solve_a(g))
    log_det = (
        jnp.sum(obs) * jnp.log(noise_var)
        + 2 * jnp.sum(jnp.log(jnp.diagonal(cov_chol, axis1=1, axis2=2)), axis=1)
        + 2 * jnp.sum(jnp.log(jnp.diagonal(a_chol, axis1=1, axis2=2)), axis=1)
    )  # [K]
    log_joint = jnp.log(params.weights) - 0.5 * (
        jnp.sum(obs) * jnp.log(2 * jnp.pi) + log_det + quad
    )
    log_resp = log_joint - jax.nn.logsumexp(log_joint, axis=1, keepdims=True)
    z_post = jnp.einsum("nk,nkd->nd", jnp.exp(log_resp), z_mean)
    return jnp.where(observed, x, mean + z_post @ basis.T), log_resp


def load_mnist(config) -> tuple[np.ndarray, np.ndarray]:
    """(train [N, 784], test [N', 784]) float64 pixels in [0, 1]."""
    mnist_dir = config.data.mnist_dir
    if not mnist_dir or not pathlib.Path(mnist_dir).is_dir():
        raise FileNotFoundError(
            f"config.data.mnist_dir: no MNIST folder at {mnist_dir!r} "
            "(pass --config.data.mnist_dir=DIR with the IDX files)"
        )
    (train, _), (test, _) = (idx.load_mnist_split(mnist_dir, split) for split in ("train", "test"))
    flat = lambda images: images.reshape(len(images), -1).astype(np.float64) / 255.0
    return flat(train), flat(test)


def run_mnist(config, workdir: pathlib.Path) -> dict[str, float]:
    ks = [int(k) for k in config.num_components_list]
    if not ks or min(ks) < 1:
        raise ValueError(
            f"config.num_components_list must hold numbers of components >= 1, got {ks}"
        )
    train, test = load_mnist(config)
    train, test = train[: config.num_train], test[: config.num_test]
    pca = fit_pca(train[: config.pca_train], config.pca_dim)
    z_train, z_test = jnp.asarray(pca.encode(train)), jnp.asarray(pca.encode(test))
    summary = {
        "pca_noise_var": pca.noise_var,
        "num_train": float(len(train)),
        "num_test": float(len(test)),
    }
    fits = {}
    model = gmm.default_config()
    model.update(
        covariance_type=config.covariance_type,
        num_iters=config.num_iters,
        tol=config.tol,
        num_inits=config.num_inits,
        reg_covar=config.reg_covar,
    )
    for k in ks:
        t0 = time.perf_counter()
        model.num_components = k
        params, history = gmm.fit(
            jax.random.fold_in(jax.random.key(config.seed), k), {"x": z_train}, model
        )
        history = history["log_likelihood"]
        summary[f"seconds_k{k}"] = time.perf_counter() - t0
        summary[f"bic_k{k}"] = float(gmm.bic(params, z_train))
        summary[f"aic_k{k}"] = float(gmm.aic(params, z_train))
        summary[f"train_loglik_k{k}"] = float(gmm.score(params, z_train))
        summary[f"test_loglik_k{k}"] = float(gmm.score(params, z_test))
        fits[k] = params
        metrics_lib.say(
            f"K={k}: BIC {summary[f'bic_k{k}']:.4g}, test log-lik "
            f"{summary[f'test_loglik_k{k}']:.2f} ({summary[f'seconds_k{k}']:.1f} s, "
            f"{len(history)} EM iterations, log-lik {float(history[0]):.2f} -> "
            f"{float(history[-1]):.2f})"
        )
    best_bic = min(ks, key=lambda k: summary[f"bic_k{k}"])
    summary["best_k_bic"] = float(best_bic)
    summary["best_k_aic"] = float(min(ks, key=lambda k: summary[f"aic_k{k}"]))
    criteria = {name: [summary[f"{name.lower()}_k{k}"] for k in ks] for name in ("BIC", "AIC")}
    plots.plot_curves(
        workdir / "bic_vs_k.png",
        ks,
        criteria,
        "GMM on MNIST PCA codes, lower is better",
        "components K",
    )
    best = fits[best_bic]
    codes = gmm.sample(
        jax.random.fold_in(jax.random.key(config.seed), 10_000), best, config.num_samples
    )
    _save_digits(workdir / "samples.png", [np.clip(pca.decode(codes), 0.0, 1.0)])
    summary.update(
        _imputation(config, workdir, best, pca, test[: config.num_impute], train.mean(0))
    )
    return summary


def _imputation(
    config,
    workdir: pathlib.Path,
    params: gmm.GMM,
    pca: PCA,
    test: np.ndarray,
    train_mean: np.ndarray,
) -> dict[str, float]:
    observed = np.zeros((SIDE, SIDE), bool)
    observed[: SIDE // 2] = True
    observed = observed.ravel()
    imputed, _ = impute_pixels(
        params,
        jnp.asarray(pca.mean, jnp.float32),
        jnp.asarray(pca.basis, jnp.float32),
        jnp.float32(pca.noise_var),
        jnp.asarray(test, jnp.float32),
        jnp.asarray(observed),
    )
    imputed = np.clip(np.asarray(imputed, np.float64), 0.0, 1.0)
    hidden = ~observed
    reconstruction = np.clip(pca.decode(pca.encode(test)), 0.0, 1.0)
    occluded = np.where(observed, test, 0.5)  # grey marks the hidden half
    shown = slice(0, min(len(test), config.num_impute_shown))
    _save_digits(workdir / "imputation.png", [test[shown], occluded[shown], imputed[shown]])
    return {
        "imputation_mse": float(np.mean((imputed[:, hidden] - test[:, hidden]) ** 2)),
        "imputation_mse_mean_baseline": float(np.mean((train_mean[hidden] - test[:, hidden]) ** 2)),
        "pca_reconstruction_mse_hidden": float(
            np.mean((reconstruction[:, hidden] - test[:, hidden]) ** 2)
        ),
        "num_impute": float(len(test)),
    }


def _save_digits(path: pathlib.Path, blocks: list[np.ndarray]) -> None:
    """Images [N, 784] in [0, 1] as black ink on white, 10 a row; each array in `blocks` starts
    a new block of rows."""
    blocks = [np.asarray(b).reshape(-1, SIDE, SIDE) for b in blocks]
    plots.save_grid(path, blocks, columns=10, scale=2, ink=True)


# -------------------------------------------------------------------------------- main

KINDS = {"mnist": run_mnist}
main = config_lib.kind_main(KINDS)


if __name__ == "__main__":
    config_lib.run(main)
