"""The one training loop, read top to bottom. A family plugs in; it never forks the loop.

Sections: mesh, data, state (shapes first), resume, compiled step, loop (log, evaluate,
save, preemption), end. The batch at a step and the key at a step are functions of
(seed, step), so a resumed run continues bitwise where the uninterrupted run would be.
"""

import dataclasses
import json
import math
import pathlib
import signal
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from genjax_lab.core import checkpoint as ckpt_lib
from genjax_lab.core import checks
from genjax_lab.core import data as data_lib
from genjax_lab.core import mesh as mesh_lib
from genjax_lab.core import metrics as metrics_lib
from genjax_lab.core.checks import NonFiniteError
from genjax_lab.core.splits import evaluate

State = Any
Batch = Mapping[str, jax.Array]
Metrics = Mapping[str, jax.Array]

# Streams of randomness, each folded with the step or batch index where it is used.
_INIT_STREAM, _TRAIN_STREAM, _EVAL_STREAM, _REPORT_STREAM = range(4)


@dataclasses.dataclass(frozen=True)
class Family:
    """What a model family gives the loop: pure functions the loop compiles.

    init(key, batch) -> state: the whole training pytree (params, optimizer states,
      persistent chains...), replicated over devices.
    train_step(state, batch, key) -> (state, metrics): metrics are scalars; `batch`
      holds global arrays sharded over `data`, with `mask` [B] zero on padding rows.
    eval_step(state, batch, key) -> sums: mask-weighted *sums* over the batch; the loop
      divides by the number of real examples of the split.
    report(state, step, workdir, key) -> metrics: host-side extras at evaluation time
      (sample grids, costly estimates); files are written by process 0 only.
    full_batch: every step sees the whole training split, in order, placed on the devices
      once (EM, VB and Gibbs sweeps: a step is an iteration; `config.batch_size` is unused
      and an epoch is one step).
    converged: the name of a step metric that, once nonzero, ends the run at that step as
      if `num_steps` were reached (EM's tolerance); the loop then reads the metrics every
      step, and a relaunch of a converged run trains nothing.
    state_shardings(mesh, abstract_state) -> shardings: where the state is not replicated
      (a Gibbs sampler's per-token assignments split over `data` with the documents).
    steps_per_call: up to this many steps run in one compiled call (a while loop), the
      family's choice unless `config.steps_per_call` is set. A full-batch fit then allocates
      an iteration's temporaries once per call, not once per step (3x fewer page faults for
      the HMM E-step on FSDD); a minibatch fit gets the call's batches stacked [k, B, ...]
      and pays one dispatch per k steps (the VAE at batch 20, where dispatch dominates).
      Calls end at checkpoint and evaluation steps, so saves, logs, evaluations and
      convergence keep their per-step meaning, and a step after convergence leaves the state
      as it was. Each step sees the batch and key of a one-step-a-call run: same numbers.
    non_finite_hint: what the error for a non-finite step metric adds: the family's usual
      cause and its remedy (a mixture's singular covariance: raise reg_covar).
    """

    init: Callable[[jax.Array, Batch], State]
    train_step: Callable[[State, Batch, jax.Array], tuple[State, Metrics]]
    eval_step: Callable[[State, Batch, jax.Array], Metrics] | None = None
    report: Callable[[State, int, pathlib.Path, jax.Array], Mapping[str, float]] | None = None
    full_batch: bool = False
    converged: str | None = None
    state_shardings: Callable[[jax.sharding.Mesh, State], Any] | None = None
    steps_per_call: int = 1
    non_finite_hint: str | None = None


@dataclasses.dataclass(frozen=True)
class RunResult:
    """The state at the last step run, that step, and the final metrics."""

    state: State
    step: int
    metrics: dict[str, float]
    preempted: bool


def base_config() -> ml_collections.ConfigDict:
    """The loop's own keys; a family's config adds `model`, `optim`, `data`..."""
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.batch_size = 128
    config.num_steps = -1  # -1: derive from num_epochs
    config.num_epochs = 1.0
    config.log_every = 100
    config.eval_every = 1000  # 0: only at the end
    config.eval_batch_size = 1000
    # Training steps per compiled call (Family.steps_per_call); 0: the family's own choice.
    config.steps_per_call = 0
    config.checkpoint = ml_collections.ConfigDict({"every": 1000, "keep": 3, "on_corrupt": "fail"})
    # A jax.profiler trace of steps [start_step, start_step + num_steps) in workdir/profile.
    config.profile = ml_collections.ConfigDict({"start_step": 10, "num_steps": 0})
    return config


def _num_steps(config, steps_per_epoch: int) -> int:
    if config.num_steps > 0:
        return int(config.num_steps)
    if config.num_epochs is None or config.num_epochs <= 0:
        raise ValueError("set config.num_steps > 0 or config.num_epochs > 0")
    return max(1, math.ceil(config.num_epochs * steps_per_epoch))


class _PreemptionWatch:
    """Where the run stops on SIGTERM (a scheduler's preemption notice) or SIGINT.

    Under jax.distributed, SIGTERM belongs to JAX's preemption sync manager (its handler is
    installed by jax.distributed.initialize; a Python handler would replace it and hide the
    notice). The manager agrees on one step for every process without a collective in the
    step loop, and Orbax reads the same sync point; it must be asked at every step. SIGINT,
    which JAX does not watch, is passed on to it as SIGTERM. Without jax.distributed the
    Python handler is the whole mechanism, for both signals.
    """

    def __init__(self):
        self.requested = False
        self.distributed = jax.distributed.is_initialized()
        if self.distributed and not jax.config.jax_enable_preemption_service:
            raise ValueError(
                "jax_enable_preemption_service is off: a distributed run then cannot stop at one "
                "step on SIGTERM and save; turn it back on (it is JAX's default)"
            )
        signals = (signal.SIGINT,) if self.distributed else (signal.SIGTERM, signal.SIGINT)
        self._previous = {s: signal.signal(s, self._handle) for s in signals}

    def _handle(self, signum, frame):
        logging.warning("received signal %d: saving at the next agreed step, then exiting", signum)
        if self.distributed:
            signal.raise_signal(signal.SIGTERM)
        else:
            self.requested = True

    def should_stop(self, step: int) -> bool:
        if self.distributed:
            return multihost_utils.reached_preemption_sync_point(step)
        return self.requested

    def close(self):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


class _ProfileWindow:
    """A `jax.profiler` trace of steps [start_step, start_step + num_steps) in `directory`
    (TensorBoard's profile plugin reads its xplane.pb, Perfetto its perfetto_trace.json.gz).
    num_steps = 0, the default, traces nothing; the first steps hold the compilation."""

    def __init__(self, profile: ml_collections.ConfigDict, directory: pathlib.Path):
        self.start = checks.check_count("config.profile.start_step", profile.start_step, minimum=0)
        num_steps = checks.check_count("config.profile.num_steps", profile.num_steps, minimum=0)
        self.end = self.start + num_steps
        self.directory = directory
        self.active = False

    def before(self, step: int, count: int = 1) -> None:
        """Starts the trace if steps [step, step + count) reach into the window."""
        if not self.active and step < self.end and step + count > self.start:
            jax.profiler.start_trace(str(self.directory), create_perfetto_trace=True)
            self.active = True

    def after(self, step: int, state) -> None:
        if self.active and step >= self.end:
            jax.block_until_ready(state)  # the window's device work belongs in the trace
            self.stop()

    def stop(self) -> None:
        if self.active:
            jax.profiler.stop_trace()
            self.active = False
            metrics_lib.say(f"profile of steps {self.start}-{self.end - 1} in {self.directory}")


def _parameters(abstract_state) -> Any:
    """The model parameters within a training state, for the parameter table: its top-level
    fields named `*params` (params, g_params, ema_params...) or holding a `*Params` type
    (a DBM's pretrained RBMs); the whole state when there is none."""
    fields = jax.tree_util.tree_flatten_with_path(
        abstract_state, is_leaf=lambda node: node is not abstract_state
    )[0]
    named = {metrics_lib.path_name(path): value for path, value in fields}
    chosen = {
        name: value
        for name, value in named.items()
        if name.lower().endswith("params") or type(value).__name__.endswith("Params")
    }
    return chosen or abstract_state


def _check_finite(
    metrics: Mapping[str, float], step: int, last_saved: int | None, hint: str | None
) -> None:
    bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
    if bad:
        raise NonFiniteError(
            f"non-finite {', '.join(f'{k}={v}' for k, v in bad.items())} at step {step}; "
            f"stopped without saving it (newest checkpoint: step {last_saved})"
            + (f"; {hint}" if hint else "")
        )


def _logged_metrics(workdir: pathlib.Path, step: int) -> tuple[dict, dict]:
    """(train, test) metrics logged at `step`, empty where none was."""
    return tuple(
        metrics_lib.logged_record(workdir, step, split) or {} for split in ("train", "test")
    )


def _call_length(config, steps_per_call: int, step: int, num_steps: int) -> int:
    """Steps in the next compiled call: at most `steps_per_call`, ending at the next
    checkpoint or evaluation step, so every run (a resumed one too) groups steps alike."""
    bounds = [steps_per_call, num_steps - step]
    for every in (config.checkpoint.every, config.eval_every):
        if every:
            bounds.append(every - step % every)
    return max(1, min(bounds))


def _step_input(mesh: jax.sharding.Mesh, local: Mapping[str, np.ndarray], stacked: bool) -> Batch:
    """What the compiled step takes for this host's rows of a batch [B, ...] (or of batches
    stacked [k, B, ...], `stacked`). One process: the numpy rows themselves, placed by the
    step's in_shardings in its C++ dispatch, a quarter of `jax.device_put`'s host time (on a
    small CPU host that time is taken from the step's own threads). Several processes:
    global arrays from each host's rows, the batch axis split over `data`."""
    if jax.process_count() == 1:
        return dict(local)
    if not stacked:
        return mesh_lib.global_batch(mesh, local)
    sharding = _stacked_sharding(mesh)
    return {
        name: jax.make_array_from_process_local_data(
            sharding,
            value,
            (value.shape[0], value.shape[1] * jax.process_count(), *value.shape[2:]),
        )
        for name, value in local.items()
    }


def _stacked_sharding(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
    """Batches stacked [k, B, ...]: the batch axis (the second) split over `data`."""
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, mesh_lib.DATA_AXIS))


def _index(batches: Batch, i: jax.Array) -> Batch:
    """Batch `i` of batches stacked [k, B, ...]."""
    return jax.tree.map(
        lambda column: jax.lax.dynamic_index_in_dim(column, i, keepdims=False), batches
    )


def _is_eval_step(config, step: int, num_steps: int) -> bool:
    return bool(config.eval_every and step % config.eval_every == 0) or step == num_steps


def _resumed_evaluation_missing(config, workdir: pathlib.Path, step: int, num_steps: int) -> bool:
    """Whether the resumed step is one to evaluate at and its evaluation was not logged (the
    run saves before it evaluates, so a kill can fall between). Process 0, which writes the
    log, decides for all: the evaluation holds collectives that every process must join."""
    missing = (
        _is_eval_step(config, step, num_steps)
        and metrics_lib.logged_record(workdir, step, "test") is None
    )
    if jax.process_count() > 1:
        missing = bool(multihost_utils.broadcast_one_to_all(np.int32(missing)))
    return missing


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str | pathlib.Path,
    family: Family,
    dataset: data_lib.Dataset,
) -> RunResult:
    """Trains `family` on `dataset['train']`, evaluates on `dataset['test']`; resumable.

    Metrics of the result: the final evaluation and the last training metrics (`train_`).
    """
    workdir = pathlib.Path(workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    config_json = ckpt_lib.to_json(config)

    # Mesh: one `data` axis over every device of every host.
    mesh = mesh_lib.data_mesh()
    replicated = mesh_lib.replicated(mesh)

    # Data: the batch at a step is a function of (seed, step); a full-batch fit's batch is
    # the whole split, put on the devices once. Several minibatch steps a call take their
    # batches stacked [steps_per_call, B, ...] from `batches_at(step, count)`.
    steps_per_call = (
        checks.check_count("config.steps_per_call", config.steps_per_call, minimum=0)
        or family.steps_per_call
    )
    if family.full_batch:
        batcher = data_lib.FullBatch(dataset["train"])
        whole = mesh_lib.global_batch(mesh, batcher.batch(0))
        batch_at = lambda step: whole
        batches_at = lambda step, count: whole
    else:
        batcher = data_lib.EpochBatcher(dataset["train"], config.batch_size, config.seed)
        batch_at = lambda step: _step_input(mesh, batcher.batch(step), stacked=False)
        batches_at = lambda step, count: _step_input(
            mesh, batcher.batches(step, count, steps_per_call), stacked=True
        )
    num_steps = _num_steps(config, batcher.steps_per_epoch)
    base_key = jax.random.key(config.seed)
    init_key, train_key, eval_key, report_key = (
        jax.random.fold_in(base_key, s)
        for s in (_INIT_STREAM, _TRAIN_STREAM, _EVAL_STREAM, _REPORT_STREAM)
    )

    # State: shapes first, then a compiled init that writes straight into its shardings.
    example = whole if family.full_batch else mesh_lib.global_batch(mesh, batcher.batch(0))
    abstract = jax.eval_shape(family.init, init_key, example)
    if family.state_shardings is None:
        shardings = jax.tree.map(lambda _: replicated, abstract)
    else:
        shardings = family.state_shardings(mesh, abstract)
    abstract = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, shardings
    )
    metrics_lib.say(metrics_lib.parameter_table(_parameters(abstract), abstract))
    profile = _ProfileWindow(config.profile, workdir / "profile")

    # Resume from the newest usable checkpoint, if any.
    checkpointer = ckpt_lib.Checkpointer(
        workdir / "checkpoints", config.checkpoint.every, config.checkpoint.keep
    )
    restored = checkpointer.restore_newest(abstract, config_json, config.checkpoint.on_corrupt)
    # Written once the config has passed every check, so a refused run (another config's
    # checkpoints, a batch the devices cannot split) leaves the accepted run's config.json.
    if jax.process_index() == 0:
        (workdir / "config.json").write_text(json.dumps(config_json, indent=2, sort_keys=True))
    if restored is None:
        state, step = jax.jit(family.init, out_shardings=shardings)(init_key, example), 0
    else:
        state, step = restored[0], restored[1]["step"]
        metrics_lib.say(f"resumed from {checkpointer.directory / str(step)} (step {step})")
        if restored[1].get("converged"):
            num_steps = step
        if jax.process_index() == 0:
            metrics_lib.cut_back(workdir, step)
    last_saved = step if restored else None

    # The compiled step: state donated, replicated in and out; batch sharded over `data`.
    # The step counter lives on the device and the key is folded inside, so a step costs
    # the host one dispatch and one batch transfer.
    def counted_step(state, batch, step_counter):
        new_state, step_metrics = family.train_step(
            state, batch, jax.random.fold_in(train_key, step_counter)
        )
        return new_state, step_metrics, step_counter + 1

    def counted_steps(state, batches, step_counter, count):
        """`count` steps in one call, step i on `batches[i]` (the whole split when full
        batch); their metrics stacked [steps_per_call]."""
        batch_of = (lambda i: batches) if family.full_batch else (lambda i: _index(batches, i))
        key = jax.random.fold_in(train_key, 0)
        metrics_shape = jax.eval_shape(family.train_step, state, batch_of(0), key)[1]
        stacked = jax.tree.map(
            lambda m: jax.numpy.zeros((steps_per_call, *m.shape), m.dtype), metrics_shape
        )

        def body(i, carry):
            old, stacked, counter, done = carry
            new, metrics = family.train_step(
                old, batch_of(i), jax.random.fold_in(train_key, counter)
            )
            new = jax.lax.cond(done, lambda: old, lambda: new)
            stacked = jax.tree.map(lambda all_, m: all_.at[i].set(m), stacked, metrics)
            if family.converged is not None:
                done = done | (metrics[family.converged] != 0)
            return new, stacked, counter + 1, done

        carry = (state, stacked, step_counter, jax.numpy.bool_(False))
        state, stacked, step_counter, _ = jax.lax.fori_loop(0, count, body, carry)
        return state, stacked, step_counter

    in_calls = steps_per_call > 1
    batch_sharding = (
        _stacked_sharding(mesh)
        if in_calls and not family.full_batch
        else mesh_lib.batch_sharding(mesh)
    )
    train_fn = jax.jit(
        counted_steps if in_calls else counted_step,
        in_shardings=(shardings, batch_sharding, replicated) + ((replicated,) if in_calls else ()),
        out_shardings=(shardings, replicated, replicated),
        donate_argnums=(0, 2),
    )
    eval_fn = jax.jit(family.eval_step, out_shardings=replicated) if family.eval_step else None
    environment = ckpt_lib.describe_environment()

    def save(state, step, force=False, converged=False):
        epoch, position = batcher.position(step)
        meta = {"config": config_json, "epoch": epoch, "position": position, **environment}
        if converged:
            meta["converged"] = True
        return checkpointer.save(step, state, meta, force=force)

    def run_evaluation(state, step):
        results = {}
        if eval_fn is not None and "test" in dataset.splits:
            results = evaluate(
                eval_fn,
                state,
                mesh,
                dataset["test"],
                config.eval_batch_size,
                jax.random.fold_in(eval_key, step),
            )
        if family.report is not None:
            results.update(
                family.report(state, step, workdir, jax.random.fold_in(report_key, step))
            )
        writer.write(step, "test", results)
        metrics_lib.say(
            f"eval step {step}: " + "  ".join(f"{k} {v:.4f}" for k, v in results.items())
        )
        return results

    # Loop.
    writer = metrics_lib.MetricWriter(workdir)
    progress = metrics_lib.Progress(num_steps, batcher.global_batch_size, step)
    watch = _PreemptionWatch()
    # A finished run relaunched trains nothing: its last numbers are those it logged.
    train_metrics, eval_metrics = _logged_metrics(workdir, step) if step >= num_steps else ({}, {})
    preempted = False
    start_time = time.perf_counter()
    step_counter = jax.device_put(np.int32(step), replicated)
    try:
        if restored is not None and _resumed_evaluation_missing(config, workdir, step, num_steps):
            eval_metrics = run_evaluation(state, step)
        while step < num_steps:
            count = _call_length(config, steps_per_call, step, num_steps)
            profile.before(step, count)
            with jax.profiler.StepTraceAnnotation("train", step_num=step):
                if in_calls:
                    state, step_metrics, step_counter = train_fn(
                        state, batches_at(step, count), step_counter, np.int32(count)
                    )
                else:
                    state, step_metrics, step_counter = train_fn(
                        state, batch_at(step), step_counter
                    )
            first, step = step + 1, step + count
            profile.after(step, state)
            # JAX's preemption sync point is asked about every step, in order.
            preempted = any([watch.should_stop(s) for s in range(first, step + 1)])
            due_save = step == num_steps or preempted or checkpointer.manager.should_save(step)
            converged = False
            # Metrics are read only when a step of the call is logged or saved (or may have
            # converged): until then the host prepares the next call while the devices run.
            logged = any(at % config.log_every == 0 for at in range(first, step + 1))
            if logged or due_save or family.converged:
                host_metrics = mesh_lib.host_copy(step_metrics)
                for index, at in enumerate(range(first, step + 1)):
                    row = (
                        {k: v[index] for k, v in host_metrics.items()} if in_calls else host_metrics
                    )
                    train_metrics = {k: float(v) for k, v in row.items()}
                    _check_finite(train_metrics, at, last_saved, family.non_finite_hint)
                    if family.converged is not None and train_metrics[family.converged]:
                        # The state stayed as it was after this step (counted_steps).
                        converged, due_save, num_steps, step = True, True, at, at
                    # A preempted run logs what the uninterrupted run would: logs read as one.
                    if at % config.log_every == 0 or at == num_steps:
                        writer.write(at, "train", train_metrics)
                        metrics_lib.say(progress.line(at, train_metrics, progress.rate(at)))
                    if converged:
                        break
            final = step == num_steps or preempted
            # Save, then evaluate: a preempted run's grace period goes to writing its state
            # (an evaluation such as AIS can outlast it); a resume catches up a lost one.
            if due_save and save(state, step, force=final, converged=converged):
                last_saved = step
            if preempted:
                checkpointer.wait()
            if _is_eval_step(config, step, num_steps):
                eval_metrics = run_evaluation(state, step)
            if preempted:
                # Every process says where it stopped, so their logs show that they agree.
                logging.warning("process %d stopped at step %d", jax.process_index(), step)
                metrics_lib.say(
                    f"preempted: saved step {step} in {checkpointer.directory}; relaunch to resume"
                )
                break
    finally:
        profile.stop()
        watch.close()
        batcher.close()
        checkpointer.wait()
        checkpointer.close()
        writer.close()
    elapsed = time.perf_counter() - start_time
    if not preempted:
        metrics_lib.say(f"done: {step} steps in {elapsed:.1f} s; workdir {workdir}")
    metrics = {**{f"train_{k}": v for k, v in train_metrics.items()}, **eval_metrics}
    return RunResult(state=state, step=step, metrics=metrics, preempted=preempted)
