"""AdamW, BatchNorm parameters and biases excluded from the weight decay."""

import optax

from glf_jax.models.params import decay_mask
from glf_jax.train.optimizers.base import Optimizer


def _build(c, schedule):
  return optax.adamw(schedule, weight_decay=c.weight_decay, mask=decay_mask)


OPTIMIZER = Optimizer('adamw', _build, base_learning_rate=1e-3, weight_decay=1e-4)
