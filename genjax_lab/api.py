"""The shared vocabulary: what every family answers to, and the one Bayes-rule classifier.

Every family module answers to the same verbs, PRNG key first and batch axis first, so a
reader who knows one family knows them all (and a scikit-learn or hmmlearn user finds the
verbs where they expect them):

  fit(key, data, config, init=None) -> (params, history)
      The whole fit, built from the family's step (EM, VB, collapsed Gibbs, CD/PCD, SGD).
  log_prob(params, x[, y]) -> [B]
      Exact log p(x) (or log p(x | y)) in nats, where the family has it: naive Bayes,
      mixtures, HMMs, an RBM given its log partition function.
  log_prob_bound(key, params, x[, y]) -> [B]
      A lower bound where log p(x) is intractable: the ELBO, the IWAE-k bound, mean field.
  log_prob_estimate(key, params, x[, y]) -> [B]
      A stochastic estimate: importance sampling, AIS. Unnormalised models also give
      `log_partition`. A GAN has no likelihood: its `log_prob` raises and names the Parzen
      estimate instead.
  sample(key, params, num, *, y=None) -> x [num, ...]
      New data: jointly, or given a label y [num] where the model has one.
  posterior(params, x) -> the latent posterior of each x (responsibilities, smoothed HMM
      states, topic proportions, hidden-unit probabilities, q(z | x)).

Classification goes through Bayes' rule with `BayesClassifier`: a class log prior and either
one class-conditional model per class (params stacked on a leading class axis) or one
conditional model p(x | y).
"""

from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

# (params, x [B, ...], key or None) -> log p(x | y = c) for every class, [B, C].
ClassLogLikelihoods = Callable[[Any, jax.Array, jax.Array | None], jax.Array]


@flax.struct.dataclass
class BayesClassifier:
    """P(y | x) = p(x | y) P(y) / p(x) from a generative model of x given y.

    log_prior: log P(y) [C].
    params: the class-conditional models' parameters (a leading class axis [C, ...] on
      every leaf) or one conditional model's.
    class_log_likelihoods: (params, x [B, ...], key) -> log p(x | y = c) [B, C].
    stochastic: True when those log-likelihoods are estimates that need a PRNG key (an
      importance-sampled VAE); every class then uses the same key, so the comparison between
      classes shares its random numbers.
    normalised: False when the log-likelihoods are known only up to one constant shared by
      every class (an RBM whose log Z is not computed): P(y | x) is still exact, but log p(x, y)
      and log p(x) are not available and asking for them is an error, not a shifted number.
    """

    log_prior: jax.Array
    params: Any
    class_log_likelihoods: ClassLogLikelihoods = flax.struct.field(pytree_node=False)
    stochastic: bool = flax.struct.field(pytree_node=False, default=False)
    normalised: bool = flax.struct.field(pytree_node=False, default=True)

    @property
    def num_classes(self) -> int:
        return self.log_prior.shape[-1]

    def _scores(self, x: jax.Array, key: jax.Array | None) -> jax.Array:
        """log p(x, y = c) [B, C], up to a constant shared by the classes if not normalised."""
        if self.stochastic and key is None:
            raise ValueError("this classifier's likelihoods are estimates: pass key=")
        return self.class_log_likelihoods(self.params, x, key) + self.log_prior

    def log_joint(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """log p(x, y = c) [B, C] for x [B, ...]."""
        if not self.normalised:
            raise ValueError(
                "this classifier's class likelihoods are unnormalised (the model's log "
                "partition function was not computed), so log p(x, y) and log p(x) are not "
                "available; P(y | x) is: use predict_log_proba, or build the classifier with "
                "the log partition function (e.g. an AIS estimate)"
            )
        return self._scores(x, key)

    def log_marginal(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """log p(x) = logsumexp_c log p(x, y = c) [B]."""
        return jax.nn.logsumexp(self.log_joint(x, key), axis=-1)

    def predict_log_proba(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """log P(y = c | x) [B, C]."""
        return jax.nn.log_softmax(self._scores(x, key), axis=-1)

    def predict_proba(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """P(y = c | x) [B, C]."""
        return jnp.exp(self.predict_log_proba(x, key))

    def predict(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """The most probable class [B] (int32)."""
        return jnp.argmax(self._scores(x, key), axis=-1).astype(jnp.int32)


def from_class_conditionals(
    log_prior: jax.Array, params: Any, log_prob: Callable[[Any, jax.Array], jax.Array]
) -> BayesClassifier:
    """One model per class: `params` stacked on a leading class axis [C, ...]; log_prob(params_c,
    x [B, ...]) -> [B] is the family's exact log p(x)."""

    def class_log_likelihoods(stacked, x, key):
        del key  # exact likelihoods
        return jax.vmap(lambda p: log_prob(p, x), out_axes=-1)(stacked)

    return BayesClassifier(jnp.asarray(log_prior), params, class_log_likelihoods)


def from_conditional(
    log_prior: jax.Array,
    params: Any,
    log_prob: Callable[..., jax.Array],
    *,
    stochastic: bool = False,
    normalised: bool = True,
) -> BayesClassifier:
    """One conditional model p(x | y): log_prob(params, x [B, ...], y [B]) -> [B], or with
    stochastic=True, log_prob(key, params, x, y) -> [B] (an estimate); normalised=False when
    log_prob is known only up to a constant shared by every y."""
    num_classes = jnp.shape(log_prior)[-1]

    def class_log_likelihoods(shared, x, key):
        def one_class(label):
            y = jnp.full((x.shape[0],), label, jnp.int32)
            return log_prob(key, shared, x, y) if stochastic else log_prob(shared, x, y)

        return jax.vmap(one_class, out_axes=-1)(jnp.arange(num_classes))

    return BayesClassifier(
        jnp.asarray(log_prior), params, class_log_likelihoods, stochastic, normalised
    )
