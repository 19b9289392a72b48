"""GAN training throughput: the whole harness vs a bare jitted JAX loop vs PyTorch.

Same model (G 100-256-512-784 ReLU/sigmoid, D 784-512-256-1 LeakyReLU(0.2)), same loss
(nonsaturating), same optimiser (Adam 2e-4, beta1 0.5) for both networks, same batch (128
MNIST images in [0, 1], normal noise), one D update then one G update per step that
reuses the step's fake batch, and an EMA of G's weights, on the CPU threads given.
Two PyTorch loops: the usual one (the PyTorch DCGAN example's: `errG.backward()` also
fills D's gradients, which are then discarded) and a tuned one that freezes D's
parameters during the G update. The harness is timed as the difference between a run
of N and of 2N steps, so start-up and compilation cancel; it includes data feeding,
metrics and checkpoints every 1000 steps.

  .venv/bin/python benchmarks/gan.py --mnist_dir=../shared/data/mnist [--steps=300] \\
      [--out=runs/bench/gan.json]
"""

import argparse
import math
import pathlib
import statistics
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax
import numpy as np

from benchmarks import common
from benchmarks.common import harness_seconds_per_step, record, report, seconds_per_step
from experiments.configs import gan_mnist
from genjax_lab.core.data import Dataset
from genjax_lab.data.idx import load_mnist_split
from genjax_lab.models import gan

G_LAYERS = ((100, 256), (256, 512), (512, 784))
D_LAYERS = ((784, 512), (512, 256), (256, 1))


def analytic_flops(batch_size: int, d_weight_grads_in_g_step: bool = False) -> float:
    """Matmul FLOPs of one step: G forward; D forward and backward (weights only at its
    input) on the real and the fake batch; D forward again and back to its input for G's
    loss; G backward (its noise input not differentiated). `d_weight_grads_in_g_step`: the
    usual PyTorch loop also forms D's weight gradients in the G update, then drops them."""
    g_train = common.dense_train_flops(batch_size, G_LAYERS)
    d_train = common.dense_train_flops(batch_size, D_LAYERS)
    d_forward = common.dense_forward_flops(batch_size, D_LAYERS)
    return g_train + 2 * d_train + 2 * d_forward + (d_forward if d_weight_grads_in_g_step else 0.0)


def bare_jax_loop(config, dataset):
    """The floor: the family's own train step, jitted and donated, fed numpy batches.
    Returns `run(n)` and the step's compiled program."""
    family = gan.family_for(config, dataset)
    images, labels = dataset["train"]["image"], dataset["train"]["label"]
    batch_size = config.batch_size
    order = np.random.default_rng(0).permutation(len(images))
    mask = np.ones(batch_size, np.float32)
    key = jax.random.key(1)

    def counted(state, batch, counter):
        state, metrics = family.train_step(state, batch, jax.random.fold_in(key, counter))
        return state, metrics, counter + 1

    step = jax.jit(counted, donate_argnums=(0, 2))
    first = {"image": images[:batch_size], "label": labels[:batch_size], "mask": mask}
    carry = [jax.jit(family.init)(jax.random.key(0), first), np.int32(0)]

    def run(n):
        for i in range(n):
            rows = order[(i * batch_size) % len(images) :][:batch_size]
            batch = {"image": images[rows], "label": labels[rows], "mask": mask}
            carry[0], metrics, carry[1] = step(carry[0], batch, carry[1])
        jax.block_until_ready(metrics)

    compiled = step.lower(carry[0], first, carry[1]).compile()
    run(20)  # compile and warm up
    return run, compiled


def torch_loop(images: np.ndarray, batch_size: int, threads: int, freeze_d: bool):
    """The same GAN step in PyTorch (eager)."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    nn = torch.nn
    generator = nn.Sequential(
        nn.Linear(100, 256),
        nn.ReLU(),
        nn.Linear(256, 512),
        nn.ReLU(),
        nn.Linear(512, 784),
        nn.Sigmoid(),
    )
    discriminator = nn.Sequential(
        nn.Linear(784, 512),
        nn.LeakyReLU(0.2),
        nn.Linear(512, 256),
        nn.LeakyReLU(0.2),
        nn.Linear(256, 1),
    )
    g_opt = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    ema = [p.detach().clone() for p in generator.parameters()]
    bce = nn.functional.binary_cross_entropy_with_logits
    data = torch.from_numpy(images.reshape(len(images), -1))
    order = torch.from_numpy(np.random.default_rng(0).permutation(len(images)))
    ones, zeros = torch.ones(batch_size, 1), torch.zeros(batch_size, 1)

    def step(i):
        rows = order[(i * batch_size) % len(images) :][:batch_size]
        real = data[rows].float() / 255.0
        fake = generator(torch.randn(batch_size, 100))
        d_opt.zero_grad(set_to_none=True)
        d_loss = bce(discriminator(real), ones) + bce(discriminator(fake.detach()), zeros)
        d_loss.backward()
        d_opt.step()
        if freeze_d:
            discriminator.requires_grad_(False)
        g_opt.zero_grad(set_to_none=True)
        g_loss = bce(discriminator(fake), ones)
        g_loss.backward()
        g_opt.step()
        if freeze_d:
            discriminator.requires_grad_(True)
        with torch.no_grad():
            torch._foreach_lerp_(ema, list(generator.parameters()), 1.0 - 0.999)

    def run(n):
        for i in range(n):
            step(i)

    run(20)
    return run, torch.__version__


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mnist_dir",
        default=str(pathlib.Path(__file__).resolve().parents[2] / "shared/data/mnist"),
    )
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile_steps", type=int, default=200)
    parser.add_argument(
        "--harness",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Time the whole harness too (two start-ups per round: slow on a loaded machine).",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    images, labels = load_mnist_split(args.mnist_dir, "train")
    images = images[..., None]
    dataset = Dataset({"train": {"image": images, "label": labels.astype(np.int32)}})
    config = gan_mnist.get_config("mlp_small")
    config.batch_size = args.batch_size
    config.num_epochs, config.eval_every, config.log_every = -1, 0, 100
    config.checkpoint.every = 1000
    config.model.ema_decay = 0.999

    bare, compiled = bare_jax_loop(config, dataset)
    torch_usual, torch_version = torch_loop(images, args.batch_size, args.threads, freeze_d=False)
    torch_tuned, _ = torch_loop(images, args.batch_size, args.threads, freeze_d=True)
    b = args.batch_size
    hlo = compiled.as_text()
    flops, analytic = common.hlo_matmul_flops(hlo), analytic_flops(b)
    # XLA rewrites the width-1 products of D's logit layer as multiply-reduce, not dots.
    if not math.isclose(flops, analytic, rel_tol=1e-3):
        raise AssertionError(
            f"compiled matmul FLOPs {flops:.4g} differ from the analytic count {analytic:.4g}"
        )
    # Interleaved rounds, each with its own peak: this machine's speed drifts over minutes.
    contenders = {
        "bare": lambda: seconds_per_step(bare, args.steps),
        "torch": lambda: seconds_per_step(torch_usual, args.steps),
        "torch_tuned": lambda: seconds_per_step(torch_tuned, args.steps),
    }
    if args.harness:
        contenders["harness"] = lambda: harness_seconds_per_step(
            gan.family_for, config, dataset, args.steps
        )
    rounds = common.interleaved_rounds(contenders, args.rounds)
    profile = common.op_profile(bare, args.profile_steps, hlo)
    common.print_profile(f"bare step, batch {b}", profile)
    seconds = {k: statistics.median(v) for k, v in rounds.items() if k != "peak"}
    reference_flops = {
        "torch": analytic_flops(b, d_weight_grads_in_g_step=True),
        "torch_tuned": analytic,
        "bare": analytic,
    }
    extra = {
        "batch_size": b,
        **{f"{k}_examples_per_s": b / v for k, v in seconds.items()},
        "rounds": rounds,
        "flops_per_step": flops,
        "flops_per_step_analytic": analytic,
        "xla_cost_flops_per_step": common.compiled_flops(compiled),
    }

    def measured(name, ours, reference, reference_name, version, **more):
        return record(
            f"GAN train step, {name} (batch {b})",
            seconds[ours],
            reference_name,
            version,
            seconds[reference],
            **extra,
            reference_flops_per_step=reference_flops[reference],
            **common.ceiling_fields(rounds, ours, reference, flops, reference_flops[reference]),
            **more,
        )

    records = []
    if args.harness:
        records += [
            measured("harness vs PyTorch", "harness", "torch", "torch", torch_version),
            measured(
                "harness vs PyTorch, D frozen in G step",
                "harness",
                "torch_tuned",
                "torch-tuned",
                torch_version,
            ),
            measured("harness vs bare jitted loop", "harness", "bare", "bare-jax", jax.__version__),
        ]
    records += [
        measured(
            "bare jitted loop vs PyTorch", "bare", "torch", "torch", torch_version, profile=profile
        ),
        measured(
            "bare jitted loop vs PyTorch, D frozen in G step",
            "bare",
            "torch_tuned",
            "torch-tuned",
            torch_version,
        ),
    ]
    report(records, args.out)


if __name__ == "__main__":
    main()
