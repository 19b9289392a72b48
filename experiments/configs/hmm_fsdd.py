"""Isolated spoken-digit recognition on the Free Spoken Digit Dataset (read offline from its
tarball): 13 MFCCs + deltas + delta-deltas, per-utterance mean normalisation
(genjax_lab.data.audio); one left-to-right HMM per digit with diagonal Gaussian-mixture
emissions, all ten trained at once by MAP Baum-Welch (vmapped over the digits, one EM
iteration a loop step); Bayes' rule classifier. Test split: index 0-4 of every speaker and
digit (300 recordings). The finished workdir is a model:
  ./launch.sh classify --workdir=W --input=REC.wav   # or a folder of .wav, or a list of them
  ./launch.sh score --workdir=W --input=REC.wav      # log p(x), the digit summed out
  ./launch.sh sample --workdir=W --label=7           # MFCC frames as .npy (no vocoder)

Variants (`--config=experiments/configs/hmm_fsdd.py:VARIANT`):
  default  8 states, 4 mixture components, the hmmlearn comparison's topology.
  single   8 states, one diagonal Gaussian per state.
  tiny     2 speakers, 3 digits, recordings 0-9 (tests and smoke runs).
"""

import pathlib

import ml_collections

from genjax_lab.core.loop import base_config

DEFAULT_TARBALL = (
    pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "fsdd" / "recordings.tar.gz"
)


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
    config = base_config()  # the loop's keys; EM is full batch, so batch_size is unused
    config.task = "fsdd"
    config.seed = 0
    config.num_steps = 10  # the most EM iterations (one loop step each)
    config.log_every = 1
    config.eval_every = 0
    config.eval_batch_size = 320  # the 300 test recordings in one batch
    config.checkpoint.update(every=5, keep=2)
    config.data = ml_collections.ConfigDict(
        {
            "fsdd_path": str(DEFAULT_TARBALL),
            "speakers": "",  # comma-separated names; empty: all six
            "num_digits": 10,  # digits 0 .. num_digits - 1
            "max_index": 50,  # recordings with index < max_index
            "num_test_indices": 5,  # index < this: test set
        }
    )
    # num_buckets: EM batches of similar-length recordings (speed only, same fit). tol: the
    # run ends after the first iteration in which no digit's MAP objective gained tol or
    # more (hmmlearn's rule and default; 10 iterations stop before it).
    config.model = ml_collections.ConfigDict(
        {"num_states": 8, "num_components": 4, "num_buckets": 4, "tol": 1e-2}
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
        config.eval_batch_size = 32
        config.data.speakers = "jackson,theo"
        config.data.num_digits = 3
        config.data.max_index = 10
        config.model.num_states = 4
        config.model.num_components = 2
        config.model.num_buckets = 1
    elif variant != "default":
        raise ValueError(f"unknown variant {variant!r} of hmm_fsdd: default, single or tiny")
    return config
