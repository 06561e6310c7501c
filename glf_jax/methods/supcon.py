"""SupCon, the supervised contrastive loss (Khosla et al. 2020, eq. 2 "L_out"), on SimCLR's heads
(``methods.simclr``): one of the supervised objectives the alignment study compares NSCL with.

Loss scale: the mean over the ``2N`` rows of ``-(1/|P(i)|) Σ_{p ∈ P(i)} [s_ip/τ - log Σ_{a≠i}
exp(s_ia/τ)]`` (docs/maths.md §2). Needs labels.
"""

from glf_jax.losses.contrastive import supcon
from glf_jax.methods import simclr
from glf_jax.methods.base import Method

METHOD = Method(name='supcon', term=simclr.pairwise_term(supcon, labels=True, temperature=0.1),
                heads=simclr.HEADS)
