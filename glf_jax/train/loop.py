"""The pretraining loop: everything stateful around the pure step.

``pretrain(config, workdir)``: builds data, model, objective and optimiser from the config,
resumes from the workdir's latest valid checkpoint (refusing a changed config unless
``allow_config_change``), prints a start-up banner, runs the jitted step over the device mesh,
shows progress (``glf_jax.progress``: a bar on a terminal, ``step N/T ...`` lines otherwise) and
logs (JSON lines, TensorBoard), checkpoints with orbax (periodically, at the end, and on SIGTERM or
Ctrl-C), guards against non-finite losses, and returns the final state.

The training time and the images trained accumulate across resumes: each checkpoint's meta holds
the totals up to its step (``train_seconds``, ``images_trained``), and :class:`Run` reports them.

Files in the workdir: ``checkpoints/`` (orbax), ``metrics.jsonl``, ``tensorboard/``,
``config.json``, ``summary.json`` (written by ``glf_jax.main``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from typing import Any, Callable

from absl import logging
import jax
import ml_collections

from glf_jax import config as config_lib
from glf_jax import fileio
from glf_jax import parallel
from glf_jax import progress
from glf_jax import run_records
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
  train_seconds: float  # all sessions' training time (restored from the checkpoint's meta)
  images_per_second: float  # all sessions' images over train_seconds
  skipped_steps: int
  stop_signal: str | None = None  # 'SIGTERM' or 'SIGINT' (Ctrl-C) when interrupted
  session_seconds: float = 0.0  # this invocation's time in the training loop
  skipped_files: int = 0  # corrupt training images skipped (data.skip_corrupt)


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


def banner(config: ml_collections.ConfigDict, *, num_examples: int, num_classes: int,
           image_shape, mesh, steps_per_epoch: int, total_steps: int, workdir: str,
           step: int) -> str:
  """The few lines ``pretrain`` prints before its first step: what runs, on what, from where."""
  m = config.model
  if step >= total_steps:
    resume = f'resumed from step {step}: already finished, nothing to train'
  elif step:
    resume = f'resumed from step {step}'
  else:
    resume = 'starting from step 0'
  mesh_shape = ' x '.join(f'{name}={size}' for name, size in dict(mesh.shape).items())
  devices, processes = jax.device_count(), jax.process_count()
  return '\n'.join([
      f'pretraining {config.objective.name} on {config.data.name}: {num_examples} training '
      f'images, {num_classes} classes, {"x".join(str(d) for d in image_shape)}',
      f'  model {m.arch} (width x{m.width_multiplier})  |  {devices} '
      f'device{"s" if devices > 1 else ""}, {processes} process{"es" if processes > 1 else ""}, '
      f'mesh {mesh_shape}',
      f'  global batch {config.train.batch_size}  |  {steps_per_epoch} steps/epoch  |  '
      f'{total_steps} steps ({total_steps / steps_per_epoch:.1f} epochs)',
      f'  workdir {workdir}  |  {resume}',
  ])


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


def run_steps(*, step: int, total_steps: int, advance: Callable[[], Any],
              report: Callable[[int, Any], None], save: Callable[..., Any], every_steps: int,
              ckpt: Checkpointer, is_chief: bool, report_now: Callable[[int], bool] | None = None,
              after_step: Callable[[int], None] | None = None,
              on_step: Callable[[int], bool | None] | None = None,
              on_interrupt: Callable[[], None] | None = None) -> tuple[int, str | None]:
  """The training loop of a run and of a cohort, from ``step`` to ``total_steps``.

  Each step: ``advance()`` trains one step and returns its metrics (device values, not read);
  ``report(step, metrics)`` reads them one step late, so dispatch stays asynchronous (at once
  when ``report_now(step)``); ``after_step(step)``; a checkpoint every ``every_steps`` through
  ``save(step, force=False)``; a failed background save stops the loop. SIGTERM, a first Ctrl-C
  or ``on_step(step)`` returning True: the metrics are reported, a
  checkpoint is forced and written, ``on_interrupt()``, and the loop returns. At the end a forced
  save. Returns ``(step, the stopping signal's name or None when finished)``.
  """
  pending = None
  stopped_by = None
  with _StopFlag(announce=is_chief) as stop:
    while step < total_steps:
      metrics = advance()
      step += 1
      ckpt.check_for_errors()  # a failed background save (a full disk) stops the run now
      if pending is not None:
        report(*pending)
      pending = (step, metrics)
      if report_now is not None and report_now(step):
        report(*pending)
        pending = None
      if after_step is not None:
        after_step(step)
      if step % every_steps == 0:
        save(step)
      if on_step is not None and on_step(step):
        stop.raised = True
        stop.signal_name = stop.signal_name or 'SIGTERM'
      if stop.raised:  # (also at the last step: the caller stops before evaluating)
        if pending is not None:
          report(*pending)
          pending = None
        save(step, force=True)
        ckpt.wait_until_finished()
        if on_interrupt is not None:
          on_interrupt()
        if is_chief:
          print(f'{stop.signal_name}: interrupted at step {step}, saved to {ckpt.directory}; '
                'run the same command to resume', flush=True)
        stopped_by = stop.signal_name
        break
    if pending is not None:
      report(*pending)
    if stopped_by is None:
      save(step, force=True)
    ckpt.wait_until_finished()
  return step, stopped_by


def open_checkpoint(workdir: str, config: ml_collections.ConfigDict, state, loader, *,
                    what: str = 'run', step_of: Callable[[Any], Any] = lambda s: s['step']):
  """Opens ``workdir``'s checkpoints for ``config``: a saved run with another config is refused
  (``ConfigChangedError``, unless ``allow_config_change``, then logged), its latest state and
  data position restored, and ``config.json`` written (the original kept, allowed changes
  logged beside it). Returns ``(Checkpointer, state, data iterator, the restored checkpoint's
  meta — {} when starting)``; ``step_of(state)`` is the state's step (``what``: the messages'
  noun)."""
  meta = read_meta(checkpoint_dir(workdir))
  if meta is not None:
    check_format(meta, checkpoint_dir(workdir))
    changed = config_lib.config_differences(meta['config'], config)
    if changed and not config.allow_config_change:
      raise ConfigChangedError(
          f'{workdir} holds a {what} with a different config; differing keys: {changed}. Use a '
          'new --workdir, or pass --config.allow_config_change=True to resume anyway.')
    if changed:
      logging.warning('resuming with a changed config (allow_config_change): %s', changed)
  ckpt = Checkpointer(checkpoint_dir(workdir), keep=config.checkpoint.keep,
                      async_save=config.checkpoint.async_save)
  iterator = iter(loader)
  restored_meta = {}  # the totals of the sessions before this one (none in older checkpoints)
  if meta is not None:
    restored = ckpt.restore(state)
    if restored is not None:
      _, state, data_state, restored_meta = restored
      iterator.set_state(data_state)
  run_records.write_config(workdir, config, step=int(step_of(state)),
                           saved_json=meta['config'] if meta is not None else None)
  return ckpt, state, iterator, restored_meta


def open_training_data(config: ml_collections.ConfigDict):
  """``(source, num_classes, loader)`` of a run's (or a cohort's) training split: the loader reads
  this process's share of every global batch, in the order ``config.seed`` fixes."""
  source = make_source(config.data, 'train')
  loader = make_loader(source, seed=config.seed, global_batch_size=config.train.batch_size,
                       worker_count=config.train.worker_count)
  return source, int(source.num_classes), loader


def pretrain(config: ml_collections.ConfigDict, workdir: str) -> Run:
  """Pretrains (or resumes) the run in ``workdir``; see the module docstring.

  ``config`` has been validated (``glf_jax.config.validate``) by the caller.
  """
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  is_chief = jax.process_index() == 0
  mesh = parallel.make_mesh(config.train.num_devices)

  source, num_classes, loader = open_training_data(config)
  if config.model.num_classes and config.model.num_classes != num_classes:
    raise ValueError(f'model.num_classes is {config.model.num_classes} but the training data has '
                     f'{num_classes} classes; set --config.model.num_classes={num_classes}')
  steps_per_epoch = loader.steps_per_epoch
  training = build_training(config, steps_per_epoch=steps_per_epoch, num_classes=num_classes)
  total_steps, objective = training.total_steps, training.objective
  prior_apply, prior_state = prior_lib.build_prior(config, objective, source)

  replicated = parallel.replicated(mesh)
  state = jax.device_put(training.state, replicated)
  prior_state = jax.device_put(prior_state, replicated)

  ckpt, state, iterator, restored_meta = open_checkpoint(workdir, config, state, loader)
  train_step = jax.jit(training.train_step(prior_apply), donate_argnums=0)

  meta_out = {'config': config_lib.to_json(config), 'steps_per_epoch': steps_per_epoch,
              'num_classes': num_classes, 'total_steps': total_steps}

  step = int(state['step'])
  start_step = step
  images_per_step = config.train.batch_size
  log_every = max(1, int(config.train.log_every))
  # Totals of the earlier sessions up to the restored step; a checkpoint older than these fields
  # counts this session only.
  prior_seconds = float(restored_meta.get('train_seconds', 0.0))
  prior_images = int(restored_meta.get('images_trained', 0))
  saved_totals = {}  # step -> (train_seconds, images_trained) stored with it this session
  t_start = time.perf_counter()

  def totals(step_now):
    """Training seconds and images of all sessions up to ``step_now`` (a session that trained
    nothing adds nothing: re-running a finished run reports the original time)."""
    if step_now == start_step:
      return prior_seconds, prior_images
    return (prior_seconds + time.perf_counter() - t_start,
            prior_images + (step_now - start_step) * images_per_step)

  def save(step_now, force=False):
    seconds, images = totals(step_now)
    meta_out.update(train_seconds=seconds, images_trained=images)
    saved = ckpt.save(step_now, state, data_state=iterator.get_state(), meta=meta_out,
                      force=force)
    if saved:
      saved_totals[step_now] = (seconds, images)
    return saved

  if is_chief:
    print(banner(config, num_examples=len(source), num_classes=num_classes,
                 image_shape=source.image_shape, mesh=mesh, steps_per_epoch=steps_per_epoch,
                 total_steps=total_steps, workdir=workdir, step=step), flush=True)
  writers = _Writers(workdir, is_chief, start_step=step)
  bar = progress.Progress(total_steps, desc='step', unit='img', scale=images_per_step,
                          initial=step, every=log_every, enabled=is_chief)
  t_window, window_start_step = t_start, step

  def terms(metrics):
    values = '  '.join(f'{k} {float(metrics[k]):.4f}' for k in ('loss', *objective.term_names))
    return f'{values}  probe/top1 {float(metrics["probe/top1"]):.3f}'

  def check(step_done, metrics):
    nonlocal t_window, window_start_step
    if int(metrics['nonfinite_in_a_row']) >= config.train.max_nonfinite_in_a_row:
      terms_now = {k: float(v) for k, v in metrics.items()}
      ckpt.wait_until_finished()
      raise NonFiniteLossError(
          f'{int(metrics["nonfinite_in_a_row"])} non-finite losses in a row, the last at step '
          f'{step_done}; loss terms: {terms_now}. The updates were skipped; the last good '
          f'checkpoint (step {ckpt.latest_step()}) is kept in {ckpt.directory}. Lower the '
          f'learning rate, check the inputs, or raise train.max_nonfinite_in_a_row.')
    # The step is done (its metrics were read above): the progress rate starts after the first
    # one, so XLA's compilation does not inflate the ETA.
    bar.update(step_done, head=f'epoch {step_done / steps_per_epoch:.2f}',
               tail=lambda: terms(metrics))
    if step_done % log_every and step_done != total_steps:
      return
    now = time.perf_counter()
    rate = (step_done - window_start_step) * images_per_step / max(now - t_window, 1e-9)
    t_window, window_start_step = now, step_done
    scalars = {k: float(v) for k, v in metrics.items()}
    scalars.update(epoch=step_done / steps_per_epoch, images_per_second=rate,
                   wall_time=time.time())
    writers.write(step_done, scalars)

  def advance():
    nonlocal state
    batch = parallel.to_global_batch(next(iterator), mesh)
    state, metrics = train_step(state, batch, prior_state)
    return metrics

  try:
    step, stop_signal = run_steps(
        step=step, total_steps=total_steps, advance=advance, report=check, save=save,
        every_steps=config.checkpoint.every_steps, ckpt=ckpt, is_chief=is_chief,
        on_interrupt=bar.close)
  finally:
    bar.close()
    writers.close()
    ckpt.close()
  interrupted = stop_signal is not None
  session_seconds = time.perf_counter() - t_start
  # The totals stored with the last step (so a re-run reports exactly them), else up to now.
  seconds, images = saved_totals.get(step) or totals(step)
  return Run(eval_graphdef=training.eval_graphdef, state=state, total_steps=total_steps,
             steps_per_epoch=steps_per_epoch, num_classes=num_classes, interrupted=interrupted,
             train_seconds=seconds, images_per_second=images / max(seconds, 1e-9),
             skipped_steps=int(state['nonfinite_total']),
             stop_signal=stop_signal,
             session_seconds=session_seconds, skipped_files=int(source.num_skipped))
