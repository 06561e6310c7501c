"""A run's JSON-lines logs (``metrics.jsonl``, a cohort's ``tracks.jsonl``) and TensorBoard.

One record per line, each a JSON object with a ``step``. Readers skip a torn line (a full disk,
a kill mid-write), and a line that is JSON but not such a record, with a warning naming the file
and the line; a resumed run cuts its logs back to the step it
resumes from (:func:`trim`), so no step is logged twice. :class:`Writers` appends training
records to ``metrics.jsonl`` and TensorBoard (process 0 only); in an object-store workdir it
uploads ``metrics.jsonl`` at most every :data:`UPLOAD_SECONDS` and at each checkpoint (an object
is rewritten whole on every upload, and GCS allows about one write per second to one object).
"""

from __future__ import annotations

import json
import time
from typing import Any, Iterable

from absl import logging

from glf_jax.run import layout
from glf_jax.runtime import fileio


def _parse_lines(path: str, lines: Iterable[str]) -> list[dict[str, Any]]:
  records = []
  for number, line in enumerate(lines, 1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError:
      logging.warning('%s: line %d is incomplete (%d characters); skipped', path, number,
                      len(line))
      continue
    # JSON, but not a record: a hand edit or another program's line ([1, 2], null, a bad step).
    if not isinstance(record, dict) or not isinstance(record.get('step', 0), (int, float)):
      logging.warning('%s: line %d is not a record with a numeric step (%.60s); skipped', path,
                      number, line.strip())
      continue
    records.append(record)
  return records


def read(path: str) -> list[dict[str, Any]]:
  """The records of a JSON-lines log; a torn line, or one that is not a record, is skipped with a
  warning naming the file and the line."""
  if not fileio.exists(path):
    return []
  return _parse_lines(path, fileio.read_text(path).splitlines(keepends=True))


def trim(path: str, last_step: int) -> int:
  """Keeps the records of ``path`` up to ``last_step`` (the step a run resumes from), dropping
  torn lines and the steps logged after that checkpoint, so a resumed run logs no step twice.
  Returns how many lines were dropped."""
  if not fileio.exists(path):
    return 0
  lines = [line for line in fileio.read_text(path).splitlines(keepends=True) if line.strip()]
  kept = [json.dumps(r) + '\n' for r in _parse_lines(path, lines)
          if r.get('step', 0) <= last_step]
  if len(kept) != len(lines):
    with fileio.atomic_write(path, 'w', encoding='utf-8') as f:
      f.writelines(kept)
  return len(lines) - len(kept)


def append(path: str, record: dict[str, Any]) -> None:
  """Appends one record (flushed at once)."""
  fileio.append_text(path, json.dumps(record, default=float) + '\n')


def replace(path: str, key: str, record: dict[str, Any]) -> None:
  """Replaces the records whose ``evaluation`` is ``key`` by ``record`` (appended last)."""
  kept = [r for r in read(path) if r.get('evaluation') != key]
  with fileio.atomic_write(path, 'w', encoding='utf-8') as f:
    f.writelines(json.dumps(r) + '\n' for r in [*kept, record])


UPLOAD_SECONDS = 10.0  # the least time between two uploads of an object-store workdir's log


class _Appender:
  """Lines appended to one log: a local file is appended to and flushed line by line; an
  object-store log (which cannot be appended to) is kept in memory and uploaded whole at most
  every :data:`UPLOAD_SECONDS`, at :meth:`flush` and at :meth:`close`."""

  def __init__(self, path: str):
    self.path = path
    self.remote = fileio.is_url(path)
    if self.remote:
      self.text = fileio.read_text(path) if fileio.exists(path) else ''
      self.uploaded = time.monotonic()
      self.pending = False
    else:
      self.file = open(path, 'a', encoding='utf-8')  # pylint: disable=consider-using-with

  def write(self, line: str) -> None:
    if not self.remote:
      self.file.write(line)
      self.file.flush()
      return
    self.text += line
    self.pending = True
    if time.monotonic() - self.uploaded >= UPLOAD_SECONDS:
      self.flush()

  def flush(self) -> None:
    if self.remote and self.pending:
      with fileio.atomic_write(self.path, 'w', encoding='utf-8') as f:
        f.write(self.text)
      self.uploaded, self.pending = time.monotonic(), False

  def close(self) -> None:
    if self.remote:
      self.flush()
    else:
      self.file.close()


def tensorboard(workdir: str, purge_step: int | None = None):
  """A tensorboardX writer of the run's ``tensorboard/`` (None when tensorboardX is missing:
  the JSON lines carry the same numbers)."""
  try:
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
  except ImportError:
    logging.warning('tensorboardX is not installed; no TensorBoard events are written')
    return None
  return SummaryWriter(layout.path(workdir, layout.TENSORBOARD), purge_step=purge_step)


class Writers:
  """``metrics.jsonl`` and TensorBoard events of a training session; process 0 only.

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
    path = layout.path(workdir, layout.METRICS_LOG)
    trim(path, start_step)
    self.jsonl = _Appender(path)
    self.tb = tensorboard(workdir, purge_step=start_step + 1 if start_step else None)

  def write(self, step: int, scalars: dict[str, float]):
    if not self.enabled:
      return
    self.jsonl.write(json.dumps({'step': step, **scalars}) + '\n')
    if self.tb is not None:
      for key, value in scalars.items():
        self.tb.add_scalar(key, value, step)

  def flush(self):
    """Writes out what is buffered (before a checkpoint, so the log reaches its step)."""
    if self.jsonl is not None:
      self.jsonl.flush()
    if self.tb is not None:
      self.tb.flush()

  def close(self):
    if self.jsonl is not None:
      self.jsonl.close()
    if self.tb is not None:
      self.tb.close()
