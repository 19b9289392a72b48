"""RBM and DBM: free energies and bounds against float64 NumPy brute force, Gibbs sampling
against the exact distribution, 8-device steps against 1-device steps, and training that
raises the exact log-likelihood."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from genjax_lab.inference import ais
from genjax_lab.models import boltzmann as bm


def random_rbm(seed: int, num_visible: int, num_hidden: int, scale: float = 0.7) -> bm.RBMParams:
    rng = np.random.default_rng(seed)
    return bm.RBMParams(
        W=jnp.asarray(rng.normal(0, scale, (num_visible, num_hidden)), jnp.float32),
        b_vis=jnp.asarray(rng.normal(0, scale, num_visible), jnp.float32),
        b_hid=jnp.asarray(rng.normal(0, scale, num_hidden), jnp.float32),
    )


def random_dbm(seed: int, v: int, h1: int, h2: int, scale: float = 0.8) -> bm.DBMParams:
    rng = np.random.default_rng(seed)
    f = lambda *shape: jnp.asarray(rng.normal(0, scale, shape), jnp.float32)
    return bm.DBMParams(W1=f(v, h1), W2=f(h1, h2), b_vis=f(v), b_h1=f(h1), b_h2=f(h2))


def binary_states(n: int) -> np.ndarray:
    return np.array(list(itertools.product([0.0, 1.0], repeat=n)))


def np_energy(params, v, h, visible):
    W, b, c = (np.asarray(x, np.float64) for x in params)
    visible_term = v @ b if visible == "bernoulli" else -0.5 * np.sum((v - b) ** 2, -1)
    return -(np.einsum("...i,ij,...j->...", v, W, h) + visible_term + h @ c)


def np_logsumexp(x, axis):
    m = np.max(x, axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.sum(np.exp(x - m), axis=axis))


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_free_energy_equals_hidden_enumeration(visible):
    params = random_rbm(0, 7, 6)
    rng = np.random.default_rng(1)
    v = (
        rng.integers(0, 2, (5, 7)).astype(np.float64)
        if visible == "bernoulli"
        else rng.normal(0, 1.5, (5, 7))
    )
    hs = binary_states(6)
    brute = -np_logsumexp(-np_energy(params, v[:, None, :], hs[None], visible), axis=1)
    ours = bm.free_energy(params, jnp.asarray(v, jnp.float32), visible)
    np.testing.assert_allclose(ours, brute, rtol=1e-5, atol=1e-4)


def test_gibbs_chains_reach_the_exact_distribution():
    params = random_rbm(2, 4, 3, scale=1.0)
    vs = binary_states(4)
    log_p = -bm.free_energy(params, jnp.asarray(vs, jnp.float32))
    exact = np.exp(log_p - jax.nn.logsumexp(log_p))
    v0 = jnp.zeros((4000, 4))
    v, mean = bm.gibbs_chain(params, v0, jax.random.key(0), 30)
    codes = np.asarray(v, int) @ (2 ** np.arange(3, -1, -1))  # itertools.product order
    empirical = np.bincount(codes, minlength=16) / len(codes)
    assert 0.5 * np.abs(empirical - exact).sum() < 0.03  # total variation; MC error ~0.01
    assert mean.shape == v.shape and np.all((np.asarray(mean) > 0) & (np.asarray(mean) < 1))


def dbm_exact_log_prob(params, v):
    """log p(v) by summing exp(-E) over every (h1, h2) in float64, and log Z over every
    (v, h1, h2)."""
    W1, W2, b, c1, c2 = (np.asarray(x, np.float64) for x in params)
    h1s, h2s = binary_states(W1.shape[1]), binary_states(W2.shape[1])

    def log_unnorm(vv):  # [N, V] -> [N]
        neg_e = (
            (vv @ W1 @ h1s.T)[:, :, None]
            + (h1s @ W2 @ h2s.T)[None]
            + (vv @ b)[:, None, None]
            + (h1s @ c1)[None, :, None]
            + (h2s @ c2)[None, None, :]
        )
        return np_logsumexp(neg_e.reshape(len(vv), -1), axis=1)

    log_z = np_logsumexp(log_unnorm(binary_states(W1.shape[0])), axis=0)
    return log_unnorm(v) - log_z, log_z


def test_dbm_bound_below_exact_log_prob_and_tightened_by_mean_field():
    params = random_dbm(3, 6, 4, 3)
    v = binary_states(6)
    exact, log_z = dbm_exact_log_prob(params, v)
    vj = jnp.asarray(v, jnp.float32)
    np.testing.assert_allclose(bm.dbm_exact_log_z(params), log_z, rtol=1e-6)
    loose = np.asarray(bm.dbm_lower_bound(params, vj, log_z, num_iters=1))
    tight = np.asarray(bm.dbm_lower_bound(params, vj, log_z, num_iters=30))
    assert np.all(tight <= exact + 1e-4), np.max(tight - exact)
    assert np.all(tight >= loose - 1e-5)  # layer-wise updates are coordinate ascent
    assert np.mean(exact - tight) < 0.5  # mean field is close on a tiny model (measured ~0.1)


def sharded(mesh, tree, spec):
    return jax.device_put(tree, NamedSharding(mesh, spec))


@pytest.mark.parametrize("method", ["cd", "pcd"])
def test_rbm_step_on_8_devices_equals_1_device(method):
    """Same global chains and key: chain i draws from fold_in(key, i) wherever it runs.

    Tolerance: chains equal exactly (binary; a flip would need a logit within float
    rounding of its uniform), parameters to 1e-6 (reduction order only).
    """
    assert jax.device_count() == 8
    mesh = jax.make_mesh((8,), ("data",))
    params = random_rbm(4, 20, 12, scale=0.3)
    rng = np.random.default_rng(5)
    mask = np.ones(32, np.float32)
    mask[-5:] = 0.0  # padding rows on the last device: the weighted mean must ignore them
    batch = {"x": rng.integers(0, 2, (32, 20)).astype(np.float32), "mask": mask}
    chains = rng.integers(0, 2, (16, 20)).astype(np.float32)
    optimizer = bm.rbm_optimizer(0.1, momentum=0.5, weight_decay=1e-3)
    opt_state = optimizer.init(params)
    key = jax.random.key(6)
    single = jax.jit(bm.make_rbm_step(optimizer, method=method, k=2))(
        params, opt_state, chains, batch, key
    )
    many = jax.jit(bm.make_rbm_step(optimizer, method=method, k=2, mesh=mesh))(
        sharded(mesh, params, P()),
        sharded(mesh, opt_state, P()),
        sharded(mesh, chains, P("data")),
        sharded(mesh, batch, P("data")),
        key,
    )
    np.testing.assert_array_equal(many[2], single[2])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), many[:2], single[:2])
    assert len(many[2].sharding.device_set) == 8 if method == "pcd" else True
    moved = np.abs(np.asarray(single[0].W) - np.asarray(params.W)).max()
    assert moved > 1e-3  # the step did something


def test_dbm_step_on_8_devices_equals_1_device():
    mesh = jax.make_mesh((8,), ("data",))
    params = random_dbm(7, 16, 10, 6, scale=0.3)
    rng = np.random.default_rng(8)
    batch = {"x": rng.integers(0, 2, (24, 16)).astype(np.float32), "mask": np.ones(24, np.float32)}
    chains = bm.init_dbm_chains(jax.random.key(9), 16, params)
    optimizer = bm.rbm_optimizer(0.05)
    opt_state = optimizer.init(params)
    key = jax.random.key(10)
    single = jax.jit(bm.make_dbm_step(optimizer, k=1))(params, opt_state, chains, batch, key)
    many = jax.jit(bm.make_dbm_step(optimizer, k=1, mesh=mesh))(
        sharded(mesh, params, P()),
        sharded(mesh, opt_state, P()),
        sharded(mesh, chains, P("data")),
        sharded(mesh, batch, P("data")),
        key,
    )
    jax.tree.map(np.testing.assert_array_equal, many[2], single[2])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), many[:2], single[:2])


def bars_data(num: int, seed: int) -> np.ndarray:
    """3x3 images of one horizontal or vertical bar with 5% pixel noise: [num, 9]."""
    rng = np.random.default_rng(seed)
    protos = []
    for i in range(3):
        img = np.zeros((3, 3))
        img[i] = 1
        protos += [img.ravel(), img.T.ravel()]
    x = np.asarray(protos)[rng.integers(0, 6, num)]
    flips = rng.random(x.shape) < 0.05
    return np.where(flips, 1 - x, x).astype(np.float32)


@pytest.mark.parametrize(
    "method, k, learning_rate, batch_size, num_epochs",
    [("cd", 1, 0.5, 20, 15), ("pcd", 5, 0.3, 50, 20)],
)  # PCD is unstable at CD's rate
def test_cd_and_pcd_raise_the_exact_log_likelihood(
    method, k, learning_rate, batch_size, num_epochs
):
    data = jnp.asarray(bars_data(600, 11))
    params = bm.init_rbm(jax.random.key(0), 9, 8, weight_scale=0.01)
    optimizer = bm.rbm_optimizer(learning_rate, momentum=0.5)
    epoch = bm.make_epoch(bm.make_rbm_step(optimizer, method=method, k=k), batch_size=batch_size)
    opt_state, chains = optimizer.init(params), bm.init_rbm_chains(jax.random.key(1), 100, 9)

    def mean_log_lik(p):
        return float(jnp.mean(bm.rbm_log_prob(p, data, bm.exact_log_z(p))))

    before = mean_log_lik(params)
    for e in range(num_epochs):
        params, opt_state, chains, metrics = epoch(
            params, opt_state, chains, data, jax.random.key(100 + e)
        )
    after = mean_log_lik(params)
    # uniform start: -9 log 2 = -6.24 nats; the data's entropy is ~3.6 nats (6 bars, 5% noise);
    # measured after training: about -3.8 (CD) and -3.9 (PCD)
    assert before < -6.0 and after > before + 1.5, (before, after)
    assert np.isfinite(metrics["free_energy_data"])


def test_gaussian_rbm_learns_a_shifted_gaussian():
    rng = np.random.default_rng(12)
    data = (rng.normal(0, 1, (512, 3)) + np.array([2.0, -1.0, 0.5])).astype(np.float32)
    params = bm.init_rbm(jax.random.key(0), 3, 4, visible="gaussian")
    optimizer = bm.rbm_optimizer(0.05, momentum=0.5)
    epoch = bm.make_epoch(
        bm.make_rbm_step(optimizer, method="pcd", visible="gaussian"), batch_size=32
    )
    opt_state, chains = (
        optimizer.init(params),
        bm.init_rbm_chains(jax.random.key(1), 32, 3, visible="gaussian"),
    )

    def mean_log_lik(p):
        return float(
            jnp.mean(
                bm.rbm_log_prob(
                    p, jnp.asarray(data), bm.exact_log_z(p, visible="gaussian"), "gaussian"
                )
            )
        )

    before = mean_log_lik(params)
    for e in range(10):
        params, opt_state, chains, _ = epoch(
            params, opt_state, chains, jnp.asarray(data), jax.random.key(e)
        )
    after = mean_log_lik(params)
    optimum = -1.5 * np.log(2 * np.pi) - 1.5  # N(mu, I) fitted exactly: -4.26 nats
    assert before < optimum - 2.0 and after > optimum - 0.3, (before, after, optimum)


def test_pretrained_dbm_bound_beats_random_init_and_training_keeps_it():
    data = bars_data(400, 13)
    xj = jnp.asarray(data)
    result = bm.pretrain_dbm(
        jax.random.key(0), xj, 8, 4, num_epochs=10, batch_size=20, learning_rate=0.3
    )

    @jax.jit  # one compilation for the three evaluations
    def mean_bound(p):
        return jnp.mean(bm.dbm_lower_bound(p, xj, bm.dbm_exact_log_z(p)))

    random_bound = float(
        mean_bound(bm.init_dbm(jax.random.key(1), 9, 8, 4, data_mean=data.mean(0)))
    )
    pretrained = float(mean_bound(result.params))
    optimizer = bm.rbm_optimizer(0.05)
    epoch = bm.make_epoch(bm.make_dbm_step(optimizer, k=1, mean_field_iters=10), batch_size=20)
    params, opt_state = result.params, optimizer.init(result.params)
    chains = bm.init_dbm_chains(jax.random.key(2), 20, params)
    for e in range(5):
        params, opt_state, chains, metrics = epoch(
            params, opt_state, chains, xj, jax.random.key(50 + e)
        )
    trained = float(mean_bound(params))
    # measured: random -5.83, pretrained -4.07, after 5 DBM epochs -3.99 nats
    assert pretrained > random_bound + 1.0, (random_bound, pretrained)
    assert trained > pretrained - 0.2, (pretrained, trained)
    assert np.isfinite(metrics["unnormalized_bound"])


def test_samples_and_filters_have_image_shapes():
    params = random_rbm(14, 12, 5)
    assert bm.rbm_filters(params, (3, 4)).shape == (5, 3, 4)
    dbm = random_dbm(15, 12, 5, 3)
    chains, v_mean = bm.dbm_gibbs_chain(
        dbm, bm.init_dbm_chains(jax.random.key(0), 7, dbm), jax.random.key(1), 3
    )
    assert chains.v.shape == (7, 12) and chains.h2.shape == (7, 3) and v_mean.shape == (7, 12)


def test_bad_arguments_are_named():
    optimizer = bm.rbm_optimizer()
    with pytest.raises(ValueError, match="method"):
        bm.make_rbm_step(optimizer, method="pcd2")
    with pytest.raises(ValueError, match="visible"):
        bm.make_rbm_step(optimizer, visible="poisson")
    with pytest.raises(ValueError, match="k "):
        bm.make_rbm_step(optimizer, k=0)
    with pytest.raises(ValueError, match="data_mean"):
        bm.init_rbm(jax.random.key(0), 4, 3, data_mean=np.zeros(5))
    with pytest.raises(ValueError, match="num_steps"):
        bm.gibbs_chain(random_rbm(0, 4, 3), jnp.zeros((2, 4)), jax.random.key(0), 0)


def test_dbm_step_names_a_batch_without_its_mask():
    params = random_dbm(16, 6, 4, 3)
    optimizer = bm.rbm_optimizer(0.05)
    step = bm.make_dbm_step(optimizer)
    chains = bm.init_dbm_chains(jax.random.key(0), 4, params)
    with pytest.raises(TypeError, match="batch.*mask"):
        step(
            params,
            optimizer.init(params),
            chains,
            {"x": np.zeros((4, 6), np.float32)},
            jax.random.key(1),
        )


def small_config(kind: str, **model):
    config = bm.default_config()
    config.batch_size, config.num_epochs = 50, 20.0
    config.optim.learning_rate, config.optim.final_momentum = 0.3, 0.5  # PCD diverges at 0.9
    config.optim.weight_decay = 0.0
    config.model.kind, config.model.num_hidden, config.model.num_hidden2 = kind, 8, 4
    config.model.update(model)
    return config


def test_fit_raises_the_exact_log_likelihood_of_an_rbm():
    x = bars_data(600, 17)
    config = small_config("rbm", method="pcd", k=5)
    params, history = bm.fit(jax.random.key(0), {"x": x}, config)
    start = bm.init(jax.random.key(0), config, bm.meta_from_data({"x": x}, config))
    before, after = (float(jnp.mean(bm.log_prob(p, x))) for p in (start, params))
    # uniform start -6.24 nats, the data's entropy ~3.6: measured about -3.9 after fitting
    assert after > before + 1.5, (before, after)
    assert history["num_iters"] == 20 * 12 and history["free_energy_data"].shape == (20,)
    np.testing.assert_array_equal(
        bm.log_prob(params, x), bm.rbm_log_prob(params, jnp.asarray(x), bm.exact_log_z(params))
    )


@pytest.mark.slow  # ~30 s: three compiled epochs (two pretraining RBMs and the joint DBM)
def test_fit_pretrains_then_trains_a_dbm_with_the_structure_of_init():
    x = bars_data(200, 18)
    config = small_config("dbm", method="pcd", mean_field_iters=5)
    config.num_epochs, config.pretrain.epochs, config.optim.learning_rate = 4.0, 1.0, 0.05
    params, history = bm.fit(jax.random.key(1), {"x": x}, config)
    meta = bm.meta_from_data({"x": x}, config)
    abstract = jax.eval_shape(lambda k: bm.init(k, config, meta), jax.random.key(0))
    assert jax.tree.structure(abstract) == jax.tree.structure(params)
    for want, got in zip(jax.tree.leaves(abstract), jax.tree.leaves(params)):
        assert (want.shape, want.dtype) == (got.shape, got.dtype)
    assert history["unnormalized_bound"].shape == (2,) and history["num_iters"] == 2 * 4
    bound = bm.log_prob_bound(jax.random.key(2), params, x, bm.log_partition(params))
    np.testing.assert_array_equal(
        bound, bm.dbm_lower_bound(params, jnp.asarray(x), bm.dbm_exact_log_z(params))
    )
    mu1, mu2 = bm.posterior(params, x)
    assert mu1.shape == (200, 8) and mu2.shape == (200, 4)
    assert bm.sample(jax.random.key(3), params, 5, num_sweeps=3).shape == (5, 9)


def test_the_verbs_of_an_rbm():
    params = random_rbm(19, 9, 6, scale=0.5)
    x = bars_data(30, 20)
    estimate = bm.log_prob_estimate(
        jax.random.key(0), params, x, num_runs=32, betas=ais.piecewise_schedule(500)
    )
    np.testing.assert_allclose(estimate, bm.log_prob(params, x), atol=0.05)
    assert bm.posterior(params, x.reshape(30, 3, 3)).shape == (30, 6)
    samples = np.asarray(bm.sample(jax.random.key(1), params, 4, num_sweeps=2))
    assert samples.shape == (4, 9) and set(np.unique(samples)) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="y"):
        bm.sample(jax.random.key(1), params, 4, y=np.zeros(4, int))
    with pytest.raises(NotImplementedError, match="log_prob_bound"):
        bm.log_prob(random_dbm(0, 9, 4, 3), x)
    with pytest.raises(NotImplementedError, match="log_prob"):
        bm.log_prob_bound(jax.random.key(0), params, x)


def test_an_rbm_too_large_to_enumerate_points_to_the_estimate():
    params = bm.init_rbm(jax.random.key(0), 40, 30)
    with pytest.raises(NotImplementedError, match="log_prob_estimate"):
        bm.log_prob(params, jnp.zeros((2, 40)))
