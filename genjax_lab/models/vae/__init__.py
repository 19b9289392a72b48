"""Variational autoencoders (Kingma & Welling 2014), IWAE (Burda et al. 2016) and the
conditional VAE, with one or several stochastic layers, speaking genjax_lab.api's verbs.

Modules: `model` (the Flax modules, `VAEParams`, `init`, `meta_from_data`, the decoder's
log-likelihood), `bounds` (log weights, the ELBO, `log_prob_bound` = IWAE-k,
`log_prob_estimate` by importance sampling, `sample`, `posterior`, `sample_posterior`,
`interpolate`, `classifier`), `fit`
(`train_step`, `fit`) and `family` (the training loop's adapter, `default_config`,
`test_nll`).

Parameters: a `VAEParams` {variables: the Flax variables dict, log_prior: log p(y) [C] (a
conditional VAE; None otherwise), model: the Flax module, static}. The module travels in
the pytree's static part, so every verb takes params alone (no model or config beside it),
and `init(key, config, meta)` rebuilds it from the config and the data-fixed sizes
(meta: image_shape [H, W, C], num_classes), which is how a saved model loads without its
data. The label prior lives in params because the classifier and `sample(y=None)` need it.

Data layout for `fit`: {"x": [N, H, W, C] uint8 pixels (config.data.binarize makes them
[0, 1]; or floats in [0, 1] with binarize='none'), "y": [N] int labels (conditional)}. The
scoring verbs take x [B, H, W, C] floats in [0, 1] and y [B] (conditional).
"""

from genjax_lab.models.vae.bounds import (
    Gaussian,
    classifier,
    elbo,
    interpolate,
    log_prob_bound,
    log_prob_estimate,
    log_weight_terms,
    log_weights,
    posterior,
    reconstruct,
    sample,
    sample_posterior,
)
from genjax_lab.models.vae.family import (
    VAEEnsemble,
    VAEFamily,
    default_config,
    ensemble_for,
    family_for,
    test_nll,
)
from genjax_lab.models.vae.fit import fit, kl_weight, loss, make_optimizer, train_step
from genjax_lab.models.vae.model import (
    LIKELIHOODS,
    VAE,
    Decoder,
    Encoder,
    IAFStep,
    VAEParams,
    decoder_log_prob,
    decoder_mean,
    init,
    init_variables,
    made_masks,
    make_model,
    meta_from_data,
)

__all__ = [
    "LIKELIHOODS",
    "VAE",
    "Decoder",
    "Encoder",
    "Gaussian",
    "IAFStep",
    "VAEEnsemble",
    "VAEFamily",
    "VAEParams",
    "classifier",
    "decoder_log_prob",
    "decoder_mean",
    "default_config",
    "elbo",
    "ensemble_for",
    "family_for",
    "fit",
    "init",
    "init_variables",
    "interpolate",
    "kl_weight",
    "log_prob_bound",
    "log_prob_estimate",
    "log_weight_terms",
    "log_weights",
    "loss",
    "made_masks",
    "make_model",
    "make_optimizer",
    "meta_from_data",
    "posterior",
    "reconstruct",
    "sample",
    "sample_posterior",
    "test_nll",
    "train_step",
]
