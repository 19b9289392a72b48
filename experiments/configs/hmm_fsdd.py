"""Isolated spoken-digit recognition on the Free Spoken Digit Dataset (read offline from its
tarball): 13 MFCCs + deltas + delta-deltas, per-utterance mean normalisation
(genjax_lab.data.audio); one left-to-right HMM per digit with diagonal Gaussian-mixture
emissions, all ten trained at once by MAP Baum-Welch; Bayes' rule classifier. Test split:
index 0-4 of every speaker and digit (300 recordings).

Variants (`--config=experiments/configs/hmm_fsdd.py:VARIANT`):
  default  8 states, 4 mixture components, the hmmlearn comparison's topology.
  single   8 states, one diagonal Gaussian per state.
  tiny     2 speakers, 3 digits, recordings 0-9 (tests and smoke runs).
"""

import pathlib

import ml_collections

DEFAULT_TARBALL = (
    pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "fsdd" / "recordings.tar.gz"
)


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.task = "fsdd"
    config.seed = 0
    config.num_steps = 10  # EM iterations
    config.checkpoint = ml_collections.ConfigDict({"every": 5, "keep": 2, "on_corrupt": "fail"})
    config.data = ml_collections.ConfigDict(
        {
            "fsdd_path": str(DEFAULT_TARBALL),
            "speakers": "",  # comma-separated names; empty: all six
            "num_digits": 10,  # digits 0 .. num_digits - 1
            "max_index": 50,  # recordings with index < max_index
            "num_test_indices": 5,  # index < this: test set
        }
    )
    # num_buckets: EM batches of similar-length recordings (speed only, same fit).
    config.model = ml_collections.ConfigDict(
        {"num_states": 8, "num_components": 4, "num_buckets": 4}
    )
    # A weak inverse-Wishart-type prior on the diagonal variances keeps components that lose
    # their frames from collapsing; Dirichlet(1) on the weights and transitions = ML.
    config.prior = ml_collections.ConfigDict(
        {"covariance_prior": 1e-2, "covariance_pseudocount": 1.0}
    )
    if variant == "single":
        config.model.num_components = 1
    elif variant == "tiny":
        config.num_steps = 4
        config.checkpoint.every = 2
        config.data.speakers = "jackson,theo"
        config.data.num_digits = 3
        config.data.max_index = 10
        config.model.num_states = 4
        config.model.num_components = 2
        config.model.num_buckets = 1
    elif variant != "default":
        raise ValueError(f"unknown variant {variant!r} of hmm_fsdd: default, single or tiny")
    return config
