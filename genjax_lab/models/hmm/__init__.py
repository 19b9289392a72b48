"""Hidden Markov models (genjax_lab.api's verbs): the model maths, scoring, decoding and
sampling in `model`; config, starts, EM and `fit` in `fit`.

Data layout: {"x": Sequences(obs, lengths) or obs [B, T] int / [B, T, D] float, "y": [B] int
(class-conditional fits only), "mask": [B] (optional sequence weights)}. Parameters: an
`HMMParams` (unlabelled) or a `LabelledHMM` (config.class_conditional: one HMM per class on a
leading class axis, and log_prior [C]).
"""
from genjax_lab.models.hmm.fit import (
    EMISSIONS,
    MAXIMUM_LIKELIHOOD,
    EMStats,
    HMMPrior,
    default_config,
    em_step,
    em_step_buckets,
    fit,
    fit_em,
    fit_gradient,
    init,
    init_categorical_hmm,
    init_gaussian_hmm,
    meta_from_data,
    parameter_log_prior,
)
from genjax_lab.models.hmm.model import (
    CategoricalEmission,
    DiagGaussianEmission,
    Emission,
    FullGaussianEmission,
    GaussianMixtureEmission,
    HMMParams,
    LabelledHMM,
    Sequences,
    as_sequences,
    categorical_emission,
    check_params,
    class_log_likelihoods,
    classifier,
    covariances,
    diag_gaussian_emission,
    emission_log_prob,
    float_dtype,
    full_gaussian_emission,
    gaussian_mixture_emission,
    initial_probs,
    left_to_right_transitions,
    log_emission,
    log_prob,
    log_prob_unchecked,
    make_hmm,
    make_labelled,
    most_likely_states,
    num_states,
    posterior,
    sample,
    sample_posterior,
    sample_with_states,
    scale_tril,
    smooth,
    stack_hmms,
    transition_probs,
    validate_sequences,
)

__all__ = [
    "EMISSIONS", "MAXIMUM_LIKELIHOOD", "CategoricalEmission", "DiagGaussianEmission", "EMStats",
    "Emission", "FullGaussianEmission", "GaussianMixtureEmission", "HMMParams", "HMMPrior",
    "LabelledHMM", "Sequences", "as_sequences", "categorical_emission", "check_params",
    "class_log_likelihoods", "classifier", "covariances", "default_config",
    "diag_gaussian_emission", "em_step", "em_step_buckets", "emission_log_prob", "fit",
    "fit_em", "fit_gradient", "float_dtype", "full_gaussian_emission",
    "gaussian_mixture_emission", "init", "init_categorical_hmm", "init_gaussian_hmm",
    "initial_probs", "left_to_right_transitions", "log_emission", "log_prob",
    "log_prob_unchecked", "make_hmm", "make_labelled", "meta_from_data", "most_likely_states",
    "num_states", "parameter_log_prior", "posterior", "sample", "sample_posterior",
    "sample_with_states", "scale_tril", "smooth", "stack_hmms", "transition_probs",
    "validate_sequences",
]
