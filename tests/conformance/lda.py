"""LDA on a small bars corpus (10 topics over a 5x5 grid, 300 documents of 40 words) by batch
VB: scored by the per-document ELBO (`log_prob_bound`), no label. (Online VB and collapsed
Gibbs go through the same verbs in tests/test_lda.py.)"""

import jax
import numpy as np

from genjax_lab.data import synthetic, text
from genjax_lab.models import lda
from tests.conformance import Case


def _make_data(key):
    # The generative process in NumPy: no sampler to compile for the data.
    rng = np.random.default_rng(int(jax.random.randint(key, (), 0, 2**31 - 1)))
    topics = synthetic.bars_topics()
    theta = rng.dirichlet(np.ones(len(topics)), 300)
    words = [[rng.choice(25, p=topics[z]) for z in rng.choice(len(topics), 40, p=t)] for t in theta]
    bags = text.bag_of_ids(words)
    train, test = bags.subset(slice(0, 240)), bags.subset(slice(240, 300))
    return {"x": train, "vocab_size": 25}, {"x": test}


def _config():
    config = lda.default_config()
    config.num_topics, config.alpha, config.eta = 10, 1.0, 0.1
    config.num_iters, config.max_doc_iter = 10, 20
    return config


CASE = Case(
    family="lda",
    make_data=_make_data,
    config=_config(),
    likelihood="bound",
    labelled=False,
    sample_kwargs={"length": 30},
)
