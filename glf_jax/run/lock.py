"""One run per workdir: an advisory lock on ``<workdir>/.lock`` held while a run writes there.

Two runs on one workdir delete each other's in-flight checkpoints and interleave their logs, so
the second one is refused with one line naming the holder. The lock is ``fcntl.flock`` on the
file, which the kernel releases when its holder exits however it exits (SIGKILL, a crash): a
lock can never be left behind. The file's content (pid, host, start time, command) is only for
messages; it is emptied on a clean release, so content found under a free lock means the last
holder died without releasing, and the new run says so as it takes over.

The lock writes only into a file that is its own: ``.lock`` is opened without following a
symbolic link (``O_NOFOLLOW``), and a ``.lock`` that is a link, not a regular file, has other
names (hard links) or holds something other than a lock record is refused with one line naming
it (:class:`LockFileError`): emptying it would empty somebody's file.

Process 0 of a multi-process run takes it (the others write only their checkpoint shards).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import stat
import sys
import time
from typing import Iterator

from absl import logging

from glf_jax.run import layout

LOCK_NAME = layout.LOCK


class WorkdirBusyError(OSError):
  """Another live run holds the workdir's lock."""


class LockFileError(OSError):
  """``<workdir>/.lock`` is not a file the lock may write (a link, a directory, another file)."""


def _holder_text(raw: str) -> str:
  try:
    holder = json.loads(raw)
    return (f'pid {holder["pid"]} on {holder["host"]} since {holder["started"]} '
            f'({holder["command"]})')
  except (ValueError, KeyError, TypeError):
    return 'another process'


def _is_record(raw: str) -> bool:
  """Whether ``raw`` is a lock record (:func:`hold` writes ``{"pid", "host", ...}``)."""
  try:
    record = json.loads(raw)
  except ValueError:
    return False
  return isinstance(record, dict) and {'pid', 'host', 'started'} <= set(record)


def _refuse(path: str, what: str) -> LockFileError:
  return LockFileError(errno.EEXIST, f'{path} {what}, not a glf_jax lock file, so it is left '
                       'as it is; remove it (or use another --workdir)')


def _open_own_file(path: str) -> int:
  """A descriptor of the lock file ``path``, created if missing; never of a file reached through
  a symbolic link, nor of a file the lock cannot safely empty (:class:`LockFileError`)."""
  try:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
  except OSError:
    if os.path.islink(path):  # O_NOFOLLOW: ELOOP (or EMLINK on some systems)
      raise _refuse(path, f'is a symbolic link (to {os.readlink(path)})') from None
    if os.path.isdir(path):
      raise _refuse(path, 'is a directory') from None
    raise
  status = os.fstat(fd)
  what = None
  if not stat.S_ISREG(status.st_mode):
    what = 'is not a regular file'
  elif status.st_nlink != 1:
    what = f'has {status.st_nlink} names (hard links)'
  else:
    raw = os.pread(fd, 4096, 0).decode('utf-8', 'replace').strip()
    if raw and not _is_record(raw):
      what = 'holds something other than a lock record'
  if what is not None:
    os.close(fd)
    raise _refuse(path, what)
  return fd


@contextlib.contextmanager
def hold(workdir: str, enabled: bool = True) -> Iterator[None]:
  """Holds ``workdir``'s lock for the block; raises :class:`WorkdirBusyError` if it is taken
  and :class:`LockFileError` if ``.lock`` is not the lock's own file (module docstring)."""
  if not enabled:
    yield
    return
  path = os.path.join(workdir, LOCK_NAME)
  fd = _open_own_file(path)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raw = os.pread(fd, 4096, 0).decode('utf-8', 'replace')
      raise WorkdirBusyError(
          f'{workdir} is in use by another run: {_holder_text(raw)}; wait for it to finish or '
          'use another --workdir') from None
    previous = os.pread(fd, 4096, 0).decode('utf-8', 'replace').strip()
    if previous:
      logging.warning('%s: the previous run (%s) ended without releasing its lock; taking over',
                      workdir, _holder_text(previous))
    record = json.dumps({'pid': os.getpid(), 'host': socket.gethostname(),
                         'started': time.strftime('%Y-%m-%d %H:%M:%S'),
                         'command': ' '.join(sys.argv)[:300]})
    os.ftruncate(fd, 0)
    os.pwrite(fd, record.encode(), 0)
    try:
      yield
    finally:
      os.ftruncate(fd, 0)  # a clean release: the next run finds an empty file
  finally:
    os.close(fd)  # closing the descriptor releases the flock


@contextlib.contextmanager
def claim(workdir: str, *, chief: bool = True, lock: bool = True) -> Iterator[str]:
  """The block's workdir (absolute): created if missing, and on the ``chief`` process (process 0)
  its lock held (unless ``lock`` is False: a sharded study's processes share their workdir) and
  the directory removed again if it was created here and the block fails before anything is
  written into it.

  Raises:
    NotADirectoryError: ``workdir`` is a file.
    WorkdirBusyError: another live run holds the lock.
    LockFileError: ``<workdir>/.lock`` is a link or not the lock's own file (left untouched).
  """
  workdir = os.path.abspath(workdir)
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise NotADirectoryError(f'--workdir {workdir} is a file, not a directory')
  created = not os.path.exists(workdir)
  os.makedirs(workdir, exist_ok=True)
  try:
    with hold(workdir, enabled=chief and lock):
      yield workdir
  except BaseException:
    if created and chief:
      _remove_if_empty(workdir)
    raise


def _remove_if_empty(workdir: str) -> None:
  if set(os.listdir(workdir)) - {LOCK_NAME}:
    return
  path = os.path.join(workdir, LOCK_NAME)
  if os.path.exists(path):
    os.remove(path)
  os.rmdir(workdir)
