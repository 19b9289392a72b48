"""The discriminative baseline: an MLP (or small convnet) classifier p(y | x).

It models only P(Y | X): it cannot score or sample x, which is what the generative
families add. Its features also serve as the feature space for sample-quality metrics.
"""

import dataclasses
import json
import pathlib
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from genjax_lab.core import checks
from genjax_lab.core.loop import Family, base_config
from genjax_lab.core.state import TrainState
from genjax_lab.data.images import image_data_config


class Classifier(nn.Module):
    """x [B, H, W, C] in [0, 1] -> (logits [B, num_classes], features [B, hidden[-1]])."""

    hidden: Sequence[int]
    num_classes: int
    conv: bool = False

    @nn.compact
    def __call__(self, x):
        h = x
        if self.conv:
            for features in (32, 64):
                h = nn.relu(nn.Conv(features, (3, 3))(h))
                h = nn.max_pool(h, (2, 2), (2, 2))
        h = h.reshape(h.shape[0], -1)
        for width in self.hidden:
            h = nn.relu(nn.Dense(width)(h))
        return nn.Dense(self.num_classes)(h), h


def default_config() -> ml_collections.ConfigDict:
    config = base_config()
    config.batch_size = 64
    config.num_epochs = 60.0
    config.eval_every = 0
    config.eval_batch_size = 360
    config.checkpoint.every = 500
    config.data = image_data_config("digits", "none", num_classes=10)
    config.model = ml_collections.ConfigDict({"hidden": (200, 200), "conv": False})
    config.optim = ml_collections.ConfigDict({"learning_rate": 1e-3, "weight_decay": 1e-4})
    return config


@dataclasses.dataclass(frozen=True)
class ClassifierFamily:
    config: ml_collections.ConfigDict
    image_shape: tuple[int, int, int]

    @property
    def model(self) -> Classifier:
        c = self.config
        return Classifier(
            hidden=tuple(c.model.hidden), num_classes=c.data.num_classes, conv=c.model.conv
        )

    def optimizer(self) -> optax.GradientTransformation:
        optim = self.config.optim
        return optax.adamw(optim.learning_rate, weight_decay=optim.weight_decay)

    def _inputs(self, batch, key):
        x = batch["image"].astype(jnp.float32) / 255.0
        if self.config.data.binarize == "dynamic":
            x = jax.random.bernoulli(key, x).astype(jnp.float32)
        return x

    def init(self, key, batch):
        params = self.model.init(key, jnp.zeros((1, *self.image_shape)))
        return TrainState.create(params, self.optimizer())

    def train_step(self, state: TrainState, batch, key):
        x, mask = self._inputs(batch, key), batch["mask"]

        def loss_fn(params):
            logits, _ = self.model.apply(params, x)
            losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
            return jnp.sum(losses * mask) / jnp.maximum(mask.sum(), 1.0)

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        return state.apply_gradients(grads, self.optimizer()), {"loss": loss}

    def eval_step(self, state: TrainState, batch, key):
        logits, _ = self.model.apply(state.params, self._inputs(batch, key))
        mask = batch["mask"]
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
        correct = jnp.argmax(logits, -1) == batch["label"]
        return {"accuracy": jnp.sum(correct * mask), "cross_entropy": jnp.sum(losses * mask)}

    def as_family(self) -> Family:
        return Family(init=self.init, train_step=self.train_step, eval_step=self.eval_step)


def family_for(config: ml_collections.ConfigDict, dataset) -> ClassifierFamily:
    checks.check_counts("config.model.hidden", config.model.hidden)
    checks.check_count("config.data.num_classes", config.data.num_classes)
    checks.check_positive("config.optim.learning_rate", config.optim.learning_rate)
    checks.check_number("config.optim.weight_decay", config.optim.weight_decay, low=0.0)
    return ClassifierFamily(config=config, image_shape=tuple(dataset["train"]["image"].shape[1:]))


def _check_features_input(family: ClassifierFamily, images, **_) -> None:
    pixels = checks.check_array("images", images, ("B", *family.image_shape))
    limit = 255 if pixels.dtype == np.uint8 else 1
    if pixels.min() < 0 or pixels.max() > limit:
        raise ValueError(
            f"images must be uint8 or in [0, 1], got {pixels.dtype} in "
            f"[{pixels.min()}, {pixels.max()}]"
        )


@checks.validated(_check_features_input)
def features(family: ClassifierFamily, params, images: jax.Array) -> jax.Array:
    """Penultimate-layer features of uint8 or [0, 1] images: [B, hidden[-1]]."""
    x = images.astype(jnp.float32) / (255.0 if images.dtype == jnp.uint8 else 1.0)
    return family.model.apply(params, x)[1]


def load_params(workdir: pathlib.Path):
    """Parameters of a classifier trained by experiments/classifier.py, from its newest
    checkpoint."""
    import orbax.checkpoint as ocp

    manager = ocp.CheckpointManager(pathlib.Path(workdir).absolute() / "checkpoints")
    step = manager.latest_step()
    if step is None:
        raise FileNotFoundError(f"no classifier checkpoint under {workdir}/checkpoints")
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    return restored["state"]["params"]


@dataclasses.dataclass(frozen=True)
class FeatureNetwork:
    """A trained classifier of experiments/classifier.py as the feature function of the
    sample metrics (genjax_lab.eval.frechet): images -> (logits, features)."""

    family: ClassifierFamily
    params: object

    @classmethod
    def load(
        cls, workdir: str | pathlib.Path, image_shape: tuple[int, int, int]
    ) -> "FeatureNetwork":
        """The classifier trained in `workdir` (its config.json and newest checkpoint)."""
        config_path = pathlib.Path(workdir) / "config.json"
        if not config_path.is_file():
            raise FileNotFoundError(
                f"config.eval.classifier_workdir={str(workdir)!r}: no config.json; train one "
                "with ./launch.sh classifier --config=experiments/configs/classifier.py:mnist "
                f"--config.data.mnist_dir=DIR --workdir={workdir}"
            )
        config = ml_collections.ConfigDict(json.loads(config_path.read_text()))
        family = ClassifierFamily(config=config, image_shape=tuple(image_shape))
        params = load_params(workdir)
        try:
            jax.eval_shape(family.model.apply, params, jnp.zeros((1, *image_shape)))
        except Exception as e:  # a shape mismatch shows up as any of several errors
            raise ValueError(
                f"config.eval.classifier_workdir={str(workdir)!r}: its classifier "
                f"does not take images of shape {tuple(image_shape)} ({e})"
            ) from e
        return cls(family=family, params=params)

    def __call__(self, images, batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
        """(logits [N, K], features [N, F]) of uint8 or [0, 1] float images [N, H, W, C]."""
        model = self.family.model
        outputs = [
            _apply(model, self.params, jnp.asarray(images[i : i + batch_size]))
            for i in range(0, len(images), batch_size)
        ]
        return tuple(np.concatenate([np.asarray(o[j]) for o in outputs]) for j in range(2))


@jax.jit(static_argnums=0)
def _apply(model, params, images):
    x = images.astype(jnp.float32) / (255.0 if images.dtype == jnp.uint8 else 1.0)
    return model.apply(params, x)
