"""GLF losses: pure, jittable functions of arrays returning ``(loss, aux)`` (SPEC §1-3)."""

from glf_jax.losses.adc import adc, dcm, lpm
from glf_jax.losses.barlow_twins import barlow_twins
from glf_jax.losses.byol import byol
from glf_jax.losses.contrastive import balanced_contrastive, cross_entropy, nscl, nt_xent, supcon
from glf_jax.losses.mocov3 import mocov3
from glf_jax.losses.simsiam import simsiam
from glf_jax.losses.swav import sinkhorn_knopp, swav
from glf_jax.losses.wmse import whiten, wmse, wmse_permutations

__all__ = [
    'adc', 'balanced_contrastive', 'barlow_twins', 'byol', 'cross_entropy',
    'dcm', 'lpm', 'mocov3', 'nscl', 'nt_xent', 'simsiam', 'sinkhorn_knopp', 'supcon', 'swav',
    'whiten', 'wmse', 'wmse_permutations',
]
