"""Ng & Jordan (NeurIPS 2002), "On discriminative vs. generative classifiers: a comparison of
logistic regression and naive Bayes", Figure 1 (learning curves on UCI data sets). The claim
(../shared/REFERENCES.md) is qualitative: naive Bayes approaches its (higher) asymptotic
error much faster, so it wins with few training examples, logistic regression wins with
many, and the curves cross.

  ./launch.sh replicate ng_jordan --schedule=quick --data_dir=DIR

Estimator: for each training size m, R random training sets (one example of every class, the
rest uniform; a fresh random 30% test set per draw, 20% for spam, MNIST's test split for
MNIST); test error of naive Bayes and of L2 logistic regression (C = 1, 100 L-BFGS steps) on
the same draws. Rows (published 0, better "higher", tolerance 0: the sign is the claim):
  NAME_nb_lead_small_n  max over the smaller half of the sizes of
                        (LR error - NB error - 2 standard errors of the paired difference):
                        > 0 means naive Bayes is better by more than two standard errors at
                        some small training size;
  NAME_lr_lead_large_n  NB error - LR error - 2 standard errors at the largest size.
The summary also holds the plain differences at the smallest and largest sizes and the
crossing size (the size after the last one where naive Bayes is no worse; -1: none).
Naive Bayes: Gaussian with a variance per feature shared by the classes (the paper's
continuous model) for breast_cancer and wine, multinomial for the digits' pixel counts and
spam's word counts, Bernoulli (pixels > 127) for MNIST.

Runs: "bundled" (scikit-learn's breast_cancer, wine, digits: no download) and "files" (SMS
spam, MNIST). Quick results here (mean test error, naive Bayes / logistic regression):
  breast_cancer  m=4: .169/.153  m=8: .094/.126  m=16: .066/.084  m=398: .061/.025;
                 curves cross at m=64; nb_lead +0.018, lr_lead +0.031.
  wine           m=3: .388/.244  m=12: .077/.086  m=125: .047/.022; cross at m=24;
                 lr_lead +0.015 but nb_lead -0.014: NB's lead at m=12 (0.008) is within
                 noise (53 test wines, 20 draws), so wine has no small-n row.
  digits         m=10: .374/.355  m=20: .310/.412  m=40: .221/.249  m=1258: .103/.037;
                 cross at m=80; nb_lead +0.084, lr_lead +0.060.
  spam           m=10: .122/.132  m=100: .047/.110  m=1000: .024/.026  m=4344: .019/.013;
                 cross at m=4344; nb_lead +0.057, lr_lead +0.0018 (a narrow margin: 5 draws).
  mnist          m=30: .660/.458  m=100: .337/.266  m=10000: .159/.095; no crossing:
                 logistic regression is better at every size (Bernoulli naive Bayes with
                 alpha=1 is even worse at m=30 than at m=10, as scikit-learn's BernoulliNB
                 is on the same draws), so MNIST has only the large-n row (lr_lead +0.063).
  At the very smallest size (one or two examples per class) the plain difference favours
  logistic regression on breast_cancer, wine, digits and MNIST: both are near chance there.
Schedules (wall time here, 2 shared CPU cores):
  tiny   bundled only, 4 sizes x 5 draws, a 600-image slice of digits (~12-19 s); rows
         unchecked (too few draws to be significant): a pipeline check.
  quick  bundled: 20 draws per size (~1 min); files: spam 5 draws (1,000-word vocabulary),
         MNIST 10,000 training / 2,000 test images, 5 draws (~2.3 min).
  full   bundled 100 draws; spam 20 draws; MNIST all 60,000 / 10,000 images, sizes to 60,000,
         10 draws.
"""

import ml_collections

from genjax_lab.core import replication as rep

# Datasets where the quick schedule shows each lead (see the docstring for the others).
ROWS_SMALL_BUNDLED = ("breast_cancer", "digits")
ROWS_LARGE_BUNDLED = ("breast_cancer", "wine", "digits")
ROWS_SMALL_FILES = ("spam",)
ROWS_LARGE_FILES = ("spam", "mnist")
RUN_DATASETS = {"bundled": ("breast_cancer", "wine", "digits"), "files": ("spam", "mnist")}
CHECKED = {"quick": 0.0, "full": 0.0}


def _rows(run: str, names: tuple[str, ...], lead: str, what: str) -> tuple[rep.Row, ...]:
    return tuple(
        rep.Row(
            label=f"{name}: {what}",
            metric=f"{name}_{lead}",
            published=0.0,
            tolerance=CHECKED,
            run=run,
            better="higher",
        )
        for name in names
    )


REPLICATION = rep.Replication(
    experiment="naive_bayes",
    paper="Ng & Jordan 2002, On discriminative vs. generative classifiers, Fig. 1 "
    "(qualitative claim)",
    estimator="mean test error over random training sets per size; leads net of 2 standard "
    "errors of the paired difference",
    rows=(
        *_rows(
            "bundled", ROWS_SMALL_BUNDLED, "nb_lead_small_n", "naive Bayes better with few examples"
        ),
        *_rows(
            "bundled", ROWS_LARGE_BUNDLED, "lr_lead_large_n", "logistic regression better with many"
        ),
        *_rows(
            "files", ROWS_SMALL_FILES, "nb_lead_small_n", "naive Bayes better with few examples"
        ),
        *_rows(
            "files", ROWS_LARGE_FILES, "lr_lead_large_n", "logistic regression better with many"
        ),
    ),
    runs=("bundled", "files"),
    data={"data.spam_path": "text/SMSSpamCollection", "data.mnist_dir": "mnist"},
    caveat="A qualitative claim: rows check the sign of each lead, not a published number.",
)


def runs_for(schedule: str) -> tuple[str, ...]:
    return ("bundled",) if schedule == "tiny" else REPLICATION.runs


def get_config(arg: str = "bundled,quick") -> ml_collections.ConfigDict:
    run, schedule = rep.parse_arg(arg, REPLICATION.runs)
    config = rep.experiment_config(
        "experiments/configs/ng_jordan.py", "tiny" if schedule == "tiny" else "default"
    )
    config.datasets = ",".join(RUN_DATASETS[run])
    if schedule == "full":
        for name in ("breast_cancer", "wine", "digits"):
            config.curves[name].num_draws = 100
        config.curves.spam.num_draws = 20
        mnist = config.curves.mnist
        mnist.num_draws, mnist.max_examples, mnist.max_test = 10, 0, 0
        mnist.sizes = (10, 30, 100, 300, 1000, 3000, 10000, 30000, 60000)
    return config
