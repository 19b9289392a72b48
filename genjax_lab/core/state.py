"""The training state of gradient-trained families: one pytree, nothing hidden."""

from typing import Any

import flax.struct
import optax


@flax.struct.dataclass
class TrainState:
    """params and optimizer state; the step lives in the checkpoint and keys derive from it.

    The optimizer is passed to `apply_gradients` rather than stored, so the state is
    plain arrays that Orbax saves and restores as they are.
    """

    params: Any
    opt_state: Any

    @classmethod
    def create(cls, params, optimizer: optax.GradientTransformation) -> "TrainState":
        return cls(params=params, opt_state=optimizer.init(params))

    def apply_gradients(self, grads, optimizer: optax.GradientTransformation) -> "TrainState":
        updates, opt_state = optimizer.update(grads, self.opt_state, self.params)
        return self.replace(params=optax.apply_updates(self.params, updates), opt_state=opt_state)
