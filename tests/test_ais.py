"""log Z: enumeration against float64 brute force over every joint state (and quadrature for
Gaussian visible units), AIS against enumeration within its stated error, sharded AIS
against unsharded, the DBM through its equivalent RBM."""

import dataclasses
import math
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax_lab.inference import ais
from genjax_lab.models import boltzmann as bm
from tests.test_boltzmann import (
    binary_states,
    dbm_exact_log_prob,
    np_logsumexp,
    random_dbm,
    random_rbm,
)


def brute_log_z(params) -> float:
    """log sum over every (v, h) of exp(v W h + b.v + c.h), float64."""
    W, b, c = (np.asarray(x, np.float64) for x in params)
    vs, hs = binary_states(W.shape[0]), binary_states(W.shape[1])
    neg_e = vs @ W @ hs.T + (vs @ b)[:, None] + (hs @ c)[None]
    return float(np_logsumexp(neg_e.ravel(), axis=0))


@pytest.mark.parametrize("side", ["hidden", "visible", None])
def test_exact_log_z_equals_joint_enumeration(side):
    params = random_rbm(0, 6, 5, scale=1.0)
    np.testing.assert_allclose(
        bm.exact_log_z(params, side=side, chunk_size=7), brute_log_z(params), rtol=1e-6
    )


def test_exact_log_z_gaussian_equals_quadrature():
    params = random_rbm(1, 2, 3, scale=0.8)
    grid = np.linspace(-12, 12, 1201)
    step = grid[1] - grid[0]
    vs = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    W, b, c = (np.asarray(x, np.float64) for x in params)
    minus_f = -0.5 * np.sum((vs - b) ** 2, -1) + np.sum(np.logaddexp(0, vs @ W + c), -1)
    quadrature = np_logsumexp(minus_f, axis=0) + 2 * math.log(step)
    np.testing.assert_allclose(bm.exact_log_z(params, visible="gaussian"), quadrature, rtol=1e-5)


def test_log_prob_normalises():
    params = random_rbm(2, 5, 4)
    vs = jnp.asarray(binary_states(5), jnp.float32)
    total = jax.nn.logsumexp(bm.rbm_log_prob(params, vs, bm.exact_log_z(params)))
    assert abs(float(total)) < 1e-5


def test_ais_agrees_with_enumeration_within_its_error():
    """25 visible, 15 hidden (exact: 2^15 hidden states); 64 runs, 1500 temperatures."""
    params = random_rbm(3, 25, 15, scale=0.5)
    data = np.asarray(bm.gibbs_chain(params, jnp.zeros((500, 25)), jax.random.key(0), 50)[0])
    exact = float(bm.exact_log_z(params))
    result = bm.ais_log_z(
        params,
        ais.piecewise_schedule(1500),
        jax.random.key(1),
        64,
        base_vis_bias=bm.base_rate_bias(data),
    )
    assert result.log_z_lower <= exact <= result.log_z_upper, (result, exact)
    assert abs(result.log_z - exact) < 0.05
    assert result.log_weights.shape == (64,)


def test_ais_of_the_base_model_is_exact():
    """Target = base-rate model: every weight is 1, so log Z = log Z_A with no spread."""
    bias = np.array([-1.0, 0.3, 2.0])
    params = bm.RBMParams(
        W=jnp.zeros((3, 4)), b_vis=jnp.asarray(bias, jnp.float32), b_hid=jnp.zeros(4)
    )
    result = bm.ais_log_z(
        params, ais.piecewise_schedule(50), jax.random.key(0), 8, base_vis_bias=bias
    )
    np.testing.assert_allclose(result.log_z, float(bm.exact_log_z(params)), rtol=1e-6)
    assert result.log_z_std < 1e-6


def test_ais_gaussian_agrees_with_enumeration():
    params = random_rbm(4, 10, 8, scale=0.3)
    exact = float(bm.exact_log_z(params, visible="gaussian"))
    result = bm.ais_log_z(
        params, ais.piecewise_schedule(1000), jax.random.key(2), 64, visible="gaussian"
    )
    assert result.log_z_lower <= exact <= result.log_z_upper, (result, exact)
    assert abs(result.log_z - exact) < 0.05


def test_ais_sharded_over_8_devices_equals_unsharded():
    mesh = jax.make_mesh((8,), ("data",))
    params = random_rbm(5, 12, 7, scale=0.5)
    betas = ais.piecewise_schedule(200)
    single = bm.ais_log_z(params, betas, jax.random.key(3), 32)
    many = bm.ais_log_z(params, betas, jax.random.key(3), 32, mesh=mesh)
    np.testing.assert_allclose(many.log_weights, single.log_weights, atol=1e-5)


def test_dbm_log_z_by_enumeration_and_ais():
    tiny = random_dbm(6, 6, 4, 3)
    _, brute = dbm_exact_log_prob(tiny, binary_states(6)[:1])
    np.testing.assert_allclose(bm.dbm_exact_log_z(tiny), brute, rtol=1e-6)
    params = random_dbm(7, 20, 10, 8, scale=0.4)
    exact = float(bm.dbm_exact_log_z(params))
    result = bm.dbm_ais_log_z(
        params, ais.piecewise_schedule(1500), jax.random.key(4), 64, base_vis_bias=np.zeros(20)
    )
    assert result.log_z_lower <= exact <= result.log_z_upper, (result, exact)
    assert abs(result.log_z - exact) < 0.05


def test_paper_schedule_steps():
    betas = ais.paper_schedule()
    assert betas.shape == (14_501,) and betas[0] == 0.0 and betas[-1] == 1.0
    steps = np.diff(betas)
    np.testing.assert_allclose(steps[:500], 1e-3, rtol=1e-9)
    np.testing.assert_allclose(steps[500:4500], 1e-4, rtol=1e-6)
    np.testing.assert_allclose(steps[4500:], 1e-5, rtol=1e-5)
    assert len(ais.piecewise_schedule(1450)) == 1451


@pytest.mark.parametrize(
    "betas, match",
    [
        ([0.0, 0.5, 0.9], "end at 1"),
        ([0.0, 0.6, 0.4, 1.0], "non-decreasing"),
        ([[0.0, 1.0]], "1-D"),
    ],
)
def test_bad_schedules_are_named(betas, match):
    with pytest.raises(ValueError, match=match):
        bm.ais_log_z(random_rbm(0, 3, 2), betas, jax.random.key(0), 4)


def test_bad_arguments_are_named():
    params = random_rbm(0, 3, 2)
    with pytest.raises(ValueError, match="base_vis_bias"):
        bm.ais_log_z(params, [0.0, 1.0], jax.random.key(0), 4, base_vis_bias=np.zeros(4))
    with pytest.raises(ValueError, match="num_runs"):
        bm.ais_log_z(params, [0.0, 1.0], jax.random.key(0), 12, mesh=jax.make_mesh((8,), ("data",)))
    with pytest.raises(ValueError, match="2\\^40"):
        bm.exact_log_z(random_rbm(0, 50, 40))
    with pytest.raises(ValueError, match="side"):
        bm.exact_log_z(params, visible="gaussian", side="visible")


@dataclasses.dataclass(frozen=True)
class GaussianPath:
    """From N(0, 1) to the unnormalised exp(-x^2 / (2 s^2)) (Z = sqrt(2 pi) s), the moves
    exact draws from p_beta (a Gaussian of precision 1 - beta + beta / s^2): no Boltzmann
    machine anywhere, so the sampler is only the generic one."""

    def sample_base(self, theta, keys):
        return jax.vmap(lambda k: jax.random.normal(k, ()))(keys)

    def log_ratio(self, theta, x, beta_prev, beta):
        return (beta - beta_prev) * (0.5 * x**2 - 0.5 * x**2 / theta**2)

    def transition(self, theta, keys, x, beta):
        scale = (1.0 - beta + beta / theta**2) ** -0.5
        return scale * jax.vmap(lambda k: jax.random.normal(k, ()))(keys)


def test_ais_over_any_annealed_density_recovers_a_known_normaliser():
    s = 3.0
    result = ais.annealed_importance_sampling(
        GaussianPath(),
        jnp.float32(s),
        ais.piecewise_schedule(300),
        jax.random.key(0),
        256,
        log_z_base=0.5 * math.log(2 * math.pi),
    )
    exact = 0.5 * math.log(2 * math.pi) + math.log(s)
    assert abs(result.log_z - exact) < 3 * result.log_z_std + 1e-3, (result.log_z, exact)
    assert result.log_z_lower <= exact <= result.log_z_upper


def test_inference_imports_no_model():
    code = (
        "import sys, genjax_lab.inference.ais; "
        "print([m for m in sys.modules if m.startswith('genjax_lab.models')])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=pathlib.Path(__file__).parents[1],
    )
    assert out.stdout.strip() == "[]", out.stdout
