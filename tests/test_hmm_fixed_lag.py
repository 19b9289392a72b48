"""Fixed-lag smoothing and posterior-marginal decoding of HMMs.

`hmm_fixed_lag_smoother` against dynamax's hmm_fixed_lag_smoother on random HMMs, a float64
brute-force oracle (every state path enumerated, each prefix y_{0:t} scored), and the full
smoother run on every prefix (a property test over K, T and lag); lag 0 (the filter) and
lag >= T (the full smoother in the last window); 10,000 steps of ~1e-300 probabilities; a
padded batch against each sequence alone; the model-level `online.fixed_lag_smoother` for
each emission type; `hmm_marginal_mode` against enumeration and hmmlearn's
decode(algorithm="map"). Chains with a structural zero run the log-space recursions, the
others the probability-space ones, and both are covered.
"""

import itertools

import jax.numpy as jnp
import numpy as np
import pytest
from dynamax.hidden_markov_model import hmm_fixed_lag_smoother as dynamax_fixed_lag
from hmmlearn import hmm as hmmlearn_hmm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genjax_lab.inference import hmm as inf
from genjax_lab.models import hmm
from genjax_lab.models.hmm import online


def _random_chain(rng, k: int, structural_zeros: bool = False):
    """pi [K] and A [K, K]; with structural_zeros each state cannot move to the next one
    (A[i, i + 1 mod K] = 0), which sends the recursions to log space."""
    pi = rng.dirichlet(np.ones(k))
    a = rng.dirichlet(np.ones(k), k)
    if structural_zeros and k > 1:
        a[np.arange(k), (np.arange(k) + 1) % k] = 0.0
        a /= a.sum(1, keepdims=True)
    return pi, a


def _potentials(pi, a, ll):
    """float32 (log pi, log A, log-likelihoods), zeros to -inf."""
    with np.errstate(divide="ignore"):
        return tuple(jnp.asarray(v, jnp.float32) for v in (np.log(pi), np.log(a), ll))


def _prefix_marginals(pi, a, ll):
    """float64 brute force over all K^T state paths of one [T, K] sequence: (m [T, T, K]
    with m[t, s] = p(x_s | y_{0:t}) for s <= t and zero for s > t, log p(y_{0:T-1})). A
    path's weight with the observations up to t is p(x, y_{0:t}), since its later
    transitions sum to one over the later states."""
    t, k = ll.shape
    paths = np.array(list(itertools.product(range(k), repeat=t)))  # [P, T]
    with np.errstate(divide="ignore"):
        start = np.log(pi[paths[:, 0]]) + np.log(a[paths[:, :-1], paths[:, 1:]]).sum(1)
    log_joint = start[:, None] + np.cumsum(ll[np.arange(t), paths], axis=1)  # [P, T]
    weights = np.exp(log_joint - log_joint.max(0))
    weights /= weights.sum(0)
    m = np.einsum("pt,psk->tsk", weights, paths[:, :, None] == np.arange(k))
    seen = np.arange(t)[None, :, None] <= np.arange(t)[:, None, None]
    return np.where(seen, m, 0.0), np.logaddexp.reduce(log_joint[:, -1])


def _window(m, lag: int):
    """The oracle's window [T, lag + 1, K]: at [t, i], p(x_{t-lag+i} | y_{0:t}), zero where
    t - lag + i < 0."""
    t, _, k = m.shape
    window = np.zeros((t, lag + 1, k))
    for end, i in itertools.product(range(t), range(lag + 1)):
        if end - lag + i >= 0:
            window[end, i] = m[end, end - lag + i]
    return window


@pytest.mark.parametrize("structural_zeros", [False, True])
def test_equals_brute_force_on_every_prefix(structural_zeros):
    """Every output against float64 enumeration for lags 0, 2, T - 1, T + 2. Edge cases: lag 0 is
    hmm_filter; with lag >= T no state lies lag steps back (smoothed_probs all zero) and the
    last window holds the full smoother, hmm_smoother's posteriors."""
    rng = np.random.default_rng(1)
    k, t = 3, 7
    pi, a = _random_chain(rng, k, structural_zeros)
    ll = rng.normal(size=(t, k)) * 2.0
    m, log_likelihood = _prefix_marginals(pi, a, ll)
    potentials = _potentials(pi, a, ll)
    assert bool(inf._scaled_is_exact(potentials[1])) != structural_zeros
    results = {}
    for lag in (0, 2, t - 1, t + 2):
        results[lag] = result = inf.hmm_fixed_lag_smoother(*potentials, lag, window=True)
        window = _window(m, lag)
        np.testing.assert_allclose(result.window_probs, window, atol=2e-6)
        np.testing.assert_allclose(result.smoothed_probs, window[:, 0], atol=2e-6)
        np.testing.assert_allclose(result.filtered_probs, window[:, -1], atol=2e-6)
        np.testing.assert_allclose(result.log_likelihood, log_likelihood, rtol=1e-6)
    filtered = inf.hmm_filter(*potentials).filtered_probs
    np.testing.assert_allclose(results[0].smoothed_probs, filtered, atol=1e-6)
    beyond = results[t + 2]
    assert not np.any(beyond.smoothed_probs)
    full = inf.hmm_smoother(*potentials).posteriors
    # At t = T - 1 slot i holds x_{i-3}: slots 0 to 2 lie before x_0.
    np.testing.assert_allclose(beyond.window_probs[-1, 3:], full, atol=2e-6)


@pytest.mark.parametrize("structural_zeros", [False, True])
def test_matches_dynamax(structural_zeros):
    """dynamax's window_size W is lag W - 1 with window=True: its smoothed_probs [T, W, K] is
    window_probs and its filtered_probs[:, -1] is filtered_probs. Its marginal_loglik[t] sums
    the window's log normalisers: at the last step of a window as long as the sequence, the
    whole log-likelihood. (W = 1, the filter, fails inside dynamax 1.0.3: it reads the last
    entry of an emptied window; lag 0 is checked against hmm_filter above.)"""
    rng = np.random.default_rng(2)
    k, t = 4, 30
    pi, a = _random_chain(rng, k, structural_zeros)
    potentials = _potentials(pi, a, rng.normal(size=(t, k)) * 2.0)
    probs = (jnp.asarray(pi, jnp.float32), jnp.asarray(a, jnp.float32), potentials[2])
    for lag in (2, t - 1):
        ref = dynamax_fixed_lag(*probs, lag + 1)
        ours = inf.hmm_fixed_lag_smoother(*potentials, lag, window=True)
        np.testing.assert_allclose(ours.window_probs, ref.smoothed_probs, atol=1e-5)
        np.testing.assert_allclose(ours.smoothed_probs, ref.smoothed_probs[:, 0], atol=1e-5)
        np.testing.assert_allclose(ours.filtered_probs, ref.filtered_probs[:, -1], atol=1e-5)
    np.testing.assert_allclose(ours.log_likelihood, ref.marginal_loglik[-1], rtol=1e-5)


@settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    k=st.integers(1, 4),
    length=st.integers(1, 8),
    lag=st.integers(0, 9),
    structural_zeros=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_property_equals_the_smoother_on_each_prefix(k, length, lag, structural_zeros, seed):
    """For any K, length and lag, smoothed_probs[t] is entry t - lag of hmm_smoother run on
    the prefix y_{0:t} (one batched call: row t holds the prefix of length t + 1), zero for
    t < lag, and filtered_probs[t] is its entry t. One sequence padded to T = 8, so each
    (K, lag) compiles once."""
    t = 8
    rng = np.random.default_rng(seed)
    pi, a = _random_chain(rng, k, structural_zeros)
    log_pi, log_a, ll = _potentials(pi, a, rng.normal(size=(t, k)) * 3.0)
    prefixes = inf.hmm_smoother(
        log_pi, log_a, jnp.broadcast_to(ll, (t, t, k)), jnp.arange(1, t + 1)
    ).posteriors
    prefixes = np.asarray(prefixes)  # [prefix, step, K]
    result = inf.hmm_fixed_lag_smoother(log_pi, log_a, ll[None], lag, jnp.array([length]))
    steps = np.arange(t)
    expected = prefixes[steps, np.maximum(steps - lag, 0)]
    expected = np.where(((steps >= lag) & (steps < length))[:, None], expected, 0.0)
    np.testing.assert_allclose(result.smoothed_probs[0], expected, atol=1e-5)
    expected = np.where((steps < length)[:, None], prefixes[steps, steps], 0.0)
    np.testing.assert_allclose(result.filtered_probs[0], expected, atol=1e-5)


@pytest.mark.parametrize("tiny_transitions", [False, True])
def test_long_sequence_with_tiny_probabilities_stays_finite(tiny_transitions):
    """T = 10,000 with emission probabilities around 1e-300: an ergodic chain (probability
    space), and one with 1e-300 transitions and a structural zero (log space), lag 100 (a
    product of 100 unscaled likelihoods, as dynamax's window keeps, leaves the float32 range).
    Every estimate is a finite distribution (zero before the lag) and equals the smoother on
    the prefix at the middle and last steps."""
    rng = np.random.default_rng(3)
    t, k, lag = 10_000, 3, 100
    pi = np.array([0.5, 0.5 - 1e-300, 1e-300])
    if tiny_transitions:
        a = np.array([[0.98, 0.02 - 1e-300, 1e-300], [0.03, 0.97, 0.0], [0.5, 0.25, 0.25]])
    else:
        a = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])
    ll = np.log(1e-300) + rng.normal(size=(t, k)) * 3.0
    potentials = _potentials(pi, a, ll)
    assert bool(inf._scaled_is_exact(potentials[1])) != tiny_transitions
    result = inf.hmm_fixed_lag_smoother(*potentials, lag)
    assert result.window_probs is None
    smoothed = np.asarray(result.smoothed_probs)
    assert np.all(np.isfinite(smoothed)) and np.all(np.isfinite(result.filtered_probs))
    assert np.isfinite(float(result.log_likelihood))
    assert not np.any(smoothed[:lag])
    np.testing.assert_allclose(smoothed[lag:].sum(-1), 1.0, atol=1e-5)
    ends = np.array([t // 2, t - 1])
    prefixes = inf.hmm_smoother(
        potentials[0], potentials[1], jnp.broadcast_to(potentials[2], (2, t, k)), ends + 1
    ).posteriors
    np.testing.assert_allclose(smoothed[ends], prefixes[np.arange(2), ends - lag], atol=1e-4)


def test_padded_batch_equals_each_sequence_alone():
    """Lengths 12, 7 and 1 with wild values in the padding: every output of each sequence
    equals the sequence run alone, and the padding is zero; the marginal modes are the
    argmax of the batch's smoothed posteriors, -1 on padding."""
    rng = np.random.default_rng(4)
    k, t, lag = 3, 12, 3
    pi, a = _random_chain(rng, k)
    ll = rng.normal(size=(3, t, k)) * 2.0
    lengths = np.array([12, 7, 1])
    for i, n in enumerate(lengths):
        ll[i, n:] = rng.normal(size=(t - n, k)) * 50.0
    log_pi, log_a, ll = _potentials(pi, a, ll)
    batch = inf.hmm_fixed_lag_smoother(log_pi, log_a, ll, lag, jnp.asarray(lengths), window=True)
    modes = inf.hmm_marginal_mode(log_pi, log_a, ll, jnp.asarray(lengths))
    posteriors = inf.hmm_smoother(log_pi, log_a, ll, jnp.asarray(lengths)).posteriors
    real = np.arange(t)[None, :] < lengths[:, None]
    np.testing.assert_array_equal(modes, np.where(real, np.argmax(posteriors, axis=-1), -1))
    for i, n in enumerate(lengths):
        alone = inf.hmm_fixed_lag_smoother(log_pi, log_a, ll[i, :n], lag, window=True)
        np.testing.assert_allclose(batch.log_likelihood[i], alone.log_likelihood, rtol=1e-6)
        for field in ("filtered_probs", "smoothed_probs", "window_probs"):
            ours = getattr(batch, field)
            np.testing.assert_allclose(ours[i, :n], getattr(alone, field), atol=1e-6)
            assert not np.any(ours[i, n:])


def _emission(kind: str, rng, k: int) -> hmm.Emission:
    """Symbols, or frames from a two-component diagonal Gaussian mixture per state."""
    if kind == "categorical":
        return hmm.categorical_emission(rng.dirichlet(np.ones(4), k))
    m, d = 2, 2
    return hmm.gaussian_mixture_emission(
        rng.dirichlet(np.ones(m), k),
        rng.normal(size=(k, m, d)) * 2.0,
        rng.uniform(0.5, 2, (k, m, d)),
    )


@pytest.mark.parametrize("kind", ["categorical", "mixture"])
def test_model_level_smoother_for_each_emission(kind):
    """online.fixed_lag_smoother(params, x, lag) on padded sequences: smoothed_probs[:, t] is
    hmm.posterior of the prefix x_{0:t} (the same sequences cut at t + 1) at t - lag, and
    filtered_probs[:, t] its last entry."""
    rng = np.random.default_rng(5)
    k, t, lag = 3, 10, 2
    params = hmm.make_hmm(*_random_chain(rng, k), _emission(kind, rng, k))
    if kind == "categorical":
        x = rng.integers(0, 4, (2, t)).astype(np.int32)
    else:
        x = (rng.normal(size=(2, t, 2)) * 2.0).astype(np.float32)
    lengths = np.array([t, 6])
    result = online.fixed_lag_smoother(params, hmm.Sequences(x, lengths), lag)
    for step in range(t):
        prefix = hmm.posterior(params, hmm.Sequences(x, np.minimum(lengths, step + 1)))
        real = step < lengths
        np.testing.assert_allclose(result.filtered_probs[real, step], prefix[real, step], atol=1e-5)
        if step >= lag:
            np.testing.assert_allclose(
                result.smoothed_probs[real, step], prefix[real, step - lag], atol=1e-5
            )
    assert not np.any(result.smoothed_probs[1, lengths[1] :])


def test_marginal_mode_against_enumeration_and_hmmlearn():
    """argmax_k p(x_t = k | y) of float64 enumeration, hmmlearn's decode(algorithm="map") on
    the same categorical HMM, and the parallel smoother's modes agree."""
    rng = np.random.default_rng(7)
    k, t, v = 3, 7, 4
    pi, a = _random_chain(rng, k)
    b = rng.dirichlet(np.ones(v), k)
    symbols = rng.integers(0, v, t)
    ll = np.log(b[:, symbols].T)
    m, _ = _prefix_marginals(pi, a, ll)
    potentials = _potentials(pi, a, ll)
    modes = np.asarray(inf.hmm_marginal_mode(*potentials))
    np.testing.assert_array_equal(modes, np.argmax(m[-1], axis=-1))
    ref = hmmlearn_hmm.CategoricalHMM(k, init_params="")
    ref.startprob_, ref.transmat_, ref.emissionprob_ = pi, a, b
    np.testing.assert_array_equal(modes, ref.decode(symbols[:, None], algorithm="map")[1])
    np.testing.assert_array_equal(modes, inf.hmm_marginal_mode(*potentials, parallel=True))


def test_marginal_modes_may_form_an_impossible_path():
    """p(x_0, x_1) = 0.3 at (0, 1) and (0, 2), 0.2 at (1, 0) and (2, 0): the marginal modes
    are 0 then 0, a transition that A[0, 0] = 0 forbids; Viterbi's path is (0, 1)."""
    pi = np.array([0.6, 0.2, 0.2])
    a = np.array([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    potentials = _potentials(pi, a, np.zeros((2, 3)))
    np.testing.assert_array_equal(inf.hmm_marginal_mode(*potentials), [0, 0])
    np.testing.assert_array_equal(inf.hmm_viterbi(*potentials).states, [0, 1])


def test_bad_input_names_the_argument():
    rng = np.random.default_rng(6)
    pi, a = _random_chain(rng, 2)
    potentials = _potentials(pi, a, np.zeros((4, 2)))
    params = hmm.make_hmm(pi, a, hmm.categorical_emission([[0.5, 0.5], [0.9, 0.1]]))
    symbols = np.zeros((1, 4), np.int32)
    for lag in (-1, 1.5, True, None):
        with pytest.raises(ValueError, match="lag"):
            inf.hmm_fixed_lag_smoother(*potentials, lag)
        with pytest.raises(ValueError, match="lag"):
            online.fixed_lag_smoother(params, symbols, lag)
    with pytest.raises(ValueError, match="log_likelihoods"):
        inf.hmm_fixed_lag_smoother(*potentials[:2], jnp.zeros((4, 3)), 1)
    with pytest.raises(ValueError, match="lengths"):
        inf.hmm_fixed_lag_smoother(*potentials[:2], jnp.zeros((1, 4, 2)), 1, jnp.array([5]))
    with pytest.raises(ValueError, match="obs"):
        online.fixed_lag_smoother(params, np.full((1, 4), 2, np.int32), 1)
    labelled = hmm.make_labelled(hmm.stack_hmms([params, params]), [0.5, 0.5])
    with pytest.raises(ValueError, match="params"):
        online.fixed_lag_smoother(labelled, symbols, 1)


def test_impossible_observation_gives_zeros_not_nan():
    """-inf is log 0: after an observation no state can emit, log p(y) is -inf and the
    estimates that condition on it are zero, never NaN; the earlier ones are unchanged."""
    rng = np.random.default_rng(8)
    pi, a = _random_chain(rng, 3)
    ll = rng.normal(size=(6, 3))
    log_pi, log_a, possible = _potentials(pi, a, ll)
    ll[3] = -np.inf
    impossible = inf.hmm_fixed_lag_smoother(log_pi, log_a, jnp.asarray(ll, jnp.float32), 2)
    assert float(impossible.log_likelihood) == -np.inf
    assert not np.any(impossible.smoothed_probs[3:]) and not np.any(impossible.filtered_probs[3:])
    before = inf.hmm_fixed_lag_smoother(log_pi, log_a, possible, 2)
    # The log-space pass runs here, the probability-space one before: rounding differs.
    np.testing.assert_allclose(impossible.smoothed_probs[:3], before.smoothed_probs[:3], atol=1e-6)
