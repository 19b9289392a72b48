"""Trains an RBM or a DBM, then estimates log Z by AIS and scores the test set in nats.

  ./launch.sh boltzmann                                   # tiny RBM on the 8x8 digits, seconds
  ./launch.sh boltzmann --config=experiments/configs/boltzmann_mnist.py:rbm_cd25 \
      --config.data.mnist_dir=DIR --workdir=runs/rbm_cd25
  ./launch.sh sample --workdir=runs/boltzmann             # then: fantasies, a PNG grid
  ./launch.sh score --workdir=runs/boltzmann --input=IMAGES.npy   # log p(v), AIS log Z

summary.json: the loop's final metrics, log_z_ais (+ lower/upper: log(Z +- 3 sigma)),
test_log_likelihood (DBM: the mean-field lower bound), train_log_likelihood, timings
(train_seconds, eval_seconds: AIS and scoring).
"""

import json
import pathlib
import time

import numpy as np

from genjax_lab import saving
from genjax_lab.core import config as config_lib
from genjax_lab.core import metrics as metrics_lib
from genjax_lab.core.loop import train_and_evaluate
from genjax_lab.data.images import load_images
from genjax_lab.models import boltzmann

config_lib.define_flags(
    config_lib.beside(__file__, "configs/boltzmann_mnist.py:tiny"), "runs/boltzmann"
)


def main(config, workdir: pathlib.Path) -> None:
    dataset = load_images(config.data)
    family = boltzmann.family_for(config, dataset)
    start = time.perf_counter()
    result = train_and_evaluate(config, workdir, family.as_family(), dataset)
    train_seconds = time.perf_counter() - start  # this launch only
    if result.preempted:
        return

    def scores():
        scored = boltzmann.final_scores(family, result.state, dataset, config)
        del scored["ais_seconds"]  # timings stay out of the record, so reruns compare equal
        return {**result.metrics, **scored}

    shape = family.image_shape
    meta = {
        "num_visible": int(np.prod(shape)),
        "image_shape": list(shape),
        "input": {"kind": "image", "shape": list(shape), "layout": "flat", "binarize": "threshold"},
    }
    saving.save(workdir, "boltzmann", config, meta, result.state.params)
    start = time.perf_counter()
    metrics = metrics_lib.final_metrics(workdir, result.step, scores)
    timings = {"train_seconds": train_seconds, "eval_seconds": time.perf_counter() - start}
    metrics_lib.write_summary(workdir, {**metrics, **timings})
    metrics_lib.say(json.dumps({**metrics, **timings}, indent=1))


if __name__ == "__main__":
    config_lib.run(main)
