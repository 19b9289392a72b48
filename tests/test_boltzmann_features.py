"""What scikit-learn's BernoulliRBM users rely on, and the classification RBM: the
pseudo-log-likelihood (exact, and scikit-learn's one-bit score_samples), clamped sampling
(inpainting, x given y) and p(y | x) from the free energy of each label, each against float64
brute-force enumeration or scikit-learn on data the test makes."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P
from sklearn.datasets import load_digits
from sklearn.neural_network import BernoulliRBM

from genjax_lab import saving
from genjax_lab.models import boltzmann as bm
from tests.test_boltzmann import (
    binary_states,
    dbm_exact_log_prob,
    np_energy,
    np_logsumexp,
    random_dbm,
    random_rbm,
    sharded,
)


def np_free_energy(params, v):
    """F(v) by enumerating every hidden state in float64: [N, V] -> [N]."""
    hs = binary_states(params.W.shape[1])
    return -np_logsumexp(-np_energy(params, v[:, None, :], hs[None], "bernoulli"), axis=1)


def total_variation(samples: np.ndarray, exact: np.ndarray) -> float:
    """samples [N, k] binary (rows in itertools.product order) against exact [2^k]."""
    codes = samples.astype(int) @ (2 ** np.arange(samples.shape[1] - 1, -1, -1))
    empirical = np.bincount(codes, minlength=len(exact)) / len(codes)
    return 0.5 * float(np.abs(empirical - exact).sum())


# ----------------------------------------------------------------------------- pseudo-likelihood


def test_exact_pseudo_log_likelihood_equals_float64_brute_force():
    params = random_rbm(30, 7, 5, scale=1.0)
    x = np.random.default_rng(31).integers(0, 2, (20, 7)).astype(np.float64)
    free = np_free_energy(params, x)
    brute = np.zeros_like(x)
    for i in range(7):  # log p(x_i | x_-i): x against x with bit i flipped
        flipped = x.copy()
        flipped[:, i] = 1 - flipped[:, i]
        brute[:, i] = -np.logaddexp(0.0, free - np_free_energy(params, flipped))
    terms = bm.pseudo_log_likelihood_terms(params, x.astype(np.float32))
    np.testing.assert_allclose(terms, brute, atol=1e-5)
    np.testing.assert_allclose(bm.pseudo_log_likelihood(params, x), brute.sum(1), atol=1e-4)


def sklearn_rbm(params, x: np.ndarray, random_state: int) -> BernoulliRBM:
    """A fitted scikit-learn BernoulliRBM carrying our parameters."""
    reference = BernoulliRBM(n_components=params.W.shape[1], n_iter=1, random_state=random_state)
    reference.fit(x)
    reference.components_ = np.asarray(params.W, np.float64).T
    reference.intercept_hidden_ = np.asarray(params.b_hid, np.float64)
    reference.intercept_visible_ = np.asarray(params.b_vis, np.float64)
    return reference


def test_one_bit_estimate_is_sklearn_score_samples():
    params = random_rbm(32, 12, 6, scale=1.0)
    rng = np.random.default_rng(33)
    x = rng.integers(0, 2, (40, 12)).astype(np.float64)
    reference = sklearn_rbm(params, x, random_state=7)
    # scikit-learn draws its bits from a fresh RandomState(random_state) at each call
    bits = np.random.RandomState(7).randint(0, 12, 40)
    ours = bm.pseudo_log_likelihood_estimate(None, params, x, bits=bits)
    np.testing.assert_allclose(ours, reference.score_samples(x), rtol=1e-5, atol=1e-4)

    # Drawn with a key, the estimate has scikit-learn's distribution: both average to the
    # exact pseudo-log-likelihood. 4000 draws of each row; the tolerance is 5 standard errors.
    rows, draws = x[:4], 4000
    tiled = np.tile(rows, (draws, 1))
    exact = np.asarray(bm.pseudo_log_likelihood(params, rows))
    ours = np.asarray(bm.pseudo_log_likelihood_estimate(jax.random.key(0), params, tiled))
    theirs = reference.score_samples(tiled)
    for draws_of_rows in (ours, theirs):
        per_row = draws_of_rows.reshape(draws, 4)
        error = 5 * per_row.std(0) / np.sqrt(draws)
        assert np.all(np.abs(per_row.mean(0) - exact) < error), (per_row.mean(0), exact, error)


def test_pseudo_likelihood_needs_an_rbm_and_names_bad_bits():
    with pytest.raises(NotImplementedError, match="log_prob_bound"):
        bm.pseudo_log_likelihood(random_dbm(0, 6, 4, 3), np.zeros((2, 6)))
    with pytest.raises(ValueError, match="bits"):
        bm.pseudo_log_likelihood_estimate(None, random_rbm(0, 6, 3), np.zeros((2, 6)), bits=[0, 6])


# ----------------------------------------------------------------------------- clamped sampling


def test_inpainting_an_rbm_samples_the_exact_conditional():
    params = random_rbm(34, 6, 3, scale=1.0)
    observed = np.array([True, False, True, False, False, True])
    x = np.array([1, 0, 0, 0, 0, 1], np.float32)
    # p(x_unobserved | x_observed) by enumerating the 2^3 completions, in float64
    completions = np.tile(x.astype(np.float64), (8, 1))
    completions[:, ~observed] = binary_states(3)
    log_p = -np_free_energy(params, completions)
    exact = np.exp(log_p - np_logsumexp(log_p, axis=0))
    filled = np.asarray(
        bm.inpaint(jax.random.key(0), params, np.tile(x, (4000, 1)), observed, num_sweeps=30)
    )
    np.testing.assert_array_equal(filled[:, observed], np.tile(x[observed], (4000, 1)))
    assert total_variation(filled[:, ~observed], exact) < 0.03  # MC error ~0.01


def test_inpainting_a_dbm_samples_the_exact_conditional():
    params = random_dbm(35, 5, 4, 3, scale=0.8)
    observed = np.array([False, True, True, False, False])
    x = np.array([0, 1, 1, 0, 0], np.float32)
    completions = np.tile(x.astype(np.float64), (8, 1))
    completions[:, ~observed] = binary_states(3)
    log_p, _ = dbm_exact_log_prob(params, completions)  # h1 and h2 summed out exactly
    exact = np.exp(log_p - np_logsumexp(log_p, axis=0))
    images = np.tile(x, (4000, 1))
    filled = np.asarray(bm.inpaint(jax.random.key(1), params, images, observed, num_sweeps=50))
    np.testing.assert_array_equal(filled[:, observed], images[:, observed])
    assert total_variation(filled[:, ~observed], exact) < 0.03


def test_inpaint_names_a_bad_mask():
    params, x = random_rbm(0, 6, 3), np.zeros((2, 2, 3), np.float32)
    with pytest.raises(ValueError, match="observed must be booleans"):
        bm.inpaint(jax.random.key(0), params, x, np.ones((2, 3)))
    with pytest.raises(ValueError, match="observed must broadcast"):
        bm.inpaint(jax.random.key(0), params, x, np.ones(6, bool))
    with pytest.raises(ValueError, match="y: only a classification RBM"):
        bm.inpaint(jax.random.key(0), params, x, np.ones((2, 3), bool), y=[0, 1])
    image_mask = np.array([[True, False, True], [False, True, False]])  # one mask for all
    assert bm.inpaint(jax.random.key(0), params, x, image_mask, num_sweeps=2).shape == (2, 2, 3)


# ----------------------------------------------------------------------------- classification RBM


def random_class_rbm(seed: int, v: int, c: int, h: int, scale: float = 0.8) -> bm.ClassRBMParams:
    rng = np.random.default_rng(seed)
    f = lambda *shape: jnp.asarray(rng.normal(0, scale, shape), jnp.float32)
    return bm.ClassRBMParams(W=f(v, h), U=f(c, h), b_vis=f(v), b_hid=f(h), b_label=f(c))


def np_class_log_unnormalized(params, v):
    """log sum_h exp(-E(v, y, h)) for every v [N, V] and label: [N, C], in float64, every
    hidden state enumerated."""
    W, U, b, c, d = (np.asarray(a, np.float64) for a in params)
    hs = binary_states(W.shape[1])
    neg_e = (
        (v @ W @ hs.T)[:, None, :]  # [N, 1, S]
        + (U @ hs.T)[None]  # [1, C, S]
        + (v @ b)[:, None, None]
        + d[None, :, None]
        + (hs @ c)[None, None, :]
    )
    return np_logsumexp(neg_e, axis=2)


def test_class_rbm_probabilities_equal_brute_force_enumeration():
    params = random_class_rbm(36, 5, 3, 4)
    vs = binary_states(5)
    joint = np_class_log_unnormalized(params, vs)  # [32, 3]
    log_z = np_logsumexp(joint.reshape(-1), axis=0)
    label_log_z = np_logsumexp(joint, axis=0)
    np.testing.assert_allclose(bm.label_log_partition(params), label_log_z, rtol=1e-6)
    np.testing.assert_allclose(bm.log_partition(params), log_z, rtol=1e-6)

    x = vs[::3].astype(np.float32)
    classifier = bm.classifier(params)
    want = joint[::3] - np_logsumexp(joint[::3], axis=1)[:, None]  # log p(y | x)
    np.testing.assert_allclose(classifier.predict_log_proba(x), want, atol=1e-5)
    np.testing.assert_allclose(classifier.log_joint(x), joint[::3] - log_z, atol=1e-4)
    np.testing.assert_array_equal(classifier.predict(x), want.argmax(1))
    labels = np.arange(len(x)) % 3
    np.testing.assert_allclose(
        bm.log_prob(params, x, labels),
        joint[::3][np.arange(len(x)), labels] - label_log_z[labels],
        atol=1e-4,
    )
    np.testing.assert_allclose(
        bm.log_prob(params, x), np_logsumexp(joint[::3], axis=1) - log_z, atol=1e-4
    )
    # the hidden posterior sums the label out: sum_y p(y | x) p(h | x, y)
    logits = x @ np.asarray(params.W) + np.asarray(params.b_hid)
    given = 1 / (1 + np.exp(-(logits[:, None, :] + np.asarray(params.U))))
    np.testing.assert_allclose(
        bm.posterior(params, x), np.einsum("bc,bch->bh", np.exp(want), given), atol=1e-5
    )


def test_class_rbm_samples_x_given_its_label():
    params = random_class_rbm(37, 4, 3, 3, scale=1.0)
    joint = np_class_log_unnormalized(params, binary_states(4))
    exact = np.exp(joint[:, 2] - np_logsumexp(joint[:, 2], axis=0))  # p(x | y = 2)
    given = np.asarray(
        bm.sample(jax.random.key(2), params, 4000, y=np.full(4000, 2), num_sweeps=30)
    )
    assert total_variation(given, exact) < 0.03
    # inpainting with the label clamped too: p(x_2, x_3 | x_0, x_1, y = 2)
    observed = np.array([True, True, False, False])
    x = np.tile(np.array([1, 0, 0, 0], np.float32), (4000, 1))
    filled = np.asarray(
        bm.inpaint(jax.random.key(3), params, x, observed, y=np.full(4000, 2), num_sweeps=30)
    )
    rows = joint[8:12, 2]  # x_0 = 1, x_1 = 0: codes 8..11
    assert total_variation(filled[:, 2:], np.exp(rows - np_logsumexp(rows, axis=0))) < 0.03
    with pytest.raises(ValueError, match="y must hold labels"):
        bm.sample(jax.random.key(2), params, 2, y=[0, 3])
    with pytest.raises(ValueError, match="y: this Boltzmann machine has no label units"):
        bm.sample(jax.random.key(2), random_rbm(0, 4, 3), 2, y=[0, 1])


def test_class_rbm_step_on_8_devices_equals_1_device():
    """The labelled PCD step (label units a softmax group) under shard_map: chain i draws
    from fold_in(key, i) wherever it runs, so chains match exactly and parameters to 1e-6."""
    mesh = jax.make_mesh((8,), ("data",))
    params = bm.class_rbm_as_rbm(random_class_rbm(38, 10, 3, 6, scale=0.3))
    rng = np.random.default_rng(39)
    one_hot = lambda n: np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)]
    x = rng.integers(0, 2, (24, 10)).astype(np.float32)
    batch = {"x": np.concatenate([x, one_hot(24)], 1), "mask": np.ones(24, np.float32)}
    chains = np.concatenate([rng.integers(0, 2, (16, 10)).astype(np.float32), one_hot(16)], 1)
    optimizer = bm.rbm_optimizer(0.1, momentum=0.5)
    opt_state, key = optimizer.init(params), jax.random.key(40)
    single = jax.jit(bm.make_rbm_step(optimizer, k=2, labels=3))(
        params, opt_state, chains, batch, key
    )
    many = jax.jit(bm.make_rbm_step(optimizer, k=2, labels=3, mesh=mesh))(
        sharded(mesh, params, P()),
        sharded(mesh, opt_state, P()),
        sharded(mesh, chains, P("data")),
        sharded(mesh, batch, P("data")),
        key,
    )
    np.testing.assert_array_equal(many[2], single[2])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), many[:2], single[:2])
    np.testing.assert_array_equal(np.asarray(single[2])[:, 10:].sum(1), 1.0)  # still one-hot


def test_hybrid_step_adds_the_exact_discriminative_gradient():
    """Larochelle & Bengio's hybrid step: the same step with and without the discriminative
    term (same key, so the same CD term) differs by lambda times the gradient of the mean
    log p(y | x), here against its closed form in float64 NumPy (a masked row left out)."""
    params = random_class_rbm(41, 6, 3, 4, scale=0.7)
    rng = np.random.default_rng(42)
    x, y = rng.integers(0, 2, (10, 6)).astype(np.float64), rng.integers(0, 3, 10)
    mask = np.ones(10)
    mask[-1] = 0.0
    batch = {"x": np.concatenate([x, np.eye(3)[y]], 1).astype(np.float32), "mask": mask}
    optimizer = optax.sgd(1.0)  # update = -direction
    rbm = bm.class_rbm_as_rbm(params)
    after = {}
    for weight in (0.0, 0.5):
        step = jax.jit(
            bm.make_rbm_step(optimizer, method="cd", labels=3, discriminative_weight=weight)
        )
        after[weight], _, _, metrics = step(
            rbm, optimizer.init(rbm), None, batch, jax.random.key(43)
        )
    ours = bm.class_rbm_from_rbm_layout(
        jax.tree.map(lambda a, b: (a - b) / 0.5, after[0.5], after[0.0]), 6
    )

    W, U, _, c, d = (np.asarray(a, np.float64) for a in params)
    o = (x @ W + c)[:, None, :] + U  # [B, C, H] hidden inputs given each label
    log_joint = d + np.logaddexp(0, o).sum(-1)
    p = np.exp(log_joint - np_logsumexp(log_joint, axis=1)[:, None])  # p(y' | x) [B, C]
    onehot, act = np.eye(3)[y], 1 / (1 + np.exp(-o))
    expected_act = np.einsum("bc,bch->bh", p, act)
    given_act = act[np.arange(10), y]
    rows = mask / mask.sum()
    want = {  # d mean log p(y | x) / d parameter
        "W": np.einsum("b,bi,bh->ih", rows, x, given_act - expected_act),
        "U": np.einsum("b,bch->ch", rows, onehot[:, :, None] * act - p[:, :, None] * act),
        "b_vis": np.zeros(6),
        "b_hid": rows @ (given_act - expected_act),
        "b_label": rows @ (onehot - p),
    }
    for name, value in want.items():
        np.testing.assert_allclose(getattr(ours, name), value, atol=2e-5, err_msg=name)
    log_lik = np.log(p[np.arange(10), y])
    np.testing.assert_allclose(metrics["label_log_likelihood"], rows @ log_lik, rtol=1e-5)
    with pytest.raises(ValueError, match="discriminative_weight needs label units"):
        bm.make_rbm_step(optimizer, discriminative_weight=1.0)


def test_class_rbm_fit_on_binary_digits_classifies_and_round_trips(tmp_path):
    digits = load_digits()
    x = (digits.data >= 8).astype(np.float32)
    y = digits.target.astype(np.int32)
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:1400], order[1400:]
    config = bm.default_config()
    config.model.update(kind="class_rbm", num_hidden=100, method="cd", k=1)
    config.batch_size, config.num_epochs = 50, 8.0
    config.optim.update(learning_rate=0.2, weight_decay=1e-4, momentum_epochs=2.0)
    data = {"x": x[train], "y": y[train]}
    params, history = bm.fit(jax.random.key(0), data, config)
    assert history["num_iters"] == 8 * 28
    classifier = bm.classifier(params)  # 100 hidden units: log Z left out, p(y | x) exact
    accuracy = float(np.mean(np.asarray(classifier.predict(x[test])) == y[test]))
    assert accuracy > 0.85, accuracy  # measured 0.917 (generative CD-1 only)

    meta = bm.meta_from_data(data, config)
    assert meta["num_classes"] == 10
    saving.save(tmp_path, "boltzmann", config, meta, params)
    loaded = saving.load(tmp_path)
    np.testing.assert_array_equal(
        loaded.classifier().predict_log_proba(x[test]), classifier.predict_log_proba(x[test])
    )
    sevens = np.asarray(loaded.sample(jax.random.key(1), 3, y=np.full(3, 7), num_sweeps=20))
    assert sevens.shape == (3, 64) and set(np.unique(sevens)) <= {0.0, 1.0}


def test_a_class_rbm_is_fit_in_memory_not_by_the_loop():
    config = bm.default_config()
    config.model.kind = "class_rbm"
    with pytest.raises(ValueError, match="class_rbm' is trained by boltzmann.fit"):
        bm.family_for(config, {"train": {"image": np.zeros((10, 2, 2, 1), np.uint8)}})
    with pytest.raises(NotImplementedError, match="no classifier.*class_rbm"):
        bm.classifier(random_rbm(0, 4, 3))
    with pytest.raises(TypeError, match="data.*y"):
        bm.fit(jax.random.key(0), {"x": np.zeros((4, 3), np.float32)}, config)


def test_a_class_rbm_too_large_to_enumerate_classifies_but_refuses_log_p():
    """Beyond CLASSIFIER_ENUMERATION_BITS units in both layers log Z is unknown: P(y | x)
    is exact (log Z cancels) and equals the free-energy softmax, log p(x) is refused."""
    size = bm.CLASSIFIER_ENUMERATION_BITS + 2
    params = bm.init_class_rbm(jax.random.key(0), size, 3, size, weight_scale=0.5)
    x = (np.random.default_rng(0).random((4, size)) < 0.5).astype(np.float32)
    classifier = bm.classifier(params)
    free = np.stack([bm.free_energy_given_label(params, x, np.full(4, c)) for c in range(3)], 1)
    expected = -free - np_logsumexp(-free, axis=1)[:, None]
    np.testing.assert_allclose(classifier.predict_log_proba(x), expected, atol=1e-4)
    with pytest.raises(ValueError, match="unnormalised"):
        classifier.log_marginal(x)
