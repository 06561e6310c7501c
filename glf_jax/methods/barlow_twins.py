"""Barlow Twins (Zbontar et al. 2021, arXiv 2103.03230): redundancy reduction of the
cross-correlation of the two views' standardised projections.

Loss scale: ``Σ_d (1 - C_dd)² + λ Σ_{d≠e} C_de²`` (paper eq. 1, a sum over dimensions, not a
mean), ``λ = 5e-3`` (5.1e-3 in solo-learn's CIFAR recipe).
Heads: a 3-layer projector ``→ 2048 → 2048 → 2048`` (8192 on ImageNet in the paper; solo-learn's
CIFAR width), no bias on the last layer, as the official code.
"""

from glf_jax.losses.barlow_twins import barlow_twins
from glf_jax.losses import checks
from glf_jax.losses.glf import Term
from glf_jax.methods.base import Method

METHOD = Method(
    name='barlow_twins',
    term=Term(lambda o, b, **h: barlow_twins(o['z1'], o['z2'], **h), dict(lambda_offdiag=5e-3),
              check=lambda h, where: checks.check_nonnegative(f'{where}.lambda_offdiag',
                                                              h['lambda_offdiag'])),
    heads=dict(projector_layers=3, projector_hidden_dim=2048, projection_dim=2048,
               projector_last_bias=False),
)
