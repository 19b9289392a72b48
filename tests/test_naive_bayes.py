"""Naive Bayes against scikit-learn (float64), streamed and sharded statistics, missing
features against refits on the observed features, sampling moments and bad input; the loop
family's counting epoch against the closed-form fit."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from scipy.special import gammaln, logsumexp
from sklearn import naive_bayes as sk

from genjax_lab.core import data as data_lib
from genjax_lab.core import loop
from genjax_lab.models import naive_bayes as nb

C = 3


def _data(kind: str, n: int = 240, d: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, n)
    if kind == "gaussian":
        x = rng.normal(size=(n, d)) * (1 + np.arange(d)) + y[:, None] * 2.0
    else:
        x = rng.poisson(1.0 + y[:, None] + np.arange(d) % 3, size=(n, d)).astype(float)
    return x, y


REFERENCES = {
    "gaussian": lambda: sk.GaussianNB(var_smoothing=1e-3),
    "multinomial": lambda: sk.MultinomialNB(alpha=0.5),
    "bernoulli": lambda: sk.BernoulliNB(alpha=0.5, binarize=1.0),
    "categorical": lambda: sk.CategoricalNB(alpha=0.5),
}
SMOOTHING = {"gaussian": 1e-3, "multinomial": 0.5, "bernoulli": 0.5, "categorical": 0.5}


def _config(kind: str = "gaussian", **fields):
    config = nb.default_config()
    config.update({"kind": kind, "num_classes": C, **fields})
    return config


def _params(x, y, config):
    return nb.fit(jax.random.key(0), {"x": x, "y": y}, config)[0]


def _smoothed(kind: str, **fields):
    """The config of REFERENCES[kind]."""
    smoothing = {"var_smoothing" if kind == "gaussian" else "alpha": SMOOTHING[kind]}
    return _config(kind, binarize=1.0, **smoothing, **fields)


def _fit(kind, x, y, **fields):
    return _params(x, y, _smoothed(kind, **fields))


@pytest.mark.parametrize("kind", nb.KINDS)
def test_matches_sklearn(kind):
    x, y = _data(kind)
    with jax.enable_x64(True):
        params = _fit(kind, x, y)
        classifier = nb.classifier(params)
        ref = REFERENCES[kind]().fit(x, y)
        np.testing.assert_allclose(
            classifier.predict_log_proba(x), ref.predict_log_proba(x), rtol=1e-9, atol=1e-9
        )
        np.testing.assert_allclose(classifier.predict_proba(x), ref.predict_proba(x), atol=1e-12)
        np.testing.assert_array_equal(classifier.predict(x), ref.predict(x))
        np.testing.assert_allclose(
            params.log_prior,
            ref.class_log_prior_ if kind != "gaussian" else np.log(ref.class_prior_),
            rtol=1e-12,
        )
        if kind == "gaussian":  # epsilon = var_smoothing * max variance of ALL data, as sklearn
            np.testing.assert_allclose(params.var, ref.var_, rtol=1e-10)
            np.testing.assert_allclose(params.mean, ref.theta_, rtol=1e-10)
        if kind != "gaussian":
            np.testing.assert_allclose(
                classifier.log_joint(x), ref.predict_joint_log_proba(x), rtol=1e-10
            )


def test_fixed_and_uniform_priors_match_sklearn():
    x, y = _data("multinomial")
    with jax.enable_x64(True):
        prior = np.array([0.2, 0.3, 0.5])
        cases = (
            (_config("multinomial", class_prior=tuple(prior)), sk.MultinomialNB(class_prior=prior)),
            (_config("bernoulli", fit_prior=False), sk.BernoulliNB(fit_prior=False)),
            (_config("gaussian", class_prior=tuple(prior)), sk.GaussianNB(priors=prior)),
        )
        for config, reference in cases:
            np.testing.assert_allclose(
                nb.classifier(_params(x, y, config)).predict_log_proba(x),
                reference.fit(x, y).predict_log_proba(x),
                rtol=1e-9,
            )


@pytest.mark.parametrize("kind", nb.KINDS)
def test_streamed_and_sharded_statistics_equal_one_shot(kind):
    x, y = _data(kind, n=240)
    x, y = x.astype(np.float32), y.astype(np.int32)
    kw = {"binarize": 1.0, "num_categories": int(x.max()) + 1}
    whole = nb.sufficient_statistics(x, y, None, C, kind, **kw)
    # Streamed: three batches, the last padded with garbage rows that the mask removes.
    batches = [(x[:100], y[:100], np.ones(100)), (x[100:200], y[100:200], np.ones(100))]
    pad_x = np.concatenate([x[200:], np.full((8, x.shape[1]), 7.0)])
    pad_y = np.concatenate([y[200:], np.zeros(8, np.int32)])
    batches.append((pad_x, pad_y, np.concatenate([np.ones(40), np.zeros(8)])))
    streamed = None
    for bx, by, bm in batches:
        stats = nb.sufficient_statistics(bx, by, bm.astype(np.float32), C, kind, **kw)
        streamed = stats if streamed is None else nb.add_statistics(streamed, stats)
    # Sharded: 8 devices, sums reduced inside jit.
    mesh = jax.make_mesh((8,), ("data",))
    sharding = NamedSharding(mesh, P("data"))
    xs, ys, ms = (jax.device_put(a, sharding) for a in (x, y, np.ones(240, np.float32)))
    sharded = jax.jit(
        nb.sufficient_statistics,
        static_argnums=(3, 4),
        static_argnames=("binarize", "num_categories"),
    )(xs, ys, ms, C, kind, **kw)
    assert len(jax.devices()) == 8 and len(xs.sharding.device_set) == 8
    for other in (streamed, sharded):
        for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(other)):
            np.testing.assert_allclose(a, b, rtol=2e-6)
    p1, p2 = (nb.from_statistics(stats, _smoothed(kind)) for stats in (whole, sharded))
    np.testing.assert_allclose(
        nb.classifier(p1).predict_log_proba(x),
        nb.classifier(p2).predict_log_proba(x),
        rtol=1e-5,
        atol=1e-4,
    )


@pytest.mark.parametrize("kind", nb.KINDS)
def test_missing_features_equal_refit_on_observed(kind):
    x, y = _data(kind, d=6)
    keep = np.array([0, 2, 3, 5])  # feature 5 has the largest variance: Gaussian epsilon unchanged
    x_test, _ = _data(kind, n=30, d=6, seed=1)
    with jax.enable_x64(True):
        full = _fit(kind, x, y)
        refit = _fit(kind, x[:, keep], y)
        observed = np.zeros(x_test.shape, bool)
        observed[:, keep] = True
        y_test = np.arange(len(x_test)) % C
        for labels in (None, y_test):  # log p(x_observed | y) and the marginal log p(x_observed)
            np.testing.assert_allclose(
                nb.log_prob(full, x_test, labels, observed=observed),
                nb.log_prob(refit, x_test[:, keep], labels),
                rtol=1e-9,
                atol=1e-10,
            )
        # NaN marks missing entries too, and the classifier takes them so.
        nan_x = np.where(observed, x_test, np.nan)
        np.testing.assert_allclose(
            nb.log_prob(full, nan_x), nb.log_prob(refit, x_test[:, keep]), rtol=1e-9, atol=1e-10
        )
        np.testing.assert_allclose(
            nb.classifier(full).predict_log_proba(nan_x),
            nb.classifier(refit).predict_log_proba(x_test[:, keep]),
            rtol=1e-9,
            atol=1e-10,
        )


@pytest.mark.parametrize("kind", nb.KINDS)
def test_log_prob_is_the_exact_density_and_its_marginal(kind):
    """log p(x | y) from scikit-learn's joint log-likelihood (less the log prior; plus the
    multinomial coefficient, which scikit-learn drops), and log p(x) its logsumexp over y;
    for discrete x, p(x) sums to 1 over every x (issue #21)."""
    x, y = _data(kind)
    with jax.enable_x64(True):
        params = _fit(kind, x, y)
        joint = REFERENCES[kind]().fit(x, y).predict_joint_log_proba(x)
        if kind == "multinomial":
            joint = joint + (gammaln(x.sum(1) + 1) - gammaln(x + 1).sum(1))[:, None]
        labels = np.arange(len(x)) % C
        np.testing.assert_allclose(
            nb.log_prob(params, x, labels),
            joint[np.arange(len(x)), labels] - params.log_prior[labels],
            rtol=1e-10,
        )
        np.testing.assert_allclose(nb.log_prob(params, x), logsumexp(joint, axis=1), rtol=1e-10)
        if kind == "gaussian":
            return
        # Every x of 2 features: categories 0..3, the 4 binary patterns (binarized at 1), every
        # count vector of total 4.
        grid = {
            "categorical": list(itertools.product(range(4), repeat=2)),
            "bernoulli": list(itertools.product((0, 2), repeat=2)),
            "multinomial": [[a, 4 - a] for a in range(5)],
        }[kind]
        grid = np.array(grid, float)
        params = _fit(kind, np.minimum(x[:, :2], 3), y)
        np.testing.assert_allclose(logsumexp(nb.log_prob(params, grid)), 0.0, atol=1e-12)
        np.testing.assert_allclose(
            logsumexp(nb.log_prob(params, grid, np.zeros(len(grid), int))), 0.0, atol=1e-12
        )


def test_sampling_moments():
    key = jax.random.key(0)
    params = nb.GaussianNB(
        jnp.log(jnp.array([0.25, 0.75])),
        jnp.array([[0.0, 5.0], [-3.0, 1.0]]),
        jnp.array([[1.0, 4.0], [0.25, 9.0]]),
    )
    x, y = nb.sample_with_labels(key, params, 40_000)
    np.testing.assert_array_equal(nb.sample(key, params, 40_000), x)
    assert abs(float(jnp.mean(y)) - 0.75) < 0.01
    for c in range(2):
        np.testing.assert_allclose(x[y == c].mean(0), params.mean[c], atol=0.06)
        np.testing.assert_allclose(x[y == c].var(0), params.var[c], rtol=0.05)
    bern = nb.BernoulliNB(
        jnp.zeros(1), jnp.log(jnp.array([[0.2, 0.9]])), jnp.log(jnp.array([[0.8, 0.1]]))
    )
    np.testing.assert_allclose(
        nb.sample(key, bern, 20_000, y=jnp.zeros(20_000, int)).mean(0), [0.2, 0.9], atol=0.01
    )
    multi = nb.MultinomialNB(jnp.zeros(1), jnp.log(jnp.array([[0.5, 0.3, 0.2]])))
    counts = nb.sample(key, multi, 5_000, y=jnp.zeros(5_000, int), total_count=10)
    np.testing.assert_allclose(counts.sum(1), 10)
    np.testing.assert_allclose(counts.mean(0), [5.0, 3.0, 2.0], atol=0.1)
    cat = _params(
        np.array([[0, 2], [1, 2], [1, 0]]),
        np.zeros(3, int),
        _config("categorical", num_classes=1, alpha=1e-6),
    )
    draws = nb.sample(key, cat, 20_000, y=jnp.zeros(20_000, int))
    np.testing.assert_allclose((draws[:, 0] == 1).mean(), 2 / 3, atol=0.01)
    np.testing.assert_allclose((draws[:, 1] == 2).mean(), 2 / 3, atol=0.01)
    assert int(draws[:, 1].max()) <= 2


def test_bad_input_is_refused_with_the_argument_named():
    x, y = _data("gaussian")
    with pytest.raises(ValueError, match="x must be finite"):
        _params(np.where(np.arange(x.size).reshape(x.shape) == 7, np.nan, x), y, _config())
    with pytest.raises(ValueError, match="y must be class indices"):
        _params(x, y + 1, _config())
    absent = np.where(y == 2, 0, y)
    with pytest.raises(ValueError, match="no examples of class 2"):
        _params(x, absent, _config())
    with pytest.raises(ValueError, match="variance 0"):
        _params(np.ones((10, 2)), np.zeros(10, int), _config(num_classes=1, var_smoothing=0.0))
    xc, yc = _data("multinomial")
    with pytest.raises(ValueError, match="non-negative"):
        _params(-xc, yc, _config("multinomial"))
    with pytest.raises(ValueError, match="config.alpha"):
        _params(xc, yc, _config("multinomial", alpha=0.0))
    cat = _params(xc, yc, _config("categorical"))
    with pytest.raises(ValueError, match="is not a category of feature"):
        nb.classifier(cat).predict(xc + 100)
    with pytest.raises(ValueError, match="is not a category of feature"):
        nb.log_prob(cat, xc + 100)
    with pytest.raises(ValueError, match="config.class_prior"):
        _params(xc, yc, _config("multinomial", class_prior=(0.5, 0.5, 0.5)))
    with pytest.raises(ValueError, match="init"):
        nb.fit(jax.random.key(0), {"x": xc, "y": yc}, _config("multinomial"), init=cat)
    with pytest.raises(ValueError, match="y must be class indices"):
        nb.log_prob(cat, xc, yc + C)
    with pytest.raises(ValueError, match="total_count"):
        nb.sample(jax.random.key(0), _params(xc, yc, _config("multinomial")), 3)


def test_absent_class_in_discrete_model_is_never_predicted_and_gives_no_nan():
    x, y = _data("multinomial")
    absent = np.where(y == 2, 0, y)
    classifier = nb.classifier(_params(x, absent, _config("multinomial")))
    log_proba = np.asarray(classifier.predict_log_proba(x))
    assert not np.any(np.isnan(log_proba)) and np.all(log_proba[:, 2] == -np.inf)
    assert not np.any(np.asarray(classifier.predict(x)) == 2)


def test_mnist_gaussian_and_bernoulli_accuracy_match_sklearn():
    from genjax_lab.data.idx import load_mnist_split
    from tests.helpers import shared_data

    images, labels = load_mnist_split(shared_data("mnist"), "test")
    x = images.reshape(len(images), -1)[:4000].astype(np.float32)
    y, x_test = labels[:4000], images.reshape(len(images), -1)[4000:6000].astype(np.float32)
    y_test = labels[4000:6000]
    for kind, ref in (("bernoulli", sk.BernoulliNB(binarize=127.0)), ("gaussian", sk.GaussianNB())):
        params = _params(x, y, _config(kind, num_classes=10, binarize=127.0))
        ours = np.asarray(nb.classifier(params).predict(x_test))
        theirs = ref.fit(x, y).predict(x_test)
        assert np.mean(ours == theirs) > 0.995, kind
        assert abs(np.mean(ours == y_test) - np.mean(theirs == y_test)) < 0.005


def _offset_data(n: int = 600, d: int = 5, seed: int = 3):
    """Features whose mean (1e3) is large against their spread (sd 0.05), one class tighter
    still (sd 1e-3): raw moments E[x^2] - E[x]^2 cancel nearly every digit here. (Tighter
    still and float64 itself, spacing 1e-13 at 1e3, holds the deviations to fewer than 10
    digits, so no two correct estimates agree to 1e-9.)"""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, n)
    sd = np.where(y == 2, 1e-3, 0.05)[:, None]
    x = 1e3 + 0.3 * y[:, None] + sd * rng.normal(size=(n, d))
    return x, y


def test_gaussian_moments_match_sklearn_when_the_mean_dwarfs_the_spread():
    x, y = _offset_data()
    with jax.enable_x64(True):
        params = _params(x, y, _config())
        ref = sk.GaussianNB().fit(x, y)
        np.testing.assert_allclose(params.mean, ref.theta_, rtol=1e-12)
        np.testing.assert_allclose(params.var, ref.var_, rtol=1e-9)
        np.testing.assert_allclose(
            nb.classifier(params).log_joint(x), ref.predict_joint_log_proba(x), rtol=1e-9, atol=1e-9
        )


def test_gaussian_moments_in_float32_stay_near_float64():
    x, y = _offset_data()
    x32 = x.astype(np.float32)
    ref = sk.GaussianNB().fit(x32.astype(np.float64), y)  # the same inputs, in float64
    params = _params(x32, y, _config())
    assert params.var.dtype == np.float32
    # The means to float32's spacing at 1e3 (6e-5); the variances (down to 1e-6) as if there
    # were no offset at all.
    np.testing.assert_allclose(params.mean, ref.theta_, rtol=0, atol=1.2e-4)
    np.testing.assert_allclose(params.var, ref.var_, rtol=1e-5)
    # Scoring adds only float32 rounding of its own terms. (Against scikit-learn's log joint
    # the means' spacing alone moves a point 0.6 from a class of sd 1e-3 by tens of nats.)
    mean, var = np.float64(params.mean), np.float64(params.var)
    quad = ((np.float64(x32)[:, None, :] - mean) ** 2 / var).sum(2)
    expected = np.float64(params.log_prior) - 0.5 * (quad + np.log(2 * np.pi * var).sum(1))
    classifier = nb.classifier(params)
    np.testing.assert_allclose(classifier.log_joint(x32), expected, rtol=1e-5)
    np.testing.assert_array_equal(classifier.predict(x32), ref.predict(x32.astype(np.float64)))


def test_gaussian_split_and_sharded_fits_equal_the_one_shot_fit():
    x, y = _offset_data(n=720)
    with jax.enable_x64(True):
        whole = _params(x, y, _config())
        # Streamed: uneven batches combined pairwise, the last padded with garbage rows.
        parts = []
        for lo, hi in itertools.pairwise([0, 50, 333, 720]):
            bx, by, bm = x[lo:hi], y[lo:hi], np.ones(hi - lo)
            if hi == 720:
                bx = np.concatenate([bx, np.full((9, x.shape[1]), -5e4)])
                by, bm = np.concatenate([by, np.full(9, 1)]), np.concatenate([bm, np.zeros(9)])
            parts.append(nb.sufficient_statistics(bx, by, bm, C, "gaussian"))
        streamed = nb.from_statistics(
            nb.add_statistics(nb.add_statistics(*parts[:2]), parts[2]), _config()
        )
        # Sharded: 8 devices, the moments reduced inside jit.
        mesh = jax.make_mesh((8,), ("data",))
        put = lambda a: jax.device_put(a, NamedSharding(mesh, P("data")))
        sharded_stats = jax.jit(nb.sufficient_statistics, static_argnums=(3, 4))(
            put(x), put(y), put(np.ones(720)), C, "gaussian"
        )
        sharded = nb.from_statistics(sharded_stats, _config())
        ref = sk.GaussianNB().fit(x, y).predict_joint_log_proba(x)
        for params in (whole, streamed, sharded):
            np.testing.assert_allclose(params.var, whole.var, rtol=1e-9)
            np.testing.assert_allclose(
                nb.classifier(params).log_joint(x), ref, rtol=1e-9, atol=1e-9
            )


@pytest.mark.parametrize("kind", nb.KINDS)
def test_init_has_the_structure_of_a_fit_so_a_saved_model_loads(kind, tmp_path):
    """saving.load rebuilds the parameters from init under eval_shape: tree, shapes and dtypes
    (and Bernoulli's static threshold) must be a fit's."""
    from genjax_lab import saving

    x, y = _data(kind)
    config = _smoothed(kind)
    data = {"x": x.astype(np.float32), "y": y.astype(np.int32)}
    params, _ = nb.fit(jax.random.key(0), data, config)
    meta = nb.meta_from_data(data, config)
    abstract = jax.eval_shape(lambda key: nb.init(key, config, meta), jax.random.key(0))
    assert jax.tree.structure(abstract) == jax.tree.structure(params)
    for shape, leaf in zip(jax.tree.leaves(abstract), jax.tree.leaves(params), strict=True):
        assert (shape.shape, shape.dtype) == (leaf.shape, leaf.dtype)
    if kind == "bernoulli":
        saving.save(tmp_path, "naive_bayes", config, meta, params)
        loaded = saving.load(tmp_path)
        np.testing.assert_array_equal(loaded.log_prob(data["x"]), nb.log_prob(params, data["x"]))


@pytest.mark.parametrize("kind", nb.KINDS)
def test_the_loop_counting_epoch_is_the_closed_form_fit(kind, tmp_path):
    """One epoch of 40-row minibatches on the loop (shuffled, the last one padded and
    masked, sharded over 8 devices), the statistics summed in the state, gives the library
    fit's parameters: counts exactly, Gaussian moments to float rounding; its evaluation is
    the fitted model's mean log p(x) and accuracy."""
    x, y = _data(kind, n=203)
    x, y = x.astype(np.float32), y.astype(np.int32)
    config = _smoothed(kind)
    meta = nb.meta_from_data({"x": x, "y": y}, config)
    run = nb.loop_config(config, batch_size=40)
    dataset = data_lib.Dataset({"train": {"x": x, "y": y}, "test": {"x": x[:50], "y": y[:50]}})
    result = loop.train_and_evaluate(run, tmp_path, nb.loop_family(config, meta), dataset)
    assert result.step == 6 and result.metrics["train_examples"] == 203
    ours = nb.from_statistics(result.state, config)
    expected = _params(x, y, config)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(expected)):
        if kind == "gaussian":
            np.testing.assert_allclose(a, b, rtol=1e-6)
        else:
            np.testing.assert_array_equal(a, b)
    assert result.metrics["log_prob"] == pytest.approx(
        float(np.mean(nb.log_prob(expected, x[:50]))), rel=1e-5
    )
    accuracy = np.mean(np.asarray(nb.classifier(expected).predict(x[:50])) == y[:50])
    assert result.metrics["accuracy"] == pytest.approx(accuracy)
