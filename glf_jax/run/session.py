"""The training session: everything stateful around a pure step, for pretraining and cohorts.

::

    session = Session(config, workdir)                     # mesh, training data, loader
    state = session.open(session.replicate(state), total_steps=T)   # resume, config.json
    outcome = session.train(state, step_fn, tail=...)       # the loop; checkpoints; logs

A session owns what every training run in a workdir needs, whatever it trains:

* **the mesh and the data**: a 1-D ``data`` mesh over ``train.num_devices`` devices, the training
  source and its loader (this process's share of every global batch, in the order ``seed``
  fixes), and the loader's position; batches are placed on the devices (sharded over the mesh)
  ``DEVICE_PREFETCH`` steps ahead by a background thread (grain's ``ThreadPrefetchIterDataset``),
  and the position saved with a checkpoint is that of the next batch the step consumes;
* **checkpoints**: a saved run with another config is refused (:class:`ConfigChangedError`,
  unless ``allow_config_change``: then logged), the latest state and data position restored,
  ``config.json`` written; a checkpoint every ``checkpoint.every_steps``, at the end and on an
  interruption, each with the totals below in its meta;
* **logs and progress**: ``metrics.jsonl`` and TensorBoard at step 1, every ``train.log_every``
  steps (at most ``total_steps / 20``: a short run's curves have 20 points) and at the last step
  (cut back to the resumed step first), a progress bar or plain lines
  (``glf_jax.runtime.progress``);
* **time**: training seconds and images over every session of the run (restored from the
  checkpoint's meta), so a resumed run reports the whole run's rate;
* **interruption**: SIGTERM or a first Ctrl-C saves a checkpoint at the end of the step and
  returns (a second Ctrl-C aborts); ``on_step(step)`` returning True does the same;
* **the NaN guard**: every ``nonfinite_in_a_row`` the step reports (one per cohort member) is
  checked, step by step; at ``train.max_nonfinite_in_a_row`` the run stops with
  :class:`NonFiniteLossError`, naming the step and the terms and keeping the last good checkpoint.

The caller supplies the state, the jitted ``step_fn(state, batch) -> (state, metrics)``, and what
to show (``tail``). Metrics stay on the device and are read late: ``METRICS_READ_EVERY`` calls at
a time, once ``METRICS_LAG`` newer calls are dispatched, so the device's queue stays several steps
deep and the host never waits for a step it has just dispatched. A call is one step, or
``train.steps_per_call`` steps in one program (``steps_fn``: the host's cost of a call, mostly
the jitted dispatch of the state's arrays, is then paid once for them). Every pending step is
read (and checked) before a checkpoint is saved, so no checkpoint follows a streak the guard stops
at; the logs and the progress bar read the values as they are drained (the bar only when it
draws).
"""

from __future__ import annotations

import collections
import dataclasses
import math
import signal
import time
from typing import Any, Callable

from absl import logging
import grain
import jax
import ml_collections

from glf_jax.data import make_loader, make_source
from glf_jax.run import checkpoint as checkpoint_lib
from glf_jax.run import lock as lock_lib
from glf_jax.run import metrics_log
from glf_jax.run import saved_config
from glf_jax.runtime import devices
from glf_jax.runtime import fileio
from glf_jax.runtime import progress

# The suffix of a step's metric that counts its consecutive skipped (non-finite) updates.
NONFINITE = 'nonfinite_in_a_row'
# Batches on the devices ahead of the step that reads them (besides one being placed), per step a
# call runs.
DEVICE_PREFETCH = 2
# Calls' metrics are read (NaN guard, logs, progress) this many at a time, once METRICS_LAG newer
# calls are dispatched: one device-to-host read per METRICS_READ_EVERY calls, never a wait for a
# step the device has not reached.
METRICS_READ_EVERY = 4
METRICS_LAG = 4
# A run logs at least this many records (train.log_every is lowered for shorter runs): a short
# run logged every 50 steps drew curves of 2 points.
MIN_LOGGED_POINTS = 20


class NonFiniteLossError(FloatingPointError):
  """Too many consecutive non-finite losses (or gradients); the last good checkpoint is kept.

  ``step``: the last skipped step; ``checkpoint_step``: the last good checkpoint's step."""

  def __init__(self, message: str, *, step: int = 0, checkpoint_step: int | None = None):
    super().__init__(message)
    self.step = step
    self.checkpoint_step = checkpoint_step


class ConfigChangedError(ValueError):
  """Resuming a workdir with a different config."""


@dataclasses.dataclass(frozen=True)
class Outcome:
  """How a session's training ended."""
  state: Any
  step: int
  stop_signal: str | None  # 'SIGTERM' or 'SIGINT' (Ctrl-C) when interrupted, else None
  train_seconds: float  # all sessions' training time, up to ``step``
  images_per_second: float  # all sessions' images over train_seconds
  session_seconds: float  # this invocation's time in the loop

  @property
  def interrupted(self) -> bool:
    return self.stop_signal is not None


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


def logging_interval(log_every: int, total_steps: int) -> int:
  """Steps between two records of ``metrics.jsonl``: ``train.log_every``, or less for a short run
  so that its curves have at least :data:`MIN_LOGGED_POINTS` points."""
  return max(1, min(int(log_every), int(total_steps) // MIN_LOGGED_POINTS))


def _flat_scalars(metrics) -> dict[str, Any]:
  """``{name: scalar}``, and ``{member: {name: scalar}}`` as ``{'member/name': scalar}``."""
  flat = {}
  for key, value in metrics.items():
    if isinstance(value, dict):
      flat.update({f'{key}/{k}': v for k, v in _flat_scalars(value).items()})
    else:
      flat[key] = value
  return flat


def _guard_values(metrics) -> dict[str, Any]:
  """The NaN guard's counters among a step's metrics (one per cohort member)."""
  return {k: v for k, v in _flat_scalars(metrics).items() if k.endswith(NONFINITE)}


class Session:
  """One invocation's training in ``workdir`` (see the module docstring).

  ``what`` names what trains, in messages (``'run'``, ``'cohort'``). ``config`` has been
  validated by the caller.
  """

  def __init__(self, config: ml_collections.ConfigDict, workdir: str, *, what: str = 'run'):
    self.config = config
    self.workdir = fileio.resolve(workdir)
    fileio.makedirs(self.workdir)
    self.what = what
    self.is_chief = jax.process_index() == 0
    self.mesh = devices.make_mesh(config.train.num_devices)
    self.source = make_source(config.data, 'train')
    self.num_classes = int(self.source.num_classes)
    self.loader = make_loader(self.source, seed=config.seed,
                              global_batch_size=config.train.batch_size,
                              sampler=config.train.get('sampler') or 'shuffle',
                              worker_count=config.train.worker_count)
    self.steps_per_epoch = self.loader.steps_per_epoch
    self.images_per_step = int(config.train.batch_size)
    self.steps_per_call = int(config.train.get('steps_per_call') or 1)
    self.ckpt = None
    self.iterator = None
    self.step = self.start_step = self.total_steps = 0
    self._meta_out: dict[str, Any] = {}
    self._before = (0.0, 0)  # the earlier sessions' (seconds, images) up to start_step
    self._saved_totals: dict[int, tuple[float, int]] = {}
    self._t_start = time.perf_counter()  # reset when training starts
    self._writers = None  # the training session's logs (train)

  def replicate(self, tree):
    """``tree`` copied onto every device of the mesh (parameters, optimiser state, priors)."""
    return jax.device_put(tree, devices.replicated(self.mesh))

  def open(self, state, *, total_steps: int, step_of: Callable[[Any], Any] = lambda s: s['step'],
           meta: dict[str, Any] | None = None):
    """Opens the workdir's checkpoints for ``state`` (its structure and shardings); returns the
    restored state (``state`` itself when starting). ``step_of(state)`` is the state's step;
    ``meta`` is saved with every checkpoint besides the config and the run's sizes."""
    directory = checkpoint_lib.checkpoint_dir(self.workdir)
    saved = checkpoint_lib.read_meta(directory)
    if saved is not None:
      checkpoint_lib.check_format(saved, directory)
      changed = saved_config.config_differences(saved['config'], self.config)
      if changed and not self.config.allow_config_change:
        raise ConfigChangedError(
            f'{self.workdir} holds a {self.what} with a different config; differing keys: '
            f'{changed}. Use a new --workdir, or pass --config.allow_config_change=True to '
            'resume anyway.')
      if changed:
        logging.warning('resuming with a changed config (allow_config_change): %s', changed)
    self.ckpt = checkpoint_lib.Checkpointer(directory, keep=self.config.checkpoint.keep,
                                            async_save=self.config.checkpoint.async_save)
    self.iterator = self._device_batches()
    restored_meta = {}  # the totals of the sessions before this one (none in older checkpoints)
    if saved is not None:
      restored = self.ckpt.restore(state)
      if restored is not None:
        _, state, data_state, restored_meta = restored
        self.iterator.set_state(data_state)
    self.step = self.start_step = int(step_of(state))
    started = (saved_config.to_json(self.config) if saved is None  # the run's first config
               else saved_config.started_config(self.workdir, saved))
    saved_config.write_config(self.workdir, self.config, step=self.step,
                              saved_json=saved['config'] if saved is not None else None,
                              started_json=started)
    self.total_steps = int(total_steps)
    self._meta_out = {'config': saved_config.to_json(self.config), 'started_config': started,
                      'steps_per_epoch': self.steps_per_epoch, 'num_classes': self.num_classes,
                      'total_steps': self.total_steps, **(meta or {})}
    self._before = (float(restored_meta.get('train_seconds', 0.0)),
                    int(restored_meta.get('images_trained', 0)))
    return state

  def _device_batches(self) -> grain.DatasetIterator:
    """The loader's batches as global arrays on the mesh, placed ``DEVICE_PREFETCH`` ahead by a
    background thread; ``get_state()`` is the position of the next batch ``next()`` returns."""
    # devices.to_global_batch is looked up per batch (tests replace it).
    placed = self.loader.dataset.map(lambda batch: devices.to_global_batch(batch, self.mesh))
    return iter(grain.experimental.ThreadPrefetchIterDataset(
        placed, prefetch_buffer_size=DEVICE_PREFETCH * self.steps_per_call))

  def totals(self, step: int) -> tuple[float, int]:
    """Training seconds and images of all sessions up to ``step`` (the totals saved with that
    step when this session saved it; a session that trained nothing adds nothing)."""
    if step in self._saved_totals:
      return self._saved_totals[step]
    if step == self.start_step:
      return self._before
    return (self._before[0] + time.perf_counter() - self._t_start,
            self._before[1] + (step - self.start_step) * self.images_per_step)

  def _save(self, state, step: int, force: bool = False) -> bool:
    lock_lib.check_held(self.workdir)  # an object store's lease, taken over: stop, write nothing
    if self._writers is not None:
      self._writers.flush()
    seconds, images = self.totals(step)
    self._meta_out.update(train_seconds=seconds, images_trained=images)
    saved = self.ckpt.save(step, state, data_state=self.iterator.get_state(),
                           meta=self._meta_out, force=force)
    if saved:
      self._saved_totals[step] = (seconds, images)
    return saved

  def _check_finite(self, step: int, flat: dict[str, Any]) -> None:
    limit = self.config.train.max_nonfinite_in_a_row
    for key, value in flat.items():
      if key.endswith(NONFINITE) and int(value) >= limit:
        prefix = key[:-len(NONFINITE)]
        member = prefix.rstrip('/')
        who = f'cohort member {member!r}: ' if member else ''
        terms = {k: float(v) for k, v in flat.items()}
        # The step skips an update when its loss or its gradient is not finite: say which.
        what = ('gradients (the loss itself finite)'
                if math.isfinite(terms.get(prefix + 'loss', math.nan)) else 'losses')
        self.ckpt.wait_until_finished()
        kept = self.ckpt.latest_step()
        raise NonFiniteLossError(
            f'{who}{int(value)} non-finite {what} in a row, the last at step {step}; loss terms: '
            f'{terms}. The updates were skipped; the last good checkpoint (step {kept}) is kept '
            f'in {self.ckpt.directory}. Lower the learning rate, check the inputs, or raise '
            'train.max_nonfinite_in_a_row.', step=step, checkpoint_step=kept)

  def train(self, state, step_fn: Callable[[Any, dict], tuple[Any, Any]], *,
            steps_fn: Callable[[Any, tuple], tuple[Any, Any]] | None = None,
            tail: Callable[[Any], str] | None = None,
            report_now: Callable[[int], bool] | None = None,
            after_step: Callable[[int, Any], None] | None = None,
            on_step: Callable[[int], bool | None] | None = None) -> Outcome:
    """Trains from the opened step to ``total_steps`` (see the module docstring).

    ``step_fn(state, batch)`` returns the new state and the step's metrics (scalars, or one dict
    of scalars per cohort member), read a few steps late (at once when ``report_now(step)``);
    ``tail(metrics)`` is the progress line's text after ``|``; ``after_step(step, state)`` runs
    after each step (a cohort's tracking); ``on_step(step)`` returning True stops as SIGTERM
    does. Returns the :class:`Outcome`; the checkpointer is closed.

    With ``train.steps_per_call`` K > 1, ``steps_fn(state, batches)`` runs the K steps of a tuple
    of K batches in one call (``glf_jax.train.step.scan_steps``), its metrics stacked; it is
    called for each window of K steps that starts at a multiple of K and has no checkpoint or
    ``report_now`` step before its last step (:meth:`_call_length`), ``step_fn`` for the other
    steps. ``after_step`` then runs after each call (the state between a call's steps is not on
    hand), ``on_step`` for each of its steps once the call is dispatched.
    """
    if self.steps_per_call > 1 and steps_fn is None:
      raise ValueError(f'train.steps_per_call={self.steps_per_call} needs the caller\'s steps_fn')
    self._t_start = time.perf_counter()
    log_every = logging_interval(self.config.train.log_every, self.total_steps)
    bar = progress.Progress(self.total_steps, desc='step', unit='img',
                            scale=self.images_per_step, initial=self.step, every=log_every,
                            enabled=self.is_chief)
    writers = self._writers = metrics_log.Writers(self.workdir, self.is_chief,
                                                  start_step=self.step)
    window = [time.perf_counter(), self.step]  # the images/s of metrics.jsonl: since last log

    def report(step, metrics, guard_values):
      """Step ``step``'s metrics, read late: the guard's values are already on the host."""
      flat = _flat_scalars(metrics)
      self._check_finite(step, {**flat, **guard_values})
      # Shown after the first step is done: the rate leaves out XLA's compilation.
      bar.update(step, head=f'epoch {step / self.steps_per_epoch:.2f}',
                 tail=(lambda: tail(metrics)) if tail else None)
      if step % log_every and step not in (1, self.total_steps):  # the curves' ends
        return
      now = time.perf_counter()
      rate = (step - window[1]) * self.images_per_step / max(now - window[0], 1e-9)
      window[:] = [now, step]
      scalars = {k: float(v) for k, v in jax.device_get(flat).items()}
      scalars.update(epoch=step / self.steps_per_epoch, images_per_second=rate,
                     wall_time=time.time())
      writers.write(step, scalars)

    holder = {'state': state}

    def advance(n):
      if n == 1:
        holder['state'], metrics = step_fn(holder['state'], next(self.iterator))
      else:
        batches = tuple(next(self.iterator) for _ in range(n))
        holder['state'], metrics = steps_fn(holder['state'], batches)
      return metrics

    try:
      stop_signal = self._loop(advance, report, holder, report_now=report_now,
                               after_step=after_step, on_step=on_step, on_interrupt=bar.close)
    finally:
      self.iterator.close()
      bar.close()
      writers.close()
      self.ckpt.close()
    seconds, images = self.totals(self.step)
    return Outcome(state=holder['state'], step=self.step, stop_signal=stop_signal,
                   train_seconds=seconds, images_per_second=images / max(seconds, 1e-9),
                   session_seconds=time.perf_counter() - self._t_start)

  def _call_length(self, report_now) -> int:
    """Steps the next call runs: ``steps_per_call`` for a whole window of them that starts at a
    multiple of it and has no checkpoint or ``report_now`` step before its last step, else 1. A
    function of the step alone, so a resumed run calls the same programs at the same steps."""
    k, step = self.steps_per_call, self.step
    if k == 1 or step % k or step + k > self.total_steps:
      return 1
    every = self.config.checkpoint.every_steps
    inside = range(step + 1, step + k)
    if any(s % every == 0 or (report_now is not None and report_now(s)) for s in inside):
      return 1
    return k

  def _loop(self, advance, report, holder, *, report_now, after_step, on_step,
            on_interrupt) -> str | None:
    """Steps until ``total_steps`` or an interruption; returns the stopping signal's name."""
    # Calls dispatched and not read yet, oldest first: (first step, steps, metrics); a call of
    # one step has scalar metrics, a call of several each metric stacked over its steps.
    pending = collections.deque()

    def read(keep: int = 0) -> None:
      """Reads (and reports, in order) all but the newest ``keep`` pending calls, in one
      transfer: the guard's values of one-step calls, the whole (small) metrics of the others."""
      calls = [pending.popleft() for _ in range(len(pending) - keep)]
      fetched = jax.device_get([metrics if n > 1 else _guard_values(metrics)
                                for _, n, metrics in calls])
      for (first, n, metrics), values in zip(calls, fetched):
        if n == 1:
          report(first, metrics, values)
          continue
        for i in range(n):
          one = jax.tree.map(lambda column: column[i], values)
          report(first + i, one, _guard_values(one))

    stopped_by = None
    every = self.config.checkpoint.every_steps
    with _StopFlag(announce=self.is_chief) as stop:
      while self.step < self.total_steps:
        n = self._call_length(report_now)
        first = self.step + 1
        pending.append((first, n, advance(n)))
        self.step += n
        self.ckpt.check_for_errors()  # a failed background save (a full disk) stops the run now
        if len(pending) >= METRICS_LAG + METRICS_READ_EVERY:
          read(keep=METRICS_LAG)
        if report_now is not None and report_now(self.step):
          read()
        if after_step is not None:
          after_step(self.step, holder['state'])
        if self.step % every == 0:
          read()  # the guard checks every step before a checkpoint is kept
          self._save(holder['state'], self.step)
        if on_step is not None and any([on_step(s) for s in range(first, self.step + 1)]):
          stop.raised = True
          stop.signal_name = stop.signal_name or 'SIGTERM'
        if stop.raised:  # (also at the last step: the caller stops before evaluating)
          read()
          self._save(holder['state'], self.step, force=True)
          self.ckpt.wait_until_finished()
          on_interrupt()
          if self.is_chief:
            print(f'{stop.signal_name}: interrupted at step {self.step}, saved to '
                  f'{self.ckpt.directory}; run the same command to resume', flush=True)
          stopped_by = stop.signal_name
          break
      read()
      if stopped_by is None:
        self._save(holder['state'], self.step, force=True)
      self.ckpt.wait_until_finished()
    return stopped_by
