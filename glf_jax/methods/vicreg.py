"""VICReg (Bardes, Ponce & LeCun 2022, arXiv 2105.04906): the views' projections kept invariant,
their dimensions' variance above a margin and their covariance decorrelated; no negatives, no
momentum encoder.

Loss scale: ``25·MSE + 25·[v(z1) + v(z2)] + 1·[c(z1) + c(z2)]`` (``glf_jax.losses.vicreg``, as
solo-learn: invariance 25, variance 25 with γ = 1 and ε = 1e-4, covariance 1).
Heads: solo-learn's CIFAR projector ``→ 2048 → 2048 → 2048`` (BatchNorm and ReLU after the hidden
layers). Views: BYOL's asymmetric pair (the paper's).
"""

from glf_jax.losses import checks
from glf_jax.losses.glf import Term
from glf_jax.losses.vicreg import vicreg
from glf_jax.methods.base import Method


def _check(hyper, where):
  for key in ('sim_weight', 'var_weight', 'cov_weight', 'eps'):
    checks.check_nonnegative(f'{where}.{key}', hyper[key])
  checks.check_positive(f'{where}.gamma', hyper['gamma'])


METHOD = Method(
    name='vicreg',
    term=Term(lambda o, b, **h: vicreg(o['z1'], o['z2'], **h),
              dict(sim_weight=25.0, var_weight=25.0, cov_weight=1.0, gamma=1.0, eps=1e-4),
              check=_check),
    heads=dict(projector_layers=3, projector_hidden_dim=2048, projection_dim=2048),
    augment='byol',
)
