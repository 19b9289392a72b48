"""A finished workdir used as a model: `./launch.sh sample|classify|score` (genjax_lab.cli)."""

import subprocess

import jax
import numpy as np
import pytest
from PIL import Image

from genjax_lab import cli, saving
from genjax_lab.models import boltzmann
from tests.helpers import experiment_command, process_env, shared_data

SPAM = "WINNER!! You have won a FREE prize. Call 09061701461 now to claim your cash award"
HAM = "Hey, are we still meeting for lunch tomorrow? I can bring the notes"


@pytest.fixture(scope="module")
def spam_workdir(tmp_path_factory):
    """The SMS spam filter's finished workdir (the experiment's tiny config)."""
    path = shared_data("text/SMSSpamCollection")
    tmp = tmp_path_factory.mktemp("spam")
    command = experiment_command(
        "naive_bayes", "naive_bayes_spam.py:tiny", tmp / "w", f"--config.data.spam_path={path}"
    )
    result = subprocess.run(
        command,
        env=process_env(tmp / "tfds"),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return tmp / "w"


def test_the_finished_spam_run_classifies_scores_and_samples_messages(
    spam_workdir, tmp_path, capsys
):
    messages = tmp_path / "messages.txt"
    messages.write_text(f"{SPAM}\n{HAM}\n")
    assert cli.main(["classify", f"--workdir={spam_workdir}", f"--input={messages}"]) == 0
    labels = [line.split("\t")[1] for line in capsys.readouterr().out.splitlines()]
    assert labels == ["spam", "ham"]

    assert cli.main(["score", f"--workdir={spam_workdir}", f"--input={messages}"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header == "# log p(x) in nats (exact)"
    model = saving.load(spam_workdir)
    counts, _ = cli.read_input(model, str(messages))
    np.testing.assert_allclose(
        [float(r.split("\t")[1]) for r in rows], model.log_prob(counts), atol=1e-3
    )

    assert cli.main(["sample", f"--workdir={spam_workdir}", "--num=3", "--label=1"]) == 0
    sampled = capsys.readouterr().out.splitlines()
    assert len(sampled) == 3 and all(
        set(line.split()) <= set(model.meta["input"]["vocabulary"]) for line in sampled
    )


@pytest.fixture(scope="module")
def rbm_workdir(tmp_path_factory):
    """A saved 8x8-image RBM (untrained: the command line, not the model, is under test)."""
    config = boltzmann.default_config()
    config.model.num_hidden = 6
    meta = {
        "num_visible": 64,
        "image_shape": [8, 8, 1],
        "input": {"kind": "image", "shape": [8, 8, 1], "layout": "flat", "binarize": "threshold"},
    }
    params = boltzmann.init(jax.random.key(0), config, meta)
    workdir = tmp_path_factory.mktemp("rbm")
    saving.save(workdir, "boltzmann", config, meta, params)
    return workdir


def test_images_are_read_from_npy_and_png_and_scored_exactly(rbm_workdir, tmp_path, capsys):
    pixels = np.random.default_rng(0).integers(0, 256, (3, 8, 8)).astype(np.uint8)
    np.save(tmp_path / "images.npy", pixels)
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, image in enumerate(pixels):
        Image.fromarray(image).save(folder / f"{i}.png")
    scores = []
    for source in (tmp_path / "images.npy", folder):
        assert cli.main(["score", f"--workdir={rbm_workdir}", f"--input={source}"]) == 0
        _, *rows = capsys.readouterr().out.splitlines()
        scores.append([float(row.split("\t")[1]) for row in rows])
    np.testing.assert_allclose(scores[0], scores[1])  # the same pixels either way
    model = saving.load(rbm_workdir)
    binary = (pixels / 255.0 >= 0.5).reshape(3, 64).astype(np.float32)
    np.testing.assert_allclose(scores[0], model.log_prob(binary), atol=1e-3)

    out = tmp_path / "grid.png"
    assert cli.main(["sample", f"--workdir={rbm_workdir}", "--num=4", f"--out={out}"]) == 0
    assert Image.open(out).size[0] > 8


@pytest.mark.parametrize(
    "argv, message",
    [
        (["classify", "--input=x"], "the boltzmann family has no classifier"),
        (["score", "--input=nope.npy"], "--input=nope.npy: no such file or folder"),
        (["score", "--input=x"], "cannot read it as image input"),
        (["sample", "--num=0"], "--num=0: must be at least 1"),
        (["sample", "--label=3"], "--label=3:"),
    ],
)
def test_bad_use_is_one_line_and_exit_2(rbm_workdir, tmp_path, capsys, argv, message):
    (tmp_path / "x").write_text("")
    argv = [
        argv[0],
        f"--workdir={rbm_workdir}",
        *[a.replace("=x", f"={tmp_path / 'x'}") for a in argv[1:]],
    ]
    assert cli.main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and message in error and "\n" not in error


def test_a_workdir_without_a_model_is_named(tmp_path, capsys):
    assert cli.main(["score", f"--workdir={tmp_path}", "--input=x"]) == 2
    assert "no finished model here" in capsys.readouterr().err


@pytest.mark.parametrize(
    "pixels, message",
    [
        (np.where(np.eye(8)[None] > 0, np.inf, 0.5), "8 values are not finite"),
        (np.zeros((0, 8, 8)), "empty, shape (0, 8, 8)"),
        (np.full((2, 8, 8), -0.5), "pixels must lie in [0, 1] or 0..255"),
        (np.full((2, 8, 8), 256.0), "pixels must lie in [0, 1] or 0..255"),
    ],
)
def test_bad_pixels_are_refused_by_name(rbm_workdir, tmp_path, capsys, pixels, message):
    path = tmp_path / "bad.npy"
    np.save(path, pixels)
    assert cli.main(["score", f"--workdir={rbm_workdir}", f"--input={path}"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"error: --input={path}: ") and message in error


def test_a_dark_png_is_read_as_grey_levels_not_as_unit_pixels(rbm_workdir, tmp_path):
    """A PNG whose brightest pixel is 1 of 255 is nearly black, not an image of ones."""
    Image.fromarray(np.ones((8, 8), np.uint8)).save(tmp_path / "dark.png")
    model = saving.load(rbm_workdir)
    pixels, _ = cli.read_input(model, str(tmp_path / "dark.png"))
    np.testing.assert_array_equal(pixels, np.zeros((1, 64), np.float32))


@pytest.mark.parametrize("shape", [(0,), (2, 0)])
def test_empty_symbol_sequences_are_refused_by_name(tmp_path, shape):
    path = tmp_path / "empty.npy"
    np.save(path, np.zeros(shape, np.int32))
    with pytest.raises(cli.UsageError, match=r"--input=.*empty.npy: no symbols"):
        cli._read_symbols(path, {"num_symbols": 6})
