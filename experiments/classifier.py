"""Trains the discriminative baseline p(y | x) (and the feature network of sample metrics).

./launch.sh classifier                                     # digits, beside the CVAE
./launch.sh classifier --config=experiments/configs/classifier.py:mnist --config.data.mnist_dir=DIR
"""

import json
import pathlib

from genjax_lab.core import config as config_lib
from genjax_lab.core import metrics as metrics_lib
from genjax_lab.core.loop import train_and_evaluate
from genjax_lab.data.images import load_images
from genjax_lab.models import classifier

config_lib.define_flags(config_lib.beside(__file__, "configs/classifier.py"), "runs/classifier")


def main(config, workdir: pathlib.Path) -> None:
    dataset = load_images(config.data)
    result = train_and_evaluate(
        config, workdir, classifier.family_for(config, dataset).as_family(), dataset
    )
    if result.preempted:
        return
    metrics_lib.write_summary(workdir, result.metrics)
    metrics_lib.say(json.dumps(result.metrics, indent=1))


if __name__ == "__main__":
    config_lib.run(main)
