"""A run's records in its workdir, kept across invocations: nothing a run wrote is overwritten.

* ``summary.json``: the merged view. In a pretraining workdir its top level is the training record
  (status, steps, training time over all sessions, ...) with the latest end-of-training
  evaluation (``raw_pixels``, ``random_init``, ``pretrained``); an evaluation mode run there
  later never replaces it. In a workdir that only evaluates, the top level is the latest
  evaluation. Every evaluation (pretraining's too) is also under ``evaluations``, keyed by what
  was evaluated:
  ``'<mode> | <data> | <encoder> | step <N>'``; running the same evaluation again replaces only its
  own entry.
* ``evaluations.jsonl``: one line per evaluation invocation, appended, never rewritten.
* ``metrics.jsonl`` and TensorBoard also get the evaluation metrics, as ``eval/<column>/<metric>``
  at the evaluated step (one record per evaluation key, replaced when it is re-run).

A damaged ``summary.json`` (not a JSON object: a torn write, a hand edit) is never overwritten:
the next write first renames it to ``summary.json.corrupt-<time>`` beside it, with a warning
naming both, like the checkpoints' ``corrupt-<step>-<time>``.

``config.json`` is written by ``glf_jax.run.saved_config``. Process 0 writes; the others return at
once.
"""

from __future__ import annotations

import json
import time
from typing import Any

from absl import logging
import jax

from glf_jax.run import layout
from glf_jax.run import metrics_log
from glf_jax.runtime import fileio

SUMMARY = layout.SUMMARY
EVALUATIONS_LOG = layout.EVALUATIONS_LOG
METRICS_LOG = layout.METRICS_LOG


def _is_chief() -> bool:
  return jax.process_index() == 0


def _load(path: str) -> tuple[dict[str, Any] | None, str | None]:
  """``(summary, None)``, or ``(None, why)`` when ``path`` is not a readable JSON object."""
  try:
    summary = json.loads(fileio.read_text(path))
  except (OSError, ValueError) as e:
    return None, f'{type(e).__name__}: {e}'
  if not isinstance(summary, dict):
    return None, f'a JSON {type(summary).__name__}, not an object'
  return summary, None


def read_summary(workdir: str) -> dict[str, Any]:
  """The workdir's ``summary.json`` ({} if absent or unreadable, with a warning if unreadable:
  it is kept aside, not overwritten, when the summary is next written)."""
  path = fileio.join(workdir, SUMMARY)
  if not fileio.exists(path):
    return {}
  summary, why = _load(path)
  if summary is None:
    logging.warning('%s is unreadable (%s); it will be kept as %s.corrupt-<time> when a new one '
                    'is written', path, why, SUMMARY)
    return {}
  return summary


def _set_aside_if_damaged(path: str) -> None:
  """Renames an unreadable ``path`` to ``<path>.corrupt-<time>`` (never overwritten)."""
  if not fileio.exists(path) or _load(path)[0] is not None:
    return
  target = fileio.keep_aside(path, 'corrupt')
  logging.warning('kept the unreadable %s as %s; writing a new one', path, target)


def write_summary(workdir: str, summary: dict) -> None:
  path = fileio.join(workdir, SUMMARY)
  _set_aside_if_damaged(path)
  with fileio.atomic_write(path, 'w', encoding='utf-8') as f:
    json.dump(summary, f, indent=2, default=float)
  print(f'summary written to {path}', flush=True)


def evaluation_key(mode: str, data_name: str, encoder: str, step: int | None) -> str:
  return f'{mode} | {data_name} | {encoder} | step {"-" if step is None else step}'


def record_pretraining(workdir: str, record: dict) -> dict:
  """Writes the training record (and its evaluation, if any) as the summary's top level; keeps
  the evaluations of earlier invocations. Returns the merged summary."""
  if not _is_chief():
    return record
  evaluations = read_summary(workdir).get('evaluations', {})
  if 'pretrained' in record:
    key = evaluation_key('pretrain', record['dataset'], workdir, record['step'])
    evaluations[key] = {k: record[k] for k in ('raw_pixels', 'random_init', 'pretrained')
                        if k in record}
  summary = {**record, 'evaluations': evaluations}
  write_summary(workdir, summary)
  return summary


def record_evaluation(workdir: str, key: str, record: dict) -> dict:
  """Adds an evaluation mode's result: under ``evaluations[key]``, and as the top level only if
  the workdir holds no training record. Returns the merged summary."""
  if not _is_chief():
    return record
  previous = read_summary(workdir)
  evaluations = previous.get('evaluations', {})
  evaluations[key] = record
  if previous.get('mode') == 'pretrain':
    summary = {**previous, 'evaluations': evaluations}
  else:
    summary = {**record, 'evaluations': evaluations}
  write_summary(workdir, summary)
  return summary


def log_evaluation(workdir: str, key: str, step: int | None,
                   columns: dict[str, dict[str, float]]) -> None:
  """Appends the evaluation to ``evaluations.jsonl`` and puts its metrics into ``metrics.jsonl``
  (replacing an earlier record of the same key) and TensorBoard."""
  if not _is_chief():
    return
  now = time.time()
  fileio.append_text(fileio.join(workdir, EVALUATIONS_LOG),
                     json.dumps({'evaluation': key, 'step': step, 'wall_time': now, **columns},
                                default=float) + '\n')
  scalars = {f'eval/{column.replace(" ", "_")}/{metric}': float(value)
             for column, results in columns.items() for metric, value in results.items()}
  metrics_log.replace(fileio.join(workdir, METRICS_LOG), key,
                      {'step': step or 0, 'evaluation': key, **scalars, 'wall_time': now})
  tb = metrics_log.tensorboard(workdir)
  if tb is None:
    return
  with tb:
    for name, value in scalars.items():
      tb.add_scalar(name, value, step or 0)
