"""File helpers shared by the data caches, the feature cache and the run summaries.

``atomic_write(path)`` is the one way this package replaces a file: readers (another process,
or this one after a crash) see the old file or the new one, never half of one. ``keep_aside(path,
label)`` renames a damaged or edited record before it is rewritten.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import IO, Iterator
import uuid


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = 'wb', *,
                 encoding: str | None = None) -> Iterator[IO]:
  """Opens a temporary file next to ``path`` for writing; on success renames it to ``path``.

  The temporary file is in the same directory (``os.replace`` is atomic only within one file
  system) and hidden (``.<name>.<random>.tmp``), so globs over the directory do not match it. It is
  removed if the block raises anything (``BaseException``: KeyboardInterrupt too), and the error
  propagates. The parent directory is created if missing. The file gets the permissions a plain
  ``open`` would give (the umask's), unlike ``tempfile.mkstemp``'s 0600.

      with atomic_write(path) as f:
        np.save(f, array)
      with atomic_write(path, 'w', encoding='utf-8') as f:
        json.dump(summary, f)

  Args:
    path: the file to write (replaced if it exists).
    mode: ``'wb'`` (bytes) or ``'w'`` (text).
    encoding: text encoding for ``mode='w'``.
  """
  if mode not in ('w', 'wb'):
    raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
  path = os.fspath(path)
  directory, name = os.path.split(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  tmp = os.path.join(directory, f'.{name}.{uuid.uuid4().hex}.tmp')
  # 'x': fail rather than write into a file that somebody else created under the same name.
  f = open(tmp, 'x' + mode[1:], encoding=encoding)  # pylint: disable=consider-using-with
  try:
    with f:
      yield f
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)
    raise


def keep_aside(path: str | os.PathLike[str], label: str) -> str:
  """Renames ``path`` to ``<path>.<label>-<UTC time>`` (``-<n>`` added while that exists), so a
  file about to be replaced is kept, not overwritten; returns the new path."""
  path = os.fspath(path)
  stamp = time.strftime('%Y%m%dT%H%M%S', time.gmtime())
  target, suffix = f'{path}.{label}-{stamp}', 1
  while os.path.exists(target):
    target, suffix = f'{path}.{label}-{stamp}-{suffix}', suffix + 1
  os.rename(path, target)
  return target
