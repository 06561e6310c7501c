"""A run's records in its workdir, kept across invocations: nothing a run wrote is overwritten.

* ``summary.json``: the merged view. In a pretraining workdir its top level is the training record
  (status, steps, training time over all sessions, ...) with the latest end-of-training
  evaluation (``random_init``, ``pretrained``); an evaluation mode run there later never replaces
  it. In a workdir that only evaluates, the top level is the latest evaluation. Every evaluation
  (pretraining's too) is also under ``evaluations``, keyed by what was evaluated:
  ``'<mode> | <data> | <encoder> | step <N>'``; running the same evaluation again replaces only its
  own entry.
* ``evaluations.jsonl``: one line per evaluation invocation, appended, never rewritten.
* ``metrics.jsonl`` and TensorBoard also get the evaluation metrics, as ``eval/<column>/<metric>``
  at the evaluated step (one record per evaluation key, replaced when it is re-run).
* ``config.json``: the config the run started with; a config changed on resume
  (``allow_config_change``) is logged to ``config_changes.jsonl`` beside it instead.

Process 0 writes; the others return at once.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from absl import logging
import jax
import ml_collections

from glf_jax import config as config_lib
from glf_jax import fileio

SUMMARY = 'summary.json'
EVALUATIONS_LOG = 'evaluations.jsonl'
METRICS_LOG = 'metrics.jsonl'


def _is_chief() -> bool:
  return jax.process_index() == 0


def read_summary(workdir: str) -> dict[str, Any]:
  """The workdir's ``summary.json`` ({} if absent or unreadable, with a warning if unreadable)."""
  path = os.path.join(workdir, SUMMARY)
  if not os.path.exists(path):
    return {}
  try:
    with open(path, encoding='utf-8') as f:
      summary = json.load(f)
    return summary if isinstance(summary, dict) else {}
  except (OSError, ValueError) as e:
    logging.warning('%s is unreadable (%s); it will be rewritten', path, e)
    return {}


def _write_summary(workdir: str, summary: dict) -> None:
  path = os.path.join(workdir, SUMMARY)
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
    evaluations[key] = {k: record[k] for k in ('random_init', 'pretrained') if k in record}
  summary = {**record, 'evaluations': evaluations}
  _write_summary(workdir, summary)
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
  _write_summary(workdir, summary)
  return summary


def log_evaluation(workdir: str, key: str, step: int | None,
                   columns: dict[str, dict[str, float]]) -> None:
  """Appends the evaluation to ``evaluations.jsonl`` and puts its metrics into ``metrics.jsonl``
  (replacing an earlier record of the same key) and TensorBoard."""
  if not _is_chief():
    return
  now = time.time()
  with open(os.path.join(workdir, EVALUATIONS_LOG), 'a', encoding='utf-8') as f:
    f.write(json.dumps({'evaluation': key, 'step': step, 'wall_time': now, **columns},
                       default=float) + '\n')
  scalars = {f'eval/{column.replace(" ", "_")}/{metric}': float(value)
             for column, results in columns.items() for metric, value in results.items()}
  _replace_metrics_record(os.path.join(workdir, METRICS_LOG), key,
                          {'step': step or 0, 'evaluation': key, **scalars, 'wall_time': now})
  try:
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
  except ImportError:
    return
  with SummaryWriter(os.path.join(workdir, 'tensorboard')) as tb:
    for name, value in scalars.items():
      tb.add_scalar(name, value, step or 0)


def _replace_metrics_record(path: str, key: str, record: dict) -> None:
  from glf_jax.train import loop  # pylint: disable=g-import-not-at-top  (loop imports us)
  kept = [r for r in loop.read_metrics_log(path) if r.get('evaluation') != key]
  with fileio.atomic_write(path, 'w', encoding='utf-8') as f:
    f.writelines(json.dumps(r) + '\n' for r in [*kept, record])


def write_config(workdir: str, config: ml_collections.ConfigDict, *, step: int,
                 saved_json: str | None) -> None:
  """``config.json`` is the config the run started with; a changed config on resume is logged
  to ``config_changes.jsonl`` (step, and each changed key's old and new value)."""
  if not _is_chief():
    return
  path = os.path.join(workdir, 'config.json')
  if saved_json is None or not os.path.exists(path):
    with fileio.atomic_write(path, 'w', encoding='utf-8') as f:
      f.write(config_lib.to_json(config))
    return
  old = config_lib.flatten(json.loads(saved_json))
  new = config_lib.flatten(json.loads(config_lib.to_json(config)))
  changes = {k: [old.get(k), new.get(k)] for k in config_lib.config_differences(saved_json, config)}
  if changes:
    with open(os.path.join(workdir, 'config_changes.jsonl'), 'a', encoding='utf-8') as f:
      f.write(json.dumps({'step': step, 'wall_time': time.time(), 'changes': changes},
                         default=str) + '\n')
