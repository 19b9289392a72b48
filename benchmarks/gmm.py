"""GMM EM against scikit-learn, same run, same data.

GMM: n = 100,000 points, d = 16, K = 32 (a sample of a random 32-component mixture),
float32, full and diagonal covariances, the same start for both (our k-means++ init,
passed to scikit-learn as weights_init / means_init / precisions_init). Seconds per EM
iteration: ours = one compiled `gmm.em` while loop of `iters` iterations (tol 0) / iters
(compile excluded, median of repeats); scikit-learn = (time of fit with max_iter=2 + iters,
tol=0) - (time with max_iter=2), divided by iters, so its fixed costs (initialisation, final
E-step) cancel.

The machine may be shared: timings are provisional.

  .venv/bin/python -m benchmarks.gmm --out=/tmp/gmm.json
"""

import argparse
import pathlib
import sys
import time
import warnings

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp
import numpy as np
import sklearn
from sklearn.mixture import GaussianMixture

from benchmarks.common import median_seconds, record, report
from genjax_lab.models import gmm

N, D, K = 100_000, 16, 32


def mixture_data(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(K, D)) * 4
    scales = rng.uniform(0.5, 2.0, size=(K, D, D)) * (rng.random((K, D, D)) < 0.3) + np.eye(D)
    labels = rng.integers(0, K, N)
    noise = np.einsum("nd,nde->ne", rng.normal(size=(N, D)), scales[labels])
    return (centers[labels] + noise).astype(np.float32)


def sklearn_precisions(params: gmm.GMM) -> np.ndarray:
    cov = np.asarray(gmm.covariances(params), np.float64)
    return np.linalg.inv(cov) if params.covariance_type in ("full", "tied") else 1.0 / cov


def gmm_records(x: np.ndarray, iters: int, repeats: int) -> list[dict]:
    records = []
    xj = jnp.asarray(x)
    for covariance_type in ("full", "diag"):
        init = gmm.init_kmeans(jax.random.key(0), xj, K, covariance_type, kmeans_iters=5)
        ours = (
            median_seconds(
                lambda start=init: jax.block_until_ready(gmm.em(start, xj, num_iters=iters)),
                repeats,
            )
            / iters
        )
        weights = np.asarray(init.weights, np.float64)
        kwargs = {
            "covariance_type": covariance_type,
            "tol": 0,
            "init_params": "random_from_data",
            "random_state": 0,
            "weights_init": weights / weights.sum(),
            "means_init": np.asarray(init.means, np.float64),
            "precisions_init": sklearn_precisions(init),
        }

        def sklearn_fit(max_iter: int, kwargs: dict = kwargs) -> float:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "did not converge": tol=0 on purpose
                start = time.perf_counter()
                GaussianMixture(K, max_iter=max_iter, **kwargs).fit(x)
                return time.perf_counter() - start

        theirs = (sklearn_fit(2 + iters) - sklearn_fit(2)) / iters
        records.append(
            record(
                f"gmm EM s/iter {covariance_type} n={N} d={D} K={K}",
                ours,
                "sklearn GaussianMixture",
                sklearn.__version__,
                theirs,
                iterations=iters,
            )
        )
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None, help="write the JSON records here")
    args = parser.parse_args()
    report(gmm_records(mixture_data(), args.iters, args.repeats), args.out)


if __name__ == "__main__":
    main()
