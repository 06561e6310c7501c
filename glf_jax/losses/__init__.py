"""GLF losses: pure, jittable functions of arrays returning ``(loss, aux)`` (SPEC §1-3)."""

from glf_jax.losses.adc import adc, dcm, lpm
from glf_jax.losses.barlow_twins import barlow_twins
from glf_jax.losses.byol import byol
from glf_jax.losses.contrastive import balanced_contrastive, cross_entropy, nscl, nt_xent, supcon
from glf_jax.losses.glf import build_objective, objective_config
from glf_jax.losses.swav import sinkhorn_knopp, swav

__all__ = [
    'adc', 'balanced_contrastive', 'barlow_twins', 'build_objective', 'byol', 'cross_entropy',
    'dcm', 'lpm', 'nscl', 'nt_xent', 'objective_config', 'sinkhorn_knopp', 'supcon', 'swav',
]
