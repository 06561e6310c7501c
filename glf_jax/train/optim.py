"""Optimisers and learning-rate schedules from ``config.optim`` (optax).

The optimisers are ``glf_jax.train.optimizers`` (``lars``, ``sgd``, ``adamw``: BatchNorm
parameters and biases excluded from weight decay, and from LARS's trust ratio).

Schedule: linear warm-up from 0 to the peak, then cosine decay to ``final_lr_fraction · peak``.
The peak is ``base_learning_rate · s(global_batch / 256)`` with the ``lr_scaling`` rule ``s``:
``linear`` (SimCLR appendix B.1), ``sqrt``, ``fourth_root`` (the batch-size study of arXiv
2510.08852 uses all of these) or ``none``.
"""

from __future__ import annotations

import ml_collections
import optax

from glf_jax.train.optimizers import OPTIMIZERS
# ratio = global batch / 256 -> the factor on the base learning rate.
LR_SCALINGS = {'linear': lambda ratio: ratio, 'sqrt': lambda ratio: ratio ** 0.5,
               'fourth_root': lambda ratio: ratio ** 0.25, 'none': lambda ratio: 1.0}


def default_optim_config(name: str = 'lars') -> ml_collections.ConfigDict:
  """``config.optim`` with solo-learn-like CIFAR defaults for ``name``."""
  if name not in OPTIMIZERS:
    raise ValueError(f'optim.name must be one of {sorted(OPTIMIZERS)}, got {name!r}')
  return ml_collections.ConfigDict(dict(
      name=name,
      base_learning_rate=OPTIMIZERS[name].base_learning_rate,
      lr_scaling='linear',
      weight_decay=OPTIMIZERS[name].weight_decay,
      momentum=0.9,
      lars_eta=0.02,
      warmup_epochs=10.0,
      final_lr_fraction=0.0,
      grad_clip_norm=0.0,     # 0: no clipping
  ))


def peak_learning_rate(optim_config: ml_collections.ConfigDict, global_batch_size: int) -> float:
  base = float(optim_config.base_learning_rate)
  if base <= 0:
    raise ValueError(f'optim.base_learning_rate must be > 0, got {base}')
  if optim_config.lr_scaling not in LR_SCALINGS:
    raise ValueError(f'optim.lr_scaling must be one of {list(LR_SCALINGS)}, got '
                     f'{optim_config.lr_scaling!r}')
  return base * LR_SCALINGS[optim_config.lr_scaling](global_batch_size / 256)


def learning_rate_schedule(optim_config: ml_collections.ConfigDict, *, global_batch_size: int,
                           total_steps: int, steps_per_epoch: int) -> optax.Schedule:
  """Linear warm-up (``warmup_epochs``) then cosine decay over the remaining steps."""
  if total_steps < 1:
    raise ValueError(f'total training steps must be >= 1, got {total_steps}')
  if optim_config.warmup_epochs < 0:
    raise ValueError(f'optim.warmup_epochs must be >= 0, got {optim_config.warmup_epochs}')
  if not 0.0 <= optim_config.final_lr_fraction <= 1.0:
    raise ValueError(f'optim.final_lr_fraction must lie in [0, 1], got '
                     f'{optim_config.final_lr_fraction}')
  peak = peak_learning_rate(optim_config, global_batch_size)
  warmup = min(int(round(optim_config.warmup_epochs * steps_per_epoch)), total_steps - 1)
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=peak, warmup_steps=warmup, decay_steps=total_steps,
      end_value=peak * optim_config.final_lr_fraction)


def make_optimizer(optim_config: ml_collections.ConfigDict,
                   schedule: optax.Schedule) -> optax.GradientTransformation:
  """The optax optimiser ``optim_config.name`` with ``schedule`` and the decay/LARS masks."""
  c = optim_config
  if c.name not in OPTIMIZERS:
    raise ValueError(f'optim.name must be one of {sorted(OPTIMIZERS)}, got {c.name!r}')
  if c.weight_decay < 0:
    raise ValueError(f'optim.weight_decay must be >= 0, got {c.weight_decay}')
  if not 0.0 <= c.momentum < 1.0:
    raise ValueError(f'optim.momentum must lie in [0, 1), got {c.momentum}')
  if c.grad_clip_norm < 0:
    raise ValueError(f'optim.grad_clip_norm must be >= 0 (0: off), got {c.grad_clip_norm}')
  tx = OPTIMIZERS[c.name].build(c, schedule)
  if c.grad_clip_norm > 0:
    tx = optax.chain(optax.clip_by_global_norm(c.grad_clip_norm), tx)
  return tx
