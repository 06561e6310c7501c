"""The balanced contrastive loss (arXiv 2510.10572) on SimCLR's heads (``methods.simclr``).

Loss scale: ``mean_i [-s(z_i, z_pos(i)) + (λ/α) log Σ_{k ∉ {i, pos(i)}} exp(α s(z_i, z_k))]``
over the ``2N`` rows (docs/maths.md §2); with ``include_positive=True``, ``α = 1/τ``, ``λ = 1`` it is
``τ ·`` SimCLR's loss. Paper's best: ``α = 4, λ = 2``.
"""

from glf_jax.losses import checks
from glf_jax.losses.contrastive import balanced_contrastive
from glf_jax.methods import simclr
from glf_jax.methods.base import Method

def _check(hyper, where):
  checks.check_positive(f'{where}.alpha', hyper['alpha'])
  checks.check_positive(f'{where}.lam', hyper['lam'])
  simclr.check_pairwise(hyper, where)


METHOD = Method(name='balanced', heads=simclr.HEADS, term=simclr.pairwise_term(
    balanced_contrastive, check=_check, alpha=4.0, lam=2.0, include_positive=False))
