"""Hidden Markov model experiments: the occasionally dishonest casino, and isolated spoken
digit recognition on the Free Spoken Digit Dataset (one HMM per digit, Bayes' rule).

  ./launch.sh hmm --config=experiments/configs/hmm_casino.py
  ./launch.sh hmm --config=experiments/configs/hmm_fsdd.py --config.data.fsdd_path=TARBALL
  ./launch.sh sample --workdir=runs/hmm --num=4           # casino: rolls, one line each
  ./launch.sh score --workdir=runs/hmm --input=ROLLS.npy  # int rolls [N, T] or [T]: log p
  ./launch.sh classify --workdir=W --input=REC.wav        # FSDD: a .wav, a folder, a list

Both fit by MAP Baum-Welch on the training loop (core/loop.py) as a full-batch family
(genjax_lab.models.hmm.EMFamily): one loop step is one EM iteration of every model at once,
vmapped over random restarts (casino) or over the digit classes (FSDD, length-bucketed). The
loop checkpoints, resumes bitwise, and ends the run once every model has converged by the
library's rule (`config.model.tol`); `num_steps` caps the iterations. A finished run saves
its model (the best restart; the ten digit HMMs with their class prior) for the command line.
"""

import functools
import itertools
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genjax_lab import saving
from genjax_lab.core import config as config_lib
from genjax_lab.core import data as data_lib
from genjax_lab.core import metrics as metrics_lib
from genjax_lab.core import plots
from genjax_lab.core.loop import RunResult, train_and_evaluate
from genjax_lab.data import audio
from genjax_lab.models import hmm

config_lib.define_flags(config_lib.beside(__file__, "configs/hmm_casino.py"), "runs/hmm")


def _prior(config) -> hmm.HMMPrior:
    return hmm.HMMPrior(**config.prior.to_dict())


def _model_config(config, **fields) -> ml_collections.ConfigDict:
    """The library's config of the fitted model (`hmm.default_config()`), saved with it."""
    model = hmm.default_config()
    model.update(num_iters=config.num_steps, tol=config.model.tol, **fields)
    model.prior.update(config.prior.to_dict())
    return model


def _fit(config, workdir: pathlib.Path, family: hmm.EMFamily, dataset) -> tuple[RunResult, float]:
    start = time.perf_counter()
    result = train_and_evaluate(config, workdir, family.as_family(), dataset)
    return result, time.perf_counter() - start


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


def run_casino(config, workdir: pathlib.Path) -> dict[str, float] | None:
    truth = casino_model()
    key = jax.random.key(config.seed)
    k_train, k_test, k_starts = jax.random.split(key, 3)
    num, length = config.data.num_sequences, config.data.length
    rolls = np.asarray(hmm.sample(k_train, truth, num, length=length))
    train = {"obs": rolls, "lengths": np.full((num,), length, np.int32)}
    num_restarts = config.model.num_restarts
    family = hmm.EMFamily(
        starts=lambda batch: jax.vmap(lambda k: hmm.init_categorical_hmm(k, 2, 6))(
            jax.random.split(k_starts, num_restarts)
        ),
        prior=_prior(config),
        tol=config.model.tol,
    )
    result, seconds = _fit(config, workdir, family, data_lib.Dataset({"train": train}))
    if result.preempted:
        return None
    finals = np.asarray(family.final_objectives(result.state, train))
    best = int(np.argmax(np.where(np.isfinite(finals), finals, -np.inf)))
    fitted = jax.tree.map(lambda x: x[best], result.state["params"])
    model_config = _model_config(
        config, num_states=2, emission="categorical", num_symbols=6, num_inits=num_restarts
    )
    meta = hmm.meta_from_data({"x": rolls}, model_config)
    meta["input"] = {"kind": "symbols", "num_symbols": 6, "sample_kwargs": {"length": length}}
    saving.save(workdir, "hmm", model_config, meta, fitted)

    a = np.asarray(hmm.transition_probs(fitted), np.float64)
    b = np.asarray(jax.nn.softmax(fitted.emission.logits, axis=-1), np.float64)
    perm = list(_align_states(b, CASINO_EMISSIONS))
    a, b = a[np.ix_(perm, perm)], b[perm]

    true_states, test_rolls = hmm.sample_with_states(
        k_test, truth, 1, length=config.data.test_length
    )
    test_x = hmm.Sequences(test_rolls, np.array([config.data.test_length], np.int32))
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
    return {
        "a_fair_to_loaded": a[FAIR, LOADED],
        "a_loaded_to_fair": a[LOADED, FAIR],
        "p6_loaded": b[LOADED, 5],
        "p6_fair": b[FAIR, 5],
        "max_abs_transition_error": float(np.abs(a - CASINO_TRANSITIONS).max()),
        "max_abs_emission_error": float(np.abs(b - CASINO_EMISSIONS).max()),
        "train_log_likelihood_per_roll": float(finals[best]) / (num * length),
        "em_iterations": float(result.step),
        "converged": result.metrics.get("train_converged", 0.0),
        "best_restart": float(best),
        "train_seconds": seconds,
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


def digit_family(config, labels: np.ndarray) -> hmm.EMFamily:
    """One left-to-right Gaussian(-mixture) HMM per digit, each started from a uniform
    segmentation of its class's recordings; the class prior is the digits' frequency."""
    num_classes, m = config.data.num_digits, config.model
    counts = np.bincount(labels, minlength=num_classes)
    start = functools.partial(
        hmm.init_gaussian_hmm,
        num_states=m.num_states,
        emission="mixture" if m.num_components > 1 else "diag",
        num_components=m.num_components,
        left_to_right=True,
    )

    def starts(batch):
        whole = hmm.whole_batch(batch)
        keys = jax.random.split(jax.random.key(config.seed), num_classes)
        return jax.vmap(lambda k, o, n, w: start(k, o, n, mask=w), in_axes=(0, 1, 1, 1))(
            keys, whole["obs"], whole["lengths"], whole["mask"]
        )

    with np.errstate(divide="ignore"):
        log_prior = np.log(counts / counts.sum())
    return hmm.EMFamily(starts, _prior(config), m.tol, per_class=True, log_prior=log_prior)


def digit_hmms_em(config, features: np.ndarray, lengths: np.ndarray, labels: np.ndarray):
    """(start, chunk) of the FSDD fit outside the loop (benchmarks/hmm.py times it): the class
    HMMs [C, ...] as the run starts them, and `chunk(params, n) -> (params, objectives [n])`
    running n of the family's EM steps."""
    family = digit_family(config, labels)
    split = hmm.class_buckets(
        features, lengths, labels, config.data.num_digits, config.model.num_buckets
    )
    batch = {name: jnp.asarray(value) for name, value in split.items()}
    batch["mask"] = jnp.ones(len(split["obs_0"]))
    state = family.init(None, batch)

    def chunk(params, n):
        def body(carry, _):
            carry, metrics = family.train_step(carry, batch, None)
            return carry, metrics["objective"]

        carry, objectives = jax.lax.scan(body, {**state, "params": params}, length=n)
        return carry["params"], objectives

    return state["params"], chunk


def run_fsdd(config, workdir: pathlib.Path) -> dict[str, float] | None:
    t0 = time.perf_counter()
    train, test = load_fsdd(config)
    if len(test.digits) == 0 or len(train.digits) == 0:
        raise ValueError("config.data: the split leaves no training or no test recordings")
    mfcc = audio.MfccConfig()
    train_x, train_len = audio.mfcc(train.waveforms, mfcc)
    test_x, test_len = audio.mfcc(test.waveforms, mfcc)
    feature_seconds = time.perf_counter() - t0
    num_classes = config.data.num_digits
    family = digit_family(config, train.digits)
    dataset = data_lib.Dataset(
        {
            "train": hmm.class_buckets(
                train_x, train_len, train.digits, num_classes, config.model.num_buckets
            ),
            "test": {"obs": test_x, "lengths": test_len, "y": test.digits},
        }
    )
    result, seconds = _fit(config, workdir, family, dataset)
    if result.preempted:
        return None
    model = family.labelled(result.state)
    model_config = _model_config(
        config,
        num_states=config.model.num_states,
        emission="mixture" if config.model.num_components > 1 else "diag",
        num_components=config.model.num_components,
        left_to_right=True,
        class_conditional=True,
        num_classes=num_classes,
    )
    meta = hmm.meta_from_data(
        {"x": hmm.Sequences(train_x, train_len), "y": train.digits}, model_config
    )
    meta["input"] = {
        "kind": "audio",
        "mfcc": mfcc._asdict(),
        "labels": [str(digit) for digit in range(num_classes)],
        "sample_kwargs": {"length": int(np.median(train_len))},
    }
    saving.save(workdir, "hmm", model_config, meta, model)

    predicted = np.asarray(hmm.classifier(model).predict(hmm.Sequences(test_x, test_len)))
    confusion = np.zeros((num_classes, num_classes), int)
    np.add.at(confusion, (test.digits, predicted), 1)
    plots.plot_confusion(workdir / "fsdd_confusion.png", confusion)
    (workdir / "confusion.json").write_text(json.dumps(confusion.tolist()))
    return {
        "test_accuracy": float(np.mean(predicted == test.digits)),
        "test_errors": float(np.sum(predicted != test.digits)),
        "test_log_likelihood": result.metrics["log_likelihood"],
        "num_test": float(len(test.digits)),
        "num_train": float(len(train.digits)),
        "train_seconds": seconds,
        "feature_seconds": feature_seconds,
        "em_iterations": float(result.step),
        "converged": result.metrics.get("train_converged", 0.0),
        "final_objective_per_frame": result.metrics["train_objective"] / float(np.sum(train_len)),
    }


# -------------------------------------------------------------------------------- main

TASKS = {"casino": run_casino, "fsdd": run_fsdd}


def main(config, workdir: pathlib.Path) -> None:
    if config.task not in TASKS:
        raise ValueError(f"config.task must be one of {sorted(TASKS)}, got {config.task!r}")
    workdir.mkdir(parents=True, exist_ok=True)
    summary = TASKS[config.task](config, workdir)
    if summary is None:  # preempted: the relaunch that finishes writes the summary
        return
    summary = {k: float(v) for k, v in summary.items()}
    metrics_lib.write_summary(workdir, summary)
    metrics_lib.say(json.dumps(summary, indent=1, sort_keys=True))


if __name__ == "__main__":
    config_lib.run(main)
