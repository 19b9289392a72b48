"""Training a GAN: the state, the optimizer, the train step, the loop adapter and the config.

One `train_step` = `n_critic` discriminator updates, then one generator update. The
critic updates reuse the step's real batch with fresh noise each (the harness hands one
batch per step). The generator update uses the noise of the last critic update, so G's
forward pass is computed once and its VJP reused (as the PyTorch DCGAN example reuses
its `fake`). An exponential moving average of G's weights (decay min(ema_decay,
(1 + t) / (10 + t)) at update t) is kept in the state and used for samples and metrics.

With batch norm or spectral normalisation the variables also hold `batch_stats` (running
averages, power-iteration vectors): every training pass updates them and the optimizers
see only `params`. G's running averages come from the pass its update uses and D's from
its real, then fake pass of each critic update; the EMA averages them with the weights.
"""

import dataclasses
import pathlib
from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from genjax_lab.core import checks
from genjax_lab.core import data as data_lib
from genjax_lab.core import mesh as mesh_lib
from genjax_lab.core import metrics as metrics_lib
from genjax_lab.core import plots as plots_lib
from genjax_lab.core.loop import Family, base_config
from genjax_lab.data.images import image_data_config
from genjax_lab.models.gan.model import (
    LOSSES,
    NOISES,
    Discriminator,
    GANParams,
    GANSpec,
    Generator,
    discriminator_loss,
    draw_noise,
    generator_loss,
    gradient_penalty,
    make_models,
    masked_mean,
    pixels,
)

_FIXED_NOISE_STREAM = 20_000  # a key of its own: the grid uses the same z at every evaluation


@flax.struct.dataclass
class GANState:
    """Everything training changes, as one pytree the harness checkpoints whole."""

    g_params: Any
    d_params: Any
    g_opt_state: Any
    d_opt_state: Any
    ema_params: Any  # moving average of g_params: what samples and metrics use
    updates: jax.Array  # int32 count of generator updates, for the EMA warm-up


OPTIMIZERS = ("adam", "rmsprop")


def make_optimizer(
    learning_rate: float, optim_config: ml_collections.ConfigDict
) -> optax.GradientTransformation:
    """Adam with the config's betas, or RMSProp (config.optim.optimizer) as the weight-
    clipping WGAN trains, with PyTorch's defaults that its code used: decay 0.99, eps 1e-8
    added to the root."""
    checks.check_positive("learning_rate", learning_rate)
    name = optim_config.get("optimizer", "adam")  # .get: configs saved before the key
    checks.check_choice("config.optim.optimizer", name, OPTIMIZERS)
    if name == "rmsprop":
        return optax.rmsprop(learning_rate, decay=0.99, eps=1e-8, eps_in_sqrt=False)
    for beta in ("b1", "b2"):
        checks.check_number(
            f"config.optim.{beta}", optim_config[beta], low=0.0, high=1.0, high_open=True
        )
    return optax.adam(learning_rate, b1=optim_config.b1, b2=optim_config.b2)


def trainable(variables: Any) -> dict:
    """The part of a module's variables the optimizer updates: the weights, not the batch
    statistics or power-iteration vectors in `batch_stats` (a module without them: all)."""
    return {"params": variables["params"]}


def apply_train(module, variables: Any, *args, **kwargs) -> tuple[jax.Array, Any]:
    """module.apply in training mode: (output, variables with `batch_stats` updated); a
    module without that collection returns its variables as they are."""
    if "batch_stats" not in variables:
        return module.apply(variables, *args, train=True, **kwargs), variables
    out, updates = module.apply(variables, *args, train=True, mutable=["batch_stats"], **kwargs)
    return out, {**variables, **updates}


def clip_weights(params: Any, clip: float) -> Any:
    """Every weight clipped to [-clip, clip] (Arjovsky et al. 2017, Algorithm 1); 0: none."""
    if clip == 0:
        return params
    return jax.tree.map(lambda w: jnp.clip(w, -clip, clip), params)


def ema_decay(max_decay: float, updates: jax.Array) -> jax.Array:
    """min(max_decay, (1 + t) / (10 + t)): early averages forget the random start."""
    t = updates.astype(jnp.float32)
    return jnp.minimum(max_decay, (1.0 + t) / (10.0 + t))


def check_config(config: ml_collections.ConfigDict) -> None:
    """Refuses out-of-range model and optimizer keys, naming the key."""
    if config.model.loss not in LOSSES:
        raise ValueError(f"config.model.loss must be one of {LOSSES}, got {config.model.loss!r}")
    if config.model.n_critic < 1:
        raise ValueError(f"config.model.n_critic must be >= 1, got {config.model.n_critic}")
    checks.check_choice("config.model.noise", config.model.noise, NOISES)
    checks.check_count("config.model.noise_dim", config.model.noise_dim)
    checks.check_number("config.model.gp_weight", config.model.gp_weight, low=0.0)
    checks.check_number("config.model.ema_decay", config.model.ema_decay, low=0.0, high=1.0)
    # .get: the keys a config saved before them lacks
    clip = checks.check_number(
        "config.model.weight_clip", config.model.get("weight_clip", 0.0), low=0.0
    )
    if config.model.loss == "wgan" and clip == 0:
        raise ValueError(
            "config.model.loss='wgan' keeps its critic Lipschitz by clipping: set "
            "config.model.weight_clip > 0 (the paper's 0.01), or use loss='wgan-gp'"
        )
    if config.model.loss == "wgan-gp" and config.model.get("batch_norm", False):
        raise ValueError(
            "config.model.batch_norm with loss='wgan-gp': the gradient penalty is per "
            "example, which batch norm in the critic breaks (Gulrajani et al. 2017, 4)"
        )
    checks.check_choice("config.optim.optimizer", config.optim.get("optimizer", "adam"), OPTIMIZERS)
    for rate in ("g_learning_rate", "d_learning_rate"):
        checks.check_positive(f"config.optim.{rate}", config.optim[rate])


# ----------------------------------------------------------------------------- the family


@dataclasses.dataclass(frozen=True)
class GANFamily:
    """Binds a config and the data's sizes to the train step and the loop's Family functions."""

    config: ml_collections.ConfigDict
    image_shape: tuple[int, int, int]
    num_classes: int
    pixel_means: tuple[float, ...] | None = None  # training-set mean of each pixel, flattened
    # state -> sample metrics (Parzen, Frechet, ...), logged at every evaluation when set.
    score_samples: Callable[[GANState], dict[str, float]] | None = dataclasses.field(
        default=None, compare=False
    )

    @property
    def models(self) -> tuple[Generator, Discriminator]:
        return make_models(self.config.model, self.image_shape)

    @property
    def conditional(self) -> bool:
        return bool(self.config.model.conditional)

    @property
    def spec(self) -> GANSpec:
        generator, discriminator = self.models
        model = self.config.model
        return GANSpec(
            generator=generator,
            discriminator=discriminator,
            noise=model.noise,
            noise_dim=int(model.noise_dim),
            num_classes=int(self.num_classes),
            conditional=self.conditional,
        )

    def _onehot(self, y):
        return jax.nn.one_hot(y, self.num_classes) if self.conditional else None

    def noise(self, key, num: int) -> jax.Array:
        """z [num, noise_dim]: standard normal, or uniform with unit variance."""
        return draw_noise(self.config.model.noise, self.config.model.noise_dim, key, num)

    def generate(self, g_params, key, num: int, y=None) -> jax.Array:
        """num samples G(z, y), z ~ noise: [num, H, W, C] in (0, 1)."""
        return self.models[0].apply(g_params, self.noise(key, num), self._onehot(y))

    def init(self, key, batch) -> GANState:
        del batch  # the shapes come from the config and image_shape
        generator, discriminator = self.models
        g_key, d_key = jax.random.split(key)
        y = jnp.zeros((1,), jnp.int32)
        g_params = generator.init(
            g_key, jnp.zeros((1, self.config.model.noise_dim)), self._onehot(y)
        )
        if self.pixel_means is not None:
            g_params = self._marginal_output_bias(g_params)
        d_params = discriminator.init(d_key, jnp.zeros((1, *self.image_shape)), self._onehot(y))
        return self.state_from(g_params, d_params)

    def state_from(self, g_params, d_params) -> GANState:
        """A state that starts from these weights: fresh optimizers, EMA at g_params."""
        optim = self.config.optim
        return GANState(
            g_params=g_params,
            d_params=d_params,
            g_opt_state=make_optimizer(optim.g_learning_rate, optim).init(trainable(g_params)),
            d_opt_state=make_optimizer(optim.d_learning_rate, optim).init(trainable(d_params)),
            ema_params=g_params,
            updates=jnp.zeros((), jnp.int32),
        )

    def _marginal_output_bias(self, g_params):
        """G's output bias set to the logits of the training pixel means (the 2014 paper's
        code does this): G starts at the data's mean image instead of uniform grey, which
        a discriminator would reject at once, saturating G's sigmoid."""
        means = np.clip(np.asarray(self.pixel_means, np.float32), 1e-3, 1 - 1e-3)
        bias = g_params["params"]["out"]["bias"]
        if bias.size != means.size:  # a conv G has one bias per channel: the mean pixel
            means = means.reshape(-1, bias.size).mean(0)
        logits = jnp.asarray(np.log(means) - np.log1p(-means), bias.dtype)
        out = {**g_params["params"]["out"], "bias": logits}
        return {**g_params, "params": {**g_params["params"], "out": out}}

    def _critic_update(self, d_vars, d_opt_state, real, fake, y_onehot, mask, key):
        """One discriminator update on a real and a fake batch; returns (variables, opt,
        metrics). Real and fake pass through D separately, as in the DCGAN reference, so
        batch norm sees batches of one kind."""
        discriminator, model = self.models[1], self.config.model
        real_key, fake_key, gp_key = jax.random.split(key, 3)

        def loss_fn(weights):
            def critic(variables, x, k):
                return apply_train(
                    discriminator, variables, x, y_onehot, mask=mask, rngs={"dropout": k}
                )

            real_logits, variables = critic({**d_vars, **weights}, real, real_key)
            fake_logits, variables = critic(variables, fake, fake_key)
            per_example = discriminator_loss(model.loss, real_logits, fake_logits)
            aux = {
                "d_real": masked_mean(real_logits, mask),
                "d_fake": masked_mean(fake_logits, mask),
            }
            if model.loss == "wgan-gp":
                penalty = gradient_penalty(
                    lambda x: critic(variables, x, gp_key)[0],
                    real,
                    fake,
                    jax.random.fold_in(gp_key, 1),
                )
                aux["gradient_penalty"] = masked_mean(penalty, mask)
                per_example = per_example + model.gp_weight * penalty
            return masked_mean(per_example, mask), (aux, variables)

        (loss, (aux, variables)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            trainable(d_vars)
        )
        optimizer = make_optimizer(self.config.optim.d_learning_rate, self.config.optim)
        updates, d_opt_state = optimizer.update(grads, d_opt_state, trainable(d_vars))
        weights = clip_weights(
            optax.apply_updates(trainable(d_vars), updates), model.get("weight_clip", 0.0)
        )
        return {**variables, **weights}, d_opt_state, {"d_loss": loss, **aux}

    def train_step(self, state: GANState, batch, key):
        """`train_step(self, state, batch, key)`: the loop's step and `fit`'s."""
        return train_step(self, state, batch, key)

    def sampling_params(self, state: GANState):
        """G's weights for samples and metrics: EMA or raw (config.eval.use_ema)."""
        return state.ema_params if self.config.eval.use_ema else state.g_params

    def params_of(self, state: GANState) -> GANParams:
        """The trained model in a state: sampling generator and discriminator."""
        return GANParams(
            generator=self.sampling_params(state), discriminator=state.d_params, spec=self.spec
        )

    def eval_step(self, state: GANState, batch, key):
        """Mask-weighted sums: D's accuracy on real test images (logit > 0 means 'real')
        and on as many fresh samples of the sampling generator (logit < 0), mean logits."""
        discriminator = self.models[1]
        real = pixels(batch["image"])
        mask = batch["mask"]
        y = batch["label"] if self.conditional else None
        fake = self.generate(self.sampling_params(state), key, real.shape[0], y)
        real_logits = discriminator.apply(state.d_params, real, self._onehot(y))
        fake_logits = discriminator.apply(state.d_params, fake, self._onehot(y))
        return {
            "d_accuracy_real": jnp.sum((real_logits > 0) * mask),
            "d_accuracy_fake": jnp.sum((fake_logits < 0) * mask),
            "d_logit_real": jnp.sum(real_logits * mask),
            "d_logit_fake": jnp.sum(fake_logits * mask),
        }

    def fixed_grid_inputs(self) -> tuple[jax.Array, jax.Array | None, int]:
        """(z [100, noise_dim], labels or None, rows) of the sample grid, the same at every
        evaluation; for the cGAN row r is label r and column c shares one z across rows."""
        key = jax.random.key(_FIXED_NOISE_STREAM + int(self.config.seed))
        if not self.conditional:
            return self.noise(key, 100), None, 10
        rows = self.num_classes
        z = jnp.tile(self.noise(key, 10), (rows, 1))
        return z, jnp.repeat(jnp.arange(rows, dtype=jnp.int32), 10), rows

    def report(self, state: GANState, step: int, workdir: pathlib.Path, key) -> dict:
        """PNGs: samples of a fixed noise batch at this step, and the metrics so far
        (training and evaluation, with this step's sample metrics if `score_samples`)."""
        del key  # the grid's noise is fixed
        if jax.process_index() != 0:
            return {}
        out = pathlib.Path(workdir) / "images"
        z, y, rows = self.fixed_grid_inputs()
        params = mesh_lib.host_copy(self.sampling_params(state))
        samples = self.models[0].apply(params, z, self._onehot(y))
        plots_lib.save_grid(out / f"samples_{step:07d}.png", np.asarray(samples), rows=rows)
        scores = self.score_samples(state) if self.score_samples is not None else {}
        records = metrics_lib.read_metrics(workdir) + [{"step": step, **scores}]
        plots_lib.plot_metrics(out / "metrics.png", records)
        return scores

    def as_family(self) -> Family:
        return Family(
            init=self.init, train_step=self.train_step, eval_step=self.eval_step, report=self.report
        )


def train_step(family: GANFamily, state: GANState, batch, key) -> tuple[GANState, dict]:
    """n_critic discriminator updates, then one generator update and the EMA. batch:
    {"image": uint8 or [0, 1] float [B, H, W, C], "mask": [B], "label": [B] (cGAN)}."""
    generator, discriminator = family.models
    model, optim = family.config.model, family.config.optim
    real = pixels(batch["image"])
    mask = batch["mask"]
    y = batch["label"] if family.conditional else None
    y_onehot = family._onehot(y)
    num = real.shape[0]
    critic_key, last_key, g_key = jax.random.split(key, 3)

    def fake_batch(k):
        return apply_train(generator, state.g_params, family.noise(k, num), y_onehot, mask=mask)[0]

    def extra_critic_update(carry, k):
        noise_key, update_key = jax.random.split(k)
        d_params, d_opt_state = carry
        d_params, d_opt_state, _ = family._critic_update(
            d_params, d_opt_state, real, fake_batch(noise_key), y_onehot, mask, update_key
        )
        return (d_params, d_opt_state), None

    (d_params, d_opt_state), _ = jax.lax.scan(
        extra_critic_update,
        (state.d_params, state.d_opt_state),
        jax.random.split(critic_key, model.n_critic - 1),
    )

    # The last critic update and the generator update share one forward pass of G.
    noise_key, update_key = jax.random.split(last_key)
    z = family.noise(noise_key, num)
    fake, g_vjp, g_vars = jax.vjp(
        lambda weights: apply_train(
            generator, {**state.g_params, **weights}, z, y_onehot, mask=mask
        ),
        trainable(state.g_params),
        has_aux=True,
    )
    d_params, d_opt_state, metrics = family._critic_update(
        d_params, d_opt_state, real, fake, y_onehot, mask, update_key
    )

    def g_loss_fn(x):
        # D's batch statistics of this pass are not kept: its update is done
        logits, _ = apply_train(
            discriminator, d_params, x, y_onehot, mask=mask, rngs={"dropout": g_key}
        )
        return masked_mean(generator_loss(model.loss, logits), mask)

    g_loss, fake_grads = jax.value_and_grad(g_loss_fn)(fake)
    (g_grads,) = g_vjp(fake_grads)
    g_updates, g_opt_state = make_optimizer(optim.g_learning_rate, optim).update(
        g_grads, state.g_opt_state, trainable(state.g_params)
    )
    g_params = {**g_vars, **optax.apply_updates(trainable(state.g_params), g_updates)}
    decay = ema_decay(model.ema_decay, state.updates)
    ema_params = jax.tree.map(
        lambda e, p: decay * e + (1.0 - decay) * p, state.ema_params, g_params
    )
    new_state = GANState(
        g_params=g_params,
        d_params=d_params,
        g_opt_state=g_opt_state,
        d_opt_state=d_opt_state,
        ema_params=ema_params,
        updates=state.updates + 1,
    )
    return new_state, {**metrics, "g_loss": g_loss}


# ----------------------------------------------------------------------------- data and config


def split_holdout(
    dataset: data_lib.Dataset, holdout: int
) -> tuple[data_lib.Dataset, dict[str, np.ndarray]]:
    """Moves the last `holdout` training examples into a validation split the GAN never
    trains on (MNIST: train[50000:60000], as in Goodfellow et al.). Returns (dataset
    without them, validation arrays)."""
    train = dataset["train"]
    size = data_lib.num_examples(train)
    if not 0 < holdout < size:
        raise ValueError(
            f"config.data.holdout={holdout} must be in (0, {size}) for this training split"
        )
    kept = {k: v[: size - holdout] for k, v in train.items()}
    validation = {k: v[size - holdout :] for k, v in train.items()}
    return data_lib.Dataset({**dataset.splits, "train": kept}), validation


def family_for(config: ml_collections.ConfigDict, dataset: data_lib.Dataset) -> GANFamily:
    """The GAN family for `config`, shaped by the dataset's images."""
    check_config(config)
    if config.data.binarize != "none":
        raise ValueError(
            "config.data.binarize must be 'none' for a GAN (real-valued pixels), "
            f"got {config.data.binarize!r}"
        )
    images = dataset["train"]["image"]
    pixel_means = None
    if config.model.marginal_output_bias:
        pixel_means = tuple((data_lib.column_mean(images).reshape(-1) / 255.0).tolist())
    family = GANFamily(
        config=config,
        image_shape=tuple(images.shape[1:]),
        num_classes=int(config.data.num_classes),
        pixel_means=pixel_means,
    )
    make_models(config.model, family.image_shape)  # validates before anything compiles
    return family


def default_config() -> ml_collections.ConfigDict:
    """The GAN family's keys, with the small MLP GAN on MNIST; configs adjust them."""
    config = base_config()
    config.batch_size = 128
    config.num_epochs = 30.0
    config.log_every = 100
    config.eval_every = 2000
    config.eval_batch_size = 1000
    config.checkpoint.every = 2000
    config.checkpoint.keep = 2
    config.data = image_data_config("mnist", "none", num_classes=10, holdout=10_000)
    config.model = ml_collections.ConfigDict(
        {
            "arch": "mlp",
            "conditional": False,
            "g_hidden": (256, 512),
            "d_hidden": (512, 256),
            "d_maxout_pieces": 0,
            "d_input_dropout": 0.0,
            "d_dropout": 0.0,
            "noise_dim": 100,
            "noise": "normal",
            "loss": "nonsaturating",
            "gp_weight": 10.0,
            "n_critic": 1,
            "ema_decay": 0.999,
            "marginal_output_bias": True,
            "g_init_range": 0.0,  # > 0: weights uniform in [-range, range]; 0: LeCun normal
            "d_init_range": 0.0,
            "weight_clip": 0.0,  # > 0: D's weights clipped to [-c, c] after each update
            "spectral_norm": False,  # D's weights divided by their largest singular value
            "batch_norm": False,  # dcgan: batch norm in G and D where Radford et al. put it
        }
    )
    config.optim = ml_collections.ConfigDict(
        {
            "optimizer": "adam",  # or "rmsprop" (the weight-clipping WGAN's)
            "g_learning_rate": 2e-4,
            "d_learning_rate": 2e-4,
            "b1": 0.5,
            "b2": 0.999,
        }
    )
    config.eval = ml_collections.ConfigDict(
        {
            "use_ema": True,
            "parzen_samples": 10_000,  # 0: no Parzen estimate
            "parzen_validation": 1_000,
            "parzen_chunk": 1_000,
            # '': no Frechet distance, classifier score or label accuracy
            "classifier_workdir": "",
            "feature_samples": 10_000,
            "label_samples": 1_000,  # per label, for the cGAN's label accuracy
        }
    )
    return config
