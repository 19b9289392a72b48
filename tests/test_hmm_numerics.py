"""HMM numerics in float32 against a float64 NumPy log-space oracle, on models with
structural zeros (left-to-right chains) and ergodic ones, with observations that one
state explains up to 1,000 nats better than the others; and dtype handling under x64.

Every example runs one batch of B sequences of fixed shape (so each function compiles
once per test) with variable lengths, through every public message-passing function:
filter, log-likelihood, smoother and pairwise posteriors (sequential and parallel),
Viterbi (both), and the EM statistics (`hmm.em_step` on a categorical model whose emission
log-probabilities are the drawn potentials).
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genjax_lab.inference import hmm as inf
from genjax_lab.models import hmm

settings.register_profile(
    "ci",
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "full", max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
PROFILE = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

B, T, K = 3, 12, 4


def _tolerance(reference: np.ndarray) -> np.ndarray:
    """The required log-likelihood accuracy: 1e-5 relative or 1e-3 nats, the larger."""
    return np.maximum(1e-5 * np.abs(reference), 1e-3)


# ------------------------------------------------------------------------------ oracle


def _lse(x: np.ndarray, axis) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return np.squeeze(np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m, axis)


def _oracle(log_pi: np.ndarray, log_a: np.ndarray, ll: np.ndarray) -> dict:
    """float64 log-space forward-backward and Viterbi of one [L, K] sequence."""
    la = np.zeros(ll.shape)
    lb = np.zeros(ll.shape)
    n = len(ll)
    la[0] = log_pi + ll[0]
    for t in range(1, n):
        la[t] = _lse(la[t - 1][:, None] + log_a, 0) + ll[t]
    for t in range(n - 2, -1, -1):
        lb[t] = _lse(log_a + (ll[t + 1] + lb[t + 1])[None, :], 1)
    logz = _lse(la[-1], 0)
    xi = np.exp(la[:-1, :, None] + log_a + (ll[1:] + lb[1:])[:, None, :] - logz)
    delta = log_pi + ll[0]
    for t in range(1, n):
        delta = np.max(delta[:, None] + log_a, axis=0) + ll[t]
    return {
        "log_likelihood": logz,
        "filtered": np.exp(la - _lse(la, 1)[:, None]),
        "posteriors": np.exp(la + lb - logz),
        "pairwise": xi,
        "map_log_prob": np.max(delta),
    }


def _path_log_joint(log_pi, log_a, ll, states) -> float:
    lp = log_pi[states[0]] + ll[0, states[0]]
    steps = range(1, len(states))
    return float(lp + sum(log_a[states[t - 1], states[t]] + ll[t, states[t]] for t in steps))


# -------------------------------------------------------------------------- strategies


@st.composite
def models(draw) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(log_pi [K], log_A [K, K], log-likelihoods [B, T, K], lengths [B]) in float64:
    left-to-right (Bakis, jumps of 1 or 2, some entries structurally zero) or ergodic
    chains, Gaussian-like potentials, and outlying frames that favour one state by up to
    1,000 nats or make chosen states 1,000 nats less likely."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    left_to_right = draw(st.booleans())
    if left_to_right:
        log_pi = np.full(K, -np.inf)
        log_pi[0] = 0.0
        a = np.zeros((K, K))
        for i in range(K):
            reach = min(i + int(rng.integers(1, 3)), K - 1)
            a[i, i : reach + 1] = rng.dirichlet(np.ones(reach - i + 1))
    else:
        log_pi = np.log(rng.dirichlet(np.ones(K)))
        a = rng.dirichlet(np.full(K, draw(st.sampled_from([0.1, 1.0, 10.0]))), K)
        a = np.maximum(a, 1e-30)  # tiny but nonzero
        a /= a.sum(1, keepdims=True)
    ll = rng.normal(size=(B, T, K)) * 3.0
    for _ in range(draw(st.integers(0, 6))):
        b, t, k = int(rng.integers(B)), int(rng.integers(T)), int(rng.integers(K))
        size = draw(st.floats(50.0, 1000.0))
        if draw(st.booleans()):  # a frame only state k explains
            ll[b, t] -= size
            ll[b, t, k] += size
        else:  # a frame state k cannot explain
            ll[b, t, k] -= size
    lengths = np.array([T] + [int(rng.integers(1, T + 1)) for _ in range(B - 1)])
    with np.errstate(divide="ignore"):
        return log_pi, np.log(a), ll, lengths


def _as_float32(log_pi, log_a, ll, lengths):
    floats = (jnp.asarray(x, jnp.float32) for x in (log_pi, log_a, ll))
    return (*floats, jnp.asarray(lengths, jnp.int32))


def _em_model(log_pi, log_a, ll, lengths):
    """A categorical HMM and batch whose emission log-probabilities are `ll` (up to one
    shared constant): symbol t at step t of sequence b is b * T + t, and one spare symbol
    takes the remaining mass of every state's emission row."""
    shift = np.max(_lse(ll.reshape(-1, K), 0)) + 1.0
    logits = (ll - shift).reshape(B * T, K).T  # [K, B * T]
    spare = np.log1p(-np.exp(_lse(logits, 1)))
    emission = np.concatenate([logits, spare[:, None]], 1)
    params = hmm.HMMParams(
        *(jnp.asarray(x, jnp.float32) for x in (log_pi, log_a)),
        hmm.CategoricalEmission(jnp.asarray(emission, jnp.float32)),
    )
    obs = jnp.arange(B * T, dtype=jnp.int32).reshape(B, T)
    return params, {"obs": obs, "lengths": jnp.asarray(lengths, jnp.int32)}, shift


# ------------------------------------------------------------------------------- tests


@PROFILE
@given(models())
def test_float32_message_passing_matches_float64_log_space_oracle(model):
    log_pi, log_a, ll, lengths = model
    args = _as_float32(*model)
    refs = [_oracle(log_pi, log_a, ll[b, : lengths[b]]) for b in range(B)]
    ref_ll = np.array([r["log_likelihood"] for r in refs])
    tol = _tolerance(ref_ll)

    def close_ll(got, name):
        got = np.asarray(got, np.float64)
        assert np.all(np.abs(got - ref_ll) <= tol), f"{name}: {got} vs float64 {ref_ll}"

    def close_probs(got, key, name):
        for b, n in enumerate(lengths):
            steps = n - 1 if key == "pairwise" else n
            np.testing.assert_allclose(
                np.asarray(got[b, :steps]), refs[b][key], atol=1e-4, err_msg=f"{name}, sequence {b}"
            )

    close_ll(inf.hmm_log_likelihood(*args), "hmm_log_likelihood")
    for parallel in (False, True):
        where = f"parallel={parallel}"
        filtered = inf.hmm_filter(*args, parallel=parallel)
        close_ll(filtered.log_likelihood, f"hmm_filter {where}")
        close_probs(filtered.filtered_probs, "filtered", f"hmm_filter {where}")
        smoothed = inf.hmm_smoother(*args, parallel=parallel)
        close_ll(smoothed.log_likelihood, f"hmm_smoother {where}")
        close_probs(smoothed.posteriors, "posteriors", f"hmm_smoother {where}")
        counts = np.stack([r["pairwise"].sum(0) for r in refs])
        np.testing.assert_allclose(smoothed.transition_counts, counts, atol=1e-4 * T, err_msg=where)
        viterbi = inf.hmm_viterbi(*args, parallel=parallel)
        ref_map = np.array([r["map_log_prob"] for r in refs])
        gap = np.abs(np.asarray(viterbi.log_prob, np.float64) - ref_map)
        assert np.all(gap <= _tolerance(ref_map)), f"{where}: {viterbi.log_prob} vs {ref_map}"
        for b, n in enumerate(lengths):
            path = np.asarray(viterbi.states[b, :n])
            joint = _path_log_joint(log_pi, log_a, ll[b], path)
            assert abs(joint - ref_map[b]) <= _tolerance(ref_map[b]), f"{where}: {path} not a MAP"
    close_probs(inf.hmm_pairwise_posteriors(*args), "pairwise", "hmm_pairwise_posteriors")
    for passes in inf.PASSES:  # "log" always exact; "scaled" exact where its flag says so
        smoothed, exact = inf.hmm_smoother_with_passes(*args, passes=passes)
        if bool(exact):
            close_ll(smoothed.log_likelihood, f"passes={passes}")
            close_probs(smoothed.posteriors, "posteriors", f"passes={passes}")
        else:
            assert passes == "scaled", passes

    # EM statistics: the ML M-step turns them into normalised expected counts.
    params, batch, shift = _em_model(*model)
    new, stats = hmm.em_step(params, batch, hmm.MAXIMUM_LIKELIHOOD)
    np.testing.assert_allclose(
        stats.log_likelihood,
        np.sum(ref_ll - shift * lengths),
        atol=float(np.sum(_tolerance(ref_ll))),
    )
    initial = np.mean([r["posteriors"][0] for r in refs], 0)
    np.testing.assert_allclose(jax.nn.softmax(new.initial_logits), initial, atol=1e-4)
    counts = np.sum([r["pairwise"].sum(0) for r in refs], 0)
    rows = counts.sum(1) > 1e-3
    expected = counts / np.maximum(counts.sum(1, keepdims=True), 1e-300)
    got = np.asarray(jax.nn.softmax(new.transition_logits))
    np.testing.assert_allclose(got[rows], expected[rows], atol=1e-3)
    emission = np.zeros((K, B * T))
    for b, n in enumerate(lengths):
        emission[:, b * T : b * T + n] = refs[b]["posteriors"].T
    used = emission.sum(1) > 1e-3
    got = np.asarray(jax.nn.softmax(new.emission.logits, -1))[:, :-1]
    expected = emission / emission.sum(1, keepdims=True)
    np.testing.assert_allclose(got[used], expected[used], atol=1e-3)


def test_state_below_float32_range_is_not_lost():
    """Left-to-right chain 0 -> 1 -> 2: at t = 1 the frame is 200 nats likelier under state 0
    than state 1, so p(x_1 = 1 | y_{0:1}) ~ e^-200 is below float32's range; at t = 2 only
    state 2 (reachable only through state 1) explains the frame, by 1,000 nats. The path
    0, 1, 2 is the only sensible one: log p(y) = log 0.5 + log 0.5 - 200."""
    with np.errstate(divide="ignore"):
        log_pi = np.log([1.0, 0.0, 0.0])
        log_a = np.log([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]])
    ll = np.array([[0.0, -1000.0, -1000.0], [0.0, -200.0, -1000.0], [-1000.0, -1000.0, 0.0]])
    ref = _oracle(log_pi, log_a, ll)
    args = tuple(jnp.asarray(x, jnp.float32) for x in (log_pi, log_a, ll))
    for parallel in (False, True):
        smoothed = inf.hmm_smoother(*args, parallel=parallel)
        gap = abs(float(smoothed.log_likelihood) - ref["log_likelihood"])
        assert gap < 1e-3, (parallel, smoothed)
        np.testing.assert_allclose(smoothed.posteriors, np.eye(3), atol=1e-4)
        np.testing.assert_array_equal(inf.hmm_viterbi(*args, parallel=parallel).states, [0, 1, 2])
    assert abs(float(inf.hmm_log_likelihood(*args)) - ref["log_likelihood"]) < 1e-3


def test_smoother_passes_say_when_the_scaled_ones_are_not_exact():
    """An ergodic chain: the scaled passes alone are exact and give hmm_smoother's numbers.
    A chain with a structural zero: they are flagged, and the log-space passes alone give
    hmm_smoother's numbers (which take them there)."""
    ll = np.random.default_rng(0).normal(size=(3, 40, 3)).astype(np.float32)
    lengths = np.array([40, 17, 1])
    ergodic = np.log(np.full((3, 3), 1 / 3, np.float32) + np.eye(3, dtype=np.float32)) - np.log(2)
    with np.errstate(divide="ignore"):
        chain = np.log(np.array([[0.5, 0.5, 0], [0, 0.5, 0.5], [0, 0, 1]], np.float32))
    log_pi = np.log(np.full(3, 1 / 3, np.float32))
    for log_a, exact_pass, inexact_pass in ((ergodic, "scaled", None), (chain, "log", "scaled")):
        reference = inf.hmm_smoother(log_pi, log_a, ll, lengths)
        smoothed, exact = inf.hmm_smoother_with_passes(
            log_pi, log_a, ll, lengths, passes=exact_pass
        )
        assert bool(exact)
        for got, want in zip(smoothed, reference, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        auto, _ = inf.hmm_smoother_with_passes(log_pi, log_a, ll, lengths, passes="auto")
        for got, want in zip(auto, reference, strict=True):
            np.testing.assert_array_equal(got, want)
        if inexact_pass:
            _, exact = inf.hmm_smoother_with_passes(log_pi, log_a, ll, lengths, passes=inexact_pass)
            assert not bool(exact)
    with pytest.raises(ValueError, match="passes must be one of"):
        inf.hmm_smoother_with_passes(log_pi, ergodic, ll, lengths, passes="fast")


# --------------------------------------------------------------------------- float64


def _casino_in(dtype) -> tuple[hmm.HMMParams, np.ndarray]:
    a = np.array([[0.95, 0.05], [0.10, 0.90]], dtype)
    b = np.array([[1 / 6] * 6, [0.1] * 5 + [0.5]], dtype)
    return hmm.make_hmm(np.array([0.5, 0.5], dtype), a, hmm.categorical_emission(b)), a


def test_float64_is_kept_under_x64():
    """With jax_enable_x64 the model, the message passing and EM follow the input dtype
    (float64 in, float64 out), and float32 input stays float32."""
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        params, _ = _casino_in(np.float64)
        assert params.transition_logits.dtype == jnp.float64
        assert params.emission.logits.dtype == jnp.float64
        obs = rng.integers(0, 6, (2, 50))
        lengths = np.array([50, 30])
        assert hmm.log_prob(params, hmm.Sequences(obs, lengths)).dtype == jnp.float64
        post = hmm.smooth(params, hmm.Sequences(obs, lengths))
        assert post.posteriors.dtype == jnp.float64 and post.transition_counts.dtype == jnp.float64
        new, stats = hmm.fit_em(
            params, hmm.Sequences(obs, lengths), num_iters=2, prior=hmm.MAXIMUM_LIKELIHOOD
        )
        assert new.transition_logits.dtype == jnp.float64
        assert stats.log_likelihood.dtype == jnp.float64
        gauss = hmm.diag_gaussian_emission(rng.normal(size=(2, 3)), np.ones((2, 3)))
        g_params = hmm.make_hmm([0.5, 0.5], np.full((2, 2), 0.5), gauss)
        assert g_params.emission.means.dtype == jnp.float64
        x = rng.normal(size=(2, 50, 3))
        assert hmm.log_prob(g_params, hmm.Sequences(x, lengths)).dtype == jnp.float64
        config = hmm.default_config()
        config.update(num_iters=3, num_inits=2)
        fitted, history = hmm.fit(jax.random.key(0), {"x": hmm.Sequences(x, lengths)}, config)
        assert fitted.emission.means.dtype == jnp.float64
        assert history["objective"].dtype == jnp.float64
        # float64 precision, not float32's: two models 1e-12 apart in a transition differ.
        a2 = np.array([[0.95 - 1e-12, 0.05 + 1e-12], [0.10, 0.90]])
        other = hmm.make_hmm([0.5, 0.5], a2, params.emission)
        diff = hmm.log_prob(params, hmm.Sequences(obs, lengths)) - hmm.log_prob(
            other, hmm.Sequences(obs, lengths)
        )
        assert np.all(np.asarray(diff) != 0.0)
        params32, _ = _casino_in(np.float32)
        assert params32.transition_logits.dtype == jnp.float32
        assert hmm.smooth(params32, hmm.Sequences(obs, lengths)).posteriors.dtype == jnp.float32


@pytest.mark.parametrize("parallel", [False, True])
def test_viterbi_in_float64(parallel):
    """Sequential and parallel Viterbi under x64 (the parallel one crashed: int32 and int64
    back-pointers in one concatenate): MAP paths of the float64 oracle, int32 states."""
    rng = np.random.default_rng(1)
    with jax.enable_x64(True):
        params, a = _casino_in(np.float64)
        obs = rng.integers(0, 6, (3, 40))
        lengths = np.array([40, 17, 1])
        result = hmm.most_likely_states(params, hmm.Sequences(obs, lengths), parallel=parallel)
        assert result.states.dtype == jnp.int32 and result.log_prob.dtype == jnp.float64
        log_b = np.log(np.array([[1 / 6] * 6, [0.1] * 5 + [0.5]]))
        for b, n in enumerate(lengths):
            ref = _oracle(np.log([0.5, 0.5]), np.log(a), log_b[:, obs[b, :n]].T)["map_log_prob"]
            np.testing.assert_allclose(float(result.log_prob[b]), ref, rtol=1e-12)
            joint = _path_log_joint(
                np.log([0.5, 0.5]),
                np.log(a),
                log_b[:, obs[b, :n]].T,
                np.asarray(result.states[b, :n]),
            )
            np.testing.assert_allclose(joint, ref, rtol=1e-12)
            assert np.all(np.asarray(result.states[b, n:]) == -1)
