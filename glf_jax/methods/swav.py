"""SwAV (Caron et al. 2020, arXiv 2006.09882): swapped prediction of Sinkhorn-Knopp codes over
``K`` prototypes.

Loss scale: ``½ mean_n [-Σ_k q2 log softmax(p1/τ) - Σ_k q1 log softmax(p2/τ)]`` (paper eq. 1, the
mean of the two swapped cross-entropies), codes over the global batch (docs/maths.md §2).
Heads: projector ``→ 2048 → 128`` and ``K = 3000`` ℓ2-normalised prototypes (the encoder's
``prototypes`` parameter). The prototypes stay frozen for the first ``freeze_prototypes_epochs``
epochs and are re-normalised after every update.
"""

import jax.numpy as jnp

from glf_jax.losses import checks
from glf_jax.losses.glf import Term
from glf_jax.losses.similarity import l2_normalize
from glf_jax.losses.swav import swav
from glf_jax.methods.base import Method, map_part, projections


def _frozen(step, run):
  return step < int(round(run.settings['freeze_prototypes_epochs'] * run.steps_per_epoch))


def _objective_inputs(out, params, n):
  return {**projections(out, params, n),
          'prototypes': params['prototypes'][...].astype(jnp.float32)}


def _filter_updates(updates, step, run):
  frozen = _frozen(step, run)
  return map_part(updates, 'prototypes', lambda u: jnp.where(frozen, jnp.zeros_like(u), u))


def _renormalise(params, method_state, step, run):
  frozen = _frozen(step, run)
  # Frozen prototypes stay bit-identical (re-normalising unit rows would still round).
  params = map_part(params, 'prototypes', lambda c: jnp.where(frozen, c, l2_normalize(c)))
  return params, method_state, {}


def _check_hyperparameters(hyper, where):
  checks.check_positive(f'{where}.temperature', hyper['temperature'])
  checks.check_positive(f'{where}.epsilon', hyper['epsilon'])
  checks.check_positive_int(f'{where}.sinkhorn_iters', hyper['sinkhorn_iters'])


def _check_settings(settings):
  if not settings['freeze_prototypes_epochs'] >= 0:
    raise ValueError('method.freeze_prototypes_epochs must be >= 0, got '
                     f'{settings["freeze_prototypes_epochs"]!r}')


METHOD = Method(
    name='swav',
    term=Term(lambda o, b, **h: swav(o['z1'], o['z2'], o['prototypes'], **h),
              dict(temperature=0.1, epsilon=0.05, sinkhorn_iters=3),
              needs=('z1', 'z2', 'prototypes'), check=_check_hyperparameters),
    heads=dict(projector_layers=2, projector_hidden_dim=2048, projection_dim=128,
               num_prototypes=3000),
    settings=dict(freeze_prototypes_epochs=1.0),
    check_settings=_check_settings,
    objective_inputs=_objective_inputs,
    filter_updates=_filter_updates,
    after_update=_renormalise,
)
