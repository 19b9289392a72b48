"""RBM training epoch on MNIST: our jitted epoch vs scikit-learn's BernoulliRBM, same run.

Same data (MNIST train, 60,000 x 784, binarized stochastically once with seed 0), 500
hidden units, batch 100, plain SGD at learning rate 0.1 (no momentum, no weight decay:
sklearn's update). We compute in float32; sklearn is timed on float32 input (it then
computes in float32, like for like) and on float64 input (its dtype for pixels / 255).
scikit-learn's BernoulliRBM trains with PCD-1 (persistent chains, one per batch row); we
time PCD-1 with 100 chains (like for like) and CD-1. Ours: one jitted lax.scan over the 600
batches of an epoch, and also the jitted step called from a Python loop (whichever is faster
is the one to use). Timings are medians after a warm-up (compilation excluded); the machine
may be shared, so they are provisional.

How close to the machine: the matmul FLOPs of one step are counted from its compiled
program's dots (checked against the analytic count: six [100 x 784] x [784 x 500]-sized
products per PCD-1 step, as in sklearn's PCD-1, five per CD-1 step), times the 600
batches of an epoch; the reference is credited with its six; each of the interleaved
rounds measures the float32 matmul peak beside the contenders, so every FLOP rate is a
share of the peak of its own round. A per-op profile of the scan epoch says where the rest
of the time goes. Ratios: median [min-max] over rounds.

Optionally (--ais_epochs N > 0) trains a CD-1 RBM for N epochs and reports the AIS test
log-likelihood (-mean free energy - log Z, nats) to check that the pipeline gives
plausible numbers.

  .venv/bin/python benchmarks/boltzmann.py --mnist_dir=../shared/data/mnist --out=/tmp/rbm.json
"""

import argparse
import functools
import json
import math
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp
import numpy as np
import sklearn
from sklearn.neural_network import BernoulliRBM

from benchmarks import common
from benchmarks.common import record, report
from genjax_lab.data.idx import load_mnist_split
from genjax_lab.inference import ais
from genjax_lab.models import boltzmann as bm

NUM_HIDDEN, BATCH, LEARNING_RATE = 500, 100, 0.1
VARIANTS = tuple((method, name) for method in ("pcd", "cd") for name in ("scan", "loop"))


def analytic_step_flops(num_visible: int, method: str) -> float:
    """Matmul FLOPs of one PCD-1 / CD-1 step with BATCH rows and as many chains: hidden
    logits of the data, the chains' v -> h -> v sweep (two products), the hidden logits of
    the new chains, and the two v^T h statistics; sklearn's PCD-1 forms the same six. CD's
    chains start at the data, so its sweep's first product is the data's hidden logits,
    formed once: five."""
    products = 5 if method == "cd" else 6
    return products * 2.0 * BATCH * num_visible * NUM_HIDDEN


def binarized(mnist_dir: str, split: str, seed: int) -> np.ndarray:
    """Stochastic binarization, drawn once: pixel ~ Bernoulli(intensity / 255): float32 [N, 784]."""
    images, _ = load_mnist_split(mnist_dir, split)
    x = images.reshape(len(images), -1).astype(np.float32) / 255.0
    return (np.random.default_rng(seed).random(x.shape, dtype=np.float32) < x).astype(np.float32)


def sklearn_epoch(x: np.ndarray):
    """One sklearn epoch: fit with n_iter=1 (its init is a small part of it)."""

    def run():
        BernoulliRBM(
            n_components=NUM_HIDDEN,
            learning_rate=LEARNING_RATE,
            batch_size=BATCH,
            n_iter=1,
            random_state=0,
        ).fit(x)

    return run


def our_state(x, method: str):
    params = bm.init_rbm(jax.random.key(0), x.shape[1], NUM_HIDDEN, data_mean=np.asarray(x.mean(0)))
    optimizer = bm.rbm_optimizer(LEARNING_RATE, momentum=0.0)
    chains = bm.init_rbm_chains(jax.random.key(1), BATCH, x.shape[1]) if method == "pcd" else None
    return bm.make_rbm_step(optimizer, method=method, k=1), [params, optimizer.init(params), chains]


def scan_epoch(x, method: str):
    """The whole epoch as one jitted lax.scan."""
    step, carry = our_state(x, method)
    epoch = bm.make_epoch(step, BATCH)
    counter = [0]

    def run():
        counter[0] += 1
        carry[0], carry[1], carry[2], metrics = epoch(*carry, x, jax.random.key(counter[0]))
        jax.block_until_ready(metrics)

    return run


def loop_epoch(x, method: str):
    """The jitted, donated step called once per batch from Python, batches gathered on device."""
    step, carry = our_state(x, method)
    jit_step = jax.jit(step, donate_argnums=(0, 1, 2))
    mask = jnp.ones(BATCH, jnp.float32)
    counter = [0]

    def run():
        counter[0] += 1
        key = jax.random.key(counter[0])
        order = jax.random.permutation(key, x.shape[0]).reshape(-1, BATCH)
        for i in range(order.shape[0]):
            batch = {"x": x[order[i]], "mask": mask}
            carry[0], carry[1], carry[2], metrics = jit_step(
                *carry, batch, jax.random.fold_in(key, i)
            )
        jax.block_until_ready(metrics)

    return run


def _seconds(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def ais_check(x_train, x_test, epochs: int, temperatures: int, runs: int) -> dict:
    """CD-1 for `epochs` epochs (sklearn's settings), then AIS log Z and test log-likelihood."""
    params = bm.init_rbm(
        jax.random.key(0), x_train.shape[1], NUM_HIDDEN, data_mean=np.asarray(x_train.mean(0))
    )
    optimizer = bm.rbm_optimizer(LEARNING_RATE, momentum=0.0)
    epoch = bm.make_epoch(bm.make_rbm_step(optimizer, method="cd", k=1), BATCH)
    opt_state = optimizer.init(params)
    start = time.perf_counter()
    for e in range(epochs):
        params, opt_state, _, _ = epoch(params, opt_state, None, x_train, jax.random.key(1000 + e))
    jax.block_until_ready(params)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    result = bm.ais_log_z(
        params,
        ais.piecewise_schedule(temperatures),
        jax.random.key(7),
        runs,
        base_vis_bias=bm.base_rate_bias(np.asarray(x_train)),
    )
    ais_s = time.perf_counter() - start

    def mean_log_prob(x):
        return float(
            jnp.mean(
                jnp.concatenate(
                    [bm.rbm_log_prob(params, b, result.log_z) for b in jnp.split(x, 10)]
                )
            )
        )

    return {
        "epochs": epochs,
        "temperatures": temperatures,
        "runs": runs,
        "log_z": result.log_z,
        "log_z_lower": result.log_z_lower,
        "log_z_upper": result.log_z_upper,
        "log_z_std": result.log_z_std,
        "test_log_likelihood": mean_log_prob(x_test),
        "train_log_likelihood": mean_log_prob(x_train),
        "train_s": train_s,
        "ais_s": ais_s,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mnist_dir",
        default=str(pathlib.Path(__file__).resolve().parents[2] / "shared/data/mnist"),
    )
    parser.add_argument("--rounds", type=int, default=5)
    # Fewer rows time part of an epoch (the same batches for every contender): per-batch
    # costs are uniform, so ratios and FLOP rates keep their meaning on a loaded machine.
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--ais_epochs", type=int, default=0)
    parser.add_argument("--ais_temperatures", type=int, default=10_000)  # paper: 14,500
    parser.add_argument("--ais_runs", type=int, default=100)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    x_np = binarized(args.mnist_dir, "train", seed=0)[: args.rows]
    x = jnp.asarray(x_np)
    num_batches = -(-x.shape[0] // BATCH)
    flops = {}
    for method in ("pcd", "cd"):
        step, carry = our_state(x, method)
        batch = {"x": x[:BATCH], "mask": jnp.ones(BATCH, jnp.float32)}
        compiled = jax.jit(step).lower(*carry, batch, jax.random.key(0)).compile()
        flops[method] = common.hlo_matmul_flops(compiled.as_text()) * num_batches
    analytic = {method: analytic_step_flops(x.shape[1], method) * num_batches for method in flops}
    for method, counted in flops.items():
        # The compiled count also holds the matrix-vector products (v . b_vis in the free
        # energies, the mask-weighted sums): 0.1% more.
        if not math.isclose(counted, analytic[method], rel_tol=2e-3):
            raise AssertionError(
                f"{method}: compiled matmul FLOPs {counted:.4g} differ from the analytic "
                f"{analytic[method]:.4g}"
            )
    contenders = {
        f"sklearn_{dtype}": sklearn_epoch(x_np.astype(dtype)) for dtype in ("float32", "float64")
    }
    for method, name in VARIANTS:
        contenders[f"{method}_{name}"] = (scan_epoch if name == "scan" else loop_epoch)(x, method)
        contenders[f"{method}_{name}"]()  # compile and warm up
    # Interleaved rounds, each with its own peak: this machine's speed drifts over minutes.
    rounds = common.interleaved_rounds(
        {name: functools.partial(_seconds, run) for name, run in contenders.items()}, args.rounds
    )
    step, carry = our_state(x, "pcd")
    epoch_hlo = bm.make_epoch(step, BATCH).lower(*carry, x, jax.random.key(0)).compile().as_text()
    profile = common.op_profile(
        lambda n: [contenders["pcd_scan"]() for _ in range(n)], 1, epoch_hlo
    )
    common.print_profile("PCD-1 scan epoch", profile)
    records = []
    for method, name in VARIANTS:
        for dtype in ("float32", "float64"):
            ours, reference = f"{method}_{name}", f"sklearn_{dtype}"
            records.append(
                record(
                    f"rbm epoch {method.upper()}-1 ({name}) vs sklearn {dtype}",
                    statistics.median(rounds[ours]),
                    reference=f"sklearn BernoulliRBM PCD-1 {dtype}",
                    reference_version=sklearn.__version__,
                    reference_s=statistics.median(rounds[reference]),
                    hidden=NUM_HIDDEN,
                    batch=BATCH,
                    device=jax.devices()[0].platform,
                    flops_per_step=flops[method],
                    flops_per_step_analytic=analytic[method],
                    reference_flops_per_step=analytic["pcd"],
                    step="epoch",
                    rows=int(x.shape[0]),
                    rounds={k: rounds[k] for k in ("peak", ours, reference)},
                    **common.ceiling_fields(
                        rounds, ours, reference, flops[method], analytic["pcd"]
                    ),
                    **({"profile": profile} if ours == "pcd_scan" and dtype == "float32" else {}),
                )
            )
    report(records, None)
    result = {"records": records}
    if args.ais_epochs:
        check = ais_check(
            x,
            jnp.asarray(binarized(args.mnist_dir, "test", seed=1)),
            args.ais_epochs,
            args.ais_temperatures,
            args.ais_runs,
        )
        print(json.dumps(check, indent=1))
        result["ais_check"] = check
    if args.out:
        pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
