"""SimCLR (Chen et al. 2020, arXiv 2002.05709): generalised NT-Xent over the ``2N`` projections.

Loss scale: the mean over the ``M = 2N`` rows of ``-s(z_i, z_pos(i))/τ + log Σ_{k≠i}
exp(s(z_i, z_k)/τ)`` (docs/maths.md §2), i.e. SimCLR eq. 1 averaged over both views, as solo-learn.
Heads: a 2-layer projector ``h → 2048 → 128`` (BatchNorm after the hidden layer, as the official
TF code and solo-learn). NSCL, SupCon, the balanced loss and cross-entropy share these heads, so
runs of those methods with one seed start from the same backbone and projector.
"""

from glf_jax.losses import checks
from glf_jax.losses.contrastive import nt_xent
from glf_jax.losses.glf import Term
from glf_jax.losses.similarity import SIMILARITIES
from glf_jax.methods.base import Method

# The heads of the whole contrastive family (this module, balanced, nscl, supcon, ce).
HEADS = dict(projector_layers=2, projector_hidden_dim=2048, projection_dim=128)
# The pairwise similarity every contrastive loss of the family takes, and its check.
PAIRWISE = dict(similarity='cosine', block_size=None)


def check_pairwise(hyper, where):
  checks.check_choice(f'{where}.similarity', hyper['similarity'], SIMILARITIES)
  checks.check_positive_int(f'{where}.block_size', hyper['block_size'], optional=True)


def check_temperature_and_pairwise(hyper, where):
  checks.check_positive(f'{where}.temperature', hyper['temperature'])
  check_pairwise(hyper, where)


def pairwise_term(loss, *, labels: bool = False, check=check_temperature_and_pairwise,
                  **defaults) -> Term:
  """The term of a pairwise contrastive ``loss(z1, z2[, labels], **h)`` of the family: its own
  ``defaults`` plus :data:`PAIRWISE`, checked by ``check``."""
  def term_loss(o, b, **h):
    return loss(o['z1'], o['z2'], b['label'], **h) if labels else loss(o['z1'], o['z2'], **h)
  return Term(term_loss, {**defaults, **PAIRWISE}, check=check, needs_labels=labels)


METHOD = Method(
    name='simclr',
    term=pairwise_term(nt_xent, temperature=0.5),
    heads=HEADS,
)
