"""Optimisers of ``config.optim.name``, one module each (the package is the registry,
``glf_jax.registry``): ``lars``, ``sgd``, ``adamw``."""

from glf_jax import registry
from glf_jax.train.optimizers.base import Optimizer

OPTIMIZERS: dict[str, Optimizer] = registry.collect(__name__, 'OPTIMIZER', Optimizer)

__all__ = ['OPTIMIZERS', 'Optimizer']
