"""BYOL regression loss (Grill et al. 2020, eq. 2 and its symmetrisation)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from glf_jax.losses import checks
from glf_jax.losses.similarity import l2_normalize, stack_views

__all__ = ['byol']


def byol(p1, p2, t1, t2):
  """``L + L~ = mean_n (2 - 2 cos(p1_n, sg(t2_n))) + mean_n (2 - 2 cos(p2_n, sg(t1_n)))``.

  Args:
    p1, p2: online predictions ``q(z)`` of view 1 and view 2, ``[N, D]``.
    t1, t2: target (EMA) projections of view 1 and view 2, ``[N, D]``; gradients are stopped.

  Each prediction regresses the target of the *other* view. This is the paper's scale (BYOL eq. 2
  symmetrised, as solo-learn): both directions' batch means summed, i.e. twice the mean over the
  ``M = 2N`` rows, so the loss lies in ``[0, 8]``. ADC's ``ν, υ`` weigh against this scale.
  """
  checks.check_views(p1, p2, names=('p1', 'p2'))
  checks.check_views(t1, t2, names=('t1', 't2'))
  if p1.shape != t1.shape:
    raise ValueError(f'predictions and targets must have the same shape, got {p1.shape} and '
                     f'{t1.shape}')
  p = l2_normalize(stack_views(p1, p2))
  t = jax.lax.stop_gradient(l2_normalize(stack_views(t2, t1)))  # row i's target: other view
  cos = jnp.sum(p * t, axis=-1)
  loss = 2.0 * jnp.mean(2.0 - 2.0 * cos)  # the mean over 2N rows is half of L + L~
  return loss, {'byol': loss, 'pos_sim': jnp.mean(cos)}
