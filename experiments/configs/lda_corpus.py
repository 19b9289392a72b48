"""LDA on real text, one document per line (genjax_lab.data.text): for each number of
topics K in `num_topics_list`, batch variational Bayes on 90% of the documents, then the
held-out perplexity of the other 10% (a seeded random split of documents, as Blei, Ng &
Jordan 2003; ../shared/REFERENCES.md). Priors alpha = eta = 1/K (Hoffman et al. 2010).

  ./launch.sh lda --config=experiments/configs/lda_corpus.py \
      --config.data.path=../shared/data/text/lee_background.cor

Perplexity estimators (both in summary.json, per K): `heldout_perplexity_k{K}` =
exp(-sum of the held-out documents' variational bounds under q(beta) / their words)
(Hoffman et al. 2010's; scikit-learn's `perplexity` adds the corpus-level topic term,
meaningless on 30 held-out documents); `completion_perplexity_k{K}` = document completion
(theta from a random half of each held-out document's words, log p of the other half).
Unigram baselines (add-one smoothed training frequencies): `unigram_perplexity` on all
held-out words, `unigram_completion_perplexity` on the completion half.

Measured here on lee_background (default variant, 270 training / 30 held-out documents,
2,369 words; 26 s in all on 2 shared CPU cores), K = 5 / 10 / 20 / 40: held-out bound
perplexity 1335 / 1350 / 1499 / 1428 (unigram 1455); completion perplexity 1064 / 985 /
973 / 880 (unigram 1426). With 30 held-out documents both are noisy; more topics keep
helping completion, while the bound (which pays for q(theta)'s KL) prefers few topics.
wiki250 (K = 10 / 20 / 50, 53 s): bound 1109 / 1048 / 1002, completion 1055 / 974 / 895.

Variants (`--config=experiments/configs/lda_corpus.py:VARIANT`):
  default  lee_background.cor, K in 5, 10, 20, 40, 50 batch passes.
  wiki250  wiki250_stemmed.cor.gz, 2,000-word vocabulary, K in 10, 20, 50, 30 passes.
  tiny     the first 120 documents of lee_background, K in 3 and 6, 8 passes (seconds).
"""

import pathlib

import ml_collections

TEXT_DIR = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "text"


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.kind = "corpus"
    config.seed = 0
    # max_docs: use only the first max_docs documents (0: all). Vocabulary: words seen
    # >= min_count times, in <= max_doc_fraction of documents, the max_size most frequent (0: all).
    config.data = ml_collections.ConfigDict(
        {
            "path": str(TEXT_DIR / "lee_background.cor"),
            "max_docs": 0,
            "heldout_fraction": 0.1,
            "min_count": 3,
            "max_doc_fraction": 0.3,
            "max_size": 0,
        }
    )
    config.num_topics_list = (5, 10, 20, 40)
    config.vb = ml_collections.ConfigDict({"num_iters": 50, "max_doc_iter": 100})
    config.num_top_words = 10
    # Each fit (an iteration a step) saves a resumable checkpoint every this many iterations.
    config.checkpoint = ml_collections.ConfigDict({"every": 25})
    if variant == "wiki250":
        config.data.path = str(TEXT_DIR / "wiki250_stemmed.cor.gz")
        config.data.update({"min_count": 10, "max_doc_fraction": 0.5, "max_size": 2000})
        config.num_topics_list = (10, 20, 50)
        config.vb.num_iters = 30
    elif variant == "tiny":
        config.data.max_docs = 120
        config.data.heldout_fraction = 0.2
        config.num_topics_list = (3, 6)
        config.vb.num_iters = 8
        config.vb.max_doc_iter = 30
    elif variant != "default":
        raise ValueError(f"unknown variant {variant!r} of lda_corpus: default, wiki250 or tiny")
    return config
