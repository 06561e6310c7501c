"""ADC (arXiv 2508.13596): ``ν · DCM + υ · LPM`` on the projections of both views, with the
frozen prior's features for the LPM (docs/maths.md §3).

DCM alone (``υ = 0``, unit weights) reads no prior; the LPM and the entropy-weighted DCM do.
Defaults: ``ν = υ = 0.1``, ``σ² = 0.5`` for both kernels, ``ρ = 5`` (the Student-t's degrees of
freedom, ``> 2``), ``β = M - 1`` (``None``), dense (``block_size=None``).
"""

from glf_jax.losses import checks
from glf_jax.losses.adc import adc
from glf_jax.losses.glf import Constraint, Term


def _needs(hyper):
  # The LPM (υ > 0) and the entropy-weighted DCM read the prior; DCM alone does not.
  with_prior = hyper['upsilon'] > 0 or hyper['entropy_weights_without_lpm']
  return ('z1', 'z2', 'prior1', 'prior2') if with_prior else ('z1', 'z2')


def _loss(outputs, batch, **hyper):
  del batch
  return adc(outputs['z1'], outputs['z2'], outputs.get('prior1'), outputs.get('prior2'), **hyper)


def _check(hyper, where):
  for key in ('nu', 'upsilon'):
    checks.check_nonnegative(f'{where}.{key}', hyper[key])
  for key in ('sigma2', 'sigma2_prior'):
    checks.check_positive(f'{where}.{key}', hyper[key])
  checks.check_greater(f'{where}.rho', hyper['rho'], 2.0)
  if hyper['beta'] is not None:
    checks.check_positive(f'{where}.beta', hyper['beta'])
  checks.check_positive_int(f'{where}.block_size', hyper['block_size'], optional=True)


CONSTRAINT = Constraint('adc', Term(
    _loss, dict(nu=0.1, upsilon=0.1, sigma2=0.5, sigma2_prior=0.5, rho=5.0, beta=None,
                entropy_weights_without_lpm=False, block_size=None),
    check=_check, needs=_needs, unset_types=dict(beta=float)))
