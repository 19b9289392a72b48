"""Latent Dirichlet allocation experiments: topic recovery on the synthetic "bars" corpus
(Griffiths & Steyvers 2004) and held-out perplexity against the number of topics on real text.

  ./launch.sh lda --config=experiments/configs/lda_bars.py
  ./launch.sh lda --config=experiments/configs/lda_corpus.py --config.data.path=FILE

bars: the corpus is sampled from the ten bar topics with a seeded key and fitted by
variational Bayes (batch with restarts, or online) and by collapsed Gibbs; summary.json holds
each fit's topic match score (mean best cosine to the true topics, Hungarian matching),
held-out perplexities (VB's variational bound; document completion for both fits and for the
true topics, the floor), and wall times; bars_topics.png shows the true and both recovered
topic sets as 5x5 grids.

corpus: one document per line (`config.data.path`); for each K, batch VB on a seeded 90% of
the documents and two held-out perplexities on the rest (the per-document variational bound,
and document completion: theta from half of each document's words, the other half scored),
a unigram baseline, top words per topic in top_words.txt, and perplexity_vs_topics.png.

Every fit runs on the training loop (genjax_lab.models.lda.family): each in its own folder
(bars: vb/ and gibbs/; corpus: k{K}/), checkpointed every `config.checkpoint.every`
iterations; a relaunch resumes each fit bitwise where it stopped, and a relaunch of a finished
run trains nothing and writes the same numbers. Times are wall seconds including compilation
and checkpoints.

A finished workdir is a model (genjax_lab.saving; ./launch.sh sample|score --workdir=W):
bars saves the VB fit over the pixel words ('abcde'[row] + 'fghjk'[column], `PIXEL_WORDS`),
corpus the K of the best completion perplexity (each K's own in k{K}/) over the training
vocabulary; `sample` writes documents as the training documents' length, `score` each
document's ELBO (a lower bound on log p(w) in nats).
"""

import pathlib
import time

import jax
import ml_collections
import numpy as np
from scipy.optimize import linear_sum_assignment

from genjax_lab import saving
from genjax_lab.core import config as config_lib
from genjax_lab.core import metrics as metrics_lib
from genjax_lab.core import plots
from genjax_lab.core.loop import train_and_evaluate
from genjax_lab.data import synthetic, text
from genjax_lab.models import lda

config_lib.define_flags(config_lib.beside(__file__, "configs/lda_bars.py"), "runs/lda")

# ------------------------------------------------------------------------------- fits


def fit_on_loop(
    config,
    workdir: pathlib.Path,
    model: ml_collections.ConfigDict,
    bags: text.BagOfWords,
    vocab_size: int,
    key: jax.Array,
) -> tuple[lda.VBState, dict[str, float], float]:
    """One fit of `model` (lda.default_config() keys) on the training loop in `workdir`,
    resumed from its checkpoints: (params, the loop's final metrics, wall seconds)."""
    family = lda.LDAFamily(model, vocab_size, key)
    run_config = lda.loop_config(model, seed=config.seed, checkpoint_every=config.checkpoint.every)
    t0 = time.perf_counter()
    result = train_and_evaluate(run_config, workdir, *family.prepare(bags))
    params = jax.block_until_ready(family.params(result.state))
    return params, result.metrics, time.perf_counter() - t0


def save_model(
    workdir: pathlib.Path, model: ml_collections.ConfigDict, params, words, length: int
) -> None:
    """The finished fit as the workdir's model: text input over `words`; samples of `length`
    words as count rows (what ./launch.sh sample prints)."""
    meta = {
        **lda.meta_from_data({"vocab_size": len(words)}, model),
        "input": {
            "kind": "text",
            "vocabulary": list(words),
            "sample_kwargs": {"length": int(length), "as_counts": True},
        },
    }
    saving.save(workdir, "lda", model, meta, params)


# -------------------------------------------------------------------------------- bars

# Pixel (row, column) of the 5 x 5 grid as a word the text tokenizer keeps (letters only).
PIXEL_WORDS = tuple(row + column for row in "abcde" for column in "fghjk")


def model_config(config, num_topics: int, alpha: float | None, eta: float | None):
    """The family's config (lda.default_config()) for this experiment's VB settings."""
    vb = config.vb
    model = lda.default_config()
    model.update(
        {
            "num_topics": num_topics,
            "alpha": alpha,
            "eta": eta,
            "max_doc_iter": int(vb.max_doc_iter),
            "num_iters": int(vb.num_iters),
            "method": vb.get("method", "batch"),
            "num_restarts": int(vb.get("num_restarts", 1)),
            "batch_size": int(vb.get("batch_size", 64)),
            "learning_offset": float(vb.get("learning_offset", 1024.0)),
            "learning_decay": float(vb.get("learning_decay", 0.7)),
        }
    )
    if model.method not in ("batch", "online"):
        raise ValueError(f"config.vb.method must be 'batch' or 'online', got {model.method!r}")
    return model


def bars_corpus(
    key: jax.Array, num_docs: int, doc_length: int, alpha: float
) -> tuple[text.BagOfWords, np.ndarray]:
    """Documents drawn from the bars topics with theta ~ Dirichlet(alpha): (bags, topics)."""
    topics = synthetic.bars_topics()
    corpus = lda.sample_documents(key, topics, alpha, num_docs, doc_length)
    return text.bag_of_ids(np.asarray(corpus.words)), topics


_topic_bound = jax.jit(lda.topic_bound)  # one compilation instead of many eager ops


def heldout_perplexity(params: lda.VBState, bags: text.BagOfWords, model: lda.LDAConfig) -> float:
    """exp(-sum_d bound_d / words) with each document's variational bound under q(beta) (the
    sum of `lda.log_prob_bound`; Hoffman et al. 2010's held-out estimator). Unlike
    `lda.perplexity` (scikit-learn's), it leaves out the corpus-level topic term, which says
    nothing about the held-out words and, divided by a small held-out word count, swamps them
    (on lee_background it turns about 1.3e3 into 4e4 at K = 5 and 3e8 at K = 40)."""
    bound = lda.elbo(params, bags, model) - float(_topic_bound(params.lam, params.eta))
    return float(np.exp(-bound / float(bags.counts.sum())))


def run_bars(config, workdir: pathlib.Path) -> dict[str, float]:
    data, m = config.data, config.model
    if data.num_docs < 1 or data.doc_length < 1 or data.heldout_docs < 1:
        raise ValueError("config.data.num_docs, doc_length and heldout_docs must be >= 1")
    k_data, k_vb, k_gibbs = jax.random.split(jax.random.key(config.seed), 3)
    t0 = time.perf_counter()
    # One draw, split after: a second sample_documents shape would compile again.
    everything, truth = bars_corpus(
        k_data, data.num_docs + data.heldout_docs, data.doc_length, data.alpha
    )
    bags, heldout = (
        everything.subset(slice(0, data.num_docs)),
        everything.subset(slice(data.num_docs, None)),
    )
    observed, held = lda.split_bags(heldout, seed=config.seed)
    corpus_seconds = time.perf_counter() - t0
    vocab_size = truth.shape[1]
    vb_config = model_config(config, m.num_topics, m.alpha, m.eta)
    model = lda.lda_config(vb_config, vocab_size)

    vb_state, _, vb_seconds = fit_on_loop(config, workdir / "vb", vb_config, bags, vocab_size, k_vb)
    vb_topics = np.asarray(lda.topic_word(vb_state))
    metrics_lib.say(f"VB ({config.vb.method}) in {vb_seconds:.1f} s")

    gibbs_config = vb_config.copy_and_resolve_references()
    gibbs_config.update(
        {"method": "gibbs", "num_iters": int(config.gibbs.num_iters), "num_restarts": 1}
    )
    gibbs_params, gibbs_metrics, gibbs_seconds = fit_on_loop(
        config, workdir / "gibbs", gibbs_config, bags, vocab_size, k_gibbs
    )
    gibbs_topics = np.asarray(lda.topic_word(gibbs_params))
    metrics_lib.say(f"Gibbs ({config.gibbs.num_iters} sweeps) in {gibbs_seconds:.1f} s")

    def completion(topics) -> float:
        return lda.completion_perplexity(
            topics, np.full(m.num_topics, model.alpha0, np.float32), observed, held, model
        )

    _plot_bars(workdir / "bars_topics.png", truth, {"VB": vb_topics, "Gibbs": gibbs_topics})
    save_model(workdir, vb_config, vb_state, PIXEL_WORDS, data.doc_length)
    return {
        "vb_match_score": lda.topic_match_score(truth, vb_topics),
        "gibbs_match_score": lda.topic_match_score(truth, gibbs_topics),
        "vb_heldout_perplexity": heldout_perplexity(vb_state, heldout, model),
        "vb_completion_perplexity": completion(vb_topics),
        "gibbs_completion_perplexity": completion(gibbs_topics),
        "true_topics_completion_perplexity": completion(truth),
        "gibbs_final_log_p_w_given_z": gibbs_metrics["train_log_p_w_given_z"],
        "vb_seconds": vb_seconds,
        "gibbs_seconds": gibbs_seconds,
        "corpus_seconds": corpus_seconds,
        "num_docs": float(data.num_docs),
        "doc_length": float(data.doc_length),
    }


def matched_order(truth: np.ndarray, recovered: np.ndarray) -> np.ndarray:
    """Indices into recovered [K', V] of the topic matched to each true topic [K, V] (the
    cosine-maximising one-to-one matching of `lda.topic_match_score`)."""
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
    rows, cols = linear_sum_assignment(
        -unit(np.asarray(truth, np.float64)) @ unit(np.asarray(recovered, np.float64)).T
    )
    return cols[np.argsort(rows)]


def _plot_bars(path: pathlib.Path, truth: np.ndarray, fits: dict[str, np.ndarray]) -> None:
    """One row of side x side grids per topic set (true first), recovered topics in the order
    of the true topic each is matched to; each grid scaled to its own maximum (white = 0)."""
    side = round(float(np.sqrt(truth.shape[1])))
    rows = {"true": np.asarray(truth, np.float64)}
    rows |= {name: np.asarray(t, np.float64)[matched_order(truth, t)] for name, t in fits.items()}
    plots.save_grid(
        path,
        [
            (t / np.maximum(t.max(1, keepdims=True), 1e-12)).reshape(-1, side, side)
            for t in rows.values()
        ],
        rows=1,
        scale=10,
        pad=3,
        ink=True,
        labels=list(rows),
        title="bars topics: true, and recovered (matched to the true order)",
    )


# ------------------------------------------------------------------------------ corpus


def load_corpus(config) -> tuple[text.BagOfWords, text.BagOfWords, text.Vocabulary]:
    """(train, held-out) bags of a seeded document split, and the vocabulary of the training
    part."""
    data = config.data
    path = pathlib.Path(data.path)
    if not path.is_file():
        raise FileNotFoundError(
            f"config.data.path: no corpus file at {path} (one document per line; "
            f"pass --config.data.path=FILE)"
        )
    docs = text.read_corpus(path)
    if data.max_docs:
        docs = docs[: data.max_docs]
    if not 0.0 < data.heldout_fraction < 1.0:
        raise ValueError(
            f"config.data.heldout_fraction must be in (0, 1), got {data.heldout_fraction}"
        )
    num_heldout = round(float(data.heldout_fraction) * len(docs))
    if num_heldout < 1 or num_heldout >= len(docs):
        raise ValueError(
            f"config.data: {len(docs)} documents leave no training or no held-out part "
            f"at heldout_fraction={data.heldout_fraction}"
        )
    tokens = [text.tokenize(d) for d in docs]
    order = np.random.default_rng(config.seed).permutation(len(docs))
    train_tokens = [tokens[i] for i in order[num_heldout:]]
    vocab = text.build_vocabulary(
        train_tokens,
        min_count=data.min_count,
        max_doc_fraction=data.max_doc_fraction,
        max_size=data.max_size or None,
    )
    heldout = text.bag_of_words([tokens[i] for i in order[:num_heldout]], vocab)
    return text.bag_of_words(train_tokens, vocab), heldout, vocab


def unigram_perplexity(train: text.BagOfWords, heldout: text.BagOfWords, vocab_size: int) -> float:
    """Add-one smoothed training word frequencies, scored on `heldout`: the no-topic baseline."""
    freq = np.ones(vocab_size, np.float64)
    np.add.at(freq, train.ids.ravel(), train.counts.ravel())
    log_p = np.log(freq / freq.sum())
    return float(np.exp(-(heldout.counts * log_p[heldout.ids]).sum() / heldout.counts.sum()))


def run_corpus(config, workdir: pathlib.Path) -> dict[str, float]:
    ks = [int(k) for k in config.num_topics_list]
    if not ks or min(ks) < 1:
        raise ValueError(
            f"config.num_topics_list must hold numbers of topics >= 1, got {config.num_topics_list}"
        )
    train, heldout, vocab = load_corpus(config)
    observed, held = lda.split_bags(heldout, seed=config.seed)
    summary = {
        "num_train_docs": float(train.num_docs),
        "num_heldout_docs": float(heldout.num_docs),
        "vocab_size": float(len(vocab)),
        "heldout_words": float(heldout.counts.sum()),
        "unigram_perplexity": unigram_perplexity(train, heldout, len(vocab)),
        "unigram_completion_perplexity": unigram_perplexity(train, held, len(vocab)),
    }
    lines, fits = [], {}
    length = round(float(train.counts.sum()) / train.num_docs)  # words a sampled document has
    for k in ks:
        vb_config = model_config(config, k, None, None)
        model = lda.lda_config(vb_config, len(vocab))
        state, metrics, summary[f"seconds_k{k}"] = fit_on_loop(
            config,
            workdir / f"k{k}",
            vb_config,
            train,
            len(vocab),
            jax.random.fold_in(jax.random.key(config.seed), k),
        )
        save_model(workdir / f"k{k}", vb_config, state, vocab.words, length)
        fits[k] = vb_config, state
        summary[f"heldout_perplexity_k{k}"] = heldout_perplexity(state, heldout, model)
        summary[f"completion_perplexity_k{k}"] = lda.completion_perplexity(
            lda.topic_word(state), state.alpha, observed, held, model
        )
        summary[f"train_bound_per_word_k{k}"] = metrics["train_elbo"] / float(train.counts.sum())
        metrics_lib.say(
            f"K={k}: held-out bound perplexity {summary[f'heldout_perplexity_k{k}']:.1f}, "
            f"completion {summary[f'completion_perplexity_k{k}']:.1f} "
            f"({summary[f'seconds_k{k}']:.1f} s)"
        )
        lines.append(f"K = {k}")
        lines += [
            f"  {i:3d}: {' '.join(words)}"
            for i, words in enumerate(
                lda.top_words(lda.topic_word(state), vocab.words, config.num_top_words)
            )
        ]
    best = min(ks, key=lambda k: summary[f"completion_perplexity_k{k}"])
    summary["best_num_topics_by_completion"] = float(best)
    save_model(workdir, *fits[best], vocab.words, length)
    (workdir / "top_words.txt").write_text(
        f"{pathlib.Path(config.data.path).name}: top words per topic\n" + "\n".join(lines) + "\n"
    )
    plots.plot_curves(
        workdir / "perplexity_vs_topics.png",
        ks,
        {
            "held-out bound": [summary[f"heldout_perplexity_k{k}"] for k in ks],
            "completion": [summary[f"completion_perplexity_k{k}"] for k in ks],
        },
        "held-out perplexity vs topics K; unigram dashed",
        "topics K",
        reference=summary["unigram_perplexity"],
    )
    return summary


# -------------------------------------------------------------------------------- main

KINDS = {"bars": run_bars, "corpus": run_corpus}
main = config_lib.kind_main(KINDS)


if __name__ == "__main__":
    config_lib.run(main)
