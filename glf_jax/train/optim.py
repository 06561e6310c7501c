"""Optimisers and learning-rate schedules from ``config.optim`` (optax).

* ``lars`` (You et al. 2017, arXiv 1708.03888; SimCLR/BYOL's ImageNet optimiser): BatchNorm
  parameters and biases are excluded from both weight decay and the trust-ratio adaptation, as in
  SimCLR's and BYOL's code.
* ``sgd``: SGD with (Nesterov-free) momentum and decoupled-from-nothing L2 weight decay
  (``add_decayed_weights`` before momentum, i.e. PyTorch's ``weight_decay``), same exclusions.
* ``adamw``: AdamW, same exclusions.

Schedule: linear warm-up from 0 to the peak, then cosine decay to ``final_lr_fraction · peak``.
The peak is ``base_learning_rate · s(global_batch / 256)`` with the ``lr_scaling`` rule ``s``:
``linear`` (SimCLR appendix B.1), ``sqrt``, ``fourth_root`` (the batch-size study of arXiv
2510.08852 uses all of these) or ``none``.
"""

from __future__ import annotations

import ml_collections
import optax

from glf_jax.models.params import decay_mask

OPTIMIZERS = ('lars', 'sgd', 'adamw')
# ratio = global batch / 256 -> the factor on the base learning rate.
LR_SCALINGS = {'linear': lambda ratio: ratio, 'sqrt': lambda ratio: ratio ** 0.5,
               'fourth_root': lambda ratio: ratio ** 0.25, 'none': lambda ratio: 1.0}


def default_optim_config(name: str = 'lars') -> ml_collections.ConfigDict:
  """``config.optim`` with solo-learn-like CIFAR defaults for ``name``."""
  if name not in OPTIMIZERS:
    raise ValueError(f'optim.name must be one of {list(OPTIMIZERS)}, got {name!r}')
  return ml_collections.ConfigDict(dict(
      name=name,
      base_learning_rate={'lars': 0.3, 'sgd': 0.3, 'adamw': 1e-3}[name],
      lr_scaling='linear',
      weight_decay={'lars': 1e-4, 'sgd': 5e-4, 'adamw': 1e-4}[name],
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
    raise ValueError(f'optim.name must be one of {list(OPTIMIZERS)}, got {c.name!r}')
  if c.weight_decay < 0:
    raise ValueError(f'optim.weight_decay must be >= 0, got {c.weight_decay}')
  if not 0.0 <= c.momentum < 1.0:
    raise ValueError(f'optim.momentum must lie in [0, 1), got {c.momentum}')
  if c.grad_clip_norm < 0:
    raise ValueError(f'optim.grad_clip_norm must be >= 0 (0: off), got {c.grad_clip_norm}')
  if c.name == 'lars':
    tx = optax.lars(schedule, weight_decay=c.weight_decay, weight_decay_mask=decay_mask,
                    trust_coefficient=c.lars_eta, trust_ratio_mask=decay_mask,
                    momentum=c.momentum)
  elif c.name == 'sgd':
    tx = optax.chain(optax.add_decayed_weights(c.weight_decay, mask=decay_mask),
                     optax.sgd(schedule, momentum=c.momentum or None))
  else:
    tx = optax.adamw(schedule, weight_decay=c.weight_decay, mask=decay_mask)
  if c.grad_clip_norm > 0:
    tx = optax.chain(optax.clip_by_global_norm(c.grad_clip_norm), tx)
  return tx
