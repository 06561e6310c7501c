"""W-MSE (Ermolov et al. 2021, arXiv 2007.06346): whitening of the projections in sub-batches,
then the MSE of the normalised whitened positives.

Loss scale: ``(1/w_iter) Σ_it [2 - 2 mean_i cos(w1_i, w2_i)]`` — in [0, 4] (the official code's
``norm_mse_loss`` averaged over the ``w_iter`` random partitions into sub-batches of ``w_size``).
Heads: projector ``→ 1024 → 64`` (solo-learn's CIFAR W-MSE); ``w_size = 128``, ``w_iter = 1``.
The random partitions come from the step's loss key (``batch['key']``), so they are a function
of the run's seed and step, and a resumed run draws the same ones.
"""

from glf_jax.losses import checks
from glf_jax.losses.glf import Term
from glf_jax.losses.wmse import DEFAULT_EPS, wmse
from glf_jax.methods.base import Method

def _check(hyper, where):
  checks.check_positive_int(f'{where}.w_size', hyper['w_size'])
  checks.check_positive_int(f'{where}.w_iter', hyper['w_iter'])
  checks.check_nonnegative(f'{where}.eps', hyper['eps'])


METHOD = Method(
    name='wmse',
    term=Term(lambda o, b, **h: wmse(o['z1'], o['z2'], b['key'], **h),
              dict(w_size=128, w_iter=1, eps=DEFAULT_EPS), needs_key=True, check=_check),
    heads=dict(projector_layers=2, projector_hidden_dim=1024, projection_dim=64),
)
