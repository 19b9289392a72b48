"""RAISE (reverse AIS) against float64 enumeration: its weights average to the annealing
model's p_ann(v) exactly (p_ann computed by multiplying the transition matrices of every
temperature), its log-mean stays below log p(v) and reaches it as the schedule lengthens,
forward AIS and RAISE bracket log p(v) on a badly mixing RBM, the DBM with its mean-field
proposal likewise; and the keys, float32 on 10,000 temperatures and the lengthened-AIS
ladder."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax_lab.inference import ais
from genjax_lab.models import boltzmann as bm
from genjax_lab.models.boltzmann import partition
from tests.test_ais import GaussianPath
from tests.test_boltzmann import (
    binary_states,
    dbm_exact_log_prob,
    np_logsumexp,
    random_dbm,
    random_rbm,
)


def np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def bernoulli_probs(states, probs):
    """prod_i p_i^s_i (1 - p_i)^(1 - s_i) for every state [S, D] and each row of probs [R, D]:
    [R, S]."""
    return np.exp(states @ np.log(probs).T + (1 - states) @ np.log1p(-probs).T).T


def exact_annealing_model(params, base_bias, betas) -> np.ndarray:
    """p_ann over every visible state [2^V] of `RBMAnnealing`'s forward chain, float64: the
    base-rate p_0, then for each beta_k > 0 the sweep v -> h ~ p_k(h | v) -> v ~ p_k(v | h)."""
    W, b, c = (np.asarray(x, np.float64) for x in params)
    base = np.asarray(base_bias, np.float64)
    vs, hs = binary_states(W.shape[0]), binary_states(W.shape[1])
    p = bernoulli_probs(vs, np_sigmoid(base)[None])[0]
    for beta in np.asarray(betas, np.float64)[1:]:
        up = bernoulli_probs(hs, np_sigmoid(beta * (vs @ W + c)))  # [v, h]
        down = bernoulli_probs(vs, np_sigmoid((1 - beta) * base + beta * (hs @ W.T + b)))
        p = (p @ up) @ down
    return p


def rbm_exact_log_prob(params, v) -> np.ndarray:
    W, b, c = (np.asarray(x, np.float64) for x in params)

    def minus_f(x):
        return x @ b + np.sum(np.logaddexp(0, x @ W + c), -1)

    return minus_f(v) - np_logsumexp(minus_f(binary_states(W.shape[0])), axis=0)


def exact_samples(log_p, num: int, seed: int) -> np.ndarray:
    """`num` draws of the state index from exp(log_p) over all states."""
    p = np.exp(log_p - np_logsumexp(log_p, axis=0))
    return np.random.default_rng(seed).choice(len(p), num, p=p / p.sum())


def index_of(states: np.ndarray) -> np.ndarray:
    """Row index in binary_states(n) of each binary row (the first bit is the most
    significant)."""
    return (states @ (2 ** np.arange(states.shape[1])[::-1])).astype(int)


def mean_weight_matches(result, expected_p) -> None:
    """E[w] = p_ann: the mean weight of each item within 4 standard errors of expected_p."""
    w = np.exp(result.log_weights)
    stderr = w.std(axis=1, ddof=1) / math.sqrt(w.shape[1])
    np.testing.assert_array_less(np.abs(w.mean(1) - expected_p), 4 * stderr + 1e-12)


# ----------------------------------------------------------------------------- unbiasedness


def test_rbm_weights_average_to_the_annealing_model():
    """10 temperatures on a strongly coupled RBM: p_ann is far from p, and the mean of 4,000
    weights per image matches p_ann, not p (a weight off by one temperature would not)."""
    params = random_rbm(0, 7, 4, scale=1.5)
    base = np.linspace(-1.0, 1.0, 7)
    betas = np.linspace(0.0, 1.0, 11)
    vs = binary_states(7)[[0, 37, 101, 127]]
    p_ann = exact_annealing_model(params, base, betas)[index_of(vs)]
    exact = np.exp(rbm_exact_log_prob(params, vs))
    assert np.max(np.abs(np.log(p_ann / exact))) > 0.15  # the test tells p_ann from p
    result = partition.raise_log_prob(
        jax.random.key(0), params, vs, betas, 4000, base_vis_bias=base
    )
    assert result.log_weights.shape == (4, 4000) and result.log_prob.shape == (4,)
    mean_weight_matches(result, p_ann)


def test_dbm_weights_with_the_mean_field_proposal_average_to_the_annealing_model():
    """The state is [v, h2] (h1 summed out) started from h2 ~ q(h2 | v): only with log q in
    the weight does the mean weight equal p_ann(v) = sum_h2 p_ann(v, h2)."""
    params = random_dbm(1, 5, 3, 3, scale=1.2)
    base_v = np.array([0.5, -0.5, 0.0, 1.0, -1.0])
    betas = np.linspace(0.0, 1.0, 8)
    joint = exact_annealing_model(
        bm.dbm_as_rbm(params), np.concatenate([base_v, np.zeros(3)]), betas
    )
    p_ann = joint.reshape(2**5, 2**3).sum(1)  # [v, h2] with v the leading bits
    vs = binary_states(5)[[0, 9, 22, 31]]
    result = partition.raise_log_prob(
        jax.random.key(1), params, vs, betas, 4000, base_vis_bias=base_v, num_iters=3
    )
    mean_weight_matches(result, p_ann[index_of(vs)])


@dataclasses.dataclass(frozen=True)
class GaussianReversePath(GaussianPath):
    """GaussianPath's moves are exact draws from p_beta (reversible, and the last one makes
    p_ann = p_1 exactly): RAISE on it estimates the normalised N(0, s^2) density."""

    def base_log_prob(self, theta, x):
        return -0.5 * x**2 - 0.5 * math.log(2 * math.pi)

    def start(self, theta, keys, data):
        return data, jnp.zeros_like(data)


def test_raise_over_any_reversible_path_recovers_a_normalised_density():
    s = 3.0
    x = jnp.array([0.0, 2.0, -5.0], jnp.float32)
    result = ais.reverse_annealed_importance_sampling(
        GaussianReversePath(), jnp.float32(s), ais.piecewise_schedule(50), jax.random.key(2), x, 512
    )
    exact = -0.5 * (np.asarray(x) / s) ** 2 - 0.5 * math.log(2 * math.pi) - math.log(s)
    np.testing.assert_allclose(result.log_prob, exact, atol=0.05)


# ----------------------------------------------------------------------------- against log p


@pytest.fixture(scope="module")
def small_rbm():
    """10 visible, 6 hidden; 40 test images drawn exactly from p(v); their exact log p."""
    params = random_rbm(2, 10, 6, scale=1.2)
    log_p_all = rbm_exact_log_prob(params, binary_states(10))
    rows = exact_samples(log_p_all, 40, seed=0)
    return params, binary_states(10)[rows], log_p_all[rows]


def test_raise_stays_below_exact_and_converges_as_the_schedule_lengthens(small_rbm):
    """On images drawn from p, E[RAISE] <= E_p log p_ann <= E_p log p (Jensen, then Gibbs'
    inequality); the gap shrinks from 10 to 100 to 2,000 temperatures."""
    params, v, exact = small_rbm
    gaps = []
    for num_temperatures in (10, 100, 2000):
        result = partition.raise_log_prob(
            jax.random.key(3), params, v, ais.piecewise_schedule(num_temperatures), 8
        )
        gaps.append(float(np.mean(exact - result.log_prob)))
    assert gaps[0] > gaps[1] > gaps[2] > -0.01, gaps
    assert gaps[0] > 0.1 and gaps[2] < 0.02, gaps


def test_ais_and_raise_bracket_log_p_on_a_badly_mixing_rbm():
    """Strong weights and 30 temperatures: forward AIS's log p (= -F(v) - log Z_hat) lies well
    above the exact mean, RAISE well below: the pair brackets log p where either alone
    misleads by a margin."""
    params = random_rbm(0, 10, 6, scale=3.0)
    log_p_all = rbm_exact_log_prob(params, binary_states(10))
    rows = exact_samples(log_p_all, 40, seed=1)
    v, exact = binary_states(10)[rows], log_p_all[rows]
    betas = ais.piecewise_schedule(30)
    forward = bm.ais_log_z(params, betas, jax.random.key(5), 32)
    ais_log_p = -np.asarray(bm.free_energy(params, jnp.asarray(v, jnp.float32))) - forward.log_z
    reverse = partition.raise_log_prob(jax.random.key(6), params, v, betas, 8)
    ais_gap = float(np.mean(ais_log_p - exact))
    raise_gap = float(np.mean(exact - reverse.log_prob))
    assert ais_gap > 0.5 and raise_gap > 0.5, (ais_gap, raise_gap)


def test_dbm_raise_below_exact_and_converges():
    """An enumerable DBM (8-5-4): on images drawn from p(v), RAISE's mean is below the exact
    mean log p(v) and within 0.05 nats of it at 1,000 temperatures, not at 10."""
    params = random_dbm(5, 8, 5, 4, scale=1.0)
    log_p_all, _ = dbm_exact_log_prob(params, binary_states(8))
    rows = exact_samples(log_p_all, 30, seed=2)
    v, exact = binary_states(8)[rows], log_p_all[rows]
    gaps = [
        float(
            np.mean(
                exact
                - partition.raise_log_prob(
                    jax.random.key(7), params, v, ais.piecewise_schedule(n), 8
                ).log_prob
            )
        )
        for n in (10, 1000)
    ]
    assert gaps[0] > 0.1 and -0.02 < gaps[1] < 0.05, gaps


# ----------------------------------------------------------------------------- numerics, keys


def test_float32_finite_and_exact_on_10000_temperatures(small_rbm):
    params, v, exact = small_rbm
    result = partition.raise_log_prob(
        jax.random.key(8), params, v[:10], ais.piecewise_schedule(10_000), 2
    )
    assert np.all(np.isfinite(result.log_weights))
    assert abs(float(np.mean(result.log_prob - exact[:10]))) < 0.02


def test_same_key_same_numbers_and_slices_score_as_the_whole(small_rbm):
    params, v, _ = small_rbm
    betas = ais.piecewise_schedule(30)
    whole = partition.raise_log_prob(jax.random.key(9), params, v[:6], betas, 3)
    again = partition.raise_log_prob(jax.random.key(9), params, v[:6], betas, 3)
    part = partition.raise_log_prob(jax.random.key(9), params, v[2:6], betas, 3, first_item=2)
    other = partition.raise_log_prob(jax.random.key(10), params, v[:6], betas, 3)
    np.testing.assert_array_equal(whole.log_weights, again.log_weights)
    # the same draws; only the matrix products' rounding depends on the batch size
    np.testing.assert_allclose(part.log_weights, whole.log_weights[2:], rtol=1e-6)
    assert not np.allclose(other.log_weights, whole.log_weights)


def test_lengthened_ais_ladder(small_rbm):
    params, _, _ = small_rbm
    exact = float(bm.exact_log_z(params))
    ladder = partition.ais_log_z_by_length(jax.random.key(11), params, (20, 1000), 32)
    assert list(ladder) == [20, 1000]
    assert ladder[1000].log_weights.shape == (32,)
    assert abs(ladder[1000].log_z - exact) < 3 * ladder[1000].log_z_std + 0.01


def test_bad_arguments_are_named(small_rbm):
    params, v, _ = small_rbm
    with pytest.raises(ValueError, match="num_chains"):
        partition.raise_log_prob(jax.random.key(0), params, v, [0.0, 1.0], 0)
    with pytest.raises(ValueError, match="base_vis_bias"):
        partition.raise_log_prob(
            jax.random.key(0), params, v, [0.0, 1.0], base_vis_bias=np.zeros(3)
        )
    with pytest.raises(ValueError, match="end at 1"):
        partition.raise_log_prob(jax.random.key(0), params, v, [0.0, 0.5])
    with pytest.raises(ValueError, match="lengths"):
        partition.ais_log_z_by_length(jax.random.key(0), params, (100, 0))
