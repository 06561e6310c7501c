"""BYOL (Grill et al. 2020, arXiv 2006.07733): an online predictor regresses an EMA target's
projection of the other view.

Loss scale: BYOL eq. 2's symmetrised ``L + L̃``, each the batch mean of
``2 - 2 cos(q(z_i), sg(z'_pos(i)))`` — in [0, 8], as solo-learn (docs/maths.md §2). ADC's ν, υ weigh
against this scale.
Heads: projector and predictor ``→ 4096 (BN, ReLU) → 256`` (BYOL §3.3). The EMA target
(``methods.momentum``: backbone + projector) starts as a copy of the online network and its decay
goes from ``ema_base`` (0.99 CIFAR, 0.996 ImageNet) to 1 with a cosine.
Views: BYOL's asymmetric augmentation pair (BYOL table 6).
"""

from glf_jax.losses.byol import byol
from glf_jax.losses.glf import Term
from glf_jax.methods import momentum
from glf_jax.methods.base import Method

METHOD = Method(
    name='byol',
    term=Term(lambda o, b: byol(o['p1'], o['p2'], o['t1'], o['t2']), {},
              needs=('p1', 'p2', 't1', 't2')),
    heads=dict(projector_layers=2, projector_hidden_dim=4096, projection_dim=256,
               predictor_layers=2, predictor_hidden_dim=4096),
    **momentum.momentum_hooks(targets=('t1', 't2'), predictions=('p1', 'p2')),
)
