"""Everything one run's train step is made of, assembled from the config in one place.

``build_training(config, steps_per_epoch=..., num_classes=...)`` gives the method, the schedule,
the optimisers, the objective, the encoder's graph definitions and the initial train state (or its
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

from glf_jax import methods
from glf_jax.train import optim, state as state_lib, step as step_lib


@dataclasses.dataclass(frozen=True)
class Training:
  """The pieces of one run (see :func:`build_training`)."""
  config: ml_collections.ConfigDict
  method: methods.Method
  run: methods.RunInfo
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
    """The pure ``train_step(state, batch, prior_state, views=None) -> (state, metrics)`` (not
    jitted; see :func:`glf_jax.train.step.make_train_step`)."""
    return step_lib.make_train_step(
        train_graphdef=self.train_graphdef, method=self.method, run=self.run,
        objective=self.objective, tx=self.tx, probe_tx=self.probe_tx,
        augment_config=self.config.augment, learning_rate=self.schedule, prior_apply=prior_apply)


def total_steps(config: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
  """``train.num_steps`` when set, else ``train.epochs`` epochs."""
  if config.train.num_steps is not None:
    return int(config.train.num_steps)
  return int(math.ceil(config.train.epochs * steps_per_epoch))


def build_training(config: ml_collections.ConfigDict, *, steps_per_epoch: int, num_classes: int,
                   abstract: bool = False) -> Training:
  """The run's pieces; ``abstract=True`` gives the state's shapes without allocating it."""
  method = methods.get(config.objective.name)
  steps = total_steps(config, steps_per_epoch)
  run = methods.RunInfo(settings=config.method.to_dict(), total_steps=steps,
                        steps_per_epoch=steps_per_epoch)
  schedule = optim.learning_rate_schedule(config.optim, global_batch_size=config.train.batch_size,
                                          total_steps=steps, steps_per_epoch=steps_per_epoch)
  tx = optim.make_optimizer(config.optim, schedule)
  probe_tx = step_lib.make_probe_optimizer(config)
  graphdefs = {}

  def init():
    train_graphdef, eval_graphdef, state = state_lib.init_train_state(
        config, method=method, run=run, tx=tx, probe_tx=probe_tx, num_classes=num_classes)
    graphdefs.update(train=train_graphdef, eval=eval_graphdef)
    return state
  state = jax.eval_shape(init) if abstract else init()
  return Training(config=config, method=method, run=run, total_steps=steps,
                  steps_per_epoch=steps_per_epoch, schedule=schedule, tx=tx, probe_tx=probe_tx,
                  objective=methods.build_objective(config.objective),
                  train_graphdef=graphdefs['train'], eval_graphdef=graphdefs['eval'], state=state)
