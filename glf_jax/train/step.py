"""The pure pretraining step ``(state, batch, prior_state) -> (state, metrics)``, jitted.

One step (docs/maths.md §1–3), the same for every method (the method's record supplies what differs):

1. two views of the batch from the config's recipe (on the accelerator, per-example keys from
   ``fold_in(rng, step)``);
2. the method's side outputs computed without gradient (e.g. an EMA target's projections) and
   ADC's frozen prior features, where the objective reads them;
3. one forward pass of the online encoder over both views (BatchNorm statistics over the whole
   global batch: under ``jax.jit`` on a batch sharded over the ``data`` mesh axis they are global,
   i.e. synchronised BN), the method's objective inputs, the GLF objective and its gradient;
4. the optax update (filtered by the method, e.g. SwAV's frozen prototypes), then the method's
   after-update (EMA target, prototype re-normalisation);
5. the online linear classifier on stop-gradient features (labels touch nothing else, unless the
   objective itself is supervised);
6. the NaN guard: a non-finite loss or gradient skips the whole update (state unchanged apart from
   ``step`` and the counters).

Everything the step needs that is not an array (graph definitions, the method, the objective,
optimisers, schedules, the augmentation recipe) is closed over by :func:`make_train_step`.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx
import ml_collections
import optax

from glf_jax.data import augment
from glf_jax.methods import Method, RunInfo
from glf_jax.models import classification_loss, linear_logits


def _tree_all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _select(pred, new, old):
  return jax.tree.map(lambda a, b: jnp.where(pred, a, b), new, old)


def _step_key(state) -> jax.Array:
  return jax.random.fold_in(jax.random.wrap_key_data(state['rng']), state['step'])


def _probe_step(probe, h, labels, probe_tx):
  """The online linear probe's update on stop-gradient backbone features of both views:
  ``(new probe, its loss, its top-1)``."""
  features = jax.lax.stop_gradient(h.astype(jnp.float32))
  both_labels = jnp.concatenate([labels, labels])
  (p_loss, p_acc), p_grads = jax.value_and_grad(
      lambda p: classification_loss(linear_logits(p, features), both_labels), has_aux=True)(
          probe['params'])
  p_updates, p_opt = probe_tx.update(p_grads, probe['opt_state'], probe['params'])
  return ({'params': optax.apply_updates(probe['params'], p_updates), 'opt_state': p_opt},
          p_loss, p_acc)


def _guarded(state, finite, updated: dict) -> dict:
  """The NaN guard: ``state`` with the ``updated`` entries where the step was ``finite`` (else
  the old ones), the step counted and the skipped updates counted."""
  new_state = dict(state)
  for key, value in updated.items():
    new_state[key] = _select(finite, value, state[key])
  new_state['step'] = state['step'] + 1
  new_state['nonfinite_in_a_row'] = jnp.where(finite, 0, state['nonfinite_in_a_row'] + 1)
  new_state['nonfinite_total'] = state['nonfinite_total'] + (~finite).astype(jnp.int32)
  return new_state


def make_views(augment_config: ml_collections.ConfigDict) -> Callable:
  """The pure ``views_of(state, batch) -> [2B, H, W, 3]``: the step's two views of
  ``batch['image']`` (first views, then second views), drawn from ``fold_in(state['rng'],
  state['step'])`` (only those two entries of ``state`` are read)."""

  def views_of(state, batch):
    view_key, = jax.random.split(_step_key(state), 1)  # kept: it fixes every run's random stream
    v1, v2 = augment.two_views(view_key, batch['image'], augment_config)
    return jnp.concatenate([v1, v2])

  return views_of


def make_train_step(*, train_graphdef, method: Method, run: RunInfo, objective: Callable,
                    tx: optax.GradientTransformation, probe_tx: optax.GradientTransformation,
                    augment_config: ml_collections.ConfigDict, learning_rate: optax.Schedule,
                    prior_apply: Callable | None):
  """Returns the pure ``train_step(state, batch, prior_state, views=None) -> (state, metrics)``
  (not jitted). ``views`` (optional) are the step's views when already computed by
  :func:`make_views` from the same ``rng`` and ``step`` (a cohort computes them once for all its
  members); the result is then the same as without them.

  ``batch`` holds ``image`` (uint8 ``[B, H, W, 3]``), ``label`` (int32 ``[B]``) and, where the
  prior looks features up by example, ``index`` (int32 ``[B]``). ``metrics``
  holds every loss term, ``lr``, ``grad_norm``, the online probe's ``probe/loss`` and
  ``probe/top1``, ``finite`` (1 when the update was applied) and the method's own (e.g.
  ``ema_decay``).
  """
  if 'prior1' in objective.needs and prior_apply is None:
    raise ValueError('the objective reads prior features (ADC with LPM) but no prior was built')

  def forward(params, batch_stats, views, apply=None):
    # Fresh Variable objects at the current trace level (inside grad): NNX refuses to mutate
    # BatchStats created at an outer level.
    batch_stats = jax.tree.map(lambda x: x, batch_stats)
    model = nnx.merge(train_graphdef, params, batch_stats)
    out = model(views) if apply is None else apply(model, views)
    return out, nnx.state(model, nnx.BatchStat)

  views_of = make_views(augment_config)

  def train_step(state, batch, prior_state, views=None):
    step = state['step']
    key = _step_key(state)
    images, labels = batch['image'], batch['label']
    if views is None:
      views = views_of(state, batch)
    n = images.shape[0]

    side, method_state = method.side_outputs(state, views, forward, run)
    if 'prior1' in objective.needs:
      prior = prior_apply(prior_state, views, batch)
      side = {**side, 'prior1': prior[:n], 'prior2': prior[n:]}
    objective_batch = {'label': labels, 'key': jax.random.fold_in(key, 1)}

    def loss_fn(params):
      out, new_stats = forward(params, state['batch_stats'], views)
      outputs = {**method.objective_inputs(out, params, n), **side}
      loss, aux = objective(outputs, objective_batch)
      return loss, (aux, new_stats, out['h'])

    (loss, (aux, new_stats, h)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state['params'])
    updates, new_opt_state = tx.update(grads, state['opt_state'], state['params'])
    updates = method.filter_updates(updates, step, run)
    new_params, method_state, method_metrics = method.after_update(
        optax.apply_updates(state['params'], updates), method_state, step, run)

    new_probe, p_loss, p_acc = _probe_step(state['probe'], h, labels, probe_tx)
    finite = jnp.isfinite(loss) & _tree_all_finite(grads)
    new_state = _guarded(state, finite, dict(
        params=new_params, batch_stats=new_stats, opt_state=new_opt_state, method=method_state))
    new_state['probe'] = _select(finite & jnp.isfinite(p_loss), new_probe, state['probe'])

    metrics = {k: v for k, v in aux.items() if jnp.ndim(v) == 0}
    metrics.update(method_metrics)
    metrics.update({'lr': learning_rate(step), 'grad_norm': optax.tree.norm(grads),
                    'probe/loss': p_loss, 'probe/top1': p_acc,
                    'finite': finite.astype(jnp.float32),
                    'nonfinite_in_a_row': new_state['nonfinite_in_a_row']})
    return new_state, metrics

  return train_step


def scan_steps(train_step: Callable) -> Callable:
  """``train_step(state, batch, *args) -> (state, metrics)`` as
  ``steps(state, batches, *args) -> (state, metrics)``: the step over a tuple of batches, in order,
  in one program (``jax.lax.scan``), each metric stacked along a new leading axis (one entry per
  step). One call of it runs ``len(batches)`` steps: the host pays one dispatch for them
  (``train.steps_per_call``, ``glf_jax.run.session``)."""

  def steps(state, batches, *args):
    stacked = jax.tree.map(lambda *rows: jnp.stack(rows), *batches)
    return jax.lax.scan(lambda carry, batch: train_step(carry, batch, *args), state, stacked)

  return steps


def make_probe_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """The online classifier's optimiser: Adam at ``train.online_probe_lr`` (no decay)."""
  return optax.adam(float(config.train.online_probe_lr))
