"""NSCL, the negatives-only supervised contrastive loss (arXiv 2506.04411, used by 2510.08852),
on SimCLR's heads (``methods.simclr``): a SimCLR and an NSCL run with one seed start from one
parameter copy and see the same batches and views — the shared-randomness set-up of 2510.08852.

Loss scale: as SimCLR's (mean over the ``2N`` rows), with the anchor's same-class rows other than
its positive removed from the denominator (docs/maths.md §2). Needs labels.
"""

from glf_jax.losses.contrastive import nscl
from glf_jax.methods import simclr
from glf_jax.methods.base import Method

METHOD = Method(name='nscl', term=simclr.pairwise_term(nscl, labels=True, temperature=0.5),
                heads=simclr.HEADS)
