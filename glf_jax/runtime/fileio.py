"""The one path layer: every file a run, a study or an evaluation reads or writes in a workdir.

A path is a local path or a URL (``gs://bucket/runs/r``, ``s3://...``). Local paths go to the
``os`` functions; URLs stay intact (never ``os.path.abspath``-ed into ``./gs:/...``) and go to
``etils.epath``, the layer orbax uses for checkpoints, whose ``gs://`` / ``s3://`` backends are
fsspec's ``gcsfs`` / ``s3fs`` (or TensorFlow's gfile where TensorFlow is installed). So one run's
files, checkpoints included, live in one place however many hosts write there.

``atomic_write(path)`` is the one way this package replaces a file: readers (another process,
or this one after a crash) see the old file or the new one, never half of one (an object store's
upload is atomic by itself). ``append_text`` adds to a log: an object store cannot append, so
there it rewrites the object (logs are small; :class:`glf_jax.run.metrics_log.Writers` batches its
lines). ``keep_aside(path, label)`` renames a damaged or edited record before it is rewritten.
The run's lock is in :mod:`glf_jax.run.lock` (a lease object on an object store).
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from typing import IO, Iterator
import uuid

from etils import epath

# The URL schemes the path layer serves: etils.epath's remote backends (fsspec's gcsfs, s3fs).
URL_SCHEMES = ('gs', 's3')
# The schemes a run's workdir may have: orbax 0.12 writes its checkpoints to gs:// (TensorStore's
# gcs driver); to s3:// it fails ("Checkpoint path should be absolute": it turns s3:// into s3:/).
WORKDIR_SCHEMES = ('gs',)
# The fsspec package each scheme needs where TensorFlow (gfile) is not installed.
_SCHEME_PACKAGE = {'gs': 'gcsfs', 's3': 's3fs'}


def is_url(path: str | os.PathLike[str]) -> bool:
  """Whether ``path`` is a URL (``scheme://...``), not a local path."""
  return '://' in os.fspath(path)


def check_url(path: str | os.PathLike[str], what: str = '--workdir') -> None:
  """Raises ValueError (one line) for a workdir URL whose scheme cannot hold a run, or whose
  backend package is not installed; nothing for a local path."""
  path = os.fspath(path)
  if not is_url(path):
    return
  scheme = path.split('://', 1)[0]
  if scheme not in WORKDIR_SCHEMES:
    why = (' (orbax cannot write checkpoints there yet)' if scheme in URL_SCHEMES else '')
    raise ValueError(f'{what} {path}: URL scheme {scheme}:// is not supported{why}; use gs://, '
                     'a local path, or the bucket mounted as a folder')
  package = _SCHEME_PACKAGE[scheme]
  try:
    __import__(package)
  except ImportError:
    try:
      __import__('tensorflow')  # epath then uses gfile
    except ImportError:
      raise ValueError(f'{what} {path}: {scheme}:// needs the package {package} '
                       f'(pip install {package}, or pip install -e .[gcs])') from None


def resolve(path: str | os.PathLike[str]) -> str:
  """``path`` made absolute: a local path by ``os.path.abspath`` (``~`` expanded), a URL as it
  is (without a trailing slash)."""
  path = os.fspath(path)
  if is_url(path):
    return path.rstrip('/')
  return os.path.abspath(os.path.expanduser(path))


def join(path: str | os.PathLike[str], *names: str) -> str:
  """``path/name/...`` (a URL's ``//`` kept)."""
  return os.path.join(os.fspath(path), *names)


def _epath(path: str | os.PathLike[str]) -> epath.Path:
  return epath.Path(os.fspath(path))


# epath serves local paths (its os backend) and URLs alike.
def exists(path: str | os.PathLike[str]) -> bool:
  return _epath(path).exists()


def isdir(path: str | os.PathLike[str]) -> bool:
  return _epath(path).is_dir()


def isfile(path: str | os.PathLike[str]) -> bool:
  return _epath(path).is_file()


def makedirs(path: str | os.PathLike[str]) -> None:
  """Creates the directory and its parents (nothing to create on an object store)."""
  if is_url(path):
    _epath(path).mkdir(parents=True, exist_ok=True)
  else:
    os.makedirs(path, exist_ok=True)


def listdir(path: str | os.PathLike[str]) -> list[str]:
  """The names in directory ``path`` (unsorted, as ``os.listdir``)."""
  return [p.name for p in _epath(path).iterdir()]


def open_file(path: str | os.PathLike[str], mode: str = 'r', *,
              encoding: str | None = None) -> IO:
  """``open(path, mode)`` for reading (``'r'``, ``'rb'``) or writing a whole file (``'w'``,
  ``'wb'``); appending is :func:`append_text`."""
  if mode not in ('r', 'rb', 'w', 'wb'):
    raise ValueError(f"mode must be 'r', 'rb', 'w' or 'wb', got {mode!r}")
  if is_url(path):
    return _epath(path).open(mode, encoding=encoding if 'b' not in mode else None)
  return open(path, mode, encoding=encoding)  # pylint: disable=consider-using-with


def read_bytes(path: str | os.PathLike[str]) -> bytes:
  """The whole file's bytes (a weights or features file read from a URL as from a local path)."""
  with open_file(path, 'rb') as f:
    return f.read()


def read_text(path: str | os.PathLike[str]) -> str:
  with open_file(path, 'r', encoding='utf-8') as f:
    return f.read()


def append_text(path: str | os.PathLike[str], text: str) -> None:
  """Appends ``text`` to the file ``path`` (created if missing). On an object store the object
  is rewritten whole with ``text`` added (an object cannot be appended to)."""
  if is_url(path):
    before = read_text(path) if exists(path) else ''
    with atomic_write(path, 'w', encoding='utf-8') as f:
      f.write(before + text)
    return
  with open(path, 'a', encoding='utf-8') as f:
    f.write(text)


def rename(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
  """Renames a file (on an object store: copied, then the source deleted)."""
  if is_url(source):
    # Copy, then delete: what a rename is on an object store (gcsfs's rename tries GCS's moveTo
    # first, which some GCS-compatible servers lack and answer only after retries).
    _epath(source).copy(_epath(target))
    _epath(source).unlink()
  else:
    os.rename(source, target)


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
  if is_url(path):
    # An object appears whole when its upload completes, so no temporary object is needed; the
    # block writes into memory and nothing is uploaded if it raises.
    buffer = io.BytesIO() if mode == 'wb' else io.StringIO()
    yield buffer
    data = buffer.getvalue()
    _epath(path).write_bytes(data if mode == 'wb' else data.encode(encoding or 'utf-8'))
    return
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
  while exists(target):
    target, suffix = f'{path}.{label}-{stamp}-{suffix}', suffix + 1
  rename(path, target)
  return target
