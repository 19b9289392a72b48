"""experiments/hmm.py on the training loop: the tiny casino and FSDD runs end to end (summary,
PNG, saved model), resumed runs ending bitwise where uninterrupted ones do, a finished run
relaunched changing nothing, the finished workdirs used through `genjax_lab.cli`, bad input
naming the config key, file or flag, and the replication modules."""

import io
import json
import pathlib
import tarfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from scipy.io import wavfile

from genjax_lab import cli, saving
from genjax_lab.core import checks
from genjax_lab.core import data as data_lib
from genjax_lab.core import loop as loop_lib
from genjax_lab.core import metrics as metrics_lib
from genjax_lab.core import replication as rep
from genjax_lab.data import audio
from genjax_lab.models import hmm
from tests.helpers import checkpoint_steps, shared_data

hx = rep.load_module("experiments/hmm.py")  # a script: its functions


def _png(workdir: pathlib.Path, name: str) -> None:
    with Image.open(workdir / name) as image:
        assert image.format == "PNG" and image.width > 100


def _summary(workdir: pathlib.Path) -> dict:
    return json.loads((workdir / "summary.json").read_text())


def _assert_same_params(a, b) -> None:
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# ------------------------------------------------------------------------------ casino


def _casino_config(**overrides):
    config = rep.experiment_config("experiments/configs/hmm_casino.py", "tiny")
    config.log_every = 1
    for key, value in overrides.items():
        section, _, leaf = key.rpartition(".")
        (config[section] if section else config)[leaf] = value
    return config


# tol 1 nat: the tiny run converges before its cap, so the runs below end by the rule.
CONVERGING = {"model.tol": 1.0, "num_steps": 40}


@pytest.fixture(scope="module")
def casino(tmp_path_factory) -> pathlib.Path:
    """The tiny casino run, finished: stopped by tol before its cap of 40 iterations."""
    workdir = tmp_path_factory.mktemp("casino") / "run"
    hx.main(_casino_config(**CONVERGING), workdir)
    return workdir


def test_tiny_casino_end_to_end_stops_at_convergence(casino):
    summary = _summary(casino)
    _png(casino, "casino_posterior.png")
    replication, _ = rep.load("hmm_casino")
    for row in replication.rows:  # the tiny schedule's own checks pass
        assert row.passes(summary[row.metric], "tiny"), (row.label, summary[row.metric])
    assert 0.6 < summary["viterbi_accuracy"] <= 1 and 0.6 < summary["posterior_accuracy"] <= 1
    stopped = int(summary["em_iterations"])
    assert 7 < stopped < 40 and summary["converged"] == 1
    assert checkpoint_steps(casino)[-1] == stopped  # saved where it stopped
    objectives = [r["objective"] for r in metrics_lib.read_metrics(casino, "train")]
    assert len(objectives) == stopped and np.all(np.diff(objectives) >= -1e-3)  # EM ascends
    # The best restart's objective is logged: it gains less than any restart's most.
    assert objectives[-1] - objectives[-2] < 1.0


def test_a_resumed_casino_run_ends_bitwise_where_the_whole_run_does(casino, tmp_path):
    """Killed after 7 iterations (its last checkpoint), relaunched: it stops at the same
    iteration with bitwise the same model; a relaunch with a higher cap trains nothing."""
    hx.main(_casino_config(**{**CONVERGING, "num_steps": 7}), tmp_path)
    assert checkpoint_steps(tmp_path) == [7]
    hx.main(_casino_config(**CONVERGING), tmp_path)
    _assert_same_params(saving.load(tmp_path).params, saving.load(casino).params)
    steps = checkpoint_steps(tmp_path)
    # Continued from step 7 (kept or rotated out by later saves), saved where it stopped.
    assert steps[-1] == checkpoint_steps(casino)[-1] and min(steps) >= 7
    before = metrics_lib.read_metrics(tmp_path)
    hx.main(_casino_config(**{**CONVERGING, "num_steps": 60}), tmp_path)
    assert metrics_lib.read_metrics(tmp_path) == before
    assert checkpoint_steps(tmp_path) == steps
    summary, whole = _summary(tmp_path), _summary(casino)
    assert {k: v for k, v in summary.items() if k != "train_seconds"} == {
        k: v for k, v in whole.items() if k != "train_seconds"
    }


def test_the_finished_casino_run_samples_and_scores_rolls(casino, tmp_path, capsys):
    model = saving.load(casino)
    assert cli.main(["sample", f"--workdir={casino}", "--num=3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rolls = np.array([[int(s) for s in line.split()] for line in lines])
    assert rolls.shape == (3, 500) and rolls.min() >= 0 and rolls.max() <= 5

    np.save(tmp_path / "rolls.npy", rolls)
    np.save(tmp_path / "one.npy", rolls[1])
    expected = np.asarray(model.log_prob(rolls))
    for name, rows in (("rolls.npy", expected), ("one.npy", expected[1:2])):
        assert cli.main(["score", f"--workdir={casino}", f"--input={tmp_path / name}"]) == 0
        header, *scores = capsys.readouterr().out.splitlines()
        assert header == "# log p(x) in nats (exact)"
        np.testing.assert_allclose([float(s.split("\t")[1]) for s in scores], rows, atol=1e-3)
    # Its own rolls are likelier under the model than under a fair die (1/6 a roll).
    assert expected.mean() / 500 > np.log(1 / 6) + 0.05


@pytest.mark.parametrize(
    "command, content, message",
    [
        ("classify", np.zeros(5, np.int64), "hmm model was fitted without labels"),
        ("score", np.full(5, 6), "symbols must lie in [0, 6)"),
        ("score", np.zeros(5, np.float32), "symbols must be integers"),
    ],
)
def test_bad_use_of_the_casino_model_is_one_line(
    casino, tmp_path, capsys, command, content, message
):
    np.save(tmp_path / "x.npy", content)
    assert cli.main([command, f"--workdir={casino}", f"--input={tmp_path / 'x.npy'}"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and message in error and "\n" not in error


@pytest.mark.fault(
    "a non-finite EM objective (HMM): stopped naming the iteration, last good checkpoint kept"
)
def test_a_non_finite_objective_stops_em_naming_the_iteration(tmp_path):
    """The casino's EM family with its objective turned NaN at iteration 5: the loop stops
    there naming step 5, and the checkpoints (every 2) hold only the finite iterations."""
    config = _casino_config(num_steps=10)
    config.checkpoint.every = 2
    em = hmm.EMFamily(
        starts=lambda batch: jax.vmap(lambda k: hmm.init_categorical_hmm(k, 2, 6))(
            jax.random.split(jax.random.key(0), 2)
        ),
        prior=hmm.HMMPrior(),
        tol=-np.inf,
    )

    def train_step(state, batch, key):
        em_state, metrics = em.train_step(state["em"], batch, key)
        poisoned = jnp.where(state["step"] >= 4, jax.numpy.nan, metrics["objective"])
        return {"em": em_state, "step": state["step"] + 1}, {**metrics, "objective": poisoned}

    family = loop_lib.Family(
        init=lambda key, batch: {"em": em.init(key, batch), "step": jnp.int32(0)},
        train_step=train_step,
        full_batch=True,
        converged="converged",
    )
    rolls = np.random.default_rng(0).integers(0, 6, (4, 50))
    dataset = data_lib.Dataset({"train": {"obs": rolls, "lengths": np.full(4, 50, np.int32)}})
    with pytest.raises(
        checks.NonFiniteError, match=r"non-finite objective=nan at step 5;.*step 4\)"
    ):
        loop_lib.train_and_evaluate(config, tmp_path, family, dataset)
    assert checkpoint_steps(tmp_path) == [2, 4]


def test_align_states_undoes_a_relabelling():
    b = hx.CASINO_EMISSIONS
    assert hx._align_states(b[[1, 0]], b) == (1, 0)
    assert hx._align_states(b, b) == (0, 1)


# -------------------------------------------------------------------------------- FSDD


def _fsdd_config(**overrides):
    config = rep.experiment_config("experiments/configs/hmm_fsdd.py", "tiny")
    config.data.fsdd_path = str(shared_data("fsdd/recordings.tar.gz"))
    config.model.num_buckets = 2  # the bucketed layout, as the full runs have it
    for key, value in overrides.items():
        config[key] = value
    return config


@pytest.fixture(scope="module")
def fsdd(tmp_path_factory) -> pathlib.Path:
    """The tiny FSDD run, finished: 2 speakers, digits 0-2, 4 EM iterations."""
    workdir = tmp_path_factory.mktemp("fsdd") / "run"
    hx.main(_fsdd_config(), workdir)
    return workdir


def test_tiny_fsdd_end_to_end(fsdd):
    summary = _summary(fsdd)
    _png(fsdd, "fsdd_confusion.png")
    assert summary["num_test"] == 30 and summary["num_train"] == 30
    assert summary["em_iterations"] == 4
    assert summary["test_accuracy"] >= 0.8  # 3 digits, 2 speakers: well above chance (1/3)
    confusion = np.array(json.loads((fsdd / "confusion.json").read_text()))
    assert confusion.sum() == 30 and np.trace(confusion) == round(30 * summary["test_accuracy"])
    (evaluation,) = metrics_lib.read_metrics(fsdd, "test")  # the loop's eval_step agrees
    assert evaluation["accuracy"] == pytest.approx(summary["test_accuracy"])
    assert evaluation["log_likelihood"] == pytest.approx(summary["test_log_likelihood"])


@pytest.mark.slow  # the casino's resume covers the loop's; this one adds the bucketed layout
def test_a_resumed_fsdd_run_ends_bitwise_where_the_whole_run_does(fsdd, tmp_path):
    hx.main(_fsdd_config(num_steps=2), tmp_path)
    assert checkpoint_steps(tmp_path) == [2]
    hx.main(_fsdd_config(), tmp_path)
    assert checkpoint_steps(tmp_path) == [2, 4]
    _assert_same_params(saving.load(tmp_path).params, saving.load(fsdd).params)
    assert _summary(tmp_path)["test_accuracy"] == _summary(fsdd)["test_accuracy"]


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> tuple[pathlib.Path, list[str]]:
    """Test-split recordings of the tiny run (digits 0-2, index 0-1 of jackson and theo) as
    .wav files in a folder, with their names."""
    folder = tmp_path_factory.mktemp("wavs")
    names = [f"{d}_{s}_{i}.wav" for d in range(3) for s in ("jackson", "theo") for i in (0, 1)]
    with tarfile.open(shared_data("fsdd/recordings.tar.gz")) as archive:
        for member in archive.getmembers():
            if pathlib.Path(member.name).name in names:
                (folder / pathlib.Path(member.name).name).write_bytes(
                    archive.extractfile(member).read()
                )
    return folder, sorted(names)


def test_the_finished_fsdd_run_classifies_wav_files_folders_and_lists(fsdd, recordings, capsys):
    folder, names = recordings
    model = saving.load(fsdd)
    waves = [audio.read_wav(folder / name) for name in names]
    x = hmm.Sequences(*audio.mfcc(waves))  # the training front end, settings as saved
    proba = np.asarray(hmm.classifier(model.params).predict_proba(x))
    listing = folder.parent / "list.txt"
    listing.write_text("".join(f"{folder.name}/{name}\n" for name in names))
    outputs = []
    for source in (folder, listing):
        assert cli.main(["classify", f"--workdir={fsdd}", f"--input={source}"]) == 0
        outputs.append(capsys.readouterr().out.splitlines())
    assert outputs[0] == outputs[1]
    rows = [line.split("\t") for line in outputs[0]]
    assert [r[0] for r in rows] == names
    assert [int(r[1]) for r in rows] == list(proba.argmax(1))
    np.testing.assert_allclose([float(r[2]) for r in rows], proba.max(1), atol=1e-4)
    truth = [int(name[0]) for name in names]
    assert np.mean(np.array([int(r[1]) for r in rows]) == truth) >= 0.75

    one = folder / names[-1]
    assert cli.main(["classify", f"--workdir={fsdd}", f"--input={one}"]) == 0
    assert capsys.readouterr().out.splitlines() == outputs[0][-1:]


def test_the_finished_fsdd_run_scores_and_samples_a_digit(fsdd, recordings, tmp_path, capsys):
    folder, names = recordings
    model = saving.load(fsdd)
    assert cli.main(["score", f"--workdir={fsdd}", f"--input={folder}"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header == "# log p(x) in nats (exact)"
    x = hmm.Sequences(*audio.mfcc([audio.read_wav(folder / name) for name in names]))
    per_class = np.stack(
        [np.asarray(hmm.log_prob(model.params, x, np.full(len(names), c))) for c in range(3)], 1
    )
    log_px = np.logaddexp.reduce(per_class + np.asarray(model.params.log_prior), axis=1)
    np.testing.assert_allclose([float(r.split("\t")[1]) for r in rows], log_px, rtol=1e-5)

    out = tmp_path / "two.npy"
    argv = ["sample", f"--workdir={fsdd}", "--label=2", "--num=3", f"--out={out}"]
    assert cli.main(argv) == 0
    message = capsys.readouterr().out
    assert "MFCC" in message and "no vocoder" in message
    frames = np.load(out)
    assert frames.shape == (3, model.meta["input"]["sample_kwargs"]["length"], 39)
    assert np.isfinite(frames).all()
    # Drawn from digit 2's HMM: that class explains them best.
    drawn = hmm.Sequences(frames, np.full(3, frames.shape[1]))
    assert (np.asarray(hmm.classifier(model.params).predict(drawn)) == 2).all()


def _wav_bytes(rate: int, samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    wavfile.write(buffer, rate, samples)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("bad.wav", b"not a wav", "bad.wav: not a wav file"),
        ("fast.wav", _wav_bytes(16000, np.zeros(4000, np.int16)), "expected mono 8000 Hz"),
        ("list.txt", b"nowhere.wav\n", "nowhere.wav, which does not exist"),
    ],
)
def test_bad_audio_input_is_named(fsdd, tmp_path, capsys, name, content, message):
    (tmp_path / name).write_bytes(content)
    assert cli.main(["classify", f"--workdir={fsdd}", f"--input={tmp_path / name}"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and message in error and "\n" not in error
    assert name in error


def test_missing_tarball_names_the_config_key(tmp_path):
    config = rep.experiment_config("experiments/configs/hmm_fsdd.py", "tiny")
    config.data.fsdd_path = str(tmp_path / "nowhere.tar.gz")
    with pytest.raises(FileNotFoundError, match=r"config\.data\.fsdd_path"):
        hx.load_fsdd(config)
    with pytest.raises(ValueError, match="unknown variant"):
        rep.experiment_config("experiments/configs/hmm_fsdd.py", "huge")


@pytest.mark.parametrize("name", ["hmm_casino", "fsdd_digits"])
def test_replication_modules(name):
    replication, module = rep.load(name)
    assert replication.experiment == "hmm"
    for schedule in rep.SCHEDULES:
        config = module.get_config(schedule)
        assert config.task in hx.TASKS
    with pytest.raises(ValueError, match="schedule"):
        module.get_config("medium")
