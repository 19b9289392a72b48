"""Training a GAN: the state, the optimizer, the train step, the loop adapter and the config.

By default (`config.optim.update_order='alternating'`) one `train_step` = `n_critic`
discriminator updates, then one generator update. The
critic updates reuse the step's real batch with fresh noise each (the harness hands one
batch per step). The generator update uses the noise of the last critic update, so G's
forward pass is computed once and its VJP reused (as the PyTorch DCGAN example reuses
its `fake`). An exponential moving average of G's weights (decay min(ema_decay,
(1 + t) / (10 + t)) at update t) is kept in the state and used for samples and metrics.

With batch norm or spectral normalisation the variables also hold `batch_stats` (running
averages, power-iteration vectors): every training pass updates them and the optimizers
see only `params`. G's running averages come from the pass its update uses and D's from
its real, then fake pass of each critic update; the EMA averages them with the weights.

The 2014 paper's own rule (`update_order='simultaneous'`, `optimizer='momentum'`, see
`simultaneous_step` and `heavy_ball`) updates G and D together from one forward pass with
heavy-ball SGD whose rate decays per update and whose momentum rises per epoch; with
`config.eval.select_on_validation` every evaluation also scores a Parzen window on the
held-out split and names the step it ranks best (`select_by_validation`).
"""

import dataclasses
import math
import pathlib
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

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
from genjax_lab.eval import parzen
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
    sample,
)

_FIXED_NOISE_STREAM = 20_000  # a key of its own: the grid uses the same z at every evaluation
_VALIDATION_STREAM = 40_000  # the validation Parzen's samples, apart from the test metrics'


@flax.struct.dataclass
class GANState:
    """Everything training changes, as one pytree the harness checkpoints whole."""

    g_params: Any
    d_params: Any
    g_opt_state: Any
    d_opt_state: Any
    ema_params: Any  # moving average of g_params: what samples and metrics use
    updates: jax.Array  # int32 count of generator updates, for the EMA warm-up


OPTIMIZERS = ("adam", "rmsprop", "momentum")
UPDATE_ORDERS = ("alternating", "simultaneous")


class HeavyBallState(NamedTuple):
    count: jax.Array  # int32 updates made: the schedules' clock
    velocity: Any


def heavy_ball(
    learning_rate: Callable[[jax.Array], jax.Array], momentum: Callable[[jax.Array], jax.Array]
) -> optax.GradientTransformation:
    """pylearn2's `Momentum` rule: v <- mu_t v - lr_t g, then p <- p + v, with both
    schedules read at the update count t. optax's trace scales the whole velocity by the
    current rate instead (v <- mu v + g, p <- p - lr_t v), which differs once the rate
    decays."""

    def init(params):
        return HeavyBallState(jnp.zeros((), jnp.int32), jax.tree.map(jnp.zeros_like, params))

    def update(grads, state, params=None):
        del params
        rate, mu = learning_rate(state.count), momentum(state.count)
        velocity = jax.tree.map(lambda v, g: mu * v - rate * g, state.velocity, grads)
        return velocity, HeavyBallState(state.count + 1, velocity)

    return optax.GradientTransformation(init, update)


def learning_rate_schedule(
    learning_rate: float, optim_config: ml_collections.ConfigDict
) -> float | Callable[[jax.Array], jax.Array]:
    """max(learning_rate / lr_decay_factor^t, min_learning_rate) at update t (pylearn2's
    `ExponentialDecay`); a factor of 1 (the default) is the constant rate itself."""
    factor = float(optim_config.get("lr_decay_factor", 1.0))
    if factor == 1.0:
        return learning_rate
    log_factor = math.log(factor)  # in float64: 1.000004 is not a float32 number
    floor = float(optim_config.get("min_learning_rate", 0.0))

    def rate(count: jax.Array) -> jax.Array:
        decayed = learning_rate * jnp.exp(-log_factor * count.astype(jnp.float32))
        return jnp.maximum(decayed, floor)

    return rate


def momentum_schedule(
    optim_config: ml_collections.ConfigDict, updates_per_epoch: int
) -> Callable[[jax.Array], jax.Array]:
    """pylearn2's `MomentumAdjustor`: during epoch e (1-based; e = t // updates_per_epoch
    + 1 at update t) mu = momentum + (final_momentum - momentum) * clip((e - start) /
    (saturate - start), 0, 1), start and saturate being config.optim.momentum_start /
    momentum_saturate."""
    initial, final = float(optim_config.momentum), float(optim_config.final_momentum)
    start, saturate = int(optim_config.momentum_start), int(optim_config.momentum_saturate)

    def momentum(count: jax.Array) -> jax.Array:
        epoch = (count // updates_per_epoch + 1).astype(jnp.float32)
        alpha = jnp.clip((epoch - start) / (saturate - start), 0.0, 1.0)
        return initial + (final - initial) * alpha

    return momentum


def make_optimizer(
    learning_rate: float, optim_config: ml_collections.ConfigDict, updates_per_epoch: int = 1
) -> optax.GradientTransformation:
    """Adam with the config's betas, RMSProp (config.optim.optimizer) as the weight-clipping
    WGAN trains, with PyTorch's defaults that its code used: decay 0.99, eps 1e-8 added to
    the root, or 'momentum': the 2014 paper's heavy-ball SGD (`heavy_ball`), whose
    momentum schedule counts epochs of `updates_per_epoch` updates. Any of them takes the
    decaying rate of `learning_rate_schedule`."""
    checks.check_positive("learning_rate", learning_rate)
    name = optim_config.get("optimizer", "adam")  # .get: configs saved before the key
    checks.check_choice("config.optim.optimizer", name, OPTIMIZERS)
    rate = learning_rate_schedule(learning_rate, optim_config)
    if name == "rmsprop":
        return optax.rmsprop(rate, decay=0.99, eps=1e-8, eps_in_sqrt=False)
    if name == "momentum":
        constant = (lambda count: jnp.float32(rate)) if isinstance(rate, float) else rate
        return heavy_ball(constant, momentum_schedule(optim_config, updates_per_epoch))
    for beta in ("b1", "b2"):
        checks.check_number(
            f"config.optim.{beta}", optim_config[beta], low=0.0, high=1.0, high_open=True
        )
    return optax.adam(rate, b1=optim_config.b1, b2=optim_config.b2)


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
    optim = config.optim
    checks.check_choice("config.optim.optimizer", optim.get("optimizer", "adam"), OPTIMIZERS)
    for rate in ("g_learning_rate", "d_learning_rate"):
        checks.check_positive(f"config.optim.{rate}", optim[rate])
    checks.check_number("config.optim.lr_decay_factor", optim.get("lr_decay_factor", 1.0), low=1.0)
    checks.check_number(
        "config.optim.min_learning_rate", optim.get("min_learning_rate", 0.0), low=0.0
    )
    checks.check_number(
        "config.model.d_loss_scale", config.model.get("d_loss_scale", 1.0), low=0.0, low_open=True
    )
    if optim.get("optimizer", "adam") == "momentum":
        for name in ("momentum", "final_momentum"):
            checks.check_number(
                f"config.optim.{name}", optim[name], low=0.0, high=1.0, high_open=True
            )
        if not 0 < optim.momentum_start < optim.momentum_saturate:
            raise ValueError(
                "config.optim.momentum_start and momentum_saturate must satisfy 0 < start < "
                f"saturate (epochs), got {optim.momentum_start} and {optim.momentum_saturate}"
            )
    update = optim.get("update_order", "alternating")
    checks.check_choice("config.optim.update_order", update, UPDATE_ORDERS)
    if update == "simultaneous" and (config.model.n_critic != 1 or config.model.loss == "wgan-gp"):
        raise ValueError(
            "config.optim.update_order='simultaneous' makes one update of G and D from one "
            f"pass: it needs config.model.n_critic=1 (got {config.model.n_critic}) and a loss "
            f"without the gradient penalty (got {config.model.loss!r})"
        )
    if config.eval.get("select_on_validation", False) and not config.eval.parzen_samples:
        raise ValueError(
            "config.eval.select_on_validation ranks steps by a Parzen estimate: set "
            "config.eval.parzen_samples > 0"
        )


# ----------------------------------------------------------------------------- the family


@dataclasses.dataclass(frozen=True)
class GANFamily:
    """Binds a config and the data's sizes to the train step and the loop's Family functions."""

    config: ml_collections.ConfigDict
    image_shape: tuple[int, int, int]
    num_classes: int
    pixel_means: tuple[float, ...] | None = None  # training-set mean of each pixel, flattened
    steps_per_epoch: int = 1  # the momentum schedule's epoch, in train steps
    # uint8 held-out images [N, H, W, C] (train[50000:60000] on MNIST), for
    # config.eval.select_on_validation
    validation_images: np.ndarray | None = dataclasses.field(default=None, compare=False)
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

    def optimizers(self) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
        """(G's, D's) optimizer; D's epoch holds n_critic updates a step."""
        optim = self.config.optim
        return (
            make_optimizer(optim.g_learning_rate, optim, self.steps_per_epoch),
            make_optimizer(
                optim.d_learning_rate, optim, self.steps_per_epoch * int(self.config.model.n_critic)
            ),
        )

    def state_from(self, g_params, d_params) -> GANState:
        """A state that starts from these weights: fresh optimizers, EMA at g_params."""
        g_optimizer, d_optimizer = self.optimizers()
        return GANState(
            g_params=g_params,
            d_params=d_params,
            g_opt_state=g_optimizer.init(trainable(g_params)),
            d_opt_state=d_optimizer.init(trainable(d_params)),
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
        scale = model.get("d_loss_scale", 1.0)
        if scale != 1.0:  # a Python branch: the default step stays bitwise as it was
            grads = jax.tree.map(lambda g: scale * g, grads)
        variables, d_opt_state = self._apply_critic_update(variables, d_opt_state, grads)
        return variables, d_opt_state, {"d_loss": loss, **aux}

    def _apply_critic_update(self, d_vars, d_opt_state, grads):
        """D's optimizer step and weight clipping: (variables, optimizer state)."""
        updates, d_opt_state = self.optimizers()[1].update(grads, d_opt_state, trainable(d_vars))
        weights = clip_weights(
            optax.apply_updates(trainable(d_vars), updates),
            self.config.model.get("weight_clip", 0.0),
        )
        return {**d_vars, **weights}, d_opt_state

    def _next_state(self, state: GANState, g_vars, g_grads, d_params, d_opt_state) -> GANState:
        """The state after a step: G's optimizer step from `g_grads` (its batch statistics
        from `g_vars`), the EMA and the update count, beside D's new weights and optimizer."""
        updates, g_opt_state = self.optimizers()[0].update(
            g_grads, state.g_opt_state, trainable(state.g_params)
        )
        g_params = {**g_vars, **optax.apply_updates(trainable(state.g_params), updates)}
        decay = ema_decay(self.config.model.ema_decay, state.updates)
        ema_params = jax.tree.map(
            lambda e, p: decay * e + (1.0 - decay) * p, state.ema_params, g_params
        )
        return GANState(
            g_params=g_params,
            d_params=d_params,
            g_opt_state=g_opt_state,
            d_opt_state=d_opt_state,
            ema_params=ema_params,
            updates=state.updates + 1,
        )

    def train_step(self, state: GANState, batch, key):
        """`train_step(self, state, batch, key)`: the loop's step and `fit`'s."""
        if self.config.optim.get("update_order", "alternating") == "simultaneous":
            return simultaneous_step(self, state, batch, key)
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
        if self.config.eval.get("select_on_validation", False):
            scores.update(self.validation_scores(state))
            scores.update(
                select_by_validation(metrics_lib.read_metrics(workdir, "test"), step, scores)
            )
        records = metrics_lib.read_metrics(workdir) + [{"step": step, **scores}]
        plots_lib.plot_metrics(out / "metrics.png", records)
        return scores

    def validation_scores(self, state: GANState) -> dict[str, float]:
        """The Parzen estimate of the held-out split, to choose a step by: sigma by its first
        config.eval.parzen_validation images (as the test estimate's), the mean over the
        rest, which neither training nor sigma saw. The 2014 code's per-epoch monitor was a
        cruder one of the same split (100 samples, sigma 0.2)."""
        if self.validation_images is None:
            raise ValueError(
                "config.eval.select_on_validation needs the held-out split: build the family "
                "with family_for on split_holdout's dataset (config.data.holdout > 0)"
            )
        ev = self.config.eval
        held_out = self.validation_images / 255.0
        if not 0 < ev.parzen_validation < len(held_out):
            raise ValueError(
                f"config.eval.parzen_validation={ev.parzen_validation} must leave images of "
                f"the {len(held_out)} held out to score (config.data.holdout)"
            )
        key = jax.random.key(_VALIDATION_STREAM + int(self.config.seed))
        samples = sample(key, mesh_lib.host_copy(self.params_of(state)), ev.parzen_samples)
        score = parzen.parzen_score(
            samples,
            held_out[: ev.parzen_validation],
            held_out[ev.parzen_validation :],
            chunk=ev.parzen_chunk,
        )
        return {
            "parzen_validation_log_likelihood": score.mean,
            "parzen_validation_stderr": score.stderr,
        }

    def as_family(self) -> Family:
        return Family(
            init=self.init, train_step=self.train_step, eval_step=self.eval_step, report=self.report
        )


def train_step(family: GANFamily, state: GANState, batch, key) -> tuple[GANState, dict]:
    """n_critic discriminator updates, then one generator update and the EMA. batch:
    {"image": uint8 or [0, 1] float [B, H, W, C], "mask": [B], "label": [B] (cGAN)}."""
    generator, discriminator = family.models
    model = family.config.model
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
    new_state = family._next_state(state, g_vars, g_grads, d_params, d_opt_state)
    return new_state, {**metrics, "g_loss": g_loss}


def simultaneous_step(family: GANFamily, state: GANState, batch, key) -> tuple[GANState, dict]:
    """One update of G and D together from one forward pass (config.optim.update_order=
    'simultaneous'), as the 2014 paper's code (pylearn2's AdversaryCost2 under one SGD):
    one noise batch z, D's real and fake passes each with its own dropout mask, D's
    gradient of d_loss_scale * mean(loss(D(x), D(G(z)))) and G's of mean(G loss(D(G(z))))
    through the same fake pass and masks, both from the weights before the step. Metrics
    as `train_step`'s (d_loss unscaled)."""
    generator, discriminator = family.models
    model = family.config.model
    real = pixels(batch["image"])
    mask = batch["mask"]
    y_onehot = family._onehot(batch["label"] if family.conditional else None)
    noise_key, real_key, fake_key = jax.random.split(key, 3)
    z = family.noise(noise_key, real.shape[0])

    def objectives(g_weights, d_weights):
        fake, g_vars = apply_train(
            generator, {**state.g_params, **g_weights}, z, y_onehot, mask=mask
        )
        d_vars = {**state.d_params, **d_weights}
        real_logits, d_vars = apply_train(
            discriminator, d_vars, real, y_onehot, mask=mask, rngs={"dropout": real_key}
        )
        fake_logits, d_vars = apply_train(
            discriminator, d_vars, fake, y_onehot, mask=mask, rngs={"dropout": fake_key}
        )
        d_loss = masked_mean(discriminator_loss(model.loss, real_logits, fake_logits), mask)
        g_loss = masked_mean(generator_loss(model.loss, fake_logits), mask)
        aux = {"d_real": masked_mean(real_logits, mask), "d_fake": masked_mean(fake_logits, mask)}
        return (d_loss, g_loss), (g_vars, d_vars, aux)

    (d_loss, g_loss), pull_back, (g_vars, d_vars, aux) = jax.vjp(
        objectives, trainable(state.g_params), trainable(state.d_params), has_aux=True
    )
    zero = jnp.zeros_like(d_loss)
    # one backward pass per objective, each to its own player's weights
    _, d_grads = pull_back((jnp.full_like(d_loss, model.get("d_loss_scale", 1.0)), zero))
    g_grads, _ = pull_back((zero, jnp.ones_like(g_loss)))
    # d_vars: the step's weights and the batch statistics of both D passes
    d_params, d_opt_state = family._apply_critic_update(d_vars, state.d_opt_state, d_grads)
    new_state = family._next_state(state, g_vars, g_grads, d_params, d_opt_state)
    return new_state, {"d_loss": d_loss, **aux, "g_loss": g_loss}


def select_by_validation(
    records: list[Mapping[str, Any]], step: int, scores: Mapping[str, float]
) -> dict[str, float]:
    """Model selection as the 2014 authors could do it: of the evaluations logged before
    `step` (metrics.jsonl's test records) and this one (`scores`), the one with the highest
    parzen_validation_log_likelihood (the earliest on a tie); returns its step and its test
    Parzen estimate as selected_step, parzen_selected_log_likelihood and _stderr (those
    two only when the evaluations scored the test set)."""
    candidates = [
        r for r in records if r["step"] < step and "parzen_validation_log_likelihood" in r
    ]
    candidates.append({"step": step, **scores})
    best = max(candidates, key=lambda r: r["parzen_validation_log_likelihood"])
    selected = {
        "selected_step": best["step"],
        "parzen_selected_validation": best["parzen_validation_log_likelihood"],
    }
    if "parzen_log_likelihood" in best:
        selected["parzen_selected_log_likelihood"] = best["parzen_log_likelihood"]
        selected["parzen_selected_stderr"] = best["parzen_stderr"]
    return selected


# ----------------------------------------------------------------------------- data and config


def split_holdout(
    dataset: data_lib.Dataset, holdout: int
) -> tuple[data_lib.Dataset, dict[str, np.ndarray]]:
    """Moves the last `holdout` training examples into a validation split the GAN never
    trains on (MNIST: train[50000:60000], as in Goodfellow et al.). Returns (dataset
    without them in train and with them as its 'validation' split, validation arrays)."""
    train = dataset["train"]
    size = data_lib.num_examples(train)
    if not 0 < holdout < size:
        raise ValueError(
            f"config.data.holdout={holdout} must be in (0, {size}) for this training split"
        )
    kept = {k: v[: size - holdout] for k, v in train.items()}
    validation = {k: v[size - holdout :] for k, v in train.items()}
    splits = {**dataset.splits, "train": kept, "validation": validation}
    return data_lib.Dataset(splits), validation


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
    validation = None
    if config.eval.get("select_on_validation", False):
        if "validation" not in dataset.splits:
            raise ValueError(
                "config.eval.select_on_validation needs a held-out split: pass the dataset "
                "split_holdout returns (config.data.holdout > 0)"
            )
        validation = np.asarray(dataset["validation"]["image"])
    family = GANFamily(
        config=config,
        image_shape=tuple(images.shape[1:]),
        num_classes=int(config.data.num_classes),
        pixel_means=pixel_means,
        steps_per_epoch=math.ceil(len(images) / config.batch_size),
        validation_images=validation,
    )
    make_models(config.model, family.image_shape)  # validates before anything compiles
    return family


def default_config() -> ml_collections.ConfigDict:
    """The GAN family's keys, with the small MLP GAN on MNIST; configs adjust them."""
    config = base_config()  # the loop's keys: only the schedule's changes are written here
    config.update(
        num_epochs=30.0,
        eval_every=2000,
        checkpoint={"every": 2000, "keep": 2},
        data=image_data_config("mnist", "none", num_classes=10, holdout=10_000),
    )
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
            "d_loss_scale": 1.0,  # the 2014 code's 0.5: D's objective averages its two terms
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
            "optimizer": "adam",  # or "rmsprop" (the weight-clipping WGAN's), "momentum"
            "g_learning_rate": 2e-4,
            "d_learning_rate": 2e-4,
            "b1": 0.5,
            "b2": 0.999,
            # the rate at update t: max(rate / lr_decay_factor^t, min_learning_rate)
            "lr_decay_factor": 1.0,
            "min_learning_rate": 0.0,
            # optimizer='momentum': mu rises linearly from `momentum` at epoch momentum_start
            # to `final_momentum` at epoch momentum_saturate (epochs 1-based)
            "momentum": 0.5,
            "final_momentum": 0.5,
            "momentum_start": 1,
            "momentum_saturate": 250,
            "update_order": "alternating",  # or "simultaneous": G and D from one pass
        }
    )
    config.eval = ml_collections.ConfigDict(
        {
            "use_ema": True,
            # a held-out Parzen estimate at every evaluation and the best step so far
            "select_on_validation": False,
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
