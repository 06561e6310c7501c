"""The pure pretraining step ``(state, batch, prior_state) -> (state, metrics)``, jitted.

One step (SPEC §1–3):

1. two views of the batch from the config's recipe (on the accelerator, per-example keys from
   ``fold_in(rng, step)``);
2. one forward pass of the online encoder over both views (BatchNorm statistics over the whole
   global batch: under ``jax.jit`` on a batch sharded over the ``data`` mesh axis they are global,
   i.e. synchronised BN), plus BYOL's EMA target and ADC's frozen prior where configured;
3. the GLF objective (``glf_jax.losses.build_objective``) and its gradient;
4. the optax update, SwAV's prototype freezing (first epochs) and re-normalisation, BYOL's EMA;
5. the online linear classifier on stop-gradient features (labels touch nothing else);
6. the NaN guard: a non-finite loss or gradient skips the whole update (state unchanged apart from
   ``step`` and the counters).

Everything the step needs that is not an array (graph definitions, the objective, optimisers,
schedules, the augmentation recipe) is closed over by :func:`make_train_step`.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx
import ml_collections
import optax

from glf_jax.data import augment
from glf_jax.losses.glf import parse_name
from glf_jax.models import heads


def _tree_all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _select(pred, new, old):
  return jax.tree.map(lambda a, b: jnp.where(pred, a, b), new, old)


def _is_prototypes(path) -> bool:
  return any(getattr(p, 'key', getattr(p, 'name', None)) == 'prototypes' for p in path)


def _normalize_prototypes(params, frozen):
  def fix(path, value):
    if _is_prototypes(path):
      # Frozen prototypes stay bit-identical (re-normalising unit rows still rounds).
      return jnp.where(frozen, value, heads.l2_normalize_rows(value))
    return value
  return jax.tree_util.tree_map_with_path(fix, params)


def _freeze_prototypes(updates, frozen):
  def fix(path, value):
    return jnp.where(frozen, jnp.zeros_like(value), value) if _is_prototypes(path) else value
  return jax.tree_util.tree_map_with_path(fix, updates)


def _get_prototypes(params):
  found = [v for p, v in jax.tree_util.tree_leaves_with_path(params) if _is_prototypes(p)]
  if len(found) != 1:
    raise ValueError('swav needs an encoder with prototypes (model.head="swav")')
  return found[0]


def make_train_step(*, train_graphdef, objective: Callable, tx: optax.GradientTransformation,
                    probe_tx: optax.GradientTransformation, config: ml_collections.ConfigDict,
                    learning_rate: optax.Schedule, ema_decay: Callable | None,
                    prior_apply: Callable | None, swav_freeze_steps: int = 0):
  """Returns the pure ``train_step(state, batch, prior_state) -> (state, metrics)`` (not jitted).

  ``batch`` holds ``image`` (uint8 ``[B, H, W, 3]``) and ``label`` (int32 ``[B]``). ``metrics``
  holds every loss term, ``lr``, ``grad_norm``, the online probe's ``probe/loss`` and
  ``probe/top1``, and ``finite`` (1 when the update was applied).
  """
  method, _ = parse_name(config.objective.name)
  uses_target = method == 'byol'
  uses_prototypes = method == 'swav'
  augment_config = config.augment

  def forward(params, batch_stats, views):
    # Fresh Variable objects at the current trace level (inside grad): NNX refuses to mutate
    # BatchStats created at an outer level.
    batch_stats = jax.tree.map(lambda x: x, batch_stats)
    model = nnx.merge(train_graphdef, params, batch_stats)
    out = model(views)
    return out, nnx.state(model, nnx.BatchStat)

  def train_step(state, batch, prior_state):
    step = state['step']
    key = jax.random.fold_in(jax.random.wrap_key_data(state['rng']), step)
    view_key, = jax.random.split(key, 1)
    images, labels = batch['image'], batch['label']
    v1, v2 = augment.two_views(view_key, images, augment_config)
    n = images.shape[0]
    views = jnp.concatenate([v1, v2])

    extra = {}
    if uses_target:
      target_out, new_target_stats = forward(state['target_params'], state['target_batch_stats'],
                                             views)
      t = jax.lax.stop_gradient(target_out['z'].astype(jnp.float32))
      extra.update(t1=t[:n], t2=t[n:])
    if prior_apply is not None:
      prior = prior_apply(prior_state, views)
      extra.update(prior1=prior[:n], prior2=prior[n:])

    def loss_fn(params):
      out, new_stats = forward(params, state['batch_stats'], views)
      z = out['z'].astype(jnp.float32)
      outputs = {'z1': z[:n], 'z2': z[n:], **extra}
      if 'p' in out:
        p = out['p'].astype(jnp.float32)
        outputs.update(p1=p[:n], p2=p[n:])
      if uses_prototypes:
        outputs['prototypes'] = _get_prototypes(params).astype(jnp.float32)
      loss, aux = objective(outputs, {'label': labels})
      return loss, (aux, new_stats, out['h'])

    (loss, (aux, new_stats, h)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state['params'])
    updates, new_opt_state = tx.update(grads, state['opt_state'], state['params'])
    frozen = step < swav_freeze_steps
    if uses_prototypes:
      updates = _freeze_prototypes(updates, frozen)
    new_params = optax.apply_updates(state['params'], updates)
    if uses_prototypes:
      new_params = _normalize_prototypes(new_params, frozen)

    # The online linear probe on stop-gradient backbone features of both views.
    features = jax.lax.stop_gradient(h.astype(jnp.float32))
    both_labels = jnp.concatenate([labels, labels])

    def probe_loss(probe_params):
      logits = features @ probe_params['kernel'] + probe_params['bias']
      ce = optax.softmax_cross_entropy_with_integer_labels(logits, both_labels).mean()
      return ce, jnp.mean(jnp.argmax(logits, -1) == both_labels)
    (p_loss, p_acc), p_grads = jax.value_and_grad(probe_loss, has_aux=True)(
        state['probe']['params'])
    p_updates, p_opt = probe_tx.update(p_grads, state['probe']['opt_state'],
                                       state['probe']['params'])
    new_probe = {'params': optax.apply_updates(state['probe']['params'], p_updates),
                 'opt_state': p_opt}

    finite = jnp.isfinite(loss) & _tree_all_finite(grads)
    new_state = dict(state)
    new_state['params'] = _select(finite, new_params, state['params'])
    new_state['batch_stats'] = _select(finite, new_stats, state['batch_stats'])
    new_state['opt_state'] = _select(finite, new_opt_state, state['opt_state'])
    new_state['probe'] = _select(finite & jnp.isfinite(p_loss), new_probe, state['probe'])
    if uses_target:
      tau = ema_decay(step)
      new_target = jax.tree.map(lambda t, o: tau * t + (1.0 - tau) * o, state['target_params'],
                                new_state['params'])
      new_state['target_params'] = _select(finite, new_target, state['target_params'])
      new_state['target_batch_stats'] = _select(finite, new_target_stats,
                                                state['target_batch_stats'])
    new_state['step'] = step + 1
    new_state['nonfinite_in_a_row'] = jnp.where(finite, 0, state['nonfinite_in_a_row'] + 1)
    new_state['nonfinite_total'] = state['nonfinite_total'] + (~finite).astype(jnp.int32)

    metrics = {k: v for k, v in aux.items() if jnp.ndim(v) == 0}
    metrics.update({'lr': learning_rate(step), 'grad_norm': optax.tree.norm(grads),
                    'probe/loss': p_loss, 'probe/top1': p_acc,
                    'finite': finite.astype(jnp.float32),
                    'nonfinite_in_a_row': new_state['nonfinite_in_a_row']})
    if uses_target:
      metrics['ema_decay'] = ema_decay(step)
    return new_state, metrics

  return train_step


def make_probe_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """The online classifier's optimiser: Adam at ``train.online_probe_lr`` (no decay)."""
  lr = float(config.train.online_probe_lr)
  if lr <= 0:
    raise ValueError(f'train.online_probe_lr must be > 0, got {lr}')
  return optax.adam(lr)

