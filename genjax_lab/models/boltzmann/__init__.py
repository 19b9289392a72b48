"""Restricted Boltzmann machines (Bernoulli and unit-variance Gaussian visible units) and a
two-hidden-layer deep Boltzmann machine (Salakhutdinov & Hinton, AISTATS 2009).

The shared verbs (genjax_lab.api), for Bernoulli visible units:
  init(key, config, meta), meta_from_data(data, config), fit(key, data, config, init=None):
      config is the family's whole `default_config()`, config.model.kind 'rbm' or 'dbm';
      data = {"x": [N, ...] binary visible vectors}. The steps: make_rbm_step (CD-k /
      PCD-k) and make_dbm_step.
  log_prob(params, x, log_z=None) -> [B]: exact for an RBM; the parameters carry no log Z,
      so it is enumerated (`log_partition`, small models) unless passed in.
  log_prob_estimate(key, params, x) -> [B]: an RBM's log p(v) with an AIS log Z.
  log_prob_bound(key, params, x, log_z=None) -> [B]: a DBM's mean-field bound (AIS log Z
      unless given).
  log_partition(params) -> []: exact log Z by enumeration.
  sample(key, params, num, *, y=None) -> [num, V]: block Gibbs from random bits (no labels).
  posterior(params, x): an RBM's p(h | v) [B, H]; a DBM's mean-field (mu1 [B, H1],
      mu2 [B, H2]).

Modules: model (parameters, energies, Gibbs, mean field), fit (steps, pretraining, optimizer,
fit), partition (AIS path, enumeration, scoring), family (the loop adapter, the final AIS
evaluation, the default config).
"""

from genjax_lab.models.boltzmann.family import (
    BoltzmannFamily,
    DBMTrainState,
    RBMTrainState,
    default_config,
    family_for,
    final_scores,
)
from genjax_lab.models.boltzmann.fit import (
    METHODS,
    PretrainResult,
    fit,
    init,
    make_dbm_step,
    make_epoch,
    make_optimizer,
    make_rbm_step,
    meta_from_data,
    pretrain_dbm,
    rbm_optimizer,
    sweeps_at,
)
from genjax_lab.models.boltzmann.model import (
    VISIBLE_TYPES,
    DBMChains,
    DBMParams,
    RBMParams,
    compose_dbm,
    dbm_as_rbm,
    dbm_gibbs_chain,
    dbm_lower_bound,
    dbm_unnormalized_bound,
    free_energy,
    gibbs_chain,
    hidden_logits,
    hidden_probs,
    init_dbm,
    init_dbm_chains,
    init_rbm,
    init_rbm_chains,
    mean_field,
    posterior,
    rbm_filters,
    rbm_log_prob,
    sample,
    visible_bias_from_mean,
    visible_mean,
)
from genjax_lab.models.boltzmann.partition import (
    MAX_ENUMERATION_BITS,
    RBMAnnealing,
    ais_log_z,
    base_rate_bias,
    dbm_ais_log_z,
    dbm_exact_log_z,
    exact_log_z,
    log_partition,
    log_prob,
    log_prob_bound,
    log_prob_estimate,
)

__all__ = [
    "MAX_ENUMERATION_BITS",
    "METHODS",
    "VISIBLE_TYPES",
    "BoltzmannFamily",
    "DBMChains",
    "DBMParams",
    "DBMTrainState",
    "PretrainResult",
    "RBMAnnealing",
    "RBMParams",
    "RBMTrainState",
    "ais_log_z",
    "base_rate_bias",
    "compose_dbm",
    "dbm_ais_log_z",
    "dbm_as_rbm",
    "dbm_exact_log_z",
    "dbm_gibbs_chain",
    "dbm_lower_bound",
    "dbm_unnormalized_bound",
    "default_config",
    "exact_log_z",
    "family_for",
    "final_scores",
    "fit",
    "free_energy",
    "gibbs_chain",
    "hidden_logits",
    "hidden_probs",
    "init",
    "init_dbm",
    "init_dbm_chains",
    "init_rbm",
    "init_rbm_chains",
    "log_partition",
    "log_prob",
    "log_prob_bound",
    "log_prob_estimate",
    "make_dbm_step",
    "make_epoch",
    "make_optimizer",
    "make_rbm_step",
    "mean_field",
    "meta_from_data",
    "posterior",
    "pretrain_dbm",
    "rbm_filters",
    "rbm_log_prob",
    "rbm_optimizer",
    "sample",
    "sweeps_at",
    "visible_bias_from_mean",
    "visible_mean",
]
