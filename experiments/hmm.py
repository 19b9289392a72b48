"""Hidden Markov model experiments: the occasionally dishonest casino, and isolated spoken
digit recognition on the Free Spoken Digit Dataset (one HMM per digit, Bayes' rule).

  ./launch.sh hmm --config=experiments/configs/hmm_casino.py
  ./launch.sh hmm --config=experiments/configs/hmm_fsdd.py --config.data.fsdd_path=TARBALL

Both fit by MAP Baum-Welch (genjax_lab.models.hmm.em_step), vmapped: over random restarts
(casino) or over the ten digit classes (FSDD), so one jitted step updates every model.

Resumable EM: EM is full-batch and deterministic, so it does not go through the minibatch
harness (core/loop.py); instead the EM state (the stacked params) is saved with
core.checkpoint.Checkpointer every `checkpoint.every` iterations (config, shapes and a hash
verified on restore, as in the harness), together with the objective trace so far. A run
started again in the same workdir resumes from the newest checkpoint and ends with the
same params as an uninterrupted run; `num_steps` (the EM iterations; the loop's key, which
the checkpoint's config check lets a resume raise) may be raised on resume to train longer.
"""

import dataclasses
import functools
import itertools
import json
import pathlib
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from genjax_lab.core import checkpoint as ckpt_lib
from genjax_lab.core import checks, plots
from genjax_lab.core import config as config_lib
from genjax_lab.core import metrics as metrics_lib
from genjax_lab.data import audio
from genjax_lab.models import hmm

config_lib.define_flags(config_lib.beside(__file__, "configs/hmm_casino.py"), "runs/hmm")

# ------------------------------------------------------------------------ resumable EM


@dataclasses.dataclass
class EMRun:
    """The fitted state, the objective after each iteration so far [num_steps], and the
    seconds this process spent compiling and iterating (a resumed run counts its own)."""

    state: object
    objectives: np.ndarray
    compile_seconds: float
    train_seconds: float
    resumed_from: int


def resumable_em(config, workdir: pathlib.Path, start, chunk: Callable) -> EMRun:
    """Runs `config.num_steps` EM iterations from `start` (a pytree), `chunk(state, n) ->
    (state, objectives [n])` at a time with n = config.checkpoint.every, saving after each
    chunk and resuming from the newest checkpoint in `workdir/checkpoints`."""
    every = int(config.checkpoint.every)
    if every < 1 or config.num_steps < 1:
        raise ValueError("config.num_steps and config.checkpoint.every must be >= 1")
    checkpointer = ckpt_lib.Checkpointer(
        workdir / "checkpoints", every=every, keep=int(config.checkpoint.keep)
    )
    saved_config = ckpt_lib.to_json(config)
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), start
    )
    restored = checkpointer.restore_newest(abstract, saved_config, config.checkpoint.on_corrupt)
    state, step, objectives = start, 0, []
    if restored is not None:
        state, meta = restored
        step, objectives = int(meta["step"]), list(meta["objectives"])
        metrics_lib.say(f"resumed EM at iteration {step}")
    resumed_from = step
    compile_seconds = train_seconds = 0.0
    compiled = {}
    try:
        while step < config.num_steps:
            n = min(every, config.num_steps - step)
            if n not in compiled:
                t0 = time.perf_counter()
                compiled[n] = jax.jit(chunk, static_argnums=1).lower(state, n).compile()
                compile_seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            state, objs = jax.block_until_ready(compiled[n](state))
            train_seconds += time.perf_counter() - t0
            objectives += np.asarray(objs).tolist()
            step += n
            finite = np.isfinite(objectives[-n:])
            if not finite.all():
                first = int(np.argmin(finite))
                raise checks.NonFiniteError(
                    f"non-finite EM objective {objectives[-n:][first]} at iteration {step - n + first + 1}; "
                    f"stopped without saving it (newest checkpoint: iteration {step - n})"
                )
            checkpointer.save(
                step, state, {"config": saved_config, "objectives": objectives}, force=True
            )
            metrics_lib.say(
                f"EM iteration {step}/{config.num_steps}  objective {objectives[-1]:.6g}"
            )
        checkpointer.wait()
    finally:
        checkpointer.close()
    return EMRun(state, np.asarray(objectives), compile_seconds, train_seconds, resumed_from)


def _prior(config) -> hmm.HMMPrior:
    return hmm.HMMPrior(**config.prior.to_dict())


# ------------------------------------------------------------------------------ casino

CASINO_TRANSITIONS = np.array([[0.95, 0.05], [0.10, 0.90]])
CASINO_EMISSIONS = np.array([[1 / 6] * 6, [1 / 10] * 5 + [1 / 2]])
FAIR, LOADED = 0, 1


def casino_model() -> hmm.HMMParams:
    """Durbin et al. (1998) section 3.2: state 0 fair, state 1 loaded (six with prob 1/2)."""
    return hmm.make_hmm([0.5, 0.5], CASINO_TRANSITIONS, hmm.categorical_emission(CASINO_EMISSIONS))


def _align_states(emissions: np.ndarray, reference: np.ndarray) -> tuple[int, ...]:
    """The relabelling (learned state perm[k] plays true state k) closest in emissions."""
    k = reference.shape[0]
    return min(
        itertools.permutations(range(k)), key=lambda p: np.abs(emissions[list(p)] - reference).sum()
    )


def run_casino(config, workdir: pathlib.Path) -> dict[str, float]:
    truth = casino_model()
    key = jax.random.key(config.seed)
    k_train, k_test, k_starts = jax.random.split(key, 3)
    rolls = hmm.sample(k_train, truth, config.data.num_sequences, length=config.data.length)
    batch = {
        "obs": rolls,
        "lengths": jnp.full((config.data.num_sequences,), config.data.length, jnp.int32),
    }
    prior = _prior(config)
    starts = jax.vmap(lambda k: hmm.init_categorical_hmm(k, 2, 6))(
        jax.random.split(k_starts, config.model.num_restarts)
    )

    def chunk(params, n):
        def body(p, _):
            new, stats = jax.vmap(hmm.em_step, in_axes=(0, None, None))(p, batch, prior)
            return new, jnp.max(stats.objective)  # the best restart's

        return jax.lax.scan(body, params, length=n)

    run = resumable_em(config, workdir, starts, chunk)

    def objective(p):
        loglik = hmm.log_prob_unchecked(p, batch["obs"], batch["lengths"])
        return jnp.sum(loglik) + hmm.parameter_log_prior(p, prior)

    finals = jax.vmap(objective)(run.state)
    best = int(jnp.argmax(jnp.where(jnp.isfinite(finals), finals, -jnp.inf)))
    fitted = jax.tree.map(lambda x: x[best], run.state)
    a = np.asarray(hmm.transition_probs(fitted), np.float64)
    b = np.asarray(jax.nn.softmax(fitted.emission.logits, axis=-1), np.float64)
    perm = list(_align_states(b, CASINO_EMISSIONS))
    a, b = a[np.ix_(perm, perm)], b[perm]

    true_states, test_rolls = hmm.sample_with_states(
        k_test, truth, 1, length=config.data.test_length
    )
    test_x = hmm.Sequences(test_rolls, jnp.array([config.data.test_length], jnp.int32))
    decoded = {}
    for name, params in (("", fitted), ("_true_params", truth)):
        posterior = np.asarray(hmm.posterior(params, test_x)[0])
        path = np.asarray(hmm.most_likely_states(params, test_x).states[0])
        if name == "":  # learned labels -> true labels
            posterior, path = posterior[:, perm], np.argsort(perm)[path]
            p_loaded = posterior[:, LOADED]
        decoded[f"viterbi_accuracy{name}"] = float(np.mean(path == np.asarray(true_states[0])))
        decoded[f"posterior_accuracy{name}"] = float(
            np.mean(posterior.argmax(-1) == np.asarray(true_states[0]))
        )
    plots.plot_shaded_series(
        workdir / "casino_posterior.png",
        p_loaded[: config.plot_steps],
        np.asarray(true_states[0, : config.plot_steps]) == LOADED,
        "P(loaded | rolls); true loaded die shaded",
        "roll",
    )
    num_rolls = config.data.num_sequences * config.data.length
    return {
        "a_fair_to_loaded": a[FAIR, LOADED],
        "a_loaded_to_fair": a[LOADED, FAIR],
        "p6_loaded": b[LOADED, 5],
        "p6_fair": b[FAIR, 5],
        "max_abs_transition_error": float(np.abs(a - CASINO_TRANSITIONS).max()),
        "max_abs_emission_error": float(np.abs(b - CASINO_EMISSIONS).max()),
        "train_log_likelihood_per_roll": float(np.max(np.asarray(finals))) / num_rolls,
        "em_iterations": float(len(run.objectives)),
        "best_restart": float(best),
        "train_seconds": run.train_seconds,
        "compile_seconds": run.compile_seconds,
        **decoded,
    }


# -------------------------------------------------------------------------------- FSDD


def load_fsdd(config) -> tuple[audio.Recordings, audio.Recordings]:
    """(train, test) recordings of the chosen speakers and digits."""
    path = pathlib.Path(config.data.fsdd_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"config.data.fsdd_path: no FSDD tarball (recordings.tar.gz) at {path}"
        )
    recordings = audio.read_fsdd(path)
    keep = recordings.digits < config.data.num_digits
    if config.data.speakers:
        keep &= np.isin(recordings.speakers, config.data.speakers.split(","))
    keep &= recordings.indices < config.data.max_index
    if not keep.any():
        raise ValueError(
            f"config.data: no recording of speakers {config.data.speakers!r} with digit < "
            f"{config.data.num_digits} and index < {config.data.max_index}"
        )
    return audio.test_split(audio.select(recordings, keep), config.data.num_test_indices)


def group_by_class(
    features: np.ndarray,
    lengths: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    num_buckets: int = 1,
) -> tuple[dict, ...]:
    """features [N, T, D], lengths, labels [N] -> `num_buckets` batches {'obs' [C, n_j, T_j, D],
    'lengths', 'mask' [C, n_j]}: each class's recordings sorted by length and cut into
    equal-count buckets, bucket j padded to its own longest T_j (EM's cost follows the real
    frames, not the longest recording) and every class to the same n_j (mask 0), so one
    vmapped EM step serves all classes."""
    members = [np.flatnonzero(labels == c) for c in range(num_classes)]
    members = [idx[np.argsort(lengths[idx], kind="stable")] for idx in members]
    per_class = max(len(idx) for idx in members)
    bounds = np.linspace(0, per_class, num_buckets + 1).round().astype(int)
    batches = []
    for lo, hi in itertools.pairwise(bounds):
        chosen = [idx[lo:hi] for idx in members]
        t = max([int(lengths[i].max()) for i in chosen if len(i)], default=1)
        obs = np.zeros((num_classes, hi - lo, t, features.shape[-1]), np.float32)
        lens = np.ones((num_classes, hi - lo), np.int32)
        mask = np.zeros((num_classes, hi - lo), np.float32)
        for c, idx in enumerate(chosen):
            obs[c, : len(idx)], lens[c, : len(idx)], mask[c, : len(idx)] = (
                features[idx, :t],
                lengths[idx],
                1.0,
            )
        batches.append(
            {"obs": jnp.asarray(obs), "lengths": jnp.asarray(lens), "mask": jnp.asarray(mask)}
        )
    return tuple(b for b in batches if b["obs"].shape[1] > 0)


def digit_hmms_em(config, features: np.ndarray, lengths: np.ndarray, labels: np.ndarray):
    """(start, chunk) for `resumable_em`: the class HMMs [C, ...] started from a uniform
    left-to-right segmentation of each class's recordings, and `chunk(params, n)` running n
    EM iterations of all classes at once (vmap over the class axis of length buckets)."""
    num_classes, m = config.data.num_digits, config.model
    (whole,) = group_by_class(features, lengths, labels, num_classes)
    buckets = group_by_class(features, lengths, labels, num_classes, m.num_buckets)
    prior = _prior(config)
    init = jax.jit(
        jax.vmap(
            functools.partial(
                hmm.init_gaussian_hmm,
                num_states=m.num_states,
                emission="mixture" if m.num_components > 1 else "diag",
                num_components=m.num_components,
                left_to_right=True,
            )
        )
    )
    keys = jax.random.split(jax.random.key(config.seed), num_classes)
    start = init(keys, whole["obs"], whole["lengths"], mask=whole["mask"])

    def chunk(params, n):
        def body(p, _):
            new, stats = jax.vmap(hmm.em_step_buckets, in_axes=(0, 0, None))(p, buckets, prior)
            return new, jnp.sum(stats.objective)

        return jax.lax.scan(body, params, length=n)

    return start, chunk


def run_fsdd(config, workdir: pathlib.Path) -> dict[str, float]:
    t0 = time.perf_counter()
    train, test = load_fsdd(config)
    if len(test.digits) == 0 or len(train.digits) == 0:
        raise ValueError("config.data: the split leaves no training or no test recordings")
    train_x, train_len = audio.mfcc(train.waveforms)
    test_x, test_len = audio.mfcc(test.waveforms)
    feature_seconds = time.perf_counter() - t0
    num_classes = config.data.num_digits
    start, chunk = digit_hmms_em(config, train_x, train_len, train.digits)
    run = resumable_em(config, workdir, start, chunk)
    counts = np.bincount(train.digits, minlength=num_classes)
    clf = hmm.classifier(hmm.make_labelled(run.state, counts / counts.sum()))
    predicted = np.asarray(clf.predict(hmm.Sequences(test_x, test_len)))
    confusion = np.zeros((num_classes, num_classes), int)
    np.add.at(confusion, (test.digits, predicted), 1)
    plots.plot_confusion(workdir / "fsdd_confusion.png", confusion)
    (workdir / "confusion.json").write_text(json.dumps(confusion.tolist()))
    return {
        "test_accuracy": float(np.mean(predicted == test.digits)),
        "test_errors": float(np.sum(predicted != test.digits)),
        "num_test": float(len(test.digits)),
        "num_train": float(len(train.digits)),
        "train_seconds": run.train_seconds,
        "compile_seconds": run.compile_seconds,
        "train_seconds_with_compile": run.train_seconds + run.compile_seconds,
        "feature_seconds": feature_seconds,
        "em_iterations": float(len(run.objectives)),
        "final_objective_per_frame": float(run.objectives[-1] / np.sum(train_len)),
    }


# -------------------------------------------------------------------------------- main

TASKS = {"casino": run_casino, "fsdd": run_fsdd}


def main(config, workdir: pathlib.Path) -> None:
    if config.task not in TASKS:
        raise ValueError(f"config.task must be one of {sorted(TASKS)}, got {config.task!r}")
    workdir.mkdir(parents=True, exist_ok=True)
    summary = {k: float(v) for k, v in TASKS[config.task](config, workdir).items()}
    metrics_lib.write_summary(workdir, summary)
    metrics_lib.say(json.dumps(summary, indent=1, sort_keys=True))


if __name__ == "__main__":
    config_lib.run(main)
