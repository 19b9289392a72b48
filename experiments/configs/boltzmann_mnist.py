"""RBMs and a DBM on binarized MNIST (Salakhutdinov & Murray 2008; Salakhutdinov & Hinton 2009),
on a CPU-sized schedule; and tiny variants on the embedded 8x8 digits (offline, seconds).

  ./launch.sh boltzmann --config=experiments/configs/boltzmann_mnist.py:tiny
  ./launch.sh boltzmann --config=experiments/configs/boltzmann_mnist.py:rbm_cd25 \
      --config.data.mnist_dir=DIR/mnist --workdir=runs/rbm_cd25

MNIST is binarized once, stochastically, with a fixed seed (`data.binarize='static'`, as the
papers); batch 100; SGD with momentum 0.5 for 5 epochs then 0.9, weight decay 2e-4 on the
weights (Hinton's practical guide); visible biases start at the logits of the pixel means.
log Z by AIS: 100 runs, the paper's piecewise schedule 0:1e-3:0.5, 0.5:1e-4:0.9, 0.9:1e-5:1
rescaled to `eval.ais_temperatures` steps (14,500 in the paper; 20,000 for the DBM).

Variants (`:VARIANT`; `:VARIANT,tiny` runs any of them small on the 8x8 digits):
  rbm_cd1   500 hidden, CD-1, lr 0.05, 6 epochs.
  rbm_cd25  500 hidden, CD-k with k rising linearly 1 -> 25 over the first 3 of 6 epochs
            (the paper raised k gradually to 25 over a much longer run; it reports -86.34).
  rbm_pcd   500 hidden, PCD-1 with 100 persistent chains, lr 0.05 falling linearly to 0, 10 epochs.
  dbm       784-500-1000: greedy pretraining 5 epochs per layer (CD-1, doubled inputs), then
            5 epochs of joint training (mean field 10 iterations, 100 persistent chains,
            5 Gibbs sweeps per step, lr 0.01 falling to 0); AIS 20,000 temperatures; the
            paper (-84.62) trained 500 epochs.
  tiny      = rbm_pcd,tiny: 16 hidden units, 60 steps on the digits, AIS 2,000 temperatures
            x 16 runs, checked against the exact log Z (enumeration).

Measured results, commands and wall times (2-core shared CPU): docs/boltzmann.md.
"""

import ml_collections

from genjax_lab.models import boltzmann

VARIANTS = ("rbm_cd1", "rbm_cd25", "rbm_pcd", "dbm")


def _mnist(config: ml_collections.ConfigDict, variant: str) -> None:
    config.data.name = "mnist"
    config.log_every = 100
    config.checkpoint.every = 600  # one epoch
    if variant == "rbm_cd1":
        config.model.method, config.model.k = "cd", 1
        config.num_epochs = 6.0
    elif variant == "rbm_cd25":
        config.model.method, config.model.k, config.model.k_ramp_epochs = "cd", 25, 3.0
        config.num_epochs = 6.0
    elif variant == "rbm_pcd":
        config.model.method, config.model.k = "pcd", 1
        config.optim.final_lr_fraction = 0.0
        config.num_epochs = 10.0
    elif variant == "dbm":
        config.model.kind, config.model.num_hidden, config.model.num_hidden2 = "dbm", 500, 1000
        config.model.k = 5
        config.pretrain.epochs = 5.0
        config.num_epochs = 15.0  # 5 + 5 pretraining, 5 joint
        config.optim.learning_rate, config.optim.final_lr_fraction = 0.01, 0.0
        config.eval.ais_temperatures = 20_000


def _tiny(config: ml_collections.ConfigDict) -> None:
    config.data.name = "digits"
    config.batch_size = 32
    config.num_epochs, config.num_steps = -1, 60
    config.log_every, config.checkpoint.every = 10, 20
    config.model.num_hidden, config.model.num_hidden2 = 16, 8
    config.model.k = min(config.model.k, 3)
    config.model.k_ramp_epochs = min(config.model.k_ramp_epochs, 0.5)
    config.pretrain.epochs = min(config.pretrain.epochs, 0.5)  # 0.5 epoch = 23 steps per layer
    config.eval.ais_runs, config.eval.ais_temperatures = 16, 2000
    config.eval.train_examples, config.eval.ll_batch_size = 1000, 360
    config.eval_batch_size = 360
    config.eval.num_samples, config.eval.sample_sweeps, config.eval.num_filters = 16, 50, 16


def get_config(variant: str = "rbm_cd25") -> ml_collections.ConfigDict:
    names = variant.split(",")
    model = "rbm_pcd" if names[0] == "tiny" else names[0]
    tiny = "tiny" in names
    if model not in VARIANTS or any(n != "tiny" for n in names[1:]):
        raise ValueError(
            f"unknown variant {variant!r} of boltzmann_mnist: one of {VARIANTS}, "
            "'tiny', or 'VARIANT,tiny'"
        )
    config = boltzmann.default_config()
    _mnist(config, model)
    if tiny:
        _tiny(config)
    return config
