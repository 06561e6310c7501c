"""Orbax checkpoints of a run: the train state, the data iterator's position and run metadata.

A checkpoint ``<directory>/<step>/`` holds three items:

* ``state``: the train-state pytree (``glf_jax.train.state``), saved sharded as it lies on the
  mesh and restored onto the shardings of an abstract state;
* ``data``: the grain iterator's state (JSON), so a resumed run sees exactly the batches it would
  have seen;
* ``meta``: the run's config (JSON) and what is needed to rebuild its structure.

Orbax writes each checkpoint to a temporary directory and renames it on commit, so a run killed
mid-save leaves no half-written ``<step>/``. A committed checkpoint that cannot be read (a file
lost or truncated afterwards) is moved aside to ``corrupt-<step>-<time>`` (a name orbax does not
treat as a step) with a warning, and the previous one is used: the manager's notion of "latest"
then matches what was restored, and the next save cannot delete the only good checkpoint.
"""

from __future__ import annotations

import errno
import os
import time
from typing import Any

from absl import logging
import jax
import orbax.checkpoint as ocp


class CheckpointError(OSError):
  """Saving or reading checkpoints failed (the message names the directory)."""


def _manager(directory: str, keep: int, async_save: bool) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                         enable_async_checkpointing=async_save)
  return ocp.CheckpointManager(directory, options=options, item_names=('state', 'data', 'meta'))


class Checkpointer:
  """Save / restore with keep-latest-N and fallback past unreadable checkpoints."""

  def __init__(self, directory: str, *, keep: int = 3, async_save: bool = True):
    if int(keep) != keep or keep < 1:
      raise ValueError(f'checkpoint.keep must be an int >= 1, got {keep!r}')
    self.directory = os.path.abspath(directory)
    try:
      os.makedirs(self.directory, exist_ok=True)
    except OSError as e:
      raise CheckpointError(e.errno, f'cannot create checkpoint directory {self.directory}: {e}')
    self._keep, self._async = int(keep), bool(async_save)
    self._manager = _manager(self.directory, self._keep, self._async)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any, *, data_state: dict, meta: dict | None = None,
           force: bool = False) -> bool:
    """Starts saving ``state`` at ``step`` (async when configured); False if already saved."""
    if step in self._manager.all_steps():
      return False
    args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                              data=ocp.args.JsonSave(data_state),
                              meta=ocp.args.JsonSave({**(meta or {}), 'step': int(step),
                                                      'time': time.time()}))
    try:
      return bool(self._manager.save(step, args=args, force=force))
    except Exception as e:  # pylint: disable=broad-except
      raise self._save_error(step, e) from e

  def _save_error(self, step, error) -> CheckpointError:
    full = isinstance(error, OSError) and error.errno == errno.ENOSPC
    reason = 'the disk is full' if full else f'{type(error).__name__}: {error}'
    return CheckpointError(getattr(error, 'errno', None) or errno.EIO,
                           f'saving checkpoint step {step} in {self.directory} failed ({reason}); '
                           f'the earlier checkpoints {self.all_steps()} are intact')

  def wait_until_finished(self) -> None:
    try:
      self._manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      raise self._save_error(self._manager.latest_step(), e) from e

  def restore(self, abstract_state: Any, step: int | None = None):
    """``(step, state, data_state, meta)`` of ``step`` or the latest readable checkpoint.

    Returns None when the directory holds no checkpoint; raises ``CheckpointError`` when it holds
    some but none can be read.
    """
    abstract = jax.tree.map(_as_abstract, abstract_state)
    steps = [step] if step is not None else sorted(self._manager.all_steps(), reverse=True)
    if not steps:
      return None
    errors = []
    for candidate in steps:
      args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                data=ocp.args.JsonRestore(), meta=ocp.args.JsonRestore())
      try:
        restored = self._manager.restore(candidate, args=args)
        return candidate, restored['state'], dict(restored['data']), dict(restored['meta'])
      except Exception as e:  # pylint: disable=broad-except
        errors.append(f'step {candidate}: {type(e).__name__}: {e}')
        if step is not None:
          break
        self._set_aside(candidate, e)
    raise CheckpointError(errno.EIO, f'no readable checkpoint in {self.directory}: '
                          + '; '.join(errors))

  def _set_aside(self, step: int, error: Exception) -> None:
    source = os.path.join(self.directory, str(step))
    target = os.path.join(self.directory, f'corrupt-{step}-{int(time.time())}')
    logging.warning('checkpoint step %d in %s cannot be read (%s: %s); moved it to %s and falling '
                    'back to the previous checkpoint', step, self.directory,
                    type(error).__name__, str(error)[:500], target)
    if jax.process_index() == 0 and os.path.isdir(source):
      os.rename(source, target)
    self._manager.close()
    self._manager = _manager(self.directory, self._keep, self._async)

  def close(self) -> None:
    try:
      self._manager.wait_until_finished()
    finally:
      self._manager.close()


def _as_abstract(x):
  if isinstance(x, jax.ShapeDtypeStruct):
    return x
  sharding = getattr(x, 'sharding', None)
  return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)


def read_meta(directory: str) -> dict | None:
  """The ``meta`` item of the latest checkpoint whose metadata reads; None without any."""
  if not os.path.isdir(directory):
    return None
  manager = _manager(directory, 1_000_000, False)
  try:
    for step in sorted(manager.all_steps(), reverse=True):
      try:
        restored = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(restored['meta'])
      except Exception as e:  # pylint: disable=broad-except
        logging.warning('cannot read the metadata of checkpoint %d in %s: %s', step, directory, e)
    return None
  finally:
    manager.close()
