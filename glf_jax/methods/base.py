"""What a method is: a record of pure functions the generic training code calls.

A method (SimCLR, BYOL, ...) is one module of this package defining ``METHOD = Method(...)``. The
record declares everything that differs between methods — the train step, the train state and
the config builder only ever call it. It holds what the method *is* (its paper's definition);
an experiment's numbers (optimiser, schedule, batch, per-dataset values) are in its
``configs/<method>.py``:

* ``term``: its aligning loss term (``glf_jax.losses.glf.Term``) with its hyperparameters'
  defaults (the ``config.objective.<method>`` sub-tree) and their check; constraints such as ADC
  compose with it by name (``'<method>+adc'``);
* ``heads``: the ``config.model`` fields of its heads (projector, predictor, prototypes sizes);
  ``classifier``: whether it needs a linear classifier on ``h`` (``model.num_classes``);
* ``augment``: its view recipe (``'simclr'``: two views of one recipe; ``'byol'``: BYOL's
  asymmetric pair);
* ``settings``: its own ``config.method`` sub-tree (e.g. the EMA's base decay), checked by
  ``check_settings(settings)`` when a run is built;
* the step's hooks, all pure (defaults: nothing):

  - ``init_state(params, batch_stats, run) -> dict``: its extra state (``state['method']``),
    e.g. an EMA target network;
  - ``side_outputs(state, views, forward, run) -> (outputs, method_state)``: objective inputs
    computed outside the gradient (an EMA target's projections), and the extra state after that
    forward pass (e.g. the target's BatchNorm statistics);
  - ``objective_inputs(out, params, n) -> dict``: the objective's inputs from the online
    encoder's outputs over both views (``out['z'][:n]`` is view 1), e.g. ``z1, z2, p1, p2``;
  - ``filter_updates(updates, step, run) -> updates``: the optimiser's updates before they are
    applied (e.g. SwAV's prototypes frozen in the first epoch);
  - ``after_update(params, method_state, step, run) -> (params, method_state, metrics)``: after
    the optimiser (EMA update, prototype re-normalisation).

``run`` (:class:`RunInfo`) carries the method's settings and the run's length, so schedules
(EMA τ, freezing) are functions of the step.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp

from glf_jax.losses.glf import Term


@dataclasses.dataclass(frozen=True)
class RunInfo:
  """What a method's hooks may know about the run: its settings and its length."""
  settings: Mapping[str, Any]
  total_steps: int
  steps_per_epoch: int


def no_state(params, batch_stats, run) -> dict:
  del params, batch_stats, run
  return {}


def no_side_outputs(state, views, forward, run) -> tuple[dict, dict]:
  del views, forward, run
  return {}, state['method']


def keep_updates(updates, step, run):
  del step, run
  return updates


def nothing_after_update(params, method_state, step, run):
  del step, run
  return params, method_state, {}


def views_of(x, n: int) -> tuple[Any, Any]:
  """``(view 1, view 2)`` rows of an output over both views, as float32."""
  x = x.astype(jnp.float32)
  return x[:n], x[n:]


def map_part(tree, part: str, fn: Callable):
  """``tree`` (parameters, updates: any pytree of an encoder's state) with ``fn`` applied to the
  leaves of its top-level entry ``part`` (e.g. ``'prototypes'``); the structure is kept."""
  def apply(path, leaf):
    return fn(leaf) if getattr(path[0], 'key', None) == part else leaf
  return jax.tree_util.tree_map_with_path(apply, tree)


def projections(out, params, n) -> dict:
  """``z1, z2``: the objective inputs of a method that needs only the projections."""
  del params
  z1, z2 = views_of(out['z'], n)
  return {'z1': z1, 'z2': z2}


def projections_and_predictions(names: tuple[str, str] = ('p1', 'p2')):
  """An ``objective_inputs`` hook: ``z1, z2`` and the predictor's outputs under ``names``."""
  def objective_inputs(out, params, n):
    p1, p2 = views_of(out['p'], n)
    return {**projections(out, params, n), names[0]: p1, names[1]: p2}
  return objective_inputs


@dataclasses.dataclass(frozen=True)
class Method:
  """One self-supervised (or supervised) method; see the module docstring."""
  name: str
  term: Term
  heads: Mapping[str, Any]
  objective_inputs: Callable[..., dict] = projections
  augment: str = 'simclr'
  settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  classifier: bool = False
  check_settings: Callable[[Mapping[str, Any]], None] = lambda settings: None
  init_state: Callable[..., dict] = no_state
  side_outputs: Callable[..., tuple[dict, dict]] = no_side_outputs
  filter_updates: Callable[..., Any] = keep_updates
  after_update: Callable[..., tuple[Any, dict, dict]] = nothing_after_update
