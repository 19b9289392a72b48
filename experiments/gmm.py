"""Gaussian mixtures on MNIST in a PCA space: model choice by BIC / AIC, samples, and
imputation of the occluded bottom half of test images.

  ./launch.sh gmm --config=experiments/configs/gmm_mnist.py [--config.data.mnist_dir=DIR]

mnist: pixels / 255; a PCA basis W [784, d] (top `pca_dim` eigenvectors of the float64 sample
covariance of the first `pca_train` training images, NumPy eigh); codes z = W^T (x - m) in float32.
For each K in `num_components_list` a GMM (`covariance_type`, the best of `num_inits` k-means++
starts, each followed by up to `num_iters` EM iterations stopping once the mean log-likelihood
gains less than `tol`, `reg_covar`) is fitted to the codes of the first `num_train` training images
on the training loop (gmm.loop_family: one EM iteration of every start a step), in its own
workdir `kK/` (checkpoints, metrics.jsonl); summary.json holds bic_kK / aic_kK (on those codes,
lower is better), train_loglik_kK and test_loglik_kK (mean log-density per image of the PCA
codes, not of pixels), iterations_kK, seconds_kK (this launch's), best_k_bic and best_k_aic.
bic_vs_k.png plots BIC and AIC against K; samples.png shows samples of the best-BIC model
decoded as m + W z, clipped to [0, 1].

The best-BIC mixture is saved as a model of pixels (`model/`, a gmm.SubspaceGMM: z ~ GMM,
x = m + W z + e with e ~ N(0, s2 I) and s2 the PCA residual variance per pixel, the mean of the
discarded eigenvalues, probabilistic PCA's maximum-likelihood noise), so the workdir is reused
without the data:
  ./launch.sh sample --workdir=W --num=16          a PNG grid of decoded samples
  ./launch.sh score --workdir=W --input=F          log p(x) of 28x28 PNG or .npy images, in
                                                   nats, exact under that pixel model
(`classify` refuses: the mixture is unlabelled.)

Imputation (imputation.png): given the observed pixels x_o (top half) the saved model is, per
component, linear Gaussian, so the posterior mean of the hidden pixels is exact
(gmm.impute_subspace). imputation_mse is the mean squared error over the hidden pixels of
`num_impute` test images (imputed values clipped to [0, 1]); imputation_mse_mean_baseline
imputes the training mean image instead, and pca_reconstruction_mse_hidden is the floor of any
imputation through this basis (the test image's own PCA reconstruction, which sees the
hidden half).

Resumability: each K's fit is a loop run in `kK/`; a killed run relaunched resumes the fit it
was in and skips the finished ones (their final metrics are read back), then recomputes the
PCA, the figures and the imputation (seconds). Times are wall seconds including compilation.
"""

import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from genjax_lab import saving
from genjax_lab.core import config as config_lib
from genjax_lab.core import data as data_lib
from genjax_lab.core import loop, plots
from genjax_lab.core import mesh as mesh_lib
from genjax_lab.core import metrics as metrics_lib
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

    def model(self, codes: gmm.GMM) -> gmm.SubspaceGMM:
        """The mixture over codes as a model of pixels (float32): x = mean + basis z +
        N(0, noise_var I)."""
        as32 = lambda a: jnp.asarray(a, jnp.float32)
        return gmm.SubspaceGMM(codes, as32(self.mean), as32(self.basis), as32(self.noise_var))


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


def _model_config(config, k: int):
    model = gmm.default_config()
    model.update(
        num_components=k,
        covariance_type=config.covariance_type,
        num_iters=config.num_iters,
        tol=config.tol,
        num_inits=config.num_inits,
        reg_covar=config.reg_covar,
    )
    return model


def fit_k(config, workdir: pathlib.Path, dataset: data_lib.Dataset, k: int):
    """The K-component fit on the training loop in workdir/kK (resumed where it stopped):
    (the best start's GMM, host copy; the loop's result)."""
    model = _model_config(config, k)
    run = gmm.loop_config(model)
    run.seed = config.seed
    # The codes' recipe: a relaunch with other data is refused, not resumed on them.
    run.data = {key: config[key] for key in ("pca_dim", "pca_train", "num_train", "num_test")}
    result = loop.train_and_evaluate(run, workdir / f"k{k}", gmm.loop_family(model), dataset)
    return mesh_lib.host_copy(gmm.best_start(result.state)), result


def run_mnist(config, workdir: pathlib.Path) -> dict[str, float]:
    ks = [int(k) for k in config.num_components_list]
    if not ks or min(ks) < 1:
        raise ValueError(
            f"config.num_components_list must hold numbers of components >= 1, got {ks}"
        )
    train, test = load_mnist(config)
    train, test = train[: config.num_train], test[: config.num_test]
    pca = fit_pca(train[: config.pca_train], config.pca_dim)
    z_train, z_test = pca.encode(train), pca.encode(test)
    dataset = data_lib.Dataset({"train": {"x": z_train}, "test": {"x": z_test}})
    summary = {
        "pca_noise_var": pca.noise_var,
        "num_train": float(len(train)),
        "num_test": float(len(test)),
    }
    fits = {}
    for k in ks:
        t0 = time.perf_counter()
        params, result = fit_k(config, workdir, dataset, k)
        summary[f"seconds_k{k}"] = time.perf_counter() - t0
        summary[f"iterations_k{k}"] = float(result.step)
        summary[f"bic_k{k}"] = float(gmm.bic(params, z_train))
        summary[f"aic_k{k}"] = float(gmm.aic(params, z_train))
        summary[f"train_loglik_k{k}"] = float(gmm.score(params, z_train))
        summary[f"test_loglik_k{k}"] = result.metrics["log_likelihood"]
        fits[k] = params
        metrics_lib.say(
            f"K={k}: BIC {summary[f'bic_k{k}']:.4g}, test log-lik "
            f"{summary[f'test_loglik_k{k}']:.2f} ({summary[f'seconds_k{k}']:.1f} s, "
            f"{result.step} EM iterations)"
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
    best = pca.model(fits[best_bic])
    # The finished workdir is a model of 28x28 images: ./launch.sh sample|score --workdir=W
    meta = {
        "num_features": config.pca_dim,
        "dtype": "float32",
        "observed_features": SIDE * SIDE,
        "input": {"kind": "image", "shape": [SIDE, SIDE, 1], "layout": "flat"},
    }
    saving.save(workdir, "gmm", _model_config(config, best_bic), meta, best)
    pixels = gmm.sample(
        jax.random.fold_in(jax.random.key(config.seed), 10_000), best, config.num_samples
    )
    _save_digits(workdir / "samples.png", [np.clip(np.asarray(pixels), 0.0, 1.0)])
    summary.update(
        _imputation(config, workdir, best, pca, test[: config.num_impute], train.mean(0))
    )
    return summary


def _imputation(
    config,
    workdir: pathlib.Path,
    params: gmm.SubspaceGMM,
    pca: PCA,
    test: np.ndarray,
    train_mean: np.ndarray,
) -> dict[str, float]:
    observed = np.zeros((SIDE, SIDE), bool)
    observed[: SIDE // 2] = True
    observed = observed.ravel()
    imputed = gmm.impute_subspace(params, jnp.asarray(test, jnp.float32), jnp.asarray(observed))
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
