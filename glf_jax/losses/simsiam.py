"""SimSiam negative-cosine loss (Chen & He 2021, eqs. 1-2)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from glf_jax.losses import checks
from glf_jax.losses.similarity import l2_normalize

__all__ = ['simsiam']


def _check_pairs(p1, p2, z1, z2):
  checks.check_views(p1, p2, names=('p1', 'p2'))
  checks.check_views(z1, z2, names=('z1', 'z2'))
  if p1.shape != z1.shape:
    raise ValueError(f'predictions and projections must have the same shape, got {p1.shape} and '
                     f'{z1.shape}')


def simsiam(p1, p2, z1, z2):
  """``½ D(p1, sg(z2)) + ½ D(p2, sg(z1))`` with ``D(p, z) = -mean_i cos(p_i, z_i)``.

  Args:
    p1, p2: predictions ``h(f(x))`` of view 1 and view 2, ``[N, D]``.
    z1, z2: projections ``f(x)`` of view 1 and view 2, ``[N, D]``; gradients are stopped (no EMA:
      the same network, detached).

  Each prediction regresses the projection of the *other* view. The loss is the paper's scale,
  the negative mean cosine over the ``M = 2N`` rows, so it lies in ``[-1, 1]`` (``-1`` at perfect
  alignment). ``aux['pos_sim']`` is that mean cosine (``= -loss``).
  """
  _check_pairs(p1, p2, z1, z2)
  dtype = checks.compute_dtype(p1, p2, z1, z2)
  cos12 = jnp.sum(l2_normalize(p1.astype(dtype))
                  * jax.lax.stop_gradient(l2_normalize(z2.astype(dtype))), axis=-1)
  cos21 = jnp.sum(l2_normalize(p2.astype(dtype))
                  * jax.lax.stop_gradient(l2_normalize(z1.astype(dtype))), axis=-1)
  loss = 0.5 * (-jnp.mean(cos12)) + 0.5 * (-jnp.mean(cos21))
  return loss, {'simsiam': loss, 'pos_sim': 0.5 * (jnp.mean(cos12) + jnp.mean(cos21))}
