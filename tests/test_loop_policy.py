"""The loop's policies, in process on a toy family (seconds): which steps it saves, how it
stops on a signal (alone, or at JAX's preemption sync point when distributed), that it saves
before it evaluates, TensorBoard events after a resume, the profile window and the
parameter table."""

import dataclasses
import json
import pathlib
import shutil
import signal
import socket
import struct
import subprocess
import sys
import textwrap

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax_lab.core import data as data_lib
from genjax_lab.core import loop as loop_lib
from genjax_lab.core import mesh as mesh_lib
from genjax_lab.core import metrics as metrics_lib
from genjax_lab.core.state import TrainState
from tests.helpers import REPO, checkpoint_steps, process_env

_OPTIMIZER = optax.sgd(0.1)


def toy_family(report=None) -> loop_lib.Family:
    """Linear regression 4 -> 2 (10 parameters); `report(step, workdir)` runs at evaluations."""

    def init(key, batch):
        params = {"dense": {"kernel": jax.random.normal(key, (4, 2)), "bias": jnp.zeros(2)}}
        return TrainState.create(params, _OPTIMIZER)

    def loss_sum(params, batch):
        prediction = batch["x"] @ params["dense"]["kernel"] + params["dense"]["bias"]
        return jnp.sum(batch["mask"] * jnp.sum((prediction - batch["y"]) ** 2, axis=-1))

    def train_step(state, batch, key):
        mean_loss = lambda params: loss_sum(params, batch) / jnp.sum(batch["mask"])
        loss, grads = jax.value_and_grad(mean_loss)(state.params)
        return state.apply_gradients(grads, _OPTIMIZER), {"loss": loss}

    def eval_step(state, batch, key):
        return {"loss": loss_sum(state.params, batch)}

    def report_fn(state, step, workdir, key):
        if report is not None:
            report(step, workdir)
        return {}

    return loop_lib.Family(init=init, train_step=train_step, eval_step=eval_step, report=report_fn)


def toy_dataset() -> data_lib.Dataset:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = (x @ rng.normal(size=(4, 2))).astype(np.float32)
    return data_lib.Dataset({"train": {"x": x, "y": y}, "test": {"x": x[:16], "y": y[:16]}})


def toy_config(**overrides):
    config = loop_lib.base_config()
    config.batch_size, config.eval_batch_size = 16, 16
    config.num_steps, config.log_every, config.eval_every = 25, 5, 0
    config.checkpoint.every, config.checkpoint.keep = 10, 100
    for key, value in overrides.items():
        target = config
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target[parent]
        target[leaf] = value
    return config


def run_toy(workdir, report=None, **overrides) -> loop_lib.RunResult:
    config = toy_config(**overrides)
    return loop_lib.train_and_evaluate(config, workdir, toy_family(report), toy_dataset())


@pytest.mark.parametrize("num_steps, every, expected", [(25, 10, [10, 20, 25]), (7, 3, [3, 6, 7])])
def test_a_fresh_run_saves_exactly_the_configured_steps(tmp_path, num_steps, every, expected):
    """Every `checkpoint.every` steps and the last: no initial save at step 1 (Orbax's default
    save policy adds one); a resumed run keeps to the same steps."""
    run_toy(tmp_path / "fresh", num_steps=num_steps, **{"checkpoint.every": every})
    assert checkpoint_steps(tmp_path / "fresh") == expected
    run_toy(tmp_path / "resumed", num_steps=every + 1, **{"checkpoint.every": every})
    run_toy(tmp_path / "resumed", num_steps=num_steps, **{"checkpoint.every": every})
    assert checkpoint_steps(tmp_path / "resumed") == sorted({*expected, every + 1})


class _Recorder:
    """At each evaluation: the checkpoints on disk; at `signal_at`, raises `signum`."""

    def __init__(self, signum, signal_at: int):
        self.signum, self.signal_at = signum, signal_at
        self.seen: dict[int, list[int]] = {}

    def __call__(self, step, workdir):
        self.seen[step] = checkpoint_steps(workdir)
        if step == self.signal_at:
            signal.raise_signal(self.signum)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_one_process_stops_on_a_signal_saves_then_evaluates(tmp_path, signum):
    """Alone, the Python handler is the whole mechanism: the run stops at the next step, and
    the checkpoint of that step is on disk before its evaluation starts (under SLURM's grace
    period a long evaluation must not use up the time before anything is saved)."""
    before = signal.getsignal(signum)
    recorder = _Recorder(signum, signal_at=3)
    result = run_toy(tmp_path, recorder, num_steps=50, eval_every=1, **{"checkpoint.every": 1000})
    assert result.preempted and result.step == 4
    assert checkpoint_steps(tmp_path) == [4]
    assert recorder.seen[4] == [4], (
        f"checkpoints on disk when step 4 was evaluated: {recorder.seen}"
    )
    assert signal.getsignal(signum) is before


def test_a_checkpoint_due_is_written_before_an_evaluation_that_fails(tmp_path):
    """A scheduled save at an evaluation step is started before the evaluation: an
    evaluation that dies still leaves the step's checkpoint."""

    def failing(step, workdir):
        if step == 10:
            raise RuntimeError("evaluation died")

    with pytest.raises(RuntimeError, match="evaluation died"):
        run_toy(tmp_path, failing, eval_every=10)
    assert checkpoint_steps(tmp_path) == [10]


_DISTRIBUTED_SCRIPT = textwrap.dedent("""
    import json, signal, sys
    import jax
    from jax.experimental import multihost_utils
    from tests import test_loop_policy as t

    jax.distributed.initialize(coordinator_address=sys.argv[1], num_processes=1, process_id=0)
    recorder = t._Recorder(getattr(signal, sys.argv[3]), signal_at=3)
    result = t.run_toy(sys.argv[2], recorder, num_steps=10_000, eval_every=1,
                       **{"checkpoint.every": 100_000})
    print(json.dumps({"preempted": result.preempted, "step": result.step,
                      "sync_point": multihost_utils.reached_preemption_sync_point(result.step),
                      "checkpoints": t.checkpoint_steps(sys.argv[2]),
                      "seen_at_stop": recorder.seen.get(result.step)}))
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# SIGINT reaches the same sync point as SIGTERM (passed on as one): that case runs with --runslow.
@pytest.mark.parametrize("signame", ["SIGTERM", pytest.param("SIGINT", marks=pytest.mark.slow)])
def test_a_distributed_run_stops_at_the_jax_preemption_sync_point(tmp_path, signame):
    """Under jax.distributed, SIGTERM is JAX's preemption notice (SIGINT is passed on as one):
    the run stops at the step JAX's preemption sync manager agrees for every process, saves it
    and only then evaluates. A Python SIGTERM handler would hide the notice from JAX."""
    env = dict(process_env(tmp_path / "tfds"), PYTHONPATH=str(REPO))
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _DISTRIBUTED_SCRIPT,
            f"127.0.0.1:{_free_port()}",
            str(tmp_path / "run"),
            signame,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["preempted"] and outcome["step"] < 10_000, outcome
    assert outcome["sync_point"], f"stopped, but not at JAX's sync point: {outcome}"
    assert outcome["checkpoints"] == [outcome["step"]] == outcome["seen_at_stop"], outcome


def _event_scalars(workdir: pathlib.Path) -> list[tuple[str, int, float]]:
    """(tag, step, value) of every scalar in the run's event files, in file order. The files
    are read as TFRecords with their CRCs checked, independently of the writer."""
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.record_writer import masked_crc32c

    scalars = []
    for path in sorted((workdir / "tensorboard").glob("events.out.tfevents.*")):
        data, offset = path.read_bytes(), 0
        while offset < len(data):
            header = data[offset : offset + 8]
            (length,) = struct.unpack_from("<Q", header)
            end = offset + 16 + length
            record = data[offset + 12 : end - 4]
            crcs = struct.unpack_from("<I", data, offset + 8) + struct.unpack_from(
                "<I", data, end - 4
            )
            assert crcs == (masked_crc32c(header), masked_crc32c(record)), path
            event = Event.FromString(record)
            scalars += [(v.tag, event.step, v.simple_value) for v in event.summary.value]
            offset = end
    return scalars


def test_tensorboard_events_hold_each_step_once_after_a_resume(tmp_path):
    """A run killed after logging past its newest checkpoint (here: logged to 30, checkpoints
    from 20 on lost, and a record torn by the kill) resumes at 10; the event files are cut
    back to step 10 as metrics.jsonl is, so every step's scalars are there once."""
    run_toy(tmp_path, num_steps=30, log_every=1, eval_every=10)
    for step in (20, 30):
        shutil.rmtree(tmp_path / "checkpoints" / str(step))
    events_file = next((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    with events_file.open("ab") as f:
        f.write(b"\x30\x00\x00\x00\x00")  # the start of a record the kill cut short
    run_toy(tmp_path, num_steps=30, log_every=1, eval_every=10)
    scalars = _event_scalars(tmp_path)
    keys = [(tag, step) for tag, step, _ in scalars]
    assert len(keys) == len(set(keys)), sorted(k for k in set(keys) if keys.count(k) > 1)[:10]
    logged = {
        (f"{r['split']}/{name}", r["step"]): value
        for r in metrics_lib.read_metrics(tmp_path)
        for name, value in r.items()
        if name not in ("step", "split")
    }
    events = {(tag, step): value for tag, step, value in scalars}
    assert events.keys() == logged.keys()
    order = sorted(logged)
    np.testing.assert_allclose([events[k] for k in order], [logged[k] for k in order], rtol=1e-6)


def test_the_profile_window_writes_a_trace_into_the_workdir(tmp_path):
    run_toy(tmp_path / "off")
    assert not (tmp_path / "off" / "profile").exists()
    run_toy(tmp_path / "on", **{"profile.start_step": 3, "profile.num_steps": 4})
    traces = list((tmp_path / "on" / "profile").rglob("*.xplane.pb"))
    assert traces and all(p.stat().st_size > 0 for p in traces)
    assert list((tmp_path / "on" / "profile").rglob("perfetto_trace.json.gz"))


@pytest.mark.parametrize("key, value", [("profile.num_steps", -1), ("profile.start_step", -2)])
def test_a_bad_profile_window_is_refused_by_name(tmp_path, key, value):
    with pytest.raises(ValueError, match=f"config.{key}"):
        run_toy(tmp_path, **{key: value})


def test_the_parameter_table_is_logged_at_the_start(tmp_path, capsys):
    run_toy(tmp_path)
    out = capsys.readouterr().out
    assert "dense" in out and "(4, 2)" in out and "(2,)" in out
    assert "parameters: 10 (40 B)" in out, out[:2000]


@flax.struct.dataclass
class _TwoNetworkState:
    g_params: dict
    d_params: dict
    g_opt_state: tuple
    chains: jax.Array


def test_the_parameter_table_counts_every_network_and_no_optimizer_state():
    """The parameters of a state with several networks (GAN-style field names), not its
    optimizer states or chains; bytes follow each leaf's dtype."""
    g = {"dense": {"kernel": jnp.zeros((3, 5)), "bias": jnp.zeros(5)}}
    d = {"out": {"kernel": jnp.zeros((5, 1), jnp.bfloat16)}}
    state = _TwoNetworkState(
        g_params=g, d_params=d, g_opt_state=(jnp.zeros(100),), chains=jnp.zeros((7, 3))
    )
    table = metrics_lib.parameter_table(loop_lib._parameters(state), state)
    rows = table.split("\nparameters:")[0]
    assert "g_params/dense" in rows and "d_params/out" in rows and "opt" not in rows
    assert "parameters: 25 (90 B)" in table  # 20 float32 + 5 bfloat16
    assert "5 arrays, 574 B" in table.splitlines()[-1]  # 90 B, then 100 and 21 float32


# ---------------------------------------------------------------- full-batch fits (EM)


def mixture_em_family(tol: float, steps_per_call: int = 1) -> loop_lib.Family:
    """EM for the means and weights of a two-component 1-D mixture with unit variances; the
    responsibilities [N, 2] live in the state, split over `data` with the rows."""

    def responsibilities(params, x):
        logits = jnp.log(params["weights"]) - 0.5 * (x[:, None] - params["means"]) ** 2
        return jax.nn.softmax(logits, axis=-1)

    def init(key, batch):
        params = {"means": jnp.array([-0.5, 0.5]), "weights": jnp.array([0.5, 0.5])}
        return {"params": params, "resp": responsibilities(params, batch["x"])}

    def train_step(state, batch, key):
        resp = responsibilities(state["params"], batch["x"]) * batch["mask"][:, None]
        counts = jnp.sum(resp, axis=0)
        params = {"means": resp.T @ batch["x"] / counts, "weights": counts / counts.sum()}
        change = jnp.max(jnp.abs(params["means"] - state["params"]["means"]))
        metrics = {"mean_change": change, "converged": (change < tol).astype(jnp.float32)}
        return {"params": params, "resp": resp}, metrics

    def shard_responsibilities(mesh, abstract):
        rows = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
        return {
            "params": jax.tree.map(lambda _: mesh_lib.replicated(mesh), abstract["params"]),
            "resp": rows,
        }

    return loop_lib.Family(
        init=init,
        train_step=train_step,
        full_batch=True,
        converged="converged",
        state_shardings=shard_responsibilities,
        steps_per_call=steps_per_call,
    )


def mixture_data() -> data_lib.Dataset:
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(-2, 1, 300), rng.normal(3, 1, 101)]).astype(np.float32)
    return data_lib.Dataset({"train": {"x": x}})


def numpy_mixture_em(x: np.ndarray, num_iters: int) -> np.ndarray:
    means, weights = np.array([-0.5, 0.5]), np.array([0.5, 0.5])
    for _ in range(num_iters):
        logits = np.log(weights) - 0.5 * (x[:, None] - means) ** 2
        resp = np.exp(logits - logits.max(1, keepdims=True))
        resp /= resp.sum(1, keepdims=True)
        means, weights = resp.T @ x / resp.sum(0), resp.sum(0) / len(x)
    return means


def run_mixture(workdir, num_steps: int, steps_per_call: int = 1) -> loop_lib.RunResult:
    config = toy_config(num_steps=num_steps, log_every=1, **{"checkpoint.every": 4})
    family = mixture_em_family(1e-4, steps_per_call)
    return loop_lib.train_and_evaluate(config, workdir, family, mixture_data())


def test_a_full_batch_fit_stops_at_convergence_and_resumes_bitwise(tmp_path):
    """A full-batch EM fit on the loop: every step sees all 401 rows (padded to 408 over 8
    devices, the padding masked), it stops at the first step whose `converged` metric is set,
    agrees with a float64 EM of as many iterations, keeps its per-row state split over
    `data`, resumes bitwise from an interrupted run and, once converged, trains no more."""
    whole = run_mixture(tmp_path / "whole", num_steps=500)
    assert 5 < whole.step < 500
    assert whole.metrics["train_converged"] == 1.0
    x = mixture_data()["train"]["x"].astype(np.float64)
    np.testing.assert_allclose(
        whole.state["params"]["means"], numpy_mixture_em(x, whole.step), rtol=1e-4
    )
    assert whole.state["resp"].shape == (408, 2)
    assert whole.state["resp"].sharding.spec == jax.sharding.PartitionSpec("data")
    assert checkpoint_steps(tmp_path / "whole")[-1] == whole.step

    run_mixture(tmp_path / "resumed", num_steps=5)
    resumed = run_mixture(tmp_path / "resumed", num_steps=500)
    assert resumed.step == whole.step
    for a, b in zip(jax.tree.leaves(whole.state), jax.tree.leaves(resumed.state)):
        np.testing.assert_array_equal(a, b)

    again = run_mixture(tmp_path / "whole", num_steps=500)
    assert again.step == whole.step and again.metrics == whole.metrics


def test_full_batch_steps_in_one_call_read_as_one_step_a_call(tmp_path):
    """steps_per_call=3 runs up to three EM steps in one compiled call (calls end at the
    checkpoint steps, every 4): every step is logged once with the metrics of a one-step-a-
    call run, the run stops at the same converged step with the state of that step (the
    steps after it in the call leave it as it was), and a resumed run is bitwise the same."""
    single = run_mixture(tmp_path / "single", num_steps=500)
    grouped = run_mixture(tmp_path / "grouped", num_steps=500, steps_per_call=3)
    assert grouped.step == single.step and grouped.metrics["train_converged"] == 1.0
    np.testing.assert_allclose(
        grouped.state["params"]["means"], single.state["params"]["means"], rtol=1e-6
    )
    logs = [
        [
            (r["step"], r["mean_change"])
            for r in metrics_lib.read_metrics(tmp_path / name)
            if r["split"] == "train"
        ]
        for name in ("single", "grouped")
    ]
    assert [step for step, _ in logs[1]] == list(range(1, single.step + 1))
    np.testing.assert_allclose(np.array(logs[1]), np.array(logs[0]), rtol=1e-5, atol=1e-7)
    assert checkpoint_steps(tmp_path / "grouped")[-1] == grouped.step

    run_mixture(tmp_path / "resumed", num_steps=5, steps_per_call=3)
    resumed = run_mixture(tmp_path / "resumed", num_steps=500, steps_per_call=3)
    for x, y in zip(jax.tree.leaves(grouped.state), jax.tree.leaves(resumed.state)):
        np.testing.assert_array_equal(x, y)


def test_two_metric_writers_in_the_same_second_keep_both_runs_events(tmp_path):
    """A relaunch within the second of the last launch (tensorboardX names event files by
    the second) must not truncate the first launch's events."""
    for step in (1, 2):
        writer = metrics_lib.MetricWriter(tmp_path)
        writer.write(step, "train", {"loss": float(step)})
        writer.close()
    assert sorted(step for _, step, _ in _event_scalars(tmp_path)) == [1, 2]


# ---------------------------------------------------------------- minibatch steps in one call


def tiny_vae_run(workdir, steps_per_call: int) -> tuple[loop_lib.RunResult, list[dict]]:
    """A 64-16-4 VAE on 8x8 digits, batch 16, 10 steps, a checkpoint at step 6."""
    from sklearn.datasets import load_digits

    from genjax_lab.models import vae

    digits = load_digits()
    images = np.round(digits.images[:200] * 255 / 16).astype(np.uint8)[..., None]
    dataset = data_lib.Dataset({"train": {"image": images, "label": digits.target[:200]}})
    config = vae.default_config()
    config.model.update(encoder_hidden=(16,), decoder_hidden=(16,), latent_dim=4)
    config.model.update(objective="iwae", num_samples=3)
    config.batch_size, config.num_steps, config.log_every = 16, 10, 1
    config.checkpoint.every, config.steps_per_call = 6, steps_per_call
    # No report: its sample grids would cost more compilation than the training does.
    family = dataclasses.replace(vae.family_for(config, dataset).as_family(), report=None)
    result = loop_lib.train_and_evaluate(config, workdir, family, dataset)
    return result, [r for r in metrics_lib.read_metrics(workdir) if r["split"] == "train"]


def test_minibatch_steps_in_one_call_equal_one_step_a_call_bitwise(tmp_path):
    """config.steps_per_call=4 on a minibatch family: each call scans over 4 batches stacked
    [4, 16, ...] (calls 1-4, 5-6 ending at the checkpoint, 7-10); every step sees the batch and
    key it sees at one step a call, so the parameters and every logged loss are bitwise those
    of steps_per_call=1. A run killed after step 9 (its checkpoint 10 never written, its log
    past 6 cut back) resumes from step 6 and ends bitwise the same."""
    single, single_log = tiny_vae_run(tmp_path / "single", steps_per_call=1)
    grouped, grouped_log = tiny_vae_run(tmp_path / "grouped", steps_per_call=4)
    assert grouped.step == single.step == 10
    assert (
        checkpoint_steps(tmp_path / "grouped") == checkpoint_steps(tmp_path / "single") == [6, 10]
    )
    assert [r["step"] for r in grouped_log] == list(range(1, 11))
    assert [r["loss"] for r in grouped_log] == [r["loss"] for r in single_log]
    for a, b in zip(jax.tree.leaves(single.state), jax.tree.leaves(grouped.state), strict=True):
        np.testing.assert_array_equal(a, b)

    shutil.rmtree(tmp_path / "grouped" / "checkpoints" / "10")
    resumed, resumed_log = tiny_vae_run(tmp_path / "grouped", steps_per_call=4)
    assert resumed.step == 10 and resumed_log == grouped_log
    for a, b in zip(jax.tree.leaves(single.state), jax.tree.leaves(resumed.state), strict=True):
        np.testing.assert_array_equal(a, b)


def test_stacked_batches_are_the_steps_batches_then_zeros():
    batcher = data_lib.EpochBatcher(toy_dataset()["train"], 16, seed=3)
    stacked = batcher.batches(5, 3, 4)
    assert stacked["x"].shape == (4, 16, 4)
    for i in range(3):
        np.testing.assert_array_equal(stacked["x"][i], batcher.batch(5 + i)["x"])
    assert not stacked["x"][3].any() and not stacked["mask"][3].any()
    with pytest.raises(ValueError, match="count=5"):
        batcher.batches(0, 5, 4)


def test_a_checkpoint_resumes_under_another_steps_per_call_and_from_before_the_key():
    """Steps per call only groups steps into compiled calls (same numbers, tested above), so
    neither a changed value nor a checkpoint written before the key existed is refused."""
    from genjax_lab.core import checkpoint

    saved = {"num_steps": 10, "model": {"width": 4}}
    current = {"num_steps": 20, "steps_per_call": 4, "model": {"width": 4}}
    assert checkpoint.config_differences(saved, current) == []
    assert checkpoint.config_differences({**saved, "steps_per_call": 1}, current) == []
    changed = {**current, "model": {"width": 5}}
    assert checkpoint.config_differences(saved, changed) == [
        "model.width: checkpoint has 4, this run has 5"
    ]


def test_a_checkpoint_written_before_a_config_key_existed_resumes():
    """New options come with defaults that keep what runs did (e.g. data.cifar10_dir, a GAN's
    optim.update_order), so a key the checkpoint's config lacks is no reason to refuse it;
    a key whose value changed, or one the current config dropped, still is."""
    from genjax_lab.core import checkpoint

    saved = {"data": {"name": "mnist"}, "optim": {"lr": 0.1}}
    current = {"data": {"name": "mnist", "cifar10_dir": ""}, "optim": {"lr": 0.1, "order": "a"}}
    assert checkpoint.config_differences(saved, current, keys_added_since=True) == []
    assert checkpoint.config_differences(saved, current) != []
    changed = {"data": {"name": "cifar10", "cifar10_dir": ""}, "optim": {"lr": 0.1}}
    assert checkpoint.config_differences(saved, changed, keys_added_since=True) == [
        "data.name: checkpoint has 'mnist', this run has 'cifar10'"
    ]
    dropped = {"data": {"name": "mnist"}}
    assert checkpoint.config_differences(saved, dropped, keys_added_since=True) == [
        "optim: checkpoint has {'lr': 0.1}, this run has '<absent>'"
    ]
