"""RBM, DBM and classification-RBM maths: parameters, energies, free energy, conditionals,
block Gibbs (clamped or free), mean field.

Energies (v [V], h [H], h1 [H1], h2 [H2]):
  Bernoulli RBM  E(v, h) = -v W h - b.v - c.h                      v in {0, 1}^V
  Gaussian RBM   E(v, h) = |v - b|^2 / 2 - v W h - c.h              v in R^V (unit variance)
  DBM            E(v, h1, h2) = -v W1 h1 - h1 W2 h2 - b.v - c1.h1 - c2.h2
  class RBM      E(v, y, h) = -v W h - y U h - b.v - d.y - c.h      y one-hot [C]
Free energy F(v) = -log sum_h exp(-E(v, h)) = -b.v - sum_j softplus(c_j + (v W)_j) (Bernoulli;
the Gaussian RBM has |v - b|^2 / 2 in place of -b.v), so log p(v) = -F(v) - log Z.

The DBM is an RBM in disguise: given h1, the layers v and h2 are independent, so the DBM is
the RBM whose hidden layer is h1 and whose visible layer is [v, h2], with weights
[W1; W2^T] and visible biases [b; c2] (`dbm_as_rbm`). Block Gibbs, the negative phase of
training and log Z (partition.py) all use that identity. Likewise the classification RBM is
the RBM over [v, y] (`class_rbm_as_rbm`) whose last C units are drawn as one softmax group,
and clamping (inpainting, x given y) is block Gibbs with some visible units held fixed.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import xlogy

from genjax_lab.core import checks

VISIBLE_TYPES = ("bernoulli", "gaussian")


class RBMParams(NamedTuple):
    W: jax.Array  # [V, H]
    b_vis: jax.Array  # [V]
    b_hid: jax.Array  # [H]


class DBMParams(NamedTuple):
    W1: jax.Array  # [V, H1]
    W2: jax.Array  # [H1, H2]
    b_vis: jax.Array  # [V]
    b_h1: jax.Array  # [H1]
    b_h2: jax.Array  # [H2]


class ClassRBMParams(NamedTuple):
    """A classification RBM (Larochelle & Bengio, ICML 2008): one-hot label units y [C]
    beside the visible units, E(v, y, h) = -v W h - y U h - b.v - d.y - c.h."""

    W: jax.Array  # [V, H]
    U: jax.Array  # [C, H] label-to-hidden weights
    b_vis: jax.Array  # [V]
    b_hid: jax.Array  # [H]
    b_label: jax.Array  # [C]


class DBMChains(NamedTuple):
    """Persistent DBM chains: h1 is redrawn from (v, h2) at every sweep, so it is not kept."""

    v: jax.Array  # [N, V]
    h2: jax.Array  # [N, H2]


def check_visible(visible: str) -> None:
    if visible not in VISIBLE_TYPES:
        raise ValueError(f"visible must be one of {VISIBLE_TYPES}, got {visible!r}")


def _check_units(name: str, values, params: RBMParams, layer: str) -> None:
    """values [B, V] (layer "visible") or [B, H] ("hidden") of the RBM `params`, finite."""
    checks.check_finite_tree("params", params)
    size = np.shape(params.W)[0 if layer == "visible" else 1]
    checks.check_array(name, values, ("B", size))


def _check_visible_input(params: RBMParams, v, visible: str = "bernoulli", **_) -> None:
    check_visible(visible)
    _check_units("v", v, params, "visible")


# ----------------------------------------------------------------------------- initialisation


def init_rbm(
    key: jax.Array,
    num_visible: int,
    num_hidden: int,
    *,
    data_mean=None,
    weight_scale: float = 0.01,
    visible: str = "bernoulli",
) -> RBMParams:
    """W ~ N(0, weight_scale^2); hidden biases 0; visible biases from the data mean if given.

    data_mean: [V] pixel means (Bernoulli: b = logit(mean), clipped; Gaussian: b = mean),
    as Hinton's practical guide advises, so the chains start near the data's marginals.
    """
    check_visible(visible)
    checks.check_count("num_visible", num_visible)
    checks.check_count("num_hidden", num_hidden)
    checks.check_number("weight_scale", weight_scale, low=0.0)
    b_vis = jnp.zeros(num_visible)
    if data_mean is not None:
        data_mean = checks.check_array("data_mean", data_mean).astype(np.float64).reshape(-1)
        if data_mean.shape != (num_visible,):
            raise ValueError(f"data_mean must have shape ({num_visible},), got {data_mean.shape}")
        b_vis = jnp.asarray(visible_bias_from_mean(data_mean, visible), jnp.float32)
    W = weight_scale * jax.random.normal(key, (num_visible, num_hidden))
    return RBMParams(W=W, b_vis=b_vis, b_hid=jnp.zeros(num_hidden))


def visible_bias_from_mean(
    data_mean: np.ndarray, visible: str = "bernoulli", eps: float = 1e-3
) -> np.ndarray:
    """The visible biases of the zero-weight RBM whose visible marginals are `data_mean` [V].

    Bernoulli: logit(mean) with the mean clipped to [eps, 1 - eps] (pixels that are always
    off would otherwise get -inf); Gaussian: the mean itself.
    """
    data_mean = np.asarray(data_mean, np.float64)
    if visible == "gaussian":
        return data_mean
    p = np.clip(data_mean, eps, 1.0 - eps)
    return np.log(p) - np.log1p(-p)


def init_rbm_chains(
    key: jax.Array, num_chains: int, num_visible: int, *, visible: str = "bernoulli"
) -> jax.Array:
    """Fantasy particles for PCD: uniform random bits (Bernoulli) or N(0, 1) (Gaussian): [N, V]."""
    check_visible(visible)
    checks.check_count("num_chains", num_chains)
    checks.check_count("num_visible", num_visible)
    if visible == "gaussian":
        return jax.random.normal(key, (num_chains, num_visible))
    return jax.random.bernoulli(key, 0.5, (num_chains, num_visible)).astype(jnp.float32)


def init_dbm(
    key: jax.Array,
    num_visible: int,
    num_hidden1: int,
    num_hidden2: int,
    *,
    data_mean=None,
    weight_scale: float = 0.01,
) -> DBMParams:
    """Small random weights, zero hidden biases, visible biases from `data_mean` [V] if given."""
    checks.check_count("num_hidden2", num_hidden2)
    k1, k2 = jax.random.split(key)
    first = init_rbm(k1, num_visible, num_hidden1, data_mean=data_mean, weight_scale=weight_scale)
    W2 = weight_scale * jax.random.normal(k2, (num_hidden1, num_hidden2))
    return DBMParams(
        W1=first.W, W2=W2, b_vis=first.b_vis, b_h1=first.b_hid, b_h2=jnp.zeros(num_hidden2)
    )


def init_dbm_chains(key: jax.Array, num_chains: int, params: DBMParams) -> DBMChains:
    """Uniform random bits for v [N, V] and h2 [N, H2]."""
    checks.check_count("num_chains", num_chains)
    kv, kh = jax.random.split(key)
    v = jax.random.bernoulli(kv, 0.5, (num_chains, params.b_vis.shape[0])).astype(jnp.float32)
    h2 = jax.random.bernoulli(kh, 0.5, (num_chains, params.b_h2.shape[0])).astype(jnp.float32)
    return DBMChains(v=v, h2=h2)


# ----------------------------------------------------------------------------- the RBM


@checks.validated(_check_visible_input)
def hidden_logits(params: RBMParams, v: jax.Array, scale: float = 1.0) -> jax.Array:
    """scale * v W + c: [B, V] -> [B, H]. scale = 2 is the doubled-input trick (pretraining)."""
    return scale * (v @ params.W) + params.b_hid


@checks.validated(_check_visible_input)
def hidden_probs(params: RBMParams, v: jax.Array) -> jax.Array:
    """p(h_j = 1 | v) = sigmoid(c_j + (v W)_j): [B, V] -> [B, H]."""
    return jax.nn.sigmoid(hidden_logits(params, v))


def _check_hidden_input(params: RBMParams, h, visible: str, **_) -> None:
    check_visible(visible)
    _check_units("h", h, params, "hidden")


@checks.validated(_check_hidden_input)
def visible_mean(
    params: RBMParams, h: jax.Array, visible: str = "bernoulli", scale: float = 1.0
) -> jax.Array:
    """E[v | h]: sigmoid(b + scale * h W^T) (Bernoulli) or b + scale * h W^T (Gaussian): [B, V]."""
    field = params.b_vis + scale * (h @ params.W.T)
    return jax.nn.sigmoid(field) if visible == "bernoulli" else field


def _visible_term(params: RBMParams, v: jax.Array, visible: str) -> jax.Array:
    """The part of -F(v) that does not involve the hidden units: [B]."""
    if visible == "bernoulli":
        return v @ params.b_vis
    return -0.5 * jnp.sum((v - params.b_vis) ** 2, axis=-1)


def free_energy_from_logits(params: RBMParams, v, logits, visible: str) -> jax.Array:
    """F(v) [B] given the hidden logits of v [B, H] (which the caller has already formed)."""
    return -_visible_term(params, v, visible) - jnp.sum(jax.nn.softplus(logits), axis=-1)


@checks.validated(_check_visible_input)
def free_energy(params: RBMParams, v: jax.Array, visible: str = "bernoulli") -> jax.Array:
    """F(v) = -log sum_h exp(-E(v, h)), the hidden units summed out analytically: [B, V] -> [B]."""
    return free_energy_from_logits(params, v, hidden_logits(params, v), visible)


def _check_log_prob(params: RBMParams, v, log_z, visible: str, **_) -> None:
    _check_visible_input(params, v, visible)
    checks.check_number("log_z", log_z)


@checks.validated(_check_log_prob)
def rbm_log_prob(params: RBMParams, v: jax.Array, log_z, visible: str = "bernoulli") -> jax.Array:
    """log p(v) = -F(v) - log Z in nats (a density for Gaussian visible units): [B]."""
    return -free_energy(params, v, visible) - log_z


def chain_keys(key: jax.Array, offset, num: int) -> jax.Array:
    """One key per chain, `fold_in(key, offset + i)`: chain randomness follows its global index."""
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(offset + jnp.arange(num))


def sample_bernoulli(keys: jax.Array, probs: jax.Array) -> jax.Array:
    """Row r ~ Bernoulli(probs[r]) with keys[r], as float: keys [N], probs [N, D] -> [N, D]."""
    uniform = jax.vmap(lambda k: jax.random.uniform(k, probs.shape[1:], probs.dtype))(keys)
    return (uniform < probs).astype(probs.dtype)


def sample_normal(keys: jax.Array, mean: jax.Array) -> jax.Array:
    """Row r ~ N(mean[r], I) with keys[r]: keys [N], mean [N, D] -> [N, D]."""
    return mean + jax.vmap(lambda k: jax.random.normal(k, mean.shape[1:], mean.dtype))(keys)


def sample_visible(keys: jax.Array, mean: jax.Array, visible: str) -> jax.Array:
    """v ~ p(v | h) given its mean E[v | h] [N, V], one key per row."""
    return sample_bernoulli(keys, mean) if visible == "bernoulli" else sample_normal(keys, mean)


def _sweep(params: RBMParams, v, keys, visible: str, up: float, down: float, observed, labels):
    """One block-Gibbs sweep v -> h -> v' per chain; returns (v', E[v' | h]).

    observed: None, or [N, V] booleans: those units keep their values in v (clamped).
    labels: the number of trailing visible units that form one softmax group (a one-hot
    label, drawn from p(y | h) as a whole rather than bit by bit; 0: none).
    """
    pairs = jax.vmap(jax.random.split)(keys)
    h = sample_bernoulli(pairs[:, 0], jax.nn.sigmoid(hidden_logits(params, v, up)))
    if labels:
        field = params.b_vis + down * (h @ params.W.T)
        pixel_mean = jax.nn.sigmoid(field[:, :-labels])
        label_keys = jax.vmap(jax.random.fold_in, (0, None))(pairs[:, 1], 1)
        drawn = jax.vmap(jax.random.categorical)(label_keys, field[:, -labels:])
        new = jnp.concatenate(
            [
                sample_bernoulli(pairs[:, 1], pixel_mean),
                jax.nn.one_hot(drawn, labels, dtype=v.dtype),
            ],
            axis=1,
        )
        mean = jnp.concatenate([pixel_mean, jax.nn.softmax(field[:, -labels:])], axis=1)
    else:
        mean = visible_mean(params, h, visible, down)
        new = sample_visible(pairs[:, 1], mean, visible)
    if observed is not None:
        new, mean = jnp.where(observed, v, new), jnp.where(observed, v, mean)
    return new, mean


def run_chains(
    params: RBMParams,
    v,
    keys,
    num_steps,
    visible: str,
    up: float = 1.0,
    down: float = 1.0,
    *,
    observed=None,
    labels: int = 0,
):
    """`num_steps` sweeps; sweep t of chain r uses fold_in(keys[r], t). Returns (v, E[v | h]).

    num_steps: a Python int, or a traced int32 [] (a schedule of k inside a compiled step).
    observed, labels: clamped units and a trailing softmax group, as in `_sweep`.
    """

    def body(t, carry):
        v, _ = carry
        step_keys = jax.vmap(jax.random.fold_in, (0, None))(keys, t)
        return _sweep(params, v, step_keys, visible, up, down, observed, labels)

    return jax.lax.fori_loop(0, num_steps, body, (v, jnp.zeros_like(v)))


def gibbs_chain(
    params: RBMParams, v0: jax.Array, key: jax.Array, num_steps: int, *, visible: str = "bernoulli"
) -> tuple[jax.Array, jax.Array]:
    """Block-Gibbs chains from v0 [N, V] for `num_steps` sweeps.

    Returns (v [N, V] the last states, mean [N, V] E[v | h] of the last sweep, for display).
    """
    check_visible(visible)
    if num_steps < 1:
        raise ValueError(f"num_steps must be at least 1, got {num_steps}")
    if checks.is_checkable(params, v0):
        _check_units("v0", v0, params, "visible")
    return run_chains(params, v0, chain_keys(key, 0, v0.shape[0]), num_steps, visible)


def rbm_filters(params: RBMParams, image_shape: tuple[int, ...]) -> jax.Array:
    """Each hidden unit's incoming weights as an image: [H, *image_shape]."""
    return params.W.T.reshape(params.W.shape[1], *image_shape)


# ----------------------------------------------------------------------------- the DBM


def dbm_as_rbm(params: DBMParams) -> RBMParams:
    """The RBM over (visible [v, h2], hidden h1) with the DBM's joint: W [V + H2, H1]."""
    return RBMParams(
        W=jnp.concatenate([params.W1, params.W2.T], axis=0),
        b_vis=jnp.concatenate([params.b_vis, params.b_h2]),
        b_hid=params.b_h1,
    )


def dbm_from_rbm_layout(rbm: RBMParams, num_visible: int) -> DBMParams:
    """Inverse of `dbm_as_rbm` (also maps gradients given in that layout back)."""
    return DBMParams(
        W1=rbm.W[:num_visible],
        W2=rbm.W[num_visible:].T,
        b_vis=rbm.b_vis[:num_visible],
        b_h1=rbm.b_hid,
        b_h2=rbm.b_vis[num_visible:],
    )


def _check_dbm_input(params: DBMParams, v, num_iters: int = 0, log_z=0.0, **_) -> None:
    checks.check_finite_tree("params", params)
    checks.check_array("v", v, ("B", np.shape(params.W1)[0]))
    checks.check_count("num_iters", num_iters, minimum=0)
    checks.check_number("log_z", log_z)


@checks.validated(_check_dbm_input)
def mean_field(params: DBMParams, v: jax.Array, num_iters: int = 10):
    """Fully factorised q(h1) q(h2) for each v [B, V]: returns (mu1 [B, H1], mu2 [B, H2]).

    Starts from a bottom-up pass with doubled W1 (standing in for the top-down input, as in
    Salakhutdinov & Hinton 2009), then alternates the exact layer-wise updates
    mu1 = sigmoid(v W1 + mu2 W2^T + c1), mu2 = sigmoid(mu1 W2 + c2): coordinate ascent, so
    each update can only raise the bound.
    """
    bottom_up = v @ params.W1  # the same at every iteration: computed once
    mu1 = jax.nn.sigmoid(2.0 * bottom_up + params.b_h1)
    mu2 = jax.nn.sigmoid(mu1 @ params.W2 + params.b_h2)

    def update(_, mus):
        _, mu2 = mus
        mu1 = jax.nn.sigmoid(bottom_up + mu2 @ params.W2.T + params.b_h1)
        return mu1, jax.nn.sigmoid(mu1 @ params.W2 + params.b_h2)

    return jax.lax.fori_loop(0, num_iters, update, (mu1, mu2))


def _bernoulli_entropy(mu: jax.Array) -> jax.Array:
    return -jnp.sum(xlogy(mu, mu) + xlogy(1.0 - mu, 1.0 - mu), axis=-1)


def dbm_unnormalized_bound(
    params: DBMParams, v: jax.Array, mu1: jax.Array, mu2: jax.Array
) -> jax.Array:
    """E_q[-E(v, h1, h2)] + H(q) <= log sum_h exp(-E(v, h)) = log p(v) + log Z: [B]."""
    expected = (
        v @ params.b_vis
        + mu1 @ params.b_h1
        + mu2 @ params.b_h2
        + jnp.sum((v @ params.W1) * mu1, -1)
        + jnp.sum((mu1 @ params.W2) * mu2, -1)
    )
    return expected + _bernoulli_entropy(mu1) + _bernoulli_entropy(mu2)


@checks.validated(_check_dbm_input)
def dbm_lower_bound(params: DBMParams, v: jax.Array, log_z, num_iters: int = 10) -> jax.Array:
    """The variational lower bound on log p(v) in nats given log Z (exact or AIS): [B].

    With an AIS log Z (which underestimates log Z on average) the result is an estimate of
    the bound, not a guaranteed bound.
    """
    mu1, mu2 = mean_field(params, v, num_iters)
    return dbm_unnormalized_bound(params, v, mu1, mu2) - log_z


def dbm_gibbs_chain(
    params: DBMParams, chains: DBMChains, key: jax.Array, num_steps: int
) -> tuple[DBMChains, jax.Array]:
    """Block Gibbs (h1 | v, h2, then v, h2 | h1) for `num_steps` sweeps.

    Returns (chains, v_mean [N, V] = p(v = 1 | h1) of the last sweep, for display).
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be at least 1, got {num_steps}")
    if checks.is_checkable(params, chains):
        checks.check_finite_tree("params", params)
        checks.check_array("chains.v", chains.v, ("N", np.shape(params.b_vis)[0]))
        checks.check_array(
            "chains.h2", chains.h2, (np.shape(chains.v)[0], np.shape(params.b_h2)[0])
        )
    num_visible = params.b_vis.shape[0]
    state = jnp.concatenate([chains.v, chains.h2], axis=1)
    keys = chain_keys(key, 0, state.shape[0])
    state, mean = run_chains(dbm_as_rbm(params), state, keys, num_steps, "bernoulli")
    return DBMChains(v=state[:, :num_visible], h2=state[:, num_visible:]), mean[:, :num_visible]


def compose_dbm(rbm1: RBMParams, rbm2: RBMParams) -> DBMParams:
    """The DBM of two pretrained RBMs (v -> h1, h1 -> h2); h1's bias is the mean of their two."""
    return DBMParams(
        W1=rbm1.W,
        W2=rbm2.W,
        b_vis=rbm1.b_vis,
        b_h1=0.5 * (rbm1.b_hid + rbm2.b_vis),
        b_h2=rbm2.b_hid,
    )


# ---------------------------------------------------------------------- the classification RBM


def init_class_rbm(
    key: jax.Array,
    num_visible: int,
    num_classes: int,
    num_hidden: int,
    *,
    data_mean=None,
    weight_scale: float = 0.01,
) -> ClassRBMParams:
    """Small random W and U, zero hidden and label biases, visible biases from `data_mean`."""
    checks.check_count("num_classes", num_classes, minimum=2)
    k1, k2 = jax.random.split(key)
    rbm = init_rbm(k1, num_visible, num_hidden, data_mean=data_mean, weight_scale=weight_scale)
    return ClassRBMParams(
        W=rbm.W,
        U=weight_scale * jax.random.normal(k2, (num_classes, num_hidden)),
        b_vis=rbm.b_vis,
        b_hid=rbm.b_hid,
        b_label=jnp.zeros(num_classes),
    )


def class_rbm_as_rbm(params: ClassRBMParams) -> RBMParams:
    """The RBM over (visible [v, y], hidden h): W [V + C, H], visible biases [b; d]. Its
    states with a one-hot y are the classification RBM's, so the block-Gibbs sweeps run on
    it with y as one softmax group (`run_chains(..., labels=C)`)."""
    return RBMParams(
        W=jnp.concatenate([params.W, params.U], axis=0),
        b_vis=jnp.concatenate([params.b_vis, params.b_label]),
        b_hid=params.b_hid,
    )


def class_rbm_from_rbm_layout(rbm: RBMParams, num_visible: int) -> ClassRBMParams:
    """Inverse of `class_rbm_as_rbm` (also maps gradients given in that layout back)."""
    return ClassRBMParams(
        W=rbm.W[:num_visible],
        U=rbm.W[num_visible:],
        b_vis=rbm.b_vis[:num_visible],
        b_hid=rbm.b_hid,
        b_label=rbm.b_vis[num_visible:],
    )


def label_free_energies(params: ClassRBMParams, v: jax.Array) -> jax.Array:
    """F(v, y) = -b.v - d_y - sum_j softplus(c_j + (v W)_j + U_yj) for every label y, the
    hidden units summed out analytically: v [B, V] -> [B, C]."""
    logits = v @ params.W + params.b_hid
    hidden = jnp.sum(jax.nn.softplus(logits[:, None, :] + params.U), axis=-1)
    return -(v @ params.b_vis)[:, None] - params.b_label - hidden


def free_energy_given_label(params: ClassRBMParams, v: jax.Array, y: jax.Array) -> jax.Array:
    """F(v, y) for one label per row, y [B] int: [B] (`label_free_energies` at y, C times
    cheaper)."""
    # jnp: loaded parameters are NumPy arrays, which cannot be indexed by a traced y
    U, b_label = jnp.asarray(params.U), jnp.asarray(params.b_label)
    logits = v @ params.W + params.b_hid + U[y]
    return -(v @ params.b_vis) - b_label[y] - jnp.sum(jax.nn.softplus(logits), axis=-1)


def label_log_probs(params: ClassRBMParams, v: jax.Array) -> jax.Array:
    """log p(y | v) = -F(v, y) - logsumexp_y' -F(v, y'), exact: [B, V] -> [B, C]."""
    return jax.nn.log_softmax(-label_free_energies(params, v), axis=-1)


# ----------------------------------------------------------------------------- the verbs


def visible_batch(params: RBMParams | DBMParams | ClassRBMParams, x) -> jax.Array:
    """x [B, ...] (images or vectors) as the visible vectors [B, V] of `params`, float32; an
    error naming x where it has another size or values that are not finite reals."""
    if checks.is_checkable(x):
        array = checks.check_array("x", x)
        if array.ndim < 2:
            raise ValueError(f"x must be [B, ...] (a batch), got shape {array.shape}")
        checks.check_array("x", array.reshape(array.shape[0], -1), ("B", np.shape(params.b_vis)[0]))
    x = jnp.asarray(x, jnp.float32)
    return x.reshape(x.shape[0], -1)


def check_labels(params: ClassRBMParams, y, num: int) -> jax.Array:
    """y [num] integer labels of the classification RBM `params`, as int32; or an error naming y."""
    num_classes = np.shape(params.b_label)[0]
    labels = checks.check_array("y", y, (num,), kinds=checks.INTEGER)
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(
            f"y must hold labels in [0, {num_classes}), got {labels.min()}..{labels.max()}"
        )
    return jnp.asarray(labels, jnp.int32)


def sample(
    key: jax.Array,
    params: RBMParams | DBMParams | ClassRBMParams,
    num: int,
    *,
    y=None,
    num_sweeps: int = 1000,
) -> jax.Array:
    """`num` visible vectors [num, V] (binary) after `num_sweeps` block-Gibbs sweeps from
    uniform random bits. y: [num] labels for a classification RBM, whose label units are
    then clamped (x ~ p(x | y)); None samples (x, y) jointly and returns x. An RBM or a DBM
    has no label units, so only None."""
    checks.check_count("num", num)
    checks.check_count("num_sweeps", num_sweeps)
    checks.check_finite_tree("params", params)
    if y is not None:
        if not isinstance(params, ClassRBMParams):
            raise ValueError(
                "y: this Boltzmann machine has no label units, so it samples only jointly "
                "(y=None); a classification RBM (config.model.kind='class_rbm') has them"
            )
        y = check_labels(params, y, num)
    num_visible = params.b_vis.shape[0]
    start = jnp.zeros((num, num_visible), jnp.float32)
    return _clamped_gibbs(key, params, start, jnp.zeros((1, num_visible), bool), y, num_sweeps)


def inpaint(
    key: jax.Array,
    params: RBMParams | DBMParams | ClassRBMParams,
    x,
    observed,
    *,
    y=None,
    num_sweeps: int = 1000,
) -> jax.Array:
    """Fills in the unobserved visible units of each x given the observed ones: one draw
    from p(x_unobserved | x_observed) per row, after `num_sweeps` block-Gibbs sweeps in
    which the observed units stay clamped (the unobserved start from uniform random bits).

    x: [B, ...] binary (its unobserved entries, any finite values, are ignored). observed:
    booleans of x's shape, or broadcastable to it (one image-shaped mask for the whole
    batch). y: [B] labels to clamp as well (classification RBM only; None sums the label
    out). Returns x's shape:
    the observed entries of x, the rest sampled. A DBM's h2 and a classification RBM's free
    label are sampled along and summed out.
    """
    v = visible_batch(params, x)
    mask = np.asarray(observed)
    if mask.dtype != bool:
        raise ValueError(f"observed must be booleans (True: clamped), got dtype {mask.dtype}")
    try:
        mask = np.broadcast_to(mask, np.shape(x))
    except ValueError:
        raise ValueError(
            f"observed must broadcast to x's shape {np.shape(x)}, got shape {mask.shape}"
        ) from None
    checks.check_count("num_sweeps", num_sweeps)
    checks.check_finite_tree("params", params)
    if y is not None:
        if not isinstance(params, ClassRBMParams):
            raise ValueError("y: only a classification RBM has label units to clamp")
        y = check_labels(params, y, v.shape[0])
    mask = jnp.asarray(mask.reshape(v.shape))
    return _clamped_gibbs(key, params, v, mask, y, num_sweeps).reshape(np.shape(x))


@functools.partial(jax.jit, static_argnames=("num_sweeps",))
def _clamped_gibbs(key, params, v, observed, y, num_sweeps: int) -> jax.Array:
    """Block Gibbs on the RBM form of `params` with the `observed` [N or 1, V] units of v
    [N, V] (and the labels y [N], if given) clamped: the visible units [N, V] at the end.

    A DBM runs as its RBM over [v, h2] (`dbm_as_rbm`), a classification RBM as its RBM over
    [v, y] with y one softmax group; h2 and free labels start uniform, like free pixels.
    """
    num, num_visible = v.shape
    start_key, extra_key, chain_key = jax.random.split(key, 3)
    observed = jnp.broadcast_to(observed, v.shape)
    noise = jax.random.bernoulli(start_key, 0.5, v.shape).astype(v.dtype)
    state, clamped, labels = jnp.where(observed, v, noise), observed, 0
    if isinstance(params, DBMParams):
        rbm = dbm_as_rbm(params)
        extra = jax.random.bernoulli(extra_key, 0.5, (num, params.b_h2.shape[0]))
        extra_clamped = jnp.zeros_like(extra)
    elif isinstance(params, ClassRBMParams):
        rbm, labels = class_rbm_as_rbm(params), params.b_label.shape[0]
        free = y is None
        if free:
            y = jax.random.randint(extra_key, (num,), 0, labels)
        extra = jax.nn.one_hot(y, labels, dtype=bool)
        extra_clamped = jnp.full(extra.shape, not free)
    else:
        rbm, extra = params, None
    if extra is not None:
        state = jnp.concatenate([state, extra.astype(v.dtype)], axis=1)
        clamped = jnp.concatenate([clamped, extra_clamped], axis=1)
    keys = chain_keys(chain_key, 0, num)
    state, _ = run_chains(
        rbm, state, keys, num_sweeps, "bernoulli", observed=clamped, labels=labels
    )
    return state[:, :num_visible]


def posterior(params: RBMParams | DBMParams | ClassRBMParams, x: jax.Array, *, num_iters: int = 10):
    """The hidden units given x [B, ...]: an RBM's p(h_j = 1 | v) [B, H]; a DBM's mean-field
    marginals (mu1 [B, H1], mu2 [B, H2]) after `num_iters` updates; a classification RBM's
    p(h_j = 1 | v) = sum_y p(y | v) p(h_j = 1 | v, y) [B, H], the label summed out exactly."""
    v = visible_batch(params, x)
    if isinstance(params, DBMParams):
        return mean_field(params, v, num_iters)
    if isinstance(params, ClassRBMParams):
        given_label = jax.nn.sigmoid((v @ params.W + params.b_hid)[:, None, :] + params.U)
        return jnp.einsum("bc,bch->bh", jnp.exp(label_log_probs(params, v)), given_label)
    return hidden_probs(params, v)
