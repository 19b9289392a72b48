"""The shared verbs that make and train a GAN: meta_from_data, init and fit."""

import math
from collections.abc import Mapping
from typing import Any

import jax
import ml_collections
import numpy as np

from genjax_lab.core import checks
from genjax_lab.core import data as data_lib
from genjax_lab.models.gan.family import GANFamily, check_config
from genjax_lab.models.gan.model import GANParams, make_models


def meta_from_data(data: Mapping[str, Any], config: ml_collections.ConfigDict) -> dict:
    """The sizes the data fixes: image_shape [H, W, C] of data["x"] [N, H, W, C], and
    num_classes (config.data.num_classes, the one-hot width; a cGAN's labels must fit it)."""
    x = checks.check_array("data['x']", data["x"], ("N", "H", "W", "C"))
    num_classes = checks.check_count("config.data.num_classes", config.data.num_classes)
    if config.model.conditional:
        if "y" not in data:
            raise ValueError("data['y']: a conditional GAN (config.model.conditional) needs labels")
        y = checks.check_array("data['y']", data["y"], (x.shape[0],), kinds=checks.INTEGER)
        if y.min() < 0 or y.max() >= num_classes:
            raise ValueError(
                f"data['y'] must lie in [0, config.data.num_classes={num_classes}), "
                f"got range [{y.min()}, {y.max()}]"
            )
    return {"image_shape": [int(d) for d in x.shape[1:]], "num_classes": num_classes}


def _family(
    config: ml_collections.ConfigDict,
    meta: Mapping[str, Any],
    pixel_means: tuple[float, ...] | None = None,
    steps_per_epoch: int = 1,
) -> GANFamily:
    check_config(config)
    image_shape = tuple(int(d) for d in meta["image_shape"])
    make_models(config.model, image_shape)  # validates before anything compiles
    return GANFamily(
        config=config,
        image_shape=image_shape,
        num_classes=int(meta["num_classes"]),
        pixel_means=pixel_means,
        steps_per_epoch=steps_per_epoch,
    )


def init(key: jax.Array, config: ml_collections.ConfigDict, meta: Mapping[str, Any]) -> GANParams:
    """Fresh parameters (generator and discriminator variables) for the family's whole
    config (`default_config()`); `fit` also sets G's output bias from the data's means."""
    family = _family(config, meta)
    return family.params_of(family.init(key, None))


def fit(
    key: jax.Array,
    data: Mapping[str, Any],
    config: ml_collections.ConfigDict,
    init: GANParams | None = None,
) -> tuple[GANParams, dict]:
    """Trains in memory on one device with the loop's `train_step`.

    data: {"x": images [N, H, W, C] (uint8, or floats in [0, 1]), "y": labels [N] (a cGAN)}.
    config: the family's whole config (`default_config()`): model, optim, eval.use_ema,
    batch_size, num_steps (or num_epochs). Batches are shuffled each epoch and the last one
    padded and masked, as in the loop. init: start from these weights (fresh optimizers).
    Returns (params, history): history holds each step's metrics [num_iters] and num_iters.
    """
    meta = meta_from_data(data, config)
    x = np.asarray(data["x"])
    if x.dtype != np.uint8 and (not np.all(np.isfinite(x)) or x.min() < 0 or x.max() > 1):
        raise ValueError("data['x'] must be uint8 images or real-valued pixels in [0, 1]")
    pixel_means = None
    if config.model.marginal_output_bias:
        scale = 255.0 if x.dtype == np.uint8 else 1.0
        pixel_means = tuple((x.reshape(len(x), -1).mean(0, dtype=np.float64) / scale).tolist())
    batch_size = checks.check_count("config.batch_size", config.batch_size)
    family = _family(config, meta, pixel_means, math.ceil(len(x) / batch_size))
    init_key, order_key, train_key = jax.random.split(key, 3)
    arrays = {"image": x}
    if family.conditional:
        arrays["label"] = np.asarray(data["y"], np.int32)
    seed = int(jax.random.randint(order_key, (), 0, np.iinfo(np.int32).max))
    batcher = data_lib.EpochBatcher(arrays, batch_size, seed)
    if config.num_steps > 0:
        num_steps = int(config.num_steps)
    elif config.num_epochs is not None and config.num_epochs > 0:
        num_steps = max(1, math.ceil(config.num_epochs * batcher.steps_per_epoch))
    else:
        raise ValueError("set config.num_steps > 0 or config.num_epochs > 0")
    if init is None:
        state = family.init(init_key, None)
    else:
        state = family.state_from(init.generator, init.discriminator)
    step = jax.jit(family.train_step)
    records = []
    try:
        for i in range(num_steps):
            state, metrics = step(state, batcher.batch(i), jax.random.fold_in(train_key, i))
            records.append(metrics)
    finally:
        batcher.close()
    history = jax.tree.map(lambda *values: np.asarray(values), *records)
    return family.params_of(state), {**history, "num_iters": num_steps}
