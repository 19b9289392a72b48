"""The zoo: every family on the same binarized digits, compared as generative models.

  ./launch.sh zoo                                         # tiny: 8x8 digits, minutes
  ./launch.sh zoo --schedule=quick --data_dir=DIR         # binarized MNIST, a 2-core CPU
  ./launch.sh zoo --schedule=full --data_dir=DIR

DIR holds the four MNIST IDX files, or a folder mnist/ with them (default $GENJAX_DATA_DIR,
else ../shared/data beside the repository). Each member trains in
`<workdir>/<member>/` (default workdir runs/zoo/<schedule>) and, when done, writes its row
there as row.json: a relaunch skips the finished members and resumes the neural ones from
their checkpoints. The report, docs/zoo.md (`--report`), is regenerated from the rows, with
its figures in docs/zoo/.

Every number is in nats per image on the same test images (their fingerprint is in each
row), each with its estimator named: exact (naive Bayes, the Bernoulli mixture, the HMM, the
RBM where log Z can be enumerated), a lower bound (ELBO, IWAE-k, a DBM's mean field), an
estimate (importance sampling, AIS) or not comparable (Parzen windows of GAN samples; LDA's
ELBO, which scores only which pixels are on). The tiny schedule takes about 2.5 CPU-minutes
cold (2 cores), seconds a member once JAX's persistent compilation cache is warm.
"""

import dataclasses
import functools
import hashlib
import json
import math
import os
import pathlib
import platform
import time
import zlib
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags

from genjax_lab import api, report_zoo
from genjax_lab.core import data as data_lib
from genjax_lab.core import metrics as metrics_lib
from genjax_lab.core.loop import train_and_evaluate
from genjax_lab.data import idx, text
from genjax_lab.eval import parzen
from genjax_lab.models import boltzmann, classifier, gan, hmm, lda, logistic, naive_bayes, vae
from genjax_lab.report_zoo import BOUND, ESTIMATE, EXACT, NOT_COMPARABLE

REPO = pathlib.Path(__file__).resolve().parent.parent
ROW = "row.json"

# ----------------------------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True)
class ZooData:
    """Binary images {0, 1} uint8 [N, H, W] and labels int32 [N], train and test."""

    description: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int = 10

    @property
    def image_shape(self) -> tuple[int, int]:
        return tuple(self.train_x.shape[1:])

    @property
    def num_pixels(self) -> int:
        return int(np.prod(self.image_shape))

    def flat(self, split: str) -> np.ndarray:
        """Pixels as float32 [N, H * W] in {0, 1}."""
        x = self.train_x if split == "train" else self.test_x
        return x.reshape(len(x), -1).astype(np.float32)

    def images(self, split: str) -> np.ndarray:
        """Pixels as float32 [N, H, W, 1] in {0, 1}: the neural families' layout."""
        x = self.train_x if split == "train" else self.test_x
        return x[..., None].astype(np.float32)

    def fingerprint(self, splits: tuple[str, ...] = ("test",)) -> str:
        """Names the splits' images and labels: every row carries the test set's."""
        digest = hashlib.sha1()
        for split in splits:
            x, y = (self.train_x, self.train_y) if split == "train" else (self.test_x, self.test_y)
            digest.update(x.tobytes() + y.tobytes())
        return digest.hexdigest()[:12]

    def dataset(self) -> data_lib.Dataset:
        """The splits as the training loop reads them: uint8 {0, 255} [N, H, W, 1] (the
        families' binarize='static' divides by 255) and label int32 [N]."""
        return data_lib.Dataset(
            {
                split: {"image": x[..., None] * np.uint8(255), "label": y}
                for split, x, y in (
                    ("train", self.train_x, self.train_y),
                    ("test", self.test_x, self.test_y),
                )
            }
        )


def _binarize(grey: np.ndarray, top: float, threshold: float) -> np.ndarray:
    return (grey >= threshold * top).astype(np.uint8)


def mnist_folder(data_dir: str | pathlib.Path) -> pathlib.Path:
    """The folder of the four MNIST IDX files: data_dir itself or data_dir/mnist."""
    path = pathlib.Path(data_dir)
    for folder in (path, path / "mnist"):
        if folder.is_dir() and not idx.missing_mnist_files(folder):
            return folder
    raise FileNotFoundError(
        f"--data_dir={data_dir}: neither it nor its mnist/ folder holds the four MNIST IDX "
        "files (train/t10k images and labels, gzipped or not)"
    )


def load_data(data_config: ml_collections.ConfigDict, data_dir: str | None) -> ZooData:
    """The schedule's images, binarized at data_config.threshold of the pixel range."""
    threshold = float(data_config.threshold)
    if data_config.name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = _binarize(digits.images, 16.0, threshold)
        y = digits.target.astype(np.int32)
        order = np.random.default_rng(0).permutation(len(x))
        test, train = order[: data_config.max_test], order[data_config.max_test :]
        if data_config.max_examples:
            train = train[: data_config.max_examples]
        description = (
            f"scikit-learn's 8x8 digits, pixel on where its value >= {threshold * 16:g} of 16; "
            f"{len(train)} training and {len(test)} test images (a fixed permutation, seed 0)"
        )
        return ZooData(description, x[train], y[train], x[test], y[test])
    if data_config.name != "mnist":
        raise ValueError(f"config.data.name must be 'digits' or 'mnist', got {data_config.name!r}")
    if not data_dir:
        raise ValueError("--data_dir: the MNIST schedules need the folder of the IDX files")
    folder = mnist_folder(data_dir)
    train_x, train_y = idx.load_mnist_split(folder, "train")
    test_x, test_y = idx.load_mnist_split(folder, "test")
    num_train = int(data_config.max_examples) or len(train_x)
    num_test = int(data_config.max_test) or len(test_x)
    description = (
        f"binarized MNIST, pixel on where its value >= {threshold * 255:g} of 255; the first "
        f"{num_train} training and the first {num_test} test images of the canonical split"
    )
    return ZooData(
        description,
        _binarize(train_x[:num_train].reshape(num_train, 28, 28), 255.0, threshold),
        train_y[:num_train].astype(np.int32),
        _binarize(test_x[:num_test].reshape(num_test, 28, 28), 255.0, threshold),
        test_y[:num_test].astype(np.int32),
    )


# -------------------------------------------------------------------------------- helpers


def num_parameters(tree) -> int:
    """Array entries in a parameter pytree (what is stored, simplex constraints included)."""
    return int(sum(np.size(leaf) for leaf in jax.tree.leaves(tree)))


def hardware() -> str:
    device = jax.devices()[0]
    return (
        f"{device.platform} ({device.device_kind}) x{jax.device_count()}, "
        f"{os.cpu_count()} CPU cores, {platform.machine()}"
    )


def score(estimator: str, kind: str, values, stderr: float | None = None) -> dict:
    """One likelihood cell: the mean over the test images of values [B] (nats per image),
    its standard error over the images unless `stderr` says otherwise."""
    values = np.asarray(values, np.float64)
    if stderr is None:
        stderr = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0
    return {"estimator": estimator, "kind": kind, "value": float(values.mean()), "stderr": stderr}


def batched(fn: Callable[..., jax.Array], *arrays, size: int = 500) -> np.ndarray:
    """fn over `size` rows of the arrays at a time, the results concatenated."""
    parts = [fn(*(a[i : i + size] for a in arrays)) for i in range(0, len(arrays[0]), size)]
    return np.concatenate([np.asarray(p) for p in parts])


def bottom_hidden(shape: tuple[int, int]) -> np.ndarray:
    """bool [H * W]: True on the observed top half of an image."""
    height, width = shape
    return np.repeat(np.arange(height) < height // 2, width)


def _loop_config(config: ml_collections.ConfigDict, seed: int, steps: int, batch: int) -> None:
    """The keys every loop family shares: steps (not epochs), evaluation at the end only."""
    config.seed = seed
    config.num_steps = steps
    config.num_epochs = -1
    config.batch_size = batch
    config.log_every = max(1, steps // 5)
    config.eval_every = 0
    config.eval_batch_size = 200
    config.checkpoint.every = max(1, steps // 3)


def _per_class_samples(sample: Callable, key, num_classes: int, per_class: int) -> np.ndarray:
    """sample(key, y [n]) for `per_class` copies of each label, label-major: [C * m, ...]."""
    return np.asarray(sample(key, jnp.repeat(jnp.arange(num_classes), per_class)))


# ------------------------------------------------------------- naive Bayes and the mixture


def fit_naive_bayes(
    x: np.ndarray, y: np.ndarray, num_classes: int, alpha: float, mask: np.ndarray | None = None
) -> naive_bayes.BernoulliNB:
    """Bernoulli naive Bayes (x > 0.5 is on), Laplace pseudo-count alpha, class frequencies."""
    config = naive_bayes.default_config()
    config.update(kind="bernoulli", binarize=0.5, alpha=alpha, num_classes=num_classes)
    data = {"x": x, "y": y} if mask is None else {"x": x, "y": y, "mask": mask}
    return naive_bayes.fit(jax.random.key(0), data, config)[0]


@functools.partial(jax.jit, static_argnames=("num_classes", "num_components", "num_iters"))
def _mixture_em(key, x, y, mask, alpha, *, num_classes: int, num_components: int, num_iters: int):
    k = num_components
    allowed = jnp.repeat(jax.nn.one_hot(y, num_classes, dtype=bool), k, axis=1)  # [N, C * K]
    start = y * k + jax.random.randint(key, y.shape, 0, k)  # a random component of the class
    weights = mask[:, None]

    def m_step(r):
        counts, total = r.T @ x, r.sum(0)  # [C * K, D], [C * K]
        log_total = jnp.log(total + 2 * alpha)[:, None]
        return naive_bayes.BernoulliNB(
            jnp.log(total) - jnp.log(mask.sum()),
            jnp.log(counts + alpha) - log_total,
            jnp.log(jnp.maximum(total[:, None] - counts, 0.0) + alpha) - log_total,
            0.5,
        )

    def em_iteration(_, r):
        joint = naive_bayes.classifier(m_step(r)).log_joint(x)
        return jax.nn.softmax(jnp.where(allowed, joint, -jnp.inf), axis=1) * weights

    r = jax.lax.fori_loop(
        0, num_iters, em_iteration, jax.nn.one_hot(start, num_classes * k) * weights
    )
    return m_step(r)


def fit_mixture(
    key: jax.Array,
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    num_components: int,
    num_iters: int,
    alpha: float,
    mask: np.ndarray | None = None,
) -> naive_bayes.BernoulliNB:
    """A mixture of `num_components` Bernoulli product distributions per class, by EM.

    The model is a naive Bayes model whose class is the pair (label c, component k), flat
    index c * K + k, with label known in training and component latent: EM alternates the
    component posterior within each image's label (the E-step, Bayes' rule of the naive
    Bayes classifier) and the naive Bayes estimates weighted by it (the M-step, Laplace
    pseudo-count alpha). log p(x) = logsumexp_{c,k} is then naive Bayes' own exact
    `log_prob`. Starts from each image in a random component of its class.
    """
    mask = np.ones(len(x), np.float32) if mask is None else np.asarray(mask, np.float32)
    return _mixture_em(
        key,
        jnp.asarray(x, jnp.float32),
        jnp.asarray(y, jnp.int32),
        jnp.asarray(mask),
        float(alpha),
        num_classes=num_classes,
        num_components=num_components,
        num_iters=num_iters,
    )


def mixture_classifier(
    params: naive_bayes.BernoulliNB, num_classes: int, num_components: int
) -> api.BayesClassifier:
    """Bayes' rule over the labels: log p(x | c) = logsumexp_k log p(x, c, k) - log p(c)."""
    shape = (num_classes, num_components)
    class_log_prior = jax.nn.logsumexp(params.log_prior.reshape(shape), axis=1)

    def class_log_likelihoods(p, x, key):
        del key  # exact
        joint = naive_bayes.classifier(p).log_joint(x).reshape(x.shape[0], *shape)
        return jax.nn.logsumexp(joint, axis=-1) - jax.nn.logsumexp(
            p.log_prior.reshape(shape), axis=1
        )

    return api.BayesClassifier(class_log_prior, params, class_log_likelihoods)


def mixture_sample(
    key: jax.Array, params: naive_bayes.BernoulliNB, num_components: int, y: jax.Array
) -> jax.Array:
    """x ~ p(x | y) of the per-class mixture: a component from p(k | y), then its pixels."""
    component_key, pixel_key = jax.random.split(key)
    log_prior = params.log_prior.reshape(-1, num_components)[y]
    component = jax.random.categorical(component_key, log_prior)
    return naive_bayes.sample(pixel_key, params, len(y), y=y * num_components + component)


def bernoulli_inpaint(
    params: naive_bayes.BernoulliNB, x: np.ndarray, observed: np.ndarray
) -> np.ndarray:
    """P(pixel on | observed pixels) [B, D] of a naive Bayes model (its classes the latent):
    the exact posterior over classes given the observed pixels (the others marginalised out
    as NaN), times each class's pixel probabilities; observed pixels kept."""
    hidden = jnp.where(observed, jnp.asarray(x), jnp.nan)
    post = naive_bayes.classifier(params).predict_proba(hidden)
    return np.asarray(jnp.where(observed, x, post @ jnp.exp(params.log_prob)))


def _bernoulli_row(
    config,
    data: ZooData,
    key,
    model: str,
    params: naive_bayes.BernoulliNB,
    seconds: float,
    bayes: api.BayesClassifier,
    sample_given: Callable[[jax.Array, jax.Array], jax.Array],
) -> tuple[dict, dict]:
    """The row and figures of a naive Bayes model over (label, component) pairs: exact
    log p(x), Bayes' rule by `bayes`, x given labels y by sample_given(key, y)."""
    test, shape, m = data.flat("test"), data.image_shape, config.figures.num_inpaint
    predicted = bayes.predict(test)
    row = {
        "model": model,
        "scores": [score(EXACT, EXACT, naive_bayes.log_prob(params, test))],
        "num_params": num_parameters(params),
        "train_seconds": seconds,
        "accuracy": float(np.mean(np.asarray(predicted) == data.test_y)),
    }
    arrays = {
        "samples": naive_bayes.sample(key, params, config.figures.num_samples),
        "by_label": _per_class_samples(sample_given, key, data.num_classes, 3),
        "inpaint": bernoulli_inpaint(params, test[:m], bottom_hidden(shape)),
    }
    return row, arrays


def _run_naive_bayes(config, data: ZooData, key, workdir) -> tuple[dict, dict]:
    start = time.perf_counter()
    params = fit_naive_bayes(
        data.flat("train"), data.train_y, data.num_classes, config.naive_bayes.alpha
    )
    return _bernoulli_row(
        config,
        data,
        key,
        "Bernoulli naive Bayes (one product of Bernoullis per class)",
        params,
        time.perf_counter() - start,
        bayes=naive_bayes.classifier(params),
        sample_given=lambda k, y: naive_bayes.sample(k, params, len(y), y=y),
    )


def _run_mixture(config, data: ZooData, key, workdir) -> tuple[dict, dict]:
    mc = config.mixture
    fit_key, key = jax.random.split(key)
    start = time.perf_counter()
    params = fit_mixture(
        fit_key,
        data.flat("train"),
        data.train_y,
        data.num_classes,
        mc.num_components,
        mc.num_iters,
        mc.alpha,
    )
    jax.block_until_ready(params)
    seconds = time.perf_counter() - start
    return _bernoulli_row(
        config,
        data,
        key,
        f"Bernoulli mixture, {mc.num_components} components per class (EM, in pixel space)",
        params,
        seconds,
        bayes=mixture_classifier(params, data.num_classes, mc.num_components),
        sample_given=lambda k, y: mixture_sample(k, params, mc.num_components, y),
    )


# ------------------------------------------------------------------------------------ HMM


def row_codes(images: np.ndarray, bits: int) -> np.ndarray:
    """Binary images [N, H, W] as symbol sequences int32 [N, H * W / bits]: each run of
    `bits` pixels in raster order is one symbol, sum_i pixel_i 2^i (a bijection, so a
    likelihood of the codes is one of the pixels)."""
    flat = np.asarray(images).reshape(len(images), -1)
    if flat.shape[1] % bits:
        raise ValueError(f"config.hmm.bits={bits} must divide the {flat.shape[1]} pixels")
    pieces = flat.reshape(len(flat), -1, bits).astype(np.int64)
    return (pieces << np.arange(bits)).sum(-1).astype(np.int32)


def code_bits(bits: int) -> np.ndarray:
    """The pixels of every symbol: float32 [2^bits, bits]."""
    return ((np.arange(2**bits)[:, None] >> np.arange(bits)) & 1).astype(np.float32)


def fit_hmm(
    key, data: ZooData, bits: int, num_states: int, num_iters: int, pseudocount: float
) -> hmm.LabelledHMM:
    """One categorical HMM per class over the row-piece symbols (Bayes' rule on top), MAP
    EM with `pseudocount` added to every emission count: a symbol no training image of a
    class showed would otherwise have probability 0, and a test image log p = -inf."""
    config = hmm.default_config()
    config.update(
        emission="categorical",
        num_symbols=2**bits,
        num_states=num_states,
        num_iters=num_iters,
        class_conditional=True,
        num_classes=data.num_classes,
    )
    config.prior.emission_concentration = 1.0 + pseudocount
    codes = row_codes(data.train_x, bits)
    return hmm.fit(key, {"x": codes, "y": data.train_y}, config)[0]


def hmm_inpaint(params: hmm.LabelledHMM, codes: np.ndarray, observed_steps: int, bits: int):
    """P(pixel on | the first `observed_steps` symbols) [B, T * bits], exact: the smoothed
    p(label, state) at the last observed step, pushed forward through each class's
    transitions and emissions."""
    num = len(codes)
    prefix = hmm.Sequences(jnp.asarray(codes), jnp.full((num,), observed_steps, jnp.int32))
    state = hmm.posterior(params, prefix)[:, observed_steps - 1]  # [B, C, K]
    transitions = jax.vmap(hmm.transition_probs)(params.hmms)  # [C, K, K]
    emissions = jax.nn.softmax(params.hmms.emission.logits, axis=-1)  # [C, K, V]
    table = jnp.asarray(code_bits(bits))
    pieces = [jnp.asarray(code_bits(bits))[codes[:, :observed_steps]].reshape(num, -1)]
    for _ in range(observed_steps, codes.shape[1]):
        state = jnp.einsum("bck,ckj->bcj", state, transitions)
        pieces.append(jnp.einsum("bck,ckv->bv", state, emissions) @ table)
    return np.asarray(jnp.concatenate(pieces, axis=1))


def _run_hmm(config, data: ZooData, key, workdir) -> tuple[dict, dict]:
    hc, shape = config.hmm, data.image_shape
    fit_key, sample_key = jax.random.split(key)
    start = time.perf_counter()
    params = fit_hmm(fit_key, data, hc.bits, hc.num_states, hc.num_iters, hc.pseudocount)
    seconds = time.perf_counter() - start
    codes = row_codes(data.test_x, hc.bits)
    length = codes.shape[1]
    predicted = batched(hmm.classifier(params).predict, codes)
    table = code_bits(hc.bits)

    def draw(k, y=None):
        num = config.figures.num_samples if y is None else len(y)
        return table[np.asarray(hmm.sample(k, params, num, y=y, length=length))]

    m = config.figures.num_inpaint
    top_steps = (shape[0] // 2) * shape[1] // hc.bits
    arrays = {
        "samples": draw(sample_key),
        "by_label": _per_class_samples(draw, sample_key, data.num_classes, 3),
        "inpaint": hmm_inpaint(params, codes[:m], top_steps, hc.bits),
    }
    row = {
        "model": f"HMM per class, {hc.num_states} states, over {length} symbols an image "
        f"({hc.bits} pixels each, 2^{hc.bits} symbols; emission pseudo-count {hc.pseudocount:g})",
        "scores": [score(EXACT, EXACT, batched(lambda c: hmm.log_prob(params, c), codes))],
        "num_params": num_parameters(params),
        "train_seconds": seconds,
        "accuracy": float(np.mean(predicted == data.test_y)),
    }
    return row, arrays


# ------------------------------------------------------------------------------------ LDA


def pixel_bags(images: np.ndarray) -> text.BagOfWords:
    """Each image a document whose words are its on pixels (ids in raster order)."""
    flat = np.asarray(images).reshape(len(images), -1)
    return text.bag_of_ids([np.flatnonzero(row) for row in flat])


def _run_lda(config, data: ZooData, key, workdir) -> tuple[dict, dict]:
    lc = config.lda
    fit_key, bound_key, sample_key = jax.random.split(key, 3)
    lda_config = lda.default_config()
    lda_config.update(num_topics=lc.num_topics, num_iters=lc.num_iters)
    bags = pixel_bags(data.train_x)
    start = time.perf_counter()
    params, _ = lda.fit(fit_key, {"x": bags, "vocab_size": data.num_pixels}, lda_config)
    seconds = time.perf_counter() - start
    bound = lda.log_prob_bound(bound_key, params, pixel_bags(data.test_x))
    length = int(np.median(data.train_x.reshape(len(data.train_x), -1).sum(1)))
    drawn = lda.sample(sample_key, params, config.figures.num_samples, length=length)
    samples = np.zeros((config.figures.num_samples, data.num_pixels), np.float32)
    np.put_along_axis(samples, np.asarray(drawn.ids), (np.asarray(drawn.counts) > 0) * 1.0, 1)
    row = {
        "model": f"LDA, {lc.num_topics} topics, on pixels as words (batch VB)",
        "scores": [
            score(
                "ELBO of log p(the on pixels as tokens | their number)",
                NOT_COMPARABLE,
                bound,
            )
        ],
        "num_params": num_parameters(params.lam) + num_parameters(params.alpha),
        "train_seconds": seconds,
        "accuracy": None,
        "accuracy_note": "unsupervised: no label in the model",
    }
    return row, {"samples": samples}


# ----------------------------------------------------------------------- Boltzmann machines


def _boltzmann_config(kind: str, mc, data: ZooData, seed: int) -> ml_collections.ConfigDict:
    config = boltzmann.default_config()
    steps = math.ceil(mc.num_epochs * len(data.train_x) / mc.batch_size)
    _loop_config(config, seed, steps, mc.batch_size)
    devices = jax.device_count()
    config.data.binarize = "static"
    config.model.update(
        kind=kind,
        num_hidden=mc.num_hidden,
        num_chains=devices * math.ceil(mc.batch_size / devices),
        k=mc.get("k", 1),
        k_start=mc.get("k", 1),
    )
    if kind == "dbm":
        config.model.num_hidden2 = mc.num_hidden2
        config.pretrain.epochs = mc.pretrain_epochs
    config.eval.update(
        ais_runs=mc.ais_runs,
        ais_temperatures=mc.ais_temperatures,
        train_examples=500,
        ll_batch_size=200,
        num_samples=16,
        sample_sweeps=200,
        num_filters=min(16, mc.num_hidden),
    )
    return config


@functools.partial(jax.jit, static_argnames="num_sweeps")
def clamped_gibbs(key, params: boltzmann.RBMParams, v, observed, num_sweeps: int):
    """P(pixel on | observed pixels) of an RBM by block Gibbs with the observed pixels
    clamped: E[v | h] averaged over the second half of `num_sweeps` sweeps (an MCMC
    estimate, not exact)."""
    start_key, key = jax.random.split(key)
    v0 = jnp.where(observed, v, jax.random.bernoulli(start_key, 0.5, v.shape).astype(v.dtype))

    def sweep(v, k):
        hidden_key, visible_key = jax.random.split(k)
        h = jax.random.bernoulli(hidden_key, boltzmann.hidden_probs(params, v)).astype(v.dtype)
        mean = boltzmann.visible_mean(params, h)
        drawn = jax.random.bernoulli(visible_key, mean).astype(v.dtype)
        return jnp.where(observed, v, drawn), mean

    _, means = jax.lax.scan(sweep, v0, jax.random.split(key, num_sweeps))
    return jnp.where(observed, v, means[num_sweeps // 2 :].mean(0))


def _run_boltzmann(kind: str, config, data: ZooData, key, workdir) -> tuple[dict, dict]:
    mc, shape = config[kind], data.image_shape
    loop_config = _boltzmann_config(kind, mc, data, config.seed)
    dataset = data.dataset()
    family = boltzmann.family_for(loop_config, dataset)
    start = time.perf_counter()
    result = train_and_evaluate(loop_config, workdir / "run", family.as_family(), dataset)
    seconds = time.perf_counter() - start
    scores = boltzmann.final_scores(family, result.state, dataset, loop_config)
    runs = f"{mc.ais_runs} runs, {mc.ais_temperatures} temperatures"
    test = data.flat("test")
    params = family.current_dbm(result.state) if kind == "dbm" else result.state.params
    if kind == "rbm":
        unnormalised = -np.asarray(boltzmann.free_energy(params, jnp.asarray(test)), np.float64)
        cells = [
            score(
                f"AIS estimate ({runs}; ± the AIS s.e. of log Z)",
                ESTIMATE,
                unnormalised - scores["log_z_ais"],
                stderr=scores["log_z_ais_std"],
            )
        ]
        if "log_z_exact" in scores:
            cells.append(
                score(
                    f"exact (log Z enumerated over 2^{mc.num_hidden} hidden states)",
                    EXACT,
                    unnormalised - scores["log_z_exact"],
                )
            )
        model = f"RBM, {mc.num_hidden} hidden units, PCD-{mc.get('k', 1)}"
    else:
        cells = [
            {
                "estimator": f"mean-field lower bound with AIS log Z ({runs}; ± its s.e.)",
                "kind": BOUND,
                "value": float(scores["test_log_likelihood"]),
                "stderr": float(scores["log_z_ais_std"]),
            }
        ]
        if "log_z_exact" in scores:
            cells.append(
                {
                    "estimator": "mean-field lower bound with log Z enumerated",
                    "kind": BOUND,
                    "value": float(scores["test_log_likelihood_exact"]),
                    "stderr": None,
                }
            )
        model = f"DBM {data.num_pixels}-{mc.num_hidden}-{mc.num_hidden2}, greedy pretraining"
    row = {
        "model": model,
        "scores": cells,
        "num_params": num_parameters(params),
        "train_seconds": seconds,
        "accuracy": None,
        "accuracy_note": "no label units: a class needs its own model and its own log Z",
    }
    sample_key, inpaint_key = jax.random.split(key)
    arrays = {"samples": boltzmann.sample(sample_key, params, config.figures.num_samples)}
    if kind == "rbm":
        m = config.figures.num_inpaint
        arrays["inpaint"] = clamped_gibbs(
            inpaint_key,
            params,
            jnp.asarray(test[:m]),
            jnp.asarray(bottom_hidden(shape)),
            mc.inpaint_sweeps,
        )
    return row, arrays


# ------------------------------------------------------------------------------------ VAE


def _vae_config(mc, data: ZooData, seed: int, conditional: bool) -> ml_collections.ConfigDict:
    """The VAE family's loop config; mc.train_samples > 1 trains on the IWAE bound with that
    many samples (Burda et al.), else on the one-sample ELBO."""
    config = vae.default_config()
    _loop_config(config, seed, mc.num_steps, mc.batch_size)
    config.data.binarize = "static"
    config.data.num_classes = data.num_classes
    config.model.update(
        conditional=conditional,
        encoder_hidden=(mc.hidden, mc.hidden),
        decoder_hidden=(mc.hidden, mc.hidden),
        latent_dim=mc.latent_dim,
        objective="iwae" if mc.train_samples > 1 else "elbo",
        num_samples=mc.train_samples,
    )
    config.eval.update(iwae_samples=mc.iwae_samples, classify_samples=0, nll_samples=0)
    return config


def vae_scores(key, params: vae.VAEParams, x, y, mc, log_prior=None) -> list[dict]:
    """ELBO, IWAE-k and the importance-sampled estimate of log p(x) for x [B, H, W, 1]. A
    conditional VAE (log_prior given) bounds log p(x) by the ELBO of log p(x, y) =
    log p(x | y) + log p(y) <= log p(x), and sums the labels out of the other two."""
    elbo_key, iwae_key, nll_key = jax.random.split(key, 3)
    chunk = min(mc.nll_samples, 100)
    if log_prior is None:
        elbo = batched(lambda a: vae.elbo(elbo_key, params, a), x)
        elbo_name = "ELBO (1 sample)"
    else:
        elbo = batched(lambda a, b: vae.elbo(elbo_key, params, a, b) + log_prior[b], x, y)
        elbo_name = "ELBO of log p(x, y) (1 sample), a bound on log p(x)"
    k, n = mc.iwae_samples, mc.nll_samples
    iwae = batched(lambda a: vae.log_prob_bound(iwae_key, params, a, num_samples=k), x)
    estimate = batched(
        lambda a: vae.log_prob_estimate(nll_key, params, a, num_samples=n, chunk=chunk), x
    )
    return [
        score(elbo_name, BOUND, elbo),
        score(f"IWAE-{k} bound", BOUND, iwae),
        score(f"importance sampling, {n} samples", ESTIMATE, estimate),
    ]


def _run_vae(name: str, config, data: ZooData, key, workdir) -> tuple[dict, dict]:
    mc, conditional = config[name], name == "cvae"
    loop_config = _vae_config(mc, data, config.seed, conditional)
    dataset = data.dataset()
    family = vae.family_for(loop_config, dataset)
    start = time.perf_counter()
    result = train_and_evaluate(loop_config, workdir / "run", family.as_family(), dataset)
    seconds = time.perf_counter() - start
    params = family.params(result.state.params)
    score_key, class_key, sample_key = jax.random.split(key, 3)
    x = data.images("test")
    log_prior = np.asarray(params.log_prior) if conditional else None
    kind = {"vae": "VAE", "iwae": f"IWAE (trained on the IWAE-{mc.train_samples} bound)"}
    row = {
        "model": kind.get(name, "conditional VAE")
        + f", {mc.hidden}-{mc.hidden} tanh MLPs, {mc.latent_dim} latent dimensions",
        "scores": vae_scores(score_key, params, x, data.test_y, mc, log_prior),
        "num_params": num_parameters(params.variables),
        "train_seconds": seconds,
        "accuracy": None,
        "accuracy_note": "unconditional: no p(x | y)",
    }
    arrays = {"samples": vae.sample(sample_key, params, config.figures.num_samples)}
    if conditional:
        bayes = vae.classifier(params, num_samples=mc.classify_samples)
        predicted = batched(lambda a: bayes.predict(a, class_key), x, size=100)
        row["accuracy"] = float(np.mean(predicted == data.test_y))
        row["accuracy_note"] = f"p(x | y) by importance sampling, {mc.classify_samples} samples"
        arrays["by_label"] = _per_class_samples(
            lambda k, y: vae.sample(k, params, len(y), y=y), sample_key, data.num_classes, 3
        )
    return row, arrays


# ------------------------------------------------------------------------------------ GAN


def _run_gan(name: str, config, data: ZooData, key, workdir) -> tuple[dict, dict]:
    mc, conditional = config[name], name == "cgan"
    loop_config = gan.default_config()
    _loop_config(loop_config, config.seed, mc.num_steps, mc.batch_size)
    loop_config.data.update(binarize="none", num_classes=data.num_classes)
    loop_config.model.update(
        conditional=conditional,
        g_hidden=(mc.hidden, mc.hidden),
        d_hidden=(mc.hidden, mc.hidden),
        noise_dim=mc.noise_dim,
    )
    dataset = data.dataset()
    family = gan.family_for(loop_config, dataset)
    start = time.perf_counter()
    result = train_and_evaluate(loop_config, workdir / "run", family.as_family(), dataset)
    seconds = time.perf_counter() - start
    params = family.params_of(result.state)
    parzen_key, sample_key = jax.random.split(key)
    drawn = gan.sample(parzen_key, params, mc.parzen_samples)
    validation = data.images("train")[-mc.parzen_validation :]
    window = parzen.parzen_score(drawn, validation, data.images("test"))
    row = {
        "model": ("conditional " if conditional else "")
        + f"MLP GAN, {mc.hidden}-{mc.hidden} generator and discriminator",
        "scores": [
            {
                "estimator": f"Parzen window on {mc.parzen_samples} samples (sigma "
                f"{window.sigma:g} chosen on {mc.parzen_validation} training images)",
                "kind": NOT_COMPARABLE,
                "value": window.mean,
                "stderr": window.stderr,
            }
        ],
        "num_params": num_parameters(params.generator),
        "train_seconds": seconds,
        "accuracy": None,
        "accuracy_note": "no likelihood p(x | y) to put in Bayes' rule",
    }
    arrays = {"samples": gan.sample(sample_key, params, config.figures.num_samples)}
    if conditional:
        arrays["by_label"] = _per_class_samples(
            lambda k, y: gan.sample(k, params, len(y), y=np.asarray(y)),
            sample_key,
            data.num_classes,
            3,
        )
    return row, arrays


# ------------------------------------------------------------------ discriminative baselines


def fit_logistic(x, y, num_classes: int, c: float, num_steps: int, mask=None):
    return logistic.fit(x, y, num_classes, c=c, num_steps=num_steps, mask=mask)[0]


def _run_logistic(config, data: ZooData, key, workdir) -> tuple[dict, dict]:
    lc = config.logistic
    start = time.perf_counter()
    params = fit_logistic(data.flat("train"), data.train_y, data.num_classes, lc.c, lc.num_steps)
    seconds = time.perf_counter() - start
    predicted = np.asarray(logistic.predict(params, data.flat("test")))
    row = {
        "model": f"logistic regression (L2, C={lc.c:g}, L-BFGS), p(y | x) only",
        "scores": [],
        "likelihood_note": "discriminative: models p(y | x), not x",
        "num_params": num_parameters(params),
        "train_seconds": seconds,
        "accuracy": float(np.mean(predicted == data.test_y)),
    }
    return row, {}


def train_mlp(mc, train_x, train_y, test_x, test_y, seed: int, workdir) -> tuple[float, object]:
    """The MLP classifier through the training loop: (test accuracy, its parameters)."""
    config = classifier.default_config()
    _loop_config(config, seed, mc.num_steps, mc.batch_size)
    config.data.update(binarize="static", num_classes=10)
    config.model.hidden = (mc.hidden, mc.hidden)
    dataset = data_lib.Dataset(
        {
            "train": {"image": train_x[..., None] * np.uint8(255), "label": train_y},
            "test": {"image": test_x[..., None] * np.uint8(255), "label": test_y},
        }
    )
    family = classifier.family_for(config, dataset)
    result = train_and_evaluate(config, workdir, family.as_family(), dataset)
    logits = batched(
        lambda a: family.model.apply(result.state.params, a)[0],
        test_x[..., None].astype(np.float32),
    )
    return float(np.mean(logits.argmax(-1) == test_y)), result.state.params


def _run_mlp(config, data: ZooData, key, workdir) -> tuple[dict, dict]:
    mc = config.mlp
    start = time.perf_counter()
    accuracy, params = train_mlp(
        mc, data.train_x, data.train_y, data.test_x, data.test_y, config.seed, workdir / "run"
    )
    row = {
        "model": f"MLP {mc.hidden}-{mc.hidden} ReLU (AdamW), p(y | x) only",
        "scores": [],
        "likelihood_note": "discriminative: models p(y | x), not x",
        "num_params": num_parameters(params),
        "train_seconds": time.perf_counter() - start,
        "accuracy": accuracy,
    }
    return row, {}


MEMBERS: dict[str, Callable] = {
    "naive_bayes": _run_naive_bayes,
    "mixture": _run_mixture,
    "hmm": _run_hmm,
    "lda": _run_lda,
    "rbm": functools.partial(_run_boltzmann, "rbm"),
    "dbm": functools.partial(_run_boltzmann, "dbm"),
    "vae": functools.partial(_run_vae, "vae"),
    "iwae": functools.partial(_run_vae, "iwae"),
    "cvae": functools.partial(_run_vae, "cvae"),
    "gan": functools.partial(_run_gan, "gan"),
    "cgan": functools.partial(_run_gan, "cgan"),
    "logistic": _run_logistic,
    "mlp": _run_mlp,
}
# Models that cannot fill in the bottom half, and why (the report says it).
NO_INPAINTING = {
    "lda": "scores which pixels are on, not the image: no conditional of pixels given pixels",
    "dbm": "clamped Gibbs would work as for the RBM; not run (its samples need long chains)",
    "vae": "p(bottom | top) needs MCMC or a trained partial encoder: neither exact nor cheap",
    "iwae": "as the VAE",
    "cvae": "as the VAE",
    "gan": "no density to condition: inpainting needs an optimisation over z",
    "cgan": "as the GAN",
}


def member_key(seed: int, name: str) -> jax.Array:
    return jax.random.fold_in(jax.random.key(seed), zlib.crc32(name.encode()))


def run_member(
    name: str, config: ml_collections.ConfigDict, data: ZooData, workdir: pathlib.Path
) -> dict:
    """The member's row: read from workdir/<name>/row.json when it finished before, else
    trained, scored and written there (with its figure arrays as .npy beside it)."""
    if name not in MEMBERS:
        raise ValueError(f"config.members: unknown member {name!r}; known: {', '.join(MEMBERS)}")
    member_dir = workdir / name
    row_path = member_dir / ROW
    if row_path.exists():
        metrics_lib.say(f"zoo: {name} finished before, its row kept ({row_path})")
        return json.loads(row_path.read_text())
    member_dir.mkdir(parents=True, exist_ok=True)
    metrics_lib.say(f"zoo: {name}")
    start = time.perf_counter()
    row, arrays = MEMBERS[name](config, data, member_key(config.seed, name), member_dir)
    for array_name, array in arrays.items():  # as images [N, H, W], P(pixel on) or pixels
        images = np.asarray(array, np.float32).reshape(-1, *data.image_shape)
        np.save(member_dir / f"{array_name}.npy", images)
    row.update(
        member=name,
        wall_seconds=time.perf_counter() - start,
        hardware=hardware(),
        test_set=data.fingerprint(),
        test_examples=len(data.test_x),
        seed=int(config.seed),
        command=f"./launch.sh zoo --schedule={config.schedule}",
        config=config[name].to_dict() if name in config else {},
        figures=sorted(arrays),
    )
    row.setdefault("accuracy_note", "")
    row_path.write_text(json.dumps(row, indent=1, default=float))
    metrics_lib.say(f"zoo: {name} done in {row['wall_seconds']:.1f} s")
    return row


# --------------------------------------------------------------------- Ng & Jordan's curve


def per_class_subset(y: np.ndarray, num_classes: int, per_class: int, seed: int) -> np.ndarray:
    """Indices of `per_class` training examples of each class (0: all), drawn with `seed`."""
    if per_class == 0:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(y == c))[:per_class] for c in range(num_classes)]
    return np.sort(np.concatenate(chosen))


def curve_sizes(curve_config: ml_collections.ConfigDict) -> list[int]:
    """Examples per class of the sweep, 0 standing for the whole training split."""
    return [*curve_config.sizes, *([0] if curve_config.whole else [])]


def curve_errors(
    config: ml_collections.ConfigDict, data: ZooData, workdir: pathlib.Path
) -> dict[str, dict[str, list[float]]]:
    """Test error of each curve family at each size, one value per seed:
    {family: {str(size): [error per seed]}}. Naive Bayes, the mixture and logistic
    regression fit the whole training split with the unchosen rows masked (one compilation
    per family); the MLP trains on the subset in its own sub-workdir."""
    cc, x, test = config.curve, data.flat("train"), data.flat("test")
    errors: dict[str, dict[str, list[float]]] = {f: {} for f in cc.families}
    for size in curve_sizes(cc):
        for seed in range(cc.num_seeds):
            rows = per_class_subset(data.train_y, data.num_classes, size, seed)
            mask = np.zeros(len(x), np.float32)
            mask[rows] = 1.0
            for family in cc.families:
                if family == "naive_bayes":
                    params = fit_naive_bayes(
                        x, data.train_y, data.num_classes, config.naive_bayes.alpha, mask
                    )
                    predicted = naive_bayes.classifier(params).predict(test)
                elif family == "mixture":
                    mc = config.mixture
                    params = fit_mixture(
                        jax.random.key(seed),
                        x,
                        data.train_y,
                        data.num_classes,
                        mc.num_components,
                        mc.num_iters,
                        mc.alpha,
                        mask,
                    )
                    bayes = mixture_classifier(params, data.num_classes, mc.num_components)
                    predicted = bayes.predict(test)
                elif family == "logistic":
                    lc = config.logistic
                    params = fit_logistic(
                        x, data.train_y, data.num_classes, lc.c, lc.num_steps, mask
                    )
                    predicted = logistic.predict(params, test)
                elif family == "mlp":
                    mlp_config = ml_collections.ConfigDict(config.mlp.to_dict())
                    mlp_config.num_steps = cc.mlp_steps
                    accuracy, _ = train_mlp(
                        mlp_config,
                        data.train_x[rows],
                        data.train_y[rows],
                        data.test_x,
                        data.test_y,
                        seed,
                        workdir / f"mlp_{size}_{seed}",
                    )
                    errors[family].setdefault(str(size), []).append(1.0 - accuracy)
                    continue
                else:
                    raise ValueError(f"config.curve.families: no curve for {family!r}")
                error = float(np.mean(np.asarray(predicted) != data.test_y))
                errors[family].setdefault(str(size), []).append(error)
    return errors


def run_curve(config: ml_collections.ConfigDict, data: ZooData, workdir: pathlib.Path) -> dict:
    """The sweep's record (workdir/curve/row.json; a finished sweep is read back)."""
    curve_dir = workdir / "curve"
    path = curve_dir / ROW
    if path.exists():
        record = json.loads(path.read_text())
        # compared as JSON: the config's tuples read back as lists
        same_config = record["config"] == json.loads(json.dumps(config.curve.to_dict()))
        if record.get("test_set") == data.fingerprint() and same_config:
            return record
    curve_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    errors = curve_errors(config, data, curve_dir)
    counts = np.bincount(data.train_y, minlength=data.num_classes)
    record = {
        "errors": errors,
        "all_per_class": float(counts.mean()),
        "wall_seconds": time.perf_counter() - start,
        "test_set": data.fingerprint(),
        "config": config.curve.to_dict(),
    }
    path.write_text(json.dumps(record, indent=1))
    return record


def check_workdir_data(workdir: pathlib.Path, data: ZooData) -> None:
    """Claims `workdir` for this data (its splits' fingerprint in data.json), refusing one
    whose runs trained on other data: a relaunch would resume or reuse them."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "data.json"
    record = {"fingerprint": data.fingerprint(("train", "test")), "data": data.description}
    if path.exists() and json.loads(path.read_text())["fingerprint"] != record["fingerprint"]:
        raise ValueError(
            f"--workdir={workdir}: its runs trained on other data "
            f"({json.loads(path.read_text())['data']}); pass another --workdir or delete it"
        )
    path.write_text(json.dumps(record, indent=1))


def run_zoo(
    config: ml_collections.ConfigDict,
    data: ZooData,
    workdir: pathlib.Path,
    report: pathlib.Path | None,
) -> list[dict]:
    """Every member of config.members, then the curve, then the report (None: no report)."""
    start = time.perf_counter()
    check_workdir_data(workdir, data)
    np.save(workdir / "truth.npy", data.test_x[: config.figures.num_inpaint].astype(np.float32))
    rows = [run_member(name, config, data, workdir) for name in config.members]
    curve = run_curve(config, data, workdir) if config.curve.families else None
    summary = {"rows": rows, "curve": curve, "wall_seconds": time.perf_counter() - start}
    (workdir / "zoo.json").write_text(json.dumps(summary, indent=1, default=float))
    if report is not None:
        figures_dir = report.with_suffix("")
        figures = report_zoo.write_figures(rows, workdir, figures_dir)
        if curve is not None:
            report_zoo.write_curve_figure(curve, figures_dir / "ng_jordan.png")
        wall = sum(row["wall_seconds"] for row in rows) + (curve["wall_seconds"] if curve else 0)
        facts = {
            "description": data.description,
            "test_examples": len(data.test_x),
            "fingerprint": data.fingerprint(),
        }
        text = report_zoo.render_report(
            config, facts, rows, curve, figures, figures_dir.name, wall, NO_INPAINTING
        )
        report.write_text(text)
        metrics_lib.say(f"zoo: wrote {report} and its figures in {figures_dir}/")
    return rows


# ---------------------------------------------------------------------------------- main

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command's flags, defined by the script only: tests import this module beside
    other experiments that define flags of the same names."""
    flags.DEFINE_enum(
        "schedule", "tiny", ("tiny", "quick", "full"), "tiny: 8x8 digits (CI); quick, full: MNIST."
    )
    flags.DEFINE_string(
        "data_dir",
        os.environ.get("GENJAX_DATA_DIR"),
        "The MNIST IDX files, or a folder with mnist/ (default $GENJAX_DATA_DIR, else "
        "../shared/data beside the repository).",
    )
    flags.DEFINE_string("workdir", None, "Root of the member workdirs (runs/zoo/SCHEDULE).")
    flags.DEFINE_string("report", "docs/zoo.md", "Report to write ('' for none).")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    from experiments.configs import zoo as zoo_configs

    config = zoo_configs.get_config(FLAGS.schedule)
    data_dir = FLAGS.data_dir
    if not data_dir and (REPO.parent / "shared" / "data").is_dir():
        data_dir = str(REPO.parent / "shared" / "data")
    data = load_data(config.data, data_dir)
    workdir = pathlib.Path(FLAGS.workdir or f"runs/zoo/{config.schedule}")
    run_zoo(config, data, workdir, pathlib.Path(FLAGS.report) if FLAGS.report else None)


if __name__ == "__main__":
    define_flags()
    app.run(main)
