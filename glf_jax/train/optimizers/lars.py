"""LARS (You et al. 2017, arXiv 1708.03888; SimCLR/BYOL's ImageNet optimiser): BatchNorm
parameters and biases are excluded from both weight decay and the trust-ratio adaptation, as in
SimCLR's and BYOL's code."""

import optax

from glf_jax.models.params import decay_mask
from glf_jax.train.optimizers.base import Optimizer


def _build(c, schedule):
  return optax.lars(schedule, weight_decay=c.weight_decay, weight_decay_mask=decay_mask,
                    trust_coefficient=c.lars_eta, trust_ratio_mask=decay_mask, momentum=c.momentum)


OPTIMIZER = Optimizer('lars', _build, base_learning_rate=0.3, weight_decay=1e-4)
