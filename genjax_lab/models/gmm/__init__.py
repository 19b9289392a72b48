"""Gaussian mixture models (genjax_lab.api's verbs): the model maths in `model`, EM and the
k-means start in `em`, config, fit and the class-conditional classifier in `family`.

A variational Bayesian mixture that chooses its number of components (scikit-learn's
BayesianGaussianMixture, Dirichlet-process or Dirichlet weight prior): `gmm.bayesian`.

On the training loop: `loop_family(config)` (EM of every start a step, `EMState`),
`loop_config`, `best_start`. A mixture seen through a linear subspace (PCA codes of images):
`SubspaceGMM`, `observe`, `impute_subspace`.

Data layout: {"x": [N, D] float, "y": [N] int (class-conditional fits only), "mask": [N]
(optional row weights, 0 = padding)}. Parameters: a `GMM` (unlabelled) or a `LabelledGMM`
(config.class_conditional: one GMM per class on a leading class axis, and log_prior [C]).
"""

from genjax_lab.models.gmm import bayesian
from genjax_lab.models.gmm.em import (
    EMStats,
    add_statistics,
    e_step,
    em,
    em_split,
    em_step,
    init_kmeans,
    m_step,
)
from genjax_lab.models.gmm.family import (
    EMState,
    best_start,
    classifier,
    default_config,
    fit,
    init,
    loop_config,
    loop_family,
    meta_from_data,
)
from genjax_lab.models.gmm.model import (
    COVARIANCE_TYPES,
    GMM,
    Conditional,
    CovarianceType,
    LabelledGMM,
    SubspaceGMM,
    aic,
    bic,
    class_log_likelihoods,
    component_log_prob,
    condition,
    covariances,
    from_covariances,
    from_precisions,
    full_covariances,
    impute,
    impute_subspace,
    log_prob,
    num_parameters,
    observe,
    posterior,
    predict,
    predict_log_proba,
    predict_proba,
    sample,
    sample_conditional,
    sample_with_components,
    sample_with_labels,
    score,
    shift,
)

__all__ = [
    "COVARIANCE_TYPES",
    "GMM",
    "Conditional",
    "CovarianceType",
    "EMState",
    "EMStats",
    "LabelledGMM",
    "SubspaceGMM",
    "add_statistics",
    "bayesian",
    "aic",
    "best_start",
    "bic",
    "class_log_likelihoods",
    "classifier",
    "component_log_prob",
    "condition",
    "covariances",
    "default_config",
    "e_step",
    "em",
    "em_split",
    "em_step",
    "fit",
    "from_covariances",
    "from_precisions",
    "full_covariances",
    "impute",
    "impute_subspace",
    "init",
    "init_kmeans",
    "log_prob",
    "loop_config",
    "loop_family",
    "m_step",
    "meta_from_data",
    "num_parameters",
    "observe",
    "posterior",
    "predict",
    "predict_log_proba",
    "predict_proba",
    "sample",
    "sample_conditional",
    "sample_with_components",
    "sample_with_labels",
    "score",
    "shift",
]
