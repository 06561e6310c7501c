"""SGD with (Nesterov-free) momentum and L2 weight decay added to the gradient before momentum
(PyTorch's ``weight_decay``), BatchNorm parameters and biases excluded."""

import optax

from glf_jax.models.params import decay_mask
from glf_jax.train.optimizers.base import Optimizer


def _build(c, schedule):
  return optax.chain(optax.add_decayed_weights(c.weight_decay, mask=decay_mask),
                     optax.sgd(schedule, momentum=c.momentum or None))


OPTIMIZER = Optimizer('sgd', _build, base_learning_rate=0.3, weight_decay=5e-4)
