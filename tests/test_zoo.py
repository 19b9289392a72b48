"""The zoo (experiments/zoo.py): every likelihood in nats per image on one test set, the exact
ones against float64 NumPy, bounds below estimates, and the rows, figures and report."""

import json
import math

import jax
import numpy as np
import pytest
from scipy.special import logsumexp

from experiments import zoo
from experiments.configs import zoo as zoo_configs
from genjax_lab import report_zoo
from genjax_lab.core import config as config_lib
from genjax_lab.models import hmm, naive_bayes


def _small_config():
    """The tiny schedule cut to seconds a member: fewer steps, epochs and samples."""
    config = zoo_configs.get_config("tiny")
    config.data.max_examples = 400
    config.data.max_test = 120
    config.mixture.update(num_components=2, num_iters=10)
    config.hmm.update(num_states=3, num_iters=5)
    config.lda.update(num_topics=5, num_iters=5)
    config.rbm.update(num_epochs=2.0, ais_temperatures=300, inpaint_sweeps=20)
    config.vae.update(num_steps=60, iwae_samples=10, nll_samples=50)
    config.cvae.update(num_steps=60, iwae_samples=10, nll_samples=50, classify_samples=5)
    config.gan.update(num_steps=30, parzen_samples=200, parzen_validation=50)
    config.mlp.update(num_steps=30)
    config.curve.update(sizes=(5,), num_seeds=1, families=("naive_bayes", "logistic"))
    config.figures.update(num_samples=6, num_inpaint=3)
    return config


@pytest.fixture(scope="module")
def config():
    return _small_config()


@pytest.fixture(scope="module")
def data(config):
    return zoo.load_data(config.data, None)


@pytest.fixture(scope="module")
def rows(config, data, tmp_path_factory):
    """The exact members, the RBM and the VAE, and a baseline, run once for the module (LDA,
    the DBM and the GANs, slower to compile, run in the slow whole-zoo test)."""
    workdir = tmp_path_factory.mktemp("zoo")
    config.members = ("naive_bayes", "mixture", "hmm", "rbm", "vae", "logistic")
    np.save(workdir / "truth.npy", data.test_x[: config.figures.num_inpaint].astype(np.float32))
    rows = {name: zoo.run_member(name, config, data, workdir) for name in config.members}
    return workdir, rows


def _bernoulli_log_prob(log_prior, probs, x):
    """float64 NumPy oracle: log sum_c pi_c prod_d p_cd^x_d (1 - p_cd)^(1 - x_d), [B]."""
    x, probs = np.asarray(x, np.float64), np.asarray(probs, np.float64)
    per_class = x @ np.log(probs).T + (1 - x) @ np.log1p(-probs).T
    return logsumexp(per_class + np.asarray(log_prior, np.float64), axis=1)


def _hmm_forward(initial, transition, emission, codes):
    """float64 NumPy forward algorithm: log p(codes) of one HMM, [B]."""
    out = []
    for sequence in codes:
        alpha = initial * emission[:, sequence[0]]
        total = 0.0
        for symbol in sequence[1:]:
            scale = alpha.sum()
            total += math.log(scale)
            alpha = (alpha / scale) @ transition * emission[:, symbol]
        out.append(total + math.log(alpha.sum()))
    return np.asarray(out)


def test_every_schedule_passes_the_config_checks():
    for schedule in zoo_configs.SCHEDULES:
        config_lib.validate_config(zoo_configs.get_config(schedule))
    with pytest.raises(ValueError, match="unknown schedule 'huge'"):
        zoo_configs.get_config("huge")


def test_data_binarized_at_the_stated_threshold_on_a_fixed_split(config, data):
    from sklearn.datasets import load_digits

    digits = load_digits()
    again = zoo.load_data(config.data, None)
    assert data.fingerprint() == again.fingerprint()  # the same test set on every call
    assert set(np.unique(data.train_x)) == {0, 1}
    assert data.test_x.shape == (120, 8, 8) and data.train_x.shape == (400, 8, 8)
    # every test image is a digit of scikit-learn's, on exactly where its grey value >= 8
    grey = {img.tobytes(): img for img in (digits.images >= 8).astype(np.uint8)}
    assert all(x.tobytes() in grey for x in data.test_x)
    with pytest.raises(ValueError, match="--data_dir"):
        zoo.load_data(zoo_configs.get_config("quick").data, None)
    with pytest.raises(FileNotFoundError, match="--data_dir"):
        zoo.mnist_folder("no/such/folder")


def test_naive_bayes_log_prob_is_exact_in_nats_per_image(data):
    x, test = data.flat("train"), data.flat("test")
    params = zoo.fit_naive_bayes(x, data.train_y, 10, alpha=1.0)
    # the oracle from the counts, not from the fitted parameters
    counts = np.stack([x[data.train_y == c].sum(0) for c in range(10)]).astype(np.float64)
    sizes = np.bincount(data.train_y, minlength=10).astype(np.float64)
    probs = (counts + 1.0) / (sizes[:, None] + 2.0)
    expected = _bernoulli_log_prob(np.log(sizes / sizes.sum()), probs, test[:6])
    np.testing.assert_allclose(naive_bayes.log_prob(params, test[:6]), expected, rtol=1e-5)


def test_mixture_is_exact_and_one_component_is_naive_bayes(data):
    x, test = data.flat("train"), data.flat("test")
    key = jax.random.key(0)
    one = zoo.fit_mixture(key, x, data.train_y, 10, 1, num_iters=3, alpha=1.0)
    nb = zoo.fit_naive_bayes(x, data.train_y, 10, alpha=1.0)
    np.testing.assert_allclose(one.log_prob, nb.log_prob, rtol=1e-5)
    np.testing.assert_allclose(one.log_prior, nb.log_prior, rtol=1e-5)

    three = zoo.fit_mixture(key, x, data.train_y, 10, 3, num_iters=15, alpha=1.0)
    expected = _bernoulli_log_prob(three.log_prior, np.exp(np.float64(three.log_prob)), test[:6])
    np.testing.assert_allclose(naive_bayes.log_prob(three, test[:6]), expected, rtol=1e-5)
    # more components fit the training images better (EM from a start within each class)
    assert naive_bayes.log_prob(three, x).mean() > naive_bayes.log_prob(nb, x).mean() + 1.0
    # Bayes' rule over labels: p(c | x) from log p(x | c) + log p(c) sums to log p(x)
    bayes = zoo.mixture_classifier(three, 10, 3)
    np.testing.assert_allclose(bayes.log_marginal(test[:6]), expected, rtol=1e-5)
    drawn = zoo.mixture_sample(jax.random.key(1), three, 3, np.arange(10))
    assert drawn.shape == (10, 64) and set(np.unique(drawn)) <= {0.0, 1.0}


def test_row_codes_are_a_bijection_of_the_pixels(data):
    codes = zoo.row_codes(data.test_x, 8)
    assert codes.shape == (120, 8) and codes.max() < 256
    np.testing.assert_array_equal(zoo.code_bits(8)[codes].reshape(-1, 8, 8), data.test_x)
    with pytest.raises(ValueError, match="config.hmm.bits=5"):
        zoo.row_codes(data.test_x, 5)


def test_hmm_log_prob_is_the_float64_forward_algorithm(data):
    params = zoo.fit_hmm(jax.random.key(0), data, 8, 3, 5, pseudocount=0.1)
    codes = zoo.row_codes(data.test_x[:4], 8)
    per_class = []
    for c in range(10):
        one = jax.tree.map(lambda leaf, c=c: np.asarray(leaf[c], np.float64), params.hmms)
        emission = np.exp(one.emission.logits - logsumexp(one.emission.logits, 1, keepdims=True))
        per_class.append(
            _hmm_forward(
                np.asarray(hmm.initial_probs(one), np.float64),
                np.asarray(hmm.transition_probs(one), np.float64),
                emission,
                codes,
            )
        )
    expected = logsumexp(np.stack(per_class, 1) + np.float64(params.log_prior), axis=1)
    np.testing.assert_allclose(hmm.log_prob(params, codes), expected, rtol=1e-5)
    assert np.all(np.isfinite(expected))  # the pseudo-count: no unseen row has p = 0


def test_inpainting_is_the_exact_conditional(data):
    """Naive Bayes: P(bottom pixel | top) by the posterior over classes; the HMM: the
    probability of the last row given the rest, against the forward algorithm's ratio."""
    x, test = data.flat("train"), data.flat("test")[:3]
    params = zoo.fit_naive_bayes(x, data.train_y, 10, alpha=1.0)
    top = zoo.bottom_hidden((8, 8))
    filled = zoo.bernoulli_inpaint(params, test, top)
    np.testing.assert_array_equal(filled[:, top], test[:, top])
    probs = np.exp(np.float64(params.log_prob))
    per_class = (
        test[:, top] @ np.log(probs[:, top]).T + (1 - test[:, top]) @ np.log1p(-probs[:, top]).T
    )
    post = np.exp(per_class + np.float64(params.log_prior))
    post /= post.sum(1, keepdims=True)
    np.testing.assert_allclose(filled[:, ~top], post @ probs[:, ~top], rtol=1e-4)

    hmm_params = zoo.fit_hmm(jax.random.key(0), data, 8, 3, 5, pseudocount=0.1)
    codes = zoo.row_codes(data.test_x[:2], 8)
    filled = zoo.hmm_inpaint(hmm_params, codes, 7, 8)  # all rows but the last observed
    # P(last row = v | first 7) = p(first 7, v) / p(first 7), for every v, then its pixels
    candidates = np.repeat(codes[:, None, :], 256, axis=1)
    candidates[:, :, 7] = np.arange(256)
    joint = np.asarray(hmm.log_prob(hmm_params, candidates.reshape(-1, 8))).reshape(2, 256)
    conditional = np.exp(joint - logsumexp(joint, axis=1, keepdims=True))
    np.testing.assert_allclose(filled[:, 56:], conditional @ zoo.code_bits(8), atol=1e-5)


def _check_rows(rows: dict, data, num_test: int) -> None:
    """Every cell a mean over the same test images, in nats per image, its estimator named."""
    for name, row in rows.items():
        assert row["test_set"] == data.fingerprint() and row["test_examples"] == num_test, name
        for cell in row["scores"]:
            assert cell["kind"] in (
                report_zoo.EXACT,
                report_zoo.BOUND,
                report_zoo.ESTIMATE,
                report_zoo.NOT_COMPARABLE,
            )
            assert np.isfinite(cell["value"]) and cell["estimator"], (name, cell)
            if cell["kind"] != report_zoo.NOT_COMPARABLE:
                # per image, not per pixel: tens of nats, near the 64 log 2 = 44 of a coin flip
                assert -2 * 64 * math.log(2) < cell["value"] < -5, (name, cell)
        assert row["scores"] or row["likelihood_note"], name
        assert row["accuracy"] is not None or row["accuracy_note"], name


def test_every_likelihood_is_in_nats_per_image_on_the_same_test_set(rows, data):
    _, rows = rows
    _check_rows(rows, data, 120)
    # the naive Bayes cell is the mean of its float64 exact log p(x) over the test images
    params = zoo.fit_naive_bayes(data.flat("train"), data.train_y, 10, alpha=1.0)
    expected = _bernoulli_log_prob(
        params.log_prior, np.exp(np.float64(params.log_prob)), data.flat("test")
    )
    assert rows["naive_bayes"]["scores"][0]["value"] == pytest.approx(expected.mean(), rel=1e-5)
    assert rows["logistic"]["scores"] == [] and 0.5 < rows["logistic"]["accuracy"] <= 1.0


def test_bounds_sit_below_the_estimates_of_the_same_model(rows):
    _, rows = rows
    elbo, iwae, estimate = (cell["value"] for cell in rows["vae"]["scores"])
    assert elbo < iwae < estimate
    ais, exact = rows["rbm"]["scores"]  # 16 hidden units: log Z enumerated too
    assert ais["kind"] == report_zoo.ESTIMATE and exact["kind"] == report_zoo.EXACT
    # AIS log Z within 4 of its standard errors (and half a nat) of the enumerated one
    assert abs(ais["value"] - exact["value"]) < max(4 * ais["stderr"], 0.5)


def test_finished_members_are_skipped_and_figures_and_report_written(rows, config, data, tmp_path):
    workdir, rows = rows
    path = workdir / "naive_bayes" / zoo.ROW
    marked = {**json.loads(path.read_text()), "model": "read back"}
    path.write_text(json.dumps(marked))
    assert zoo.run_member("naive_bayes", config, data, workdir)["model"] == "read back"
    zoo.check_workdir_data(workdir, data)
    other = zoo.load_data(zoo_configs.get_config("tiny").data, None)
    with pytest.raises(ValueError, match=r"--workdir=.*other data.*another --workdir"):
        zoo.check_workdir_data(workdir, other)
    assert np.load(workdir / "naive_bayes" / "inpaint.npy").shape == (3, 8, 8)

    figures = report_zoo.write_figures(list(rows.values()), workdir, tmp_path / "zoo")
    # the RBM inpaints by clamped Gibbs; the VAE says why it does not
    assert "inpaint" in rows["rbm"]["figures"] and "inpaint" not in rows["vae"]["figures"]
    assert set(figures) == {"samples", "by_label", "inpaint"}
    assert all((tmp_path / "zoo" / name).stat().st_size > 0 for name in figures.values())
    curve = zoo.run_curve(config, data, workdir)
    assert set(curve["errors"]) == {"naive_bayes", "logistic"}
    assert all(0 <= e <= 1 for by in curve["errors"].values() for v in by.values() for e in v)
    assert zoo.run_curve(config, data, workdir)["wall_seconds"] == curve["wall_seconds"]
    facts = {"description": "digits", "test_examples": 120, "fingerprint": data.fingerprint()}
    report = report_zoo.render_report(
        config, facts, list(rows.values()), curve, figures, "zoo", 1.0, zoo.NO_INPAINTING
    )
    for name in rows:
        assert f"| {name} |" in report
    assert "nats per image" in report and "**not comparable**" in report
    assert "schedule **tiny**" in report and "ng_jordan.png" in report
    assert "- vae: " in report  # a member that does not inpaint says why
    assert "p(x \\| y)" in report  # bars inside table cells escaped


def test_crossings_name_where_the_curves_meet():
    record = {
        "all_per_class": 144.0,
        "errors": {
            "naive_bayes": {"5": [0.20, 0.22], "50": [0.12], "0": [0.10]},
            "mixture": {"5": [0.10], "50": [0.05], "0": [0.04]},
            "logistic": {"5": [0.25], "50": [0.10], "0": [0.06]},
        },
    }
    assert report_zoo.crossings(record) == [
        "naive_bayes: lower error than logistic regression at 5 per class; the curves cross "
        "between 5 and 50 per class",
        "mixture: error below logistic regression's at every size",
    ]


@pytest.mark.slow
def test_the_tiny_zoo_runs_and_writes_its_table(tmp_path):
    config = zoo_configs.get_config("tiny")
    data = zoo.load_data(config.data, None)
    report = tmp_path / "zoo.md"
    rows = zoo.run_zoo(config, data, tmp_path / "runs", report)
    assert [row["member"] for row in rows] == list(config.members)
    _check_rows({row["member"]: row for row in rows}, data, 360)
    by_name = {row["member"]: row for row in rows}
    assert by_name["lda"]["scores"][0]["kind"] == report_zoo.NOT_COMPARABLE
    assert by_name["gan"]["scores"][0]["kind"] == report_zoo.NOT_COMPARABLE
    elbo, iwae, estimate = (cell["value"] for cell in by_name["cvae"]["scores"])
    assert elbo < iwae < estimate
    text = report.read_text()
    assert all(f"| {name} |" in text for name in config.members)
    assert (tmp_path / "zoo" / "ng_jordan.png").exists()
