"""LDA on the "bars" corpus (Griffiths & Steyvers 2004, ../shared/REFERENCES.md): 10
topics, 5 horizontal and 5 vertical bars on a 5x5 pixel grid (V = 25), 2,000 documents of
100 words, theta ~ Dirichlet(1). The corpus is sampled with a seeded key and fitted twice,
by batch variational Bayes (best final ELBO of `vb.num_restarts` starts) and by collapsed
Gibbs; recovery is the mean cosine of the true topics to the recovered ones under the best
one-to-one matching (`lda.topic_match_score`, 1.0 = perfect).

  ./launch.sh lda --config=experiments/configs/lda_bars.py

Measured here (2 shared CPU cores, default variant): VB match 0.997 and Gibbs match 0.999,
18 s in all with compilation (see docs/lda.md).

Variants (`--config=experiments/configs/lda_bars.py:VARIANT`):
  default  the paper's 2,000 x 100 corpus, VB 3 starts x 40 passes, Gibbs 200 sweeps.
  tiny     400 documents of 100 words, VB 3 starts x 20 passes, Gibbs 60 sweeps (seconds).
"""

import ml_collections


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.kind = "bars"
    config.seed = 0
    # heldout_docs: extra documents from the same process, for held-out perplexities only.
    config.data = ml_collections.ConfigDict(
        {"num_docs": 2000, "doc_length": 100, "alpha": 1.0, "heldout_docs": 200}
    )
    # alpha = the generating Dirichlet(1); eta = 0.1, a sparse topic prior (our choice).
    config.model = ml_collections.ConfigDict({"num_topics": 10, "alpha": 1.0, "eta": 0.1})
    # method "batch" or "online"; online uses batch_size, learning_offset (tau0) and
    # learning_decay (kappa).
    # About half of single batch-VB starts merge two bars (a local optimum): keep the best of 3.
    config.vb = ml_collections.ConfigDict(
        {
            "method": "batch",
            "num_iters": 40,
            "num_restarts": 3,
            "max_doc_iter": 20,
            "batch_size": 100,
            "learning_offset": 10.0,
            "learning_decay": 0.7,
        }
    )
    config.gibbs = ml_collections.ConfigDict({"num_iters": 200})
    # Each fit (an iteration a step) saves a resumable checkpoint every this many iterations.
    config.checkpoint = ml_collections.ConfigDict({"every": 50})
    if variant == "tiny":
        config.data.num_docs = 400
        config.data.heldout_docs = 50
        config.vb.num_iters = 20
        config.gibbs.num_iters = 60
    elif variant != "default":
        raise ValueError(f"unknown variant {variant!r} of lda_bars: default or tiny")
    return config
