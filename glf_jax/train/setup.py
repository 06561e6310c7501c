"""Everything one run's train step is made of, assembled from the config in one place.

``build_training(config, steps_per_epoch=..., num_classes=...)`` gives the schedule, the
optimisers, the objective, the encoder's graph definitions and the initial train state (or its
shapes only, ``abstract=True``); ``training.train_step(prior_apply)`` the pure step over them. The
training loop, the benchmarks and the tests all build their step here, so they run the same thing.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import ml_collections
import optax

from glf_jax.losses import build_objective
from glf_jax.losses.glf import parse_name
from glf_jax.train import optim, state as state_lib, step as step_lib


@dataclasses.dataclass(frozen=True)
class Training:
  """The pieces of one run (see :func:`build_training`)."""
  config: ml_collections.ConfigDict
  total_steps: int
  steps_per_epoch: int
  schedule: optax.Schedule
  tx: optax.GradientTransformation
  probe_tx: optax.GradientTransformation
  objective: Callable
  train_graphdef: Any
  eval_graphdef: Any
  state: dict  # concrete, or jax.ShapeDtypeStructs with abstract=True

  def train_step(self, prior_apply: Callable | None = None) -> Callable:
    """The pure ``train_step(state, batch, prior_state) -> (state, metrics)`` (not jitted)."""
    c = self.config
    method, _ = parse_name(c.objective.name)
    ema = optim.ema_decay_schedule(c.byol.ema_base, self.total_steps) if method == 'byol' else None
    return step_lib.make_train_step(
        train_graphdef=self.train_graphdef, objective=self.objective, tx=self.tx,
        probe_tx=self.probe_tx, config=c, learning_rate=self.schedule, ema_decay=ema,
        prior_apply=prior_apply,
        swav_freeze_steps=int(round(c.swav.freeze_prototypes_epochs * self.steps_per_epoch)))


def total_steps(config: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
  """``train.num_steps`` when > 0, else ``train.epochs`` epochs."""
  if config.train.num_steps > 0:
    return int(config.train.num_steps)
  return int(math.ceil(config.train.epochs * steps_per_epoch))


def build_training(config: ml_collections.ConfigDict, *, steps_per_epoch: int, num_classes: int,
                   abstract: bool = False) -> Training:
  """The run's pieces; ``abstract=True`` gives the state's shapes without allocating it."""
  steps = total_steps(config, steps_per_epoch)
  schedule = optim.learning_rate_schedule(config.optim, global_batch_size=config.train.batch_size,
                                          total_steps=steps, steps_per_epoch=steps_per_epoch)
  tx = optim.make_optimizer(config.optim, schedule)
  probe_tx = step_lib.make_probe_optimizer(config)
  graphdefs = {}

  def init():
    train_graphdef, eval_graphdef, state = state_lib.init_train_state(
        config, tx=tx, probe_tx=probe_tx, num_classes=num_classes)
    graphdefs.update(train=train_graphdef, eval=eval_graphdef)
    return state
  state = jax.eval_shape(init) if abstract else init()
  return Training(config=config, total_steps=steps, steps_per_epoch=steps_per_epoch,
                  schedule=schedule, tx=tx, probe_tx=probe_tx,
                  objective=build_objective(config.objective),
                  train_graphdef=graphdefs['train'], eval_graphdef=graphdefs['eval'], state=state)
