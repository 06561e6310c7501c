"""One run per workdir: an advisory lock on ``<workdir>/.lock`` held while a run writes there.

Two runs on one workdir delete each other's in-flight checkpoints and interleave their logs, so
the second one is refused with one line naming the holder. The lock is ``fcntl.flock`` on the
file, which the kernel releases when its holder exits however it exits (SIGKILL, a crash): a
lock can never be left behind. The file's content (pid, host, start time, command) is only for
messages; it is emptied on a clean release, so content found under a free lock means the last
holder died without releasing, and the new run says so as it takes over.

Process 0 of a multi-process run takes it (the others write only their checkpoint shards).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from typing import Iterator

from absl import logging

from glf_jax.run import layout

LOCK_NAME = layout.LOCK


class WorkdirBusyError(OSError):
  """Another live run holds the workdir's lock."""


def _holder_text(raw: str) -> str:
  try:
    holder = json.loads(raw)
    return (f'pid {holder["pid"]} on {holder["host"]} since {holder["started"]} '
            f'({holder["command"]})')
  except (ValueError, KeyError, TypeError):
    return 'another process'


@contextlib.contextmanager
def hold(workdir: str, enabled: bool = True) -> Iterator[None]:
  """Holds ``workdir``'s lock for the block; raises :class:`WorkdirBusyError` if it is taken."""
  if not enabled:
    yield
    return
  path = os.path.join(workdir, LOCK_NAME)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
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
