"""One case per family for tests/test_conformance.py: small data the case makes and a config."""

import dataclasses
from collections.abc import Callable
from typing import Any

import ml_collections


@dataclasses.dataclass(frozen=True)
class Case:
    """family: the name in genjax_lab.saving.FAMILIES.
    make_data: key -> (train, test): dicts of arrays in the family's data layout; `train` goes
      to fit, `test["x"]` (and `test["y"]`) to the scoring verbs.
    config: the family's config for a fit of a few seconds.
    likelihood: "exact" (log_prob), "bound" (log_prob_bound), "estimate" (log_prob_estimate) or
      "none" (a GAN: log_prob raises and names what to use instead).
    labelled: the model has a label y: sample(..., y=) and classifier() exist.
    posterior: the family has a latent posterior (every family but naive Bayes and GAN).
    sample_kwargs: what else `sample` needs (an HMM's sequence length).
    x is whatever the family scores: an array [B, ...] or a pytree whose leaves lead with B
    (an HMM's padded sequences with their lengths, LDA's bags of words).
    """

    family: str
    make_data: Callable[[Any], tuple[dict, dict]]
    config: ml_collections.ConfigDict
    likelihood: str
    labelled: bool
    posterior: bool = True
    min_train_accuracy: float = 0.5
    sample_kwargs: dict = dataclasses.field(default_factory=dict)
