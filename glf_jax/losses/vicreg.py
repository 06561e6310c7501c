"""VICReg (Bardes, Ponce & LeCun 2022, arXiv 2105.04906): variance, invariance, covariance."""

from __future__ import annotations

import jax.numpy as jnp

from glf_jax.losses import checks

__all__ = ['vicreg']


def _variance(z, gamma, eps):
  """``mean_d relu(γ - sqrt(Var_d(z) + ε))``, the variance over the batch unbiased (N - 1)."""
  std = jnp.sqrt(jnp.var(z, axis=0, ddof=1) + eps)
  return jnp.mean(jnp.maximum(gamma - std, 0.0)), jnp.mean(std)


def _covariance(z):
  """``Σ_{d≠e} C_de² / D`` with ``C`` the (N - 1)-normalised covariance of ``z``."""
  n, d = z.shape
  centred = z - jnp.mean(z, axis=0)
  cov = centred.T @ centred / (n - 1)
  return (jnp.sum(jnp.square(cov)) - jnp.sum(jnp.square(jnp.diagonal(cov)))) / d


def vicreg(z1, z2, *, sim_weight=25.0, var_weight=25.0, cov_weight=1.0, gamma=1.0, eps=1e-4):
  """``λ·s(z1, z2) + μ·[v(z1) + v(z2)] + ν·[c(z1) + c(z2)]`` (VICReg eq. 6, as solo-learn).

  ``s``: the mean squared error of the two views (mean over the ``N·D`` entries); ``v``: the mean
  hinge ``relu(γ - std_d)`` of each dimension's standard deviation over the batch
  (``sqrt(var + ε)``, unbiased); ``c``: the sum of the squared off-diagonal entries of the
  covariance over ``D``. Defaults ``λ = μ = 25``, ``ν = 1``, ``γ = 1``, ``ε = 1e-4``. Computed on
  the global batch (sharded rows give the single-device value). ``aux``: the unweighted
  ``invariance``, ``variance`` and ``covariance`` parts and the mean standard deviation
  ``std``.
  """
  checks.check_views(z1, z2)
  for name, value in (('sim_weight', sim_weight), ('var_weight', var_weight),
                      ('cov_weight', cov_weight), ('eps', eps)):
    checks.check_nonnegative(name, value)
  checks.check_positive('gamma', gamma)
  if z1.shape[0] < 2:
    raise ValueError('vicreg needs N >= 2 images for the variance over the batch')
  dtype = checks.compute_dtype(z1, z2)
  a, b = z1.astype(dtype), z2.astype(dtype)
  invariance = jnp.mean(jnp.square(a - b))
  var_a, std_a = _variance(a, gamma, eps)
  var_b, std_b = _variance(b, gamma, eps)
  variance = var_a + var_b
  covariance = _covariance(a) + _covariance(b)
  loss = sim_weight * invariance + var_weight * variance + cov_weight * covariance
  return loss, {'vicreg': loss, 'invariance': invariance, 'variance': variance,
                'covariance': covariance, 'std': 0.5 * (std_a + std_b)}
