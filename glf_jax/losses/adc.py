"""ADC — Adaptive Distribution Calibration (arXiv 2508.13596), docs/maths.md §3.

On the ``M`` ℓ2-normalised rows of both views, with ``d_ij = |z_i - z_j|²`` and ``j ≠ i``:

* calibration target ``P_ij = sg(softmax_j(-d_ij / 2σ²))`` (Gaussian, recomputed every step);
* Student-t ``Q_ij ∝ (1 + d_ij/(ρσ²))^(-(ρ+1)/2)``, ``ρ > 2`` degrees of freedom;
* DCM: ``(1/M) Σ_i w_i KL(P_i ‖ Q_i)`` — pulls near rows closer and pushes far rows apart;
* LPM: a frozen prior's t-distribution ``R_i`` scores ``Q_i`` under ``Dir(1 + β R_i)``:
  ``L_LPM = -(1/(Mβ)) Σ_i log Dir(Q_i; 1 + β R_i)``; entropy weights
  ``w_i = (1/H(R_i)) / mean_k(1/H(R_k))`` down-weight outlier anchors in the DCM term when LPM
  is on (``w_i = 1`` without LPM, and with ``υ = 0``: the DCM-only ablation).

Everything is a per-anchor-row quantity, so one pass of ``map_rows`` computes DCM, LPM and the
entropies together; the weights' normalisation (a global mean) is applied after the pass.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln

from glf_jax.losses import checks
from glf_jax.losses.blockwise import map_rows
from glf_jax.losses.similarity import l2_normalize, row_masks, squared_distances, stack_views

__all__ = ['adc', 'dcm', 'lpm']

# Floor for a row entropy before taking 1/H: only a batch of <= 2 distinct prior rows gets near it.
_MIN_ENTROPY = 1e-6


def _check_adc_hyperparameters(sigma2, rho):
  checks.check_positive('sigma2', sigma2)
  checks.check_greater('rho (Student-t degrees of freedom)', rho, 2.0)


def _student_t_logits(d, sigma2, rho):
  """Unnormalised log-density of the Student-t kernel; the Gaussian when ``rho = inf``."""
  if isinstance(rho, (int, float)) and math.isinf(rho):
    return -d / (2.0 * sigma2)
  return -0.5 * (rho + 1.0) * jnp.log1p(d / (rho * sigma2))


def _log_softmax(logits, keep):
  """Row log-softmax over the columns in ``keep``; ``0`` (not ``-inf``) elsewhere, so that
  ``P * log P`` terms need no NaN guard."""
  log_p = logits - jax.nn.logsumexp(logits, axis=-1, where=keep, keepdims=True)
  return jnp.where(keep, log_p, 0.0)


def _student_t_log_q(zn, rows, keep, sigma2, rho):
  return _log_softmax(_student_t_logits(squared_distances(zn, rows), sigma2, rho), keep)


def _adc_rows(z, prior, *, sigma2, sigma2_prior, rho, beta, with_dcm, with_lpm):
  """Returns ``rows -> dict of per-row terms`` for ``map_rows``."""
  num_rows = z.shape[0]

  def rows_fn(rows):
    self_mask, _ = row_masks(rows, num_rows)
    keep = ~self_mask
    d = squared_distances(z, rows)
    log_q = _log_softmax(_student_t_logits(d, sigma2, rho), keep)
    out = {}
    if with_dcm:
      log_p = jax.lax.stop_gradient(_log_softmax(-d / (2.0 * sigma2), keep))
      out['kl'] = jnp.sum(jnp.where(keep, jnp.exp(log_p) * (log_p - log_q), 0.0), axis=-1)
    if prior is not None:
      log_r = _student_t_log_q(prior, rows, keep, sigma2_prior, rho)
      r = jnp.where(keep, jnp.exp(log_r), 0.0)
      out['prior_entropy'] = -jnp.sum(r * log_r, axis=-1)
      if with_lpm:
        concentration = 1.0 + beta * r
        log_dir = (gammaln(jnp.sum(jnp.where(keep, concentration, 0.0), axis=-1))
                   - jnp.sum(jnp.where(keep, gammaln(concentration), 0.0), axis=-1)
                   + jnp.sum(jnp.where(keep, (concentration - 1.0) * log_q, 0.0), axis=-1))
        out['log_dirichlet'] = log_dir
    return out

  return rows_fn


def _prepare(z1, z2, prior1, prior2):
  checks.check_views(z1, z2)
  if z1.shape[0] < 2:
    raise ValueError('ADC needs N >= 2 images per view (each anchor needs >= 2 neighbours)')
  z = l2_normalize(stack_views(z1, z2))
  if prior1 is None and prior2 is None:
    return z, None
  if prior1 is None or prior2 is None:
    raise ValueError('give both prior1 and prior2 (prior features of both views), or neither')
  checks.check_views(prior1, prior2, names=('prior1', 'prior2'))
  if prior1.shape[0] != z1.shape[0]:
    raise ValueError(f'prior1 must have {z1.shape[0]} rows like z1, got shape {prior1.shape}')
  # The prior is frozen: no gradient ever flows into it.
  prior = jax.lax.stop_gradient(l2_normalize(stack_views(prior1, prior2)))
  return z, prior


def _resolve_beta(beta, num_rows):
  if beta is None:
    return float(num_rows - 1)
  checks.check_positive('beta', beta)
  return beta


def entropy_weights_from_entropy(prior_entropy):
  """``w_i = (1/H_i) / mean_k (1/H_k)``: mean 1, smallest for the flattest (outlier) rows."""
  inv = 1.0 / jnp.maximum(prior_entropy, _MIN_ENTROPY)
  return jax.lax.stop_gradient(inv / jnp.mean(inv))


def _check_weights(weights, num_rows):
  if weights is not None and jnp.shape(weights) != (num_rows,):
    raise ValueError(f'weights must have shape [{num_rows}] (one per row of both views), got '
                     f'shape {jnp.shape(weights)}')


def dcm(z1, z2, *, sigma2=0.5, rho=5.0, weights=None, block_size=None):
  """Distribution Calibration Module loss ``(1/M) Σ_i w_i KL(P_i ‖ Q_i)``.

  Args:
    z1, z2: ``[N, D]`` projections of the two views (normalised here).
    sigma2: Gaussian scale σ² (> 0), shared by the Student-t.
    rho: Student-t degrees of freedom ρ (> 2; ``inf`` makes Q the Gaussian and the loss 0).
    weights: optional per-row weights ``[2N]`` (the LPM entropy weights); default 1.
    block_size: ``None`` (dense) or anchors per block (memory-bounded form).
  """
  _check_adc_hyperparameters(sigma2, rho)
  z, _ = _prepare(z1, z2, None, None)
  _check_weights(weights, z.shape[0])
  per_row = map_rows(_adc_rows(z, None, sigma2=sigma2, sigma2_prior=None, rho=rho, beta=None,
                               with_dcm=True, with_lpm=False), z.shape[0], block_size)
  kl = per_row['kl']
  loss = jnp.mean(kl if weights is None else jax.lax.stop_gradient(weights) * kl)
  return loss, {'dcm': loss, 'kl_mean': jnp.mean(kl)}


def lpm(z1, z2, prior1, prior2, *, sigma2=0.5, sigma2_prior=0.5, rho=5.0, beta=None,
        block_size=None):
  """Local Preserving Module loss ``-(1/(Mβ)) Σ_i log Dir(Q_i; 1 + β R_i)``.

  ``R_i`` is the Student-t neighbour distribution of the frozen prior features ``prior1/2``
  (``[N, D_prior]``, any width). ``beta=None`` means ``M - 1``. ``aux['entropy_weights']`` holds
  the per-row weights ``w_i`` that ``adc`` applies to DCM.
  """
  _check_adc_hyperparameters(sigma2, rho)
  checks.check_positive('sigma2_prior', sigma2_prior)
  z, prior = _prepare(z1, z2, prior1, prior2)
  if prior is None:
    raise ValueError('lpm needs prior features prior1 and prior2')
  beta = _resolve_beta(beta, z.shape[0])
  per_row = map_rows(_adc_rows(z, prior, sigma2=sigma2, sigma2_prior=sigma2_prior, rho=rho,
                               beta=beta, with_dcm=False, with_lpm=True), z.shape[0], block_size)
  loss = -jnp.mean(per_row['log_dirichlet']) / beta
  weights = entropy_weights_from_entropy(per_row['prior_entropy'])
  return loss, {'lpm': loss, 'entropy_weights': weights,
                'prior_entropy': jnp.mean(per_row['prior_entropy'])}


def _known_zero(value) -> bool:
  """``value == 0`` known at trace time; a traced value (e.g. a schedule) is never "known zero"."""
  return not isinstance(value, jax.core.Tracer) and float(value) == 0.0


def adc(z1, z2, prior1=None, prior2=None, *, nu=0.1, upsilon=0.1, sigma2=0.5, sigma2_prior=0.5,
        rho=5.0, beta=None, block_size=None, entropy_weights_without_lpm=False):
  """ADC constraint: ``ν·DCM(w = 1)`` without LPM, ``ν·DCM(w = entropy weights) + υ·LPM`` with it.

  LPM is on when prior features ``prior1/2`` are given and ``υ`` is not 0. Without a prior, or with
  ``upsilon = 0`` (the DCM-only ablation, docs/maths.md §3), the DCM term has unit weights ``w_i = 1`` even
  if a prior is given (it is then not needed: ``prior1/2`` may be ``None``), so ``adc(..., upsilon=0)``
  equals ``nu * dcm(z1, z2)``. ``nu = 0`` gives the LPM-only ablation.

  Args:
    entropy_weights_without_lpm: with ``upsilon = 0``, keep the prior's entropy weights on DCM
      (``ν·DCM(w = entropy weights) + 0·LPM``, a weighted-DCM ablation); the prior must then be
      given. No effect when ``υ != 0``.

  A traced ``upsilon`` (e.g. a schedule value passed into a jitted step) cannot be compared with 0
  at trace time: with a prior it always takes the weighted path, ``ν·DCM(w) + υ·LPM``, also at
  ``υ = 0``. One pass over the rows computes both terms. ``aux`` holds the unweighted ``dcm`` and
  ``lpm`` terms and the weights (``lpm`` and the weights only when LPM/the weights are used).
  """
  checks.check_nonnegative('nu', nu)
  checks.check_nonnegative('upsilon', upsilon)
  _check_adc_hyperparameters(sigma2, rho)
  z, prior = _prepare(z1, z2, prior1, prior2)
  num_rows = z.shape[0]
  upsilon_zero = _known_zero(upsilon)
  if upsilon_zero and entropy_weights_without_lpm and prior is None:
    raise ValueError('adc with entropy_weights_without_lpm=True and upsilon = 0 needs prior '
                     'features prior1 and prior2 (for the entropy weights)')
  if prior is None or (upsilon_zero and not entropy_weights_without_lpm):
    loss, aux = dcm(z1, z2, sigma2=sigma2, rho=rho, block_size=block_size)
    return nu * loss, {'adc': nu * loss, **aux}
  checks.check_positive('sigma2_prior', sigma2_prior)
  beta = _resolve_beta(beta, num_rows)
  per_row = map_rows(_adc_rows(z, prior, sigma2=sigma2, sigma2_prior=sigma2_prior, rho=rho,
                               beta=beta, with_dcm=True, with_lpm=True), num_rows, block_size)
  weights = entropy_weights_from_entropy(per_row['prior_entropy'])
  dcm_loss = jnp.mean(weights * per_row['kl'])
  lpm_loss = -jnp.mean(per_row['log_dirichlet']) / beta
  loss = nu * dcm_loss + upsilon * lpm_loss
  return loss, {'adc': loss, 'dcm': dcm_loss, 'lpm': lpm_loss, 'kl_mean': jnp.mean(per_row['kl']),
                'entropy_weights': weights, 'prior_entropy': jnp.mean(per_row['prior_entropy'])}
