"""A cohort's members, their shared initial state and the lockstep step."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from glf_jax import prior as prior_lib
from glf_jax.cohort.config import SHARED_PARTS, member_config, member_names
from glf_jax.train import step as step_lib
from glf_jax.train.setup import Training, build_training


@dataclasses.dataclass(frozen=True)
class Member:
  name: str
  config: ml_collections.ConfigDict
  training: Training
  prior_apply: Callable | None
  prior_state: Any


def flat_leaves(tree) -> dict[str, Any]:
  return {jax.tree_util.keystr(path): leaf
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def top_part(path) -> str | None:
  return getattr(path[0], 'key', None) if path else None


def _part_signature(tree, part: str):
  """The paths, shapes and dtypes of the leaves of ``tree``'s top-level entry ``part``."""
  return sorted((k, np.shape(v), str(v.dtype)) for k, v in flat_leaves(tree).items()
                if k.startswith(f"['{part}']"))


def share_parts(tree, reference, parts: Sequence[str]):
  """``tree`` with the leaves of each top-level entry in ``parts`` taken from ``reference``."""
  ref = flat_leaves(reference)
  def pick(path, leaf):
    return ref[jax.tree_util.keystr(path)] if top_part(path) in parts else leaf
  return jax.tree_util.tree_map_with_path(pick, tree)


def build_members(config, *, steps_per_epoch: int, num_classes: int, source) -> list[Member]:
  out = []
  for name in member_names(config):
    c = member_config(config, name, num_classes)
    training = build_training(c, steps_per_epoch=steps_per_epoch, num_classes=num_classes)
    prior_apply, prior_state = prior_lib.build_prior(c, training.objective, source)
    out.append(Member(name, c, training, prior_apply, prior_state))
  steps = {m.name: m.training.total_steps for m in out}
  if len(set(steps.values())) != 1:
    raise ValueError(f'cohort members must train for the same number of steps, got {steps}')
  return out


def initial_state(members: Sequence[Member]) -> tuple[dict, dict[str, list[str]]]:
  """The cohort state with member 0's shared parts copied into every member (see the module
  docstring), and which parts each member shares with member 0."""
  first = members[0].training.state
  states, shared = {}, {}
  for m in members:
    s = dict(m.training.state)
    parts = [p for p in SHARED_PARTS
             if _part_signature(s['params'], p)
             and _part_signature(s['params'], p) == _part_signature(first['params'], p)
             and _part_signature(s['batch_stats'], p) == _part_signature(first['batch_stats'], p)]
    if 'backbone' not in parts:
      raise ValueError(f'cohort member {m.name!r} has another backbone than member '
                       f'{members[0].name!r}; members may differ only in their heads')
    s['params'] = share_parts(s['params'], first['params'], parts)
    s['batch_stats'] = share_parts(s['batch_stats'], first['batch_stats'], parts)
    t = m.training
    s['opt_state'] = t.tx.init(s['params'])
    s['method'] = t.method.init_state(s['params'], s['batch_stats'], t.run)
    s['rng'] = first['rng']
    if jax.tree.structure(s['probe']) == jax.tree.structure(first['probe']):
      s['probe'] = first['probe']
    states[m.name] = s
    shared[m.name] = parts
  # One buffer per leaf (the jitted step donates the state: no buffer may appear twice).
  return jax.tree.map(lambda x: jnp.array(x, copy=True), {'members': states}), shared


def make_cohort_step(members: Sequence[Member]) -> Callable:
  """The pure ``cohort_step(state, batch, prior_states) -> (state, metrics)``: every member's
  train step on the same batch with member 0's ``rng`` and ``step`` (hence the same views).
  ``metrics`` is ``{name: that member's metrics}``. Not jitted."""
  steps = {m.name: m.training.train_step(m.prior_apply) for m in members}
  first = members[0].name

  def cohort_step(state, batch, prior_states):
    ref = state['members'][first]
    new, metrics = {}, {}
    for name, step_fn in steps.items():
      s = {**state['members'][name], 'rng': ref['rng'], 'step': ref['step']}
      new[name], metrics[name] = step_fn(s, batch, prior_states[name])
    return {'members': new}, metrics

  return cohort_step


def make_split_cohort_step(members: Sequence[Member]) -> Callable:
  """``cohort_step(state, batch, prior_states) -> (state, metrics)`` as separate programs: the
  views by one jitted program (from member 0's ``rng`` and ``step``), then each member's own
  jitted train step on those views, donating that member's state. Each member runs the program a
  separate run of it would (less the augmentation), so a member costs what it costs alone;
  :func:`make_cohort_step` under one ``jax.jit`` lets XLA schedule all members together, which on
  CPU made ResNet-18's cohort step slower than two separate steps
  (``benchmarks/cohort_step.py``). Already jitted; the state is the same pytree."""
  views_of = jax.jit(step_lib.make_views(members[0].training.config.augment))
  steps = {m.name: jax.jit(m.training.train_step(m.prior_apply), donate_argnums=0)
           for m in members}
  first = members[0].name

  def cohort_step(state, batch, prior_states):
    ref = state['members'][first]
    # Every member's rng and step equal member 0's by construction (initial_state, lockstep).
    views = views_of({'rng': ref['rng'], 'step': ref['step']}, batch)
    new, metrics = {}, {}
    for name, step_fn in steps.items():
      new[name], metrics[name] = step_fn(state['members'][name], batch, prior_states[name], views)
    return {'members': new}, metrics

  return cohort_step


def cohort_step_program(members: Sequence[Member], dispatch: str) -> Callable:
  """The jitted cohort step of ``config.cohort.dispatch`` (one of :data:`DISPATCH`)."""
  if dispatch == 'split':
    return make_split_cohort_step(members)
  return jax.jit(make_cohort_step(members), donate_argnums=0)
