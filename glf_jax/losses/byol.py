"""BYOL regression loss (Grill et al. 2020, eq. 2 and its symmetrisation)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from glf_jax.losses import checks
from glf_jax.losses.similarity import l2_normalize, stack_views


def byol(p1, p2, t1, t2):
  """``(1/M) Σ_i (2 - 2 cos(p_i, sg(t_pos(i))))`` over both views.

  Args:
    p1, p2: online predictions ``q(z)`` of view 1 and view 2, ``[N, D]``.
    t1, t2: target (EMA) projections of view 1 and view 2, ``[N, D]``; gradients are stopped.

  Each prediction regresses the target of the *other* view; the mean over the ``M = 2N`` rows is
  half the paper's symmetrised sum ``L + L~``, which keeps the loss in ``[0, 4]``.
  """
  checks.check_views(p1, p2, names=('p1', 'p2'))
  checks.check_views(t1, t2, names=('t1', 't2'))
  if p1.shape != t1.shape:
    raise ValueError(f'predictions and targets must have the same shape, got {p1.shape} and '
                     f'{t1.shape}')
  p = l2_normalize(stack_views(p1, p2))
  t = jax.lax.stop_gradient(l2_normalize(stack_views(t2, t1)))  # row i's target: other view
  cos = jnp.sum(p * t, axis=-1)
  loss = jnp.mean(2.0 - 2.0 * cos)
  return loss, {'byol': loss, 'pos_sim': jnp.mean(cos)}
