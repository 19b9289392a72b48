"""The VAE on the training loop (core/loop.py): `VAEFamily` binds a config and the dataset's
sizes to the loop's init, train, eval and report functions; `test_nll` is the final
importance-sampled estimate; `default_config` holds every key of the family.

The loop's TrainState.params are the Flax variables; `VAEFamily.params(state)` wraps them
with the module and the label prior as the `VAEParams` the verbs take.
"""

import dataclasses
import pathlib
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genjax_lab.core import checkpoint as ckpt_lib
from genjax_lab.core import checks
from genjax_lab.core import data as data_lib
from genjax_lab.core import mesh as mesh_lib
from genjax_lab.core import plots as plots_lib
from genjax_lab.core.loop import Family, base_config
from genjax_lab.core.splits import evaluate
from genjax_lab.core.state import TrainState
from genjax_lab.data.images import image_data_config, label_log_prior, prepare_images
from genjax_lab.models.vae.bounds import (
    classifier,
    elbo,
    log_prob_bound,
    log_prob_estimate,
    reconstruct,
    sample,
)
from genjax_lab.models.vae.fit import check_training_config, make_optimizer, train_step
from genjax_lab.models.vae.model import VAE, VAEParams, init_variables, make_model


@dataclasses.dataclass(frozen=True)
class VAEFamily:
    """Binds a config to the loop's Family functions."""

    config: ml_collections.ConfigDict
    image_shape: tuple[int, int, int]
    num_classes: int
    log_prior: np.ndarray  # [num_classes] label frequencies of the training split
    preview: dict | None = None  # a few test examples whose reconstructions are drawn

    @property
    def model(self) -> VAE:
        return make_model(self.config.model, self.image_shape, self.num_classes)

    @property
    def conditional(self) -> bool:
        return bool(self.config.model.conditional)

    @property
    def meta(self) -> dict:
        """The data-fixed sizes `init(key, config, meta)` rebuilds the model from."""
        return {
            "image_shape": list(self.image_shape),
            "num_classes": self.num_classes if self.conditional else 0,
        }

    def params(self, variables) -> VAEParams:
        """The verbs' parameters for the loop's Flax variables."""
        log_prior = jnp.asarray(self.log_prior) if self.conditional else None
        return VAEParams(variables, log_prior, self.model)

    def _labels(self, batch):
        return batch["label"] if self.conditional else None

    def init(self, key, batch):
        del batch  # the shapes come from the config and the dataset's image shape
        return TrainState.create(init_variables(key, self.model), make_optimizer(self.config.optim))

    def train_step(self, state: TrainState, batch, key):
        return train_step(key, state, batch, model=self.model, config=self.config)

    def eval_step(self, state: TrainState, batch, key):
        binarize_key, elbo_key, iwae_key, class_key = jax.random.split(key, 4)
        x = prepare_images(batch["image"], self.config.data.binarize, binarize_key)
        y, mask, params = self._labels(batch), batch["mask"], self.params(state.params)
        k = self.config.eval.iwae_samples
        sums = {
            "neg_elbo": -jnp.sum(elbo(elbo_key, params, x, y) * mask),
            f"nll_iwae{k}": -jnp.sum(log_prob_bound(iwae_key, params, x, y, num_samples=k) * mask),
        }
        if self.conditional and self.config.eval.classify_samples:
            n = self.config.eval.classify_samples
            predicted = classifier(params, num_samples=n).predict(x, class_key)
            sums["bayes_accuracy"] = jnp.sum((predicted == batch["label"]) * mask)
        return sums

    def report(self, state: TrainState, step: int, workdir: pathlib.Path, key) -> dict:
        """PNG grids of samples, samples by label (conditional) and reconstructions."""
        if jax.process_index() != 0:
            return {}
        params = self.params(mesh_lib.host_copy(state.params))
        out = pathlib.Path(workdir) / "images"
        sample_key, label_key, recon_key = jax.random.split(key, 3)
        labels = None
        if self.conditional:
            labels = jax.random.categorical(label_key, params.log_prior, shape=(100,))
            by_label = jnp.repeat(jnp.arange(self.num_classes), 10)
            grid = sample(sample_key, params, len(by_label), y=by_label)
            plots_lib.save_grid(
                out / f"samples_by_label_{step:07d}.png", np.asarray(grid), rows=self.num_classes
            )
        drawn = sample(sample_key, params, 100, y=labels)
        plots_lib.save_grid(out / f"samples_{step:07d}.png", np.asarray(drawn), rows=10)
        if self.preview is not None:
            x = prepare_images(
                jnp.asarray(self.preview["image"]), self.config.data.binarize, recon_key
            )
            y = jnp.asarray(self.preview["label"]) if self.conditional else None
            # row 1 the data, row 2 the model's reconstructions
            pairs = np.concatenate([np.asarray(x), np.asarray(reconstruct(params, x, y))], axis=0)
            plots_lib.save_grid(out / f"reconstructions_{step:07d}.png", pairs, rows=2)
        return {}

    def as_family(self) -> Family:
        return Family(
            init=self.init, train_step=self.train_step, eval_step=self.eval_step, report=self.report
        )


@dataclasses.dataclass(frozen=True)
class VAEEnsemble:
    """Several VAE runs trained as one program: their states stacked [M, ...] and their steps
    vmapped, on the same batches with the same keys. The members share every config key but
    `model.objective` (chosen inside the step: `fit.loss`'s `iwae`), so each member follows
    the run its own config would train alone, to float tolerance (vmapped products sum in
    another order). Metrics are named `<metric>_<member name>`."""

    family: VAEFamily  # the first member's: model, data and optimiser are the members'
    names: tuple[str, ...]
    iwae: tuple[bool, ...]

    def init(self, key, batch):
        one = self.family.init(key, batch)
        return jax.tree.map(lambda x: jnp.broadcast_to(x, (len(self.names), *x.shape)), one)

    def member(self, state: TrainState, index: int) -> TrainState:
        return jax.tree.map(lambda x: x[index], state)

    def _named(self, metrics) -> dict:
        return {
            f"{k}_{name}": v[i] for k, v in metrics.items() for i, name in enumerate(self.names)
        }

    def train_step(self, state: TrainState, batch, key):
        def step(member_state, iwae):
            return train_step(
                key,
                member_state,
                batch,
                model=self.family.model,
                config=self.family.config,
                iwae=iwae,
            )

        state, metrics = jax.vmap(step)(state, jnp.asarray(self.iwae))
        return state, self._named(metrics)

    def eval_step(self, state: TrainState, batch, key):
        return self._named(jax.vmap(lambda s: self.family.eval_step(s, batch, key))(state))

    def as_family(self) -> Family:
        return Family(init=self.init, train_step=self.train_step, eval_step=self.eval_step)


def ensemble_for(
    configs: Mapping[str, ml_collections.ConfigDict], dataset: data_lib.Dataset
) -> VAEEnsemble:
    """The runs `configs` ({member name: config}) as one VAEEnsemble; refuses members whose
    configs differ elsewhere than in `model.objective`, naming the keys."""
    names = tuple(configs)
    if not names:
        raise ValueError("configs: no member runs")
    first = ckpt_lib.to_json(configs[names[0]])
    for name in names[1:]:
        differences = [
            d
            for d in ckpt_lib.config_differences(first, ckpt_lib.to_json(configs[name]))
            if not d.startswith("model.objective:")
        ]
        if differences:
            raise ValueError(
                f"configs[{name!r}] differs from configs[{names[0]!r}] in more than "
                f"model.objective: {'; '.join(differences)}"
            )
    return VAEEnsemble(
        family=family_for(configs[names[0]], dataset),
        names=names,
        iwae=tuple(configs[name].model.objective == "iwae" for name in names),
    )


def family_for(config: ml_collections.ConfigDict, dataset: data_lib.Dataset) -> VAEFamily:
    """The VAE family for `config`, shaped by the dataset's images and labels."""
    check_training_config(config)
    for name in ("iwae_samples", "nll_chunk"):
        checks.check_count(f"config.eval.{name}", config.eval[name])
    # nll_samples 0: no final estimate
    checks.check_count("config.eval.nll_samples", config.eval.nll_samples, minimum=0)
    checks.check_count("config.eval.classify_samples", config.eval.classify_samples, minimum=0)
    train = dataset["train"]
    num_classes = checks.check_count("config.data.num_classes", config.data.num_classes)
    preview = None
    if "test" in dataset.splits:
        preview = {k: v[:16] for k, v in dataset["test"].items()}
    return VAEFamily(
        config=config,
        image_shape=tuple(train["image"].shape[1:]),
        num_classes=num_classes,
        log_prior=label_log_prior(train["label"], num_classes),
        preview=preview,
    )


def test_nll(
    family: VAEFamily,
    state: TrainState,
    dataset: data_lib.Dataset,
    config: ml_collections.ConfigDict,
) -> dict[str, float]:
    """Test -log p(x) in nats by importance sampling with config.eval.nll_samples draws.

    On the first config.eval.nll_examples test images (0: all of them). Returns test_nll
    with the estimator's sample and image counts beside it.
    """
    k, chunk = config.eval.nll_samples, min(config.eval.nll_samples, config.eval.nll_chunk)
    test = dataset["test"]
    examples = data_lib.num_examples(test)
    if config.eval.nll_examples:
        examples = min(examples, int(config.eval.nll_examples))
        test = {name: value[:examples] for name, value in test.items()}

    def nll_sums(state, batch, key):
        binarize_key, sample_key = jax.random.split(key)
        x = prepare_images(batch["image"], config.data.binarize, binarize_key)
        log_px = log_prob_estimate(
            sample_key,
            family.params(state.params),
            x,
            family._labels(batch),
            num_samples=k,
            chunk=chunk,
        )
        return {"test_nll": -jnp.sum(log_px * batch["mask"])}

    mesh = mesh_lib.data_mesh()
    key = jax.random.fold_in(jax.random.key(config.seed), 10_000)
    metrics = evaluate(jax.jit(nll_sums), state, mesh, test, config.eval.nll_batch_size, key)
    return {**metrics, "test_nll_samples": float(k), "test_nll_examples": float(examples)}


def default_config() -> ml_collections.ConfigDict:
    """The VAE family's keys with the defaults of the digits experiment; configs adjust them.
    `fit`, `init` and the training loop all take this whole config."""
    config = base_config()  # the loop's keys: only the schedule's changes are written here
    config.update(
        batch_size=64,
        num_epochs=60.0,
        eval_every=0,
        eval_batch_size=360,
        checkpoint={"every": 200},
        data=image_data_config("digits", "dynamic", num_classes=10),
    )
    config.model = ml_collections.ConfigDict(
        {
            "encoder_hidden": (200, 200),
            "decoder_hidden": (200, 200),
            "latent_dim": 16,  # h1, the stochastic layer next to x
            "upper_latent_dims": (),  # h2, ..., hL: () is one stochastic layer
            "upper_hidden": (100, 100),  # the MLPs between stochastic layers, both ways
            "activation": "tanh",
            "likelihood": "bernoulli",
            "conv": False,
            "conditional": False,
            "objective": "elbo",  # or "iwae"
            "num_samples": 1,
            # the ELBO's KL weighed by beta * min(1, step / warmup_steps); 1, 0: the ELBO
            "beta": 1.0,
            "warmup_steps": 0,
            # an inverse autoregressive flow on q(h1 | x, y): 0 steps keeps it Gaussian
            "iaf_steps": 0,
            "iaf_hidden": (64, 64),  # each step's MADE
            "iaf_context_dim": 16,  # the encoder's context h fed to every step; 0: none
        }
    )
    config.optim = ml_collections.ConfigDict(
        {"learning_rate": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-4, "boundaries": (), "scales": ()}
    )
    config.eval = ml_collections.ConfigDict(
        {
            "iwae_samples": 50,
            "classify_samples": 0,
            "nll_samples": 1000,
            "nll_chunk": 500,
            "nll_batch_size": 360,
            "nll_examples": 0,
        }
    )
    return config


def shrink_to_tiny(config: ml_collections.ConfigDict) -> None:
    """Cuts a VAE config, in place, to its `tiny` variant, a smoke run of seconds: 4 steps
    at batch 8 (a multiple of 8 CPU test devices), one 16-unit layer each way and 4 latents,
    test estimates of 2-4 importance samples on every test image. The model's kind (decoder,
    convolutions, labels) and the data stay the config's."""
    config.update(
        num_epochs=-1,
        num_steps=4,
        batch_size=8,
        eval_batch_size=8,
        log_every=2,
        eval_every=0,
        checkpoint={"every": 4},
    )
    config.model.update(encoder_hidden=(16,), decoder_hidden=(16,), latent_dim=4)
    config.eval.update(iwae_samples=2, nll_samples=4, nll_chunk=4, nll_batch_size=8, nll_examples=0)
