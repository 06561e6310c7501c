"""SimCLR (Chen et al. 2020, arXiv 2002.05709): generalised NT-Xent over the ``2N`` projections.

Loss scale: the mean over the ``M = 2N`` rows of ``-s(z_i, z_pos(i))/τ + log Σ_{k≠i}
exp(s(z_i, z_k)/τ)`` (SPEC §2), i.e. SimCLR eq. 1 averaged over both views, as solo-learn.
Heads: a 2-layer projector ``h → 2048 → 128`` (BatchNorm after the hidden layer, as the official
TF code and solo-learn). NSCL, SupCon, the balanced loss and cross-entropy share these heads, so
runs of those methods with one seed start from the same backbone and projector.
"""

from glf_jax.losses.contrastive import nt_xent
from glf_jax.losses.glf import Term
from glf_jax.methods.base import Method

# The heads of the whole contrastive family (this module, balanced, nscl, supcon, ce).
HEADS = dict(projector_layers=2, projector_hidden_dim=2048, projection_dim=128)
PAIRWISE = dict(similarity='cosine', block_size=None)
# solo-learn's tuned CIFAR ResNet-18 settings (LARS; projection 256), ImageNet τ = 0.1 (SPEC §2).
CIFAR_OPTIM = dict(name='lars', base_learning_rate=0.4, weight_decay=1e-5)
CIFAR_MODEL = dict(projection_dim=256)

METHOD = Method(
    name='simclr',
    term=Term(lambda o, b, **h: nt_xent(o['z1'], o['z2'], **h), dict(temperature=0.5, **PAIRWISE)),
    heads=HEADS,
    recipes={'cifar': dict(optim=CIFAR_OPTIM, model=CIFAR_MODEL,
                           objective=dict(temperature=0.2)),
             'imagenet': dict(objective=dict(temperature=0.1))},
)
