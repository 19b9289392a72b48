"""HMM features hmmlearn's users rely on, each against hmmlearn on data the test samples, in
float64: spherical and tied Gaussians, Gaussian mixtures of every covariance type, Poisson
and multinomial counts, restarts for every emission, frozen parameters (params /
init_params), aic / bic, the concatenated layout with lengths, MAP decoding, and sampling
on from a given state."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from hmmlearn import hmm as hmmlearn_hmm

from genjax_lab.models import hmm

GAUSSIAN = ("spherical", "tied")
MIXTURE = ("gmm-diag", "gmm-spherical", "gmm-full", "gmm-tied")
COUNTS = ("poisson", "multinomial")
LENGTHS = np.array([70, 45, 60])
NUM_TRIALS = 6


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def _spd(rng, shape, d):
    root = rng.normal(size=(*shape, d, d))
    return root @ np.swapaxes(root, -1, -2) + 0.5 * np.eye(d)


def _reference(kind, rng, k=3, d=2, m=2, **options):
    """(hmmlearn model, our HMMParams) with the same random parameters; `options` go to
    hmmlearn's constructor. Both are maximum likelihood unless options say otherwise."""
    pi, a = rng.dirichlet(np.ones(k)), rng.dirichlet(np.ones(k) * 2, k)
    if kind in ("diag", "spherical", "full", "tied"):
        means = rng.normal(size=(k, d)) * 3
        cov = {
            "diag": lambda: rng.uniform(0.5, 2, (k, d)),
            "spherical": lambda: rng.uniform(0.5, 2, k),
            "full": lambda: _spd(rng, (k,), d),
            "tied": lambda: _spd(rng, (), d),
        }[kind]()
        options = {"covars_prior": 0.0, **options}
        ref = hmmlearn_hmm.GaussianHMM(k, kind, init_params="", **options)
        ref.means_, ref.covars_ = means, cov
        emission = hmm.gaussian_emission(means, cov, kind)
    elif kind.startswith("gmm-"):
        cov_type = kind[4:]
        weights, means = rng.dirichlet(np.ones(m) * 3, k), rng.normal(size=(k, m, d)) * 3
        cov = {
            "diag": lambda: rng.uniform(0.5, 2, (k, m, d)),
            "spherical": lambda: rng.uniform(0.5, 2, (k, m)),
            "full": lambda: _spd(rng, (k, m), d),
            "tied": lambda: _spd(rng, (k,), d),
        }[cov_type]()
        if cov_type == "spherical":
            # hmmlearn's default spherical prior is not maximum likelihood: this one is.
            options = {"covars_prior": -d / 2 - 1, "covars_weight": 0.0, **options}
        ref = hmmlearn_hmm.GMMHMM(k, m, covariance_type=cov_type, init_params="", **options)
        ref.weights_, ref.means_, ref.covars_ = weights, means, cov
        emission = hmm.mixture_emission(weights, means, cov, cov_type)
    elif kind == "poisson":
        rates = rng.uniform(0.5, 8, (k, d))
        ref = hmmlearn_hmm.PoissonHMM(k, init_params="", **options)
        ref.lambdas_ = rates
        emission = hmm.poisson_emission(rates)
    elif kind == "multinomial":
        probs = rng.dirichlet(np.ones(d + 1), k)
        ref = hmmlearn_hmm.MultinomialHMM(k, n_trials=NUM_TRIALS, init_params="", **options)
        ref.emissionprob_ = probs
        emission = hmm.multinomial_emission(probs, NUM_TRIALS)
    else:
        probs = rng.dirichlet(np.ones(d + 2), k)
        ref = hmmlearn_hmm.CategoricalHMM(k, init_params="", n_features=d + 2, **options)
        ref.emissionprob_ = probs
        emission = hmm.categorical_emission(probs)
    ref.startprob_, ref.transmat_ = pi, a
    return ref, hmm.make_hmm(pi, a, emission)


def _data(params, seed):
    """Sequences of LENGTHS sampled from params, and hmmlearn's concatenated X."""
    _, obs = hmm.sample_with_states(jax.random.key(seed), params, len(LENGTHS), length=70)
    x = hmm.Sequences(np.asarray(obs), LENGTHS)
    flat = hmm.unpad(x.obs, LENGTHS)
    return x, flat[:, None] if flat.ndim == 1 else flat


def _full_covariances(emission):
    """Every component's covariance [K(, M), D, D] of our Gaussian or mixture emission."""
    means, scales = hmm.gaussian_components(emission)
    if scales.ndim == means.ndim:
        return np.exp(2 * np.asarray(scales))[..., None] * np.eye(means.shape[-1])
    chol = hmm.scale_tril(scales)
    return np.asarray(chol @ jnp.swapaxes(chol, -1, -2))


def _reference_covariances(ref):
    """hmmlearn's covariances as [K(, M), D, D] for every covariance type."""
    k, d = ref.n_components, ref.n_features
    if isinstance(ref, hmmlearn_hmm.GaussianHMM):
        # Internal layout: its M-step leaves spherical variances tiled [K, D].
        cov = ref._covars_
        return {
            "diag": lambda: cov[..., None] * np.eye(d),
            "spherical": lambda: cov.reshape(k, -1)[:, :1, None] * np.eye(d),
            "full": lambda: cov,
            "tied": lambda: np.broadcast_to(cov, (k, d, d)),
        }[ref.covariance_type]()
    cov, m = ref.covars_, ref.n_mix
    return {
        "diag": lambda: cov[..., None] * np.eye(d),
        "spherical": lambda: cov[..., None, None] * np.eye(d),
        "full": lambda: cov,
        "tied": lambda: np.broadcast_to(cov[:, None], (k, m, d, d)),
    }[ref.covariance_type]()


def _assert_same_model(params, ref, rtol=1e-6, atol=1e-8):
    close = lambda ours, theirs: np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol)
    close(hmm.initial_probs(params), ref.startprob_)
    close(hmm.transition_probs(params), ref.transmat_)
    e = params.emission
    if isinstance(e, hmm.PoissonEmission):
        close(np.exp(e.log_rates), ref.lambdas_)
    elif isinstance(e, (hmm.MultinomialEmission, hmm.CategoricalEmission)):
        close(jax.nn.softmax(e.logits, -1), ref.emissionprob_)
    else:
        close(e.means, ref.means_)
        close(_full_covariances(e), _reference_covariances(ref))
        if hasattr(ref, "weights_"):
            close(jax.nn.softmax(e.logits, -1), ref.weights_)


def _assert_inference_matches(params, ref, x, flat):
    np.testing.assert_allclose(
        np.sum(hmm.log_prob(params, x)), ref.score(flat, LENGTHS), rtol=1e-10
    )
    np.testing.assert_allclose(
        hmm.unpad(hmm.posterior(params, x), LENGTHS), ref.predict_proba(flat, LENGTHS), atol=1e-9
    )
    vit = hmm.most_likely_states(params, x)
    ref_lp, ref_path = ref.decode(flat, LENGTHS, algorithm="viterbi")
    np.testing.assert_allclose(np.sum(vit.log_prob), ref_lp, rtol=1e-10)
    np.testing.assert_array_equal(hmm.unpad(vit.states, LENGTHS), ref_path)


def _state_moments(params, emission):
    """Each state's emission mean [K, D] and covariance [K, D, D] under the model."""
    if isinstance(emission, hmm.PoissonEmission):
        rates = np.exp(np.asarray(emission.log_rates))
        return rates, rates[..., None] * np.eye(rates.shape[-1])
    if isinstance(emission, hmm.MultinomialEmission):
        p = np.asarray(jax.nn.softmax(emission.logits, -1))
        n = int(emission.num_trials)
        return n * p, n * (p[..., None] * np.eye(p.shape[-1]) - p[..., :, None] * p[..., None, :])
    means, cov = np.asarray(emission.means), _full_covariances(emission)
    if isinstance(emission, hmm.model.MIXTURES):
        w = np.asarray(jax.nn.softmax(emission.logits, -1))
        mean = np.einsum("km,kmd->kd", w, means)
        dm = means - mean[:, None]
        spread = cov + dm[..., :, None] * dm[..., None, :]
        return mean, np.einsum("km,kmde->kde", w, spread)
    return means, cov


@pytest.mark.parametrize("kind", GAUSSIAN + MIXTURE + COUNTS)
def test_scores_decodes_and_samples_as_hmmlearn(kind):
    """log p, posteriors and Viterbi equal hmmlearn's on the same data; samples have each
    state's emission mean and covariance."""
    ref, params = _reference(kind, np.random.default_rng(1))
    x, flat = _data(params, 1)
    _assert_inference_matches(params, ref, x, flat)
    states, obs = hmm.sample_with_states(jax.random.key(2), params, 8, length=1500)
    states, obs = np.asarray(states).ravel(), np.asarray(obs, np.float64).reshape(-1, flat.shape[1])
    mean, cov = _state_moments(params, params.emission)
    for k in range(len(mean)):
        frames = obs[states == k]
        scale = np.sqrt(np.diag(cov[k]))
        np.testing.assert_allclose(
            frames.mean(0), mean[k], atol=6 * scale.max() / len(frames) ** 0.5
        )
        np.testing.assert_allclose(np.cov(frames.T), cov[k], atol=0.15 * np.max(np.abs(cov[k])))


@pytest.mark.parametrize("kind", GAUSSIAN + MIXTURE + COUNTS)
def test_em_matches_hmmlearn(kind):
    """Four maximum-likelihood Baum-Welch iterations from the same start. hmmlearn's GMMHMM
    centres its covariance statistics on the means going into the step (a generalised EM
    step; ours is the exact M-step, around the new means), so mixtures are compared with
    the means or the covariances frozen, where the two updates are the same."""
    rng = np.random.default_rng(2)
    _, truth = _reference(kind, rng)
    x, flat = _data(truth, 2)
    for learn in ("stmw", "stcw") if kind in MIXTURE else (hmm.ALL_PARAMS,):
        ref, start = _reference(kind, np.random.default_rng(3), n_iter=4, tol=-np.inf)
        ref.params = learn if kind in MIXTURE else ref.params
        ref.fit(flat, LENGTHS)
        params, stats = hmm.fit_em(start, x, num_iters=4, prior=hmm.MAXIMUM_LIKELIHOOD, learn=learn)
        _assert_same_model(params, ref)
        np.testing.assert_allclose(stats.log_likelihood, list(ref.monitor_.history), rtol=1e-10)


@pytest.mark.parametrize("kind,weight", [("spherical", 3.0), ("tied", 4.0)])
def test_covariance_prior_matches_hmmlearn(kind, weight):
    """hmmlearn's covars_prior and covars_weight are our covariance_prior (times I for a
    matrix: hmmlearn adds a scalar to every entry) and covariance_pseudocount =
    max(covars_weight - 1, 0) (spherical) or max(covars_weight - D, 0) (tied; the prior
    counted once for the shared covariance)."""
    rng = np.random.default_rng(3)
    _, truth = _reference(kind, rng)
    psi = 0.3 if kind == "spherical" else 0.3 * np.eye(2)
    ref, start = _reference(
        kind, rng, n_iter=3, tol=-np.inf, covars_prior=psi, covars_weight=weight
    )
    x, flat = _data(truth, 3)
    ref.fit(flat, LENGTHS)
    pseudocount = max(weight - (1 if kind == "spherical" else 2), 0)
    prior = hmm.MAXIMUM_LIKELIHOOD._replace(
        covariance_prior=0.3, covariance_pseudocount=pseudocount
    )
    params, stats = hmm.fit_em(start, x, num_iters=3, prior=prior)
    _assert_same_model(params, ref)
    assert np.all(np.diff(stats.objective) >= -1e-9)  # MAP EM never decreases its objective


@pytest.mark.parametrize("kind", ["diag", "spherical", "full", "tied"])
def test_mixture_em_with_a_prior_is_monotone(kind):
    """MAP EM on every mixture covariance type never decreases the MAP objective."""
    rng = np.random.default_rng(4)
    _, truth = _reference(f"gmm-{kind}", rng)
    _, start = _reference(f"gmm-{kind}", rng)
    x, _ = _data(truth, 4)
    prior = hmm.HMMPrior(mean_weight=0.5, covariance_prior=0.2, covariance_pseudocount=2.0)
    _, stats = hmm.fit_em(start, x, num_iters=8, prior=prior)
    assert np.all(np.diff(stats.objective) >= -1e-8 * np.abs(stats.objective[1:]))


def test_spherical_and_tied_starts_come_from_the_diagonal_one():
    """The data start's spherical variance is the mean of the diagonal start's variances, the
    tied covariance the mean over states; the means are the same k-means centres."""
    x, _ = _data(_reference("diag", np.random.default_rng(5))[1], 5)
    args = (jax.random.key(5), jnp.asarray(x.obs), jnp.asarray(x.lengths), 3)
    diag = hmm.init_gaussian_hmm(*args, "diag").emission
    var = np.exp(2 * np.asarray(diag.log_scales))
    spherical = hmm.init_gaussian_hmm(*args, "spherical").emission
    tied = hmm.init_gaussian_hmm(*args, "tied").emission
    np.testing.assert_array_equal(spherical.means, diag.means)
    np.testing.assert_allclose(np.exp(2 * np.asarray(spherical.log_scales)), var.mean(1))
    np.testing.assert_allclose(
        _full_covariances(tied), np.broadcast_to(np.diag(var.mean(0)), (3, 2, 2))
    )


# CI runs a Gaussian, a count and the full mixture case (the restart logic is shared);
# --runslow runs every emission.
_SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    "emission,covariance",
    [("categorical", "diag"), ("diag", "diag"), pytest.param("full", "diag", marks=_SLOW)]
    + [pytest.param("spherical", "diag", marks=_SLOW), pytest.param("tied", "diag", marks=_SLOW)]
    + [("poisson", "diag"), pytest.param("multinomial", "diag", marks=_SLOW)]
    + [pytest.param("mixture", c, marks=_SLOW) for c in ("diag", "spherical", "tied")]
    + [("mixture", "full")],
)
def test_restarts_keep_the_best_start_for_every_emission(emission, covariance):
    kind = {"mixture": f"gmm-{covariance}", "categorical": "categorical"}.get(emission, emission)
    x, _ = _data(_reference(kind, np.random.default_rng(6))[1], 6)
    config = hmm.default_config()
    config.update(num_states=3, emission=emission, mixture_covariance=covariance, num_iters=4)
    config.update(num_components=2, tol=-np.inf)
    params, history = hmm.fit(jax.random.key(6), {"x": x}, config)
    config.num_inits = 4
    best, restarts = hmm.fit(jax.random.key(6), {"x": x}, config)
    starts = restarts["start_objectives"]
    assert starts.shape == (4,) and np.all(np.isfinite(starts))
    # The starts differ, so the choice is a real one (k-means finds the same count clusters
    # from every start).
    assert len(np.unique(starts)) > 1 or emission == "poisson"
    assert starts[0] == history["objective"][-1]  # start 0 is the one-start fit
    assert restarts["objective"][-1] == starts.max()
    assert type(best.emission) is type(params.emission)


def test_frozen_parameters_match_hmmlearn_params_m():
    """config.params = "m" from a given init: hmmlearn's fit(params="m", init_params="");
    everything but the means is bitwise the init's."""
    rng = np.random.default_rng(7)
    _, truth = _reference("diag", rng)
    ref, start = _reference("diag", rng, params="m", n_iter=5, tol=-np.inf)
    x, flat = _data(truth, 7)
    ref.fit(flat, LENGTHS)
    config = hmm.default_config()
    config.update(num_states=3, num_iters=5, tol=-np.inf, params="m")
    config.prior.update(covariance_prior=0.0, covariance_pseudocount=0.0)
    params, _ = hmm.fit(jax.random.key(0), {"x": x}, config, init=start)
    np.testing.assert_allclose(params.emission.means, ref.means_, rtol=1e-6)
    for ours, given in [
        (params.transition_logits, start.transition_logits),
        (params.initial_logits, start.initial_logits),
        (params.emission.log_scales, start.emission.log_scales),
    ]:
        np.testing.assert_array_equal(ours, given)


def test_frozen_covariances_and_init_params():
    """params="tc" keeps the means and re-estimates the covariances around them (checked
    against the closed form on hmmlearn's posteriors: hmmlearn's own GaussianHMM drops the
    cross terms when 'm' is not learned); init_params="m" with init redraws only the means
    from the data start (the same as a fit without init), so restarts are allowed."""
    rng = np.random.default_rng(8)
    _, truth = _reference("full", rng)
    ref, start = _reference("full", rng)
    x, flat = _data(truth, 8)
    config = hmm.default_config()
    config.update(num_states=3, emission="full", num_iters=1, tol=-np.inf, params="ct")
    config.prior.update(covariance_prior=0.0, covariance_pseudocount=0.0)
    params, _ = hmm.fit(jax.random.key(0), {"x": x}, config, init=start)
    gamma = ref.predict_proba(flat, LENGTHS)
    diff = flat[:, None, :] - ref.means_
    expected = np.einsum("nk,nkd,nke->kde", gamma, diff, diff) / gamma.sum(0)[:, None, None]
    np.testing.assert_allclose(_full_covariances(params.emission), expected, rtol=1e-9)
    np.testing.assert_array_equal(params.emission.means, start.emission.means)
    np.testing.assert_array_equal(params.initial_logits, start.initial_logits)
    config.update(params="", num_iters=1, init_params="m")
    merged, _ = hmm.fit(jax.random.key(0), {"x": x}, config, init=start)
    fresh, _ = hmm.fit(jax.random.key(0), {"x": x}, config)
    np.testing.assert_array_equal(merged.emission.means, fresh.emission.means)
    np.testing.assert_array_equal(merged.emission.scale_tril, start.emission.scale_tril)
    np.testing.assert_array_equal(merged.transition_logits, start.transition_logits)
    config.num_inits = 2
    hmm.fit(jax.random.key(0), {"x": x}, config, init=start)
    with pytest.raises(ValueError, match="config.params"):
        config.params = "mx"
        hmm.fit(jax.random.key(0), {"x": x}, config, init=start)


@pytest.mark.parametrize("kind", ("categorical", "diag", "full") + GAUSSIAN + MIXTURE + COUNTS)
def test_aic_and_bic_match_hmmlearn(kind):
    ref, params = _reference(kind, np.random.default_rng(9))
    x, flat = _data(params, 9)
    ref._check()
    # hmmlearn's GMMHMM counts M - 1 mixture weights for all K states; there are K (M - 1).
    extra = 0
    if kind.startswith("gmm-"):
        extra = (ref.n_components - 1) * (ref.n_mix - 1)
    np.testing.assert_allclose(hmm.aic(params, x), ref.aic(flat, LENGTHS) + 2 * extra, rtol=1e-10)
    np.testing.assert_allclose(
        hmm.bic(params, x), ref.bic(flat, LENGTHS) + extra * np.log(LENGTHS.sum()), rtol=1e-10
    )


@pytest.mark.parametrize("kind", ["categorical", "diag", "poisson"])
def test_concatenated_layout_matches_hmmlearn(kind):
    """hmmlearn's X [N, D] (symbols [N, 1]) with lengths, and one whole sequence: score,
    predict and predict_proba equal hmmlearn's, mapped back with unpad."""
    ref, params = _reference(kind, np.random.default_rng(10))
    _, flat = _data(params, 10)
    x = hmm.concatenated(flat, LENGTHS)
    np.testing.assert_array_equal(hmm.unpad(x.obs, LENGTHS), flat)
    _assert_inference_matches(params, ref, x, flat)
    one = hmm.concatenated(flat[:50])
    np.testing.assert_allclose(hmm.log_prob(params, one)[0], ref.score(flat[:50]), rtol=1e-10)
    np.testing.assert_array_equal(
        hmm.unpad(hmm.most_likely_states(params, one).states, [50]), ref.predict(flat[:50])
    )
    for bad in ([70, 45, 59], [70, 0, 105], [-5, 120, 60], [70.0, 45.0, 60.0], []):
        with pytest.raises(ValueError, match="lengths"):
            hmm.concatenated(flat, np.asarray(bad))


@pytest.mark.parametrize("kind", ["diag", "gmm-full", "multinomial"])
def test_map_decoding_matches_hmmlearn(kind):
    ref, params = _reference(kind, np.random.default_rng(11))
    x, flat = _data(params, 11)
    states = hmm.map_states(params, x)
    np.testing.assert_array_equal(
        hmm.unpad(states, LENGTHS), ref.decode(flat, LENGTHS, algorithm="map")[1]
    )
    assert np.all(np.asarray(states)[1, LENGTHS[1] :] == -1)


def test_sample_continues_from_a_given_state():
    """initial_state fixes the first state (hmmlearn's currstate); the chain then follows
    the transition matrix (empirical counts within sampling error)."""
    _, params = _reference("tied", np.random.default_rng(12))
    states, obs = hmm.sample_with_states(
        jax.random.key(12), params, 200, length=100, initial_state=2
    )
    states = np.asarray(states)
    assert np.all(states[:, 0] == 2)
    counts = np.zeros((3, 3))
    np.add.at(counts, (states[:, :-1].ravel(), states[:, 1:].ravel()), 1)
    a = np.asarray(hmm.transition_probs(params))
    freq = counts / counts.sum(1, keepdims=True)
    assert np.all(np.abs(freq - a) <= 4 * np.sqrt(a * (1 - a) / counts.sum(1)[:, None]) + 1e-3)
    per_draw = hmm.sample(jax.random.key(1), params, 3, length=4, initial_state=np.array([0, 1, 2]))
    assert per_draw.shape == (3, 4, 2)
    with pytest.raises(ValueError, match="initial_state"):
        hmm.sample(jax.random.key(1), params, 3, length=4, initial_state=3)


def test_count_inputs_are_checked():
    _, params = _reference("multinomial", np.random.default_rng(13))
    x, _ = _data(params, 13)
    with pytest.raises(ValueError, match="num_trials"):
        hmm.log_prob(params, hmm.Sequences(x.obs + 1, x.lengths))
    with pytest.raises(ValueError, match="counts"):
        hmm.log_prob(params, hmm.Sequences(x.obs - 0.5, x.lengths))


def test_a_config_saved_before_the_new_keys_still_initialises():
    config = hmm.default_config().to_dict()
    for key in ("mixture_covariance", "num_trials", "params", "init_params"):
        del config[key]
    old = ml_collections.ConfigDict(config)
    meta = {"emission": "diag", "num_features": 2, "dtype": "float32"}
    params = hmm.init(jax.random.key(0), old, meta)
    assert params.emission.means.shape == (2, 2)
