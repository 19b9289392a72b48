"""The Boltzmann family on the one loop (genjax_lab.core.loop): the training state, the loop's
functions, the final AIS evaluation of a finished run, and the default config.
"""

import dataclasses
import math
import pathlib
import time
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from genjax_lab.core import data as data_lib
from genjax_lab.core import mesh as mesh_lib
from genjax_lab.core import metrics as metrics_lib
from genjax_lab.core import plots as plots_lib
from genjax_lab.core.loop import Family, base_config
from genjax_lab.core.splits import evaluate
from genjax_lab.data.images import image_data_config, prepare_images
from genjax_lab.inference import ais
from genjax_lab.models.boltzmann.fit import (
    check_model_config,
    make_dbm_step,
    make_optimizer,
    make_rbm_step,
    stepped_sweeps,
    sweeps_at,
)
from genjax_lab.models.boltzmann.model import (
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
    visible_bias_from_mean,
    visible_mean,
)
from genjax_lab.models.boltzmann.partition import (
    ais_log_z,
    dbm_ais_log_z,
    exact_log_z,
    raise_log_prob,
)

# ----------------------------------------------------------------------------- the harness family
#
# The loop of genjax_lab.core.loop trains one state pytree step by step. Here it is the
# parameters, the optimizer state, the persistent chains (checkpointed with the rest, so a
# resumed run continues the same Markov chains) and the step counter that the schedules
# read: momentum 0.5 -> 0.9, the learning rate, k of CD-k, and the DBM's phases. The DBM's
# greedy pretraining is steps of the same loop: phase 1 trains RBM 1 (v -> h1), phase 2
# RBM 2 (h1 -> h2) on p(h1 | v) of RBM 1, phase 3 the composed DBM jointly (`lax.switch`
# on the step), so pretraining is resumable like the rest.


@flax.struct.dataclass
class RBMTrainState:
    step: jax.Array  # int32 [], the loop's step
    params: RBMParams
    opt_state: Any
    # [N, V] persistent chains (PCD); CD: [B, V] the latest k-step samples of the batch
    chains: jax.Array


@flax.struct.dataclass
class DBMTrainState:
    step: jax.Array  # int32 []
    params: DBMParams  # trained in phase 3; set from compose_dbm(rbm1, rbm2) at its first step
    opt_state: Any
    chains: DBMChains  # [N, V], [N, H2]
    rbm1: RBMParams  # phase 1: v -> h1, doubled bottom-up input
    rbm1_opt: Any
    rbm2: RBMParams  # phase 2: h1 -> h2, doubled top-down input
    rbm2_opt: Any


def _unit_range(images: np.ndarray) -> np.ndarray:
    """Each image scaled to [0, 1] by its own min and max (filters have arbitrary scale)."""
    lo = images.min(axis=tuple(range(1, images.ndim)), keepdims=True)
    hi = images.max(axis=tuple(range(1, images.ndim)), keepdims=True)
    return (images - lo) / np.maximum(hi - lo, 1e-12)


@dataclasses.dataclass(frozen=True)
class BoltzmannFamily:
    """Binds a config to the loop's Family functions, for an RBM (`model.kind='rbm'`) or a DBM."""

    config: ml_collections.ConfigDict
    image_shape: tuple[int, ...]  # [H, W, C]
    data_mean: np.ndarray  # [V] training pixel means: initial visible biases and AIS base rate
    steps_per_epoch: int
    num_steps: int

    # -- shapes and schedules

    @property
    def is_dbm(self) -> bool:
        return self.config.model.kind == "dbm"

    @property
    def num_visible(self) -> int:
        return int(np.prod(self.image_shape))

    @property
    def num_chains(self) -> int:
        return int(self.config.model.num_chains or self.config.batch_size)

    @property
    def pretrain_steps(self) -> int:
        """Steps of greedy pretraining's first layer (DBM)."""
        return round(self.config.pretrain.epochs * self.steps_per_epoch) if self.is_dbm else 0

    @property
    def pretrain2_steps(self) -> int:
        """Steps of greedy pretraining's second layer (DBM): pretrain.layer2_epochs, or
        pretrain.epochs where that is 0."""
        epochs = self.config.pretrain.layer2_epochs or self.config.pretrain.epochs
        return round(epochs * self.steps_per_epoch) if self.is_dbm else 0

    @property
    def joint_start(self) -> int:
        """The first step of the DBM's joint training (0 for an RBM)."""
        return self.pretrain_steps + self.pretrain2_steps

    @property
    def k2_every_steps(self) -> int:
        """Layer 2's CD-k rises by one every this many steps (0: pretrain.k throughout)."""
        return self._epochs_to_steps(self.config.pretrain.layer2_k_every_epochs)

    def _epochs_to_steps(self, epochs: float) -> int:
        return round(epochs * self.steps_per_epoch)

    def _sweeps(self, step: jax.Array, phase_start: int = 0) -> jax.Array:
        m = self.config.model
        return sweeps_at(
            step - phase_start, int(m.k), int(m.k_start), self._epochs_to_steps(m.k_ramp_epochs)
        )

    def _optimizer(self) -> optax.GradientTransformation:
        return make_optimizer(
            self.config.optim, self.steps_per_epoch, self.num_steps - self.joint_start
        )

    def _pretrain_optimizer(self, layer: int = 1) -> optax.GradientTransformation:
        """Layer `layer`'s pretraining SGD; layer 2 divides its rate by its k when k rises."""
        fraction = self.config.pretrain.final_lr_fraction
        return make_optimizer(
            self.config.optim,
            self.steps_per_epoch,
            self.pretrain_steps if layer == 1 else self.pretrain2_steps,
            learning_rate=self.config.pretrain.learning_rate,
            final_lr_fraction=None if fraction < 0 else fraction,
            k_step_every=self.k2_every_steps if layer == 2 else 0,
        )

    def _visible(self, batch, key) -> jax.Array:
        """Binary visible vectors of a batch: [B, V] (dynamic binarization draws them with
        `key`)."""
        x = prepare_images(batch["image"], self.config.data.binarize, key)
        return x.reshape(x.shape[0], -1)

    def current_dbm(self, state: DBMTrainState) -> DBMParams:
        """The DBM of the state: the composed pretrained RBMs until joint training has begun."""
        pretrained = compose_dbm(state.rbm1, state.rbm2)
        return jax.tree.map(
            lambda a, b: jnp.where(state.step <= self.joint_start, a, b),
            pretrained,
            state.params,
        )

    # -- the loop's functions

    def init(self, key, batch) -> RBMTrainState | DBMTrainState:
        m = self.config.model
        params_key, chains_key, rbm2_key = jax.random.split(key, 3)
        step = jnp.zeros((), jnp.int32)
        if not self.is_dbm:
            params = init_rbm(
                params_key,
                self.num_visible,
                m.num_hidden,
                data_mean=self.data_mean,
                weight_scale=m.weight_scale,
            )
            num_chains = self.num_chains if m.method == "pcd" else self.config.batch_size
            chains = init_rbm_chains(chains_key, num_chains, self.num_visible)
            return RBMTrainState(
                step=step, params=params, opt_state=self._optimizer().init(params), chains=chains
            )
        params = init_dbm(
            params_key,
            self.num_visible,
            m.num_hidden,
            m.num_hidden2,
            data_mean=self.data_mean,
            weight_scale=m.weight_scale,
        )
        rbm1 = init_rbm(
            params_key,
            self.num_visible,
            m.num_hidden,
            data_mean=self.data_mean,
            weight_scale=m.weight_scale,
        )
        rbm2 = init_rbm(rbm2_key, m.num_hidden, m.num_hidden2, weight_scale=m.weight_scale)
        return DBMTrainState(
            step=step,
            params=params,
            opt_state=self._optimizer().init(params),
            chains=init_dbm_chains(chains_key, self.num_chains, params),
            rbm1=rbm1,
            rbm1_opt=self._pretrain_optimizer(1).init(rbm1),
            rbm2=rbm2,
            rbm2_opt=self._pretrain_optimizer(2).init(rbm2),
        )

    def train_step(self, state, batch, key):
        binarize_key, chain_key = jax.random.split(key)
        x = self._visible(batch, binarize_key)
        data = {"x": x, "mask": batch["mask"]}
        if self.is_dbm:
            state, metrics = self._dbm_step(state, data, chain_key)
        else:
            state, metrics = self._rbm_step(state, data, chain_key)
        return state.replace(step=state.step + 1), metrics

    def _rbm_step(self, state: RBMTrainState, data, key):
        m = self.config.model
        step = make_rbm_step(
            self._optimizer(),
            method=m.method,
            k=int(m.k),
            mesh=mesh_lib.data_mesh(),
            keep_negatives=True,
        )
        sweeps = self._sweeps(state.step)
        params, opt_state, chains, metrics = step(
            state.params, state.opt_state, state.chains, data, key, sweeps
        )
        metrics = {**metrics, "k": sweeps.astype(jnp.float32)}
        return state.replace(params=params, opt_state=opt_state, chains=chains), metrics

    def _dbm_step(self, state: DBMTrainState, data, key):
        m, mesh, p1 = self.config.model, mesh_lib.data_mesh(), self.pretrain_steps
        k_pretrain = int(self.config.pretrain.k)
        zero = jnp.zeros((), jnp.float32)

        def rbm_metrics(metrics):
            return {**metrics, "unnormalized_bound": zero}

        def first(
            state,
        ):  # RBM 1 on v; h1 hears v twice, standing in for the missing top-down input
            step = make_rbm_step(
                self._pretrain_optimizer(1), method="cd", k=k_pretrain, mesh=mesh, up_scale=2.0
            )
            rbm1, opt, _, metrics = step(state.rbm1, state.rbm1_opt, None, data, key)
            return state.replace(rbm1=rbm1, rbm1_opt=opt), rbm_metrics(metrics)

        def second(state):  # RBM 2 on p(h1 | v) of RBM 1; h1 hears h2 twice
            h1 = jax.nn.sigmoid(hidden_logits(state.rbm1, data["x"], 2.0))
            step = make_rbm_step(
                self._pretrain_optimizer(2), method="cd", k=k_pretrain, mesh=mesh, down_scale=2.0
            )
            every = self.k2_every_steps
            sweeps = stepped_sweeps(state.step - p1, every) if every else None
            rbm2, opt, _, metrics = step(
                state.rbm2, state.rbm2_opt, None, {"x": h1, "mask": data["mask"]}, key, sweeps
            )
            return state.replace(rbm2=rbm2, rbm2_opt=opt), rbm_metrics(metrics)

        def joint(state):
            step = make_dbm_step(
                self._optimizer(), k=int(m.k), mean_field_iters=int(m.mean_field_iters), mesh=mesh
            )
            params, opt, chains, metrics = step(
                self.current_dbm(state),
                state.opt_state,
                state.chains,
                data,
                key,
                self._sweeps(state.step, self.joint_start),
            )
            return (
                state.replace(params=params, opt_state=opt, chains=chains),
                {"free_energy_data": zero, "free_energy_chains": zero, **metrics},
            )

        phase = (state.step >= p1).astype(jnp.int32) + (state.step >= self.joint_start).astype(
            jnp.int32
        )
        state, metrics = jax.lax.switch(phase, (first, second, joint), state)
        return state, {**metrics, "phase": phase.astype(jnp.float32) + 1.0}

    def eval_step(self, state, batch, key):
        """Mask-weighted sums: free energy (RBM) or minus the unnormalised mean-field bound
        (DBM), and the squared error of a mean-field reconstruction v -> h -> E[v | h]."""
        x, mask = self._visible(batch, key), batch["mask"]
        if self.is_dbm:
            params = self.current_dbm(state)
            mu1, mu2 = mean_field(params, x, int(self.config.model.mean_field_iters))
            recon = jax.nn.sigmoid(params.b_vis + mu1 @ params.W1.T)
            score = {
                "neg_unnormalized_bound": -jnp.sum(
                    dbm_unnormalized_bound(params, x, mu1, mu2) * mask
                )
            }
        else:
            recon = visible_mean(state.params, hidden_probs(state.params, x))
            score = {"free_energy": jnp.sum(free_energy(state.params, x) * mask)}
        return {**score, "recon_error": jnp.sum(jnp.sum((x - recon) ** 2, -1) * mask)}

    def report(self, state, step: int, workdir: pathlib.Path, key) -> dict:
        """PNG grids: Gibbs samples from random starts, filters (first-layer weights), and
        the chains of the state (persistent chains; CD: the latest negatives)."""
        if jax.process_index() != 0:
            return {}
        out, shape = pathlib.Path(workdir) / "images", (-1, *self.image_shape)
        e = self.config.eval
        state = mesh_lib.host_copy(state)
        means = np.asarray(
            _sample_means(
                state,
                self.is_dbm,
                self.current_dbm if self.is_dbm else None,
                key,
                int(e.num_samples),
                int(e.sample_sweeps),
            )
        )
        plots_lib.save_grid(out / f"samples_{step:07d}.png", means.reshape(shape))
        W = state.params.W if not self.is_dbm else self.current_dbm(state).W1
        filters = _unit_range(np.asarray(W).T[: e.num_filters].reshape(shape))
        plots_lib.save_grid(out / f"filters_{step:07d}.png", filters)
        chains = state.chains.v if self.is_dbm else state.chains
        plots_lib.save_grid(
            out / f"chains_{step:07d}.png", np.asarray(chains)[: e.num_samples].reshape(shape)
        )
        return {}

    def as_family(self) -> Family:
        return Family(
            init=self.init, train_step=self.train_step, eval_step=self.eval_step, report=self.report
        )


def _sample_means(state, is_dbm: bool, current_dbm, key, num: int, sweeps: int) -> jax.Array:
    """E[v | h] after `sweeps` Gibbs sweeps of `num` chains started from uniform bits: [num, V]."""
    start_key, chain_key = jax.random.split(key)
    if is_dbm:
        params = current_dbm(state)
        _, means = jax.jit(dbm_gibbs_chain, static_argnums=3)(
            params, init_dbm_chains(start_key, num, params), chain_key, sweeps
        )
        return means
    v0 = init_rbm_chains(start_key, num, state.params.W.shape[0])
    _, means = jax.jit(gibbs_chain, static_argnums=3)(state.params, v0, chain_key, sweeps)
    return means


def family_for(config: ml_collections.ConfigDict, dataset: data_lib.Dataset) -> BoltzmannFamily:
    """The RBM or DBM family for `config`, shaped by the training images; validates the config."""
    check_model_config(config.model)
    if config.data.binarize == "none":
        raise ValueError(
            "config.data.binarize must be 'static' or 'dynamic': the visible units are binary"
        )
    train = dataset["train"]["image"]
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    num_steps = (
        int(config.num_steps)
        if config.num_steps > 0
        else max(1, math.ceil(config.num_epochs * steps_per_epoch))
    )
    family = BoltzmannFamily(
        config=config,
        image_shape=tuple(train.shape[1:]),
        data_mean=data_lib.column_mean(train).reshape(-1) / 255.0,
        steps_per_epoch=steps_per_epoch,
        num_steps=num_steps,
    )
    if family.num_chains % jax.device_count():
        raise ValueError(
            f"config.model.num_chains={family.num_chains} must be a multiple of the device count "
            f"{jax.device_count()}"
        )
    if family.joint_start > num_steps:
        raise ValueError(
            f"config.pretrain.epochs={config.pretrain.epochs} and "
            f"config.pretrain.layer2_epochs={config.pretrain.layer2_epochs} give "
            f"{family.pretrain_steps} + {family.pretrain2_steps} pretraining steps, more than "
            f"the run's {num_steps} steps"
        )
    return family


def final_scores(
    family: BoltzmannFamily, state, dataset: data_lib.Dataset, config
) -> dict[str, float]:
    """AIS log Z, then the mean log p(v) in nats of the test split and of the first
    config.eval.train_examples training examples (DBM: the mean-field lower bound).

    AIS: config.eval.ais_runs runs over config.eval.ais_temperatures steps of
    `ais_betas(config.eval)`, from the base-rate model of the training pixel means. Where the
    smaller layer has at most config.eval.exact_max_bits units, log Z is also enumerated
    (`log_z_exact`, and the log-likelihoods from it). With config.eval.raise_examples set,
    also `raise_scores` on that many test images.
    """
    e, mesh = config.eval, mesh_lib.data_mesh()
    key = jax.random.fold_in(jax.random.key(config.seed), 20_000)
    base = visible_bias_from_mean(family.data_mean)
    betas = ais_betas(e)
    runs_mesh = mesh if e.ais_runs % jax.device_count() == 0 else None
    start = time.perf_counter()
    if family.is_dbm:
        params = family.current_dbm(state)
        result = dbm_ais_log_z(
            params, betas, key, int(e.ais_runs), base_vis_bias=base, mesh=runs_mesh
        )
        as_rbm = dbm_as_rbm(params)
    else:
        params = state.params
        result = ais_log_z(params, betas, key, int(e.ais_runs), base_vis_bias=base, mesh=runs_mesh)
        as_rbm = params
    ais_seconds = time.perf_counter() - start

    def unnormalized_sums(state, batch, key):  # log p(v) + log Z, summed with the mask
        x = family._visible(batch, key)
        if family.is_dbm:
            score = dbm_lower_bound(
                family.current_dbm(state), x, 0.0, int(config.model.mean_field_iters)
            )
        else:
            score = -free_energy(state.params, x)
        return {"score": jnp.sum(score * batch["mask"])}

    score_fn = jax.jit(unnormalized_sums)
    train = {k: v[: int(e.train_examples)] for k, v in dataset["train"].items()}
    scores = {
        split: evaluate(
            score_fn, state, mesh, arrays, int(e.ll_batch_size), jax.random.fold_in(key, i)
        )["score"]
        for i, (split, arrays) in enumerate((("test", dataset["test"]), ("train", train)))
    }
    metrics = {
        "log_z_ais": result.log_z,
        "log_z_ais_lower": result.log_z_lower,
        "log_z_ais_upper": result.log_z_upper,
        "log_z_ais_std": result.log_z_std,
        "ais_seconds": ais_seconds,
        "test_log_likelihood": scores["test"] - result.log_z,
        "train_log_likelihood": scores["train"] - result.log_z,
    }
    if min(as_rbm.W.shape) <= e.exact_max_bits:
        exact = float(exact_log_z(as_rbm))
        metrics.update(log_z_exact=exact, test_log_likelihood_exact=scores["test"] - exact)
    if e.raise_examples is not None:
        # RAISE takes most of an hour on the paper schedules: the AIS numbers are final now.
        metrics_lib.say(
            f"AIS: log Z {result.log_z:.3f} (sd {result.log_z_std:.3f}), test log p(v) "
            f"{metrics['test_log_likelihood']:.3f}, train {metrics['train_log_likelihood']:.3f}; "
            f"RAISE on {e.raise_examples} test images next"
        )
        metrics.update(
            raise_scores(
                family, params, dataset["test"], result.log_z, jax.random.fold_in(key, 2), e
            )
        )
    return metrics


def ais_betas(e: ml_collections.ConfigDict, num_temperatures: int = 0) -> np.ndarray:
    """Inverse temperatures [K + 1] of e.ais_schedule: "piecewise" (Salakhutdinov & Murray's
    three pieces) or "uniform" (Salakhutdinov & Hinton's DBM AIS); K = num_temperatures, or
    e.ais_temperatures when 0."""
    count = int(num_temperatures or e.ais_temperatures)
    if e.ais_schedule == "piecewise":
        return ais.piecewise_schedule(count)
    if e.ais_schedule == "uniform":
        return np.linspace(0.0, 1.0, count + 1)
    raise ValueError(
        f"config.eval.ais_schedule must be 'piecewise' or 'uniform', got {e.ais_schedule!r}"
    )


def raise_scores(
    family: BoltzmannFamily,
    params: RBMParams | DBMParams,
    test: dict,
    log_z: float,
    key: jax.Array,
    e: ml_collections.ConfigDict,
) -> dict[str, float]:
    """RAISE (`raise_log_prob`: a stochastic lower bound on log p_ann(v), no log Z) on the
    first e.raise_examples test images, e.raise_chains chains each, over e.raise_temperatures
    (None: e.ais_temperatures) of the AIS schedule; beside the AIS log p of the same images, so
    the two readings compare image for image. Standard errors are over images."""
    images = test["image"][: int(e.raise_examples)]
    if len(images) < 2:
        raise ValueError(
            f"config.eval.raise_examples={e.raise_examples}: RAISE needs at least 2 test images "
            f"for its standard error, the test split has {len(test['image'])}"
        )
    binarize_key, raise_key = jax.random.split(key)
    start = time.perf_counter()
    x = family._visible({"image": jnp.asarray(images)}, binarize_key)
    result = raise_log_prob(
        raise_key,
        params,
        x,
        ais_betas(e, e.raise_temperatures or 0),
        int(e.raise_chains),
        base_vis_bias=visible_bias_from_mean(family.data_mean),
        num_iters=int(family.config.model.mean_field_iters),
    )
    if family.is_dbm:
        ais_scores = dbm_lower_bound(params, x, log_z, int(family.config.model.mean_field_iters))
    else:
        ais_scores = -free_energy(params, x) - log_z

    def mean_and_se(values) -> tuple[float, float]:
        values = np.asarray(values, np.float64)
        return float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values)))

    raise_mean, raise_se = mean_and_se(result.log_prob)
    ais_mean, ais_se = mean_and_se(ais_scores)
    return {
        "test_log_likelihood_raise": raise_mean,
        "test_log_likelihood_raise_se": raise_se,
        "test_log_likelihood_ais_same_images": ais_mean,
        "test_log_likelihood_ais_same_images_se": ais_se,
        "raise_examples": float(len(images)),
        "raise_seconds": time.perf_counter() - start,
    }


def default_config() -> ml_collections.ConfigDict:
    """The Boltzmann family's keys, with an RBM PCD-1 on the 8x8 digits; configs adjust them."""
    config = base_config()
    config.batch_size = 100
    config.num_epochs = 10.0
    config.log_every = 100
    config.eval_every = 0
    config.eval_batch_size = 1000
    config.checkpoint.every = 600
    config.data = image_data_config("digits", "static")
    config.model = ml_collections.ConfigDict(
        {
            "kind": "rbm",  # or "dbm"
            "num_hidden": 500,  # DBM: h1
            "num_hidden2": 1000,  # DBM only
            "method": "pcd",  # "cd" or "pcd" (RBM); the DBM is always persistent
            "k": 1,  # Gibbs sweeps per step
            "k_start": 1,  # k rises linearly from k_start to k over k_ramp_epochs (0: k throughout)
            "k_ramp_epochs": 0.0,
            "num_chains": 0,  # persistent chains; 0: batch_size
            "mean_field_iters": 10,  # DBM positive phase and bound
            "weight_scale": 0.01,
            # class_rbm: lambda of the hybrid (generative CD + lambda x discriminative) step
            "discriminative_weight": 0.0,
        }
    )
    config.optim = ml_collections.ConfigDict(
        {
            "learning_rate": 0.05,
            "final_lr_fraction": 1.0,
            "momentum": 0.5,
            "final_momentum": 0.9,
            "momentum_epochs": 5.0,
            "weight_decay": 2e-4,
        }
    )
    config.pretrain = ml_collections.ConfigDict(  # DBM only
        {
            "epochs": 0.0,  # layer 1, and layer 2 unless layer2_epochs is set
            "layer2_epochs": 0.0,  # 0: epochs
            "learning_rate": 0.05,
            "final_lr_fraction": -1.0,  # negative: optim.final_lr_fraction
            "k": 1,
            # > 0: layer 2's k = ceil(epoch / this) with the rate / k (rbm_l2.m); 0: k throughout
            "layer2_k_every_epochs": 0.0,
        }
    )
    config.eval = ml_collections.ConfigDict(
        {
            "ais_runs": 100,
            "ais_temperatures": 14_500,
            "ais_schedule": "piecewise",  # the RBM paper's three pieces, or "uniform" (DBM paper)
            # RAISE on the first raise_examples test images (None: off), raise_chains chains
            # each, over raise_temperatures (None: the AIS count) of the AIS schedule; None,
            # not 0, as config validation refuses a count of 0
            "raise_examples": ml_collections.config_dict.placeholder(int),
            "raise_chains": 1,
            "raise_temperatures": ml_collections.config_dict.placeholder(int),
            "exact_max_bits": 20,
            "train_examples": 10_000,
            "ll_batch_size": 1000,
            "num_samples": 100,
            "sample_sweeps": 1000,
            "num_filters": 100,
        }
    )
    return config
