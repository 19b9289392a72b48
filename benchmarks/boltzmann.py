"""RBM training epoch on MNIST: our jitted epoch vs scikit-learn's BernoulliRBM, same run.

Same data (MNIST train, 60,000 x 784, binarized stochastically once with seed 0), 500
hidden units, batch 100, plain SGD at learning rate 0.1 (no momentum, no weight decay:
sklearn's update). We compute in float32; sklearn is timed on float32 input (it then
computes in float32, like for like) and on float64 input (its dtype for pixels / 255). scikit-learn's BernoulliRBM trains with
PCD-1 (persistent chains, one per batch row); we time PCD-1 with 100 chains (like for
like) and CD-1. Ours: one jitted lax.scan over the 600 batches of an epoch, and also the
jitted step called from a Python loop (whichever is faster is the one to use). Timings
are medians after a warm-up (compilation excluded); the machine may be shared, so they
are provisional.

Optionally (--ais_epochs N > 0) trains a CD-1 RBM for N epochs and reports the AIS test
log-likelihood (-mean free energy - log Z, nats) to check that the pipeline gives
plausible numbers.

  .venv/bin/python benchmarks/boltzmann.py --mnist_dir=../shared/data/mnist --out=/tmp/rbm.json
"""
import argparse
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import sklearn  # noqa: E402
from sklearn.neural_network import BernoulliRBM  # noqa: E402

from benchmarks.common import median_seconds, record, report  # noqa: E402
from genjax_lab.data.idx import load_mnist_split  # noqa: E402
from genjax_lab.inference import ais  # noqa: E402
from genjax_lab.models import boltzmann as bm  # noqa: E402

NUM_HIDDEN, BATCH, LEARNING_RATE = 500, 100, 0.1


def binarized(mnist_dir: str, split: str, seed: int) -> np.ndarray:
    """Stochastic binarization, drawn once: pixel ~ Bernoulli(intensity / 255): float32 [N, 784]."""
    images, _ = load_mnist_split(mnist_dir, split)
    x = images.reshape(len(images), -1).astype(np.float32) / 255.0
    return (np.random.default_rng(seed).random(x.shape, dtype=np.float32) < x).astype(np.float32)


def sklearn_epoch(x: np.ndarray):
    """One sklearn epoch: fit with n_iter=1 (its init is a small part of it)."""
    def run():
        BernoulliRBM(n_components=NUM_HIDDEN, learning_rate=LEARNING_RATE, batch_size=BATCH, n_iter=1,
                     random_state=0).fit(x)
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
            carry[0], carry[1], carry[2], metrics = jit_step(*carry, batch, jax.random.fold_in(key, i))
        jax.block_until_ready(metrics)
    return run


def ais_check(x_train, x_test, epochs: int, temperatures: int, runs: int) -> dict:
    """CD-1 for `epochs` epochs (sklearn's settings), then AIS log Z and test log-likelihood."""
    params = bm.init_rbm(jax.random.key(0), x_train.shape[1], NUM_HIDDEN, data_mean=np.asarray(x_train.mean(0)))
    optimizer = bm.rbm_optimizer(LEARNING_RATE, momentum=0.0)
    epoch = bm.make_epoch(bm.make_rbm_step(optimizer, method="cd", k=1), BATCH)
    opt_state = optimizer.init(params)
    start = time.perf_counter()
    for e in range(epochs):
        params, opt_state, _, metrics = epoch(params, opt_state, None, x_train, jax.random.key(1000 + e))
    jax.block_until_ready(params)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    result = ais.ais_log_z(params, ais.piecewise_schedule(temperatures), jax.random.key(7), runs,
                           base_vis_bias=ais.base_rate_bias(np.asarray(x_train)))
    ais_s = time.perf_counter() - start

    def mean_log_prob(x):
        return float(jnp.mean(jnp.concatenate([bm.rbm_log_prob(params, b, result.log_z) for b in jnp.split(x, 10)])))

    return {"epochs": epochs, "temperatures": temperatures, "runs": runs, "log_z": result.log_z,
            "log_z_lower": result.log_z_lower, "log_z_upper": result.log_z_upper, "log_z_std": result.log_z_std,
            "test_log_likelihood": mean_log_prob(x_test), "train_log_likelihood": mean_log_prob(x_train),
            "train_s": train_s, "ais_s": ais_s}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist_dir", default=str(pathlib.Path(__file__).resolve().parents[2] / "shared/data/mnist"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sklearn_repeats", type=int, default=2)
    parser.add_argument("--ais_epochs", type=int, default=0)
    parser.add_argument("--ais_temperatures", type=int, default=10_000)  # paper: 14,500
    parser.add_argument("--ais_runs", type=int, default=100)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    x_np = binarized(args.mnist_dir, "train", seed=0)
    x = jnp.asarray(x_np)
    references = {dtype: median_seconds(sklearn_epoch(x_np.astype(dtype)), repeats=args.sklearn_repeats, warmup=0)
                  for dtype in ("float32", "float64")}
    records = []
    for method in ("pcd", "cd"):
        for name, make in (("scan", scan_epoch), ("loop", loop_epoch)):
            seconds = median_seconds(make(x, method), repeats=args.repeats, warmup=1)
            for dtype, reference_s in references.items():
                records.append(record(f"rbm epoch {method.upper()}-1 ({name}) vs sklearn {dtype}", seconds,
                                      reference=f"sklearn BernoulliRBM PCD-1 {dtype}",
                                      reference_version=sklearn.__version__, reference_s=reference_s,
                                      hidden=NUM_HIDDEN, batch=BATCH, device=jax.devices()[0].platform))
    report(records, None)
    result = {"records": records}
    if args.ais_epochs:
        check = ais_check(x, jnp.asarray(binarized(args.mnist_dir, "test", seed=1)), args.ais_epochs,
                          args.ais_temperatures, args.ais_runs)
        print(json.dumps(check, indent=1))
        result["ais_check"] = check
    if args.out:
        pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
