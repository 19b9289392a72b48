"""Isolated spoken-digit recognition on the Free Spoken Digit Dataset (FSDD, 6 speakers x 10
digits x 50 recordings, 8 kHz), with one left-to-right GMM-HMM per digit and Bayes' rule.

  ./launch.sh replicate fsdd_digits --schedule=quick --data_dir=DIR

No paper number: ../shared/REFERENCES.md gives none for FSDD. The row compares against
the test accuracy that issue #3 measured on this machine for hmmlearn 0.3.3's GMMHMM with the
same front end and topology: 0.99 (297/300), after about 150 s of training (13 MFCCs +
deltas + delta-deltas, per-utterance mean normalisation; 8 left-to-right states, 4 diagonal
mixture components; test split = index 0-4 of every speaker and digit, 300 recordings).
benchmarks/hmm.py reruns that hmmlearn baseline beside ours in the same process.

Metric: test accuracy of argmax_c log p(y | c) + log p(c) over the 300 test recordings
(p(y | c) by the forward algorithm). Schedules (wall time here, 2 shared CPU cores):
  tiny   2 speakers, 3 digits, recordings 0-9, 4 states x 2 components, 4 EM iterations
         (~15 s, mostly start-up): a pipeline check, tolerance 0.2.
  quick  the full data and model, 10 EM iterations (about 20 s of EM, 1 min in all with
         feature extraction and compilation). The tolerance 0.01 is three test recordings:
         EM's accuracy wobbles by one or two recordings from one iteration to the next.
  full   the same with 30 EM iterations.
"""

import ml_collections

from genjax_lab.core import replication as rep

REPLICATION = rep.Replication(
    experiment="hmm",
    paper="FSDD digit recognition; reference = hmmlearn GMMHMM accuracy measured in issue #3 "
    "(no paper number)",
    estimator="test accuracy (300 recordings, index 0-4), Bayes' rule over 10 per-digit GMM-HMMs",
    rows=(
        rep.Row(
            label="FSDD test accuracy (8-state LR HMM, 4 mixtures)",
            metric="test_accuracy",
            published=0.99,
            tolerance={"tiny": 0.2, "quick": 0.01, "full": 0.01},
            better="higher",
        ),
    ),
    data={"data.fsdd_path": "fsdd/recordings.tar.gz"},
)


def get_config(arg: str = "quick") -> ml_collections.ConfigDict:
    _, schedule = rep.parse_arg(arg)
    config = rep.experiment_config(
        "experiments/configs/hmm_fsdd.py", "tiny" if schedule == "tiny" else "default"
    )
    if schedule == "full":
        config.num_steps = 30
    return config
