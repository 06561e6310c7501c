"""Orbax checkpoints of a run: the train state, the data iterator's position and run metadata.

A checkpoint ``<directory>/<step>/`` holds three items:

* ``state``: the train-state pytree (``glf_jax.train.state``: parameters, BN statistics,
  optimiser state, EMA target, step, PRNG key data), saved sharded as it lies on the mesh and
  restored onto the shardings of an abstract state;
* ``data``: the grain iterator's state (JSON), so a resumed run sees exactly the batches it would
  have seen;
* ``meta``: the run's config and whatever else the caller passes (JSON), plus ``step``,
  ``wall_time`` and ``format`` (:data:`FORMAT`, the layout of the state and config); ``read_meta``
  reads it without knowing the state's structure, and :func:`check_format` refuses a checkpoint
  of another layout with a clear message.

A partial restore (``restore(..., partial=True)``) reads only some of the state's entries:
``glf_jax.evaluate.encoder.load_encoder`` reads a run's encoder that way.

Guarantees, and how they are obtained:

* **Atomic saves.** Orbax writes each checkpoint to ``<step>.orbax-checkpoint-tmp`` and renames it
  on commit, so a run killed mid-save (SIGKILL, preemption) leaves no half-written ``<step>/``;
  orbax ignores the temporary directory when listing steps. A writing ``Checkpointer`` removes
  such leftovers just before its first save (not when it is opened: a process that only reads a
  run, e.g. an evaluation job, must not delete the temporary directory of a save in flight).
* **Keep the latest N, never lose the latest.** ``max_to_keep=keep`` (>= 1); orbax deletes old
  steps only after the new one has committed, so a failed save (a full disk) deletes nothing.
* **Fallback past unreadable checkpoints.** ``restore()`` tries the newest step first; when orbax
  cannot read it (a file lost or truncated afterwards, an item missing) it logs a warning naming
  the step and the error and tries the previous one. Once an older step restores, the newer
  unreadable step directories are *renamed* to ``corrupt-<step>-<time>`` (a name orbax does not
  treat as a step; renamed rather than deleted because the failure may be transient, e.g. a
  permission or network-filesystem error, and the files are evidence). Without this the manager
  would still consider the unreadable step the latest: saves at smaller steps would be skipped
  (orbax only saves steps above the latest), it would occupy one of the ``keep`` slots, and
  re-saving its step number would fail. Nothing is moved when *no* step can be read (typically a
  state structure that does not match the checkpoints, not corruption): that raises instead.
* **Clear save errors.** Any error while saving (synchronously, or surfacing from the background
  write in ``wait_until_finished`` / the next ``save``) becomes a ``CheckpointError`` naming the
  directory and the checkpoints still intact. It is raised once the save's other writes have
  stopped (orbax reports the first failed write while others may still be running: they would
  race the clean-up and the next save of that step); the manager is then re-read from disk so
  that its idea of the existing steps matches the files, and the failed save's temporary
  directory is removed.
  A full disk (ENOSPC / EDQUOT, also when only the text of a wrapping I/O error says so) is named
  first, ``no space left on <directory>``, and the OS's reason is never cut from a shortened
  message. ``check_for_errors`` reports a failed background save without waiting for the next.
* **Quiet read-only opens.** Orbax's "Given directory is read only" warning is dropped: reading
  checkpoints read-only (resume checks, evaluation) is deliberate.
* **Quiet failed saves.** A failed save is stated once, by the ``CheckpointError``: orbax's own
  logs of it (with tracebacks, from its writer, commit and finalize threads) are dropped, and so
  are the "Event loop is closed" errors of writes that finish after orbax's per-save event loop
  has closed (raised in tensorstore's threads, reported through ``sys.unraisablehook``: dozens
  on a full disk). Every other log record and unraisable error passes.

Limits: orbax does not checksum array data, so corruption that leaves files well-formed is not
detected. In multi-process runs the renaming of unreadable steps is done by process 0 (as orbax
itself does for deletions), with a barrier before anyone re-reads the directory.
"""

from __future__ import annotations

import errno
import json
import numbers
import os
import sys
import threading
import time
from typing import Any

from absl import logging
from etils import epath
import jax
import orbax.checkpoint as ocp
from orbax.checkpoint._src.futures import future as orbax_future

from glf_jax.run import layout
from glf_jax.runtime import fileio


_ITEMS = ('state', 'data', 'meta')
# The layout of the train state and the config a checkpoint holds. 1: up to the method registry
# (no 'format' in meta; BYOL's target as 'target_params', the model config's 'head' field);
# 2: methods as units (state['method'], heads by layer counts, prototypes on the encoder).
FORMAT = 2
_ERROR_CHARS = 400  # tensorstore errors run to kilobytes; keep the gist in messages
# The OS's wording of every errno ('No space left on device', ...): kept in shortened messages.
_OS_REASONS = sorted({os.strerror(code) for code in errno.errorcode}, key=len, reverse=True)
# Errors that mean "free some space", with how messages say so (ENOSPC, EDQUOT).
_FULL_DISK = {errno.ENOSPC: 'no space left on {} (the disk is full)'}
if hasattr(errno, 'EDQUOT'):
  _FULL_DISK[errno.EDQUOT] = 'the disk quota is exceeded on {}'
# Orbax's name for a save in progress, `<step>` + this (orbax/checkpoint/_src/path/
# atomicity_types.py, TMP_DIR_SUFFIX); such directories are never listed as steps.
_TMP_SUFFIX = '.orbax-checkpoint-tmp'


class CheckpointError(OSError):
  """Saving or reading checkpoints failed (the message names the directory)."""

  def __str__(self) -> str:
    # The message alone: it states the cause in words; the code is in .errno.
    return self.strerror if self.strerror else super().__str__()


class CheckpointFormatError(ValueError):
  """A checkpoint written by a glf_jax version with another state / config layout."""


def check_format(meta: dict, directory: str) -> None:
  """Refuses (with what to do) a checkpoint whose layout is not :data:`FORMAT`."""
  found = meta.get('format', 1)
  if found != FORMAT:
    raise CheckpointFormatError(
        f'the checkpoints in {directory} have layout {found}, this glf_jax reads layout {FORMAT} '
        f'({"written before methods became units: BYOL target, heads and SwAV prototypes moved" if found == 1 else "written by a newer glf_jax"}). '
        'Pretrain again in a new --workdir, or evaluate that run with the glf_jax version that '
        'wrote it.')


class _ReadOnlyNoticeFilter:
  """Drops orbax's warning 'Given directory is read only=...': glf_jax opens checkpoints read-only
  on purpose (resume checks, evaluation), so it is noise that looks like trouble."""

  def filter(self, record) -> bool:
    return record.msg != 'Given directory is read only=%s'


def _quiet_read_only_notice() -> None:
  logger = logging.get_absl_logger()  # orbax logs through absl
  if not any(isinstance(f, _ReadOnlyNoticeFilter) for f in logger.filters):
    logger.addFilter(_ReadOnlyNoticeFilter())


# Orbax's logs of a failed background save, each with the whole traceback: the thread that wrote
# an array, the commit thread, the finalize thread (orbax/checkpoint/_src/futures/future.py,
# checkpointers/async_checkpointer.py, checkpoint_manager.py). Every one of these errors is also
# raised to wait_until_finished, which reports it as one CheckpointError.
_SAVE_FAILURE_LOGS = ('_SignalingThread.run() raised an exception',
                      'Handler Commit operations or the Commit callback in background save',
                      'Save Finalize thread (%s) failed')


class _SaveFailureLogFilter:
  """Drops orbax's logs of a failed save (:data:`_SAVE_FAILURE_LOGS`): a full disk printed four
  tracebacks of the error the run then states in one line."""

  def filter(self, record) -> bool:
    return not any(text in str(record.msg) for text in _SAVE_FAILURE_LOGS)


def _is_closed_loop_callback(unraisable) -> bool:
  """A tensorstore write finishing after orbax's per-save event loop has closed: when one write
  of a save fails, orbax's coroutine raises and its loop closes while the other writes are still
  in flight; each of them then reports 'Event loop is closed' from ``call_soon_threadsafe``
  (dozens of tracebacks on a full disk). Nothing is lost: the save has failed and is reported."""
  error = unraisable.exc_value
  if not (isinstance(error, RuntimeError) and str(error) == 'Event loop is closed'):
    return False
  tb = unraisable.exc_traceback
  while tb is not None:
    if tb.tb_frame.f_code.co_name == 'call_soon_threadsafe':
      return True
    tb = tb.tb_next
  return False


def _quiet_failed_save_noise() -> None:
  """Installs, once, the filters of a failed save's noise (:class:`_SaveFailureLogFilter`,
  :func:`_is_closed_loop_callback`); every other log record and unraisable error passes."""
  logger = logging.get_absl_logger()
  if not any(isinstance(f, _SaveFailureLogFilter) for f in logger.filters):
    logger.addFilter(_SaveFailureLogFilter())
  previous = sys.unraisablehook
  if getattr(previous, 'glf_jax_quiet', False):
    return

  def hook(unraisable):
    if not _is_closed_loop_callback(unraisable):
      previous(unraisable)
  hook.glf_jax_quiet = True
  sys.unraisablehook = hook


def _make_manager(directory: epath.Path, *, keep: int, async_save: bool, read_only: bool,
                  cleanup: bool, partial: bool = False) -> ocp.CheckpointManager:
  if read_only:
    _quiet_read_only_notice()
  options = ocp.CheckpointManagerOptions(
      max_to_keep=None if read_only else keep,
      save_interval_steps=0 if read_only else 1,  # orbax warns unless read-only saves nothing
      create=not read_only,
      enable_async_checkpointing=async_save,
      cleanup_tmp_directories=cleanup and not read_only,
      read_only=read_only)
  if not partial:
    return ocp.CheckpointManager(directory, options=options, item_names=_ITEMS)
  # A partial restore (a sub-tree of the state, e.g. only the encoder) needs the PyTree handler,
  # which reads what the Standard handler wrote.
  registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
  registry.add('state', ocp.args.PyTreeRestore, ocp.PyTreeCheckpointHandler)
  registry.add('data', ocp.args.JsonRestore, ocp.JsonCheckpointHandler)
  registry.add('meta', ocp.args.JsonRestore, ocp.JsonCheckpointHandler)
  return ocp.CheckpointManager(directory, options=options, handler_registry=registry)


def _path(directory: str) -> epath.Path:
  # Absolute for local paths (the directory is reported in messages); URLs (gs://) as given.
  return epath.Path(fileio.resolve(directory))


def _short(error: BaseException) -> str:
  """The error's type and message, cut after :data:`_ERROR_CHARS` characters, except for the
  OS's reason (tensorstore puts 'No space left on device' at the end of kilobytes of context)."""
  text = f'{type(error).__name__}: {error}'
  if len(text) <= _ERROR_CHARS:
    return text
  head = text[:_ERROR_CHARS]
  # A reason not whole in the head (also one the cut goes through: 'File...').
  found = sorted((text.find(r, _ERROR_CHARS - len(r) + 1), r) for r in _OS_REASONS
                 if r in text[_ERROR_CHARS - len(r) + 1:] and r not in head)
  reasons = []
  for _, reason in found:
    if not any(reason in kept for kept in reasons):  # 'Is a directory' within a longer one
      reasons.append(reason)
  return head + '...' + (f' ({"; ".join(reasons)})' if reasons else '')


def _full_disk_errno(error: BaseException) -> int | None:
  """ENOSPC or EDQUOT when ``error`` or one it wraps says so, by errno or by the OS's wording
  in the text only (a full disk can reach orbax as a generic I/O error, errno 5)."""
  stack, seen = [error], set()
  while stack:
    e = stack.pop()
    if e is None or id(e) in seen:
      continue
    seen.add(id(e))
    code = getattr(e, 'errno', None)
    if code in _FULL_DISK:
      return code
    text = str(e)
    for code in _FULL_DISK:
      if os.strerror(code) in text or errno.errorcode[code] in text:
        return code
    stack += [e.__cause__, e.__context__, *getattr(e, 'exceptions', ())]
  return None


def _wait_for_background_writes() -> None:
  """Joins orbax's background write threads (one per item of a save) still running.

  After a failed save orbax has stopped waiting for the others; they end on their own (done, or
  failed on their own errors). Orbax has no public handle on them: its thread class is matched
  (if orbax renames it, nothing is waited for and tests/test_checkpoint.py fails).
  """
  writer = getattr(orbax_future, '_SignalingThread', ())
  for thread in threading.enumerate():
    if isinstance(thread, writer) and thread is not threading.current_thread():
      threading.Thread.join(thread)  # not orbax's join, which re-raises the thread's error


def _check_json(name: str, value: Any) -> None:
  # JsonSave serialises in the background thread: fail here, with a clear message, instead.
  try:
    json.dumps(value)
  except (TypeError, ValueError) as e:
    raise TypeError(f'checkpoint {name} must be JSON-serialisable: {e}') from e


def _as_abstract(x):
  """A restore target for one leaf: jax.Arrays become ShapeDtypeStructs keeping their sharding."""
  if isinstance(x, jax.Array):
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
  return x  # ShapeDtypeStruct, NumPy array or scalar: orbax restores each as that kind


class Checkpointer:
  """Saves and restores a run's checkpoints (see the module docstring).

  Usage::

    with Checkpointer(directory, keep=3) as ckpt:
      restored = ckpt.restore(abstract_state)      # None on a fresh run
      ...
      ckpt.save(step, state, data_state=iterator.get_state(), meta={'config': config_json})
  """

  def __init__(self, directory: str, *, keep: int = 3, async_save: bool = True,
               read_only: bool = False):
    """Opens (and, unless ``read_only``, creates) ``directory``.

    Args:
      directory: where the step directories live.
      keep: how many of the newest checkpoints to keep (>= 1).
      async_save: write in a background thread once the arrays are copied to host memory.
      read_only: never write, rename or delete anything (evaluation of another run's
        checkpoints); ``save`` raises and unreadable steps are only skipped.
    """
    if isinstance(keep, bool) or not isinstance(keep, numbers.Integral) or keep < 1:
      raise ValueError(f'checkpoint keep must be an int >= 1, got {keep!r}')
    self._path = _path(directory)
    self.directory = str(self._path)
    self._keep, self._async, self._read_only = int(keep), bool(async_save), bool(read_only)
    if not self._read_only:
      _quiet_failed_save_noise()
      try:
        self._path.mkdir(parents=True, exist_ok=True)
      except OSError as e:
        raise CheckpointError(e.errno or errno.EIO,
                              f'cannot create checkpoint directory {self.directory}: {e}') from e
    self._cleaned = False  # stale temporary directories removed (just before the first save)
    self._pending_step = None  # step of an async save that may still be writing
    self._manager = self._new_manager(cleanup=False)

  def _new_manager(self, cleanup: bool) -> ocp.CheckpointManager:
    return _make_manager(self._path, keep=self._keep, async_save=self._async,
                         read_only=self._read_only, cleanup=cleanup)

  def _reload(self, cleanup: bool = False) -> None:
    """Replaces the manager by one that reads the step list from disk afresh."""
    try:
      self._manager.close()
    except Exception as e:  # pylint: disable=broad-except
      # Already reported by wait_until_finished; the old manager is discarded either way.
      logging.info('closing the checkpoint manager of %s: %s', self.directory, _short(e))
    self._manager = self._new_manager(cleanup=cleanup)

  def __enter__(self) -> Checkpointer:
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def latest_step(self) -> int | None:
    """The newest committed step (as the manager sees it), or None."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """The committed steps, ascending."""
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any, *, data_state: dict, meta: dict | None = None,
           force: bool = False) -> bool:
    """Starts saving a checkpoint at ``step``; True when a save was started.

    Returns once the arrays are copied to host memory (the caller may then donate or overwrite
    them); with ``async_save`` the files are written in the background. Returns False when
    ``step`` is already saved (or orbax's policy declines and ``force`` is False).

    Args:
      step: the step number (the directory name).
      state: a pytree of jax.Arrays (possibly sharded over a mesh), NumPy arrays or scalars.
      data_state: the data iterator's state (JSON-serialisable dict).
      meta: more JSON to store (e.g. the config); ``step`` and ``wall_time`` are added.
      force: save even if orbax's save policy would skip this step.

    Raises:
      CheckpointError: the save (or the previous async one) failed; no checkpoint was deleted.
      TypeError: ``data_state`` or ``meta`` is not JSON-serialisable.
      ValueError: the checkpointer is read-only.
    """
    if self._read_only:
      raise ValueError(f'checkpoint directory {self.directory} was opened read_only')
    step = int(step)
    meta_out = {**(meta or {}), 'step': step, 'wall_time': time.time(), 'format': FORMAT}
    _check_json('data_state', data_state)
    _check_json('meta', meta_out)
    self.wait_until_finished()  # a failure of the previous async save is reported as its own
    if not self._cleaned:
      # Leftovers of saves killed in an earlier run; orbax removes them (process 0) and waits
      # for that before this save starts.
      self._reload(cleanup=True)
      self._cleaned = True
    if step in self._manager.all_steps():
      return False
    args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                              data=ocp.args.JsonSave(data_state),
                              meta=ocp.args.JsonSave(meta_out))
    try:
      started = bool(self._manager.save(step, args=args, force=force))
    except Exception as e:  # pylint: disable=broad-except
      raise self._save_error(step, e) from e
    if started and self._async:
      self._pending_step = step
    return started

  def _save_error(self, step: int | None, error: BaseException) -> CheckpointError:
    _wait_for_background_writes()
    # A failed save has left the manager's step list wrong (orbax registers the new step and
    # drops the ones it planned to delete before the write finishes): re-read it from disk.
    self._reload()
    if step is not None:
      self._remove_failed_save(step)
    which = f'step {step}' if step is not None else 'a checkpoint'
    kept = (f'no checkpoint was deleted: the earlier ones (steps {self.all_steps()}) are '
            'intact.')
    full = _full_disk_errno(error)
    if full is not None:
      # Said first: the OS's reason may otherwise hide in the middle of a long storage error.
      return CheckpointError(
          full, f'{_FULL_DISK[full].format(self.directory)}: saving checkpoint {which} failed '
          f'({_short(error)}); {kept} Free space, then resume from the latest one.')
    code = getattr(error, 'errno', None)
    return CheckpointError(
        code if isinstance(code, int) and code else errno.EIO,
        f'saving checkpoint {which} to {self.directory} failed (error: {_short(error)}); {kept} '
        'Fix the cause and resume from the latest one.')

  def _remove_failed_save(self, step: int) -> None:
    """Removes the temporary directory of a failed save (its writes have stopped: see
    :func:`_wait_for_background_writes`), retrying a removal that a file system refuses for a
    moment. A leftover is harmless: orbax ignores it, and the next run's first save removes it.
    """
    if jax.process_index() != 0:
      return
    tmp = self._path / f'{step}{_TMP_SUFFIX}'
    for attempt in range(20):
      try:
        if tmp.exists():
          tmp.rmtree()
        return
      except OSError as e:
        if attempt == 19:
          logging.warning('could not remove %s after a failed save (%s); the next run removes it',
                          tmp, _short(e))
        time.sleep(0.1)

  def check_for_errors(self) -> None:
    """Raises ``CheckpointError`` (naming the step) if a background save has already failed;
    never waits for one still writing. Cheap: call it every step, so a full disk is reported as
    soon as the write fails rather than at the next save."""
    # Orbax's own check_for_errors misses failures its finalize thread has already consumed;
    # waiting on a save that is no longer in progress returns at once, raising its error.
    if self._pending_step is not None and not self._manager.is_saving_in_progress():
      self.wait_until_finished()

  def wait_until_finished(self) -> None:
    """Blocks until a background save has committed; raises ``CheckpointError`` if it failed."""
    step, self._pending_step = self._pending_step, None
    try:
      self._manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      raise self._save_error(step, e) from e

  def restore(self, abstract_state: Any, step: int | None = None, *, partial: bool = False
              ) -> tuple[int, Any, dict, dict] | None:
    """Reads ``(step, state, data_state, meta)`` of ``step`` or of the latest readable checkpoint.

    Args:
      abstract_state: the state's structure: a pytree of ``jax.ShapeDtypeStruct`` with
        ``.sharding`` (restored arrays land there), or of concrete arrays (their shape, dtype and
        sharding are used; NumPy leaves come back as NumPy arrays).
      step: a specific step; None for the newest one that can be read, falling back past (and,
        unless read-only, setting aside) newer unreadable ones, with a warning for each.
      partial: ``abstract_state`` is a dict holding some of the state's top-level entries (e.g.
        ``params`` and ``batch_stats``); only those are read.

    Returns:
      The tuple above, or None when the directory holds no checkpoint.

    Raises:
      CheckpointError: ``step`` cannot be read, or checkpoints exist but none can be read.
    """
    self.wait_until_finished()
    abstract = jax.tree.map(_as_abstract, abstract_state)
    if step is not None:
      try:
        return self._restore_step(int(step), abstract, partial)
      except Exception as e:  # pylint: disable=broad-except
        raise CheckpointError(errno.EIO, f'cannot read checkpoint step {step} in '
                              f'{self.directory}: {_short(e)}') from e
    steps = sorted(self._manager.all_steps(), reverse=True)
    if not steps:
      return None
    unreadable = []
    for candidate in steps:
      try:
        restored = self._restore_step(candidate, abstract, partial)
      except Exception as e:  # pylint: disable=broad-except
        logging.warning('checkpoint step %d in %s cannot be read (%s); trying the previous one',
                        candidate, self.directory, _short(e))
        unreadable.append((candidate, e))
        continue
      if unreadable:
        logging.warning('restored checkpoint step %d from %s instead of the newer unreadable '
                        'step(s) %s', candidate, self.directory, [s for s, _ in unreadable])
        if not self._read_only:
          self._set_aside([s for s, _ in unreadable])
      return restored
    raise CheckpointError(
        errno.EIO,
        f'none of the checkpoints in {self.directory} can be read (nothing was changed); '
        'if every step fails the same way, the state structure given to restore probably does '
        'not match the saved one. ' + '; '.join(f'step {s}: {_short(e)}' for s, e in unreadable))

  def _restore_step(self, step: int, abstract: Any,
                    partial: bool = False) -> tuple[int, Any, dict, dict]:
    data_args = dict(data=ocp.args.JsonRestore(), meta=ocp.args.JsonRestore())
    if not partial:
      restored = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract), **data_args))
    else:
      restore_args = jax.tree.map(
          lambda s: ocp.ArrayRestoreArgs(sharding=getattr(s, 'sharding', None), dtype=s.dtype),
          abstract)
      manager = _make_manager(self._path, keep=1, async_save=False, read_only=True,
                              cleanup=False, partial=True)
      try:
        restored = manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.PyTreeRestore(abstract, restore_args=restore_args,
                                         partial_restore=True), **data_args))
      finally:
        manager.close()
    data, meta = restored['data'], restored['meta']
    if not isinstance(data, dict) or not isinstance(meta, dict):
      raise ValueError(f'items data/meta are not JSON objects: {type(data)}, {type(meta)}')
    return step, restored['state'], dict(data), dict(meta)

  def _set_aside(self, steps: list[int]) -> None:
    """Renames unreadable step directories out of orbax's naming, then re-reads the directory."""
    if jax.process_index() == 0:
      stamp = time.strftime('%Y%m%dT%H%M%S', time.gmtime())
      for step in steps:
        source = self._path / str(step)
        target = self._path / f'corrupt-{step}-{stamp}'
        suffix = 1
        while target.exists():
          target = self._path / f'corrupt-{step}-{stamp}-{suffix}'
          suffix += 1
        try:
          source.rename(target)
        except FileNotFoundError:
          continue  # gone meanwhile (e.g. deleted by the run that owns it): nothing to set aside
        except OSError as e:
          raise CheckpointError(
              e.errno or errno.EIO,
              f'checkpoint step {step} in {self.directory} cannot be read and cannot be moved '
              f'aside ({e}); remove or rename {source} by hand') from e
        logging.warning('moved the unreadable checkpoint %s to %s', source, target)
    # No process may re-list the directory before process 0 has renamed everything.
    ocp.multihost.sync_global_processes('glf_jax_checkpoint_set_aside')
    self._reload()

  def close(self) -> None:
    """Waits for a background save (raising ``CheckpointError`` if it failed), then closes."""
    try:
      self.wait_until_finished()
    finally:
      self._manager.close()


def read_meta(directory: str) -> dict | None:
  """The ``meta`` item of the newest checkpoint whose ``meta`` reads; never writes anything.

  Returns None when ``directory`` does not exist or holds no checkpoint; unreadable ``meta`` items
  are skipped with a warning. Note that the step it comes from may still have an unreadable
  ``state`` (``Checkpointer.restore`` then falls back further).

  Raises:
    CheckpointError: checkpoints exist but none of their ``meta`` items can be read.
  """
  path = _path(directory)
  # A fresh run's directory: no steps, so no read-only manager (and none of its warnings).
  if not path.is_dir() or not any(p.name.isdigit() for p in path.iterdir()):
    return None
  manager = _make_manager(path, keep=1, async_save=False, read_only=True, cleanup=False)
  try:
    steps = sorted(manager.all_steps(), reverse=True)
    errors = []
    for step in steps:
      try:
        meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']
        if not isinstance(meta, dict):
          raise ValueError(f'meta is not a JSON object: {type(meta)}')
        return dict(meta)
      except Exception as e:  # pylint: disable=broad-except
        logging.warning('cannot read the meta of checkpoint step %d in %s (%s); trying the '
                        'previous one', step, path, _short(e))
        errors.append(f'step {step}: {_short(e)}')
    if steps:
      raise CheckpointError(errno.EIO, f'none of the checkpoints in {path} has a readable meta: '
                            + '; '.join(errors))
    return None
  finally:
    manager.close()


def checkpoint_dir(workdir: str) -> str:
  """Where a run keeps its checkpoints: ``<workdir>/checkpoints``."""
  return fileio.join(fileio.resolve(workdir), layout.CHECKPOINTS)
