"""The pretraining loop: everything stateful around the pure step.

``pretrain(config, workdir)``: builds data, model, objective and optimiser from the config,
resumes from the workdir's latest valid checkpoint (refusing a changed config unless
``allow_config_change``), runs the jitted step over the device mesh, logs (progress line, JSON
lines, TensorBoard), checkpoints with orbax (periodically, at the end, and on SIGTERM or Ctrl-C), guards
against non-finite losses, and returns the final state.

Files in the workdir: ``checkpoints/`` (orbax), ``metrics.jsonl``, ``tensorboard/``,
``config.json``, ``summary.json`` (written by ``glf_jax.main``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from typing import Any

from absl import logging
import jax
import ml_collections

from glf_jax import config as config_lib
from glf_jax import fileio
from glf_jax import parallel
from glf_jax.checkpoint import Checkpointer, check_format, checkpoint_dir, read_meta
from glf_jax.data import make_loader, make_source
from glf_jax.train import prior as prior_lib
from glf_jax.train.setup import build_training


class NonFiniteLossError(FloatingPointError):
  """Too many consecutive non-finite losses; the last good checkpoint is kept."""


class ConfigChangedError(ValueError):
  """Resuming a workdir with a different config."""


@dataclasses.dataclass(frozen=True)
class Run:
  """What a pretraining run ended with: its state and what evaluation needs to use it."""
  eval_graphdef: Any
  state: dict
  total_steps: int
  steps_per_epoch: int
  num_classes: int
  interrupted: bool
  train_seconds: float
  images_per_second: float
  skipped_steps: int
  stop_signal: str | None = None  # 'SIGTERM' or 'SIGINT' (Ctrl-C) when interrupted


def _parse_metrics_lines(path: str, lines) -> list[dict[str, Any]]:
  records = []
  for number, line in enumerate(lines, 1):
    if not line.strip():
      continue
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError:
      logging.warning('%s: line %d is incomplete (%d characters); skipped', path, number,
                      len(line))
  return records


def read_metrics_log(path: str) -> list[dict[str, Any]]:
  """The records of a ``metrics.jsonl``; a torn line (a full disk, a kill mid-write) is skipped
  with a warning naming the file, not an error."""
  if not os.path.exists(path):
    return []
  with open(path, encoding='utf-8') as f:
    return _parse_metrics_lines(path, f)


def trim_metrics_log(path: str, last_step: int) -> int:
  """Keeps the records of ``path`` up to ``last_step`` (the step a run resumes from), dropping
  torn lines and the steps logged after that checkpoint, so a resumed run logs no step twice.
  Returns how many lines were dropped."""
  if not os.path.exists(path):
    return 0
  with open(path, encoding='utf-8') as f:
    lines = [line for line in f if line.strip()]
  kept = [json.dumps(r) + '\n' for r in _parse_metrics_lines(path, lines)
          if r.get('step', 0) <= last_step]
  if len(kept) != len(lines):
    with fileio.atomic_write(path, 'w', encoding='utf-8') as f:
      f.writelines(kept)
  return len(lines) - len(kept)


class _Writers:
  """Progress line, metrics.jsonl and TensorBoard events; process 0 only.

  ``start_step``: the step the run starts from. Records after it (left by a run killed after its
  last checkpoint) are dropped from ``metrics.jsonl`` and purged from TensorBoard, so the resumed
  run's steps appear once.
  """

  def __init__(self, workdir: str, enabled: bool, start_step: int = 0):
    self.enabled = enabled
    self.jsonl = None
    self.tb = None
    if not enabled:
      return
    path = os.path.join(workdir, 'metrics.jsonl')
    trim_metrics_log(path, start_step)
    self.jsonl = open(path, 'a', encoding='utf-8')
    try:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self.tb = SummaryWriter(os.path.join(workdir, 'tensorboard'),
                              purge_step=start_step + 1 if start_step else None)
    except ImportError:  # optional: JSON lines carry the same numbers
      logging.warning('tensorboardX is not installed; no TensorBoard events are written')

  def write(self, step: int, scalars: dict[str, float]):
    if not self.enabled:
      return
    self.jsonl.write(json.dumps({'step': step, **scalars}) + '\n')
    self.jsonl.flush()
    if self.tb is not None:
      for key, value in scalars.items():
        self.tb.add_scalar(key, value, step)

  def close(self):
    if self.jsonl is not None:
      self.jsonl.close()
    if self.tb is not None:
      self.tb.close()


def _format_eta(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f'{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}'


class _StopFlag:
  """SIGTERM or a first Ctrl-C (SIGINT) sets a flag; the loop saves a checkpoint and returns at
  the next step boundary. A second Ctrl-C raises KeyboardInterrupt at once (an abort)."""

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self, announce: bool):
    self.raised = False
    self.signal_name = None
    self._announce = announce
    self._previous = {}

  def __enter__(self):
    for signum in self.SIGNALS:
      try:
        self._previous[signum] = signal.signal(signum, self._handle)
      except ValueError:  # not the main thread: leave signals alone
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    if self.raised and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.raised = True
    self.signal_name = signal.Signals(signum).name
    if self._announce and signum == signal.SIGINT:
      print('\nCtrl-C: saving a checkpoint after this step (Ctrl-C again aborts without saving)',
            flush=True)

  def __exit__(self, *exc):
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)


def pretrain(config: ml_collections.ConfigDict, workdir: str) -> Run:
  """Pretrains (or resumes) the run in ``workdir``; see the module docstring.

  ``config`` has been validated (``glf_jax.config.validate``) by the caller.
  """
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  is_chief = jax.process_index() == 0
  mesh = parallel.make_mesh(config.train.num_devices)

  source = make_source(config.data, 'train')
  num_classes = int(source.num_classes)
  if config.model.num_classes and config.model.num_classes != num_classes:
    raise ValueError(f'model.num_classes is {config.model.num_classes} but the training data has '
                     f'{num_classes} classes; set --config.model.num_classes={num_classes}')
  loader = make_loader(source, seed=config.seed, global_batch_size=config.train.batch_size,
                       worker_count=config.train.worker_count)
  steps_per_epoch = loader.steps_per_epoch
  training = build_training(config, steps_per_epoch=steps_per_epoch, num_classes=num_classes)
  total_steps, objective = training.total_steps, training.objective
  prior_apply, prior_state = prior_lib.build_prior(config, objective, source)

  replicated = parallel.replicated(mesh)
  state = jax.device_put(training.state, replicated)
  prior_state = jax.device_put(prior_state, replicated)

  meta = read_meta(checkpoint_dir(workdir))
  if meta is not None:
    check_format(meta, checkpoint_dir(workdir))
    changed = config_lib.config_differences(meta['config'], config)
    if changed and not config.allow_config_change:
      raise ConfigChangedError(
          f'{workdir} holds a run with a different config; differing keys: {changed}. Use a new '
          f'--workdir, or pass --config.allow_config_change=True to resume anyway.')
    if changed:
      logging.warning('resuming with a changed config (allow_config_change): %s', changed)
  ckpt = Checkpointer(checkpoint_dir(workdir), keep=config.checkpoint.keep,
                      async_save=config.checkpoint.async_save)
  iterator = iter(loader)
  if meta is not None:
    restored = ckpt.restore(state)
    if restored is not None:
      _, state, data_state, _ = restored
      iterator.set_state(data_state)
      if is_chief:
        print(f'resumed from step {int(state["step"])} ({ckpt.directory})', flush=True)
  if is_chief:
    with open(os.path.join(workdir, 'config.json'), 'w', encoding='utf-8') as f:
      f.write(config_lib.to_json(config))

  train_step = jax.jit(training.train_step(prior_apply), donate_argnums=0)

  meta_out = {'config': config_lib.to_json(config), 'steps_per_epoch': steps_per_epoch,
              'num_classes': num_classes, 'total_steps': total_steps}

  def save(step, force=False):
    return ckpt.save(step, state, data_state=iterator.get_state(), meta=meta_out, force=force)

  step = int(state['step'])
  writers = _Writers(workdir, is_chief, start_step=step)
  interrupted = False
  start_step = step
  images_per_step = config.train.batch_size
  log_every = max(1, int(config.train.log_every))
  t_start = time.perf_counter()
  t_window, window_start_step = t_start, step
  pending = None  # the previous step's metrics: read one step late so dispatch stays async

  def check(step_done, metrics):
    nonlocal t_window, window_start_step
    if int(metrics['nonfinite_in_a_row']) >= config.train.max_nonfinite_in_a_row:
      terms = {k: float(v) for k, v in metrics.items()}
      ckpt.wait_until_finished()
      raise NonFiniteLossError(
          f'{int(metrics["nonfinite_in_a_row"])} non-finite losses in a row, the last at step '
          f'{step_done}; loss terms: {terms}. The updates were skipped; the last good checkpoint '
          f'(step {ckpt.latest_step()}) is kept in {ckpt.directory}. Lower the learning rate, '
          f'check the inputs, or raise train.max_nonfinite_in_a_row.')
    if step_done % log_every and step_done != total_steps:
      return
    now = time.perf_counter()
    rate = (step_done - window_start_step) * images_per_step / max(now - t_window, 1e-9)
    t_window, window_start_step = now, step_done
    scalars = {k: float(v) for k, v in metrics.items()}
    scalars.update(epoch=step_done / steps_per_epoch, images_per_second=rate,
                   wall_time=time.time())
    writers.write(step_done, scalars)
    if is_chief:
      eta = (total_steps - step_done) * images_per_step / max(rate, 1e-9)
      terms = '  '.join(f'{k} {scalars[k]:.4f}' for k in ('loss', *objective.term_names))
      print(f'step {step_done}/{total_steps}  epoch {scalars["epoch"]:.2f}  '
            f'{rate:.1f} img/s  ETA {_format_eta(eta)}  |  {terms}  probe/top1 '
            f'{scalars["probe/top1"]:.3f}', flush=True)

  with _StopFlag(announce=is_chief) as stop:
    try:
      while step < total_steps:
        batch = parallel.to_global_batch(next(iterator), mesh)
        state, metrics = train_step(state, batch, prior_state)
        step += 1
        if pending is not None:
          check(*pending)
        pending = (step, metrics)
        if step % config.checkpoint.every_steps == 0:
          save(step)
        if stop.raised:
          check(*pending)
          pending = None
          save(step, force=True)
          ckpt.wait_until_finished()
          if is_chief:
            print(f'{stop.signal_name}: interrupted at step {step}, saved to {ckpt.directory}; '
                  'run the same command to resume', flush=True)
          interrupted = True
          break
      if pending is not None:
        check(*pending)
      if not interrupted:
        save(step, force=True)
      ckpt.wait_until_finished()
    finally:
      writers.close()
      ckpt.close()
  seconds = time.perf_counter() - t_start
  return Run(eval_graphdef=training.eval_graphdef, state=state, total_steps=total_steps,
             steps_per_epoch=steps_per_epoch, num_classes=num_classes, interrupted=interrupted,
             train_seconds=seconds,
             images_per_second=(step - start_step) * images_per_step / max(seconds, 1e-9),
             skipped_steps=int(state['nonfinite_total']),
             stop_signal=stop.signal_name if interrupted else None)

