"""The occasionally dishonest casino (Durbin, Eddy, Krogh & Mitchison 1998, section 3.2):
rolls sampled from the published two-state model, parameters learned back by MAP
Baum-Welch with random restarts (vmapped, one EM iteration a loop step), then Viterbi /
posterior decoding of a fresh sequence. The finished workdir is a model:
`./launch.sh sample --workdir=W --num=4` prints rolls (symbols 0-5 for faces 1-6), and
`./launch.sh score --workdir=W --input=ROLLS.npy` gives log p of int rolls [N, T] or [T].

Variants (`--config=experiments/configs/hmm_casino.py:VARIANT`):
  default  10 sequences x 2,000 rolls, 8 restarts, 200 EM iterations (a few seconds).
  tiny     2 x 500 rolls, 2 restarts, 20 iterations (tests and smoke runs).
"""

import ml_collections

from genjax_lab.core.loop import base_config


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
    config = base_config()  # the loop's keys; EM is full batch, so batch_size is unused
    config.task = "casino"
    config.seed = 0
    config.num_steps = 200  # the most EM iterations (one loop step each)
    config.log_every = 50
    config.eval_every = 0
    config.checkpoint.update(every=50, keep=2)
    config.data = ml_collections.ConfigDict(
        {"num_sequences": 10, "length": 2000, "test_length": 2000}
    )
    # tol: the run ends after the first iteration in which no restart's MAP objective gained
    # tol or more (hmmlearn's rule). -inf: all num_steps iterations, as the published numbers
    # were measured; 1e-3 stops the default run at iteration 113 of 200, its parameters
    # within 3e-5 of those (the objective no longer moves in float32 after ~60).
    config.model = ml_collections.ConfigDict({"num_restarts": 8, "tol": float("-inf")})
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
        config.log_every = 10
        config.checkpoint.every = 10
        config.data.num_sequences = 2
        config.data.length = 500
        config.data.test_length = 300
        config.model.num_restarts = 2
    elif variant != "default":
        raise ValueError(f"unknown variant {variant!r} of hmm_casino: default or tiny")
    return config
