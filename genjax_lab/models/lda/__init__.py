"""Latent Dirichlet allocation: variational Bayes (batch and online) and collapsed Gibbs.

Model (Blei, Ng & Jordan 2003), K topics over a vocabulary of V words:
  beta_k ~ Dirichlet(eta 1_V),  theta_d ~ Dirichlet(alpha),  z_dn ~ theta_d,  w_dn ~ beta_{z_dn}.

Data layout: documents are padded sparse bags (genjax_lab.data.text.BagOfWords): `ids` int32
[B, L] and `counts` float32 [B, L], padding slots with count 0. A document with no words is
allowed and contributes nothing. Every verb that takes documents also takes a documents x
vocabulary count matrix [D, V], dense or scipy.sparse (CSR, CSC, COO: scikit-learn's
CountVectorizer output), laid out as bags from its sparse indices (`check_documents`). `fit`
takes data = {"x": documents} (optionally with "vocab_size": V; otherwise the matrix's width
or the bags' largest id + 1).

The shared verbs (genjax_lab.api); config is the family's `default_config()` (the model part
of an experiment's config):
  init(key, config, meta), meta_from_data(data, config) -> {num_topics, vocab_size},
  fit(key, data, config, init=None) -> (params, history): config.method "batch" / "online"
      VB or "gibbs"; the steps: vb_batch_step, vb_online_step, gibbs_step. params is a
      VBState (lambda [K, V], alpha [K], eta [], step) whichever the method.
  log_prob_bound(key, params, x) -> [B]: each document's ELBO (log p(w) is intractable).
  sample(key, params, num, *, y=None, length=100) -> BagOfWords [num, ...] (no labels).
  posterior(params, x) -> topic proportions E_q[theta] [B, K] (scikit-learn's transform).
No label, so no classifier. `perplexity` is scikit-learn's estimator, under its name.

Modules: maths (hyperparameters, state, checks, E-step, bounds), vb (batch and online VB),
gibbs (collapsed Gibbs), model (the verbs, perplexities, sampling, topic matching), family
(the three fits on the training loop: LDAFamily, loop_config), coherence (gensim's UMass and
NPMI topic coherence: umass_coherence, npmi_coherence).
"""

from genjax_lab.models.lda import coherence, family, gibbs, maths, vb
from genjax_lab.models.lda.coherence import npmi_coherence, umass_coherence, window_counts
from genjax_lab.models.lda.family import GibbsChain, LDAFamily, VBStarts, loop_config
from genjax_lab.models.lda.gibbs import (
    GibbsState,
    Tokens,
    fit_gibbs,
    gibbs_doc_topics,
    gibbs_params,
    gibbs_step,
    gibbs_topics,
    init_gibbs,
    log_prob_given_assignments,
    make_gibbs_steps,
    make_sweep,
    tokens_from_bags,
)
from genjax_lab.models.lda.maths import (
    Documents,
    LDAConfig,
    VBState,
    check_bags,
    check_documents,
    check_state,
    check_topics,
    digamma_positive,
    dirichlet_expectation,
    document_bounds,
    e_step,
    gammaln_positive,
    topic_bound,
)
from genjax_lab.models.lda.model import (
    METHODS,
    SyntheticCorpus,
    completion_perplexity,
    default_config,
    elbo,
    fit,
    init,
    lda_config,
    log_prob_bound,
    meta_from_data,
    perplexity,
    posterior,
    posterior_given_topics,
    sample,
    sample_documents,
    split_bags,
    top_words,
    topic_match_score,
    topic_word,
)
from genjax_lab.models.lda.vb import (
    DocBatch,
    FitHistory,
    fit_vb,
    init_vb,
    length_groups,
    make_online_step,
    vb_batch_step,
    vb_online_step,
)

__all__ = [
    "METHODS",
    "DocBatch",
    "Documents",
    "FitHistory",
    "GibbsChain",
    "GibbsState",
    "LDAConfig",
    "LDAFamily",
    "SyntheticCorpus",
    "Tokens",
    "VBStarts",
    "VBState",
    "check_bags",
    "check_documents",
    "check_state",
    "check_topics",
    "coherence",
    "completion_perplexity",
    "default_config",
    "digamma_positive",
    "gammaln_positive",
    "dirichlet_expectation",
    "document_bounds",
    "e_step",
    "elbo",
    "family",
    "fit",
    "fit_gibbs",
    "fit_vb",
    "gibbs",
    "gibbs_doc_topics",
    "gibbs_params",
    "gibbs_step",
    "gibbs_topics",
    "init",
    "init_gibbs",
    "init_vb",
    "lda_config",
    "length_groups",
    "log_prob_bound",
    "log_prob_given_assignments",
    "loop_config",
    "make_gibbs_steps",
    "make_online_step",
    "make_sweep",
    "maths",
    "meta_from_data",
    "npmi_coherence",
    "perplexity",
    "posterior",
    "posterior_given_topics",
    "sample",
    "sample_documents",
    "split_bags",
    "tokens_from_bags",
    "top_words",
    "topic_bound",
    "topic_match_score",
    "topic_word",
    "umass_coherence",
    "vb",
    "vb_batch_step",
    "vb_online_step",
    "window_counts",
]
