"""MoCo v3 (Chen, Xie & He 2021, arXiv 2104.02057): an online predictor's queries against a
momentum encoder's keys, InfoNCE over the global batch.

Loss scale: ``ctr(q1, k2) + ctr(q2, k1)``, ``ctr(q, k) = 2τ · CE(q kᵀ/τ, diag)`` on ℓ2-normalised
rows (the paper's pseudo-code), ``τ = 0.2``.
Heads (the ResNet form, as solo-learn): projector ``→ 4096 → 256`` ending in an affine-free
BatchNorm, predictor ``256 → 4096 → 256``. The momentum encoder (``methods.momentum``: backbone +
projector) follows the online one with a cosine decay from ``ema_base`` = 0.99 to 1.
Views: BYOL's asymmetric augmentation pair, as the paper.
"""

from glf_jax.losses import checks
from glf_jax.losses.glf import Term
from glf_jax.losses.mocov3 import mocov3
from glf_jax.methods import momentum
from glf_jax.methods.base import Method

METHOD = Method(
    name='mocov3',
    term=Term(lambda o, b, **h: mocov3(o['q1'], o['q2'], o['k1'], o['k2'], **h),
              dict(temperature=0.2), needs=('q1', 'q2', 'k1', 'k2'),
              check=lambda h, where: checks.check_positive(f'{where}.temperature',
                                                           h['temperature'])),
    heads=dict(projector_layers=2, projector_hidden_dim=4096, projection_dim=256,
               projector_last_bn=True, predictor_layers=2, predictor_hidden_dim=4096),
    **momentum.momentum_hooks(targets=('k1', 'k2'), predictions=('q1', 'q2')),
)
