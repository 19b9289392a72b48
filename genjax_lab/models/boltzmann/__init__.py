"""Restricted Boltzmann machines (Bernoulli and unit-variance Gaussian visible units), a
two-hidden-layer deep Boltzmann machine (Salakhutdinov & Hinton, AISTATS 2009) and a
classification RBM (Larochelle & Bengio, ICML 2008: label units beside the visible units).

The shared verbs (genjax_lab.api), for Bernoulli visible units:
  init(key, config, meta), meta_from_data(data, config), fit(key, data, config, init=None):
      config is the family's whole `default_config()`, config.model.kind 'rbm', 'dbm' or
      'class_rbm'; data = {"x": [N, ...] binary visible vectors} (and "y": [N] labels for
      'class_rbm'). The steps: make_rbm_step (CD-k / PCD-k; labels=C for the
      classification RBM) and make_dbm_step.
  log_prob(params, x, y=None, *, log_z=None) -> [B]: exact for an RBM (and a classification
      RBM's log p(x | y) or log p(x)); the parameters carry no log Z, so it is enumerated
      (`log_partition`, small models) unless passed in.
  log_prob_estimate(key, params, x) -> [B]: an RBM's log p(v) with an AIS log Z.
  log_prob_bound(key, params, x, log_z=None) -> [B]: a DBM's mean-field bound (AIS log Z
      unless given).
  pseudo_log_likelihood(params, x) -> [B]: exact sum_i log p(x_i | x_-i) (every bit);
      pseudo_log_likelihood_estimate(key, params, x) -> [B]: scikit-learn's score_samples,
      one random bit per row times V.
  log_partition(params) -> []: exact log Z by enumeration.
  sample(key, params, num, *, y=None) -> [num, V]: block Gibbs from random bits; y [num]
      clamps a classification RBM's label units (x ~ p(x | y)).
  inpaint(key, params, x, observed, *, y=None) -> x's shape: the unobserved units drawn
      from p(x_unobserved | x_observed) by Gibbs sweeps with the observed ones clamped.
  posterior(params, x): an RBM's p(h | v) [B, H]; a DBM's mean-field (mu1 [B, H1],
      mu2 [B, H2]); a classification RBM's p(h | v), the label summed out.
  classifier(params) -> BayesClassifier: a classification RBM's exact p(y | x) from the free
      energy of each label.

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
    ClassRBMParams,
    DBMChains,
    DBMParams,
    RBMParams,
    class_rbm_as_rbm,
    class_rbm_from_rbm_layout,
    compose_dbm,
    dbm_as_rbm,
    dbm_gibbs_chain,
    dbm_lower_bound,
    dbm_unnormalized_bound,
    free_energy,
    free_energy_given_label,
    gibbs_chain,
    hidden_logits,
    hidden_probs,
    init_class_rbm,
    init_dbm,
    init_dbm_chains,
    init_rbm,
    init_rbm_chains,
    inpaint,
    label_free_energies,
    label_log_probs,
    mean_field,
    posterior,
    rbm_filters,
    rbm_log_prob,
    sample,
    visible_bias_from_mean,
    visible_mean,
)
from genjax_lab.models.boltzmann.partition import (
    CLASSIFIER_ENUMERATION_BITS,
    MAX_ENUMERATION_BITS,
    DBMAnnealing,
    RBMAnnealing,
    ais_log_z,
    ais_log_z_by_length,
    base_rate_bias,
    classifier,
    dbm_ais_log_z,
    dbm_exact_log_z,
    exact_log_z,
    label_log_partition,
    log_partition,
    log_prob,
    log_prob_bound,
    log_prob_estimate,
    pseudo_log_likelihood,
    pseudo_log_likelihood_estimate,
    pseudo_log_likelihood_terms,
    raise_log_prob,
)

__all__ = [
    "CLASSIFIER_ENUMERATION_BITS",
    "MAX_ENUMERATION_BITS",
    "METHODS",
    "VISIBLE_TYPES",
    "BoltzmannFamily",
    "ClassRBMParams",
    "DBMAnnealing",
    "DBMChains",
    "DBMParams",
    "DBMTrainState",
    "PretrainResult",
    "RBMAnnealing",
    "RBMParams",
    "RBMTrainState",
    "ais_log_z",
    "ais_log_z_by_length",
    "base_rate_bias",
    "class_rbm_as_rbm",
    "class_rbm_from_rbm_layout",
    "classifier",
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
    "free_energy_given_label",
    "gibbs_chain",
    "hidden_logits",
    "hidden_probs",
    "init",
    "init_class_rbm",
    "init_dbm",
    "init_dbm_chains",
    "init_rbm",
    "init_rbm_chains",
    "inpaint",
    "label_free_energies",
    "label_log_partition",
    "label_log_probs",
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
    "pseudo_log_likelihood",
    "pseudo_log_likelihood_estimate",
    "pseudo_log_likelihood_terms",
    "raise_log_prob",
    "rbm_filters",
    "rbm_log_prob",
    "rbm_optimizer",
    "sample",
    "sweeps_at",
    "visible_bias_from_mean",
    "visible_mean",
]
