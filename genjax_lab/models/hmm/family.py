"""HMMs on the training loop (core/loop.py): MAP Baum-Welch as a full-batch family, one loop
step per EM iteration, so a run checkpoints, resumes bitwise and stops on the library's `tol`.

`EMFamily` fits a stack of M HMMs (leaves [M, ...]) in one jitted step, in one of two
layouts of the training split, whose rows the loop splits over the `data` axis:
  shared     every HMM fits every sequence (random restarts): {'obs' [N, T(, D)],
             'lengths' [N]}.
  per class  HMM c fits class c's sequences (one HMM per class, Bayes' rule on top): the
             layout of `class_buckets`, row i holding the i-th sequence of every class; the
             step maps the EM step over the class axis, one class after another.
The loop adds `mask` [N] (0 on the rows that pad the split to a multiple of the device
count); EM's sufficient statistics are mask-weighted sums over the rows, which XLA reduces
across devices inside the step.

Stopping: the library's rule (`fit`, hmmlearn's monitor): an HMM has converged after the
first iteration whose MAP objective gained less than `tol` over the iteration before; the
step's `converged` metric is set once every HMM of the stack has, and the loop ends the run
there. A negative `tol` (-inf) runs `config.num_steps` iterations.
"""

import dataclasses
import itertools
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from genjax_lab.core.loop import Family
from genjax_lab.models.hmm.fit import HMMPrior, em_step_buckets, objective
from genjax_lab.models.hmm.model import HMMParams, LabelledHMM, class_log_likelihoods

Batch = Mapping[str, Array]


def class_buckets(
    obs: np.ndarray,
    lengths: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    num_buckets: int = 1,
) -> dict[str, np.ndarray]:
    """The per-class training split: obs [N, T, D], lengths, labels [N] -> for each bucket j,
    obs_j [n, C, T_j, D], lengths_j [n, C] and weight_j [n, C] (0 where class c has no j-th
    sequence in that bucket, with length 1 and zero frames there).

    Each class's sequences are sorted by length and cut into `num_buckets` equal-count
    buckets, bucket j padded to its own longest T_j: EM's cost follows the real frames, not
    the longest sequence. Every bucket has the same n rows (the largest bucket's), so the
    buckets are columns of one split whose rows the loop shards. Empty buckets are left out."""
    members = [np.flatnonzero(labels == c) for c in range(num_classes)]
    members = [idx[np.argsort(lengths[idx], kind="stable")] for idx in members]
    bounds = np.linspace(0, max(len(idx) for idx in members), num_buckets + 1).round().astype(int)
    rows = int(np.diff(bounds).max())
    split = {}
    filled = [(lo, hi) for lo, hi in itertools.pairwise(bounds) if hi > lo]
    for j, (lo, hi) in enumerate(filled):
        chosen = [idx[lo:hi] for idx in members]
        t = max([int(lengths[i].max()) for i in chosen if len(i)], default=1)
        bucket_obs = np.zeros((rows, num_classes, t, *obs.shape[2:]), obs.dtype)
        bucket_lengths = np.ones((rows, num_classes), np.int32)
        weight = np.zeros((rows, num_classes), np.float32)
        for c, idx in enumerate(chosen):
            bucket_obs[: len(idx), c] = obs[idx, :t]
            bucket_lengths[: len(idx), c] = lengths[idx]
            weight[: len(idx), c] = 1.0
        split.update(
            {f"obs_{j}": bucket_obs, f"lengths_{j}": bucket_lengths, f"weight_{j}": weight}
        )
    return split


def num_buckets(batch: Batch) -> int:
    return sum(1 for name in batch if name.startswith("obs_"))


def bucket_batches(batch: Batch) -> tuple[dict, ...]:
    """A `class_buckets` batch as `em_step_buckets`' batches, each [n, C, ...] with the loop's
    padding rows weighted 0: the class axis is axis 1."""
    return tuple(
        {
            "obs": batch[f"obs_{j}"],
            "lengths": batch[f"lengths_{j}"],
            "mask": batch["mask"][:, None] * batch[f"weight_{j}"],
        }
        for j in range(num_buckets(batch))
    )


def whole_batch(batch: Batch) -> dict:
    """The buckets of a `class_buckets` batch padded to the longest T and joined on the row
    axis (for starts, which run once): {'obs' [n', C, T, D], 'lengths', 'mask' [n', C]}."""
    parts = bucket_batches(batch)
    t = max(part["obs"].shape[2] for part in parts)

    def pad(x):
        return jnp.pad(x, [(0, 0), (0, 0), (0, t - x.shape[2])] + [(0, 0)] * (x.ndim - 3))

    return {
        "obs": jnp.concatenate([pad(part["obs"]) for part in parts]),
        "lengths": jnp.concatenate([part["lengths"] for part in parts]),
        "mask": jnp.concatenate([part["mask"] for part in parts]),
    }


@dataclasses.dataclass(frozen=True)
class EMFamily:
    """MAP Baum-Welch for a stack of HMMs on the loop (module docstring).

    starts(batch) -> HMMParams [M, ...]: the starting HMMs from the whole training batch (the
      loop's key is not used: a start is the experiment's, drawn from its own seed, so a run
      on the loop starts where the library's fit would).
    prior: the MAP prior; tol: the stopping rule's threshold.
    per_class: the split has `class_buckets`' layout; else the shared one.
    log_prior: log P(y = c) [C] of a per-class fit, for `eval_step` on a test split
      {'obs' [N, T(, D)], 'lengths' [N], 'y' [N]}: accuracy of Bayes' rule and log p(x).
    """

    starts: Callable[[Batch], HMMParams]
    prior: HMMPrior
    tol: float
    per_class: bool = False
    log_prior: np.ndarray | None = None

    def init(self, key: Array, batch: Batch) -> dict:
        del key  # see `starts`
        params = self.starts(batch)
        size = jax.tree.leaves(params)[0].shape[0]
        dtype = params.transition_logits.dtype
        return {"params": params, "objective": jnp.full((size,), -jnp.inf, dtype)}

    def train_step(self, state: dict, batch: Batch, key: Array) -> tuple[dict, dict]:
        """One EM iteration of every HMM; metrics: the objective (the sum over classes, the
        labelled model's; the best restart's) and log-likelihood going into the step, and
        `converged`."""
        del key  # EM is deterministic
        if self.per_class:
            # Class axis first, for one class after another (`model._over_classes`' reason).
            batches = jax.tree.map(lambda x: jnp.moveaxis(x, 1, 0), bucket_batches(batch))
            params, stats = jax.lax.map(
                lambda per_class: em_step_buckets(*per_class, self.prior),
                (state["params"], batches),
            )
            total = jnp.sum
        else:
            shared = ({k: batch[k] for k in ("obs", "lengths", "mask")},)
            params, stats = jax.lax.map(
                lambda start: em_step_buckets(start, shared, self.prior), state["params"]
            )
            total = jnp.max
        gained = stats.objective - state["objective"]
        metrics = {
            "objective": total(stats.objective),
            "log_likelihood": total(stats.log_likelihood),
            "converged": jnp.all(gained < self.tol).astype(jnp.float32),
        }
        return {"params": params, "objective": stats.objective}, metrics

    def eval_step(self, state: dict, batch: Batch, key: Array) -> dict:
        """Mask-weighted sums over a test batch: correct Bayes-rule predictions (`accuracy`)
        and log p(x) = logsumexp_c log p(x | c) + log P(c) (`log_likelihood`)."""
        del key  # exact
        joint = class_log_likelihoods(state["params"], batch["obs"], batch["lengths"])
        joint = joint + jnp.asarray(self.log_prior, joint.dtype)
        correct = jnp.argmax(joint, axis=-1) == batch["y"]
        return {
            "accuracy": jnp.sum(batch["mask"] * correct),
            "log_likelihood": jnp.sum(batch["mask"] * jax.nn.logsumexp(joint, axis=-1)),
        }

    def labelled(self, state: dict) -> LabelledHMM:
        """The per-class fit as the class-conditional model the verbs take."""
        return LabelledHMM(jnp.asarray(self.log_prior), state["params"])

    def final_objectives(self, state: dict, split: Mapping[str, np.ndarray]) -> Array:
        """The MAP objective of each HMM of a shared fit at its final parameters [M], on the
        split {'obs', 'lengths'} (the state's objectives are those going into the last step)."""
        mask = jnp.ones(np.shape(split["lengths"]), state["params"].transition_logits.dtype)
        return jax.vmap(objective, in_axes=(0, None, None, None, None))(
            state["params"],
            jnp.asarray(split["obs"]),
            jnp.asarray(split["lengths"]),
            mask,
            self.prior,
        )

    def as_family(self) -> Family:
        return Family(
            init=self.init,
            train_step=self.train_step,
            eval_step=self.eval_step if self.per_class else None,
            full_batch=True,
            converged="converged",
            # One call of up to 10 EM iterations: the E-step's temporaries ([B, T, K, M, D]
            # for mixture emissions) are allocated once per call, not once per iteration.
            steps_per_call=10,
        )
