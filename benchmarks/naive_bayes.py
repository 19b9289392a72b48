"""Naive Bayes against scikit-learn, same run, same data.

Naive Bayes: MNIST train (60,000 x 784, pixels as float32 0..255) fit, and predict_proba on
MNIST test (10,000): Gaussian (var_smoothing 1e-9) and Bernoulli (binarize at 127) against
GaussianNB / BernoulliNB. Ours includes the host-side input validation.

The machine may be shared: timings are provisional.

  .venv/bin/python -m benchmarks.naive_bayes --mnist_dir=../shared/data/mnist --out=/tmp/nb.json
"""
import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import sklearn  # noqa: E402
from sklearn import naive_bayes as sk_nb  # noqa: E402

from benchmarks.common import median_seconds, record, report  # noqa: E402
from genjax_lab.data.idx import load_mnist_split  # noqa: E402
from genjax_lab.models import naive_bayes as nb  # noqa: E402


def nb_records(mnist_dir: str, repeats: int) -> list[dict]:
    images, labels = load_mnist_split(mnist_dir, "train")
    test_images, _ = load_mnist_split(mnist_dir, "test")
    x = images.reshape(len(images), -1).astype(np.float32)
    x_test = test_images.reshape(len(test_images), -1).astype(np.float32)
    records = []
    for kind, reference in (("gaussian", sk_nb.GaussianNB()), ("bernoulli", sk_nb.BernoulliNB(binarize=127.0))):
        def our_fit():
            return jax.block_until_ready(nb.fit(x, labels, 10, kind, binarize=127.0))
        params = our_fit()
        fit_ours = median_seconds(our_fit, repeats)
        fit_theirs = median_seconds(lambda: reference.fit(x, labels), repeats)
        pred_ours = median_seconds(lambda: jax.block_until_ready(nb.predict_proba(params, x_test)), repeats)
        pred_theirs = median_seconds(lambda: reference.predict_proba(x_test), repeats)
        agreement = float(np.mean(np.asarray(nb.predict(params, x_test)) == reference.predict(x_test)))
        name = type(reference).__name__
        records.append(record(f"naive bayes {kind} fit MNIST 60k", fit_ours, f"sklearn {name}", sklearn.__version__,
                              fit_theirs))
        records.append(record(f"naive bayes {kind} predict_proba MNIST 10k", pred_ours, f"sklearn {name}",
                              sklearn.__version__, pred_theirs, prediction_agreement=agreement))
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mnist_dir", default=str(pathlib.Path(__file__).resolve().parents[2] / "shared/data/mnist"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None, help="write the JSON records here")
    args = parser.parse_args()
    if not pathlib.Path(args.mnist_dir).is_dir():
        sys.exit(f"MNIST not found at {args.mnist_dir} (--mnist_dir)")
    report(nb_records(args.mnist_dir, args.repeats), args.out)


if __name__ == "__main__":
    main()
