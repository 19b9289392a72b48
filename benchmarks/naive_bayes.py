"""Naive Bayes against scikit-learn, same run, same data.

Naive Bayes: MNIST train (60,000 x 784, pixels as float32 0..255) fit, and predict_proba on
MNIST test (10,000): Gaussian (var_smoothing 1e-9) and Bernoulli (binarize at 127) against
GaussianNB / BernoulliNB. Ours includes the host-side input validation.

The machine may be shared: ours and the reference alternate call by call over `--rounds`
rounds, so a load that comes and goes hits both; each record gives the median times and the
spread (lowest and highest) of the per-round speedups.

  .venv/bin/python -m benchmarks.naive_bayes --mnist_dir=../shared/data/mnist --out=/tmp/nb.json
"""

import argparse
import pathlib
import statistics
import sys
import time
from collections.abc import Callable

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax
import numpy as np
import sklearn
from sklearn import naive_bayes as sk_nb

from benchmarks.common import record, report
from genjax_lab.data.idx import load_mnist_split
from genjax_lab.models import naive_bayes as nb


def interleaved(ours: Callable[[], object], theirs: Callable[[], object], rounds: int) -> dict:
    """Median seconds of each and the spread of the per-round speedups (theirs / ours), the
    two calls alternating after one untimed call each."""
    ours(), theirs()
    times: dict[str, list[float]] = {"ours": [], "theirs": []}
    for _ in range(rounds):
        for name, fn in (("ours", ours), ("theirs", theirs)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    ratios = [t / o for o, t in zip(times["ours"], times["theirs"])]
    return {
        "ours_s": statistics.median(times["ours"]),
        "reference_s": statistics.median(times["theirs"]),
        "rounds": rounds,
        "speedup_min": min(ratios),
        "speedup_max": max(ratios),
    }


def nb_records(mnist_dir: str, rounds: int) -> list[dict]:
    images, labels = load_mnist_split(mnist_dir, "train")
    test_images, _ = load_mnist_split(mnist_dir, "test")
    x = images.reshape(len(images), -1).astype(np.float32)
    x_test = test_images.reshape(len(test_images), -1).astype(np.float32)
    records = []
    references = (
        ("gaussian", sk_nb.GaussianNB()),
        ("bernoulli", sk_nb.BernoulliNB(binarize=127.0)),
    )
    for kind, reference in references:
        config = nb.default_config()
        config.update({"kind": kind, "num_classes": 10, "binarize": 127.0})

        def our_fit(config=config):
            data = {"x": x, "y": labels}
            return jax.block_until_ready(nb.fit(jax.random.key(0), data, config)[0])

        classifier = nb.classifier(our_fit())
        name = f"sklearn {type(reference).__name__}"
        fit = interleaved(our_fit, lambda ref=reference: ref.fit(x, labels), rounds)
        pred = interleaved(
            lambda c=classifier: jax.block_until_ready(c.predict_proba(x_test)),
            lambda ref=reference: ref.predict_proba(x_test),
            rounds,
        )
        agreement = float(
            np.mean(np.asarray(classifier.predict(x_test)) == reference.predict(x_test))
        )
        for what, timing, extra in (
            ("fit MNIST 60k", fit, {}),
            ("predict_proba MNIST 10k", pred, {"prediction_agreement": agreement}),
        ):
            ours_s, theirs_s = timing.pop("ours_s"), timing.pop("reference_s")
            records.append(
                record(
                    f"naive bayes {kind} {what}",
                    ours_s,
                    name,
                    sklearn.__version__,
                    theirs_s,
                    **timing,
                    **extra,
                )
            )
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--mnist_dir",
        default=str(pathlib.Path(__file__).resolve().parents[2] / "shared/data/mnist"),
    )
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds")
    parser.add_argument("--out", default=None, help="write the JSON records here")
    args = parser.parse_args()
    if not pathlib.Path(args.mnist_dir).is_dir():
        sys.exit(f"MNIST not found at {args.mnist_dir} (--mnist_dir)")
    records = nb_records(args.mnist_dir, args.rounds)
    report(records, args.out)
    for r in records:
        print(
            f"{r['name']}: speedup over {r['rounds']} interleaved rounds "
            f"{r['speedup_min']:.2f}x to {r['speedup_max']:.2f}x"
        )


if __name__ == "__main__":
    main()
