"""HMM family: message passing against brute-force enumeration and hmmlearn, EM, long
sequences, padding, sharding over 8 devices, classifier, bad input."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hmmlearn import hmm as hmmlearn_hmm
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from genjax_lab.inference import hmm as inf
from genjax_lab.models import hmm

CASINO_A = np.array([[0.95, 0.05], [0.10, 0.90]])
CASINO_B = np.array([[1 / 6] * 6, [0.1] * 5 + [0.5]])


def _random_potentials(rng, k, t, b=None):
    pi = rng.dirichlet(np.ones(k))
    a = rng.dirichlet(np.ones(k), k)
    ll = rng.normal(size=(t, k) if b is None else (b, t, k)) * 2.0
    return pi, a, ll


def _enumerate(pi, a, ll):
    """float64 brute force over all K^T paths: (log p(y), posteriors, pairwise counts,
    MAP path, its log joint)."""
    t, k = ll.shape
    paths = np.array(list(itertools.product(range(k), repeat=t)))
    lp = np.log(pi[paths[:, 0]]) + ll[0, paths[:, 0]]
    for s in range(1, t):
        lp += np.log(a[paths[:, s - 1], paths[:, s]]) + ll[s, paths[:, s]]
    logz = np.logaddexp.reduce(lp)
    w = np.exp(lp - logz)
    post = np.stack([np.bincount(paths[:, s], w, k) for s in range(t)])
    counts = np.zeros((k, k))
    for s in range(t - 1):
        np.add.at(counts, (paths[:, s], paths[:, s + 1]), w)
    return logz, post, counts, paths[np.argmax(lp)], lp.max()


def _numpy_log_forward(pi, a, ll):
    """float64 log-space forward over [T, K] (independent of the scaled JAX recursion)."""
    la = np.log(a)
    alpha = np.log(pi) + ll[0]
    for s in range(1, len(ll)):
        alpha = np.logaddexp.reduce(alpha[:, None] + la, axis=0) + ll[s]
    return np.logaddexp.reduce(alpha)


# ------------------------------------------------------------ exact inference


@pytest.mark.parametrize("parallel", [False, True])
def test_inference_equals_enumeration_with_padding(parallel):
    rng = np.random.default_rng(0)
    k, t = 3, 6
    pi, a, ll = _random_potentials(rng, k, t, b=3)
    lengths = np.array([6, 4, 1])
    args = (jnp.log(pi), jnp.log(a), jnp.asarray(ll, jnp.float32), jnp.asarray(lengths))
    filt = inf.hmm_filter(*args, parallel=parallel)
    smooth = inf.hmm_smoother(*args, parallel=parallel)
    vit = inf.hmm_viterbi(*args, parallel=parallel)
    for b, length in enumerate(lengths):
        logz, post, counts, path, path_lp = _enumerate(pi, a, ll[b, :length])
        np.testing.assert_allclose(filt.log_likelihood[b], logz, rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(smooth.log_likelihood[b], logz, rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(smooth.posteriors[b, :length], post, atol=2e-6)
        np.testing.assert_allclose(smooth.transition_counts[b], counts, atol=2e-6)
        np.testing.assert_array_equal(vit.states[b, :length], path)
        np.testing.assert_allclose(vit.log_prob[b], path_lp, rtol=1e-6, atol=1e-5)
        # The filter at the last step is the smoother there; padding outputs are inert.
        np.testing.assert_allclose(filt.filtered_probs[b, length - 1], post[-1], atol=2e-6)
        assert np.all(np.asarray(smooth.posteriors[b, length:]) == 0)
        assert np.all(np.asarray(vit.states[b, length:]) == -1)


def test_pairwise_posteriors_and_float64():
    """Pairwise posteriors against enumeration; under x64 the same code agrees to 1e-12."""
    rng = np.random.default_rng(1)
    pi, a, ll = _random_potentials(rng, 3, 5)
    logz, _, counts, _, _ = _enumerate(pi, a, ll)
    xi = inf.hmm_pairwise_posteriors(jnp.log(pi), jnp.log(a), jnp.asarray(ll, jnp.float32))
    assert xi.shape == (4, 3, 3)
    np.testing.assert_allclose(np.asarray(xi).sum(0), counts, atol=2e-6)
    np.testing.assert_allclose(np.asarray(xi).sum((1, 2)), 1.0, atol=1e-6)
    with jax.enable_x64(True):
        args = (jnp.asarray(np.log(pi)), jnp.asarray(np.log(a)), jnp.asarray(ll))
        assert args[2].dtype == jnp.float64
        for parallel in (False, True):
            np.testing.assert_allclose(
                inf.hmm_filter(*args, parallel=parallel).log_likelihood, logz, rtol=1e-12
            )


def test_posterior_samples_match_marginals():
    rng = np.random.default_rng(2)
    pi, a, ll = _random_potentials(rng, 3, 5)
    _, post, counts, _, _ = _enumerate(pi, a, ll)
    n = 20000
    lls = jnp.broadcast_to(jnp.asarray(ll, jnp.float32), (n, 5, 3))
    draws = np.asarray(inf.hmm_posterior_sample(jax.random.key(0), jnp.log(pi), jnp.log(a), lls))
    freq = np.stack([np.bincount(draws[:, s], minlength=3) for s in range(5)]) / n
    # 20000 draws: standard error <= 0.0036, so 0.02 is > 5 sigma.
    np.testing.assert_allclose(freq, post, atol=0.02)
    pair = np.zeros((3, 3))
    for s in range(4):
        np.add.at(pair, (draws[:, s], draws[:, s + 1]), 1.0 / n)
    np.testing.assert_allclose(pair, counts, atol=0.04)
    # Padding gets -1, and a shorter sequence is sampled from its own posterior.
    short = inf.hmm_posterior_sample(
        jax.random.key(1), jnp.log(pi), jnp.log(a), lls[:2], jnp.array([5, 2])
    )
    assert np.all(np.asarray(short[1, 2:]) == -1) and np.all(np.asarray(short[:, :2]) >= 0)


def _hmmlearn_model(kind, rng, k, d):
    pi = rng.dirichlet(np.ones(k))
    a = rng.dirichlet(np.ones(k) * 2, k)
    if kind == "categorical":
        probs = rng.dirichlet(np.ones(d), k)
        ref = hmmlearn_hmm.CategoricalHMM(k, init_params="", n_features=d)
        ref.emissionprob_ = probs
        emission = hmm.categorical_emission(probs)
    elif kind == "diag":
        means, var = rng.normal(size=(k, d)) * 2, rng.uniform(0.5, 2, (k, d))
        ref = hmmlearn_hmm.GaussianHMM(k, "diag", init_params="")
        ref.means_, ref.covars_ = means, var
        emission = hmm.diag_gaussian_emission(means, var)
    else:
        means = rng.normal(size=(k, d)) * 2
        root = rng.normal(size=(k, d, d))
        cov = root @ np.swapaxes(root, 1, 2) + 0.5 * np.eye(d)
        ref = hmmlearn_hmm.GaussianHMM(k, "full", init_params="")
        ref.means_, ref.covars_ = means, cov
        emission = hmm.full_gaussian_emission(means, cov)
    ref.startprob_, ref.transmat_ = pi, a
    return ref, hmm.make_hmm(pi, a, emission)


def _path_log_joint(ref, flat, path, lengths):
    """float64 log p(x, y) of concatenated paths under an hmmlearn model."""
    log_b = ref._compute_log_likelihood(flat)
    total, start = 0.0, 0
    for n in lengths:
        x = path[start : start + n]
        total += np.log(ref.startprob_[x[0]]) + np.sum(np.log(ref.transmat_[x[:-1], x[1:]]))
        total += np.sum(log_b[start + np.arange(n), x])
        start += n
    return total


@pytest.mark.parametrize("kind", ["categorical", "diag", "full"])
def test_matches_hmmlearn(kind):
    rng = np.random.default_rng(3)
    ref, params = _hmmlearn_model(kind, rng, k=4, d=3)
    _, obs = hmm.sample_with_states(jax.random.key(3), params, 3, length=60)
    lengths = np.array([60, 35, 12])
    flat = np.concatenate([np.asarray(obs[i, :n]) for i, n in enumerate(lengths)])
    flat = flat[:, None] if kind == "categorical" else flat.astype(np.float64)
    cut = lambda x: np.concatenate([np.asarray(x[i, :n]) for i, n in enumerate(lengths)])
    ref_lp, ref_path = ref.decode(flat, lengths, algorithm="viterbi")
    # Parallel == sequential is tested below; here the parallel path runs on the case with ties.
    for parallel in (False, True) if kind == "categorical" else (False,):
        smooth = hmm.smooth(params, hmm.Sequences(obs, lengths), parallel=parallel)
        np.testing.assert_allclose(
            np.sum(smooth.log_likelihood), ref.score(flat, lengths), rtol=1e-6
        )
        np.testing.assert_allclose(
            cut(smooth.posteriors), ref.predict_proba(flat, lengths), atol=1e-5
        )
        vit = hmm.most_likely_states(params, hmm.Sequences(obs, lengths), parallel=parallel)
        np.testing.assert_allclose(np.sum(vit.log_prob), ref_lp, rtol=1e-6)
        if kind == "categorical":
            # Discrete symbols make exact ties (2,3,2,3 vs 3,2,3,2 on a run of one symbol):
            # our path must be *a* MAP path, scored in float64 with hmmlearn's parameters.
            np.testing.assert_allclose(
                _path_log_joint(ref, flat, cut(vit.states), lengths), ref_lp, rtol=1e-7
            )
        else:
            np.testing.assert_array_equal(cut(vit.states), ref_path)
    np.testing.assert_allclose(
        np.sum(hmm.log_prob(params, hmm.Sequences(obs, lengths))),
        ref.score(flat, lengths),
        rtol=1e-6,
    )


def test_em_step_matches_hmmlearn():
    """One maximum-likelihood Baum-Welch step, diagonal Gaussians (hmmlearn with its
    covariance prior and floor switched off)."""
    rng = np.random.default_rng(4)
    ref, params = _hmmlearn_model("diag", rng, k=3, d=2)
    ref.set_params(params="stmc", n_iter=1, covars_prior=0.0, min_covar=1e-12)
    _, obs = hmm.sample_with_states(jax.random.key(4), params, 4, length=50)
    lengths = np.array([50, 30, 20, 45])
    ref.fit(
        np.concatenate([np.asarray(obs[i, :n], np.float64) for i, n in enumerate(lengths)]), lengths
    )
    new, _ = hmm.em_step(
        params, {"obs": obs, "lengths": jnp.asarray(lengths)}, hmm.MAXIMUM_LIKELIHOOD
    )
    np.testing.assert_allclose(hmm.initial_probs(new), ref.startprob_, atol=1e-5)
    np.testing.assert_allclose(hmm.transition_probs(new), ref.transmat_, atol=1e-5)
    np.testing.assert_allclose(new.emission.means, ref.means_, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        np.exp(2 * np.asarray(new.emission.log_scales)), ref._covars_, rtol=1e-4
    )


# ----------------------------------------------------------------------- EM


def _casino(num_steps, num_sequences, key=0):
    params = hmm.make_hmm([0.5, 0.5], CASINO_A, hmm.categorical_emission(CASINO_B))
    return params, hmm.sample_with_states(
        jax.random.key(key), params, num_sequences, length=num_steps
    )


@pytest.mark.parametrize(
    "emission,left_to_right",
    [("diag", False), ("full", True), ("mixture", False)],
)
def test_em_never_decreases_map_objective(emission, left_to_right):
    _, obs = hmm.sample_with_states(
        jax.random.key(5), _hmmlearn_model("diag", np.random.default_rng(5), 3, 2)[1], 6, length=80
    )
    lengths = np.array([80, 70, 60, 50, 40, 30])
    start = hmm.init_gaussian_hmm(
        jax.random.key(6), obs, jnp.asarray(lengths), 4, emission, 2, left_to_right
    )
    fitted, stats = hmm.fit_em(start, hmm.Sequences(obs, lengths), num_iters=25)
    objective = np.asarray(stats.objective, np.float64)
    assert np.all(np.isfinite(objective))
    # float32 objective of magnitude ~1e3: allow rounding (1e-6 relative), nothing more.
    assert np.all(np.diff(objective) >= -1e-6 * np.abs(objective[1:])), np.diff(objective)
    assert objective[-1] > objective[0]
    if left_to_right:  # structural zeros stay zero
        allowed = np.isfinite(np.asarray(start.transition_logits))
        assert np.all(np.isneginf(np.asarray(fitted.transition_logits)[~allowed]))


def test_ergodic_fit_from_a_start_with_a_zero_transition_reruns_on_the_exact_passes():
    """An ergodic fit compiles only the scaled passes; a start whose transition matrix has a
    zero makes them inexact, and the fit reruns on the passes that choose per iteration:
    the same numbers as fit_em, which always chooses."""
    _, (_, obs) = _casino(300, 6)
    start = hmm.make_hmm([0.5, 0.5], [[1.0, 0.0], [0.3, 0.7]], hmm.categorical_emission(CASINO_B))
    config = hmm.default_config()
    config.update(emission="categorical", num_states=2, num_iters=15, tol=-np.inf)
    fitted, history = hmm.fit(jax.random.key(0), {"x": obs}, config, init=start)
    expected, stats = hmm.fit_em(start, obs, num_iters=15)
    assert history["num_iters"] == 15
    np.testing.assert_allclose(history["objective"], stats.objective, rtol=1e-6)
    for got, want in zip(jax.tree.leaves(fitted), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.isneginf(np.asarray(fitted.transition_logits)[0, 1])


def test_em_categorical_recovers_casino_and_is_monotone():
    true, (_, obs) = _casino(400, 16)
    lengths = np.full(16, 400)
    start = hmm.make_hmm(
        [0.5, 0.5],
        [[0.8, 0.2], [0.2, 0.8]],
        hmm.categorical_emission([[0.2] * 5 + [0.0], [0.1] * 5 + [0.5]]),
    )
    prior = hmm.HMMPrior(1.5, 1.5, 1.5)
    fitted, stats = hmm.fit_em(start, hmm.Sequences(obs, lengths), num_iters=60, prior=prior)
    objective = np.asarray(stats.objective)
    assert np.all(np.diff(objective) >= -1e-6 * np.abs(objective[1:]))
    # A zero emission probability is a structural zero: it stays zero.
    assert np.isneginf(fitted.emission.logits[0, 5])
    assert (
        np.sum(hmm.log_prob(fitted, hmm.Sequences(obs, lengths)))
        > np.sum(hmm.log_prob(true, hmm.Sequences(obs, lengths))) - 30
    )
    probs = np.asarray(jax.nn.softmax(fitted.emission.logits))
    assert probs[1, 5] > 0.35 and np.all(probs[1, :5] < 0.15)  # state 1 is the loaded die


@pytest.mark.parametrize("kind,tol", [("diag", 1e-2), ("categorical", 1e-3)])
def test_tol_stops_where_hmmlearn_stops(kind, tol):
    """The same data and start, maximum likelihood, hmmlearn's tol: EM stops at hmmlearn's
    iteration (its monitor_.iter) with the same log-likelihoods on the way. In float64 as
    hmmlearn: in float32 a gain near tol is resolved to ~1e-4 and the stop can move by an
    iteration or two where EM crawls."""
    with jax.enable_x64(True):
        _tol_against_hmmlearn(kind, tol)


def _tol_against_hmmlearn(kind, tol):
    rng = np.random.default_rng(21)
    d = 6 if kind == "categorical" else 2
    _, truth = _hmmlearn_model(kind, rng, 3, d)
    first, start = _hmmlearn_model(kind, rng, 3, d)
    _, obs = hmm.sample_with_states(jax.random.key(21), truth, 5, length=80)
    lengths = np.array([80, 64, 70, 33, 51])
    flat = np.concatenate([np.asarray(obs[i, :n]) for i, n in enumerate(lengths)])
    # A new estimator: hmmlearn builds its ConvergenceMonitor (n_iter, tol) in __init__.
    if kind == "categorical":
        ref = hmmlearn_hmm.CategoricalHMM(3, n_iter=500, tol=tol, init_params="", n_features=d)
        ref.emissionprob_ = first.emissionprob_
        flat = flat.reshape(-1, 1)
    else:
        ref = hmmlearn_hmm.GaussianHMM(
            3, "diag", n_iter=500, tol=tol, init_params="", covars_prior=0.0, min_covar=1e-12
        )
        ref.means_, ref.covars_ = first.means_, first._covars_
        flat = flat.astype(np.float64)
    ref.startprob_, ref.transmat_ = first.startprob_, first.transmat_
    ref.fit(flat, lengths)
    config = hmm.default_config()
    config.update(num_states=3, emission=kind, num_iters=500, tol=tol)
    config.prior.update(covariance_prior=0.0, covariance_pseudocount=0.0)
    _, history = hmm.fit(jax.random.key(0), {"x": hmm.Sequences(obs, lengths)}, config, init=start)
    assert 3 < ref.monitor_.iter < 500 and ref.monitor_.converged
    assert history["num_iters"] == ref.monitor_.iter and history["converged"]
    np.testing.assert_allclose(history["log_likelihood"], list(ref.monitor_.history), rtol=1e-9)


def test_em_step_buckets_equals_em_step_on_the_union():
    """Bucketed by length (each bucket padded to its own T, one with a masked row): the same
    step as em_step on all sequences padded to the longest."""
    rng = np.random.default_rng(12)
    _, params = _hmmlearn_model("diag", rng, 3, 2)
    start = hmm.init_gaussian_hmm(
        jax.random.key(3),
        *hmm.validate_sequences(
            params,
            hmm.sample_with_states(jax.random.key(2), params, 5, length=40)[1],
            np.full(5, 40),
        ),
        3,
        "mixture",
        2,
    )
    _, obs = hmm.sample_with_states(jax.random.key(7), params, 5, length=40)
    lengths = np.array([40, 12, 33, 7, 20])
    obs = np.where(np.arange(40)[None, :, None] < lengths[:, None, None], np.asarray(obs), 0.0)
    union, union_stats = hmm.em_step(start, {"obs": obs, "lengths": jnp.asarray(lengths)})
    short, long = [1, 3, 4], [0, 2]
    buckets = (
        {"obs": obs[short, :20], "lengths": jnp.asarray(lengths[short]), "mask": jnp.ones(3)},
        {
            "obs": obs[long + [1]],
            "lengths": jnp.asarray(lengths[long + [1]]),
            "mask": jnp.array([1.0, 1.0, 0.0]),
        },
    )
    new, stats = hmm.em_step_buckets(start, buckets)
    for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(union)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stats.objective, union_stats.objective, rtol=1e-5)


def test_class_buckets_hold_every_sequence_once():
    """Rows over the loop's `data` axis, classes on axis 1: every sequence lands once, in its
    class's column, in a bucket padded to that bucket's own longest sequence."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 30, 23).astype(np.int32)
    labels = rng.integers(0, 3, 23)
    feats = np.zeros((23, 30, 2), np.float32)
    for i, n in enumerate(lengths):
        feats[i, :n] = i + 1  # each sequence's frames carry its id
    split = hmm.class_buckets(feats, lengths, labels, 3, num_buckets=3)
    assert len({len(column) for column in split.values()}) == 1  # one row count: a split
    seen = []
    for j in range(3):
        obs, lens, weight = (split[f"{name}_{j}"] for name in ("obs", "lengths", "weight"))
        assert obs.shape[1:] == (3, lens[weight > 0].max(), 2)
        for i, c in zip(*np.nonzero(weight)):
            ident = int(obs[i, c, 0, 0]) - 1
            assert labels[ident] == c and lengths[ident] == lens[i, c]
            seen.append(ident)
    assert sorted(seen) == list(range(23))


def _labelled_sequences():
    """Two classes of 2-D sequences of varying length (class 1's means shifted by 3)."""
    rng = np.random.default_rng(5)
    _, truth = _hmmlearn_model("diag", rng, 2, 2)
    _, obs = hmm.sample_with_states(jax.random.key(5), truth, 21, length=30)
    labels = np.arange(21) % 2
    obs = np.asarray(obs) + 3.0 * labels[:, None, None]
    lengths = rng.integers(8, 31, 21).astype(np.int32)
    obs = np.where(np.arange(30)[None, :, None] < lengths[:, None, None], obs, 0.0)
    return obs.astype(np.float32), lengths, labels


def _loop_fit(tmp_path, obs, lengths, labels, start, tol, num_steps):
    from genjax_lab.core import data as data_lib
    from genjax_lab.core import loop as loop_lib

    config = loop_lib.base_config()
    config.update(num_steps=num_steps, log_every=1000, eval_every=0)
    family = hmm.EMFamily(starts=lambda batch: start, prior=hmm.HMMPrior(), tol=tol, per_class=True)
    split = hmm.class_buckets(obs, lengths, labels, 2, num_buckets=2)
    dataset = data_lib.Dataset({"train": split})
    return loop_lib.train_and_evaluate(config, tmp_path, family.as_family(), dataset)


def test_the_loop_family_fits_as_the_library_and_stops_by_its_rule(tmp_path):
    """Per-class EM on the loop (two length buckets, rows split over 8 devices) gives the
    library fit's class HMMs from the same start, and with `tol` stops at the iteration where
    the last class's fit stops (hmmlearn's rule: every class must have converged)."""
    obs, lengths, labels = _labelled_sequences()
    x = hmm.Sequences(obs, lengths)
    start = jax.vmap(lambda k, c: hmm.init_gaussian_hmm(k, obs, lengths, 2, mask=c))(
        jax.random.split(jax.random.key(1), 2),
        jnp.asarray(labels[None, :] == np.arange(2)[:, None], jnp.float32),
    )
    config = hmm.default_config()
    config.update(num_states=2, class_conditional=True, num_iters=6, tol=-np.inf)
    init = hmm.LabelledHMM(jnp.log(jnp.full(2, 0.5)), start)
    fitted, _ = hmm.fit(jax.random.key(0), {"x": x, "y": labels}, config, init=init)
    result = _loop_fit(tmp_path / "a", obs, lengths, labels, start, -np.inf, 6)
    assert result.step == 6
    ours, library = result.state["params"], fitted.hmms
    # Probabilities, not logits: a start probability of e^-63 in one is exactly 0 in the other.
    for a, b in [
        (jax.nn.softmax(ours.initial_logits), jax.nn.softmax(library.initial_logits)),
        (jax.nn.softmax(ours.transition_logits), jax.nn.softmax(library.transition_logits)),
        *zip(ours.emission, library.emission),
    ]:
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-4)

    config.update(num_iters=200, tol=0.5)
    _, history = hmm.fit(jax.random.key(0), {"x": x, "y": labels}, config, init=init)
    assert history["converged"].all() and history["num_iters"].min() > 2
    result = _loop_fit(tmp_path / "b", obs, lengths, labels, start, 0.5, 200)
    assert result.step == history["num_iters"].max()
    assert result.metrics["train_converged"] == 1.0


def test_empty_state_does_not_collapse():
    """A state far from all data gets no frames: the prior keeps it finite (MAP), where
    maximum likelihood would divide by zero."""
    obs = np.random.default_rng(8).normal(size=(4, 30, 2)).astype(np.float32)
    params = hmm.make_hmm(
        np.ones(3) / 3,
        np.ones((3, 3)) / 3,
        hmm.diag_gaussian_emission([[0, 0], [0.5, 0], [1e4, 1e4]], np.ones((3, 2))),
    )
    fitted, stats = hmm.fit_em(params, hmm.Sequences(obs, np.full(4, 30)), num_iters=5)
    for leaf in jax.tree.leaves(fitted):
        assert np.all(np.isfinite(np.asarray(leaf)) | np.isneginf(np.asarray(leaf)))
    assert np.all(np.isfinite(np.asarray(stats.objective)))


def test_restarts_gradient_fit_and_structural_zeros():
    rng = np.random.default_rng(9)
    _, truth = _hmmlearn_model("diag", rng, 3, 2)
    truth = truth._replace(emission=truth.emission._replace(means=truth.emission.means * 3))
    _, obs = hmm.sample_with_states(jax.random.key(9), truth, 8, length=100)
    lengths = np.full(8, 100)
    config = hmm.default_config()
    config.update(num_states=3, num_iters=20, tol=-np.inf)
    data = {"x": hmm.Sequences(obs, lengths)}
    _, one = hmm.fit(jax.random.key(10), data, config)
    config.num_inits = 3
    best, history = hmm.fit(jax.random.key(10), data, config)
    assert history["num_iters"] == 20 and not history["converged"]
    # Start 0 is the single start's: the best of three is at least as good.
    assert history["objective"][-1] >= one["objective"][-1]
    true_ll = np.sum(hmm.log_prob(truth, hmm.Sequences(obs, lengths)))
    assert np.sum(hmm.log_prob(best, hmm.Sequences(obs, lengths))) > true_ll - 5.0
    # Gradient fitting of a left-to-right model: loss falls, -inf logits stay -inf.
    start = hmm.init_gaussian_hmm(
        jax.random.key(11),
        *hmm.validate_sequences(truth, obs, lengths),
        3,
        "full",
        left_to_right=True,
    )
    fitted, losses = hmm.fit_gradient(start, hmm.Sequences(obs, lengths), 40)
    losses = np.asarray(losses)
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0] - 0.1
    np.testing.assert_array_equal(
        np.isneginf(fitted.transition_logits), np.isneginf(start.transition_logits)
    )


# ------------------------------------------------------------- scale, padding


def test_parallel_equals_sequential():
    rng = np.random.default_rng(12)
    pi, a, ll = _random_potentials(rng, 5, 300, b=4)
    args = (jnp.log(pi), jnp.log(a), jnp.asarray(ll, jnp.float32), jnp.array([300, 257, 64, 3]))
    seq, par = inf.hmm_smoother(*args), inf.hmm_smoother(*args, parallel=True)
    np.testing.assert_allclose(par.log_likelihood, seq.log_likelihood, rtol=1e-5)
    np.testing.assert_allclose(par.posteriors, seq.posteriors, atol=1e-4)
    np.testing.assert_allclose(par.transition_counts, seq.transition_counts, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(
        inf.hmm_filter(*args, parallel=True).filtered_probs,
        inf.hmm_filter(*args).filtered_probs,
        atol=1e-4,
    )
    vs, vp = inf.hmm_viterbi(*args), inf.hmm_viterbi(*args, parallel=True)
    np.testing.assert_array_equal(vp.states, vs.states)
    np.testing.assert_allclose(vp.log_prob, vs.log_prob, rtol=1e-5)


def test_long_sequence_with_tiny_probabilities():
    """T = 100,000, emission probabilities around 1e-300 and a 1e-300 transition: finite
    everywhere and equal to a float64 log-space forward pass."""
    rng = np.random.default_rng(13)
    t, k = 100_000, 3
    pi = np.array([0.5, 0.5 - 1e-300, 1e-300])
    a = np.array([[0.98, 0.02 - 1e-300, 1e-300], [0.03, 0.97, 0.0], [0.5, 0.25, 0.25]])
    ll = np.log(1e-300) + rng.normal(size=(t, k)) * 3.0  # p(y | x) ~ 1e-300
    with np.errstate(divide="ignore"):
        ref = _numpy_log_forward(pi, a, ll)
    params = hmm.make_hmm(pi, a, hmm.categorical_emission(np.eye(k)))  # validates tiny probs
    args = (
        jax.nn.log_softmax(params.initial_logits),
        jax.nn.log_softmax(params.transition_logits),
        jnp.asarray(ll, jnp.float32),
    )
    smooth = inf.hmm_smoother(*args)
    # float32 log-likelihoods ~ -7e7: the inputs alone are rounded to ~4e-8 relative.
    np.testing.assert_allclose(smooth.log_likelihood, ref, rtol=2e-6)
    assert np.all(np.isfinite(np.asarray(smooth.posteriors)))
    np.testing.assert_allclose(np.asarray(smooth.posteriors).sum(-1), 1.0, atol=1e-4)
    # The parallel scan's scaled matrix products (its smoother and Viterbi compile slowly
    # at this length on CPU; they are checked against the sequential ones below).
    parallel = inf.hmm_filter(*args, parallel=True)
    np.testing.assert_allclose(parallel.log_likelihood, ref, rtol=2e-6)
    assert np.all(np.isfinite(np.asarray(parallel.filtered_probs)))
    vit = inf.hmm_viterbi(*args)
    assert np.isfinite(float(vit.log_prob)) and np.all(np.asarray(vit.states) >= 0)
    sample = inf.hmm_posterior_sample(jax.random.key(0), *args)
    assert np.all((np.asarray(sample) >= 0) & (np.asarray(sample) < k))


def test_observation_far_below_every_reachable_state_uses_the_log_space_pass():
    """Left-to-right chain from state 0, one step at a time: state 3 cannot be reached by
    t = 2, where the observation is 300 nats likelier under it than under any reachable
    state. Structural zeros rule out the probability-space pass (a flushed state may be the
    only way on), so the log-space pass runs and every output equals float64 enumeration.
    The same outlier under an ergodic chain keeps the fast pass, also exact."""
    pi = np.array([1.0, 0.0, 0.0, 0.0])
    a = np.array(
        [[0.6, 0.4, 0.0, 0.0], [0.0, 0.7, 0.3, 0.0], [0.0, 0.0, 0.8, 0.2], [0.0, 0.0, 0.0, 1.0]]
    )
    ll = np.random.default_rng(3).normal(size=(6, 4))
    ll[2] = [-300.0, -305.0, -310.0, 0.0]
    valid = jnp.ones((6, 1), bool)
    ergodic = 0.9 * a + 0.1 / 4
    for trans, fast in ((a, False), (ergodic, True)):
        with np.errstate(divide="ignore"):
            logz, post, counts, _, _ = _enumerate(pi, trans, ll)
            args = tuple(jnp.asarray(x, jnp.float32) for x in (np.log(pi), np.log(trans), ll))
        assert bool(inf._forward_scaled(args[0], args[1], args[2][:, None], valid, 1)[3]) == fast
        smooth = inf.hmm_smoother(*args)
        np.testing.assert_allclose(smooth.log_likelihood, logz, rtol=1e-6)
        np.testing.assert_allclose(smooth.posteriors, post, atol=1e-5)
        np.testing.assert_allclose(smooth.transition_counts, counts, atol=1e-5)


@jax.jit
def _all_outputs(params, obs, lengths):
    lpi, la = (
        jax.nn.log_softmax(params.initial_logits),
        jax.nn.log_softmax(params.transition_logits),
    )
    ll = hmm.log_emission(params, obs)
    _, stats = hmm.em_step(params, {"obs": obs, "lengths": lengths})
    return (
        inf.hmm_smoother(lpi, la, ll, lengths),
        inf.hmm_viterbi(lpi, la, ll, lengths),
        stats.log_likelihood,
    )


def test_variable_lengths_equal_one_by_one():
    params = _hmmlearn_model("full", np.random.default_rng(14), 3, 2)[1]
    _, obs = hmm.sample_with_states(jax.random.key(14), params, 3, length=40)
    lengths = np.array([40, 17, 1])
    garbage = np.array(obs)
    for i, n in enumerate(lengths):
        garbage[i, n:] = np.nan  # padding content must not matter
    padded, _ = hmm.validate_sequences(params, garbage, lengths)
    smooth, vit, em_ll = _all_outputs(params, padded, jnp.asarray(lengths))
    np.testing.assert_allclose(
        hmm.log_prob(params, hmm.Sequences(garbage, lengths)), smooth.log_likelihood, rtol=1e-6
    )
    for i, n in enumerate(lengths):
        one_smooth, one_vit, one_em_ll = _all_outputs(params, obs[i : i + 1, :n], jnp.array([n]))
        np.testing.assert_allclose(
            smooth.log_likelihood[i], one_smooth.log_likelihood[0], rtol=1e-6
        )
        np.testing.assert_allclose(smooth.posteriors[i, :n], one_smooth.posteriors[0], atol=1e-6)
        np.testing.assert_allclose(
            smooth.transition_counts[i], one_smooth.transition_counts[0], atol=1e-5
        )
        np.testing.assert_array_equal(vit.states[i, :n], one_vit.states[0])
        np.testing.assert_allclose(vit.log_prob[i], one_vit.log_prob[0], rtol=1e-6)
        em_ll -= one_em_ll
    np.testing.assert_allclose(em_ll, 0.0, atol=1e-3)
    # The mask removes a sequence exactly like leaving it out.
    masked, _ = hmm.em_step(
        params, {"obs": padded, "lengths": jnp.asarray(lengths), "mask": jnp.array([1.0, 1.0, 0.0])}
    )
    dropped, _ = hmm.em_step(params, {"obs": padded[:2], "lengths": jnp.asarray(lengths[:2])})
    for x, y in zip(jax.tree.leaves(masked), jax.tree.leaves(dropped)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_em_step_sharded_over_8_devices_equals_one_device():
    """Batch split over a 'data' mesh of 8 devices: the statistics are reduced across
    devices inside the jitted step. Agreement to 1e-5 relative (reduction order only)."""
    assert jax.device_count() == 8
    params = _hmmlearn_model("diag", np.random.default_rng(15), 3, 2)[1]
    _, obs = hmm.sample_with_states(jax.random.key(15), params, 16, length=64)
    lengths = jnp.asarray(np.random.default_rng(16).integers(20, 65, 16), jnp.int32)
    mask = jnp.ones(16).at[-2:].set(0.0)
    batch = {"obs": obs, "lengths": lengths, "mask": mask}
    single, single_stats = hmm.em_step(params, batch)
    mesh = jax.make_mesh((8,), ("data",))
    sharded_batch = jax.device_put(batch, NamedSharding(mesh, P("data")))
    assert len(sharded_batch["obs"].sharding.device_set) == 8
    multi, multi_stats = hmm.em_step(params, sharded_batch)
    np.testing.assert_allclose(multi_stats.log_likelihood, single_stats.log_likelihood, rtol=1e-6)
    for x, y in zip(jax.tree.leaves(multi), jax.tree.leaves(single)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------- model pieces


def test_sampling_frequencies():
    _, (states, obs) = _casino(2000, 8)
    states, obs = np.asarray(states), np.asarray(obs)
    trans = np.zeros((2, 2))
    np.add.at(trans, (states[:, :-1].ravel(), states[:, 1:].ravel()), 1.0)
    np.testing.assert_allclose(trans / trans.sum(1, keepdims=True), CASINO_A, atol=0.02)
    for s in (0, 1):
        freq = np.bincount(obs[states == s], minlength=6) / np.sum(states == s)
        np.testing.assert_allclose(freq, CASINO_B[s], atol=0.03)
    mix = hmm.make_hmm(
        [1.0, 0.0],
        np.eye(2),
        hmm.gaussian_mixture_emission(
            [[0.3, 0.7], [0.5, 0.5]], [[[-5.0], [5.0]], [[0.0], [0.0]]], np.full((2, 2, 1), 0.25)
        ),
    )
    _, y = hmm.sample_with_states(jax.random.key(1), mix, 1, length=4000)
    np.testing.assert_allclose(np.mean(np.asarray(y) > 0), 0.7, atol=0.03)


def test_emission_log_likelihoods_against_scipy():
    from scipy import stats

    rng = np.random.default_rng(17)
    means, root = rng.normal(size=(2, 3)), rng.normal(size=(2, 3, 3))
    cov = root @ np.swapaxes(root, 1, 2) + np.eye(3)
    y = rng.normal(size=(5, 3))
    full = hmm.emission_log_prob(
        hmm.full_gaussian_emission(means, cov), jnp.asarray(y, jnp.float32)
    )
    ref = np.stack([stats.multivariate_normal(means[k], cov[k]).logpdf(y) for k in range(2)], -1)
    np.testing.assert_allclose(full, ref, rtol=1e-5)
    np.testing.assert_allclose(
        hmm.covariances(hmm.full_gaussian_emission(means, cov)), cov, rtol=1e-5
    )
    w, var = rng.dirichlet(np.ones(2), 2), rng.uniform(0.5, 2, (2, 2, 3))
    mix = hmm.emission_log_prob(
        hmm.gaussian_mixture_emission(w, root[:, :2], var), jnp.asarray(y, jnp.float32)
    )
    ref = np.stack(
        [
            np.log(
                sum(
                    w[k, m] * stats.multivariate_normal(root[k, m], np.diag(var[k, m])).pdf(y)
                    for m in range(2)
                )
            )
            for k in range(2)
        ],
        -1,
    )
    np.testing.assert_allclose(mix, ref, rtol=1e-5)


def test_class_stacks_run_one_pass_per_class_and_equal_each_class_alone():
    """Scoring and smoothing a class stack keep the per-model choice between the fast and the
    log-space pass a real branch (a cond, which vmap would turn into a select running both:
    2.3x slower), and each class's numbers equal that HMM scored alone."""
    ergodic = hmm.make_hmm([0.5, 0.5], CASINO_A, hmm.categorical_emission(CASINO_B))
    left_to_right = hmm.make_hmm(
        [1.0, 0.0], [[0.9, 0.1], [0.0, 1.0]], hmm.categorical_emission(CASINO_B)
    )
    labelled = hmm.make_labelled(hmm.stack_hmms([ergodic, left_to_right]), [0.4, 0.6])
    x = hmm.Sequences(np.array([[5, 5, 0, 1, 2], [0, 1, 2, 3, 4], [3, 3, 3, 3, 3]]), [5, 3, 4])
    obs, lengths = jnp.asarray(x.obs), jnp.asarray(x.lengths)
    jaxpr = str(jax.make_jaxpr(hmm.class_log_likelihoods)(labelled.hmms, obs, lengths))
    assert " cond[" in jaxpr, "the pass choice became a select: both passes run per class"
    per_class = np.asarray(hmm.class_log_likelihoods(labelled.hmms, obs, lengths))
    posterior = np.asarray(hmm.posterior(labelled, x))  # [B, T, C, K]
    for c, alone in enumerate((ergodic, left_to_right)):
        np.testing.assert_allclose(per_class[:, c], hmm.log_prob(alone, x), rtol=1e-6)
        smoothed = np.asarray(hmm.posterior(alone, x))
        class_post = np.exp(
            np.asarray(hmm.log_prob(labelled, x, y=np.full(3, c)))
            + np.log([0.4, 0.6][c])
            - np.asarray(hmm.log_prob(labelled, x))
        )
        np.testing.assert_allclose(
            posterior[:, :, c], class_post[:, None, None] * smoothed, rtol=1e-5, atol=1e-7
        )


def test_classifier_bayes_rule():
    fair = hmm.make_hmm([1.0], [[1.0]], hmm.categorical_emission(CASINO_B[:1]))
    loaded = hmm.make_hmm([1.0], [[1.0]], hmm.categorical_emission(CASINO_B[1:]))
    clf = hmm.classifier(hmm.make_labelled(hmm.stack_hmms([fair, loaded]), [0.3, 0.7]))
    x = hmm.Sequences(np.array([[5, 5, 5, 0], [0, 1, 2, 3]]), np.array([3, 4]))
    logpost = np.asarray(clf.predict_log_proba(x))
    joint = np.array(
        [
            [3 * np.log(1 / 6) + np.log(0.3), 3 * np.log(0.5) + np.log(0.7)],
            [4 * np.log(1 / 6) + np.log(0.3), 4 * np.log(0.1) + np.log(0.7)],
        ]
    )
    np.testing.assert_allclose(
        logpost, joint - np.logaddexp.reduce(joint, 1, keepdims=True), rtol=1e-5
    )
    np.testing.assert_array_equal(clf.predict(x), [1, 0])
    # Fitting: one casino-like HMM per class, learned from labelled sequences at once.
    a = hmm.make_hmm([0.5, 0.5], CASINO_A, hmm.categorical_emission(CASINO_B))
    b = hmm.make_hmm([0.5, 0.5], CASINO_A, hmm.categorical_emission(CASINO_B[::-1, ::-1]))
    xa, xb = (hmm.sample(jax.random.key(k), m, 20, length=100) for k, m in ((1, a), (2, b)))
    x, y = jnp.concatenate([xa, xb]), np.repeat([0, 1], 20)
    start = hmm.make_hmm(
        [0.5, 0.5],
        [[0.9, 0.1], [0.1, 0.9]],
        hmm.categorical_emission(np.random.default_rng(0).dirichlet(np.ones(6) * 5, 2)),
    )
    config = hmm.default_config()
    config.update(emission="categorical", class_conditional=True, num_iters=30, tol=-np.inf)
    config.prior.update(
        initial_concentration=1.1, transition_concentration=1.1, emission_concentration=1.1
    )
    init = hmm.make_labelled(hmm.stack_hmms([start, start]), [0.5, 0.5])
    fitted, history = hmm.fit(jax.random.key(0), {"x": x, "y": y}, config, init=init)
    assert history["objective"].shape == (2, 30)
    np.testing.assert_allclose(np.exp(fitted.log_prior), [0.5, 0.5])
    ta, tb = (hmm.sample(jax.random.key(k), m, 20, length=100) for k, m in ((3, a), (4, b)))
    pred = hmm.classifier(fitted).predict(jnp.concatenate([ta, tb]))
    assert np.mean(np.asarray(pred) == y) >= 0.9
    # Joint draws of a class, and from the class prior.
    given = hmm.sample(jax.random.key(5), fitted, 6, y=np.array([0, 1, 0, 1, 0, 1]), length=50)
    np.testing.assert_array_equal(hmm.classifier(fitted).predict(given), [0, 1, 0, 1, 0, 1])


# ---------------------------------------------------------------- bad input


def test_bad_input_names_the_problem():
    good = hmm.categorical_emission(CASINO_B)
    with pytest.raises(ValueError, match="transition_probs rows must sum to 1, row 1 sums to 0.9"):
        hmm.make_hmm([0.5, 0.5], [[0.9, 0.1], [0.1, 0.8]], good)
    with pytest.raises(ValueError, match="transition_probs must have shape"):
        hmm.make_hmm([0.5, 0.5], np.eye(3), good)
    with pytest.raises(ValueError, match="initial_probs must be non-negative"):
        hmm.make_hmm([1.5, -0.5], CASINO_A, good)
    with pytest.raises(ValueError, match="emission_probs rows must sum to 1"):
        hmm.categorical_emission([[0.5, 0.6]])
    with pytest.raises(ValueError, match="variances must be finite and positive"):
        hmm.diag_gaussian_emission(np.zeros((2, 2)), [[1, 1], [1, 0]])
    with pytest.raises(ValueError, match="covariances must be positive definite"):
        hmm.full_gaussian_emission(np.zeros((1, 2)), [[[1, 2], [2, 1]]])
    params = hmm.make_hmm([0.5, 0.5], CASINO_A, good)
    with pytest.raises(ValueError, match="lengths must be >= 1"):
        hmm.log_prob(params, hmm.Sequences(np.zeros((2, 5), int), [5, 0]))
    with pytest.raises(ValueError, match="lengths must be <= T"):
        hmm.log_prob(params, hmm.Sequences(np.zeros((2, 5), int), [5, 6]))
    with pytest.raises(ValueError, match=r"lengths must have shape \[B\]"):
        hmm.log_prob(params, hmm.Sequences(np.zeros((2, 5), int), [5]))
    with pytest.raises(ValueError, match=r"obs symbols must lie in \[0, 6\)"):
        hmm.log_prob(params, hmm.Sequences(np.full((1, 5), 6), [5]))
    with pytest.raises(ValueError, match=r"obs must be \[B, T\] integers"):
        hmm.log_prob(params, hmm.Sequences(np.zeros((5,), int), [5]))
    gauss = hmm.make_hmm(
        [0.5, 0.5], CASINO_A, hmm.diag_gaussian_emission(np.zeros((2, 3)), np.ones((2, 3)))
    )
    bad = np.zeros((2, 4, 3))
    bad[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match=r"obs contains NaN or inf \(sequence 1, step 2\)"):
        hmm.fit_em(gauss, hmm.Sequences(bad, [4, 4]), num_iters=1)
    np.testing.assert_allclose(
        hmm.log_prob(gauss, hmm.Sequences(bad, [4, 2]))[1],
        hmm.log_prob(gauss, hmm.Sequences(bad[:1], [2]))[0],
    )
    with pytest.raises(ValueError, match="obs must have D = 3 features"):
        hmm.log_prob(gauss, hmm.Sequences(np.zeros((2, 4, 2)), [4, 4]))
    config = hmm.default_config()
    config.update(emission="categorical", class_conditional=True, num_classes=2)
    with pytest.raises(ValueError, match=r"y must be class indices in \[0, 2\)"):
        hmm.fit(jax.random.key(0), {"x": np.zeros((2, 5), int), "y": [0, 2]}, config)
