"""Gaussian mixtures against scikit-learn (same start, N EM iterations, float64), EM
monotonicity, streamed / chunked / sharded E-steps, Gaussian conditioning against closed
forms, sampling moments, the unlabelled mixture's shared verbs, the class-conditional
classifier and bad input; the subspace mixture (PCA codes) against float64 conditioning of
its joint Gaussian; the loop family against `em` from the same start."""

import importlib
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from scipy.stats import multivariate_normal
from sklearn.mixture import GaussianMixture

from genjax_lab import saving
from genjax_lab.core import data as data_lib
from genjax_lab.core import loop
from genjax_lab.inference import kmeans
from genjax_lab.models import gmm

K, D = 3, 3


def _config(**fields):
    config = gmm.default_config()
    config.update(fields)
    return config


def _data(n: int = 300, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mixing = np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 0.5]])
    parts = [
        rng.normal(size=(n // 3, D)) @ mixing + 4,
        rng.normal(size=(n // 3, D)) * 0.5 - 2,
        rng.normal(size=(n - 2 * (n // 3), D)) * [1.0, 3.0, 0.2],
    ]
    return np.concatenate(parts)


def _start(x, covariance_type):
    """A deliberately rough start (so EM has work to do) in scikit-learn's *_init layout."""
    rng = np.random.default_rng(1)
    means = x[rng.choice(len(x), K, replace=False)]
    cov = {
        "full": np.stack([np.eye(D) * (1 + k) for k in range(K)]),
        "tied": np.eye(D) * 2,
        "diag": np.ones((K, D)) * [[1.0], [2.0], [0.5]],
        "spherical": np.array([1.0, 2.0, 0.5]),
    }[covariance_type]
    precisions = np.linalg.inv(cov) if covariance_type in ("full", "tied") else 1 / cov
    return np.array([0.2, 0.3, 0.5]), means, precisions


@pytest.mark.parametrize("covariance_type", gmm.COVARIANCE_TYPES)
def test_em_matches_sklearn_and_never_decreases(covariance_type):
    x = _data()
    weights, means, precisions = _start(x, covariance_type)
    iters = 20
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn: "did not converge" with tol=0
        ref = GaussianMixture(
            K,
            covariance_type=covariance_type,
            max_iter=iters,
            tol=0,
            reg_covar=1e-4,
            weights_init=weights,
            means_init=means,
            precisions_init=precisions,
        ).fit(x)
    with jax.enable_x64(True):
        start = gmm.from_precisions(weights, means, precisions, covariance_type)
        params, history = gmm.em(start, x, num_iters=iters, reg_covar=1e-4)
        np.testing.assert_allclose(params.weights, ref.weights_, rtol=1e-9)
        np.testing.assert_allclose(params.means, ref.means_, rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(gmm.covariances(params), ref.covariances_, rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(
            params.precision_cholesky, ref.precisions_cholesky_, rtol=1e-9, atol=1e-10
        )
        np.testing.assert_allclose(history[-1], ref.lower_bound_, rtol=1e-10)
        np.testing.assert_allclose(gmm.log_prob(params, x), ref.score_samples(x), rtol=1e-10)
        np.testing.assert_allclose(gmm.predict_proba(params, x), ref.predict_proba(x), atol=1e-10)
        np.testing.assert_allclose(gmm.bic(params, x), ref.bic(x), rtol=1e-10)
        np.testing.assert_allclose(gmm.aic(params, x), ref.aic(x), rtol=1e-10)
        # Exact EM (reg_covar=0; a regularised M-step maximises a slightly different objective)
        # never decreases the log-likelihood.
        _, history = gmm.em(
            gmm.from_precisions(weights, means, precisions, covariance_type),
            x,
            num_iters=iters,
            reg_covar=0.0,
        )
        assert np.all(np.diff(np.asarray(history)) >= -1e-12), np.diff(history).min()
        assert history[-1] > history[0] + 0.1


# spherical shares diag's statistics code path.
@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag"])
def test_streamed_chunked_and_sharded_e_steps_equal_one_shot(covariance_type):
    x = _data(n=240).astype(np.float32)
    start = (np.asarray(a, np.float32) for a in _start(x, covariance_type))
    params = gmm.from_precisions(*start, covariance_type)
    whole = gmm.e_step(params, x, chunk_size=None)
    chunked = gmm.e_step(params, x, chunk_size=64)  # 240 = 3 * 64 + 48: the last chunk padded
    streamed = gmm.add_statistics(gmm.e_step(params, x[:100]), gmm.e_step(params, x[100:]))
    padded = np.concatenate([x, np.full((16, D), 1e6, np.float32)])  # garbage rows, masked out
    mask = np.concatenate([np.ones(240), np.zeros(16)]).astype(np.float32)
    mesh = jax.make_mesh((8,), ("data",))
    sharding = NamedSharding(mesh, P("data"))
    xs, ms = jax.device_put(padded, sharding), jax.device_put(mask, sharding)
    sharded = jax.jit(gmm.e_step)(params, xs, ms)
    for other in (chunked, streamed, sharded):
        for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(other)):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-3)
    one_shot, ll = jax.jit(gmm.em_step)(params, x)
    sharded_step, sharded_ll = jax.jit(gmm.em_step)(params, xs, ms)
    np.testing.assert_allclose(ll, sharded_ll, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(one_shot), jax.tree.leaves(sharded_step)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def _full_model():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(K, D, D))
    cov = a @ np.swapaxes(a, 1, 2) + np.eye(D)
    return np.array([0.3, 0.5, 0.2]), rng.normal(size=(K, D)) * 2, cov


def test_conditioning_matches_closed_forms():
    weights, means, cov = _full_model()
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, D)) * 2
    observed = np.array([[1, 0, 1], [0, 0, 1], [1, 1, 0]], bool)
    with jax.enable_x64(True):
        params = gmm.from_covariances(weights, means, cov, "full")
        cond = gmm.condition(params, np.where(observed, x, np.nan))
        imputed = np.asarray(gmm.impute(params, x, observed))
        for n in range(len(x)):
            o, m = observed[n], ~observed[n]
            marginal = gmm.from_covariances(weights, means[:, o], cov[:, o][:, :, o], "full")
            # Marginalising the missing dimensions = the model refit on the observed ones only.
            np.testing.assert_allclose(
                cond.marginal_log_likelihood[n],
                gmm.log_prob(marginal, x[n : n + 1, o])[0],
                rtol=1e-10,
            )
            np.testing.assert_allclose(
                np.exp(cond.log_weights[n]),
                gmm.predict_proba(marginal, x[n : n + 1, o])[0],
                rtol=1e-9,
            )
            expected = x[n].copy()
            expected[m] = 0.0
            for k in range(K):
                gain = cov[k][np.ix_(m, o)] @ np.linalg.inv(cov[k][np.ix_(o, o)])
                mean_k = means[k, m] + gain @ (x[n, o] - means[k, o])
                cov_k = cov[k][np.ix_(m, m)] - gain @ cov[k][np.ix_(o, m)]
                np.testing.assert_allclose(cond.means[n, k, m], mean_k, rtol=1e-9, atol=1e-12)
                chol = np.asarray(cond.cov_cholesky[n, k])[np.ix_(m, m)]
                np.testing.assert_allclose(chol @ chol.T, cov_k, rtol=1e-9, atol=1e-12)
                expected[m] += np.exp(cond.log_weights[n, k]) * mean_k
            np.testing.assert_allclose(imputed[n], expected, rtol=1e-9)
    # Diagonal: conditioning is trivial (missing dims keep their component's marginal).
    diag = gmm.from_covariances(weights, means, np.ones((K, D)) * 2.0, "diag")
    imputed = gmm.impute(diag, np.array([[means[0, 0], np.nan, np.nan]]))
    first_dim = gmm.from_covariances(weights, means[:, :1], np.ones((K, 1)) * 2.0, "diag")
    posterior = gmm.predict_proba(first_dim, means[:1, :1])[0]
    np.testing.assert_allclose(imputed[0, 1:], posterior @ means[:, 1:], rtol=1e-5)


def test_sampling_moments():
    weights, means, cov = _full_model()
    params = gmm.from_covariances(weights, means, cov, "full")
    x, labels = gmm.sample_with_components(jax.random.key(0), params, 60_000)
    x, labels = np.asarray(x), np.asarray(labels)
    np.testing.assert_allclose(np.bincount(labels) / len(labels), weights, atol=0.01)
    for k in range(K):
        np.testing.assert_allclose(x[labels == k].mean(0), means[k], atol=0.1)
        np.testing.assert_allclose(np.cov(x[labels == k].T), cov[k], rtol=0.05, atol=0.1)
    # Conditional samples: observed entries kept; missing ones with the conditional moments (K=1).
    one = gmm.from_covariances(np.ones(1), means[:1], cov[:1], "full")
    given = np.tile([[1.0, np.nan, -1.0]], (20_000, 1))
    draws = np.asarray(gmm.sample_conditional(jax.random.key(1), one, given))
    np.testing.assert_array_equal(draws[:, [0, 2]], given[:, [0, 2]])
    gain = cov[0][1, [0, 2]] @ np.linalg.inv(cov[0][np.ix_([0, 2], [0, 2])])
    np.testing.assert_allclose(
        draws[:, 1].mean(),
        means[0, 1] + gain @ (np.array([1.0, -1.0]) - means[0, [0, 2]]),
        atol=0.05,
    )
    np.testing.assert_allclose(
        draws[:, 1].var(), cov[0][1, 1] - gain @ cov[0][[0, 2], 1], rtol=0.05
    )


def test_fit_with_kmeans_plus_plus_reaches_sklearn_quality():
    x = _data(n=600).astype(np.float32)
    params, history = gmm.fit(jax.random.key(0), {"x": x}, _config(num_components=K, num_iters=30))
    seeds = np.asarray(kmeans.kmeans_plus_plus(jax.random.key(0), jnp.asarray(x), K))
    assert all(np.any(np.all(x == s, axis=1)) for s in seeds)  # seeds are data points
    ref = GaussianMixture(K, covariance_type="full", random_state=0).fit(x)
    assert float(gmm.score(params, x)) > ref.score(x) - 0.02
    assert np.all(np.diff(history["log_likelihood"]) >= -1e-4)
    assert history["num_iters"] == len(history["log_likelihood"]) <= 30
    assert history["converged"] == (history["num_iters"] < 30)


def test_mixture_classifier():
    rng = np.random.default_rng(5)
    x0 = np.concatenate([rng.normal(size=(150, 2)) + [3, 0], rng.normal(size=(150, 2)) + [-3, 0]])
    x1 = np.concatenate([rng.normal(size=(150, 2)) + [0, 3], rng.normal(size=(50, 2)) + [0, -3]])
    x, y = np.concatenate([x0, x1]).astype(np.float32), np.repeat([0, 1], [300, 200])
    params, history = gmm.fit(
        jax.random.key(0), {"x": x, "y": y}, _config(class_conditional=True, num_iters=20, tol=0.0)
    )
    assert history["log_likelihood"].shape == (2, 20)
    np.testing.assert_array_equal(history["num_iters"], [20, 20])
    np.testing.assert_allclose(np.exp(params.log_prior), [0.6, 0.4], rtol=1e-6)
    clf = gmm.classifier(params)
    log_proba = np.asarray(clf.predict_log_proba(x))
    np.testing.assert_allclose(np.exp(log_proba).sum(1), 1.0, rtol=1e-5)
    assert np.mean(np.asarray(clf.predict(x)) == y) > 0.93  # classes overlap a little
    # Bayes' rule by hand with scikit-learn mixtures fitted per class.
    refs = [GaussianMixture(2, random_state=0).fit(x[y == c]) for c in range(2)]
    joint = np.stack([r.score_samples(x) for r in refs], 1) + np.log([0.6, 0.4])
    assert np.mean(joint.argmax(1) == np.asarray(clf.predict(x))) > 0.99
    # log p(x) of the labelled model is the classifier's marginal; log p(x | y) its class term.
    np.testing.assert_allclose(gmm.log_prob(params, x), clf.log_marginal(x), rtol=1e-5)
    np.testing.assert_allclose(
        gmm.log_prob(params, x, y),
        clf.log_joint(x)[np.arange(len(y)), y] - params.log_prior[y],
        rtol=1e-5,
    )
    # x given y: each class's draws sit where that class's data sit.
    drawn, labels = gmm.sample_with_labels(
        jax.random.key(1), params, 4000, y=np.repeat([0, 1], 2000)
    )
    np.testing.assert_array_equal(labels, np.repeat([0, 1], 2000))
    assert np.mean(np.asarray(clf.predict(drawn)) == np.asarray(labels)) > 0.93
    np.testing.assert_allclose(np.abs(np.asarray(drawn[:2000])).mean(0), [3, 0.8], atol=0.15)
    np.testing.assert_allclose(np.asarray(drawn[2000:]).mean(0), [0, 1.5], atol=0.15)
    joint_posterior = np.asarray(gmm.posterior(params, x))
    assert joint_posterior.shape == (500, 2, 2)
    np.testing.assert_allclose(joint_posterior.sum((1, 2)), 1.0, rtol=1e-5)
    np.testing.assert_allclose(joint_posterior.sum(2), np.exp(log_proba), atol=1e-5)


def test_bad_input_is_refused_with_the_argument_named():
    x = _data(n=60)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="x must be finite"):
        gmm.fit(key, {"x": np.where(np.eye(60, D) > 0, np.nan, x)}, _config(num_components=K))
    with pytest.raises(ValueError, match="num_components=70"):
        gmm.fit(key, {"x": x}, _config(num_components=70))
    with pytest.raises(ValueError, match="config.covariance_type"):
        gmm.fit(key, {"x": x}, _config(covariance_type="banana"))
    with pytest.raises(ValueError, match="config.reg_covar"):
        gmm.fit(key, {"x": x}, _config(reg_covar=-1.0))
    with pytest.raises(TypeError, match="data must be a mapping with keys 'x'"):
        gmm.fit(key, {"features": x}, _config())
    with pytest.raises(ValueError, match="class_conditional"):
        gmm.fit(key, {"x": x, "y": np.zeros(60, int)}, _config())
    # Singular: points on a line in 3-D with no regularisation.
    line = np.outer(np.linspace(0, 1, 60), [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="increase config.reg_covar"):
        gmm.fit(key, {"x": line}, _config(num_iters=3, reg_covar=0.0))
    # ... while the default reg_covar gives a finite, documented regularised result.
    params, _ = gmm.fit(key, {"x": line.astype(np.float32)}, _config(num_iters=3, reg_covar=1e-3))
    assert np.all(np.isfinite(np.asarray(gmm.log_prob(params, line.astype(np.float32)))))
    labelled = _config(class_conditional=True)
    with pytest.raises(ValueError, match="class 1 of y"):
        gmm.fit(key, {"x": x, "y": (np.arange(60) >= 59).astype(int)}, labelled)
    with pytest.raises(ValueError, match="y"):
        gmm.log_prob(params, line.astype(np.float32), np.zeros(60, int))
    with pytest.raises(NotImplementedError, match="unlabelled Gaussian mixture"):
        gmm.classifier(params)
    with pytest.raises(TypeError, match="LabelledGMM"):
        gmm.classifier({"weights": params.weights})


def test_a_singular_fit_names_reg_covar_and_duplicated_points():
    """A component on ten copies of one point has a zero covariance when reg_covar is 0: the
    error names the knob by scikit-learn's name and what to look for in the data; following
    it gives a finite mixture; with the default 1e-6 the collapsed component's covariance is
    exactly reg_covar I, as scikit-learn's (statistics about each component's own mean)."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(40, 2)), np.tile([[5.0, 5.0]], (10, 1))])
    x = x.astype(np.float32)
    config = _config(num_components=2, num_iters=5, reg_covar=0.0)
    with pytest.raises(ValueError) as error:
        gmm.fit(jax.random.key(0), {"x": x}, config)
    message = str(error.value)
    assert "singular covariance" in message
    assert "increase config.reg_covar (scikit-learn's reg_covar; now 0.0)" in message
    assert "check x for duplicated points" in message
    config.reg_covar = 1e-6
    params, _ = gmm.fit(jax.random.key(0), {"x": x}, config)
    assert np.all(np.isfinite(np.asarray(gmm.log_prob(params, x))))
    collapsed = np.argmin(np.asarray(gmm.covariances(params))[:, 0, 0])
    np.testing.assert_allclose(gmm.covariances(params)[collapsed], 1e-6 * np.eye(2), rtol=1e-6)


def test_a_singular_loop_fit_names_reg_covar(tmp_path):
    """The loop's fit on the same data: the non-finite log-likelihood it stops at carries
    the mixture's remedy."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(40, 2)), np.tile([[5.0, 5.0]], (10, 1))])
    config = _config(num_components=2, num_iters=5, reg_covar=0.0)
    run = gmm.loop_config(config)
    dataset = data_lib.Dataset({"train": {"x": x.astype(np.float32)}})
    with pytest.raises(loop.NonFiniteError, match=r"increase config.reg_covar .*now 0.0"):
        loop.train_and_evaluate(run, tmp_path, gmm.loop_family(config), dataset)


@pytest.mark.parametrize("covariance_type", gmm.COVARIANCE_TYPES)
def test_tol_stops_where_sklearn_stops(covariance_type):
    """Same data and start: the fit stops at scikit-learn's n_iter_ with its lower bound, the
    history holding one mean log-likelihood per iteration run."""
    x = _data()
    weights, means, precisions = _start(x, covariance_type)
    for tol in (1e-2, 1e-4):
        ref = GaussianMixture(
            K,
            covariance_type=covariance_type,
            max_iter=200,
            tol=tol,
            reg_covar=1e-4,
            weights_init=weights,
            means_init=means,
            precisions_init=precisions,
        ).fit(x)
        assert ref.converged_ and 2 < ref.n_iter_ < 200
        with jax.enable_x64(True):
            init = gmm.from_precisions(weights, means, precisions, covariance_type)
            config = _config(
                num_components=K,
                covariance_type=covariance_type,
                num_iters=200,
                tol=tol,
                reg_covar=1e-4,
            )
            params, history = gmm.fit(jax.random.key(0), {"x": x}, config, init=init)
            assert history["num_iters"] == ref.n_iter_, (tol, history["num_iters"], ref.n_iter_)
            assert history["converged"]
            np.testing.assert_allclose(history["log_likelihood"][-1], ref.lower_bound_, rtol=1e-10)
            np.testing.assert_allclose(params.means, ref.means_, rtol=1e-8, atol=1e-9)
            # em, the same loop without the k-means start or padding, stops there too.
            _, em_history = gmm.em(init, x, num_iters=200, tol=tol, reg_covar=1e-4)
            assert len(em_history) == ref.n_iter_


def test_num_inits_keeps_the_best_start():
    """Start i is init_kmeans(fold_in(key, i)); the fit keeps the highest final lower bound."""
    x = _data(n=128).astype(np.float32)  # a bucket size: the fit pads no rows
    key = jax.random.key(3)
    config = _config(
        num_components=6, covariance_type="diag", num_inits=4, kmeans_iters=0, num_iters=50
    )
    _, history = gmm.fit(key, {"x": x}, config)
    finals = []
    for i in range(4):
        start = gmm.init_kmeans(jax.random.fold_in(key, i), x, 6, "diag", kmeans_iters=0)
        finals.append(float(gmm.em(start, x, num_iters=50, tol=1e-3)[1][-1]))
    assert len(set(np.round(finals, 4))) > 1, finals  # the starts differ, so the choice matters
    np.testing.assert_allclose(history["log_likelihood"][-1], max(finals), rtol=1e-5)
    with pytest.raises(ValueError, match="config.num_inits"):
        gmm.fit(key, {"x": x}, _config(num_inits=0))
    with pytest.raises(ValueError, match="config.tol"):
        gmm.fit(key, {"x": x}, _config(tol=-1.0))


@pytest.mark.parametrize("covariance_type", ["full", "spherical"])
def test_unlabelled_verbs_and_init_shapes(covariance_type):
    """fit / init / meta_from_data agree on the parameter structure (what saving.load
    rebuilds); posterior is the responsibilities; sample is x alone, y refused."""
    x = _data(n=150).astype(np.float32)
    config = _config(num_components=K, covariance_type=covariance_type, num_iters=10)
    params, _ = gmm.fit(jax.random.key(0), {"x": x}, config)
    meta = gmm.meta_from_data({"x": x}, config)
    assert meta == {"num_features": D, "dtype": "float32"}
    fresh = jax.eval_shape(lambda key: gmm.init(key, config, meta), jax.random.key(0))
    assert jax.tree.structure(fresh) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(fresh), jax.tree.leaves(params)):
        assert (a.shape, a.dtype) == (b.shape, b.dtype)
    np.testing.assert_allclose(gmm.posterior(params, x), gmm.predict_proba(params, x))
    drawn = gmm.sample(jax.random.key(1), params, 7)
    with_components, _ = gmm.sample_with_components(jax.random.key(1), params, 7)
    np.testing.assert_array_equal(drawn, with_components)
    assert drawn.shape == (7, D)
    with pytest.raises(ValueError, match="y"):
        gmm.sample(jax.random.key(1), params, 3, y=np.zeros(3, int))
    labelled = _config(num_components=K, class_conditional=True, num_iters=5)
    y = np.repeat([0, 1, 2], 50)
    params, _ = gmm.fit(jax.random.key(0), {"x": x, "y": y}, labelled)
    meta = gmm.meta_from_data({"x": x, "y": y}, labelled)
    fresh = jax.eval_shape(lambda key: gmm.init(key, labelled, meta), jax.random.key(0))
    assert jax.tree.structure(fresh) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(fresh), jax.tree.leaves(params)):
        assert (a.shape, a.dtype) == (b.shape, b.dtype)


def test_kmeans_weights_drop_and_scale_rows():
    """Rows of weight 0 never seed nor move a centre; a weighted row counts as repeated rows."""
    rng = np.random.default_rng(7)
    x = np.concatenate(
        [rng.normal(size=(50, 2)) + 10, rng.normal(size=(50, 2)) - 10, np.full((20, 2), 1e3)]
    ).astype(np.float32)
    weights = np.concatenate([np.ones(100), np.zeros(20)]).astype(np.float32)
    centers = np.asarray(kmeans.kmeans(jax.random.key(0), x, 2, weights, num_iters=5))
    np.testing.assert_allclose(
        np.sort(centers[:, 0]), [x[50:100, 0].mean(), x[:50, 0].mean()], rtol=1e-5
    )
    # Weight 2 on one row = that row twice: the Lloyd step's means agree.
    doubled = np.concatenate([x[:100], x[:1]])
    start = centers
    twice = kmeans.lloyd_step(doubled, start, np.ones(101, np.float32))
    weighted = kmeans.lloyd_step(x[:100], start, np.r_[2.0, np.ones(99)].astype(np.float32))
    np.testing.assert_allclose(twice, weighted, rtol=1e-6)
    with pytest.raises(ValueError, match="weights"):
        kmeans.kmeans(jax.random.key(0), x, 2, -weights)


def _numpy_conditioning(weights, means, covs, mean, basis, noise_var, x, observed):
    """log p(x_o), p(k | x_o) and E[x | x_o] of z ~ GMM, x = mean + basis z + N(0, noise_var
    I), by forming each component's joint Gaussian of (z, x_o) and conditioning it (float64)."""
    o, h = observed, ~observed
    w_o = basis[o]
    imputed, resp, marginal = [], [], []
    for row in x:
        log_joint, z_means = [], []
        for w, mu, cov in zip(weights, means, covs):
            m_x = mean[o] + w_o @ mu
            c_xx = w_o @ cov @ w_o.T + noise_var * np.eye(o.sum())
            log_joint.append(np.log(w) + multivariate_normal(m_x, c_xx).logpdf(row[o]))
            z_means.append(mu + cov @ w_o.T @ np.linalg.solve(c_xx, row[o] - m_x))
        log_joint = np.array(log_joint)
        top = log_joint.max()
        marginal.append(top + np.log(np.exp(log_joint - top).sum()))
        r = np.exp(log_joint - marginal[-1])
        out = row.copy()
        out[h] = mean[h] + basis[h] @ (r @ np.array(z_means))
        imputed.append(out)
        resp.append(r)
    return np.array(marginal), np.array(resp), np.array(imputed)


def _subspace_model(rng, num_pixels=7, d=3):
    basis = np.linalg.qr(rng.normal(size=(num_pixels, d)))[0]
    mean = rng.normal(size=num_pixels)
    weights = np.array([0.5, 0.3, 0.2])
    means = rng.normal(size=(3, d)) * 2
    factors = rng.normal(size=(3, d, d))
    covs = factors @ np.swapaxes(factors, 1, 2) + 0.3 * np.eye(d)
    return weights, means, covs, mean, basis, 0.2


def test_subspace_mixture_matches_joint_gaussian_conditioning():
    """log p(x), the responsibilities given x_o and E[x | x_o] of a SubspaceGMM (Woodbury in
    the code space) equal the D-dimensional joint Gaussian's, conditioned in float64."""
    rng = np.random.default_rng(0)
    weights, means, covs, mean, basis, noise_var = model = _subspace_model(rng)
    codes = means[rng.integers(0, 3, 5)] + rng.normal(size=(5, 3))
    x = mean + codes @ basis.T + rng.normal(size=(5, 7)) * 0.4
    observed = np.array([True, True, False, True, False, True, False])
    with jax.enable_x64(True):
        params = gmm.SubspaceGMM(
            gmm.from_covariances(jnp.asarray(weights), jnp.asarray(means), jnp.asarray(covs)),
            jnp.asarray(mean),
            jnp.asarray(basis),
            jnp.float64(noise_var),
        )
        for seen in (observed, np.ones(7, bool)):
            marginal, resp, imputed = _numpy_conditioning(*model, x, seen)
            assert resp.max(1).min() < 0.99  # several components matter
            posterior_z = gmm.observe(params, jnp.asarray(x), jnp.asarray(seen))
            np.testing.assert_allclose(posterior_z.marginal_log_likelihood, marginal, rtol=1e-9)
            np.testing.assert_allclose(np.exp(posterior_z.log_weights), resp, atol=1e-10)
            got = gmm.impute_subspace(params, jnp.asarray(x), jnp.asarray(seen))
            assert got.dtype == jnp.float64
            np.testing.assert_allclose(got, imputed, rtol=1e-9, atol=1e-9)
        # Every pixel observed: the shared verbs.
        np.testing.assert_allclose(gmm.log_prob(params, jnp.asarray(x)), marginal, rtol=1e-9)
        np.testing.assert_allclose(gmm.posterior(params, jnp.asarray(x)), resp, atol=1e-10)
    with pytest.raises(ValueError, match="x"):
        gmm.log_prob(params, np.zeros((2, 6)))
    with pytest.raises(NotImplementedError, match="unlabelled"):
        gmm.classifier(params)


def test_subspace_mixture_samples_decoded_codes_and_saves(tmp_path):
    """sample draws codes from the mixture and returns mean + basis z; init with
    meta["observed_features"] rebuilds the structure, so a saved SubspaceGMM loads."""
    rng = np.random.default_rng(1)
    weights, means, covs, mean, basis, noise_var = _subspace_model(rng)
    codes = gmm.from_covariances(
        jnp.asarray(weights, jnp.float32),
        jnp.asarray(means, jnp.float32),
        jnp.asarray(covs, jnp.float32),
    )
    params = gmm.SubspaceGMM(
        codes, jnp.asarray(mean, jnp.float32), jnp.asarray(basis, jnp.float32), jnp.float32(0.2)
    )
    drawn = np.asarray(gmm.sample(jax.random.key(3), params, 4000))
    z = np.asarray(gmm.sample(jax.random.key(3), codes, 4000))
    np.testing.assert_allclose(drawn, mean + z @ basis.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(drawn.mean(0), mean + weights @ means @ basis.T, atol=0.1)
    with pytest.raises(ValueError, match="y"):
        gmm.sample(jax.random.key(3), params, 2, y=np.zeros(2, int))
    config = _config(num_components=3)
    meta = {"num_features": 3, "dtype": "float32", "observed_features": 7}
    saving.save(tmp_path, "gmm", config, meta, params)
    loaded = saving.load(tmp_path)
    assert isinstance(loaded.params, gmm.SubspaceGMM)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(loaded.params)):
        np.testing.assert_array_equal(a, b)


def test_loop_family_is_em_from_the_same_starts_and_keeps_the_best(tmp_path):
    """On the loop (8 devices, rows padded and masked), every start runs EM until its own
    tol stop and is then held; the result is gmm.em from the same k-means starts (same
    iteration counts, parameters to float rounding), and best_start is the one fit keeps."""
    x = _data(n=301).astype(np.float32)
    config = _config(num_components=K, num_inits=2, tol=1e-4, num_iters=200)
    run = gmm.loop_config(config)
    run.log_every = 1000
    dataset = data_lib.Dataset({"train": {"x": x}, "test": {"x": x[:50]}})
    family = gmm.loop_family(config)
    result = loop.train_and_evaluate(run, tmp_path, family, dataset)
    assert result.metrics["train_converged"] == 1.0
    batch = data_lib.FullBatch(dataset["train"]).batch(0)
    start = family.init(jax.random.fold_in(jax.random.key(run.seed), 0), batch)
    finals = []
    for s in range(2):
        params, history = gmm.em(
            jax.tree.map(lambda leaf, s=s: leaf[s], start.params),
            batch["x"],
            batch["mask"],
            num_iters=200,
            tol=1e-4,
        )
        ours = jax.tree.map(lambda leaf, s=s: leaf[s], result.state.params)
        assert int(result.state.iterations[s]) == len(history)
        np.testing.assert_allclose(ours.means, params.means, rtol=1e-4, atol=1e-4)
        finals.append(history[-1])
    assert result.step == int(result.state.iterations.max())
    best = gmm.best_start(result.state)
    np.testing.assert_array_equal(best.means, result.state.params.means[int(np.argmax(finals))])
    assert result.metrics["log_likelihood"] == pytest.approx(
        float(gmm.score(best, x[:50])), rel=1e-5
    )
    with pytest.raises(ValueError, match="class_conditional"):
        gmm.loop_family(_config(class_conditional=True))


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_float32_clusters_far_from_the_origin_keep_their_covariance(covariance_type):
    """Two float32 clusters at +-1000 with spread 0.1: moments about one shared centre lose the
    covariance to rounding (1e6 * 2^-24 = 0.06 against 0.01); about each component's own mean
    they equal the float64 estimate of the same clusters, as scikit-learn's full fit does
    (its float32 diag and spherical fits, raw moments, refuse them). Diag and spherical
    mixtures switch to their own means only where the shared centre would lose digits."""
    rng = np.random.default_rng(0)
    halves = [rng.normal(centre, 0.1, (200, 2)) for centre in (-1000.0, 1000.0)]
    x = np.concatenate(halves).astype(np.float32)
    config = gmm.default_config()
    config.num_components, config.covariance_type = 2, covariance_type
    params, _ = gmm.fit(jax.random.key(0), {"x": x}, config)
    order = np.argsort(np.asarray(params.means)[:, 0])
    deviations = [h.astype(np.float32).astype(np.float64) - h.mean(0) for h in halves]
    full = np.array([np.cov(d.T, bias=True) for d in deviations])
    expected = {
        "full": full + 1e-6 * np.eye(2),
        "tied": np.cov(np.concatenate(deviations).T, bias=True) + 1e-6 * np.eye(2),
        "diag": np.diagonal(full, axis1=1, axis2=2) + 1e-6,
        "spherical": np.diagonal(full, axis1=1, axis2=2).mean(1) + 1e-6,
    }[covariance_type]
    got = np.asarray(gmm.covariances(params), np.float64)
    got = got if covariance_type == "tied" else got[order]
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-7)
    # The per-point log densities too: the float64 density of the fitted mixture.
    fitted = jax.tree.map(lambda leaf: np.asarray(leaf, np.float64), params)
    covariances = np.asarray(gmm.covariances(fitted), np.float64)
    if covariance_type == "tied":
        covariances = np.broadcast_to(covariances, (2, 2, 2))
    elif covariance_type != "full":  # diag [K, D] or spherical [K]: diagonal matrices
        covariances = np.stack([np.eye(2) * c for c in covariances])
    scipy_stats = pytest.importorskip("scipy.stats")
    x64 = x.astype(np.float64)
    joint = [
        np.log(w) + scipy_stats.multivariate_normal(m, c).logpdf(x64)
        for w, m, c in zip(fitted.weights, fitted.means, covariances, strict=True)
    ]
    # Diag and spherical densities switch to each component's own mean here; full and tied
    # stay expanded about the shared centre, which costs them up to ~1e-3 nats at a spread of
    # 1e4 standard deviations (model._MAX_SHARED_CENTRE_SPREAD).
    atol = 1e-2 if covariance_type in ("full", "tied") else 1e-4
    np.testing.assert_allclose(gmm.log_prob(params, x), np.logaddexp(*joint), rtol=1e-5, atol=atol)


@pytest.mark.parametrize("covariance_type", ["diag", "spherical"])
def test_statistics_about_each_mean_equal_the_shared_centres_where_both_hold(covariance_type):
    """On overlapping clusters the shared centre keeps its digits (the one-matmul path runs);
    the per-component path gives the same densities and statistics to rounding."""
    em = importlib.import_module("genjax_lab.models.gmm.em")
    gmm_model = importlib.import_module("genjax_lab.models.gmm.model")

    x = jnp.asarray(_data(), jnp.float32)
    params, _ = gmm.fit(jax.random.key(0), {"x": x}, _config(covariance_type=covariance_type))
    assert bool(gmm_model.shared_centre_is_exact(params))
    np.testing.assert_allclose(
        gmm_model._direct_maha(params, x), gmm_model._expanded_maha(params, x), rtol=1e-5, atol=1e-4
    )
    joint = gmm_model._log_joint(params, x)
    resp = jax.nn.softmax(joint, axis=1)
    about_shared = em._statistics(resp, x, gmm_model.shift(params), covariance_type)
    about_own = em._statistics(resp, x, params.means, covariance_type)
    zero = jnp.zeros(())
    for centres, stats in ((gmm_model.shift(params), about_shared), (params.means, about_own)):
        new = em._m_step(em.EMStats(*stats, zero, zero), centres, covariance_type, 1e-6)
        if centres.ndim == 1:
            expected = new
            continue
        for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(expected), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
