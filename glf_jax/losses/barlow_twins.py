"""Barlow Twins redundancy-reduction loss (Zbontar et al. 2021, eq. 1)."""

from __future__ import annotations

import jax.numpy as jnp

from glf_jax.losses import checks

__all__ = ['barlow_twins']


def _standardise(z, eps):
  """Per-dimension standardisation over the batch, as the paper's affine-free BatchNorm."""
  mean = jnp.mean(z, axis=0)
  var = jnp.mean(jnp.square(z - mean), axis=0)
  return (z - mean) / jnp.sqrt(var + eps)


def barlow_twins(z1, z2, *, lambda_offdiag=5e-3, eps=1e-5):
  """``Σ_d (1 - C_dd)² + λ Σ_{d≠e} C_de²`` with ``C = z1ᵀ z2 / N`` of standardised views.

  ``eps`` is added to each dimension's variance, so a constant dimension gives a finite loss.
  ``aux`` splits the aligning (on-diagonal) and constraining (off-diagonal) parts.
  """
  checks.check_views(z1, z2)
  checks.check_nonnegative('lambda_offdiag', lambda_offdiag)
  checks.check_positive('eps', eps)
  if z1.shape[0] < 2:
    raise ValueError('barlow_twins needs N >= 2 images to standardise over the batch')
  dtype = checks.compute_dtype(z1, z2)
  a = _standardise(z1.astype(dtype), eps)
  b = _standardise(z2.astype(dtype), eps)
  c = a.T @ b / z1.shape[0]
  diag = jnp.diagonal(c)
  on_diag = jnp.sum(jnp.square(1.0 - diag))
  off_diag = jnp.sum(jnp.square(c)) - jnp.sum(jnp.square(diag))
  loss = on_diag + lambda_offdiag * off_diag
  return loss, {'barlow_twins': loss, 'align': on_diag, 'constrain': lambda_offdiag * off_diag,
                'cross_corr_diag': jnp.mean(diag)}
