"""Gaussian mixtures on MNIST PCA codes: BIC / AIC against K, test log-likelihood, samples,
and imputation of the bottom half of test images (experiments/gmm.py, docs/naive_bayes.md).

  ./launch.sh gmm --config=experiments/configs/gmm_mnist.py [--config.data.mnist_dir=DIR]

data.mnist_dir defaults to ../shared/data/mnist (relative to the repository root, where
launch.sh runs); a missing folder is an error naming config.data.mnist_dir.

Each K is fitted on the training loop in WORKDIR/kK (a killed run resumes), and the best-BIC
mixture is saved as a model of pixels: `./launch.sh sample --workdir=WORKDIR` draws digits,
`./launch.sh score --workdir=WORKDIR --input=IMAGES` gives log p(x) of 28x28 PNG/.npy images.

Measured here (2 shared CPU cores at load ~11, default variant, 176 s wall with compilation;
starts from the loop's k-means++ keys): test log-likelihood of the 50-dim codes -55.8 (K = 1)
-> -22.5 (K = 40); BIC 1.262e6 at K = 20 and 1.259e6 at K = 40, so the lowest-BIC K (40 here)
hangs on one start each (an earlier run's starts gave K = 20: 1.217e6 against 1.295e6);
imputing the bottom half of 1,000 test images, MSE 0.0493 against 0.0680 for the training
mean image (0.0108 = the PCA reconstruction floor).

Variants (`--config=experiments/configs/gmm_mnist.py:VARIANT`):
  default  PCA 50 on 10,000 images, full-covariance GMMs with K = 1, 5, 10, 20, 40 on 20,000
           training codes, up to 30 EM iterations (tol 1e-3, one start), all 10,000 test
           images scored, 1,000 imputed.
  tiny     PCA 20, K = 1, 4 on 2,000 training codes, up to 10 EM iterations, 1,000 test images,
           200 imputed (seconds; the tests).
"""

import ml_collections


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.kind = "mnist"
    config.seed = 0
    config.data = ml_collections.ConfigDict({"mnist_dir": "../shared/data/mnist"})
    config.pca_dim = 50
    config.pca_train = 10_000  # first images of the training subset the basis is fitted on
    config.num_train = 20_000
    config.num_test = 10_000
    config.num_components_list = (1, 5, 10, 20, 40)
    config.covariance_type = "full"
    config.num_iters = 30  # the most EM iterations of each fit
    # EM stops after the first iteration whose mean log-likelihood gain is below tol, as
    # scikit-learn's GaussianMixture; the best of num_inits k-means starts is kept.
    config.tol = 1e-3
    config.num_inits = 1
    # Codes have variances from ~5 down to ~0.1: 1e-4 keeps every component's covariance definite.
    config.reg_covar = 1e-4
    config.num_samples = 100
    config.num_impute = 1000
    config.num_impute_shown = 20
    if variant == "tiny":
        config.pca_dim = 20
        config.pca_train = 2000
        config.num_train = 2000
        config.num_test = 1000
        config.num_components_list = (1, 4)
        config.num_iters = 10
        config.num_samples = 20
        config.num_impute = 200
        config.num_impute_shown = 10
    elif variant != "default":
        raise ValueError(f"unknown variant {variant!r} of gmm_mnist: default or tiny")
    return config
