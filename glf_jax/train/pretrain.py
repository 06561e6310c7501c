"""Pretraining: a run's train step in a training session (``glf_jax.run.session``).

``pretrain(config, workdir)``: builds data, model, objective, optimiser and ADC's prior from the
config, resumes from the workdir's latest valid checkpoint, prints a start-up banner, and trains
with the jitted step over the device mesh; the session checkpoints, logs, guards against
non-finite losses and handles interruptions. Returns a :class:`Run`: the final state and what
evaluation needs to use it. The training time and the images trained accumulate across resumes.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from absl import logging
import jax
import ml_collections

from glf_jax import prior as prior_lib
from glf_jax.data import sources
from glf_jax.run import layout
from glf_jax.run.session import Session
from glf_jax.runtime import fileio
from glf_jax.runtime import progress
from glf_jax.runtime import targets
from glf_jax.train import step as step_lib
from glf_jax.train.setup import build_training


@dataclasses.dataclass(frozen=True)
class Run:
  """What a pretraining run ended with: its state and what evaluation needs to use it."""
  eval_graphdef: Any
  state: dict
  total_steps: int
  steps_per_epoch: int
  num_classes: int
  interrupted: bool
  train_seconds: float  # all sessions' training time (restored from the checkpoint's meta)
  images_per_second: float  # all sessions' images over train_seconds
  skipped_steps: int
  stop_signal: str | None = None  # 'SIGTERM' or 'SIGINT' (Ctrl-C) when interrupted
  session_seconds: float = 0.0  # this invocation's time in the training loop
  skipped_files: int = 0  # corrupt training images skipped (data.skip_corrupt)


def banner(config: ml_collections.ConfigDict, *, num_examples: int, num_classes: int,
           image_shape, mesh, steps_per_epoch: int, total_steps: int, workdir: str,
           step: int) -> str:
  """The few lines ``pretrain`` prints before its first step: what runs, on what, from where."""
  m = config.model
  size = config.augment.view1.image_size  # the views: the size the network sees
  if step >= total_steps:
    resume = f'resumed from step {step}: already finished, nothing to train'
  elif step:
    resume = f'resumed from step {step}'
  else:
    resume = 'starting from step 0'
  mesh_shape = ' x '.join(f'{name}={size}' for name, size in dict(mesh.shape).items())
  devices, processes = jax.device_count(), jax.process_count()
  return '\n'.join([
      f'pretraining {config.objective.name} on {sources.data_name(config.data)}: {num_examples} '
      f'training images, {num_classes} classes, {"x".join(str(d) for d in image_shape)}, '
      f'network input {size}x{size}',
      f'  model {m.arch} (width x{m.width_multiplier})  |  {devices} '
      f'device{"s" if devices > 1 else ""}, {processes} process{"es" if processes > 1 else ""}, '
      f'mesh {mesh_shape}',
      f'  global batch {config.train.batch_size}  |  {steps_per_epoch} steps/epoch  |  '
      f'{total_steps} steps ({total_steps / steps_per_epoch:.1f} epochs)',
      f'  workdir {workdir}  |  {resume}',
  ])


def _compile_report(workdir: str, batch_size: int, num_devices: int) -> dict | None:
  """The workdir's ``compile_report.json`` when it is for this batch over this many devices (the
  compile mode run with the same config and workdir), else None."""
  path = layout.path(workdir, layout.COMPILE_REPORT)
  if not fileio.exists(path):
    return None
  try:
    report = json.loads(fileio.read_text(path))
    step = report['train_step']
  except (OSError, ValueError, KeyError, TypeError):
    return None
  return report if (step.get('batch'), step.get('devices')) == (batch_size, num_devices) else None


def warn_if_small_batch(config: ml_collections.ConfigDict, mesh, workdir: str) -> None:
  """Warns (process 0) when each accelerator device gets few images a step
  (``glf_jax.runtime.targets.small_batch_warning``)."""
  batch_size, platform = int(config.train.batch_size), mesh.devices.flat[0].platform
  report = _compile_report(workdir, batch_size, mesh.size)
  message = targets.small_batch_warning(batch_size, mesh.size, platform, report)
  if message and jax.process_index() == 0:
    logging.warning('%s', message)


def pretrain(config: ml_collections.ConfigDict, workdir: str) -> Run:
  """Pretrains (or resumes) the run in ``workdir``; see the module docstring.

  ``config`` has been validated (``glf_jax.config.validate``) by the caller.
  """
  session = Session(config, workdir)
  num_classes = session.num_classes
  if config.model.num_classes and config.model.num_classes != num_classes:
    raise ValueError(f'model.num_classes is {config.model.num_classes} but the training data has '
                     f'{num_classes} classes; set --config.model.num_classes={num_classes}')
  training = build_training(config, steps_per_epoch=session.steps_per_epoch,
                            num_classes=num_classes)
  objective = training.objective
  prior_apply, prior_state = prior_lib.build_prior(config, objective, session.source)
  state = session.open(session.replicate(training.state), total_steps=training.total_steps)
  prior_state = session.replicate(prior_state)
  step = training.train_step(prior_apply)
  train_step = jax.jit(step, donate_argnums=0)
  train_steps = jax.jit(step_lib.scan_steps(step), donate_argnums=0)  # train.steps_per_call
  if session.is_chief:
    print(banner(config, num_examples=len(session.source), num_classes=num_classes,
                 image_shape=session.source.image_shape, mesh=session.mesh,
                 steps_per_epoch=session.steps_per_epoch, total_steps=training.total_steps,
                 workdir=session.workdir, step=session.step), flush=True)
  warn_if_small_batch(config, session.mesh, session.workdir)

  def terms(metrics):
    values = '  '.join(f'{k} {float(metrics[k]):.4f}' for k in ('loss', *objective.term_names))
    return f'{values}  probe/top1 {float(metrics["probe/top1"]):.3f}'

  if session.step < training.total_steps:
    progress.announce_compiling('the train step')
  outcome = session.train(state, lambda s, batch: train_step(s, batch, prior_state),
                          steps_fn=lambda s, batches: train_steps(s, batches, prior_state),
                          tail=terms)
  return Run(eval_graphdef=training.eval_graphdef, state=outcome.state,
             total_steps=training.total_steps, steps_per_epoch=session.steps_per_epoch,
             num_classes=num_classes, interrupted=outcome.interrupted,
             train_seconds=outcome.train_seconds, images_per_second=outcome.images_per_second,
             skipped_steps=int(outcome.state['nonfinite_total']),
             stop_signal=outcome.stop_signal, session_seconds=outcome.session_seconds,
             skipped_files=int(session.source.num_skipped))
