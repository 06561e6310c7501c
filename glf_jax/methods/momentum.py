"""An exponential-moving-average (momentum) copy of the online encoder: BYOL's target network,
MoCo v3's momentum encoder.

Only the parts a momentum encoder has are copied and averaged (:data:`MOMENTUM_PARTS`: backbone
and projector — solo-learn's ``momentum_pairs``); the predictor stays online-only. The copy lives
in the method's extra state, ``state['method'] = {'target_params', 'target_batch_stats'}``, runs
in train mode (batch statistics, its own running averages) without gradient, and after every
update moves towards the online weights with ``τ_k = 1 - (1 - τ_base)(cos(πk/K) + 1)/2``
(BYOL §3.2), from ``settings['ema_base']`` at step 0 to 1 at the last step ``K``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from glf_jax.methods.base import projections_and_predictions

MOMENTUM_PARTS = ('backbone', 'projector')


def _momentum_parts(tree: nnx.State) -> nnx.State:
  return nnx.filter_state(tree, lambda path, _: path[0] in MOMENTUM_PARTS)


def init_target(params, batch_stats, run) -> dict:
  """The target starts as a copy of the online network (BYOL §3.1)."""
  del run
  return {'target_params': jax.tree.map(jnp.copy, _momentum_parts(params)),
          'target_batch_stats': jax.tree.map(jnp.copy, _momentum_parts(batch_stats))}


def target_projections(state, views, forward, run):
  """``(z of the target over both views, method state with its new BatchNorm statistics)``."""
  del run
  target = state['method']
  # The online predictor and classifier fill the parts a target lacks; embed() never calls them.
  params = nnx.merge_state(state['params'], target['target_params'])
  batch_stats = nnx.merge_state(state['batch_stats'], target['target_batch_stats'])
  out, new_stats = forward(params, batch_stats, views, apply=lambda model, x: model.embed(x))
  new_state = {'target_params': target['target_params'],
               'target_batch_stats': _momentum_parts(new_stats)}
  return jax.lax.stop_gradient(out['z'].astype(jnp.float32)), new_state


def target_side_outputs(names: tuple[str, str]):
  """A ``side_outputs`` hook: the target's projections of view 1 and view 2 under ``names``."""
  def side_outputs(state, views, forward, run):
    n = views.shape[0] // 2
    target_z, method_state = target_projections(state, views, forward, run)
    return {names[0]: target_z[:n], names[1]: target_z[n:]}, method_state
  return side_outputs


def ema_decay(step, run):
  """``τ_k``, cosine from ``run.settings['ema_base']`` to 1 over the run."""
  base = run.settings['ema_base']
  progress = jnp.minimum(step / max(run.total_steps, 1), 1.0)
  return 1.0 - (1.0 - base) * (jnp.cos(jnp.pi * progress) + 1.0) / 2.0


def ema_update(params, method_state, step, run):
  """``target ← τ target + (1 - τ) online`` (after the optimiser's update of ``params``)."""
  tau = ema_decay(step, run)
  target = jax.tree.map(lambda t, o: tau * t + (1.0 - tau) * o, method_state['target_params'],
                        _momentum_parts(params))
  return params, {**method_state, 'target_params': target}, {'ema_decay': tau}


def check_ema_base(settings) -> None:
  base = settings['ema_base']
  if not 0.0 <= base <= 1.0:
    raise ValueError(f'method.ema_base must lie in [0, 1], got {base!r}')


def momentum_hooks(targets: tuple[str, str], predictions: tuple[str, str]) -> dict:
  """What a method with a momentum target adds to its ``Method``: the BYOL view pair, the EMA's
  ``ema_base`` setting (0.99) and its check, the target as extra state, its projections of the
  two views as ``targets``, the online predictor's outputs as ``predictions``, and the EMA
  update after each step."""
  return dict(augment='byol', settings=dict(ema_base=0.99), check_settings=check_ema_base,
              init_state=init_target, side_outputs=target_side_outputs(targets),
              objective_inputs=projections_and_predictions(predictions), after_update=ema_update)
