"""Naive Bayes experiments: SMS spam filtering, and Ng & Jordan's (2002) learning curves of
naive Bayes (generative) against logistic regression (discriminative).

  ./launch.sh naive_bayes --config=experiments/configs/naive_bayes_spam.py \
      --config.data.spam_path=../shared/data/text/SMSSpamCollection
  ./launch.sh naive_bayes --config=experiments/configs/ng_jordan.py \
      --config.data.spam_path=../shared/data/text/SMSSpamCollection \
      --config.data.mnist_dir=../shared/data/mnist

config.kind chooses:
  spam             multinomial naive Bayes (genjax_lab.models.naive_bayes), logistic regression
                   (genjax_lab.models.logistic) and scikit-learn's MultinomialNB on the same word
                   counts and the same seeded stratified train/test split; accuracy, precision,
                   recall (spam is the positive class) and ROC AUC of P(spam | message).
                   Writes spam_roc.png. Naive Bayes is fitted on the training loop in
                   workdir/fit (nb.loop_family: one epoch of `nb.batch_size`-message batches,
                   the word counts so far the state, checkpointed: a killed run resumes; the
                   parameters are the library fit's), and saved as the model of the workdir:
                     ./launch.sh classify --workdir=W --input=MESSAGES  (one per line)
                     ./launch.sh score --workdir=W --input=MESSAGES
                     ./launch.sh sample --workdir=W --label=1            (spam words)
  learning_curves  test error against training-set size, `num_draws` random training sets per
                   size, for each dataset of `config.datasets` (naive Bayes of kind
                   config.curves.NAME.nb_kind, including 'gaussian_shared', the paper's Gaussian
                   model with per-feature variances shared by the classes); writes
                   learning_curves.png (one panel per dataset, mean +- standard error) and
                   learning_curves.json. The training sets of a group of sizes are padded to
                   one shape and masked, so every fit of the group is one jitted lax.map.

The learning curves are not loop runs: they are a sweep of hundreds of closed-form fits of a
few to a few thousand examples each (milliseconds apiece, vmapped in one compiled lax.map per
group of sizes), whose checkpoints would cost more than the fits; a rerun recomputes them.
The logistic regression and scikit-learn baselines of the spam run are refitted on a rerun
too (seconds).
"""

import dataclasses
import functools
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
from sklearn import datasets as sk_datasets
from sklearn import metrics as sk_metrics
from sklearn import naive_bayes as sk_nb

from genjax_lab import saving
from genjax_lab.core import config as config_lib
from genjax_lab.core import data as data_lib
from genjax_lab.core import loop, plots
from genjax_lab.core import mesh as mesh_lib
from genjax_lab.core import metrics as metrics_lib
from genjax_lab.data import idx, text
from genjax_lab.models import logistic
from genjax_lab.models import naive_bayes as nb

config_lib.define_flags(
    config_lib.beside(__file__, "configs/naive_bayes_spam.py"), "runs/naive_bayes"
)

# --------------------------------------------------------------------------------- data


def read_spam(path: str) -> tuple[list[str], np.ndarray]:
    """SMS Spam Collection: lines 'ham<TAB>text' / 'spam<TAB>text' -> (messages, y int [N],
    1 = spam)."""
    file = pathlib.Path(path)
    if not path or not file.is_file():
        raise FileNotFoundError(
            f"config.data.spam_path: no SMS Spam Collection file at {path!r} "
            "(set --config.data.spam_path=.../text/SMSSpamCollection)"
        )
    messages, labels = [], []
    lines = file.read_text(encoding="utf-8", errors="replace").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        label, sep, message = line.partition("\t")
        if not sep or label not in ("ham", "spam"):
            raise ValueError(
                f"config.data.spam_path: line {number} of {file} is not 'ham|spam<TAB>text'"
            )
        messages.append(message)
        labels.append(label == "spam")
    return messages, np.asarray(labels, np.int32)


def subsample(y: np.ndarray, max_count: int, seed: int) -> np.ndarray:
    """Indices of a seeded random `max_count` examples (all when max_count <= 0), in order."""
    if max_count <= 0 or max_count >= len(y):
        return np.arange(len(y))
    return np.sort(np.random.default_rng(seed).permutation(len(y))[:max_count])


def stratified_split(
    y: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices with each class split in the proportion test_fraction."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"config.data.test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        n_test = round(test_fraction * len(members))
        test.append(members[:n_test])
        train.append(members[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def word_counts(
    messages: list[str], train: np.ndarray, min_count: int, max_size: int
) -> tuple[np.ndarray, text.Vocabulary]:
    """Documents x vocabulary counts float32 [N, V] and the vocabulary, built on `train` only."""
    tokens = [text.tokenize(m) for m in messages]
    vocab = text.build_vocabulary(
        [tokens[i] for i in train], min_count=min_count, max_size=max_size or None
    )
    return text.to_dense(text.bag_of_words(tokens, vocab), len(vocab)), vocab


# --------------------------------------------------------------------------------- spam


def binary_metrics(y: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """accuracy / precision / recall of score > 0.5 and ROC AUC of score (positive class 1)."""
    predicted = (score > 0.5).astype(int)
    return {
        "accuracy": float(np.mean(predicted == y)),
        "precision": float(sk_metrics.precision_score(y, predicted, zero_division=0.0)),
        "recall": float(sk_metrics.recall_score(y, predicted, zero_division=0.0)),
        "auc": float(sk_metrics.roc_auc_score(y, score)),
    }


def fit_filter(config, workdir: pathlib.Path, dataset: data_lib.Dataset):
    """Multinomial naive Bayes of dataset['train'] ({"x": counts [N, V], "y": [N]}) on the
    training loop in workdir/fit, resumed where it stopped: (its model config, the parameters,
    the loop's result, whose metrics hold the test log_prob and accuracy)."""
    nb_config = nb.default_config()
    nb_config.update({"kind": "multinomial", "num_classes": 2, "alpha": config.nb.alpha})
    meta = nb.meta_from_data(dataset["train"], nb_config)
    run = nb.loop_config(nb_config, config.nb.batch_size)
    run.seed = config.seed
    # The counts' recipe: a relaunch with other data is refused, not resumed on them.
    recipe = ("max_docs", "test_fraction", "min_count", "max_vocab")
    run.data = {key: config.data[key] for key in recipe}
    result = loop.train_and_evaluate(run, workdir / "fit", nb.loop_family(nb_config, meta), dataset)
    params = nb.from_statistics(mesh_lib.host_copy(result.state), nb_config)
    return nb_config, params, result


def run_spam(config, workdir: pathlib.Path) -> dict[str, float]:
    messages, y = read_spam(config.data.spam_path)
    keep = subsample(y, config.data.max_docs, config.seed)
    messages, y = [messages[i] for i in keep], y[keep]
    train, test = stratified_split(y, config.data.test_fraction, config.seed)
    x, vocab = word_counts(messages, train, config.data.min_count, config.data.max_vocab)

    t0 = time.perf_counter()
    data = {"train": {"x": x[train], "y": y[train]}, "test": {"x": x[test], "y": y[test]}}
    nb_config, nb_params, fitted = fit_filter(config, workdir, data_lib.Dataset(data))
    # The finished workdir is the filter: ./launch.sh classify --workdir=W --input=MESSAGES
    meta = {
        **nb.meta_from_data(data["train"], nb_config),
        "input": {
            "kind": "text",
            "vocabulary": list(vocab.words),
            "labels": ["ham", "spam"],
            "sample_kwargs": {"total_count": 12},  # words in a sampled message
        },
    }
    saving.save(workdir, "naive_bayes", nb_config, meta, nb_params)
    nb_score = np.asarray(nb.classifier(nb_params).predict_proba(x[test])[:, 1], np.float64)
    nb_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    lr_params, losses = logistic.fit(
        x[train], y[train], 2, c=config.logistic.c, num_steps=config.logistic.num_steps
    )
    lr_score = np.asarray(logistic.predict_proba(lr_params, x[test])[:, 1], np.float64)
    lr_seconds = time.perf_counter() - t0
    reference = sk_nb.MultinomialNB(alpha=config.nb.alpha)
    reference.fit(x[train].astype(np.float64), y[train])
    sk_score = reference.predict_proba(x[test].astype(np.float64))[:, 1]

    summary = {
        "num_train": len(train),
        "num_test": len(test),
        "vocab_size": len(vocab),
        "test_spam_fraction": float(y[test].mean()),
        "nb_seconds": nb_seconds,
        "nb_fit_steps": fitted.step,
        "nb_test_log_prob": fitted.metrics["log_prob"],
        "lr_seconds": lr_seconds,
        "logistic_final_loss": float(losses[-1]),
        "nb_sklearn_prediction_agreement": float(np.mean((nb_score > 0.5) == (sk_score > 0.5))),
    }
    for name, score in (("nb", nb_score), ("logistic", lr_score), ("sklearn_nb", sk_score)):
        summary.update({f"{name}_{k}": v for k, v in binary_metrics(y[test], score).items()})
    curves = []
    for name, score, color in (
        ("naive Bayes", nb_score, (200, 0, 0)),
        ("logistic", lr_score, (0, 0, 200)),
    ):
        fpr, tpr, _ = sk_metrics.roc_curve(y[test], score)
        curves.append(plots.Series(name, fpr, tpr, color=color))
    plots.plot_panels(
        workdir / "spam_roc.png",
        [
            plots.Panel(
                "SMS spam ROC (test set)",
                curves,
                "false positive rate",
                "true positive rate",
                (0.0, 1.0),
                (0.0, 1.0),
            ),
            plots.Panel(
                "zoom: false positive rate <= 0.1",
                curves,
                "false positive rate",
                "true positive rate",
                (0.0, 0.1),
                (0.7, 1.0),
            ),
        ],
    )
    return summary


# ---------------------------------------------------------------------- learning curves


@dataclasses.dataclass
class Dataset:
    """x [N, D] features, y int [N]; an explicit test set (x_test, y_test) or None, in which
    case every draw holds out its own random `test_fraction`."""

    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None


def load_dataset(name: str, config) -> Dataset:
    bundled = {
        "breast_cancer": sk_datasets.load_breast_cancer,
        "digits": sk_datasets.load_digits,
        "wine": sk_datasets.load_wine,
        "iris": sk_datasets.load_iris,
    }
    spec = config.curves[name]
    if name in bundled:
        x, y = bundled[name](return_X_y=True)
        keep = subsample(y, spec.max_examples, config.seed)
        return Dataset(x[keep].astype(np.float32), y[keep].astype(np.int32))
    if name == "spam":
        messages, y = read_spam(config.data.spam_path)
        keep = subsample(y, spec.max_examples, config.seed)
        messages, y = [messages[i] for i in keep], y[keep]
        # Vocabulary from all messages (unsupervised, labels unused): one feature space for
        # every draw.
        x, _ = word_counts(
            messages, np.arange(len(y)), config.data.min_count, config.data.max_vocab
        )
        return Dataset(x, y)
    if name == "mnist":
        if not config.data.mnist_dir or not pathlib.Path(config.data.mnist_dir).is_dir():
            raise FileNotFoundError(
                f"config.data.mnist_dir: no MNIST folder at {config.data.mnist_dir!r}"
            )
        (x, y), (xt, yt) = (
            idx.load_mnist_split(config.data.mnist_dir, s) for s in ("train", "test")
        )
        keep = subsample(y, spec.max_examples, config.seed)
        keep_test = subsample(yt, spec.max_test, config.seed)
        flat = lambda a: a.reshape(len(a), -1).astype(np.float32)
        return Dataset(
            flat(x[keep]),
            y[keep].astype(np.int32),
            flat(xt[keep_test]),
            yt[keep_test].astype(np.int32),
        )
    known = sorted([*bundled, "spam", "mnist"])
    raise ValueError(f"config.datasets: unknown dataset {name!r}; known: {known}")


def draw_indices(
    y: np.ndarray, size: int, num_draws: int, num_test: int, rng
) -> tuple[np.ndarray, np.ndarray]:
    """(train [R, size], test [R, num_test]) indices: each draw holds out a random test set,
    then takes one random example of every class (so every class has a fit) and the rest of
    the training set uniformly from what remains."""
    classes = np.unique(y)
    if size < len(classes):
        raise ValueError(f"config.curves: training size {size} is below the {len(classes)} classes")
    if size + num_test > len(y):
        raise ValueError(
            f"config.curves: training size {size} + {num_test} test examples "
            f"exceed the {len(y)} available"
        )
    trains, tests = [], []
    for _ in range(num_draws):
        order = rng.permutation(len(y))
        test, pool = order[:num_test], order[num_test:]
        firsts = np.array(
            [pool[np.flatnonzero(y[pool] == c)[0]] if np.any(y[pool] == c) else -1 for c in classes]
        )
        if np.any(firsts < 0):
            raise ValueError(
                "config.curves: a class has no example left after holding out the test set"
            )
        rest = pool[~np.isin(pool, firsts)][: size - len(classes)]
        trains.append(np.concatenate([firsts, rest]))
        tests.append(test)
    return np.stack(trains), np.stack(tests)


def fit_naive_bayes(
    x, y, mask, num_classes: int, kind: str, smoothing: float, binarize: float
) -> nb.Params:
    """nb.fit, plus kind 'gaussian_shared': Ng & Jordan's continuous naive Bayes, whose
    per-feature variance is shared by the classes (pooled within-class variance + the
    var_smoothing epsilon, smoothing x the largest feature variance), so that its posterior
    has logistic regression's linear form. `smoothing` is var_smoothing for the Gaussian
    kinds, alpha for the others."""
    gaussian = kind in ("gaussian", "gaussian_shared")
    config = nb.default_config()
    config.update(
        {
            "kind": "gaussian" if gaussian else kind,
            "num_classes": num_classes,
            "var_smoothing" if gaussian else "alpha": smoothing,
            "binarize": binarize,
        }
    )
    data = {"x": x, "y": y, "mask": mask}
    if kind != "gaussian_shared":
        return nb.fit(jax.random.key(0), data, config)[0]  # closed form: the key is unused
    stats = nb.statistics_step(None, data, config, nb.meta_from_data(data, config))
    per_class = nb.from_statistics(stats, config)
    # Central moments: sums of squares less squared sums lose every digit of a variance that
    # is small against the mean (issue #17).
    within = stats.m2.sum(0) / stats.class_count.sum()
    var = within + smoothing * jnp.max(nb.pooled_variance(stats))
    return nb.GaussianNB(
        per_class.log_prior, per_class.mean, jnp.broadcast_to(var, per_class.mean.shape)
    )


@functools.partial(
    jax.jit,
    static_argnames=(
        "num_classes",
        "kind",
        "smoothing",
        "binarize",
        "standardize",
        "num_steps",
        "batch_size",
    ),
)
def draw_errors(
    x,
    y,
    x_test,
    y_test,
    train_idx,
    train_mask,
    test_idx,
    l2,
    lr_scale,
    *,
    num_classes: int,
    kind: str,
    smoothing: float,
    binarize: float,
    standardize: bool,
    num_steps: int,
    batch_size: int,
):
    """Test errors (naive Bayes [R], logistic [R]) of R training sets.

    x [N, D], y [N]: the pool; train_idx [R, m] with train_mask [R, m] (training sets of
    different sizes padded to one shape, so one compilation serves them); l2 [R] the
    logistic penalty of each; test_idx [R, n] into the pool, or None with x_test [n, D],
    y_test [n] shared by all draws. Logistic regression sees x * lr_scale, z-scored with its
    training set's moments when `standardize`.
    """
    optimizer = logistic.make_optimizer("lbfgs")

    def one(row):
        tr, mask, te, l2_row = row
        xs, ys = x[tr], y[tr]
        xt, yt = (x_test, y_test) if te is None else (x[te], y[te])
        nb_params = fit_naive_bayes(xs, ys, mask, num_classes, kind, smoothing, binarize)
        nb_error = jnp.mean(nb.classifier(nb_params).predict(xt) != yt)
        xs, xt = xs * lr_scale, xt * lr_scale
        if standardize:  # moments of the real rows; constant features get scale 1
            weights = mask[:, None] / mask.sum()
            mean = jnp.sum(weights * xs, 0)
            std = jnp.sqrt(jnp.sum(weights * (xs - mean) ** 2, 0))
            std = jnp.where(std > 0, std, 1.0)
            xs, xt = (xs - mean) / std, (xt - mean) / std
        batch = {"x": xs, "y": ys, "mask": mask}
        step = logistic.make_step(optimizer, l2_row, linesearch=True)
        params = logistic.init(xs.shape[1], num_classes)

        def body(carry, _):
            p, s, _ = step(*carry, batch)
            return (p, s), None

        (params, _), _ = jax.lax.scan(body, (params, optimizer.init(params)), length=num_steps)
        return nb_error, jnp.mean(logistic.predict(params, xt) != yt)

    return jax.lax.map(one, (train_idx, train_mask, test_idx, l2), batch_size=batch_size)


def size_buckets(sizes, factor: float) -> list[list[int]]:
    """Consecutive sizes grouped so that each group's largest is <= factor x its smallest:
    a group is padded to its largest and compiled once (padding wastes < factor x compute)."""
    buckets = []
    for size in sorted(int(s) for s in sizes):
        if buckets and size <= factor * buckets[-1][0]:
            buckets[-1].append(size)
        else:
            buckets.append([size])
    return buckets


def learning_curve(name: str, data: Dataset, config) -> dict:
    """Mean and standard error of both test errors at every size of config.curves[name]."""
    spec = config.curves[name]
    rng = np.random.default_rng(config.seed)
    num_classes = int(max(data.y.max(), -1 if data.y_test is None else data.y_test.max())) + 1
    explicit = data.x_test is not None
    num_test = 0 if explicit else round(spec.test_fraction * len(data.y))
    x, y = jnp.asarray(data.x), jnp.asarray(data.y)
    x_test = jnp.asarray(data.x_test) if explicit else None
    y_test = jnp.asarray(data.y_test) if explicit else None
    rows = []
    for bucket in size_buckets(spec.sizes, spec.pad_factor):
        pad = bucket[-1]
        train_idx = np.zeros((len(bucket) * spec.num_draws, pad), np.int32)
        train_mask = np.zeros(train_idx.shape, np.float32)
        tests, l2 = [], []
        for k, size in enumerate(bucket):
            train, test = draw_indices(data.y, size, spec.num_draws, num_test, rng)
            span = slice(k * spec.num_draws, (k + 1) * spec.num_draws)
            train_idx[span, :size], train_mask[span, :size] = train, 1.0
            tests.append(test)
            l2 += [logistic.l2_from_c(spec.c, size)] * spec.num_draws
        # Draws per vmapped batch: bounded memory ([batch, pad, D] gathered features).
        batch_size = int(max(1, min(len(l2), config.max_batch_elements // (pad * data.x.shape[1]))))
        nb_err, lr_err = draw_errors(
            x,
            y,
            x_test,
            y_test,
            jnp.asarray(train_idx),
            jnp.asarray(train_mask),
            None if explicit else jnp.asarray(np.concatenate(tests)),
            jnp.asarray(l2, jnp.float32),
            spec.lr_scale,
            num_classes=num_classes,
            kind=spec.nb_kind,
            smoothing=spec.smoothing,
            binarize=spec.binarize,
            standardize=spec.standardize,
            num_steps=config.logistic.num_steps,
            batch_size=batch_size,
        )
        nb_err = np.asarray(nb_err, np.float64).reshape(len(bucket), spec.num_draws)
        lr_err = np.asarray(lr_err, np.float64).reshape(len(bucket), spec.num_draws)
        sem = lambda e: float(e.std(ddof=1) / np.sqrt(len(e))) if len(e) > 1 else 0.0
        for size, nb_e, lr_e in zip(bucket, nb_err, lr_err):
            rows.append(
                {
                    "size": size,
                    "nb_error": float(nb_e.mean()),
                    "nb_sem": sem(nb_e),
                    "lr_error": float(lr_e.mean()),
                    "lr_sem": sem(lr_e),
                    "difference_sem": sem(lr_e - nb_e),
                }
            )  # paired: the same draws
            metrics_lib.say(
                f"{name} m={size}: naive Bayes {rows[-1]['nb_error']:.4f}  "
                f"logistic {rows[-1]['lr_error']:.4f}"
            )
    return {
        "rows": rows,
        "num_test": len(data.y_test) if explicit else num_test,
        "num_draws": spec.num_draws,
    }


def crossing_size(rows: list[dict]) -> int:
    """The size from which logistic regression's mean error stays below naive Bayes': the one
    after the last size where naive Bayes is no worse; -1 when naive Bayes is never better, or
    still no worse at the largest size."""
    no_worse = [k for k, r in enumerate(rows) if r["nb_error"] <= r["lr_error"]]
    if not no_worse or no_worse[-1] == len(rows) - 1:
        return -1
    return rows[no_worse[-1] + 1]["size"]


def curve_summary(name: str, curve: dict) -> dict[str, float]:
    """Both errors at the smallest and largest sizes, the crossing, and the two leads the
    paper predicts, each net of two standard errors of the paired difference:
      nb_lead_small_n  max over the smaller half of the sizes of lr_error - nb_error - 2 sem
                       (> 0: naive Bayes significantly better at some small size),
      lr_lead_large_n  nb_error - lr_error - 2 sem at the largest size
                       (> 0: logistic regression significantly better with the most data)."""
    rows = curve["rows"]
    small, large = rows[0], rows[-1]
    smaller_half = rows[: (len(rows) + 1) // 2]
    return {
        f"{name}_nb_lead_small_n": max(
            r["lr_error"] - r["nb_error"] - 2 * r["difference_sem"] for r in smaller_half
        ),
        f"{name}_lr_lead_large_n": (
            large["nb_error"] - large["lr_error"] - 2 * large["difference_sem"]
        ),
        f"{name}_size_small": small["size"],
        f"{name}_size_large": large["size"],
        f"{name}_nb_error_small": small["nb_error"],
        f"{name}_lr_error_small": small["lr_error"],
        f"{name}_nb_error_large": large["nb_error"],
        f"{name}_lr_error_large": large["lr_error"],
        f"{name}_lr_minus_nb_error_small_n": small["lr_error"] - small["nb_error"],
        f"{name}_nb_minus_lr_error_large_n": large["nb_error"] - large["lr_error"],
        f"{name}_difference_sem_small": small["difference_sem"],
        f"{name}_difference_sem_large": large["difference_sem"],
        f"{name}_crossing_size": crossing_size(curve["rows"]),
    }


def run_learning_curves(config, workdir: pathlib.Path) -> dict[str, float]:
    names = [n.strip() for n in config.datasets.split(",") if n.strip()]
    if not names:
        raise ValueError("config.datasets is empty: name datasets, e.g. 'breast_cancer,digits'")
    unknown = [n for n in names if n not in config.curves]
    if unknown:
        raise ValueError(
            f"config.datasets: no config.curves entry for {unknown}; have {sorted(config.curves)}"
        )
    summary, curves, panels = {}, {}, []
    for name in names:
        t0 = time.perf_counter()
        curve = learning_curve(name, load_dataset(name, config), config)
        curve["seconds"] = time.perf_counter() - t0
        curves[name] = curve
        summary.update(curve_summary(name, curve))
        summary[f"{name}_seconds"] = curve["seconds"]
        sizes = np.array([r["size"] for r in curve["rows"]], float)
        series = [
            plots.Series(
                label,
                sizes,
                np.array([r[f"{key}_error"] for r in curve["rows"]]),
                np.array([r[f"{key}_sem"] for r in curve["rows"]]),
                color,
            )
            for label, key, color in (
                ("naive Bayes", "nb", (200, 0, 0)),
                ("logistic", "lr", (0, 0, 200)),
            )
        ]
        top = max(float(np.max(s.y + s.err)) for s in series)
        panels.append(
            plots.Panel(
                f"{name} ({curve['num_draws']} draws)",
                series,
                "training examples (log)",
                "test error",
                (float(sizes[0]), float(sizes[-1])),
                (0.0, max(top * 1.05, 1e-3)),
                log_x=True,
            )
        )
    (workdir / "learning_curves.json").write_text(json.dumps(curves, indent=1))
    plots.plot_panels(workdir / "learning_curves.png", panels)
    return summary


# --------------------------------------------------------------------------------- main

KINDS = {"spam": run_spam, "learning_curves": run_learning_curves}
main = config_lib.kind_main(KINDS)


if __name__ == "__main__":
    config_lib.run(main)
