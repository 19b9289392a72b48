"""Training a VAE: the optimiser, the loss, `train_step` (shared by `fit` and the training
loop's VAEFamily) and `fit`, a plain jitted optax loop over in-memory data."""

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from optax.tree_utils import NamedTupleKey

from genjax_lab.core import checks
from genjax_lab.core.state import TrainState
from genjax_lab.data.images import label_log_prior, prepare_images
from genjax_lab.models.vae import model as model_lib
from genjax_lab.models.vae.bounds import elbo, log_prob_bound, log_weight_terms, log_weights
from genjax_lab.models.vae.model import VAE, VAEParams


def make_optimizer(optim_config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Adam with the config's betas and eps; a piecewise-constant schedule if given."""
    checks.check_positive("config.optim.learning_rate", optim_config.learning_rate)
    for beta in ("b1", "b2"):
        checks.check_number(
            f"config.optim.{beta}", optim_config[beta], low=0.0, high=1.0, high_open=True
        )
    checks.check_number("config.optim.eps", optim_config.eps, low=0.0)
    if len(optim_config.boundaries) != len(optim_config.scales):
        raise ValueError(
            "config.optim.boundaries and scales must have one entry each per step "
            f"change, got {len(optim_config.boundaries)} and "
            f"{len(optim_config.scales)}"
        )
    if optim_config.boundaries:
        learning_rate = optax.piecewise_constant_schedule(
            optim_config.learning_rate,
            {int(b): float(s) for b, s in zip(optim_config.boundaries, optim_config.scales)},
        )
    else:
        learning_rate = optim_config.learning_rate
    return optax.adam(learning_rate, b1=optim_config.b1, b2=optim_config.b2, eps=optim_config.eps)


def _kl_schedule(model_config: ml_collections.ConfigDict) -> tuple[float, int]:
    """(beta, warmup_steps); .get: configs saved before these keys existed train as before."""
    return float(model_config.get("beta", 1.0)), int(model_config.get("warmup_steps", 0))


def check_training_config(config: ml_collections.ConfigDict) -> None:
    checks.check_choice("config.model.objective", config.model.objective, ("elbo", "iwae"))
    checks.check_count("config.model.num_samples", config.model.num_samples)
    checks.check_number("config.model.beta", config.model.get("beta", 1.0), low=0.0)
    checks.check_count("config.model.warmup_steps", config.model.get("warmup_steps", 0), 0)
    if _kl_schedule(config.model) != (1.0, 0) and config.model.objective != "elbo":
        raise ValueError(
            "config.model.beta and warmup_steps weigh the ELBO's KL term: they need "
            f"config.model.objective='elbo', got {config.model.objective!r}"
        )


def kl_weight(beta: float, warmup_steps: int, step: jax.Array) -> jax.Array:
    """The KL term's weight at `step`: beta * min(1, step / warmup_steps) (beta when
    warmup_steps is 0): the KL warm-up of Bowman et al. 2016 and Sonderby et al. 2016,
    towards the beta-VAE of Higgins et al. 2017."""
    if warmup_steps == 0:
        return jnp.asarray(beta, jnp.float32)
    return beta * jnp.minimum(1.0, jnp.asarray(step, jnp.float32) / warmup_steps)


def loss(
    key: jax.Array,
    variables: Any,
    batch: Mapping[str, jax.Array],
    *,
    model: VAE,
    config: ml_collections.ConfigDict,
    step: jax.Array | int = 0,
    iwae: jax.Array | None = None,
) -> jax.Array:
    """The negative bound (config.model.objective with config.model.num_samples samples)
    averaged over the batch's unmasked rows; batch: image [B, H, W, C] (uint8 pixels, made
    [0, 1] by config.data.binarize, or float pixels in [0, 1]), label [B] (conditional),
    mask [B].

    `iwae`, a boolean scalar, overrides the objective inside the compiled step: the IWAE
    bound where true, the ELBO where false, both from the same log weights, so runs of the
    two objectives can be vmapped together (experiments/iwae_batched.py).

    With config.model.beta != 1 or warmup_steps > 0 the ELBO's KL term is weighed by
    `kl_weight(beta, warmup_steps, step)` (`step`: the updates made so far):
    -mean_k [log p(x | z) - w (log q(z | x) - log p(z))], no longer a bound unless w = 1."""
    binarize_key, sample_key = jax.random.split(key)
    x = batch["image"]
    if x.dtype == jnp.uint8:  # float images (fit's data["x"] may be) are the pixels already
        x = prepare_images(x, config.data.binarize, binarize_key)
    params = VAEParams(variables, None, model)
    labels = batch["label"] if model.num_classes else None
    k = config.model.num_samples
    beta, warmup_steps = _kl_schedule(config.model)
    if (beta, warmup_steps) != (1.0, 0):
        log_px, log_pz, log_qz = log_weight_terms(sample_key, params, x, labels, k)
        weight = kl_weight(beta, warmup_steps, step)
        bound = (log_px - weight * (log_qz - log_pz)).mean(0)
    elif iwae is not None:
        log_w = log_weights(sample_key, params, x, labels, k)
        bound = jnp.where(iwae, jax.nn.logsumexp(log_w, axis=0) - math.log(k), log_w.mean(0))
    elif config.model.objective == "iwae":
        bound = log_prob_bound(sample_key, params, x, labels, num_samples=k)
    else:
        bound = elbo(sample_key, params, x, labels, num_samples=k)
    mask = batch["mask"]
    return -jnp.sum(bound * mask) / jnp.maximum(mask.sum(), 1.0)


def train_step(
    key: jax.Array,
    state: TrainState,
    batch: Mapping[str, jax.Array],
    *,
    model: VAE,
    config: ml_collections.ConfigDict,
    iwae: jax.Array | None = None,
) -> tuple[TrainState, dict]:
    """One Adam step on `loss` (`iwae` as there); state.params are the Flax variables. The
    step the KL warm-up reads is Adam's count of updates, which the checkpoint restores."""
    step = optax.tree_utils.tree_get(
        state.opt_state,
        "count",
        filtering=lambda path, _: path[-1] == NamedTupleKey("ScaleByAdamState", "count"),
    )
    value, grads = jax.value_and_grad(
        lambda variables: loss(
            key, variables, batch, model=model, config=config, step=step, iwae=iwae
        )
    )(state.params)
    return state.apply_gradients(grads, make_optimizer(config.optim)), {"loss": value}


def _float_pixels(x: np.ndarray, binarize: str) -> bool:
    """Whether data["x"] is already the pixels the decoder scores (floats in [0, 1]) rather
    than uint8 images that config.data.binarize turns into them."""
    if x.dtype == np.uint8:
        return False
    pixels = checks.check_array("data['x']", x, ("N", "H", "W", "C"), kinds=checks.FLOAT)
    if pixels.min() < 0 or pixels.max() > 1:
        raise ValueError(
            "data['x'] must be uint8 pixels or floats in [0, 1], "
            f"got range [{pixels.min()}, {pixels.max()}]"
        )
    if binarize != "none":
        raise ValueError(
            f"config.data.binarize={binarize!r} needs uint8 pixels in data['x']; "
            "float pixels in [0, 1] are scored as given (binarize='none')"
        )
    return True


def fit(
    key: jax.Array,
    data: Mapping[str, Any],
    config: ml_collections.ConfigDict,
    init: VAEParams | None = None,
) -> tuple[VAEParams, dict]:
    """Trains on in-memory data with `train_step`, batches of config.batch_size drawn
    without replacement each epoch, for config.num_steps steps (or config.num_epochs passes
    when num_steps <= 0); starts from `init` or fresh parameters (`model.init`).

    data: {"x": [N, H, W, C] uint8 pixels (or floats in [0, 1] with binarize='none'),
    "y": [N] int labels (conditional VAE)}; config: the family's whole config
    (`default_config()`). The label prior becomes the training labels' frequencies.
    Returns (params, history) with history {"loss": [num_steps], "num_steps": int}.
    """
    check_training_config(config)
    meta = model_lib.meta_from_data(data, config)
    images = np.asarray(data["x"])
    float_pixels = _float_pixels(images, config.data.binarize)
    num = images.shape[0]
    batch_size = min(checks.check_count("config.batch_size", config.batch_size), num)
    steps_per_epoch = num // batch_size
    num_steps = (
        int(config.num_steps)
        if config.num_steps > 0
        else max(
            1,
            math.ceil(
                checks.check_positive("config.num_epochs", config.num_epochs) * steps_per_epoch
            ),
        )
    )
    init_key, order_key, step_key = jax.random.split(key, 3)
    params = model_lib.init(init_key, config, meta) if init is None else init
    model = params.model
    columns = {
        "image": jnp.asarray(images),
        "label": jnp.asarray(data["y"] if model.num_classes else np.zeros(num), jnp.int32),
    }
    if model.num_classes:
        params = params.replace(
            log_prior=jnp.asarray(label_log_prior(np.asarray(data["y"]), model.num_classes))
        )
    if float_pixels:
        columns["image"] = columns["image"].astype(jnp.float32)

    def one_step(state, step):
        epoch, position = step // steps_per_epoch, (step % steps_per_epoch) * batch_size
        order = jax.random.permutation(jax.random.fold_in(order_key, epoch), num)
        rows = jax.lax.dynamic_slice_in_dim(order, position, batch_size)
        batch = {name: column[rows] for name, column in columns.items()}
        batch["mask"] = jnp.ones((batch_size,), jnp.float32)
        return train_step(
            jax.random.fold_in(step_key, step), state, batch, model=model, config=config
        )

    @jax.jit
    def run(variables):
        state = TrainState.create(variables, make_optimizer(config.optim))
        state, metrics = jax.lax.scan(one_step, state, jnp.arange(num_steps))
        return state.params, metrics["loss"]

    variables, losses = run(params.variables)
    checks.check_finite_tree("the fitted parameters", variables)
    return params.replace(variables=variables), {"loss": losses, "num_steps": num_steps}
