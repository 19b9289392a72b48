"""Input pipeline throughput against the train steps it feeds: the data must never be what
a step waits for.

On MNIST (60,000 28x28 images), in memory and streamed from ArrayRecord files (prepared
by the repo's builder, read through `tfds.data_source`; and, for comparison, by the same
builder storing each image as raw bytes instead of TFDS's default list of int64, whose
decoding is most of a streamed read), measures:

- the pipeline alone: examples/s of `EpochBatcher.batch` called in a tight loop, read
  ahead by its grain iterator (the default) and read synchronously;
- grain's own `MapDataset.shuffle` node computing only the batch's row indices (the
  alternative the pipeline does not use; its index shuffle is vectorized instead);
- the VAE step (batch 100) and the GAN step (batch 128) of benchmarks/vae.py and gan.py:
  examples/s fed batches already in memory, and fed by the pipeline as the loop feeds it
  (JAX dispatches a step asynchronously, so the pipeline's next batch is read while the
  step runs: the ratio of the two is what the data costs the step).

Each record's speedup is the step's time per example over the pipeline's: above 1, the
pipeline outruns the step. Interleaved rounds, medians (this machine's speed drifts).

  .venv/bin/python benchmarks/pipeline.py --mnist_dir=../shared/data/mnist [--out=...]
"""

import argparse
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import grain
import jax
import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from benchmarks.common import record, report
from experiments.configs import gan_mnist, vae_mnist
from genjax_lab.core import data as data_lib
from genjax_lab.data import builders
from genjax_lab.data.images import load_images
from genjax_lab.models import gan, vae

SYNCHRONOUS = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)


class MnistIdxBytes(builders.MnistIdx, skip_registration=True):
    """The repo's MNIST builder with its images stored as raw bytes."""

    def _info(self):
        info = super()._info()
        image = tfds.features.Tensor(
            shape=(28, 28, 1), dtype=np.uint8, encoding=tfds.features.Encoding.BYTES
        )
        features = {"image": image, "label": info.features["label"]}
        return tfds.core.DatasetInfo(
            builder=self,
            description=info.description,
            features=tfds.features.FeaturesDict(features),
        )


def streamed_bytes_split(mnist_dir: str, tfds_dir: str) -> dict:
    builder = MnistIdxBytes(data_dir=tfds_dir, file_format="array_record")
    builders.prepare(builder, tfds.download.DownloadConfig(manual_dir=mnist_dir))
    return builders.record_columns(builder, "train", {"image": np.uint8, "label": np.int32})


def pipeline_seconds_per_example(
    split, batch_size: int, steps: int, read_options: grain.ReadOptions
) -> float:
    """`steps` batches from a fresh batcher, after its first (which builds the epoch's
    table and starts the read-ahead)."""
    batcher = data_lib.EpochBatcher(split, batch_size, seed=0, read_options=read_options)
    batcher.batch(0)
    start = time.perf_counter()
    for step in range(1, steps + 1):
        batcher.batch(step)
    elapsed = time.perf_counter() - start
    batcher.close()
    return elapsed / (steps * batch_size)


def grain_shuffle_seconds_per_example(size: int, batch_size: int, steps: int) -> float:
    indices = grain.MapDataset.range(size).shuffle(seed=0).batch(batch_size).repeat()
    start = time.perf_counter()
    for step in range(steps):
        indices[step]
    return (time.perf_counter() - start) / (steps * batch_size)


class Step:
    """A family's train step, jitted and donated as in the loop, on one device."""

    def __init__(self, family, first_batch: dict):
        key = jax.random.key(1)

        def counted(state, batch, counter):
            state, metrics = family.train_step(state, batch, jax.random.fold_in(key, counter))
            return state, metrics, counter + 1

        self._step = jax.jit(counted, donate_argnums=(0, 2))
        self._carry = [jax.jit(family.init)(jax.random.key(0), first_batch), np.int32(0)]
        self.run(lambda step: first_batch, 0, 5)  # compile and warm up

    def run(self, batch_at, first: int, steps: int) -> float:
        """Seconds per step over steps first.. first + steps fed `batch_at(step)`."""
        metrics = None
        start = time.perf_counter()
        for step in range(first, first + steps):
            self._carry[0], metrics, self._carry[1] = self._step(
                self._carry[0], batch_at(step), self._carry[1]
            )
        jax.block_until_ready(metrics)
        return (time.perf_counter() - start) / steps


def _families(dataset: data_lib.Dataset) -> dict[str, tuple[object, int]]:
    """{name: (loop family, benchmark batch size)} of benchmarks/vae.py and gan.py."""
    vae_config = vae_mnist.get_config("vae_k1")
    vae_config.batch_size = 100
    gan_config = gan_mnist.get_config("mlp_small")
    gan_config.batch_size = 128
    gan_config.model.ema_decay = 0.999
    return {
        "VAE": (vae.family_for(vae_config, dataset).as_family(), 100),
        "GAN": (gan.family_for(gan_config, dataset).as_family(), 128),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = pathlib.Path(__file__).resolve().parents[2] / "shared"
    parser.add_argument("--mnist_dir", default=str(shared / "data" / "mnist"))
    parser.add_argument(
        "--tfds_dir",
        default="runs/bench/pipeline/tfds",
        help="Where MNIST is prepared as ArrayRecord files (reused when there).",
    )
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    data_config = ml_collections.ConfigDict(
        {
            "name": "mnist",
            "binarize": "dynamic",
            "streaming": False,
            "mnist_dir": args.mnist_dir,
            "tfds_dir": args.tfds_dir,
        }
    )
    in_memory = load_images(data_config)
    data_config.streaming = True
    splits = {
        "in memory": in_memory["train"],
        "streamed": load_images(data_config)["train"],
        "streamed as bytes": streamed_bytes_split(args.mnist_dir, args.tfds_dir),
    }
    families = _families(in_memory)
    fixed = {
        name: [data_lib.EpochBatcher(in_memory["train"], b, seed=1).batch(i) for i in range(20)]
        for name, (_, b) in families.items()
    }
    steps = {name: Step(family, fixed[name][0]) for name, (family, _) in families.items()}

    times: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        times.setdefault(key, []).append(value)

    for _ in range(args.rounds):
        for name, (_, b) in families.items():

            def from_memory(i, name=name):
                return fixed[name][i % 20]

            add(f"{name} step", steps[name].run(from_memory, 0, args.steps) / b)
            for where, split in splits.items():
                for variant, options in (("", data_lib.READ_OPTIONS), (" sync", SYNCHRONOUS)):
                    add(
                        f"pipeline {where} b{b}{variant}",
                        pipeline_seconds_per_example(split, b, args.steps, options),
                    )
                batcher = data_lib.EpochBatcher(split, b, seed=0)
                add(f"{name} fed {where}", steps[name].run(batcher.batch, 0, args.steps) / b)
                batcher.close()
            size = len(in_memory["train"]["label"])
            add(f"grain shuffle b{b}", grain_shuffle_seconds_per_example(size, b, args.steps))

    median = {key: statistics.median(values) for key, values in times.items()}
    records = []
    for name, (_, b) in families.items():
        step_s = median[f"{name} step"]
        reference = f"{name} step"
        for where in splits:
            for variant, label in (("", "read ahead"), (" sync", "synchronous")):
                ours = median[f"pipeline {where} b{b}{variant}"]
                records.append(
                    record(
                        f"pipeline {where}, {label} (batch {b}) vs {name} step",
                        ours,
                        reference,
                        jax.__version__,
                        step_s,
                        batch_size=b,
                        pipeline_examples_per_s=1 / ours,
                        step_examples_per_s=1 / step_s,
                    )
                )
            fed = median[f"{name} fed {where}"]
            records.append(
                record(
                    f"{name} step fed by the pipeline {where} (batch {b}) vs fed from memory",
                    fed,
                    reference,
                    jax.__version__,
                    step_s,
                    batch_size=b,
                    fed_examples_per_s=1 / fed,
                    step_examples_per_s=1 / step_s,
                )
            )
        grain_s = median[f"grain shuffle b{b}"]
        records.append(
            record(
                f"grain shuffle node, row indices alone (batch {b}) vs {name} step",
                grain_s,
                reference,
                jax.__version__,
                step_s,
                batch_size=b,
                grain_version=grain.__version__,
                pipeline_examples_per_s=1 / grain_s,
                step_examples_per_s=1 / step_s,
            )
        )
    report(records, args.out)
    for r in records:
        rates = ", ".join(
            f"{k.removesuffix('_examples_per_s')} {v:,.0f}"
            for k, v in r.items()
            if k.endswith("_examples_per_s")
        )
        print(f"{r['name']}: examples/s {rates}")


if __name__ == "__main__":
    main()
