"""Goodfellow et al., NeurIPS 2014, "Generative adversarial nets", Table 1: the MLP GAN's
Gaussian Parzen-window log-likelihood of the MNIST test set is 225 +- 2 (as cited in
../shared/REFERENCES.md).

  ./launch.sh replicate gan_parzen --schedule=quick

Model: the paper's MLP GAN (experiments/configs/gan_mnist.py:mlp): G 100-1200-1200-784
ReLU/sigmoid, D maxout 784-(240x5)-(240x5)-1 with dropout 0.2 / 0.5, the paper code's
initialisation (uniform +-0.05 in G, +-0.005 in D, G's output bias at the pixel means'
logits), trained on train[:50000] in batches of 100. tiny and quick train with Adam 2e-4
(beta1 0.5) and normal noise; full trains by the paper code's own rule (gan_mnist.py:
mlp_paper): heavy-ball SGD of G and D together from one forward pass, rate 0.1 / 1.000004^t
floored at 1e-6, momentum 0.5 -> 0.7 over epochs 1..250, D's objective halved, uniform
noise, samples from the raw generator.

Metric: `parzen_log_likelihood` = mean over the 10,000 test images (pixels in [0, 1]) of the
log density under a Gaussian Parzen window on 10,000 samples of the generator (EMA on tiny
and quick, raw on full), sigma chosen from logspace(-1, 0, 10) by 1,000 images of
train[50000:60000]; `parzen_stderr` beside it. The published row reads
`parzen_selected_log_likelihood`: the same estimate at the evaluation whose Parzen estimate
of train[51000:60000] (sigma by train[50000:51000]) is the highest, model selection on the
validation split as the authors' per-epoch monitor did; `selected_step` names it. The
estimator's ceiling, 10,000 real training images as the samples, is 241 +- 2.1 here.

Rows: the published 225 (checked on the full schedule only: a CPU-sized run is far from the
paper's training length), and, on quick, the reference of issue #4: a PyTorch MLP GAN of the
same architecture, initialisation and optimiser trained for 12 minutes on this CPU scored
+52.0 +- 2.1; quick passes when ours is at least that.

Schedules (wall time on this 2-core CPU when it runs nothing else):
  tiny   tiny_mlp on the 8x8 digits for 30 steps (CI; a pipeline check, rows unchecked).
  quick  10,000 steps of 100 (20 epochs of train[:50000]): 143.8 +- 1.7 in 3 minutes
         (seed 0), a quarter of the 12-minute budget of the PyTorch reference; the budget
         itself holds 40,000 steps (docs/gan.md: several seeds).
  full   the paper's schedule: 250,000 steps (500 epochs; the original code set no end,
         and its momentum ramp runs to epoch 250), evaluated every 25 epochs (12,500
         steps), the test estimate taken at the best validation step. About 1.5 hours
         here when the machine is quiet:
         ./launch.sh replicate gan_parzen --schedule=full --data_dir=DIR
"""

import ml_collections

from genjax_lab.core import replication as rep

REPLICATION = rep.Replication(
    experiment="gan",
    paper="Goodfellow et al. 2014, Table 1 (MLP GAN, Parzen window on MNIST)",
    estimator="Gaussian Parzen window on 10,000 samples, sigma by 1,000 held-out train images; "
    "mean over the 10,000 test images",
    rows=(
        rep.Row(
            label="MLP GAN: Parzen test log-likelihood (published)",
            metric="parzen_selected_log_likelihood",
            published=225.0,
            tolerance={"full": 2.0},
            better="higher",
        ),  # the paper's +- 2
        rep.Row(
            label="same, against a PyTorch paper-init MLP GAN at 12 min (issue #4)",
            metric="parzen_log_likelihood",
            published=52.0,
            tolerance={"quick": 0.0},
            better="higher",
        ),
    ),
    data={"data.mnist_dir": "mnist"},
    caveat="Quick trains 20 epochs with Adam, not the paper's schedule: the published row is "
    "checked only on full, which trains by the original code's rule and selects the step on "
    "the validation split.",
)


def get_config(arg: str = "quick") -> ml_collections.ConfigDict:
    _, schedule = rep.parse_arg(arg)
    variant = {"tiny": "tiny_mlp", "quick": "mlp", "full": "mlp_paper"}[schedule]
    config = rep.experiment_config("experiments/configs/gan_mnist.py", variant)
    config.eval.select_on_validation = True  # the published row reads the selected step
    if schedule == "quick":
        config.num_epochs, config.num_steps = -1, 10_000
    if schedule == "full":
        epoch = 500  # steps of 100 over train[:50000]
        config.num_epochs, config.num_steps = -1, 500 * epoch
        config.eval_every, config.checkpoint.every = 25 * epoch, 5 * epoch
    return config
