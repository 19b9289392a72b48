"""experiments/lda.py: the bars replication's tiny schedule end to end as a process (summary,
match scores, PNG), the tiny real-text run in process (perplexity per K, top words, PNG, a
model per K), fits on the loop that resume bitwise, a finished workdir used by the command
line (sample, score, classify), the held-out estimator against its definition, the
topic-matching order, bad input naming the config key, and the replication module."""

import json
import math
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from genjax_lab import cli, saving
from genjax_lab.core import replication as rep
from genjax_lab.data import synthetic, text
from genjax_lab.models import lda
from tests.helpers import REPO, assert_ok, process_env, shared_data

lx = rep.load_module("experiments/lda.py")  # a script: its functions


def _png(path: pathlib.Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()  # decodes every pixel
        return image.size


def test_bars_tiny_replication_end_to_end(tmp_path):
    workdir = tmp_path / "run"
    command = [
        sys.executable,
        str(REPO / "experiments" / "lda.py"),
        f"--config={REPO}/experiments/replications/lda_bars.py:tiny",
        f"--workdir={workdir}",
    ]
    result = subprocess.run(
        command,
        check=False,
        env=process_env(tmp_path / "tfds"),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert_ok(result)
    summary = json.loads((workdir / "summary.json").read_text())
    replication, _ = rep.load("lda_bars")
    for row in replication.rows:
        assert isinstance(summary[row.metric], float)
    for record in rep.check(replication, {"main": summary}, "tiny"):
        assert record["status"] in ("pass", "unchecked"), record
    # Uniform topics score sqrt(5/25) = 0.45, one merged pair about 0.9: both fits found the bars.
    assert summary["gibbs_match_score"] >= 0.95
    assert summary["vb_match_score"] >= 0.85
    # Completion perplexity cannot beat the true topics by much; 25 (uniform over pixels) is
    # the ceiling.
    floor = summary["true_topics_completion_perplexity"]
    for key in ("vb_completion_perplexity", "gibbs_completion_perplexity"):
        assert 0.98 * floor < summary[key] < 25.0, key
    assert summary["num_docs"] == 400 and summary["wall_seconds"] > 0
    width, height = _png(workdir / "bars_topics.png")
    assert width > 500 and height > 150  # 3 rows of 10 grids


def test_corpus_tiny_in_process(tmp_path):
    config = rep.experiment_config("experiments/configs/lda_corpus.py", "tiny")
    config.data.path = str(shared_data("text/lee_background.cor"))
    lx.main(config, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["num_train_docs"] == 96 and summary["num_heldout_docs"] == 24
    for k in (3, 6):
        assert math.isfinite(summary[f"heldout_perplexity_k{k}"])
        # Topics help on the completion half even after 8 passes on 96 documents.
        assert summary[f"completion_perplexity_k{k}"] < summary["unigram_completion_perplexity"]
    assert summary["best_num_topics_by_completion"] in (3.0, 6.0)
    words = (tmp_path / "top_words.txt").read_text().splitlines()
    assert words[1] == "K = 3" and "K = 6" in words and len(words) == 1 + (1 + 3) + (1 + 6)
    assert len(words[2].split(":")[1].split()) == config.num_top_words
    _png(tmp_path / "perplexity_vs_topics.png")
    # Every K's fit is a model, and the workdir's own is the best K's.
    best = int(summary["best_num_topics_by_completion"])
    assert saving.load(tmp_path).meta["num_topics"] == best
    for k in (3, 6):
        model = saving.load(tmp_path / f"k{k}")
        assert model.params.lam.shape == (k, summary["vocab_size"])
        assert model.meta["input"]["vocabulary"][0] in words[2]  # the commonest word


def _tiny_bars():
    """Bars in seconds: 120 documents of 30 words, 2 VB starts x 6 passes, 6 Gibbs sweeps,
    checkpoints every 2 iterations."""
    config = rep.experiment_config("experiments/configs/lda_bars.py", "tiny")
    config.data.update({"num_docs": 120, "doc_length": 30, "heldout_docs": 20})
    config.vb.update({"num_iters": 6, "num_restarts": 2})
    config.gibbs.num_iters = 6
    config.checkpoint.every = 2
    return config


@pytest.fixture(scope="module")
def finished_bars(tmp_path_factory) -> pathlib.Path:
    workdir = tmp_path_factory.mktemp("bars")
    lx.main(_tiny_bars(), workdir)
    return workdir


def _run_record(workdir: pathlib.Path) -> dict:
    """What a relaunch must leave alone: each fit's checkpoints and logged metrics, the
    summary without its times, the model's parameters."""
    summary = json.loads((workdir / "summary.json").read_text())
    return {
        "fits": {
            fit: (
                sorted(p.name for p in (workdir / fit / "checkpoints").iterdir()),
                (workdir / fit / "metrics.jsonl").read_text(),
            )
            for fit in ("vb", "gibbs")
        },
        "summary": {k: v for k, v in summary.items() if "seconds" not in k},
        "params": [np.asarray(x) for x in jax.tree.leaves(saving.load(workdir).params)],
    }


def test_bars_fits_resume_bitwise_and_a_finished_run_trains_nothing(finished_bars, tmp_path):
    """Both fits stopped early (VB at pass 3 of 6, Gibbs at sweep 4 of 6) and relaunched to
    the end give the uninterrupted run's numbers bitwise; relaunching a finished run trains
    nothing and writes the same numbers."""
    whole = _run_record(finished_bars)
    short = _tiny_bars()
    short.vb.num_iters, short.gibbs.num_iters = 3, 4
    lx.main(short, tmp_path)
    lx.main(_tiny_bars(), tmp_path)
    resumed = _run_record(tmp_path)
    assert resumed["summary"] == whole["summary"]
    for a, b in zip(resumed["params"], whole["params"]):
        np.testing.assert_array_equal(a, b)
    lx.main(_tiny_bars(), finished_bars)
    again = _run_record(finished_bars)
    assert again["fits"] == whole["fits"] and again["summary"] == whole["summary"]
    for a, b in zip(again["params"], whole["params"]):
        np.testing.assert_array_equal(a, b)


def _word_counts(line: str) -> dict[str, int]:
    """A sampled document as the command line prints it: 'word' or 'wordxCOUNT' tokens."""
    counts = {}
    for token in line.split():
        word, _, count = token.partition("x")
        counts[word] = int(count or 1)
    return counts


def test_a_finished_bars_run_is_a_model_for_the_command_line(finished_bars, tmp_path, capsys):
    """sample prints documents of pixel words; score prints each document's ELBO (the lower
    bound, out-of-vocabulary words dropped); classify names the family."""
    workdir = f"--workdir={finished_bars}"
    assert cli.main(["sample", workdir, "--num=3", "--seed=1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    for line in lines:
        counts = _word_counts(line)
        assert set(counts) <= set(lx.PIXEL_WORDS) and sum(counts.values()) == 30
    documents = ["af ag ah aj ak", "af bf cf df ef", "af bg ch dj ek", "hello af af"]
    path = tmp_path / "documents.txt"
    path.write_text("\n".join(documents) + "\n")
    assert cli.main(["score", workdir, f"--input={path}"]) == 0
    header, *rows = capsys.readouterr().out.strip().splitlines()
    assert header == "# log p(x) in nats (lower bound)" and len(rows) == 4
    printed = np.array([float(row.split("\t")[1]) for row in rows])
    model = saving.load(finished_bars)
    vocabulary = text.Vocabulary(lx.PIXEL_WORDS)
    bags = text.bag_of_words([text.tokenize(d) for d in documents], vocabulary)
    expected = np.asarray(lda.log_prob_bound(None, model.params, bags))
    np.testing.assert_allclose(printed, expected, atol=1e-3)
    assert printed[3] > max(printed[:3])  # 2 words cost less than 5
    assert cli.main(["classify", workdir, f"--input={path}"]) == 2
    error = capsys.readouterr().err
    assert "lda" in error and "cannot classify" in error


def test_heldout_perplexity_is_the_document_bound():
    """Against the per-document bound by definition: the ELBO with the topic term removed."""
    rng = np.random.default_rng(0)
    bags = text.bag_of_ids([rng.integers(0, 25, rng.integers(1, 30)) for _ in range(20)])
    model = lda.LDAConfig(10, 25, alpha=1.0, eta=0.1)
    state = lda.init_vb(jax.random.key(1), model)
    docs = lda.elbo(state, bags, model) - float(lx._topic_bound(state.lam, state.eta))
    assert lx.heldout_perplexity(state, bags, model) == pytest.approx(
        math.exp(-docs / bags.counts.sum()), rel=1e-6
    )
    # The topic term is negative (a KL), so scikit-learn's estimator is the larger.
    assert lx.heldout_perplexity(state, bags, model) < lda.perplexity(state, bags, model)


def test_matched_order_undoes_a_permutation():
    truth = synthetic.bars_topics()
    perm = np.random.default_rng(0).permutation(10)
    np.testing.assert_array_equal(perm[lx.matched_order(truth, truth[perm])], np.arange(10))


def test_bad_input_names_the_config_key(tmp_path):
    config = rep.experiment_config("experiments/configs/lda_corpus.py", "tiny")
    config.data.path = str(tmp_path / "nowhere.cor")
    with pytest.raises(FileNotFoundError, match=r"config\.data\.path"):
        lx.load_corpus(config)
    config = rep.experiment_config("experiments/configs/lda_bars.py", "tiny")
    config.kind = "poems"
    with pytest.raises(ValueError, match=r"config\.kind"):
        lx.main(config, tmp_path)
    with pytest.raises(ValueError, match="unknown variant"):
        rep.experiment_config("experiments/configs/lda_bars.py", "huge")


def test_replication_module():
    replication, module = rep.load("lda_bars")
    assert replication.experiment == "lda" and len(replication.rows) == 2
    assert all(row.published == 1.0 and row.better == "higher" for row in replication.rows)
    assert replication.rows[0].passes(0.96, "quick") and not replication.rows[0].passes(
        0.94, "quick"
    )
    configs = {s: module.get_config(s) for s in rep.SCHEDULES}
    assert all(c.kind == "bars" for c in configs.values())
    assert configs["quick"].data.num_docs == 2000 and configs["quick"].data.doc_length == 100
    assert configs["full"].gibbs.num_iters > configs["quick"].gibbs.num_iters
    with pytest.raises(ValueError, match="schedule"):
        module.get_config("medium")
