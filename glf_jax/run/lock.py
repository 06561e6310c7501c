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

**On an object store** (a ``gs://`` workdir) there is no flock, and no kernel to drop
a dead holder's lock, so the lock is a *lease*: the object ``<workdir>/.lock`` holding the
holder's record, a random token and the time it was last renewed. It is created with an
exclusive-create upload (fsspec's ``mode='create'``: GCS's ``ifGenerationMatch=0``, S3's
``If-None-Match: *``), which the store grants to exactly one writer. The holder renews it every
``LEASE_SECONDS / 4`` from a background thread and deletes it on release. A run that finds a
lease renewed within ``LEASE_SECONDS`` is refused with one line naming the holder; a lease older
than that was left by a holder that died (a pre-emption, SIGKILL): the new run takes it over, and
only one of several runs taking over the same dead lease wins — each first creates
``.lock.takeover-<token>`` exclusively, and the loser is refused. A holder whose renewal finds
another run's token has lost its lease (it was stalled past ``LEASE_SECONDS``): its next
checkpoint save stops the run with one line (:func:`check_held`). A renewal reads the lease and
then rewrites it (gcsfs offers no conditional overwrite), so a stalled holder's renewal can
overwrite its successor's lease; the successor then finds a token not its own and stops instead,
and one of the two goes on. A lease's age is read with the hosts' clocks: synchronised clocks
differ by far less than ``LEASE_SECONDS``.
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
import threading
import time
from typing import Iterator
import uuid

from absl import logging

from glf_jax.run import layout
from glf_jax.runtime import fileio

LOCK_NAME = layout.LOCK


class WorkdirBusyError(OSError):
  """Another live run holds the workdir's lock."""


class LockFileError(OSError):
  """``<workdir>/.lock`` is not a file the lock may write (a link, a directory, another file)."""


def _holder_text(holder: str | dict) -> str:
  """Who holds the lock, from its record (a lease's dict, or a lock file's raw text)."""
  try:
    if isinstance(holder, str):
      holder = json.loads(holder)
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


LEASE_SECONDS = 120.0  # a lease not renewed for this long was left by a dead holder

_held_leases: dict[str, '_Lease'] = {}  # workdir -> the lease this process holds there


class LeaseLostError(RuntimeError):
  """Another run took over this run's lease on an object-store workdir."""


def _record() -> dict:
  return {'pid': os.getpid(), 'host': socket.gethostname(),
          'started': time.strftime('%Y-%m-%d %H:%M:%S'), 'command': ' '.join(sys.argv)[:300]}


class _Lease:
  """The lease object of an object-store workdir (module docstring)."""

  def __init__(self, workdir: str, lease_seconds: float):
    self.workdir = workdir
    self.path = fileio.join(workdir, LOCK_NAME)
    self.lease_seconds = lease_seconds
    self.token = uuid.uuid4().hex
    self.record = {**_record(), 'token': self.token}
    self.lost = None  # the other holder's record, once a renewal finds one
    self._stop = threading.Event()
    self._thread = None
    import fsspec  # pylint: disable=g-import-not-at-top
    self.fs, self.key = fsspec.core.url_to_fs(self.path)

  def _payload(self) -> bytes:
    return json.dumps({**self.record, 'renewed': time.time()}).encode()

  def _create(self, key: str, data: bytes) -> bool:
    """Exclusive create: True if this call created ``key``, False if it existed."""
    try:
      self.fs.pipe_file(key, data, mode='create')
    except FileExistsError:
      return False
    return True

  def _read(self) -> dict | None:
    try:
      holder = json.loads(self.fs.cat_file(self.key))
    except FileNotFoundError:
      return None
    except ValueError:
      raise _refuse(self.path, 'holds something other than a lock record') from None
    if not isinstance(holder, dict) or 'token' not in holder or 'renewed' not in holder:
      raise _refuse(self.path, 'holds something other than a lock record')
    return holder

  def acquire(self) -> None:
    for _ in range(3):  # a lease released between our create and our read: try again
      if self._create(self.key, self._payload()):
        break
      holder = self._read()
      if holder is None:
        continue
      age = time.time() - float(holder['renewed'])
      if age < self.lease_seconds:
        raise WorkdirBusyError(
            f'{self.workdir} is in use by another run: {_holder_text(holder)}, '
            f'lease renewed {age:.0f} s ago; wait for it to finish (a dead run\'s lease '
            f'expires {self.lease_seconds:.0f} s after its last renewal) or use another --workdir')
      marker = f'{self.key}.takeover-{holder["token"]}'
      if not self._create(marker, self._payload()):
        raise WorkdirBusyError(f'{self.workdir}: another run is taking over the expired lease of '
                               f'{_holder_text(holder)}; use another --workdir')
      logging.warning('%s: the previous run (%s) ended without releasing its lease (renewed '
                      '%.0f s ago); taking over', self.workdir, _holder_text(holder),
                      age)
      self.fs.pipe_file(self.key, self._payload())
      self.fs.rm_file(marker)
      break
    else:
      raise WorkdirBusyError(f'{self.workdir}: its lease changed hands three times while this run '
                             'tried to take it; use another --workdir')
    self._thread = threading.Thread(target=self._renew_loop, daemon=True,
                                    name=f'glf_jax lease {self.workdir}')
    self._thread.start()

  def renew(self) -> None:
    holder = self._read()
    if holder is not None and holder['token'] != self.token:
      self.lost = holder
      return
    self.fs.pipe_file(self.key, self._payload())

  def _renew_loop(self) -> None:
    while not self._stop.wait(self.lease_seconds / 4) and self.lost is None:
      try:
        self.renew()
      except Exception as e:  # pylint: disable=broad-except
        # A transient store error: the lease lasts LEASE_SECONDS, so the next renewal can mend it.
        logging.warning('%s: renewing the lease failed (%s); retrying', self.path, e)

  def release(self) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
    if self.lost is None:
      holder = self._read()
      if holder is not None and holder['token'] == self.token:
        self.fs.rm_file(self.key)


def check_held(workdir: str) -> None:
  """Raises :class:`LeaseLostError` (one line) if this process held ``workdir``'s lease and
  another run has taken it over; nothing for a local workdir (its flock cannot be taken)."""
  lease = _held_leases.get(fileio.resolve(workdir))
  if lease is not None and lease.lost is not None:
    raise LeaseLostError(
        f'{workdir}: this run lost its lease to {_holder_text(lease.lost)} (this '
        f'process did not renew it for {lease.lease_seconds:.0f} s); stopped without writing, so '
        'the two runs do not overwrite each other\'s checkpoints')


@contextlib.contextmanager
def _hold_lease(workdir: str) -> Iterator[None]:
  lease = _Lease(workdir, LEASE_SECONDS)
  lease.acquire()
  _held_leases[workdir] = lease
  try:
    yield
  finally:
    _held_leases.pop(workdir, None)
    lease.release()


@contextlib.contextmanager
def hold(workdir: str, enabled: bool = True) -> Iterator[None]:
  """Holds ``workdir``'s lock for the block; raises :class:`WorkdirBusyError` if it is taken
  and :class:`LockFileError` if ``.lock`` is not the lock's own file (module docstring)."""
  if not enabled:
    yield
    return
  if fileio.is_url(workdir):
    with _hold_lease(workdir):
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
    record = json.dumps(_record())
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
  workdir = fileio.resolve(workdir)
  if fileio.isfile(workdir):
    raise NotADirectoryError(f'--workdir {workdir} is a file, not a directory')
  created = not fileio.exists(workdir)
  fileio.makedirs(workdir)
  try:
    with hold(workdir, enabled=chief and lock):
      yield workdir
  except BaseException:
    if created and chief:
      _remove_if_empty(workdir)
    raise


def _remove_if_empty(workdir: str) -> None:
  if fileio.is_url(workdir):
    return  # an object store has no empty directories to leave behind
  if set(os.listdir(workdir)) - {LOCK_NAME}:
    return
  path = os.path.join(workdir, LOCK_NAME)
  if os.path.exists(path):
    os.remove(path)
  os.rmdir(workdir)
