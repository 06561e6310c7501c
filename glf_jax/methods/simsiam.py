"""SimSiam (Chen & He 2021, arXiv 2011.10566): a predictor and a stop-gradient, no negatives and
no momentum encoder.

Loss scale: ``½ D(p1, sg z2) + ½ D(p2, sg z1)`` with ``D = -mean cos`` — in [-1, 1] (paper eq. 2).
Heads: solo-learn's CIFAR SimSiam — projector ``→ 2048 → 2048 → 2048`` with an affine-free
BatchNorm on the output, predictor bottleneck ``2048 → 512 → 2048``. Optimiser (paper appendix
D, CIFAR): SGD, momentum 0.9, learning rate ``0.03 · batch / 256``, weight decay 5e-4.
"""

from glf_jax.losses.glf import Term
from glf_jax.losses.simsiam import simsiam
from glf_jax.methods.base import Method, projections_and_predictions

METHOD = Method(
    name='simsiam',
    term=Term(lambda o, b: simsiam(o['p1'], o['p2'], o['z1'], o['z2']), {},
              needs=('p1', 'p2', 'z1', 'z2')),
    heads=dict(projector_layers=3, projector_hidden_dim=2048, projection_dim=2048,
               projector_last_bn=True, predictor_layers=2, predictor_hidden_dim=512),
    objective_inputs=projections_and_predictions(),
)
