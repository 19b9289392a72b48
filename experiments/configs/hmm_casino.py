"""The occasionally dishonest casino (Durbin, Eddy, Krogh & Mitchison 1998, section 3.2):
rolls sampled from the published two-state model, parameters learned back by MAP
Baum-Welch with random restarts, then Viterbi / posterior decoding of a fresh sequence.

Variants (`--config=experiments/configs/hmm_casino.py:VARIANT`):
  default  10 sequences x 2,000 rolls, 8 restarts, 200 EM iterations (a few seconds).
  tiny     2 x 500 rolls, 2 restarts, 20 iterations (tests and smoke runs).
"""

import ml_collections


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.task = "casino"
    config.seed = 0
    config.num_steps = 200  # EM iterations
    config.checkpoint = ml_collections.ConfigDict({"every": 50, "keep": 2, "on_corrupt": "fail"})
    config.data = ml_collections.ConfigDict(
        {"num_sequences": 10, "length": 2000, "test_length": 2000}
    )
    config.model = ml_collections.ConfigDict({"num_restarts": 8})
    # Dirichlet(2) on transition and emission rows: add-one smoothing, the MAP in MAP-EM.
    config.prior = ml_collections.ConfigDict(
        {
            "initial_concentration": 1.0,
            "transition_concentration": 2.0,
            "emission_concentration": 2.0,
        }
    )
    config.plot_steps = 300
    if variant == "tiny":
        config.num_steps = 20
        config.checkpoint.every = 10
        config.data.num_sequences = 2
        config.data.length = 500
        config.data.test_length = 300
        config.model.num_restarts = 2
    elif variant != "default":
        raise ValueError(f"unknown variant {variant!r} of hmm_casino: default or tiny")
    return config
