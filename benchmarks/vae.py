"""VAE training throughput: the whole harness vs a bare jitted JAX loop vs PyTorch.

Same model (the IWAE paper's 784-200-200-50 tanh VAE, Bernoulli decoder, one sample),
same optimiser (Adam), same batch, dynamically binarized MNIST, CPU threads as given.
The harness is timed as the difference between a run of N and of 2N steps, so start-up
and compilation cancel; it includes data feeding, metrics, checkpoints every 1000 steps.

How close to the machine: the step's matmul FLOPs are counted from the compiled program's
dots (and checked against the analytic count of the six layers, forward and backward), and
each round measures the float32 matmul peak beside the contenders, so every FLOP rate is
a share of the peak of its own round. A per-op profile of the bare step says where the
rest of the time goes. Every ratio is given as median [min-max] over interleaved rounds.

  .venv/bin/python benchmarks/vae.py --mnist_dir=../shared/data/mnist [--batch_size=100]
"""

import argparse
import functools
import math
import pathlib
import statistics
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import common
from benchmarks.common import harness_seconds_per_step, record, report, seconds_per_step
from experiments.configs import vae_mnist
from genjax_lab.core.data import Dataset
from genjax_lab.data.idx import load_mnist_split
from genjax_lab.data.images import bernoulli_pixels
from genjax_lab.models import vae

# (fan_in, fan_out) of the benchmark's layers: encoder 784-200-200 with two 50-unit heads
# (mean, log std), decoder 50-200-200-784.
LAYERS = ((784, 200), (200, 200), (200, 50), (200, 50), (50, 200), (200, 200), (200, 784))


def analytic_flops(batch_size: int) -> float:
    """Matmul FLOPs of one training step: every layer forward and backward; the pixels are
    not differentiated, so the first layer has no input gradient (in PyTorch neither)."""
    return common.dense_train_flops(batch_size, LAYERS)


def bare_jax_loop(config, images: np.ndarray):
    """The floor: the same model and bound in one jitted, donated step fed numpy batches.
    Returns `run(n)` and the step's compiled program."""
    model = vae.make_model(config.model, images.shape[1:], 10)
    params = vae.init_variables(jax.random.key(0), model)
    optimizer = optax.adam(config.optim.learning_rate, eps=config.optim.eps)
    key = jax.random.key(1)

    @functools.partial(jax.jit, donate_argnums=(0, 1, 3))
    def step(params, opt_state, batch, counter):
        def loss(params):
            binarize_key, sample_key = jax.random.split(jax.random.fold_in(key, counter))
            x = bernoulli_pixels(binarize_key, batch)
            return -vae.elbo(sample_key, vae.VAEParams(params, None, model), x).mean()

        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value, counter + 1

    batch_size = config.batch_size
    order = np.random.default_rng(0).permutation(len(images))
    carry = [params, optimizer.init(params), jnp.int32(0)]

    def run(n):
        for i in range(n):
            rows = order[(i * batch_size) % len(images) :][:batch_size]
            carry[0], carry[1], value, carry[2] = step(carry[0], carry[1], images[rows], carry[2])
        value.block_until_ready()

    compiled = step.lower(carry[0], carry[1], images[:batch_size], carry[2]).compile()
    run(20)  # compile and warm up
    return run, compiled


def torch_loop(images: np.ndarray, batch_size: int, threads: int):
    """The same VAE, bound and optimiser in PyTorch (eager, the usual way to train it)."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)

    def mlp(sizes):
        layers = []
        for i in range(len(sizes) - 1):
            layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
            if i < len(sizes) - 2:
                layers.append(torch.nn.Tanh())
        return torch.nn.Sequential(*layers)

    encoder, decoder = mlp([784, 200, 200, 100]), mlp([50, 200, 200, 784])
    parameters = list(encoder.parameters()) + list(decoder.parameters())
    optimizer = torch.optim.Adam(parameters, lr=1e-3, eps=1e-4)
    data = torch.from_numpy(images.reshape(len(images), -1))
    order = torch.from_numpy(np.random.default_rng(0).permutation(len(images)))
    log_2pi = math.log(2 * math.pi)

    def step(i):
        rows = order[(i * batch_size) % len(images) :][:batch_size]
        x = torch.bernoulli(data[rows].float() / 255.0)
        mean, log_std = encoder(x).chunk(2, dim=-1)
        eps = torch.randn_like(mean)
        z = mean + log_std.exp() * eps
        logits = decoder(z)
        log_px = -torch.nn.functional.binary_cross_entropy_with_logits(
            logits, x, reduction="none"
        ).sum(-1)
        log_pz = (-0.5 * z**2 - 0.5 * log_2pi).sum(-1)
        log_qz = (-0.5 * eps**2 - 0.5 * log_2pi - log_std).sum(-1)
        loss = -(log_px + log_pz - log_qz).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

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
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile_steps", type=int, default=200)
    parser.add_argument(
        "--harness",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Time the whole harness too (two start-ups per round: slow on a loaded machine).",
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    images, labels = load_mnist_split(args.mnist_dir, "train")
    images = images[..., None]
    dataset = Dataset({"train": {"image": images, "label": labels.astype(np.int32)}})
    config = vae_mnist.get_config("vae_k1")
    config.batch_size = args.batch_size
    config.num_epochs = -1
    config.optim.boundaries, config.optim.scales = (), ()
    config.log_every, config.checkpoint.every, config.eval.nll_samples = 100, 1000, 0

    (bare, compiled), (torch_run, torch_version) = (
        bare_jax_loop(config, images),
        torch_loop(images, args.batch_size, threads=2),
    )
    b = args.batch_size
    hlo = compiled.as_text()
    flops, analytic = common.hlo_matmul_flops(hlo), analytic_flops(b)
    if not math.isclose(flops, analytic, rel_tol=1e-6):
        raise AssertionError(
            f"compiled matmul FLOPs {flops:.4g} differ from the analytic count {analytic:.4g}"
        )
    # Interleaved rounds, each with its own peak: this machine's speed drifts over minutes.
    contenders = {
        "bare": lambda: seconds_per_step(bare, args.steps),
        "torch": lambda: seconds_per_step(torch_run, args.steps),
    }
    if args.harness:
        contenders["harness"] = lambda: harness_seconds_per_step(
            vae.family_for, config, dataset, args.steps
        )
    rounds = common.interleaved_rounds(contenders, args.rounds)
    profile = common.op_profile(bare, args.profile_steps, hlo)
    common.print_profile(f"bare step, batch {b}", profile)
    seconds = {k: statistics.median(v) for k, v in rounds.items() if k != "peak"}
    extra = {
        "batch_size": b,
        **{f"{k}_examples_per_s": b / v for k, v in seconds.items()},
        "flops_per_step": flops,
        "flops_per_step_analytic": analytic,
        "xla_cost_flops_per_step": common.compiled_flops(compiled),
        "reference_flops_per_step": analytic,
        "rounds": rounds,
    }

    def measured(name, ours, reference, reference_name, version, **more):
        return record(
            f"VAE train step, {name} (batch {b})",
            seconds[ours],
            reference_name,
            version,
            seconds[reference],
            **extra,
            **common.ceiling_fields(rounds, ours, reference, flops, analytic),
            **more,
        )

    records = []
    if args.harness:
        records += [
            measured("harness vs PyTorch", "harness", "torch", "torch", torch_version),
            measured("harness vs bare jitted loop", "harness", "bare", "bare-jax", jax.__version__),
        ]
    records.append(
        measured(
            "bare jitted loop vs PyTorch", "bare", "torch", "torch", torch_version, profile=profile
        )
    )
    report(records, args.out)


if __name__ == "__main__":
    main()
