"""LDA on the training loop (core/loop.py): batch VB, online VB and collapsed Gibbs as
`loop.Family` adapters of the library's own steps, so an experiment's fit checkpoints,
resumes bitwise and runs on the `data` mesh.

  batch   full batch: a step is one `vb_batch_step` pass over every document (sorted
          into `fit_vb`'s length groups), for each of the `num_restarts` starts; a start
          whose relative ELBO gain falls below `tol` stops there (`fit_vb`'s rule), and the
          run ends once every start has (the `converged` metric). The parameters are the
          start with the highest ELBO.
  online  minibatches of `batch_size` documents from the loop's batcher; a step is
          `vb_online_step` (Hoffman et al.'s natural-gradient step); `num_iters` epochs.
  gibbs   full batch: a step is one sweep (`gibbs.make_sweep`, AD-LDA over `data`); the
          per-token assignments and document counts are split over `data` with the
          documents (`state_shardings`), the topic counts replicated.

The starts and sweeps draw from the fit's key as `lda.fit(key, ...)` does (the loop's own
keys are unused), so a loop fit gives the library fit's numbers: batch VB within float
tolerance, Gibbs bitwise on the same mesh. Online VB differs only in its minibatch order,
which is the loop's. A minibatch is padded to the corpus's longest document (the loop's
batches have one shape), which online VB pays for in its E-step on skewed corpora.
"""

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genjax_lab.core import checks
from genjax_lab.core import data as data_lib
from genjax_lab.core import mesh as mesh_lib
from genjax_lab.core.loop import Family, base_config
from genjax_lab.data.text import BagOfWords
from genjax_lab.models.lda import gibbs, vb
from genjax_lab.models.lda.maths import LDAConfig, VBState, check_documents
from genjax_lab.models.lda.model import METHODS, lda_config


class VBStarts(NamedTuple):
    """Batch VB's loop state: `num_restarts` starts advanced together."""

    params: VBState  # a leading start axis [R, ...] on every leaf
    bound: jax.Array  # [R] the ELBO of each start's last pass (-inf before the first)
    passes: jax.Array  # [R] int32 passes run (a converged start runs no more)
    done: jax.Array  # [R] bool: stopped by tol


class GibbsChain(NamedTuple):
    """Collapsed Gibbs's loop state: the chain and the sweeps run (its keys' index)."""

    chain: gibbs.GibbsState
    sweeps: jax.Array  # [] int32


def loop_config(
    model: ml_collections.ConfigDict,
    *,
    seed: int,
    checkpoint_every: int,
    log_every: int = 10,
) -> ml_collections.ConfigDict:
    """The loop's config for a fit by `model` (`lda.default_config()` keys): its iteration
    cap `model.num_iters` becomes the loop's (`num_steps`, or `num_epochs` online), which a
    restored checkpoint does not have to match, so a finished fit can be continued."""
    checks.check_choice("config.method", model.method, METHODS)
    config = base_config()
    config.seed = seed
    config.log_every = log_every
    config.eval_every = 0
    config.checkpoint.every = checks.check_count("checkpoint_every", checkpoint_every)
    num_iters = checks.check_count("config.num_iters", model.num_iters)
    if model.method == "online":
        config.batch_size = checks.check_count("config.batch_size", model.batch_size)
        config.num_epochs = float(num_iters)
    else:
        config.num_steps = num_iters
    config.model = ml_collections.ConfigDict(
        {k: v for k, v in model.to_dict().items() if k != "num_iters"}
    )
    return config


@dataclasses.dataclass(frozen=True)
class LDAFamily:
    """Binds the model config (`lda.default_config()` keys), the vocabulary size and the fit's
    key to the loop's functions for `config.method`."""

    config: ml_collections.ConfigDict
    vocab_size: int
    key: jax.Array

    def __post_init__(self):
        checks.check_choice("config.method", self.config.method, METHODS)
        restarts = checks.check_count("config.num_restarts", self.config.num_restarts)
        if restarts > 1 and self.config.method != "batch":
            raise ValueError(
                f"config.num_restarts must be 1 unless config.method is 'batch', got {restarts}"
            )
        if self.config.get("perp_tol") is not None:
            raise ValueError(
                "config.perp_tol: scikit-learn's perplexity rule runs in lda.fit; on the loop, "
                "batch VB stops by config.tol"
            )
        if self.config.warm_start:
            raise ValueError(
                "config.warm_start: the loop's batch VB restarts each pass's document fixed "
                "point (the default); use lda.fit for warm starts"
            )

    @property
    def model(self) -> LDAConfig:
        return lda_config(self.config, self.vocab_size)

    def _keys(self) -> tuple[jax.Array, jax.Array]:
        """(start key, sweep key): `fit_vb`'s (init, order) split, `fit_gibbs`'s (init, sweep)."""
        return tuple(jax.random.split(self.key))

    # ------------------------------------------------------------------ batch VB

    def _init_batch(self, key, batch) -> VBStarts:
        del key, batch
        start_key, model = self._keys()[0], self.model
        restarts = int(self.config.num_restarts)
        keys = (
            [start_key]
            if restarts == 1
            else [jax.random.fold_in(start_key, r) for r in range(restarts)]
        )
        params = jax.tree.map(lambda *x: jnp.stack(x), *[vb.init_vb(k, model) for k in keys])
        return VBStarts(
            params,
            jnp.full((restarts,), -jnp.inf, jnp.float32),
            jnp.zeros((restarts,), jnp.int32),
            jnp.zeros((restarts,), jnp.bool_),
        )

    def _batch_step(self, state: VBStarts, batch, key, *, groups: tuple):
        del key  # VB is deterministic
        model, tol = self.model, self.config.tol
        mask = batch["mask"]
        counts = batch["counts"] * mask[:, None]
        # The last group also holds the loop's padding rows (masked).
        ends = [stop for _, stop, _ in groups[:-1]] + [None]
        group = tuple(
            vb.DocBatch(batch["ids"][a:b, :w], counts[a:b, :w], mask[a:b])
            for (a, _, w), b in zip(groups, ends)
        )
        # The starts one after another (lax.map): the pass compiles once for all of them,
        # where vmap batched the E-step's scatter and fixed point (15x slower a pass on CPU,
        # lee_background at K = 5) and unrolling compiled the pass once per start.
        new, bound = jax.lax.map(
            lambda p: vb.vb_batch_step(p, None, group, model)[::2], state.params
        )
        stopped = state.done
        params = jax.tree.map(
            lambda old, fresh: jnp.where(
                stopped.reshape((-1,) + (1,) * (old.ndim - 1)), old, fresh
            ),
            state.params,
            new,
        )
        bound = jnp.where(stopped, state.bound, bound)
        done = stopped
        if tol is not None:
            previous = state.bound
            small_gain = jnp.abs(bound - previous) < float(tol) * jnp.abs(previous)
            done = stopped | ((state.passes >= 1) & small_gain)
        metrics = {"elbo": bound.max(), "converged": done.all().astype(jnp.float32)}
        return VBStarts(params, bound, state.passes + (~stopped), done), metrics

    # ------------------------------------------------------------------ online VB

    def _init_online(self, key, batch) -> VBState:
        del key, batch
        return vb.init_vb(self._keys()[0], self.model)

    def _online_step(self, num_docs: int):
        model = self.model

        def step(state: VBState, batch, key):
            del key
            mask = batch["mask"]
            return vb.vb_online_step(
                state, batch["ids"], batch["counts"] * mask[:, None], mask, num_docs, model
            )

        return step

    # ------------------------------------------------------------------ collapsed Gibbs

    @staticmethod
    def _tokens(batch) -> tuple[jax.Array, jax.Array]:
        # Padding rows read document 0 under mask 0: their tokens must not count.
        return batch["words"], batch["tokens"] * batch["mask"][:, None]

    def _init_gibbs(self, key, batch) -> GibbsChain:
        del key
        model = self.model
        words, tokens = self._tokens(batch)
        chain = gibbs.init_gibbs(
            self._keys()[0], gibbs.Tokens(words, tokens), model.num_topics, model.vocab_size
        )
        return GibbsChain(chain, jnp.int32(0))

    def _gibbs_step(self, state: GibbsChain, batch, key):
        del key  # sweep s draws from fold_in(sweep key, s), as fit_gibbs
        model = self.model
        sweep = gibbs.make_sweep(model.alpha0, model.eta0, mesh_lib.data_mesh())
        words, tokens = self._tokens(batch)
        chain = sweep(state.chain, words, tokens, jax.random.fold_in(self._keys()[1], state.sweeps))
        metrics = {"log_p_w_given_z": gibbs.log_prob_given_assignments(chain, model.eta0)}
        return GibbsChain(chain, state.sweeps + 1), metrics

    @staticmethod
    def _gibbs_shardings(mesh, abstract: GibbsChain) -> GibbsChain:
        rows = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(mesh_lib.DATA_AXIS))
        shared = mesh_lib.replicated(mesh)
        return GibbsChain(gibbs.GibbsState(rows, rows, shared, shared), shared)

    # ------------------------------------------------------------------ the verbs' params

    def params(self, state: Any) -> VBState:
        """The verbs' parameters of a loop state: the best start (batch VB), the state
        (online VB), or q(beta) given the chain's assignments (Gibbs)."""
        if self.config.method == "gibbs":
            return gibbs.gibbs_params(state.chain, self.model, state.sweeps)
        if self.config.method == "online":
            return state
        best = int(np.argmax(np.asarray(mesh_lib.host_copy(state.bound))))
        return jax.tree.map(lambda x: x[best], state.params)

    def prepare(self, bags: BagOfWords) -> tuple[Family, data_lib.Dataset]:
        """The loop's Family for this corpus and the training split it reads: the bags sorted
        into length groups (batch VB), the bags (online VB, whose updates the number of
        documents scales, unless config.total_docs gives the corpus size), or token slots
        (Gibbs)."""
        ids, counts = check_documents(bags, self.vocab_size, "bags")
        if ids.shape[0] == 0:
            raise ValueError("bags hold no documents")
        method = self.config.method
        if method == "gibbs":
            tokens = gibbs.tokens_from_bags(BagOfWords(ids, counts), self.vocab_size)
            family = Family(
                self._init_gibbs,
                self._gibbs_step,
                full_batch=True,
                state_shardings=self._gibbs_shardings,
            )
            return family, data_lib.Dataset(
                {"train": {"words": tokens.words, "tokens": tokens.mask}}
            )
        if method == "online":
            total_docs = self.config.get("total_docs")
            total_docs = ids.shape[0] if total_docs is None else int(total_docs)
            family = Family(self._init_online, self._online_step(total_docs))
            return family, data_lib.Dataset({"train": {"ids": ids, "counts": counts}})
        ids, counts, groups = _length_groups(ids, counts)
        family = Family(
            self._init_batch,
            functools.partial(self._batch_step, groups=groups),
            full_batch=True,
            converged=None if self.config.tol is None else "converged",
        )
        return family, data_lib.Dataset({"train": {"ids": ids, "counts": counts}})


def _length_groups(ids: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple]:
    """The documents shortest first, their words moved to the front, and the groups
    (start, stop, longest) a batch pass pads each to its own longest document, as `fit_vb`
    does (`vb.batch_length_groups`): on lee_background a pass takes
    half the time of one group padded to the longest document."""
    longest = vb.longest_document(counts)
    rows = vb.batch_length_groups(counts, jax.device_count())
    order = np.concatenate(rows)
    front = np.argsort(counts[order] <= 0, axis=1, kind="stable")
    ids = np.take_along_axis(ids[order], front, 1)[:, :longest]
    counts = np.take_along_axis(counts[order], front, 1)[:, :longest]
    stops = np.cumsum([len(r) for r in rows])
    groups = tuple(
        (
            int(stop - len(r)),
            int(stop),
            max(int((counts[stop - len(r) : stop] > 0).sum(1).max()), 1),
        )
        for r, stop in zip(rows, stops)
    )
    return ids, counts, groups
