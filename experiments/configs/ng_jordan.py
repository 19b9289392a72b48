"""Ng & Jordan (NeurIPS 2002), "On discriminative vs. generative classifiers": test error of
naive Bayes and logistic regression against the number of training examples.

  ./launch.sh naive_bayes --config=experiments/configs/ng_jordan.py \
      --config.data.spam_path=../shared/data/text/SMSSpamCollection \
      --config.data.mnist_dir=../shared/data/mnist

Per dataset (config.curves.NAME): training sizes, random draws per size (a fresh held-out
test set per draw, or MNIST's test split), the naive Bayes kind (Gaussian for continuous
features as in the paper, multinomial for counts, Bernoulli for binarised MNIST pixels) and
how logistic regression sees the features (scaled, z-scored on its training set), with
scikit-learn's C=1 L2 penalty.

Not a training-loop run: the curves are a sweep of hundreds of closed-form naive Bayes fits
(and small logistic fits) of a few to a few thousand examples each, milliseconds apiece and
vmapped in one compiled lax.map per group of sizes; checkpointing each would cost more than
fitting it, so a rerun recomputes the sweep (about 3.5 min for the default variant).

Variants:
  default  breast_cancer, wine, digits (scikit-learn's bundled copies), SMS spam and MNIST
           (10,000 training / 2,000 test images); about 3.5 min here. Measured: naive Bayes
           is better at small sizes and logistic regression at the largest on breast_cancer
           (crossing at m=64), digits (m=80) and spam (m=4,344); on wine naive Bayes' small-m
           lead is within noise; on MNIST logistic regression is better at every size.
           Numbers: experiments/replications/ng_jordan.py and docs/naive_bayes.md.
  tiny     breast_cancer and a 600-image slice of digits, 5 draws, 4 sizes (tests).
"""

import ml_collections


def _curve(
    sizes,
    *,
    num_draws=20,
    test_fraction=0.3,
    max_examples=0,
    max_test=0,
    nb_kind="gaussian",
    smoothing=1e-9,
    binarize=0.0,
    lr_scale=1.0,
    standardize=True,
    c=1.0,
    pad_factor=1000.0,
) -> ml_collections.ConfigDict:
    # pad_factor: sizes within this factor of the group's smallest are padded to one shape
    # (masked) and share one compilation; small data sets take one group, large ones several.
    return ml_collections.ConfigDict(
        {
            "sizes": tuple(sizes),
            "num_draws": num_draws,
            "test_fraction": test_fraction,
            "max_examples": max_examples,
            "max_test": max_test,
            "nb_kind": nb_kind,
            "smoothing": smoothing,
            "binarize": binarize,
            "lr_scale": lr_scale,
            "standardize": standardize,
            "c": c,
            "pad_factor": pad_factor,
        }
    )


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.kind = "learning_curves"
    config.seed = 0
    config.datasets = "breast_cancer,wine,digits,spam,mnist"
    config.data = ml_collections.ConfigDict(
        {
            "spam_path": "",
            "mnist_dir": "",
            "min_count": 2,
            "max_vocab": 1000,  # spam vocabulary: the 1,000 most frequent words
        }
    )
    config.logistic = ml_collections.ConfigDict({"num_steps": 100})
    config.max_batch_elements = 20_000_000  # draws fitted at once: batch * size * D features
    config.curves = ml_collections.ConfigDict(
        {
            "breast_cancer": _curve((4, 8, 16, 32, 64, 128, 256, 398), nb_kind="gaussian_shared"),
            "wine": _curve((3, 6, 12, 24, 48, 96, 125), nb_kind="gaussian_shared"),
            "digits": _curve(
                (10, 20, 40, 80, 160, 320, 640, 1258),
                nb_kind="multinomial",
                smoothing=1.0,
                lr_scale=1 / 16,
                standardize=False,
            ),
            "spam": _curve(
                (10, 30, 100, 300, 1000, 4344),
                num_draws=5,
                test_fraction=0.2,
                nb_kind="multinomial",
                smoothing=1.0,
                standardize=False,
                pad_factor=4.0,
            ),
            "mnist": _curve(
                (10, 30, 100, 300, 1000, 3000, 10000),
                num_draws=5,
                max_examples=10_000,
                max_test=2_000,
                nb_kind="bernoulli",
                smoothing=1.0,
                binarize=127.0,
                lr_scale=1 / 255,
                standardize=False,
                pad_factor=4.0,
            ),
        }
    )
    if variant == "tiny":
        config.datasets = "breast_cancer,wine,digits"
        config.curves.wine.sizes = (3, 12, 48, 125)
        config.curves.wine.num_draws = 5
        config.logistic.num_steps = 30
        config.curves.breast_cancer.sizes = (4, 16, 64, 398)
        config.curves.breast_cancer.num_draws = 5
        config.curves.digits.sizes = (10, 40, 160, 420)
        config.curves.digits.num_draws = 5
        config.curves.digits.max_examples = 600
    elif variant != "default":
        raise ValueError(f"unknown variant {variant!r} of ng_jordan: default or tiny")
    return config
