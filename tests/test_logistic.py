"""Multinomial logistic regression against scikit-learn on the bundled digits data, the
mask-weighted loss, and a sharded step equal to the one-device step."""

import ast
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from genjax_lab.models import logistic


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    return x[:1200], y[:1200], x[1200:], y[1200:]


def test_matches_sklearn_accuracy_log_loss_and_objective(digits):
    x, y, x_test, y_test = digits
    params, losses = logistic.fit(x, y, 10, c=1.0, num_steps=150)
    ref = LogisticRegression(C=1.0, max_iter=2000).fit(x, y)
    ours_proba = np.asarray(logistic.predict_proba(params, x_test))
    assert abs(np.mean(ours_proba.argmax(1) == y_test) - ref.score(x_test, y_test)) < 0.01
    their_loss = log_loss(y_test, ref.predict_proba(x_test))
    assert abs(log_loss(y_test, ours_proba, labels=range(10)) - their_loss) < 0.01
    # Same objective: ours at sklearn's optimum is not below ours at our optimum (and close).
    batch = {"x": jnp.asarray(x), "y": jnp.asarray(y), "mask": jnp.ones(len(x))}
    l2 = logistic.l2_from_c(1.0, len(x))
    theirs = logistic.LogisticParams(
        jnp.asarray(ref.coef_.T, jnp.float32), jnp.asarray(ref.intercept_, jnp.float32)
    )
    ours_value = float(logistic.loss(params, batch, l2))
    their_value = float(logistic.loss(theirs, batch, l2))
    assert ours_value <= their_value + 1e-4 and abs(ours_value - their_value) < 1e-3
    assert float(losses[-1]) < float(losses[0])


def test_loss_is_mask_weighted_mean(digits):
    x, y, _, _ = digits
    weights = np.random.default_rng(0).normal(size=(64, 10))
    params = logistic.LogisticParams(jnp.asarray(weights, jnp.float32), jnp.zeros(10))
    real = {"x": jnp.asarray(x[:10]), "y": jnp.asarray(y[:10]), "mask": jnp.ones(10)}
    padded = {
        "x": jnp.concatenate([real["x"], jnp.full((6, 64), 1e3)]),
        "y": jnp.concatenate([real["y"], jnp.zeros(6, int)]),
        "mask": jnp.concatenate([jnp.ones(10), jnp.zeros(6)]),
    }
    np.testing.assert_allclose(
        logistic.loss(params, padded, 0.1), logistic.loss(params, real, 0.1), rtol=1e-6
    )
    log_p = jax.nn.log_softmax(x[:10] @ np.asarray(params.weights), axis=1)
    expected = -np.mean(np.asarray(log_p)[np.arange(10), y[:10]]) + 0.05 * np.sum(
        np.asarray(params.weights) ** 2
    )
    np.testing.assert_allclose(logistic.loss(params, real, 0.1), expected, rtol=1e-5)


def test_sharded_step_equals_one_device_step(digits):
    name = "adam"  # L-BFGS calls the same loss; its zoom line search takes long to compile twice
    x, y, _, _ = digits
    batch = {"x": jnp.asarray(x[:64]), "y": jnp.asarray(y[:64], jnp.int32), "mask": jnp.ones(64)}
    optimizer = logistic.make_optimizer(name, 0.1)
    step = jax.jit(logistic.make_step(optimizer, 1e-3, linesearch=name == "lbfgs"))
    params = logistic.init(64, 10)
    state = optimizer.init(params)
    mesh = jax.make_mesh((8,), ("data",))
    sharded = jax.device_put(batch, NamedSharding(mesh, P("data")))
    p1, s1, v1 = step(params, state, batch)
    p2, s2, v2 = step(params, state, sharded)
    p1, _, _ = step(p1, s1, batch)
    p2, _, _ = step(p2, s2, sharded)
    np.testing.assert_allclose(v1, v2, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_bad_input_is_refused(digits):
    x, y, _, _ = digits
    with pytest.raises(ValueError, match="y must be"):
        logistic.fit(x, y + 5, 10)
    with pytest.raises(ValueError, match="x must be a finite"):
        logistic.fit(np.where(x > 0.9, np.nan, x), y, 10)
    with pytest.raises(ValueError, match="C and num_train"):
        logistic.l2_from_c(0.0, 10)
    with pytest.raises(ValueError, match="optimizer name"):
        logistic.make_optimizer("sgd")


def test_imports_no_other_model():
    """A discriminative baseline, not a family: its sharding helpers come from core.mesh."""
    tree = ast.parse(pathlib.Path(logistic.__file__).read_text())
    imported = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    ]
    assert not [name for name in imported if name and name.startswith("genjax_lab.models")]
