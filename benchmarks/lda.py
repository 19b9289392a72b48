"""LDA variational Bayes: time to reach scikit-learn's final perplexity, same run.

For each corpus (the bars corpus of Griffiths & Steyvers 2004: 2,000 documents of 100
words, V = 25, K = 10, alpha = 1, eta = 0.1; and wiki250, the stemmed Wikipedia sample,
through genjax_lab.data.text, K = 20, alpha = eta = 1/K):
1. scikit-learn's LatentDirichletAllocation (batch VB) runs `--sklearn_iters` iterations,
   timed once (it takes seconds); its final perplexity P on the training documents comes
   from its own `perplexity` (our `lda.perplexity` is the same estimator, checked in
   tests/test_lda.py).
2. We start from the same initial lambda (sklearn's RandomState(0).gamma(100, 1/100)), run
   batch VB (documents restarted every pass, `--doc_iters` fixed-point iterations at most
   per pass; scikit-learn runs up to 100 per document) and, untimed, find the first pass
   count n whose perplexity (our estimator) is <= P; and likewise online VB (batch 64,
   learning_offset 10, decay 0.7, scikit-learn's online defaults; `--online_doc_iters`) by
   epochs, in corpus order as scikit-learn. Few document iterations per pass pay off in
   batch mode (on wiki250, 5 per pass reach P in 12 passes, 20 in 9, at 2.5x the cost per
   pass); online updates need better converged documents.
3. ours_s = median wall time of a fresh fit of n passes (compile excluded by a warm-up,
   host sync after every pass as in fit_vb). speedup = sklearn time / ours_s.
Timings on a shared machine are provisional.

  .venv/bin/python benchmarks/lda.py --out=/tmp/lda.json
"""

import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp
import numpy as np
import sklearn
from sklearn.decomposition import LatentDirichletAllocation

from benchmarks.common import median_seconds, record, report
from genjax_lab.data import synthetic, text
from genjax_lab.models import lda

WIKI = (
    pathlib.Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "text"
    / "wiki250_stemmed.cor.gz"
)


def sklearn_fit(dense: np.ndarray, config: lda.LDAConfig, iters: int):
    model = LatentDirichletAllocation(
        n_components=config.num_topics,
        doc_topic_prior=config.alpha0,
        topic_word_prior=config.eta0,
        learning_method="batch",
        max_iter=iters,
        random_state=0,
    )
    start = time.perf_counter()
    model.fit(dense)
    return model, time.perf_counter() - start


def sklearn_initial_state(config: lda.LDAConfig) -> lda.VBState:
    lam = np.random.RandomState(0).gamma(100.0, 1.0 / 100.0, (config.num_topics, config.vocab_size))
    return lda.VBState(
        jnp.asarray(lam, jnp.float32),
        jnp.full(config.num_topics, config.alpha0, jnp.float32),
        jnp.float32(config.eta0),
        jnp.int32(0),
    )


def passes_to_reach(bags, config, target: float, method: str, max_passes: int) -> int | None:
    """Smallest number of passes (batch iterations or online epochs) with perplexity <= target.

    A fit of n passes continued by one more pass equals a fit of n + 1 passes (documents
    restart every pass; online epochs run in corpus order), so passes are added one by one.
    """
    state = sklearn_initial_state(config)
    for n in range(1, max_passes + 1):
        state, _ = lda.fit_vb(
            jax.random.key(0),
            bags,
            config,
            method=method,
            num_iters=1,
            batch_size=64,
            state=state,
            shuffle=False,
        )
        if lda.perplexity(state, bags, config) <= target:
            return n
    return None


def fit_seconds(bags, config, method: str, passes: int, repeats: int) -> float:
    def run():
        state, _ = lda.fit_vb(
            jax.random.key(0),
            bags,
            config,
            method=method,
            num_iters=passes,
            batch_size=64,
            state=sklearn_initial_state(config),
            shuffle=False,
        )
        jax.block_until_ready(state)

    return median_seconds(run, repeats=repeats)


def bench_corpus(name: str, bags, vocab_size: int, num_topics: int, alpha, eta, args) -> list[dict]:
    base = {
        "num_topics": num_topics,
        "vocab_size": vocab_size,
        "alpha": alpha,
        "eta": eta,
        "max_doc_iter": args.doc_iters,
    }
    sk_model, sk_seconds = sklearn_fit(
        text.to_dense(bags, vocab_size), lda.LDAConfig(**base), args.sklearn_iters
    )
    target = sk_model.perplexity(text.to_dense(bags, vocab_size))
    records = []
    online = dict(
        base, max_doc_iter=args.online_doc_iters, learning_offset=10.0, learning_decay=0.7
    )
    for method, config in (("batch", lda.LDAConfig(**base)), ("online", lda.LDAConfig(**online))):
        passes = passes_to_reach(bags, config, target, method, max_passes=5 * args.sklearn_iters)
        if passes is None:
            print(
                f"{name} {method}: perplexity {target:.3f} not reached in "
                f"{5 * args.sklearn_iters} passes"
            )
            continue
        ours = fit_seconds(bags, config, method, passes, args.repeats)
        records.append(
            record(
                f"lda_{name}_{method}_to_sklearn_perplexity",
                ours,
                "scikit-learn LDA batch",
                sklearn.__version__,
                sk_seconds,
                passes=passes,
                doc_iters=config.max_doc_iter,
                sklearn_iters=args.sklearn_iters,
                target_perplexity=float(target),
                docs=bags.num_docs,
                vocab=vocab_size,
                topics=num_topics,
                device=str(jax.devices()[0]),
            )
        )
    return records


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sklearn_iters", type=int, default=10)
    parser.add_argument(
        "--doc_iters", type=int, default=5, help="our document iterations per batch pass"
    )
    parser.add_argument(
        "--online_doc_iters", type=int, default=20, help="our document iterations per minibatch"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--wiki", default=str(WIKI))
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    corpus = lda.sample_documents(jax.random.key(0), synthetic.bars_topics(), 1.0, 2000, 100)
    bars = text.bag_of_ids(np.asarray(corpus.words))
    records = bench_corpus("bars", bars, 25, 10, 1.0, 0.1, args)
    if pathlib.Path(args.wiki).exists():
        tokens = [text.tokenize(d) for d in text.read_corpus(args.wiki)]
        vocab = text.build_vocabulary(tokens, min_count=10, max_doc_fraction=0.5)
        records += bench_corpus(
            "wiki250", text.bag_of_words(tokens, vocab), len(vocab), 20, None, None, args
        )
    else:
        print(f"wiki250 skipped: {args.wiki} not found")
    report(records, args.out)


if __name__ == "__main__":
    main()
